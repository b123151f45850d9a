// Refusals in plain words. The server's google.rpc.ErrorInfo reason (the
// constants of proto/src/reasons.rs) picks the sentence; BadRequest field
// violations go next to the fields they name; RetryInfo says when to try again.
import { Code, ConnectError } from '@connectrpc/connect';
import {
  BadRequestSchema,
  ErrorInfoSchema,
  RetryInfoSchema,
} from './gen/google/rpc/error_details_pb.js';

/** What the screen shows for a failed call. */
export interface Problem {
  code: Code;
  /** The ErrorInfo reason, when the server gave one. */
  reason: string | undefined;
  /** One sentence for people. */
  message: string;
  /** The server's own message, shown smaller as a detail. */
  detail: string;
  /** Request field path (`payment.card_number`) -> what is wrong with it. */
  fields: Map<string, string>;
  /** From RetryInfo: do not try again before this many milliseconds. */
  retryAfterMs: number | undefined;
}

/** Sentences per reason; `metadata` is ErrorInfo.metadata. */
const REASONS: Record<string, string | ((metadata: Record<string, string>) => string)> = {
  NOT_FOUND: 'We could not find that. It may not exist, or it is not yours to see.',
  FORBIDDEN: 'Your account is not allowed to do this.',
  BUSY: 'Someone else is changing this right now. Try again in a moment.',
  NOT_RESERVED: 'There is no valid reservation for this.',
  RESERVATION_CANCELED: 'This reservation was canceled.',
  SOLD_OUT: 'Sold out: nothing is left for that period. Try other dates, another booth or another space.',
  REQUEST_ID_REUSED: 'This request was already used for a different reservation. Please submit the form again.',
  IN_PROGRESS: 'Your reservation is still being processed.',
  PENDING_LIMIT: 'You already have reservations waiting for their payment. Nothing was reserved; try again in a moment.',
  OUTCOME_UNKNOWN: 'We could not learn whether your reservation went through. Try again: you will not be charged twice.',
  NOT_CANCELABLE: 'This reservation can no longer be canceled.',
  ENTRY_OPEN: 'The car is still parked, so this reservation can no longer be canceled.',
  PAYMENT_DECLINED: (md) => {
    switch (md['decline_reason']) {
      case 'INSUFFICIENT_FUNDS':
        return 'Your card was declined for insufficient funds. Nothing was reserved and nothing was charged.';
      case 'CARD_DECLINED':
        return 'Your card was declined by its issuer. Nothing was reserved and nothing was charged. Try another card.';
      default:
        return 'Your card was declined. Nothing was reserved and nothing was charged.';
    }
  },
  PAYMENT_UNAVAILABLE: 'Payments are unavailable right now. Nothing was reserved and nothing was charged.',
  ACQUIRER_UNAVAILABLE: 'The card network is unavailable right now.',
  AMOUNT_MISMATCH: 'The amount does not match the price.',
  NOT_REFUNDABLE: 'This payment cannot be refunded.',
  RESERVATION_ACTIVE: 'The reservation is still active.',
  DEVICE_EXISTS: 'A device with this serial number is already registered.',
  DEVICE_NOT_FOUND: 'No device has this serial number.',
  NOT_IN_STOCK: 'That device is not in stock at this booth.',
  WRONG_MODEL: 'That device is not the model that was reserved.',
  WRONG_STATUS: 'This step does not fit where the rental is now (it may already be done).',
  OUTSIDE_PERIOD: 'A device can be handed over only during the reserved dates.',
  RESERVATION_UNAVAILABLE: 'The reservation could not be confirmed right now.',
  SPACE_EXISTS: 'A space with this id is already registered.',
  SPACE_NOT_FOUND: 'There is no such parking space.',
  SPACE_OCCUPIED: 'Another car is in this space.',
  WATCH_LIMIT: 'Too many live updates are open for your account (other tabs?). Statuses here will not update live.',
  RATE_LIMITED: 'Too many requests in a short time.',
  OVERLOADED: 'The service is very busy right now.',
  MESSAGE_TOO_LARGE: 'This request is too large.',
  BAD_CREDENTIALS: 'Wrong username or password.',
  LOGIN_BUSY: 'Signing in is busy right now.',
  LOGIN_RATE_LIMITED: 'Too many sign-in attempts for this user. Wait a minute before trying again.',
  REFRESH_REVOKED: 'Your session was ended because your account changed. Please sign in again.',
  REFRESH_REUSED: 'Your session was ended for safety: it was used from somewhere else. Please sign in again.',
  EXTERNAL_IDENTITY_PROVIDER: 'This mesh signs people in through another identity provider, not this console.',
  TOKEN_EXPIRED: 'Your session has expired. Please sign in again.',
  TOKEN_BOOTH: 'Your account works for another booth.',
  TOKEN_BOOTH_MISSING: 'Your account is not set up for a booth.',
  TOKEN_LOT: 'Your account works for another parking lot.',
  TOKEN_LOT_MISSING: 'Your account is not set up for a parking lot.',
  TOKEN_NO_ROLE: 'Your account has no role that may do this.',
};

/** Sentences when a call gave no ErrorInfo (or an unknown reason). */
function byCode(code: Code): string {
  switch (code) {
    case Code.InvalidArgument:
      return 'Some fields need a correction.';
    case Code.NotFound:
      return REASONS['NOT_FOUND'] as string;
    case Code.PermissionDenied:
      return REASONS['FORBIDDEN'] as string;
    case Code.Unauthenticated:
      return 'Your session is not valid any more. Please sign in again.';
    case Code.ResourceExhausted:
      return 'Too many requests in a short time.';
    case Code.Unavailable:
      return 'The service cannot be reached right now.';
    case Code.DeadlineExceeded:
      return 'The service took too long to answer.';
    case Code.Canceled:
      return 'The request was stopped.';
    default:
      return 'Something went wrong on our side. Please try again.';
  }
}

/** Reads a failed call. `overrides` gives a screen its own sentence for a reason. */
export function describe(err: unknown, overrides: Record<string, string> = {}): Problem {
  const e = ConnectError.from(err);
  const info = e.findDetails(ErrorInfoSchema)[0];
  const bad = e.findDetails(BadRequestSchema)[0];
  const retry = e.findDetails(RetryInfoSchema)[0];
  const reason = info?.reason || undefined;
  const fields = new Map<string, string>();
  for (const v of bad?.fieldViolations ?? []) {
    if (!fields.has(v.field)) fields.set(v.field, v.description);
  }
  let message: string;
  const known = reason ? (overrides[reason] ?? REASONS[reason]) : undefined;
  if (typeof known === 'function') {
    message = known(info?.metadata ?? {});
  } else if (known) {
    message = known;
  } else if (reason?.startsWith('TOKEN_')) {
    message = byCode(Code.Unauthenticated);
  } else if (!reason && (e.code === Code.Unknown || e.code === Code.Unavailable) && isNetwork(e)) {
    message = 'The console cannot reach the server. Check the connection and try again.';
  } else {
    message = byCode(e.code);
  }
  let retryAfterMs: number | undefined;
  if (retry?.retryDelay) {
    retryAfterMs = Math.max(
      0,
      Number(retry.retryDelay.seconds) * 1000 + Math.ceil(retry.retryDelay.nanos / 1e6),
    );
  }
  return { code: e.code, reason, message, detail: e.rawMessage, fields, retryAfterMs };
}

function isNetwork(e: ConnectError): boolean {
  return /fetch|network|Failed to|HTTP/i.test(e.rawMessage);
}

export function isAborted(err: unknown): boolean {
  if (err instanceof DOMException && err.name === 'AbortError') return true;
  return ConnectError.from(err).code === Code.Canceled;
}

export { Code, ConnectError };
