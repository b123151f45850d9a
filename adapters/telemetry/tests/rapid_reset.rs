//! A client that resets HTTP/2 streams faster than the server accepts them
//! ("rapid reset", CVE-2023-44487) is refused by h2 itself (GOAWAY
//! `ENHANCE_YOUR_CALM`), which writes one WARN line per connection. With
//! [`ProtocolRefusals`] in the subscriber, as `adapters_telemetry::init` puts
//! it, many such connections make one line a second with their count, over
//! a real socket against tonic's server. This binary's only test: the
//! subscriber is global.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests"
)]

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use adapters_telemetry::protocol::ProtocolRefusals;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Log lines written to memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// An HTTP/2 frame: length, type, flags, stream, payload.
fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    out.extend_from_slice(&len[1..]);
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const END_HEADERS: u8 = 0x4;
const CANCEL: u32 = 0x8;
const ENHANCE_YOUR_CALM: u32 = 0xb;

/// Connections that reset streams too fast.
const ATTACKS: usize = 5;

/// Opens `streams` streams and resets each at once, all in one write (the
/// server reads them before it accepts any); the error code of the GOAWAY
/// the server answers with, if any within 5 s.
async fn rapid_reset(addr: SocketAddr, streams: u32) -> Option<u32> {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    frame(&mut out, SETTINGS, 0, 0, &[]);
    // HPACK: :method POST, :scheme http, :path /, :authority "a" (literal,
    // not indexed).
    let block = [0x83, 0x86, 0x84, 0x01, 0x01, b'a'];
    for i in 0..streams {
        let id = 1 + 2 * i;
        frame(&mut out, HEADERS, END_HEADERS, id, &block);
        frame(&mut out, RST_STREAM, 0, id, &CANCEL.to_be_bytes());
    }
    socket.write_all(&out).await.unwrap();
    let mut read = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        // Every whole frame read so far.
        let mut at = 0;
        while read.len() >= at + 9 {
            let len = usize::from(read[at]) << 16
                | usize::from(read[at + 1]) << 8
                | usize::from(read[at + 2]);
            if read.len() < at + 9 + len {
                break;
            }
            if read[at + 3] == GOAWAY {
                let code = &read[at + 9 + 4..at + 9 + 8];
                return Some(u32::from_be_bytes(code.try_into().unwrap()));
            }
            at += 9 + len;
        }
        let mut buf = [0_u8; 4096];
        match tokio::time::timeout_at(deadline, socket.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => read.extend_from_slice(&buf[..n]),
            _ => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_resets_are_refused_by_h2_and_logged_once_a_second_with_their_count() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new(
            adapters_telemetry::DEFAULT_FILTER,
        ))
        .with(ProtocolRefusals::new())
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(move || writer.clone()),
        )
        .init();

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_routes(tonic::service::Routes::default())
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );

    // h2 allows 20 streams reset before they were accepted per connection;
    // 25 are too many.
    for _ in 0..ATTACKS {
        assert_eq!(rapid_reset(addr, 25).await, Some(ENHANCE_YOUR_CALM));
    }

    // One line for the five connections (the reporter writes within a
    // second of the first), carrying their count and h2's words; none of
    // h2's own lines.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let reports = loop {
        let reports: Vec<String> = captured
            .lines()
            .into_iter()
            .filter(|l| l.contains("HTTP/2 protocol refusal"))
            .collect();
        let counted: u64 = reports
            .iter()
            .filter_map(|l| l.split("refused=").nth(1))
            .filter_map(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .sum();
        if counted >= ATTACKS as u64 {
            break reports;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            captured.lines()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let lines = captured.lines();
    assert!(
        reports.len() <= 2,
        "at most one line a second (the attack spans two seconds at worst): {lines:?}"
    );
    assert!(
        reports[0].contains("remotely-reset pending-accept streams reached limit"),
        "{lines:?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("h2::proto")),
        "h2's own lines are sampled: {lines:?}"
    );
    println!(
        "{ATTACKS} refused connections, {} line(s): {reports:?}",
        reports.len()
    );
}
