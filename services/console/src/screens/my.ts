// Customer: "my page", every reservation with its status changing live, and cancel.
import { reservations, view } from '../api.js';
import { announce, h, replace } from '../dom.js';
import { describe, isAborted } from '../errors.js';
import { notice } from '../forms.js';
import { kind, money, paymentStatus, shortId, status, statusClass, when } from '../format.js';
import { PaymentStatus } from '../gen/roaming/payment/v1/payment_pb.js';
import type { ReservationView } from '../gen/roaming/view/v1/view_pb.js';
import type { Mount } from '../main.js';
import { Watcher, type LiveState, MAX_STREAMS } from '../watch.js';
import { cancelable, isFinal, period, title, track } from './views.js';

interface Card {
  view: ReservationView;
  li: HTMLLIElement;
  body: HTMLElement;
  live: HTMLElement;
  statusLine: HTMLElement;
  action: HTMLElement;
  /** The outcome of a cancel, kept across re-renders. */
  outcome: HTMLElement;
  confirming: boolean;
}

export function myScreen(m: Mount): void {
  const page = notice();
  const list = h('ul', { class: 'cards', 'aria-label': 'Reservations' });
  const empty = h('p', { hidden: true }, 'You have no reservations yet. ', h('a', { href: '#/roaming' }, 'Reserve a device'), ' or ', h('a', { href: '#/parking' }, 'a parking space'), '.');
  const more = h('button', { type: 'button', class: 'secondary', hidden: true }, 'Show older reservations');
  const refresh = h('button', { type: 'button', class: 'secondary' }, 'Refresh');
  const cards = new Map<string, Card>();
  const visible = new Set<string>();
  let nextPage = '';

  const watcher = new Watcher(
    m.signal,
    (v) => {
      const c = cards.get(v.reservationId);
      if (!c || v.version < c.view.version) return;
      const before = c.view.status;
      c.view = v;
      render(c);
      if (before !== v.status) announce(`${title(v)}: ${status(v.status)}.`);
      choose();
    },
    (id, state, why) => {
      const c = cards.get(id);
      if (c) setLive(c, state, why);
    },
  );

  const observer = new IntersectionObserver((entries) => {
    for (const e of entries) {
      const id = (e.target as HTMLElement).dataset['id'];
      if (!id) continue;
      if (e.isIntersecting) visible.add(id);
      else visible.delete(id);
    }
    choose();
  });
  m.signal.addEventListener('abort', () => observer.disconnect());

  // A hidden tab gives its connections back (the browser's ~6 per host are
  // shared by every tab of the console); they are reopened when it is shown.
  document.addEventListener('visibilitychange', () => choose(), { signal: m.signal });

  /** Stream the visible reservations that can still change, newest first. */
  function choose(): void {
    const shown = document.visibilityState === 'visible';
    const ids = [...cards.values()]
      .filter(() => shown)
      .filter((c) => !isFinal(c.view) && visible.has(c.view.reservationId))
      .map((c) => c.view.reservationId);
    watcher.want(ids);
    for (const c of cards.values()) {
      if (isFinal(c.view)) setLive(c, 'off', 'Final: this reservation will not change any more.');
      else if (!watcher.watching(c.view.reservationId)) {
        setLive(
          c,
          'paused',
          !shown
            ? 'Not live while this tab is hidden.'
            : !visible.has(c.view.reservationId)
              ? 'Not live while out of view.'
              : `Not live: at most ${MAX_STREAMS} reservations are followed at once. Use Refresh.`,
        );
      }
    }
  }

  function setLive(c: Card, state: LiveState, why?: string): void {
    const text =
      state === 'live'
        ? 'Live'
        : state === 'connecting'
          ? 'Connecting for live updates…'
          : state === 'paused'
            ? why ?? `Not live (at most ${MAX_STREAMS} reservations are followed at once).`
            : why ?? 'Not live.';
    if (c.live.textContent !== text) c.live.textContent = text;
    c.live.className = `live live-${state}`;
  }

  function card(v: ReservationView): Card {
    const id = v.reservationId;
    const li = h('li', { class: 'card', 'data-id': id });
    const c: Card = {
      view: v,
      li,
      body: h('div'),
      live: h('p', { class: 'live' }),
      statusLine: h('p', { class: 'status-line', role: 'status' }),
      action: h('div', { class: 'card-actions' }),
      outcome: h('div', { role: 'status' }),
      confirming: false,
    };
    li.append(
      h(
        'article',
        { 'aria-labelledby': `r-${id}` },
        h('h2', { id: `r-${id}` }, title(v)),
        c.statusLine,
        c.live,
        c.body,
        c.action,
        c.outcome,
      ),
    );
    observer.observe(li);
    render(c);
    return c;
  }

  function render(c: Card): void {
    const v = c.view;
    replace(c.statusLine, 'Status: ', h('strong', { class: statusClass(v.status) }, status(v.status)));
    const refunded = v.paymentStatus === PaymentStatus.REFUNDED;
    replace(
      c.body,
      h('p', { class: 'period' }, period(v)),
      h(
        'dl',
        { class: 'facts' },
        h('dt', {}, 'Reservation number'),
        h('dd', {}, h('code', {}, v.reservationId)),
        h('dt', {}, 'Kind'),
        h('dd', {}, kind(v.kind)),
        h('dt', {}, 'Price'),
        h('dd', {}, money(v.price)),
        h('dt', {}, 'Payment'),
        h('dd', {}, refunded ? `Refunded ${money(v.price)}` : paymentStatus(v.paymentStatus)),
        v.deviceSerial ? h('dt', {}, 'Device') : null,
        v.deviceSerial ? h('dd', {}, v.deviceSerial) : null,
        h('dt', {}, 'Last change'),
        h('dd', {}, when(v.updatedAt)),
      ),
      track(v, `Progress of reservation ${shortId(v.reservationId)}`),
    );
    renderAction(c);
  }

  function renderAction(c: Card): void {
    const v = c.view;
    if (!cancelable(v)) {
      c.confirming = false;
      c.action.replaceChildren();
      return;
    }
    if (!c.confirming) {
      replace(
        c.action,
        h(
          'button',
          {
            type: 'button',
            class: 'secondary',
            onclick: () => {
              c.confirming = true;
              renderAction(c);
              c.action.querySelector<HTMLButtonElement>('button')?.focus();
            },
          },
          'Cancel reservation',
        ),
      );
      return;
    }
    const alert = h('div', { class: 'alert', role: 'alert', hidden: true });
    const yes = h('button', { type: 'button', class: 'danger' }, 'Yes, cancel it');
    const no = h('button', { type: 'button', class: 'secondary' }, 'Keep it');
    no.addEventListener('click', () => {
      c.confirming = false;
      renderAction(c);
      c.action.querySelector<HTMLButtonElement>('button')?.focus();
    });
    yes.addEventListener('click', () => {
      yes.disabled = true;
      no.disabled = true;
      void reservations
        .cancelReservation({ reservationId: v.reservationId, reason: 'canceled by the customer' }, { signal: m.signal })
        .then((res) => {
          c.confirming = false;
          const r = res.reservation;
          replace(
            c.outcome,
            h('p', { class: 'success', tabindex: '-1' }, `Canceled. Refund: ${money(r?.price ?? v.price)} back to your card.`),
          );
          if (r) {
            c.view.status = r.status;
          }
          render(c);
          choose();
          c.outcome.querySelector<HTMLElement>('p')?.focus();
        })
        .catch((e: unknown) => {
          if (isAborted(e)) return;
          const p = describe(e);
          replace(alert, h('p', { class: 'alert-message' }, p.message));
          alert.hidden = false;
          yes.disabled = false;
          no.disabled = false;
        });
    });
    replace(
      c.action,
      h('p', {}, `Cancel this reservation? ${money(v.price)} will be refunded to your card.`),
      h('div', { class: 'actions' }, yes, no),
      alert,
    );
  }

  async function load(append: boolean): Promise<void> {
    page.clear();
    refresh.disabled = true;
    try {
      const res = await view.listMyReservations(
        { pageSize: 50, pageToken: append ? nextPage : '' },
        { signal: m.signal },
      );
      nextPage = res.nextPageToken;
      more.hidden = !nextPage;
      for (const v of res.reservations) {
        const c = cards.get(v.reservationId);
        if (c) {
          if (v.version >= c.view.version) {
            c.view = v;
            render(c);
          }
        } else {
          const fresh = card(v);
          cards.set(v.reservationId, fresh);
        }
      }
      // Keep the list in the server's order (newest first), older pages after.
      const order = append ? [...cards.keys()] : [...res.reservations.map((r) => r.reservationId), ...[...cards.keys()].filter((k) => !res.reservations.some((r) => r.reservationId === k))];
      list.replaceChildren(...order.map((id) => cards.get(id)?.li).filter((li): li is HTMLLIElement => !!li));
      empty.hidden = cards.size > 0;
      choose();
    } catch (e) {
      page.show(e);
    } finally {
      refresh.disabled = false;
    }
  }

  refresh.addEventListener('click', () => void load(false));
  more.addEventListener('click', () => void load(true));
  replace(
    m.root,
    h('h1', {}, 'My reservations'),
    h('p', {}, 'Statuses change here as they happen: no need to reload.'),
    h('div', { class: 'toolbar' }, refresh),
    page.el,
    empty,
    list,
    more,
  );
  void load(false);
}
