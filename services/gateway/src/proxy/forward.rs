//! The innermost service: the call sent to a replica of its service.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use adapters_grpc::balance::never_reached;
use futures::future::BoxFuture;
use http_body_util::Full;
use tonic::{Code, Status};
use tower::{BoxError, Service, ServiceExt};
use tracing::{debug, warn};

use super::call::{Collected, Response, answer};
use super::route::Route;

/// What a channel to a service is sent.
pub type Outgoing = http::Request<tonic::body::Body>;

/// Times a call that never reached a server is sent again.
const MAX_RESENDS: usize = 2;

/// The innermost service: sends the call on the channel of its [`Route`]'s
/// service (in the gateway a balanced
/// [`Upstream`](adapters_grpc::balance::Upstream), which enforces the call's
/// `grpc-timeout`). A call that never reached a server ([`never_reached`]) is
/// sent again (to another replica: the balancer took the one that failed out
/// of rotation), whatever its method, since nothing ran. A deadline that
/// passed, whichever side saw it, is `DEADLINE_EXCEEDED`; any other failure
/// to reach the service is `UNAVAILABLE`.
pub struct Forward<C> {
    channels: Arc<HashMap<String, C>>,
}

impl<C> Forward<C> {
    /// `channels` by gRPC service name (`package.Service`).
    pub fn new(channels: HashMap<String, C>) -> Self {
        Self {
            channels: Arc::new(channels),
        }
    }
}

impl<C> Clone for Forward<C> {
    fn clone(&self) -> Self {
        Self {
            channels: Arc::clone(&self.channels),
        }
    }
}

impl<C> std::fmt::Debug for Forward<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forward")
            .field("services", &self.channels.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A request head to send again (extensions are the server side's own).
fn clone_parts(parts: &http::request::Parts) -> http::request::Parts {
    let mut request = http::Request::new(());
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = parts.uri.clone();
    *request.version_mut() = parts.version;
    *request.headers_mut() = parts.headers.clone();
    request.into_parts().0
}

impl<C> Service<Collected> for Forward<C>
where
    C: Service<Outgoing, Response = Response> + Clone + Send + 'static,
    C::Error: Into<BoxError>,
    C::Future: Send,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Collected) -> Self::Future {
        let (parts, bytes) = request.into_parts();
        let Some((service, channel)) = parts.extensions.get::<Route>().and_then(|route| {
            let channel = self.channels.get(&*route.service)?.clone();
            Some((Arc::clone(&route.service), channel))
        }) else {
            return Box::pin(async { Ok(answer(&Status::internal("no route for this call"))) });
        };
        Box::pin(async move {
            let service = &*service;
            let mut attempt = 0;
            let result = loop {
                let outgoing = http::Request::from_parts(
                    clone_parts(&parts),
                    tonic::body::Body::new(Full::new(bytes.clone())),
                );
                match channel.clone().oneshot(outgoing).await.map_err(Into::into) {
                    Err(e) if attempt < MAX_RESENDS && never_reached(e.as_ref()) => {
                        attempt += 1;
                        debug!(service, attempt, error = %e, "call never reached a server; sending it again");
                    }
                    result => break result,
                }
            };
            Ok(result.map_or_else(
                |e: BoxError| {
                    // The channel enforces the call's `grpc-timeout` itself.
                    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e.as_ref());
                    while let Some(err) = source {
                        if err.is::<tonic::TimeoutExpired>() {
                            return deadline_passed();
                        }
                        source = err.source();
                    }
                    warn!(service, error = %e, "upstream unreachable");
                    answer(&Status::unavailable(format!("{service} is unreachable")))
                },
                deadline_passed_upstream,
            ))
        })
    }
}

/// The same cause, the same code, whichever timer fires first. The call's
/// deadline travels upstream as `grpc-timeout`, and tonic's server answers
/// its own expiry with `CANCELLED` "Timeout expired"; when that answer
/// arrived before the gateway's timer fired (a race of two timers set to
/// the same instant), the caller saw `CANCELLED` where the same call a
/// moment later saw `DEADLINE_EXCEEDED`. Such an answer becomes the
/// gateway's own.
fn deadline_passed_upstream(response: Response) -> Response {
    match Status::from_header_map(response.headers()) {
        Some(s) if s.code() == Code::Cancelled && s.message() == TONIC_SERVER_TIMEOUT => {
            deadline_passed()
        }
        _ => response,
    }
}

/// The answer to a call whose own deadline passed, whichever timer saw it.
fn deadline_passed() -> Response {
    answer(&Status::deadline_exceeded("the call's deadline passed"))
}

/// The message of tonic's server-side deadline expiry (`TimeoutExpired`).
const TONIC_SERVER_TIMEOUT: &str = "Timeout expired";

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

    use std::time::Duration;

    use bytes::Bytes;
    use http_body_util::BodyExt as _;
    use tower_test::mock::{self, Handle, Mock, SendResponse};

    use super::*;
    use crate::proxy::testing::{SERVICE, STREAMING, UNARY, ok, request, route, routed, status};

    type Channel = Mock<Outgoing, Response>;

    /// A [`Forward`] to one service, [`SERVICE`], over a mock channel.
    fn forward() -> (Forward<Channel>, Handle<Outgoing, Response>) {
        let (channel, handle) = mock::pair();
        (
            Forward::new(HashMap::from([(SERVICE.to_owned(), channel)])),
            handle,
        )
    }

    /// A unary call to [`SERVICE`] with a deadline, a header of the
    /// caller's, and a message.
    fn unary() -> Collected {
        let mut r = http::Request::builder()
            .method(http::Method::POST)
            .uri(format!("http://gateway{UNARY}"))
            .header("content-type", "application/grpc")
            .header("grpc-timeout", "250m")
            .header("x-caller", "kept")
            .body(Bytes::from_static(b"\0\0\0\0\x02\x08\x01"))
            .unwrap();
        r.extensions_mut().insert(route(false));
        r
    }

    fn in_background(
        forward: &Forward<Channel>,
        request: Collected,
    ) -> tokio::task::JoinHandle<Response> {
        let forward = forward.clone();
        tokio::spawn(async move {
            let answered = forward.oneshot(request).await;
            answered.unwrap_or_else(|never| match never {})
        })
    }

    /// The next attempt on the channel: it must be `unary()` as it came
    /// (head, deadline, message), without the gateway's own extensions.
    /// On the paused clock an attempt that never comes fails the test at
    /// once instead of hanging it.
    async fn attempt(handle: &mut Handle<Outgoing, Response>) -> SendResponse<Response> {
        let (seen, reply) = tokio::time::timeout(Duration::from_secs(1), handle.next_request())
            .await
            .expect("an attempt on the channel")
            .unwrap();
        let expected = unary();
        assert_eq!(seen.method(), expected.method());
        assert_eq!(seen.uri(), expected.uri());
        assert_eq!(seen.version(), expected.version());
        assert_eq!(seen.headers(), expected.headers());
        assert_eq!(
            seen.headers()["grpc-timeout"],
            "250m",
            "the caller's deadline"
        );
        assert!(seen.extensions().get::<Route>().is_none());
        let body = seen.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, expected.body());
        reply
    }

    fn refused() -> BoxError {
        std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into()
    }

    fn refused_stream() -> BoxError {
        h2::Error::from(h2::Reason::REFUSED_STREAM).into()
    }

    /// An error with `source` under it, as a buffer or transport wraps one.
    #[derive(Debug, thiserror::Error)]
    #[error("wrapped: {0}")]
    struct Wrapped(#[source] BoxError);

    #[tokio::test(start_paused = true)]
    async fn a_call_goes_to_its_services_channel_and_its_answer_comes_back() {
        let (forward, mut handle) = forward();
        let call = in_background(&forward, unary());
        let mut answer = ok();
        answer
            .headers_mut()
            .insert("x-upstream", "yes".parse().unwrap());
        attempt(&mut handle).await.send_response(answer);
        let answered = call.await.unwrap();
        assert_eq!(answered.headers()["x-upstream"], "yes");
        assert!(status(&answered).is_none());
        assert!(handle.poll_request().is_pending(), "sent once");
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_that_never_reached_a_server_is_sent_again() {
        let (forward, mut handle) = forward();
        let call = in_background(&forward, unary());
        // Both ways the balancer signals that nothing ran: the connection
        // refused, the stream refused before it was processed.
        attempt(&mut handle).await.send_error(refused());
        attempt(&mut handle)
            .await
            .send_error(Wrapped(refused_stream()));
        attempt(&mut handle).await.send_response(ok());
        assert!(status(&call.await.unwrap()).is_none());
        assert!(handle.poll_request().is_pending(), "three attempts");
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_is_sent_again_twice_at_most() {
        let (forward, mut handle) = forward();
        let call = in_background(&forward, unary());
        for _ in 0..3 {
            attempt(&mut handle).await.send_error(refused());
        }
        let s = status(&call.await.unwrap()).unwrap();
        assert_eq!(s.code(), Code::Unavailable);
        assert_eq!(s.message(), format!("{SERVICE} is unreachable"));
        assert!(handle.poll_request().is_pending(), "no fourth attempt");
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_that_reached_a_server_is_not_sent_again() {
        let (forward, mut handle) = forward();

        // The connection broke after the call went out: it may have run.
        let call = in_background(&forward, unary());
        attempt(&mut handle)
            .await
            .send_error(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        let s = status(&call.await.unwrap()).unwrap();
        assert_eq!(s.code(), Code::Unavailable);
        assert_eq!(s.message(), format!("{SERVICE} is unreachable"));
        assert!(handle.poll_request().is_pending(), "not sent again");

        // A server that answered UNAVAILABLE itself: its answer is the
        // caller's, as it came.
        let call = in_background(&forward, unary());
        let unavailable = Status::unavailable("draining").into_http();
        attempt(&mut handle).await.send_response(unavailable);
        let s = status(&call.await.unwrap()).unwrap();
        assert_eq!(s.code(), Code::Unavailable);
        assert_eq!(s.message(), "draining");
        assert!(handle.poll_request().is_pending(), "not sent again");
    }

    #[tokio::test(start_paused = true)]
    async fn the_channels_deadline_expiry_is_deadline_exceeded() {
        let (forward, mut handle) = forward();
        let timeout = || tonic::TimeoutExpired(());
        for error in [timeout().into(), Wrapped(timeout().into()).into()] {
            let call = in_background(&forward, unary());
            attempt(&mut handle).await.send_error::<BoxError>(error);
            let s = status(&call.await.unwrap()).unwrap();
            assert_eq!(s.code(), Code::DeadlineExceeded);
            assert_eq!(s.message(), "the call's deadline passed");
            assert!(handle.poll_request().is_pending(), "not sent again");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_upstream_deadline_expiry_answers_as_the_gateways_own() {
        let (forward, mut handle) = forward();
        // What a tonic server answers when the `grpc-timeout` it was given
        // ran out.
        let expired = Status::cancelled(tonic::TimeoutExpired(()).to_string());
        let call = in_background(&forward, unary());
        attempt(&mut handle).await.send_response(answer(&expired));
        let s = status(&call.await.unwrap()).unwrap();
        assert_eq!(s.code(), Code::DeadlineExceeded);
        assert_eq!(s.message(), "the call's deadline passed");

        // A call the upstream cancelled for another reason, and any other
        // answer, pass unchanged.
        for other in [
            Status::cancelled("the client went away"),
            Status::deadline_exceeded("the service's own"),
            Status::unavailable("down"),
        ] {
            let call = in_background(&forward, unary());
            attempt(&mut handle).await.send_response(answer(&other));
            let s = status(&call.await.unwrap()).unwrap();
            assert_eq!((s.code(), s.message()), (other.code(), other.message()));
        }
        assert!(handle.poll_request().is_pending(), "nothing was sent again");
    }

    #[tokio::test(start_paused = true)]
    async fn a_streaming_call_is_forwarded_like_a_unary_one() {
        let (forward, mut handle) = forward();
        let call = in_background(&forward, routed(STREAMING, true));
        let (seen, reply) = handle.next_request().await.unwrap();
        assert_eq!(seen.uri().path(), STREAMING);
        reply.send_error(refused());
        let again = tokio::time::timeout(Duration::from_secs(1), handle.next_request());
        let (seen, reply) = again.await.expect("sent again").unwrap();
        assert_eq!(seen.uri().path(), STREAMING);
        reply.send_response(ok());
        assert!(status(&call.await.unwrap()).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_without_a_known_route_is_internal() {
        let (forward, mut handle) = forward();
        let mut elsewhere = request(UNARY);
        elsewhere.extensions_mut().insert(Route {
            service: Arc::from("no.such.Service"),
            streaming: false,
        });
        for r in [request(UNARY), elsewhere] {
            let s = status(&in_background(&forward, r).await.unwrap()).unwrap();
            assert_eq!(s.code(), Code::Internal);
        }
        assert!(handle.poll_request().is_pending(), "nothing was sent");
    }
}
