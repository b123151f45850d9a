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
