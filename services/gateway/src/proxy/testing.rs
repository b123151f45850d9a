//! What the layers' tests share: requests, a layer over a `tower-test` mock,
//! and reading the status a layer answered with.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::sync::Arc;

use bytes::Bytes;
use tonic::Status;
use tonic_types::StatusExt as _;
use tower::Layer;
use tower_test::mock::{self, Mock};

use super::call::{Incoming, Response};
use super::route::Route;

/// A request as the layers below the body limit see it.
pub type Req = http::Request<Bytes>;

pub const SERVICE: &str = "roaming.reservation.v1.ReservationService";
pub const UNARY: &str = "/roaming.reservation.v1.ReservationService/Reserve";
pub const STREAMING: &str = "/roaming.view.v1.ViewService/WatchReservation";

/// A call to `path` with an empty message.
pub fn request(path: &str) -> Req {
    http::Request::builder()
        .uri(format!("http://gateway{path}"))
        .body(Bytes::from_static(b"\0\0\0\0\0"))
        .unwrap()
}

/// The [`Route`] [`RouteLayer`](super::RouteLayer) puts on a call to
/// [`SERVICE`].
pub fn route(streaming: bool) -> Route {
    Route {
        service: Arc::from(SERVICE),
        streaming,
    }
}

/// A call to `path` as it leaves [`RouteLayer`](super::RouteLayer).
pub fn routed(path: &str, streaming: bool) -> Req {
    let mut r = request(path);
    r.extensions_mut().insert(route(streaming));
    r
}

/// An answer without a status of its own (the upstream's).
pub fn ok() -> Response {
    http::Response::new(tonic::body::Body::empty())
}

/// The status a layer answered with (`grpc-status` in the headers).
pub fn status(response: &Response) -> Option<Status> {
    Status::from_header_map(response.headers())
}

/// The `ErrorInfo.reason` of `s`, empty without one.
pub fn reason_of(s: &Status) -> String {
    s.get_error_details()
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_default()
}

/// A call to [`UNARY`] as the gateway receives it, with `body`.
pub fn body_request(body: axum::body::Body) -> Incoming {
    http::Request::builder()
        .uri(format!("http://gateway{UNARY}"))
        .body(body)
        .unwrap()
}

/// A request body that never ends.
pub fn trickling() -> axum::body::Body {
    axum::body::Body::from_stream(futures::stream::pending::<Result<Bytes, std::io::Error>>())
}

/// A layer over a mock, the mock's handle.
pub fn over<L>(layer: L) -> (L::Service, mock::Handle<Req, Response>)
where
    L: Layer<Mock<Req, Response>>,
{
    let (inner, handle) = mock::pair::<Req, Response>();
    (layer.layer(inner), handle)
}
