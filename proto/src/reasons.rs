//! Every `google.rpc.ErrorInfo.reason` the mesh answers with (domain
//! [`DOMAIN`]): part of the contract, as stable as the field numbers. Clients
//! branch on these, never on messages (DOMAIN.md, "The API").

/// `ErrorInfo.domain` of every error this mesh returns.
pub const DOMAIN: &str = "roaming.mesh";

// Any service.
pub const NOT_FOUND: &str = "NOT_FOUND";
pub const FORBIDDEN: &str = "FORBIDDEN";
/// Too many concurrent changes to one record; retry.
pub const BUSY: &str = "BUSY";
pub const NOT_RESERVED: &str = "NOT_RESERVED";
pub const RESERVATION_CANCELED: &str = "RESERVATION_CANCELED";

// Reservation.
pub const SOLD_OUT: &str = "SOLD_OUT";
pub const REQUEST_ID_REUSED: &str = "REQUEST_ID_REUSED";
pub const IN_PROGRESS: &str = "IN_PROGRESS";
/// `RESOURCE_EXHAUSTED`: the customer already has the most reservations
/// awaiting payment it may have (`ErrorInfo.metadata["limit"]`); nothing was
/// claimed. One ends within the payment call's deadline.
pub const PENDING_LIMIT: &str = "PENDING_LIMIT";
/// `UNAVAILABLE` (or `DEADLINE_EXCEEDED`) from the gateway for a call that
/// is idempotent by its `request_id` (a reserve): the call may have taken
/// effect or not. Retrying with the same `request_id` is safe and returns
/// its outcome; a new `request_id` could reserve (and charge) twice.
pub const OUTCOME_UNKNOWN: &str = "OUTCOME_UNKNOWN";
/// `UNAVAILABLE` with a `RetryInfo`: a service's database could not be
/// reached or answer in time (down, failing over, overloaded). A read, or a
/// write refused before it changed anything: retrying is safe.
pub const STORE_UNAVAILABLE: &str = "STORE_UNAVAILABLE";
pub const NOT_CANCELABLE: &str = "NOT_CANCELABLE";
pub const ENTRY_OPEN: &str = "ENTRY_OPEN";
pub const PAYMENT_DECLINED: &str = "PAYMENT_DECLINED";
pub const PAYMENT_UNAVAILABLE: &str = "PAYMENT_UNAVAILABLE";
/// `ErrorInfo.metadata["decline"]` values of [`PAYMENT_DECLINED`].
pub const CARD_DECLINED: &str = "CARD_DECLINED";
pub const INSUFFICIENT_FUNDS: &str = "INSUFFICIENT_FUNDS";
pub const DECLINED: &str = "DECLINED";

// Payment.
pub const ACQUIRER_UNAVAILABLE: &str = "ACQUIRER_UNAVAILABLE";
pub const AMOUNT_MISMATCH: &str = "AMOUNT_MISMATCH";
pub const NOT_REFUNDABLE: &str = "NOT_REFUNDABLE";
pub const RESERVATION_ACTIVE: &str = "RESERVATION_ACTIVE";

// Rental.
pub const DEVICE_EXISTS: &str = "DEVICE_EXISTS";
pub const DEVICE_NOT_FOUND: &str = "DEVICE_NOT_FOUND";
pub const NOT_IN_STOCK: &str = "NOT_IN_STOCK";
pub const WRONG_MODEL: &str = "WRONG_MODEL";
pub const WRONG_STATUS: &str = "WRONG_STATUS";
pub const OUTSIDE_PERIOD: &str = "OUTSIDE_PERIOD";
pub const RESERVATION_UNAVAILABLE: &str = "RESERVATION_UNAVAILABLE";

// Parking.
pub const SPACE_EXISTS: &str = "SPACE_EXISTS";
pub const SPACE_NOT_FOUND: &str = "SPACE_NOT_FOUND";
pub const SPACE_OCCUPIED: &str = "SPACE_OCCUPIED";

// View.
pub const WATCH_LIMIT: &str = "WATCH_LIMIT";

// The edge: limits and the gateway's own calls.
pub const RATE_LIMITED: &str = "RATE_LIMITED";
pub const OVERLOADED: &str = "OVERLOADED";
pub const MESSAGE_TOO_LARGE: &str = "MESSAGE_TOO_LARGE";
/// `RESOURCE_EXHAUSTED` from the gateway: the caller already has as many
/// unary calls in flight as one principal may (`ErrorInfo.metadata["limit"]`,
/// `gateway.max_calls_per_principal`), so one caller cannot take everyone's
/// places; with a `RetryInfo`.
pub const IN_FLIGHT_LIMIT: &str = "IN_FLIGHT_LIMIT";
/// `CANCELLED`: the request message did not arrive within
/// `request_body_timeout_ms` of the call's headers
/// (`ErrorInfo.metadata["limit_ms"]`); the call was never handled.
pub const REQUEST_BODY_TIMEOUT: &str = "REQUEST_BODY_TIMEOUT";
/// `INVALID_ARGUMENT`: the request body is not gRPC framing of one message
/// (empty, a truncated frame, the compressed flag without `grpc-encoding`,
/// a second message in a call that takes one).
pub const MALFORMED_FRAME: &str = "MALFORMED_FRAME";
/// `INVALID_ARGUMENT`: the request message is not the method's protobuf
/// message (it cannot be decoded).
pub const MALFORMED_MESSAGE: &str = "MALFORMED_MESSAGE";
/// `INVALID_ARGUMENT` from the gateway: the `grpc-timeout` header is not 1
/// to 8 digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`).
pub const INVALID_TIMEOUT: &str = "INVALID_TIMEOUT";
pub const BAD_CREDENTIALS: &str = "BAD_CREDENTIALS";
pub const LOGIN_BUSY: &str = "LOGIN_BUSY";
pub const LOGIN_RATE_LIMITED: &str = "LOGIN_RATE_LIMITED";
pub const REFRESH_REVOKED: &str = "REFRESH_REVOKED";
/// A refresh token presented a second time: the login is revoked (one of the
/// two holders is not its owner).
pub const REFRESH_REUSED: &str = "REFRESH_REUSED";
pub const EXTERNAL_IDENTITY_PROVIDER: &str = "EXTERNAL_IDENTITY_PROVIDER";

// The transport (`UNAUTHENTICATED`): TLS and client certificates.
/// Plaintext on a port that serves TLS (health checks excepted).
pub const TLS_REQUIRED: &str = "TLS_REQUIRED";
/// A service port that requires mutual TLS got no client certificate.
pub const CLIENT_CERTIFICATE_REQUIRED: &str = "CLIENT_CERTIFICATE_REQUIRED";
/// The client certificate names another caller than the token.
pub const PEER_MISMATCH: &str = "PEER_MISMATCH";

// Tokens (`UNAUTHENTICATED`).
pub const TOKEN_MISSING: &str = "TOKEN_MISSING";
pub const TOKEN_MALFORMED: &str = "TOKEN_MALFORMED";
pub const TOKEN_ALGORITHM: &str = "TOKEN_ALGORITHM";
pub const TOKEN_SIGNATURE: &str = "TOKEN_SIGNATURE";
pub const TOKEN_UNKNOWN_KEY: &str = "TOKEN_UNKNOWN_KEY";
pub const TOKEN_KEY: &str = "TOKEN_KEY";
pub const TOKEN_KEY_SCOPE: &str = "TOKEN_KEY_SCOPE";
pub const TOKEN_ISSUER: &str = "TOKEN_ISSUER";
pub const TOKEN_AUDIENCE: &str = "TOKEN_AUDIENCE";
pub const TOKEN_EXPIRED: &str = "TOKEN_EXPIRED";
pub const TOKEN_NOT_YET_VALID: &str = "TOKEN_NOT_YET_VALID";
pub const TOKEN_LIFETIME: &str = "TOKEN_LIFETIME";
pub const TOKEN_CLAIM_MISSING: &str = "TOKEN_CLAIM_MISSING";
pub const TOKEN_NO_ROLE: &str = "TOKEN_NO_ROLE";
pub const TOKEN_BOOTH: &str = "TOKEN_BOOTH";
pub const TOKEN_BOOTH_MISSING: &str = "TOKEN_BOOTH_MISSING";
pub const TOKEN_LOT: &str = "TOKEN_LOT";
pub const TOKEN_LOT_MISSING: &str = "TOKEN_LOT_MISSING";
