// The mesh's public contract over gRPC-web (binary), on the console's own origin.
import { createClient } from '@connectrpc/connect';
import { createGrpcWebTransport } from '@connectrpc/connect-web';
import { ReservationService } from './gen/roaming/reservation/v1/reservation_pb.js';
import { RentalService } from './gen/roaming/rental/v1/rental_pb.js';
import { ParkingService } from './gen/roaming/parking/v1/parking_pb.js';
import { ViewService } from './gen/roaming/view/v1/view_pb.js';
import { bearer } from './session.js';

const transport = createGrpcWebTransport({
  baseUrl: location.origin,
  useBinaryFormat: true,
  interceptors: [bearer],
});

export const reservations = createClient(ReservationService, transport);
export const rentals = createClient(RentalService, transport);
export const parking = createClient(ParkingService, transport);
export const view = createClient(ViewService, transport);

/** A fresh idempotency key for one reserve submission. */
export function newRequestId(): string {
  // randomUUID needs a secure context; a tablet on the LAN may load the
  // console over plain http, where getRandomValues still works.
  if (typeof crypto.randomUUID === 'function' && window.isSecureContext) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = ((b[6] ?? 0) & 0x0f) | 0x40;
  b[8] = ((b[8] ?? 0) & 0x3f) | 0x80;
  const hex = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
