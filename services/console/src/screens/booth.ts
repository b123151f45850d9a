// Booth staff: the booth's day (pickups and returns) as a timeline, the
// devices in stock, hand over, take a return, retrieve.
import { rentals, view } from '../api.js';
import { announce, h, replace, srOnly } from '../dom.js';
import { Form, input, notice, select, setOptions } from '../forms.js';
import { deviceStatus, isoDate, shortId, status, statusClass } from '../format.js';
import { ReservationStatus } from '../gen/roaming/reservation/v1/reservation_pb.js';
import { DeviceStatus, type Device } from '../gen/roaming/rental/v1/rental_pb.js';
import type { ReservationView } from '../gen/roaming/view/v1/view_pb.js';
import type { Mount } from '../main.js';
import { period, title, track } from './views.js';

/** The booth's refusals in its own words. */
const BOOTH_WORDS: Record<string, string> = {
  FORBIDDEN: 'This reservation is handled by another booth: it cannot be done here.',
  NOT_FOUND: 'No rental has this reservation number (or the booth has not received it yet).',
  NOT_RESERVED: 'This reservation is not paid and reserved, so the device cannot be handed over.',
  RESERVATION_CANCELED: 'The customer canceled this reservation: do not hand the device over.',
};

const REFRESH_MS = 5_000;

interface Row {
  li: HTMLLIElement;
  key: string;
  form: Form;
}

export function boothScreen(m: Mount): void {
  const booth = m.claims.booth ?? '';
  const page = notice();
  const day = input({ type: 'date', value: isoDate(new Date()) });
  const dayId = 'booth-day';
  day.id = dayId;
  const pickups = h('ol', { class: 'timeline', 'aria-labelledby': 'pickups-title' });
  const returns = h('ol', { class: 'timeline', 'aria-labelledby': 'returns-title' });
  const pickupsEmpty = h('p', { class: 'muted', hidden: true }, 'No pickups on this day.');
  const returnsEmpty = h('p', { class: 'muted', hidden: true }, 'No returns due on this day.');
  const stockBody = h('tbody');
  const rows = new Map<string, Row>();
  let stock: Device[] = [];

  const inStock = (model: string) =>
    stock.filter((d) => d.status === DeviceStatus.IN_STOCK && d.deviceModel === model && d.booth === booth);

  async function loadStock(): Promise<void> {
    const res = await rentals.listDevices({ booth }, { signal: m.signal });
    stock = res.devices;
    replace(
      stockBody,
      ...stock.map((d) =>
        h('tr', {}, h('td', {}, d.serial), h('td', {}, d.deviceModel), h('td', {}, deviceStatus(d.status))),
      ),
    );
    if (stock.length === 0) replace(stockBody, h('tr', {}, h('td', { colspan: 3 }, 'No devices at this booth.')));
  }

  /** One reservation of the day with the step it is at and what staff can do now. */
  function row(v: ReservationView, lane: 'pickup' | 'return'): Row {
    const id = v.reservationId;
    const model = v.details.case === 'roaming' ? v.details.value.deviceModel : '';
    const serials = inStock(model).map((d) => d.serial);
    // Re-rendered only when something it shows changed, so an open choice keeps its focus.
    const key = `${lane}|${v.status}|${v.version}|${serials.join(',')}`;
    const existing = rows.get(`${lane}:${id}`);
    if (existing && existing.key === key) return existing;
    const form = new Form(`${lane === 'pickup' ? 'Pickup' : 'Return'} ${shortId(id)}`, m.signal);
    const label = `${lane === 'pickup' ? 'Pickup' : 'Return'}: ${title(v)}`;
    const actions = h('div', { class: 'actions' });
    if (lane === 'pickup' && (v.status === ReservationStatus.RENTAL_ACCEPTED || v.status === ReservationStatus.RESERVED)) {
      const serial = select(
        serials.length ? serials.map((s): [string, string] => [s, s]) : [['', `No ${model} in stock`]],
      );
      actions.append(
        form.field('serial', 'Device to hand over', serial),
        h('button', { type: 'submit' }, 'Hand over', srOnly(` for reservation ${shortId(id)}`)),
      );
      form.el.addEventListener('submit', (e) => {
        e.preventDefault();
        void form.run(
          async () => {
            const res = await rentals.handOverDevice({ reservationId: id, serial: serial.value }, { signal: m.signal });
            announce(`Handed over ${res.rental?.serial ?? serial.value}.`);
            await reload();
            focusRow('pickup', id);
          },
          { overrides: BOOTH_WORDS },
        );
      });
    } else if (lane === 'return' && v.status === ReservationStatus.IN_USE) {
      actions.append(h('button', { type: 'submit' }, 'Take return', srOnly(` for reservation ${shortId(id)}`)));
      form.el.addEventListener('submit', (e) => {
        e.preventDefault();
        void form.run(
          async () => {
            await rentals.returnDevice({ reservationId: id, booth }, { signal: m.signal });
            announce('Return taken.');
            await reload();
            focusRow('return', id);
          },
          { overrides: BOOTH_WORDS },
        );
      });
    } else if (lane === 'return' && v.status === ReservationStatus.RETURNED) {
      actions.append(h('button', { type: 'submit' }, 'Retrieve', srOnly(` device of reservation ${shortId(id)}`)));
      form.el.addEventListener('submit', (e) => {
        e.preventDefault();
        void form.run(
          async () => {
            await rentals.retrieveDevice({ reservationId: id }, { signal: m.signal });
            announce('Device back in stock.');
            await reload();
            focusRow('return', id);
          },
          { overrides: BOOTH_WORDS },
        );
      });
    }
    form.el.append(actions, form.alert, form.result);
    const li = h(
      'li',
      { class: 'entry', 'data-id': id },
      h(
        'article',
        { 'aria-label': label },
        h('h3', {}, label),
        h('p', {}, period(v)),
        h('p', {}, 'Reservation number ', h('code', {}, id)),
        h('p', { class: 'status-line' }, 'Status: ', h('strong', { class: statusClass(v.status) }, status(v.status))),
        v.deviceSerial ? h('p', {}, `Device: ${v.deviceSerial}`) : null,
        track(v, `Progress of reservation ${shortId(id)}`),
        actions.childElementCount ? form.el : null,
      ),
    );
    const r = { li, key, form };
    rows.set(`${lane}:${id}`, r);
    return r;
  }

  /** After an action the row is redrawn: keyboard users continue from its heading. */
  function focusRow(lane: 'pickup' | 'return', id: string): void {
    const heading = rows.get(`${lane}:${id}`)?.li.querySelector<HTMLElement>('h3');
    if (heading && heading.isConnected) {
      heading.tabIndex = -1;
      heading.focus();
    }
  }

  function fill(list: HTMLOListElement, emptyNote: HTMLElement, views: ReservationView[], lane: 'pickup' | 'return'): void {
    const items = views.map((v) => row(v, lane).li);
    // Keep the nodes that did not change (and so the focus inside them).
    const same = items.length === list.children.length && items.every((li, i) => list.children[i] === li);
    if (!same) list.replaceChildren(...items);
    emptyNote.hidden = views.length > 0;
  }

  async function reload(): Promise<void> {
    try {
      const [schedule] = await Promise.all([
        view.getBoothSchedule({ booth, date: day.value }, { signal: m.signal }),
        loadStock(),
      ]);
      fill(pickups, pickupsEmpty, schedule.pickups, 'pickup');
      fill(returns, returnsEmpty, schedule.returns, 'return');
      page.clear();
    } catch (e) {
      page.show(e);
    }
  }

  // Any reservation, by its number: a return made at this booth although
  // another was planned, or a reservation of another day.
  const byNumber = new Form('Any reservation by its number', m.signal);
  const number = input({ autocomplete: 'off', spellcheck: 'false' });
  const serial = input({ autocomplete: 'off', spellcheck: 'false' });
  const act = (what: 'hand' | 'return' | 'retrieve') => () =>
    void byNumber.run(
      async () => {
        const reservationId = number.value.trim();
        if (what === 'hand') {
          await rentals.handOverDevice({ reservationId, serial: serial.value.trim() }, { signal: m.signal });
          byNumber.done(h('p', { class: 'success' }, 'Handed over.'));
        } else if (what === 'return') {
          await rentals.returnDevice({ reservationId, booth }, { signal: m.signal });
          byNumber.done(h('p', { class: 'success' }, 'Return taken.'));
        } else {
          await rentals.retrieveDevice({ reservationId }, { signal: m.signal });
          byNumber.done(h('p', { class: 'success' }, 'Device back in stock.'));
        }
        await reload();
      },
      { overrides: BOOTH_WORDS },
    );
  byNumber.el.addEventListener('submit', (e) => e.preventDefault());
  byNumber.el.append(
    h(
      'div',
      { class: 'row' },
      byNumber.field('reservation_id', 'Reservation number', number),
      byNumber.field('serial', 'Device serial (for a hand-over)', serial),
    ),
    h(
      'div',
      { class: 'actions' },
      h('button', { type: 'button', onclick: act('hand') }, 'Hand over by number'),
      h('button', { type: 'button', class: 'secondary', onclick: act('return') }, 'Take return by number'),
      h('button', { type: 'button', class: 'secondary', onclick: act('retrieve') }, 'Retrieve by number'),
    ),
    byNumber.alert,
    byNumber.result,
  );

  day.addEventListener('change', () => void reload());
  const timer = window.setInterval(() => {
    if (document.visibilityState === 'visible') void reload();
  }, REFRESH_MS);
  m.signal.addEventListener('abort', () => window.clearInterval(timer));

  replace(
    m.root,
    h('h1', {}, `Booth ${booth}`),
    page.el,
    h(
      'div',
      { class: 'toolbar' },
      h('label', { for: dayId }, 'Day'),
      day,
      h('button', { type: 'button', class: 'secondary', onclick: () => void reload() }, 'Refresh'),
    ),
    h(
      'div',
      { class: 'lanes' },
      h('section', { 'aria-labelledby': 'pickups-title' }, h('h2', { id: 'pickups-title' }, 'Pickups'), pickupsEmpty, pickups),
      h('section', { 'aria-labelledby': 'returns-title' }, h('h2', { id: 'returns-title' }, 'Returns due'), returnsEmpty, returns),
    ),
    h(
      'section',
      { 'aria-labelledby': 'by-number-title' },
      h('h2', { id: 'by-number-title' }, 'Any reservation by its number'),
      byNumber.el,
    ),
    h(
      'section',
      { 'aria-labelledby': 'stock-title' },
      h('h2', { id: 'stock-title' }, 'Devices at this booth'),
      h(
        'table',
        { class: 'table' },
        h('caption', { class: 'sr-only' }, `Devices at booth ${booth}`),
        h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Serial'), h('th', { scope: 'col' }, 'Model'), h('th', { scope: 'col' }, 'Status'))),
        stockBody,
      ),
    ),
  );
  void reload();
}
