// How a reservation view reads on screen (my page, booth and gate screens).
import { h } from '../dom.js';
import { clock, country, when } from '../format.js';
import { ReservationStatus } from '../gen/roaming/reservation/v1/reservation_pb.js';
import { PaymentStatus } from '../gen/roaming/payment/v1/payment_pb.js';
import type { ReservationView } from '../gen/roaming/view/v1/view_pb.js';

/** A heading for a reservation: what was reserved. */
export function title(v: ReservationView): string {
  switch (v.details.case) {
    case 'roaming': {
      const r = v.details.value;
      return `Roaming device ${r.deviceModel}, ${country(r.country)}`;
    }
    case 'parking': {
      const p = v.details.value;
      return `Parking space ${p.spaceId}, plate ${p.vehiclePlate}`;
    }
    default:
      return 'Reservation';
  }
}

/** When and where. */
export function period(v: ReservationView): string {
  switch (v.details.case) {
    case 'roaming': {
      const r = v.details.value;
      const days = r.startDate === r.endDate ? r.startDate : `${r.startDate} to ${r.endDate}`;
      return `${days}; pick up at ${r.pickupBooth}, return at ${r.returnBooth}`;
    }
    case 'parking': {
      const p = v.details.value;
      return `${when(p.startTime)} to ${clock(p.endTime)}`;
    }
    default:
      return '';
  }
}

/** Nothing more will happen to it, so it is not worth a stream. */
export function isFinal(v: ReservationView): boolean {
  switch (v.status) {
    case ReservationStatus.COMPLETED:
      return true;
    case ReservationStatus.REJECTED:
      return v.paymentStatus !== PaymentStatus.CAPTURED;
    case ReservationStatus.CANCELED:
      return [PaymentStatus.REFUNDED, PaymentStatus.VOIDED, PaymentStatus.DECLINED].includes(v.paymentStatus);
    default:
      return false;
  }
}

export function cancelable(v: ReservationView): boolean {
  return v.status === ReservationStatus.RESERVED || v.status === ReservationStatus.RENTAL_ACCEPTED;
}

/** The steps of a reservation's life, for the timelines. */
export function steps(v: ReservationView): [ReservationStatus, string][] {
  const parkingKind = v.details.case === 'parking';
  return parkingKind
    ? [
        [ReservationStatus.RESERVED, 'Reserved'],
        [ReservationStatus.IN_USE, 'Parked'],
        [ReservationStatus.COMPLETED, 'Left'],
      ]
    : [
        [ReservationStatus.RESERVED, 'Reserved'],
        [ReservationStatus.RENTAL_ACCEPTED, 'Ready for pickup'],
        [ReservationStatus.IN_USE, 'Handed over'],
        [ReservationStatus.RETURNED, 'Returned'],
        [ReservationStatus.COMPLETED, 'Back in stock'],
      ];
}

/** A step track: done, current, to come (with the word, not only a colour). */
export function track(v: ReservationView, label: string): HTMLOListElement {
  const off = v.status === ReservationStatus.CANCELED || v.status === ReservationStatus.REJECTED;
  const reached = (s: ReservationStatus) => v.history.find((c) => c.status === s)?.at;
  // A canceled or rejected reservation ends its track where it stopped.
  const order: [ReservationStatus, string][] = off
    ? [...steps(v).filter(([s]) => reached(s) !== undefined), [v.status, v.status === ReservationStatus.CANCELED ? 'Canceled' : 'Rejected']]
    : steps(v);
  return h(
    'ol',
    { class: 'track', 'aria-label': label },
    ...order.map(([s, name]) => {
      const at = reached(s);
      const current = v.status === s;
      const done = !current && (at !== undefined || (!off && v.status > s));
      const state = current ? 'now' : done ? 'done' : 'to come';
      return h(
        'li',
        { class: `step step-${state.replace(' ', '-')}`, 'aria-current': current ? 'step' : undefined },
        h('span', { class: 'step-name' }, name),
        h('span', { class: 'step-state' }, current ? ` (now${at ? `, since ${clock(at)}` : ''})` : done ? ` (done${at ? ` at ${clock(at)}` : ''})` : ''),
      );
    }),
  );
}
