// The parking gate: let cars in and out by space and plate; the lot's spaces
// as a grid (free, reserved, occupied) for a chosen time.
import { timestampDate } from '@bufbuild/protobuf/wkt';
import { parking, view } from '../api.js';
import { h, replace } from '../dom.js';
import { Form, input, notice, select, setOptions } from '../forms.js';
import { clock, isoLocalMinute, utcDate, when, whenDate } from '../format.js';
import { EntryVerification, type Space } from '../gen/roaming/parking/v1/parking_pb.js';
import { ReservationStatus } from '../gen/roaming/reservation/v1/reservation_pb.js';
import { SessionStatus } from '../gen/roaming/parking/v1/parking_pb.js';
import type { ReservationView } from '../gen/roaming/view/v1/view_pb.js';
import type { Mount } from '../main.js';

const GATE_WORDS: Record<string, string> = {
  NOT_RESERVED: 'Keep the gate closed: this plate holds no reservation for this space now.',
  SPACE_OCCUPIED: 'Keep the gate closed: another car is in this space.',
  FORBIDDEN: 'This space belongs to another lot.',
  NOT_FOUND: 'This car is not parked in this space.',
};

type Cell = 'Free' | 'Reserved' | 'Occupied';

/** How many seconds the grid is looked at again after the gate acted. */
const SETTLE_TRIES = 15;

/** How often the grid is looked at again while the screen is visible (as the booth's lists). */
const REFRESH_MS = 5_000;

const HOLDING = [
  ReservationStatus.PENDING_PAYMENT,
  ReservationStatus.RESERVED,
  ReservationStatus.RENTAL_ACCEPTED,
];

/** What a space is at `t`, from its schedule. */
function cellAt(views: ReservationView[], t: Date): { state: Cell; plate?: string; until?: string } {
  for (const v of views) {
    if (v.details.case !== 'parking') continue;
    const p = v.details.value;
    if (!p.startTime || !p.endTime) continue;
    const start = timestampDate(p.startTime);
    const end = timestampDate(p.endTime);
    const inside = v.status === ReservationStatus.IN_USE && v.sessionStatus === SessionStatus.STARTED;
    // A car still inside after its window still occupies the space.
    if (inside && t >= start && (t < end || Math.abs(Date.now() - t.getTime()) < 60_000)) {
      return { state: 'Occupied', plate: p.vehiclePlate, until: clock(p.endTime) };
    }
    if (HOLDING.includes(v.status) && t >= start && t < end) {
      return { state: 'Reserved', plate: p.vehiclePlate, until: clock(p.endTime) };
    }
  }
  return { state: 'Free' };
}

export function gateScreen(m: Mount): void {
  const lot = m.claims.lot ?? '';
  const page = notice();
  let spaces: Space[] = [];

  const form = new Form('Let a car in or out', m.signal);
  const space = select([], {});
  const plate = input({ autocomplete: 'off', spellcheck: 'false' });
  const act = (enter: boolean) => () =>
    void form.run(
      async () => {
        const req = { spaceId: space.value, vehiclePlate: plate.value.trim() };
        if (enter) {
          const res = await parking.enter(req, { signal: m.signal });
          const how = res.session?.verification === EntryVerification.REPLICA ? ' (checked against the local copy: the reservation service was unreachable)' : '';
          form.done(h('p', { class: 'success' }, `Open the gate: ${req.vehiclePlate} may park in ${req.spaceId}${how}.`));
        } else {
          const res = await parking.exit(req, { signal: m.signal });
          form.done(h('p', { class: 'success' }, `Open the gate: ${req.vehiclePlate} leaves ${req.spaceId} (parked since ${when(res.session?.enteredAt)}).`));
        }
        await settle(req.spaceId, enter ? 'Occupied' : 'Free');
      },
      { overrides: GATE_WORDS },
    );
  form.el.addEventListener('submit', (e) => {
    e.preventDefault();
    act(true)();
  });
  form.el.append(
    h('div', { class: 'row' }, form.field('space_id', 'Space', space), form.field('vehicle_plate', 'Plate', plate)),
    h(
      'div',
      { class: 'actions' },
      h('button', { type: 'submit' }, 'Let in'),
      h('button', { type: 'button', class: 'secondary', onclick: act(false) }, 'Let out'),
    ),
    form.alert,
    form.result,
  );

  const at = input({ type: 'datetime-local', value: isoLocalMinute(new Date()), step: 60 });
  const atId = 'grid-time';
  at.id = atId;
  const grid = h('ul', { class: 'grid', 'aria-label': `Spaces of lot ${lot}` });
  const gridNote = h('p', { class: 'muted', role: 'status' });

  async function schedules(s: Space, t: Date): Promise<ReservationView[]> {
    // A window lasts at most 24 hours, so one that covers t started on t's UTC day or the one before.
    const days = [utcDate(new Date(t.getTime() - 86_400_000)), utcDate(t)];
    const res = await Promise.all(
      days.map((date) => view.getSpaceSchedule({ spaceId: s.spaceId, date }, { signal: m.signal })),
    );
    return res.flatMap((r) => r.reservations);
  }

  /**
   * After letting a car in or out: the grid comes from the view, which learns
   * of the change from events, a moment later. Look again (every second, for
   * up to SETTLE_TRIES seconds) until the space shows what the gate just did,
   * and say so if the view is still behind.
   */
  async function settle(spaceId: string, expected: Cell): Promise<void> {
    for (let i = 0; i < SETTLE_TRIES; i += 1) {
      const cells = await showGrid();
      if (!cells || cells.find((x) => x.s.spaceId === spaceId)?.c.state === expected) return;
      await new Promise((r) => setTimeout(r, 1_000));
      if (m.signal.aborted) return;
    }
    gridNote.textContent += ` ${spaceId} is not shown as ${expected} yet: the grid lags behind the gate; press Now to look again.`;
  }

  async function showGrid(): Promise<{ s: Space; c: ReturnType<typeof cellAt> }[] | undefined> {
    const t = at.value ? new Date(at.value) : new Date();
    try {
      // Two at a time: the browser's few connections stay free for the gate itself.
      const cells: { s: Space; c: ReturnType<typeof cellAt> }[] = [];
      for (let i = 0; i < spaces.length; i += 2) {
        const batch = spaces.slice(i, i + 2);
        const views = await Promise.all(batch.map((s) => schedules(s, t)));
        batch.forEach((s, j) => cells.push({ s, c: cellAt(views[j] ?? [], t) }));
      }
      replace(
        grid,
        ...cells.map(({ s, c }) =>
          h(
            'li',
            { class: `space space-${c.state.toLowerCase()}` },
            h('span', { class: 'space-id' }, s.spaceId),
            h('span', { class: 'space-state' }, c.state),
            c.plate ? h('span', { class: 'space-plate' }, `${c.plate} until ${c.until}`) : null,
          ),
        ),
      );
      const counts = (state: Cell) => cells.filter((x) => x.c.state === state).length;
      gridNote.textContent = `At ${whenDate(t)}: ${counts('Free')} free, ${counts('Reserved')} reserved, ${counts('Occupied')} occupied.`;
      page.clear();
      return cells;
    } catch (e) {
      page.show(e);
      return undefined;
    }
  }

  replace(
    m.root,
    h('h1', {}, `Gate, lot ${lot}`),
    page.el,
    h('section', { 'aria-labelledby': 'gate-title' }, h('h2', { id: 'gate-title' }, 'Let a car in or out'), form.el),
    h(
      'section',
      { 'aria-labelledby': 'grid-title' },
      h('h2', { id: 'grid-title' }, 'Spaces'),
      h(
        'div',
        { class: 'toolbar' },
        h('label', { for: atId }, 'Time'),
        at,
        h('button', { type: 'button', class: 'secondary', onclick: () => void showGrid() }, 'Show'),
        h(
          'button',
          {
            type: 'button',
            class: 'secondary',
            onclick: () => {
              at.value = isoLocalMinute(new Date());
              void showGrid();
            },
          },
          'Now',
        ),
      ),
      gridNote,
      grid,
      h('p', { class: 'legend' }, 'Free: no reservation at that time. Reserved: paid for, car not in. Occupied: a car is in.'),
    ),
  );

  // Cars come and go through other gates of the lot too.
  const timer = window.setInterval(() => {
    if (document.visibilityState === 'visible' && spaces.length > 0) void showGrid();
  }, REFRESH_MS);
  m.signal.addEventListener('abort', () => window.clearInterval(timer));

  void parking
    .listSpaces({ lot }, { signal: m.signal })
    .then(async (res) => {
      spaces = res.spaces;
      setOptions(space, spaces.map((s): [string, string] => [s.spaceId, `${s.spaceId} (floor ${s.floor}, no. ${s.number})`]));
      await showGrid();
    })
    .catch(page.show);
}
