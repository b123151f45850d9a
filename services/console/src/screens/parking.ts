// Customer: quote, then reserve (and pay for) a parking space for a window.
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { parking, reservations } from '../api.js';
import { announce, h, replace } from '../dom.js';
import { Form, input, notice, select, setOptions } from '../forms.js';
import { isoLocalMinute, money, status } from '../format.js';
import type { QuoteParkingResponse } from '../gen/roaming/reservation/v1/reservation_pb.js';
import type { Mount } from '../main.js';
import { cardFields, Submission } from './payment.js';

export function parkingScreen(m: Mount): void {
  const page = notice();
  const form = new Form('Reserve a parking space', m.signal);
  const space = select([], {});
  const plate = input({ autocomplete: 'off', spellcheck: 'false' });
  const next = new Date();
  next.setMinutes(0, 0, 0);
  next.setHours(next.getHours() + 1);
  const later = new Date(next.getTime() + 2 * 3600_000);
  const from = input({ type: 'datetime-local', value: isoLocalMinute(next), step: 60 });
  const until = input({ type: 'datetime-local', value: isoLocalMinute(later), step: 60 });
  const card = cardFields(form);
  const quoteOut = h('div', { class: 'quote', role: 'status' });
  const payStep = h('div', { class: 'pay-step', hidden: true });
  const payButton = h('button', { type: 'submit', class: 'primary' }, 'Pay and reserve');
  const quoteButton = h('button', { type: 'button', class: 'secondary' }, 'Get the price');
  let quoted: QuoteParkingResponse | undefined;

  const window_ = () => ({
    spaceId: space.value,
    startTime: from.value ? timestampFromDate(new Date(from.value)) : undefined,
    endTime: until.value ? timestampFromDate(new Date(until.value)) : undefined,
  });
  const submission = new Submission();
  const invalidate = () => {
    submission.reset();
    if (!quoted) return;
    quoted = undefined;
    payStep.hidden = true;
    replace(quoteOut, h('p', {}, 'The window changed: get the price again.'));
  };
  for (const c of [space, from, until]) {
    c.addEventListener('input', invalidate);
    c.addEventListener('change', invalidate);
  }

  const getQuote = () =>
    form.run(async () => {
      const q = await reservations.quoteParking(window_(), { signal: m.signal });
      quoted = q;
      replace(
        quoteOut,
        h('h2', {}, 'Price'),
        h(
          'p',
          { class: 'price' },
          `${money(q.price)} `,
          h('span', { class: 'muted' }, `(${q.hours} started ${q.hours === 1 ? 'hour' : 'hours'} × ${money(q.hourlyRate)})`),
        ),
        h('p', {}, 'This is the price you pay now; it is computed by the server.'),
      );
      payButton.textContent = `Pay ${money(q.price)} and reserve`;
      payStep.hidden = false;
    });
  quoteButton.addEventListener('click', () => void getQuote());

  const reserve = () => {
    const requestId = submission.id();
    return form.run(
      async () => {
        const res = await reservations.reserveParking(
          { requestId, ...window_(), vehiclePlate: plate.value.trim(), payment: card.read() },
          { signal: m.signal },
        );
        const r = res.reservation;
        submission.reset();
        card.reset();
        payStep.hidden = true;
        quoted = undefined;
        replace(quoteOut);
        form.done(
          h('p', { class: 'success' }, `Reserved and paid: ${money(r?.price)}. Status: ${status(r?.status ?? 0)}.`),
          h('p', {}, 'Reservation number ', h('code', {}, r?.reservationId ?? '')),
          h('p', {}, h('a', { href: '#/my' }, 'Follow it on My reservations')),
        );
        announce('Parking reserved.');
      },
      { again: () => void reserve(), failed: (p) => submission.failed(p) },
    );
  };
  form.el.addEventListener('submit', (e) => {
    e.preventDefault();
    if (!quoted) {
      void getQuote();
      return;
    }
    void reserve();
  });

  payStep.append(
    form.field('vehicle_plate', 'Vehicle plate', plate, { hint: 'The gate lets in this plate only.' }),
    card.el,
    h('div', { class: 'actions' }, payButton),
  );
  form.el.append(
    h(
      'fieldset',
      {},
      h('legend', {}, 'Space and time'),
      form.field('space_id', 'Space', space),
      h('div', { class: 'row' }, form.field('start_time', 'From', from), form.field('end_time', 'Until', until)),
    ),
    h('div', { class: 'actions' }, quoteButton),
    quoteOut,
    payStep,
    form.alert,
    form.result,
  );
  replace(
    m.root,
    h('h1', {}, 'Reserve a parking space'),
    h('p', {}, 'First come, first served. The gate lets your car in from 15 minutes before the window starts.'),
    page.el,
    form.el,
  );

  void parking
    .listSpaces({}, { signal: m.signal })
    .then((res) => {
      setOptions(
        space,
        res.spaces.map((s): [string, string] => [
          s.spaceId,
          `${s.spaceId}: lot ${s.lot}, floor ${s.floor}, no. ${s.number} (${money(s.hourlyRate)} an hour)`,
        ]),
      );
    })
    .catch(page.show);
}
