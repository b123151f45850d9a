//! Accepting connections without letting strangers exhaust the process: a cap
//! on concurrent connections per server and per peer address, and a handshake
//! deadline (a connection that has not sent its first bytes within it, or not
//! finished its TLS handshake, is closed). Idle TCP connections that never
//! sent a byte used to be held forever, until the process ran out of file
//! descriptors.
//!
//! On a port with TLS ([`ServerTls`]) a connection whose first byte starts a
//! TLS handshake (`0x16`) is TLS, any other plaintext: one port serves both,
//! and what plaintext may call is the [`crate::tls::guard`]'s decision. Each
//! request carries its connection's [`Peer`] in its extensions.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;
use tracing::warn;

use crate::peer::{Peer, PeerTls};
use crate::tls::ServerTls;

/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// Limits of one listening server.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Connections open at once; more are closed at accept.
    pub max_connections: usize,
    /// Connections open at once from one IP address.
    pub max_per_peer: usize,
    /// How long a new connection may take to send its first bytes.
    pub handshake_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 4_096,
            max_per_peer: 512,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// Counts open connections per peer.
#[derive(Debug, Default)]
struct Peers(Mutex<HashMap<IpAddr, usize>>);

impl Peers {
    fn enter(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<PeerSlot> {
        let mut peers = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let n = peers.entry(ip).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            peers: Arc::clone(self),
            ip,
        })
    }
}

/// One connection's place in its peer's count, given back on drop.
#[derive(Debug)]
struct PeerSlot {
    peers: Arc<Peers>,
    ip: IpAddr,
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut peers = self.peers.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = peers.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                peers.remove(&self.ip);
            }
        }
    }
}

#[derive(Debug)]
enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// An accepted connection holding its places in the limits until it closes.
#[derive(Debug)]
pub struct Limited {
    io: Io,
    peer: Peer,
    _permit: OwnedSemaphorePermit,
    _peer: PeerSlot,
}

impl Connected for Limited {
    type ConnectInfo = Peer;

    fn connect_info(&self) -> Peer {
        self.peer.clone()
    }
}

macro_rules! on_io {
    ($self:ident, $s:ident => $e:expr) => {
        match &mut $self.io {
            Io::Plain($s) => {
                let $s = Pin::new($s);
                $e
            }
            Io::Tls($s) => {
                let $s = Pin::new(&mut **$s);
                $e
            }
        }
    };
}

impl AsyncRead for Limited {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        on_io!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for Limited {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        on_io!(self, s => s.poll_write(cx, buf))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        on_io!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        on_io!(self, s => s.poll_shutdown(cx))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        on_io!(self, s => s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// Logs a refusal at WARN, at most once a second per server (an attack must
/// not turn into a log flood), with how many were refused since.
#[derive(Debug)]
struct Sampled {
    server: &'static str,
    last: Mutex<(Option<Instant>, u64)>,
}

impl Sampled {
    fn refused(&self, why: &dyn std::fmt::Display, peer: IpAddr) {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        last.1 += 1;
        if last.0.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            warn!(server = self.server, %peer, refused = last.1, "connection refused: {why}");
            *last = (Some(Instant::now()), 0);
        }
    }
}

/// The connections of `listener` that passed the limits (and, with `tls`,
/// whose TLS handshake succeeded), for `serve_with_incoming_shutdown`.
/// Accepting stops when the stream is dropped.
pub fn limited(
    server: &'static str,
    listener: TcpListener,
    limits: ConnectionLimits,
    tls: Option<ServerTls>,
) -> ReceiverStream<io::Result<Limited>> {
    let (tx, rx) = mpsc::channel(64);
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let peers = Arc::new(Peers::default());
    let log = Arc::new(Sampled {
        server,
        last: Mutex::new((None, 0)),
    });
    tokio::spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                () = tx.closed() => return,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of descriptors, say: wait a little, keep serving.
                        warn!(server, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let Ok(permit) = Arc::clone(&open).try_acquire_owned() else {
                log.refused(&"too many connections", peer.ip());
                continue;
            };
            let Some(slot) = peers.enter(peer.ip(), limits.max_per_peer) else {
                log.refused(&"too many connections from this address", peer.ip());
                continue;
            };
            let _ = stream.set_nodelay(true);
            let tx = tx.clone();
            let log = Arc::clone(&log);
            let tls = tls.clone();
            tokio::spawn(async move {
                // The first bytes (and a TLS handshake) must come within the
                // handshake deadline.
                let deadline = tokio::time::Instant::now() + limits.handshake_timeout;
                let mut first = [0_u8; 1];
                let io = match tokio::time::timeout_at(deadline, stream.peek(&mut first)).await {
                    Ok(Ok(n)) if n > 0 => match tls {
                        Some(tls) if first[0] == TLS_HANDSHAKE => {
                            match tokio::time::timeout_at(deadline, tls.acceptor().accept(stream))
                                .await
                            {
                                Ok(Ok(tls)) => Io::Tls(Box::new(tls)),
                                Ok(Err(e)) => {
                                    drop((slot, permit));
                                    log.refused(
                                        &format_args!("TLS handshake failed: {e}"),
                                        peer.ip(),
                                    );
                                    return;
                                }
                                Err(_) => {
                                    drop((slot, permit));
                                    log.refused(&"no TLS handshake within the deadline", peer.ip());
                                    return;
                                }
                            }
                        }
                        _ => Io::Plain(stream),
                    },
                    Ok(_) => return drop((slot, permit, stream)),
                    Err(_) => {
                        // The places first, then the socket: once the peer
                        // sees the close, its place is free again.
                        drop((slot, permit));
                        drop(stream);
                        log.refused(&"no handshake within the deadline", peer.ip());
                        return;
                    }
                };
                let (tcp, tls) = match &io {
                    Io::Plain(s) => (s.connect_info(), None),
                    Io::Tls(s) => (
                        s.get_ref().0.connect_info(),
                        Some(PeerTls::of(s.get_ref().1)),
                    ),
                };
                let _ = tx
                    .send(Ok(Limited {
                        io,
                        peer: Peer { tcp, tls },
                        _permit: permit,
                        _peer: slot,
                    }))
                    .await;
            });
        }
    });
    ReceiverStream::new(rx)
}
