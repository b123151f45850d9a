//! What every layer of the stack shares: the request at each stage, the
//! response every layer answers with, how a layer refuses a call, and how it
//! hands the call on to its inner service.

use std::time::Duration;

use adapters_grpc::status::retry_later;
use bytes::Bytes;
use proto::reasons;
use tonic::{Code, Status};

/// What every layer answers with.
pub type Response = http::Response<tonic::body::Body>;

/// A request as the gateway receives it.
pub type Incoming = http::Request<axum::body::Body>;

/// A request whose one message has been read (see
/// [`BodyLimitLayer`](super::BodyLimitLayer)).
pub type Collected = http::Request<Bytes>;

/// A refusal as the gateway sends it: the status in an HTTP response.
pub(super) fn answer(status: &Status) -> Response {
    status.clone().into_http()
}

/// The answer of a limit that refuses for load: `UNAVAILABLE`, `OVERLOADED`,
/// and when to try again.
pub(super) fn overloaded(message: &str, retry_after: Duration) -> Response {
    answer(&retry_later(
        Code::Unavailable,
        reasons::OVERLOADED,
        message,
        retry_after,
        &[],
    ))
}

/// The inner service made ready by `poll_ready`, leaving a clone in its
/// place (the usual tower move: the ready one serves this call).
pub(super) fn take_ready<S: Clone>(inner: &mut S) -> S {
    let clone = inner.clone();
    std::mem::replace(inner, clone)
}

/// A `grpc-timeout` value (`TimeoutValue TimeoutUnit`: 1 to 8 digits, one
/// of `HMSmun`); `None` when malformed (negative, not a number, no unit,
/// more than 8 digits, anything but visible ASCII).
pub(super) fn parse_grpc_timeout(value: &http::HeaderValue) -> Option<Duration> {
    let text = value.to_str().ok()?;
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3_600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// `left` as a `grpc-timeout` value, in milliseconds (at most 8 digits).
pub(super) fn grpc_timeout(left: Duration) -> Option<http::HeaderValue> {
    let ms = left.as_millis().min(99_999_999);
    http::HeaderValue::from_str(&format!("{ms}m")).ok()
}
