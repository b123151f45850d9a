//! The request body, read in time and checked before anything handles it,
//! on every service port and at the gateway.
//!
//! Without this, a call whose body never completes holds its HTTP/2 stream,
//! its handler and whatever the handler took (a place in a limit) until the
//! connection dies, and a body that is not gRPC framing is answered by
//! tonic with `INTERNAL`, the code of a server fault, which an alert on
//! server errors pages on (an anonymous call to a health check or to
//! `IssueToken` could move it). So:
//!
//! - a call whose request is one message (every unary and server-streaming
//!   method) has its whole body read within `within` of its headers
//!   ([`read_one_message`]); one whose request streams (reflection's
//!   `ServerReflectionInfo`; none of the API's) has its first message read
//!   within that time, and the rest is its own business. Late:
//!   `CANCELLED` / `REQUEST_BODY_TIMEOUT`, and the call never reaches its
//!   handler, so it holds nothing;
//! - the body must be gRPC framing of exactly one message: not empty, a
//!   whole 5-byte header and as many bytes as it announces, no second
//!   message, the compressed flag only with a `grpc-encoding`. Otherwise
//!   `INVALID_ARGUMENT` / `MALFORMED_FRAME` (the gRPC spec asks `INTERNAL`
//!   for the compressed flag without an encoding; here `INTERNAL` is kept
//!   for our own faults, and the message says what was wrong);
//! - larger than `max_message_bytes`: `RESOURCE_EXHAUSTED` /
//!   `MESSAGE_TOO_LARGE`, as soon as the body passes the size;
//! - a message that does not decode as the method's protobuf message:
//!   `INVALID_ARGUMENT` / `MALFORMED_MESSAGE`. The API's servers decode
//!   with `proto::codec::ContractCodec`, which answers so itself; health and
//!   reflection with tonic's codec, which answers `INTERNAL` "failed to
//!   decode Protobuf message" (by the spec), turned into the same here.
//!
//! Each class of refusal is logged at WARN, sampled ([`Sampled`]).

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use adapters_telemetry::layer::known_method;
use adapters_telemetry::sampled::Sampled;
use bytes::{Buf as _, Bytes, BytesMut};
use futures::future::BoxFuture;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use prost::Message as _;
use proto::reasons;
use tonic::{Code, Status};
use tower::{BoxError, Layer, Service};
use tracing::{debug, warn};

use crate::status::reason;

/// The 5-byte header of a gRPC frame: compressed flag, message length.
const FRAME_HEADER: usize = 5;

/// The start of tonic's (tonic-prost's) answer to a message it cannot decode.
const DECODE_FAILURE: &str = "failed to decode Protobuf message";

/// How a request body must arrive.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// The largest request message.
    pub max_message_bytes: usize,
    /// How long after its headers the body (or a stream's first message)
    /// may take.
    pub within: Duration,
}

/// Why a request body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyRefusal {
    #[error("the request message did not arrive within {} ms of its headers", .0.as_millis())]
    TimedOut(Duration),
    #[error("request message larger than {0} bytes")]
    TooLarge(usize),
    /// The client reset the stream or the connection broke: nobody is left
    /// to answer, so this is not logged as a refusal.
    #[error("request body interrupted")]
    Interrupted,
    #[error("malformed gRPC frame: {0}")]
    Malformed(String),
}

impl BodyRefusal {
    /// The status to answer with.
    pub fn status(&self) -> Status {
        match self {
            Self::TimedOut(within) => reason(
                Code::Cancelled,
                reasons::REQUEST_BODY_TIMEOUT,
                self.to_string(),
                &[("limit_ms", within.as_millis().to_string())],
            ),
            Self::TooLarge(max) => reason(
                Code::ResourceExhausted,
                reasons::MESSAGE_TOO_LARGE,
                self.to_string(),
                &[("limit", max.to_string())],
            ),
            Self::Interrupted => Status::cancelled(self.to_string()),
            Self::Malformed(_) => reason(
                Code::InvalidArgument,
                reasons::MALFORMED_FRAME,
                self.to_string(),
                &[],
            ),
        }
    }

    /// Logs the refusal of a call to `path` (sampled per class) and returns
    /// the status to answer with.
    pub fn refuse(&self, component: &str, path: &str) -> Status {
        static TIMED_OUT: Sampled = Sampled::new();
        static TOO_LARGE: Sampled = Sampled::new();
        static MALFORMED: Sampled = Sampled::new();
        let method = known_method(path);
        let sampled = match self {
            Self::TimedOut(_) => &TIMED_OUT,
            Self::TooLarge(_) => &TOO_LARGE,
            Self::Malformed(_) => &MALFORMED,
            Self::Interrupted => {
                debug!(component, method, "request body interrupted");
                return self.status();
            }
        };
        if let Some(refused) = sampled.hit() {
            warn!(component, method, refused, "call refused: {self}");
        }
        self.status()
    }
}

/// Reads the request's one message: the whole body, within `limits.within`,
/// at most `limits.max_message_bytes` of message, framed as one gRPC
/// message (`headers` say whether the flag may say compressed).
///
/// # Errors
/// Why the body is refused.
pub async fn read_one_message<B>(
    headers: &http::HeaderMap,
    body: B,
    limits: BodyLimits,
) -> Result<Bytes, BodyRefusal>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let limit = limits.max_message_bytes.saturating_add(FRAME_HEADER);
    let collected = tokio::time::timeout(limits.within, Limited::new(body, limit).collect())
        .await
        .map_err(|_| BodyRefusal::TimedOut(limits.within))?;
    let bytes = match collected {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return Err(BodyRefusal::TooLarge(limits.max_message_bytes));
        }
        Err(_) => return Err(BodyRefusal::Interrupted),
    };
    check_one_message(&bytes, compression_named(headers), limits.max_message_bytes)?;
    Ok(bytes)
}

/// Whether the call names a compression (`grpc-encoding` other than
/// `identity`), so its messages may be flagged compressed.
fn compression_named(headers: &http::HeaderMap) -> bool {
    headers
        .get("grpc-encoding")
        .is_some_and(|e| e.as_bytes() != b"identity")
}

/// The frame header at the start of `bytes`, if it is whole: the
/// compressed flag and the message's length.
fn frame_header(bytes: &[u8]) -> Option<(u8, usize)> {
    let header: &[u8; FRAME_HEADER] = bytes.get(..FRAME_HEADER)?.try_into().ok()?;
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    Some((header[0], usize::try_from(len).unwrap_or(usize::MAX)))
}

/// The checks of a frame header: its flag, and the length against `max`.
fn check_header(flag: u8, len: usize, compressed_ok: bool, max: usize) -> Result<(), BodyRefusal> {
    match flag {
        0 => {}
        1 if compressed_ok => {}
        1 => {
            return Err(BodyRefusal::Malformed(
                "the compressed flag is set but the call names no grpc-encoding".into(),
            ));
        }
        f => {
            return Err(BodyRefusal::Malformed(format!(
                "compressed flag {f} (it is 0 or 1)"
            )));
        }
    }
    if len > max {
        return Err(BodyRefusal::TooLarge(max));
    }
    Ok(())
}

/// `bytes` is exactly one gRPC frame of at most `max` bytes of message.
///
/// # Errors
/// What is wrong with it.
pub fn check_one_message(bytes: &[u8], compressed_ok: bool, max: usize) -> Result<(), BodyRefusal> {
    if bytes.is_empty() {
        return Err(BodyRefusal::Malformed(
            "empty body: the call carries no message".into(),
        ));
    }
    let Some((flag, len)) = frame_header(bytes) else {
        return Err(BodyRefusal::Malformed(format!(
            "truncated frame: {} of the 5 header bytes",
            bytes.len()
        )));
    };
    check_header(flag, len, compressed_ok, max)?;
    let arrived = bytes.len() - FRAME_HEADER;
    if arrived < len {
        return Err(BodyRefusal::Malformed(format!(
            "truncated frame: the message is {len} bytes, {arrived} arrived"
        )));
    }
    if arrived > len {
        return Err(BodyRefusal::Malformed(
            "more than one message in a call that takes one".into(),
        ));
    }
    Ok(())
}

/// Reads a streaming request's first message (or the whole body, if it ends
/// first) within `limits.within`; returns the bytes read and the body
/// still to read.
async fn read_first_message<B>(
    headers: &http::HeaderMap,
    mut body: Pin<Box<B>>,
    limits: BodyLimits,
) -> Result<(Bytes, Pin<Box<B>>), BodyRefusal>
where
    B: Body<Data = Bytes>,
{
    let compressed_ok = compression_named(headers);
    let read = async {
        let mut first = BytesMut::new();
        loop {
            if let Some((flag, len)) = frame_header(&first) {
                check_header(flag, len, compressed_ok, limits.max_message_bytes)?;
                if first.len() - FRAME_HEADER >= len {
                    return Ok(first.freeze());
                }
            }
            match body.frame().await {
                None => return Ok(first.freeze()),
                Some(Err(_)) => return Err(BodyRefusal::Interrupted),
                Some(Ok(frame)) => {
                    if let Ok(mut data) = frame.into_data() {
                        while data.has_remaining() {
                            let chunk = data.chunk();
                            first.extend_from_slice(chunk);
                            let n = chunk.len();
                            data.advance(n);
                        }
                    }
                }
            }
        }
    };
    let first = tokio::time::timeout(limits.within, read)
        .await
        .map_err(|_| BodyRefusal::TimedOut(limits.within))??;
    Ok((first, body))
}

/// A body whose first bytes were already read: those, then the rest.
struct Prefixed<B> {
    first: Option<Bytes>,
    rest: Pin<Box<B>>,
}

impl<B> Body for Prefixed<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(first) = this.first.take().filter(|b| !b.is_empty()) {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        this.rest.as_mut().poll_frame(cx).map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.first.as_ref().is_none_or(Bytes::is_empty) && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let mut hint = self.rest.size_hint();
        let first = self
            .first
            .as_ref()
            .map_or(0, |b| u64::try_from(b.len()).unwrap_or(u64::MAX));
        hint.set_lower(hint.lower().saturating_add(first));
        if let Some(upper) = hint.upper() {
            hint.set_upper(upper.saturating_add(first));
        }
        hint
    }
}

/// Reads and checks every request body before the inner service sees it
/// (see the module docs). Calls outside [`Self::only_under`] pass
/// untouched.
#[derive(Debug, Clone)]
pub struct RequestBodyLayer {
    component: &'static str,
    limits: BodyLimits,
    /// `/package.Service/Method` of the methods whose request streams.
    streaming_requests: Arc<HashSet<String>>,
    only_under: Option<Arc<[&'static str]>>,
}

impl RequestBodyLayer {
    /// For the server of `component` (named in the logs).
    pub fn new(component: &'static str, limits: BodyLimits) -> Self {
        Self {
            component,
            limits,
            streaming_requests: Arc::new(streaming_requests()),
            only_under: None,
        }
    }

    /// Reads only the bodies of calls under these path prefixes (the
    /// gateway's own services; the calls it forwards are read by its proxy,
    /// after their token was checked).
    #[must_use]
    pub fn only_under(mut self, prefixes: &[&'static str]) -> Self {
        self.only_under = Some(prefixes.into());
        self
    }
}

/// The methods whose request streams, in the API and the services every
/// server adds (health, reflection).
fn streaming_requests() -> HashSet<String> {
    [
        proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ]
    .into_iter()
    .filter_map(|set| prost_types::FileDescriptorSet::decode(set).ok())
    .flat_map(|set| set.file)
    .flat_map(|file| {
        let package = file.package().to_owned();
        file.service.into_iter().flat_map(move |service| {
            let prefix = format!("/{package}.{}/", service.name());
            service
                .method
                .into_iter()
                .filter(prost_types::MethodDescriptorProto::client_streaming)
                .map(move |m| format!("{prefix}{}", m.name()))
        })
    })
    .collect()
}

impl<S> Layer<S> for RequestBodyLayer {
    type Service = RequestBody<S>;

    fn layer(&self, inner: S) -> RequestBody<S> {
        RequestBody {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`RequestBodyLayer`] makes.
#[derive(Debug, Clone)]
pub struct RequestBody<S> {
    inner: S,
    layer: RequestBodyLayer,
}

type Response = http::Response<tonic::body::Body>;

impl<S, B> Service<http::Request<B>> for RequestBody<S>
where
    S: Service<http::Request<tonic::body::Body>, Response = Response> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // The ready service serves this call; a clone takes its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let path = request.uri().path();
        let passes = self
            .layer
            .only_under
            .as_ref()
            .is_some_and(|only| !only.iter().any(|p| path.starts_with(p)));
        if passes {
            return Box::pin(inner.call(request.map(tonic::body::Body::new)));
        }
        let streaming = self.layer.streaming_requests.contains(path);
        let (component, limits) = (self.layer.component, self.layer.limits);
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let path = parts.uri.path().to_owned();
            let body = if streaming {
                read_first_message(&parts.headers, Box::pin(body), limits)
                    .await
                    .map(|(first, rest)| {
                        tonic::body::Body::new(Prefixed {
                            first: Some(first),
                            rest,
                        })
                    })
            } else {
                read_one_message(&parts.headers, body, limits)
                    .await
                    .map(|bytes| tonic::body::Body::new(Full::new(bytes)))
            };
            let body = match body {
                Ok(body) => body,
                Err(refusal) => return Ok(refusal.refuse(component, &path).into_http()),
            };
            let response = inner.call(http::Request::from_parts(parts, body)).await?;
            Ok(match undecodable(&response) {
                Some(detail) => {
                    static UNDECODABLE: Sampled = Sampled::new();
                    let method = known_method(&path);
                    if let Some(refused) = UNDECODABLE.hit() {
                        warn!(component, method, refused, "call refused: {detail}");
                    }
                    reason(
                        Code::InvalidArgument,
                        reasons::MALFORMED_MESSAGE,
                        format!("the request message cannot be decoded: {detail}"),
                        &[],
                    )
                    .into_http()
                }
                None => response,
            })
        })
    }
}

/// tonic's answer to a request message it could not decode (`INTERNAL`,
/// trailers only): the decoder's description.
fn undecodable(response: &Response) -> Option<String> {
    let status = Status::from_header_map(response.headers())?;
    (status.code() == Code::Internal && status.message().starts_with(DECODE_FAILURE))
        .then(|| status.message().to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use tonic_types::StatusExt as _;
    use tower::ServiceExt as _;

    use super::*;

    const LIMITS: BodyLimits = BodyLimits {
        max_message_bytes: 16,
        within: Duration::from_secs(2),
    };

    fn frame(flag: u8, message: &[u8]) -> Vec<u8> {
        let mut out = vec![flag];
        out.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
        out.extend_from_slice(message);
        out
    }

    fn malformed(r: Result<(), BodyRefusal>) -> String {
        match r {
            Err(BodyRefusal::Malformed(what)) => what,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn one_whole_uncompressed_message_is_the_only_framing_accepted() {
        assert_eq!(check_one_message(&frame(0, b"abc"), false, 16), Ok(()));
        assert_eq!(check_one_message(&frame(0, b""), false, 16), Ok(()));
        assert_eq!(check_one_message(&frame(1, b"abc"), true, 16), Ok(()));

        assert!(malformed(check_one_message(b"", false, 16)).contains("empty body"));
        assert!(malformed(check_one_message(&[0, 0, 0], false, 16)).contains("3 of the 5"));
        let flagged = malformed(check_one_message(&frame(1, b"abc"), false, 16));
        assert!(flagged.contains("no grpc-encoding"), "{flagged}");
        assert!(malformed(check_one_message(&frame(7, b"abc"), true, 16)).contains("flag 7"));
        let mut cut = frame(0, b"abcdef");
        cut.truncate(8);
        let truncated = malformed(check_one_message(&cut, false, 16));
        assert!(truncated.contains("6 bytes, 3 arrived"), "{truncated}");
        let mut two = frame(0, b"ab");
        two.extend(frame(0, b"cd"));
        assert!(malformed(check_one_message(&two, false, 16)).contains("more than one"));
        // A header announcing more than the limit is too large, whatever follows.
        assert_eq!(
            check_one_message(&frame(0, &[0; 17]), false, 16),
            Err(BodyRefusal::TooLarge(16))
        );
    }

    #[test]
    fn each_refusal_has_its_code_and_reason() {
        for (refusal, code, why) in [
            (
                BodyRefusal::TimedOut(Duration::from_secs(2)),
                Code::Cancelled,
                reasons::REQUEST_BODY_TIMEOUT,
            ),
            (
                BodyRefusal::TooLarge(16),
                Code::ResourceExhausted,
                reasons::MESSAGE_TOO_LARGE,
            ),
            (
                BodyRefusal::Malformed("x".into()),
                Code::InvalidArgument,
                reasons::MALFORMED_FRAME,
            ),
        ] {
            let s = refusal.status();
            assert_eq!(s.code(), code);
            assert_eq!(s.get_error_details().error_info().unwrap().reason, why);
        }
        assert!(
            BodyRefusal::TimedOut(Duration::from_secs(2))
                .status()
                .message()
                .contains("within 2000 ms")
        );
    }

    /// A service that answers each call with the bytes of its body (as a
    /// `grpc-message`, enough to compare) or the status `answer` gives.
    fn echo(
        answer: Option<Status>,
    ) -> impl Service<
        http::Request<tonic::body::Body>,
        Response = Response,
        Error = std::convert::Infallible,
        Future = BoxFuture<'static, Result<Response, std::convert::Infallible>>,
    > + Clone {
        tower::service_fn(move |r: http::Request<tonic::body::Body>| {
            let answer = answer.clone();
            Box::pin(async move {
                let body = r.into_body().collect().await.unwrap().to_bytes();
                Ok(answer
                    .unwrap_or_else(|| Status::new(Code::Ok, format!("{body:?}")))
                    .into_http())
            }) as BoxFuture<'static, _>
        })
    }

    fn call(path: &str, body: tonic::body::Body) -> http::Request<tonic::body::Body> {
        http::Request::builder()
            .uri(format!("http://x{path}"))
            .body(body)
            .unwrap()
    }

    fn status(r: &Response) -> Status {
        Status::from_header_map(r.headers()).unwrap()
    }

    fn trickling() -> tonic::body::Body {
        tonic::body::Body::new(http_body_util::StreamBody::new(futures::stream::pending::<
            Result<Frame<Bytes>, std::io::Error>,
        >()))
    }

    const UNARY: &str = "/roaming.reservation.v1.ReservationService/GetReservation";
    const BIDI: &str = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";

    #[test]
    fn reflection_is_the_streaming_request_and_the_api_has_none() {
        let streaming = streaming_requests();
        assert!(streaming.contains(BIDI));
        assert!(
            streaming.contains("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")
        );
        assert_eq!(streaming.len(), 2, "{streaming:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_does_not_arrive_in_time_never_reaches_the_service() {
        let svc =
            RequestBodyLayer::new("test", LIMITS).layer(echo(Some(Status::internal("reached"))));
        let started = tokio::time::Instant::now();
        let answered = svc.clone().oneshot(call(UNARY, trickling())).await.unwrap();
        assert_eq!(started.elapsed(), LIMITS.within);
        let s = status(&answered);
        assert_eq!(s.code(), Code::Cancelled, "{s:?}");
        // A stream's first message is held to the same time.
        let answered = svc.oneshot(call(BIDI, trickling())).await.unwrap();
        assert_eq!(status(&answered).code(), Code::Cancelled);
    }

    #[tokio::test]
    async fn a_whole_message_passes_and_a_malformed_one_is_invalid() {
        let svc = RequestBodyLayer::new("test", LIMITS).layer(echo(None));
        let good = frame(0, b"abc");
        let answered = svc
            .clone()
            .oneshot(call(
                UNARY,
                tonic::body::Body::new(Full::new(Bytes::from(good.clone()))),
            ))
            .await
            .unwrap();
        assert_eq!(
            status(&answered).message(),
            format!("{:?}", Bytes::from(good))
        );
        for bad in [vec![], frame(1, b"abc"), vec![0, 0, 0, 0, 9, 1]] {
            let answered = svc
                .clone()
                .oneshot(call(
                    UNARY,
                    tonic::body::Body::new(Full::new(Bytes::from(bad.clone()))),
                ))
                .await
                .unwrap();
            assert_eq!(status(&answered).code(), Code::InvalidArgument, "{bad:?}");
        }
    }

    #[tokio::test]
    async fn a_streams_first_message_is_read_and_the_rest_follows() {
        let svc = RequestBodyLayer::new("test", LIMITS).layer(echo(None));
        let mut sent = frame(0, b"first");
        sent.extend(frame(0, b"second"));
        let chunks: Vec<Result<Frame<Bytes>, std::io::Error>> = sent
            .chunks(3)
            .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
            .collect();
        let body = tonic::body::Body::new(http_body_util::StreamBody::new(futures::stream::iter(
            chunks,
        )));
        let answered = svc.oneshot(call(BIDI, body)).await.unwrap();
        assert_eq!(
            status(&answered).message(),
            format!("{:?}", Bytes::from(sent))
        );
    }

    #[tokio::test]
    async fn tonics_decode_failure_becomes_invalid_argument_and_other_paths_pass() {
        let failed = Status::internal("failed to decode Protobuf message: invalid wire type");
        let svc = RequestBodyLayer::new("test", LIMITS).layer(echo(Some(failed)));
        let answered = svc
            .clone()
            .oneshot(call(
                UNARY,
                tonic::body::Body::new(Full::new(Bytes::from(frame(0, b"\xff")))),
            ))
            .await
            .unwrap();
        let s = status(&answered);
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(
            s.get_error_details().error_info().unwrap().reason,
            reasons::MALFORMED_MESSAGE
        );
        assert!(s.message().contains("invalid wire type"), "{s:?}");

        // Outside `only_under`, a body is not read at all (nor checked).
        let svc = RequestBodyLayer::new("test", LIMITS)
            .only_under(&["/grpc."])
            .layer(echo(None));
        let answered = svc
            .oneshot(call(UNARY, tonic::body::Body::empty()))
            .await
            .unwrap();
        assert_eq!(status(&answered).code(), Code::Ok);
    }
}
