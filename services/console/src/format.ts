// How values read on screen: money, dates, statuses, countries.
import type { Timestamp } from '@bufbuild/protobuf/wkt';
import { timestampDate } from '@bufbuild/protobuf/wkt';
import type { Money } from './gen/roaming/common/v1/common_pb.js';
import { ReservationStatus, ReservationKind } from './gen/roaming/reservation/v1/reservation_pb.js';
import { PaymentStatus } from './gen/roaming/payment/v1/payment_pb.js';
import { RentalStatus, DeviceStatus } from './gen/roaming/rental/v1/rental_pb.js';

/** `KRW 15,000`: the currency's minor units shifted by its own decimals. */
export function money(m: Money | undefined): string {
  if (!m || !m.currencyCode) return '—';
  try {
    const fmt = new Intl.NumberFormat('en', {
      style: 'currency',
      currency: m.currencyCode,
      currencyDisplay: 'code',
    });
    const digits = fmt.resolvedOptions().maximumFractionDigits ?? 0;
    return fmt.format(Number(m.minorUnits) / 10 ** digits);
  } catch {
    return `${m.currencyCode} ${m.minorUnits.toString()}`;
  }
}

const dateTime = new Intl.DateTimeFormat('en-GB', { dateStyle: 'medium', timeStyle: 'short' });
const timeOnly = new Intl.DateTimeFormat('en-GB', { timeStyle: 'short' });

export function when(t: Timestamp | undefined): string {
  return t ? dateTime.format(timestampDate(t)) : '—';
}

export function whenDate(d: Date): string {
  return dateTime.format(d);
}

export function clock(t: Timestamp | undefined): string {
  return t ? timeOnly.format(timestampDate(t)) : '—';
}

/** `YYYY-MM-DD` of a local date (what a date input holds). */
export function isoDate(d: Date): string {
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

/** `YYYY-MM-DD` of the UTC day of an instant. */
export function utcDate(d: Date): string {
  return d.toISOString().slice(0, 10);
}

/** `YYYY-MM-DDTHH:MM` in local time (what a datetime-local input holds). */
export function isoLocalMinute(d: Date): string {
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${isoDate(d)}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function addDays(isoDay: string, days: number): string {
  const d = new Date(`${isoDay}T12:00:00`);
  d.setDate(d.getDate() + days);
  return isoDate(d);
}

const STATUS: Record<ReservationStatus, string> = {
  [ReservationStatus.UNSPECIFIED]: 'Unknown',
  [ReservationStatus.PENDING_PAYMENT]: 'Awaiting payment',
  [ReservationStatus.RESERVED]: 'Reserved',
  [ReservationStatus.RENTAL_ACCEPTED]: 'Ready for pickup',
  [ReservationStatus.IN_USE]: 'In use',
  [ReservationStatus.RETURNED]: 'Returned',
  [ReservationStatus.COMPLETED]: 'Completed',
  [ReservationStatus.REJECTED]: 'Rejected',
  [ReservationStatus.CANCELED]: 'Canceled',
};

export function status(s: ReservationStatus): string {
  return STATUS[s] ?? 'Unknown';
}

/** CSS class of a status badge (colour is never the only cue: the word is shown too). */
export function statusClass(s: ReservationStatus): string {
  switch (s) {
    case ReservationStatus.COMPLETED:
      return 'badge badge-done';
    case ReservationStatus.REJECTED:
    case ReservationStatus.CANCELED:
      return 'badge badge-off';
    case ReservationStatus.IN_USE:
    case ReservationStatus.RETURNED:
      return 'badge badge-active';
    default:
      return 'badge';
  }
}

export function paymentStatus(s: PaymentStatus): string {
  switch (s) {
    case PaymentStatus.CAPTURED:
      return 'Paid';
    case PaymentStatus.DECLINED:
      return 'Declined';
    case PaymentStatus.REFUNDED:
      return 'Refunded';
    case PaymentStatus.VOIDED:
      return 'Voided (not charged)';
    default:
      return 'Not paid yet';
  }
}

export function rentalStatus(s: RentalStatus): string {
  switch (s) {
    case RentalStatus.ACCEPTED:
      return 'Accepted by the booth';
    case RentalStatus.HANDED_OVER:
      return 'Handed over';
    case RentalStatus.RETURNED:
      return 'Returned';
    case RentalStatus.RETRIEVED:
      return 'Back in stock';
    case RentalStatus.CANCELED:
      return 'Canceled';
    default:
      return '—';
  }
}

export function deviceStatus(s: DeviceStatus): string {
  switch (s) {
    case DeviceStatus.IN_STOCK:
      return 'In stock';
    case DeviceStatus.RENTED:
      return 'Rented out';
    case DeviceStatus.AWAITING_RETRIEVAL:
      return 'Returned, awaiting retrieval';
    default:
      return 'Unknown';
  }
}

export function kind(k: ReservationKind): string {
  return k === ReservationKind.PARKING ? 'Parking' : k === ReservationKind.ROAMING ? 'Roaming device' : 'Reservation';
}

let regionNames: Intl.DisplayNames | undefined;
/** `Japan (JP)`. */
export function country(code: string): string {
  try {
    regionNames ??= new Intl.DisplayNames(['en'], { type: 'region' });
    const name = regionNames.of(code);
    return name && name !== code ? `${name} (${code})` : code;
  } catch {
    return code;
  }
}

/** The first block of a UUID, for headings; the full id stays on screen too. */
export function shortId(id: string): string {
  return id.slice(0, 8);
}
