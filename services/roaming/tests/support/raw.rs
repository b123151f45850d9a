//! gRPC calls made by hand over HTTP/2 (the `h2` crate), for what a tonic
//! client never sends: malformed frames, a body that never ends, any
//! `grpc-timeout`.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use h2::client::{ResponseFuture, SendRequest};
use tokio::time::Instant;
use tonic::Status;

/// An HTTP/2 connection to `addr`.
pub async fn connect(addr: SocketAddr) -> SendRequest<Bytes> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = tcp.set_nodelay(true);
    let (send, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    send
}

/// `message` as one gRPC frame (uncompressed).
pub fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// `Bearer <token>` for `authorization`.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn head(path: &str, headers: &[(&str, &str)]) -> http::Request<()> {
    let mut request = http::Request::post(format!("http://mesh{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(()).unwrap()
}

/// A call to `path` with `headers` whose body is `body`, ended: its status
/// (`OK` when it succeeded).
pub async fn call(
    connection: &SendRequest<Bytes>,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Status {
    let mut ready = connection.clone().ready().await.unwrap();
    let (response, mut stream) = match ready.send_request(head(path, headers), body.is_empty()) {
        Ok(sent) => sent,
        Err(e) => return Status::unknown(format!("h2: {e}")),
    };
    if !body.is_empty() {
        let _ = stream.send_data(Bytes::copy_from_slice(body), true);
    }
    status_of(response).await
}

/// A call to `path` with `headers` that sends `partial` and then nothing,
/// never ending its body: its status, and how long after its head it came.
pub async fn unfinished(
    connection: &SendRequest<Bytes>,
    path: &str,
    headers: &[(&str, &str)],
    partial: &[u8],
) -> (Status, Duration) {
    let mut ready = connection.clone().ready().await.unwrap();
    let started = Instant::now();
    let (response, mut stream) = match ready.send_request(head(path, headers), false) {
        Ok(sent) => sent,
        Err(e) => return (Status::unknown(format!("h2: {e}")), started.elapsed()),
    };
    if !partial.is_empty() {
        let _ = stream.send_data(Bytes::copy_from_slice(partial), false);
    }
    let status = status_of(response).await;
    // The stream stays open on our side until the answer came.
    drop(stream);
    (status, started.elapsed())
}

/// The status of an answer: in its headers (trailers only), else in its
/// trailers after the messages.
async fn status_of(response: ResponseFuture) -> Status {
    let response = match response.await {
        Ok(response) => response,
        Err(e) => return Status::unknown(format!("h2: {e}")),
    };
    if let Some(status) = Status::from_header_map(response.headers()) {
        return status;
    }
    let mut body = response.into_body();
    while let Some(data) = body.data().await {
        match data {
            Ok(data) => {
                let _ = body.flow_control().release_capacity(data.len());
            }
            Err(e) => return Status::unknown(format!("h2: {e}")),
        }
    }
    match body.trailers().await {
        Ok(Some(trailers)) => Status::from_header_map(&trailers)
            .unwrap_or_else(|| Status::unknown("trailers without grpc-status")),
        Ok(None) => Status::unknown("no trailers"),
        Err(e) => Status::unknown(format!("h2: {e}")),
    }
}
