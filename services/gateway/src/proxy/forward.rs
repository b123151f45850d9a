//! The innermost service: the call sent to a replica of its service.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use adapters_grpc::balance::never_reached;
use adapters_grpc::status::retry_later;
use futures::future::BoxFuture;
use http_body_util::Full;
use proto::reasons;
use tokio::time::Instant;
use tonic::{Code, Status};
use tower::{BoxError, Service, ServiceExt};
use tracing::{debug, warn};

use super::call::{Collected, Response, answer, grpc_timeout, parse_grpc_timeout};
use super::route::Route;

/// What a channel to a service is sent.
pub type Outgoing = http::Request<tonic::body::Body>;

/// Times a call that never reached a server (or, for a method in
/// [`IDEMPOTENT_BY_REQUEST_ID`], whose connection broke under it) is sent
/// again.
const MAX_RESENDS: usize = 2;

/// Methods whose effect is keyed by the `request_id` in their message: the
/// same call sent twice has one effect, and the second answer is the first
/// one's outcome (DOMAIN.md, "The API"). Only these are sent again after
/// they may have run.
pub const IDEMPOTENT_BY_REQUEST_ID: [&str; 2] = [
    "/roaming.reservation.v1.ReservationService/ReserveRoaming",
    "/roaming.reservation.v1.ReservationService/ReserveParking",
];

/// How long a client should wait before it retries a call whose outcome the
/// gateway could not learn.
const RETRY_UNKNOWN_AFTER: Duration = Duration::from_millis(500);

/// The innermost service: sends the call on the channel of its [`Route`]'s
/// service (in the gateway a balanced
/// [`Upstream`](adapters_grpc::balance::Upstream), which enforces the call's
/// `grpc-timeout`). A call that never reached a server ([`never_reached`]) is
/// sent again (to another replica: the balancer took the one that failed out
/// of rotation), whatever its method, since nothing ran. A call of a method
/// [`IDEMPOTENT_BY_REQUEST_ID`] (a reserve) whose connection broke after it
/// went out (a replica killed under it) is sent again too, with what is left
/// of its deadline: it may have run, but its `request_id` makes a second
/// send answer the first one's outcome (or `IN_PROGRESS` while that one is
/// still running) instead of reserving twice.
///
/// A deadline that passed, whichever side saw it, is `DEADLINE_EXCEEDED`;
/// any other failure to reach the service is `UNAVAILABLE`. For a method
/// idempotent by `request_id` that may have run, either carries the
/// `ErrorInfo` reason `OUTCOME_UNKNOWN` and a `RetryInfo`: the client learns
/// the outcome by retrying with the same `request_id`.
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
        let by_request_id = IDEMPOTENT_BY_REQUEST_ID.contains(&parts.uri.path());
        let deadline = parts
            .headers
            .get(GRPC_TIMEOUT)
            .and_then(parse_grpc_timeout)
            .map(|d| Instant::now() + d);
        Box::pin(async move {
            let service = &*service;
            let mut parts = parts;
            let mut attempt = 0;
            // Whether some attempt may have run on a server.
            let mut may_have_run = false;
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
                    Err(e)
                        if by_request_id
                            && !timed_out(e.as_ref())
                            && !never_reached(e.as_ref()) =>
                    {
                        may_have_run = true;
                        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                        if attempt >= MAX_RESENDS || left.is_some_and(|l| l < MIN_RESEND_TIME) {
                            break Err(e);
                        }
                        attempt += 1;
                        if let Some(value) = left.and_then(grpc_timeout) {
                            parts.headers.insert(GRPC_TIMEOUT, value);
                        }
                        warn!(service, attempt, error = %e, "the connection broke under a call idempotent by request_id; sending it again");
                    }
                    result => break result,
                }
            };
            Ok(result.map_or_else(
                |e: BoxError| {
                    // The channel enforces the call's `grpc-timeout` itself.
                    if timed_out(e.as_ref()) {
                        return if by_request_id {
                            outcome_unknown(Code::DeadlineExceeded, "the call's deadline passed")
                        } else {
                            deadline_passed()
                        };
                    }
                    warn!(service, error = ?e, "upstream unreachable");
                    if by_request_id && may_have_run {
                        outcome_unknown(
                            Code::Unavailable,
                            &format!("{service} was lost during the call"),
                        )
                    } else {
                        answer(&Status::unavailable(format!("{service} is unreachable")))
                    }
                },
                |response| deadline_passed_upstream(response, by_request_id),
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
/// gateway's own (for a method idempotent by `request_id`, with
/// `OUTCOME_UNKNOWN`: the service runs such a call to its end anyway).
fn deadline_passed_upstream(response: Response, by_request_id: bool) -> Response {
    match Status::from_header_map(response.headers()) {
        Some(s) if s.code() == Code::Cancelled && s.message() == TONIC_SERVER_TIMEOUT => {
            if by_request_id {
                outcome_unknown(Code::DeadlineExceeded, "the call's deadline passed")
            } else {
                deadline_passed()
            }
        }
        _ => response,
    }
}

/// Whether `error` is the channel's enforcement of the call's deadline.
fn timed_out(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(err) = source {
        if err.is::<tonic::TimeoutExpired>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// The answer to a call idempotent by `request_id` that may or may not have
/// taken effect: `code`, reason `OUTCOME_UNKNOWN`, and when to retry.
fn outcome_unknown(code: Code, what: &str) -> Response {
    answer(&retry_later(
        code,
        reasons::OUTCOME_UNKNOWN,
        format!(
            "{what}; the reservation may or may not have been made: retry with the same \
             request_id to learn its outcome (a new request_id could reserve twice)"
        ),
        RETRY_UNKNOWN_AFTER,
        &[],
    ))
}

const GRPC_TIMEOUT: &str = "grpc-timeout";

/// Below this much of its deadline left, a call is not sent again.
const MIN_RESEND_TIME: Duration = Duration::from_millis(10);

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
    use crate::proxy::testing::{
        SERVICE, STREAMING, UNARY, ok, reason_of, request, route, routed, status,
    };
    use tonic_types::StatusExt as _;

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

    /// A reserve (idempotent by its `request_id`) to [`SERVICE`], with a
    /// 250 ms deadline.
    fn reserve() -> Collected {
        let mut r = unary();
        *r.uri_mut() = format!("http://gateway{}", IDEMPOTENT_BY_REQUEST_ID[0])
            .parse()
            .unwrap();
        r
    }

    /// The next attempt of `reserve()`: the call as it came but for its
    /// deadline, which is returned (what was left of it when sent).
    async fn reserve_attempt(
        handle: &mut Handle<Outgoing, Response>,
    ) -> (Duration, SendResponse<Response>) {
        let (seen, reply) = tokio::time::timeout(Duration::from_secs(1), handle.next_request())
            .await
            .expect("an attempt on the channel")
            .unwrap();
        let expected = reserve();
        assert_eq!(seen.uri(), expected.uri());
        let mut headers = seen.headers().clone();
        let left = parse_grpc_timeout(&headers.remove(GRPC_TIMEOUT).unwrap()).unwrap();
        let mut expected_headers = expected.headers().clone();
        expected_headers.remove(GRPC_TIMEOUT);
        assert_eq!(headers, expected_headers);
        let body = seen.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, expected.body());
        (left, reply)
    }

    fn reset() -> BoxError {
        std::io::Error::from(std::io::ErrorKind::ConnectionReset).into()
    }

    #[test]
    fn the_methods_idempotent_by_request_id_exist_and_carry_one() {
        use prost::Message as _;
        let set = prost_types::FileDescriptorSet::decode(proto::FILE_DESCRIPTOR_SET).unwrap();
        for path in IDEMPOTENT_BY_REQUEST_ID {
            let (service, method) = path[1..].rsplit_once('/').unwrap();
            let found = set.file.iter().find_map(|f| {
                f.service
                    .iter()
                    .filter(|s| format!("{}.{}", f.package(), s.name()) == service)
                    .flat_map(|s| &s.method)
                    .find(|m| m.name() == method)
                    .map(|m| (f, m))
            });
            let (file, m) = found.unwrap_or_else(|| panic!("{path} is no method of the contract"));
            let input = m.input_type().rsplit('.').next().unwrap();
            let message = file
                .message_type
                .iter()
                .find(|t| t.name() == input)
                .unwrap();
            assert!(
                message.field.iter().any(|f| f.name() == "request_id"),
                "{path}: its request carries a request_id"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_reserve_whose_connection_broke_is_sent_again_with_what_is_left_of_its_deadline() {
        let (forward, mut handle) = forward();
        let call = in_background(&forward, reserve());
        let (left, reply) = reserve_attempt(&mut handle).await;
        assert_eq!(left, Duration::from_millis(250));
        tokio::time::advance(Duration::from_millis(100)).await;
        // The replica died under the call: it may have claimed, even paid.
        reply.send_error(reset());
        let (left, reply) = reserve_attempt(&mut handle).await;
        assert_eq!(left, Duration::from_millis(150), "the rest of the deadline");
        let mut answer = ok();
        answer
            .headers_mut()
            .insert("x-upstream", "the outcome".parse().unwrap());
        reply.send_response(answer);
        let answered = call.await.unwrap();
        assert_eq!(answered.headers()["x-upstream"], "the outcome");
        assert!(status(&answered).is_none());
        assert!(handle.poll_request().is_pending(), "two attempts");
    }

    #[tokio::test(start_paused = true)]
    async fn a_reserve_lost_on_every_attempt_says_its_outcome_is_unknown() {
        let (forward, mut handle) = forward();
        let call = in_background(&forward, reserve());
        for _ in 0..=MAX_RESENDS {
            reserve_attempt(&mut handle).await.1.send_error(reset());
        }
        let s = status(&call.await.unwrap()).unwrap();
        assert_eq!(s.code(), Code::Unavailable);
        assert_eq!(reason_of(&s), reasons::OUTCOME_UNKNOWN);
        assert!(s.message().contains("same request_id"), "{}", s.message());
        assert!(s.get_details_retry_info().is_some());
        assert!(handle.poll_request().is_pending(), "three attempts at most");

        // A reserve that never reached a server: nothing ran, and it says so.
        let call = in_background(&forward, reserve());
        for _ in 0..=MAX_RESENDS {
            reserve_attempt(&mut handle).await.1.send_error(refused());
        }
        let s = status(&call.await.unwrap()).unwrap();
        assert_eq!(s.code(), Code::Unavailable);
        assert_eq!(s.message(), format!("{SERVICE} is unreachable"));
        assert_eq!(reason_of(&s), "");
    }

    #[tokio::test(start_paused = true)]
    async fn a_reserve_is_not_sent_again_without_time_left() {
        let (forward, mut handle) = forward();
        let call = in_background(&forward, reserve());
        let (_, reply) = reserve_attempt(&mut handle).await;
        tokio::time::advance(Duration::from_millis(245)).await;
        reply.send_error(reset());
        let s = status(&call.await.unwrap()).unwrap();
        assert_eq!(
            (s.code(), reason_of(&s)),
            (Code::Unavailable, reasons::OUTCOME_UNKNOWN.to_owned())
        );
        assert!(handle.poll_request().is_pending(), "not sent again");
    }

    #[tokio::test(start_paused = true)]
    async fn a_reserve_whose_deadline_passed_says_its_outcome_is_unknown() {
        let (forward, mut handle) = forward();
        // The gateway's timer, then the service's (tonic's CANCELLED).
        let call = in_background(&forward, reserve());
        reserve_attempt(&mut handle)
            .await
            .1
            .send_error::<BoxError>(tonic::TimeoutExpired(()).into());
        let s = status(&call.await.unwrap()).unwrap();
        assert_eq!(
            (s.code(), reason_of(&s)),
            (Code::DeadlineExceeded, reasons::OUTCOME_UNKNOWN.to_owned())
        );
        let call = in_background(&forward, reserve());
        let expired = Status::cancelled(tonic::TimeoutExpired(()).to_string());
        reserve_attempt(&mut handle)
            .await
            .1
            .send_response(answer(&expired));
        let s = status(&call.await.unwrap()).unwrap();
        assert_eq!(
            (s.code(), reason_of(&s)),
            (Code::DeadlineExceeded, reasons::OUTCOME_UNKNOWN.to_owned())
        );
        assert!(handle.poll_request().is_pending(), "neither was sent again");
    }

    #[test]
    fn grpc_timeouts_are_read_and_written() {
        let v = |s: &str| http::HeaderValue::from_str(s).unwrap();
        assert_eq!(
            parse_grpc_timeout(&v("250m")),
            Some(Duration::from_millis(250))
        );
        assert_eq!(parse_grpc_timeout(&v("2S")), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout(&v("1H")), Some(Duration::from_hours(1)));
        assert_eq!(parse_grpc_timeout(&v("7u")), Some(Duration::from_micros(7)));
        for bad in ["", "m", "-1S", "123456789m", "10x", "1.5S"] {
            assert_eq!(parse_grpc_timeout(&v(bad)), None, "{bad:?}");
        }
        assert_eq!(grpc_timeout(Duration::from_millis(150)).unwrap(), "150m");
        assert_eq!(
            grpc_timeout(Duration::from_hours(100_000)).unwrap(),
            "99999999m"
        );
    }
}
