//! Keys from a JWKS URL (issue 17): fetched at start, fetched again when a
//! token names an unknown key (at a bounded rate, however many such tokens
//! arrive), withdrawn keys stop verifying, and a provider that fails keeps
//! the keys we had. Against a real HTTP server on loopback.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests"
)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use adapters_auth::{
    Audience, AuthError, Issuer, JwksConfig, JwksSource, Refusal, SigningKey, Verifier,
};
use domain_kernel::Principal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A JWKS endpoint whose document the test changes; counts requests, and
/// answers 500 while `failing`.
#[derive(Clone, Default)]
struct Provider {
    document: Arc<Mutex<String>>,
    hits: Arc<AtomicUsize>,
    failing: Arc<AtomicBool>,
}

impl Provider {
    fn publish(&self, keys: &[&SigningKey]) {
        let keys: Vec<_> = keys
            .iter()
            .map(|k| serde_json::to_value(k.public_jwk().unwrap()).unwrap())
            .collect();
        *self.document.lock().unwrap() = serde_json::json!({ "keys": keys }).to_string();
    }

    async fn serve(self) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let me = self.clone();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    me.hits.fetch_add(1, Ordering::SeqCst);
                    let (status, body) = if me.failing.load(Ordering::SeqCst) {
                        ("500 Internal Server Error", String::new())
                    } else {
                        ("200 OK", me.document.lock().unwrap().clone())
                    };
                    let response = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                });
            }
        });
        url
    }
}

fn token(key: &SigningKey) -> String {
    Issuer::new(key.clone(), Audience::default(), Duration::from_mins(10))
        .issue(&Principal::operator("ops"))
        .unwrap()
}

async fn until(what: &str, mut ok: impl FnMut() -> bool) {
    for _ in 0..200 {
        if ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

fn unknown_key(r: Result<Principal, AuthError>) -> bool {
    matches!(r, Err(AuthError::Refused(Refusal::UnknownKey)))
}

/// A source over `provider`'s endpoint, fetching at most once per
/// [`MIN_INTERVAL`], running until the returned sender is used or dropped.
async fn running_source(
    provider: &Provider,
) -> (
    Verifier,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let url = provider.clone().serve().await;
    let verifier = Verifier::new(Vec::new(), &Audience::default());
    let mut config = JwksConfig::new(&url).unwrap();
    config.refresh_every = Duration::from_hours(1);
    config.min_interval = MIN_INTERVAL;
    // Longer than any test waits: under a paused clock, time jumps to the
    // next timer while a fetch's loopback I/O is in flight, and that timer
    // must be the test's, not the fetch's deadline.
    config.timeout = Duration::from_hours(1);
    let source = JwksSource::new(config, verifier.clone()).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(source.run(async {
        let _ = stopped.await;
    }));
    (verifier, stop, running)
}

const MIN_INTERVAL: Duration = Duration::from_millis(500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_follow_the_provider_and_survive_its_failures() {
    let (a, b) = (
        SigningKey::generate().unwrap(),
        SigningKey::generate().unwrap(),
    );
    let provider = Provider::default();
    provider.publish(&[&a]);
    let (verifier, stop, running) = running_source(&provider).await;

    // Fetched at start.
    until("the first fetch", || verifier.verify(&token(&a)).is_ok()).await;

    // The provider rotates to b: the first b token is refused, and makes
    // the source look again; a moment later b verifies and a no longer does
    // (although a's token had been verified and remembered).
    provider.publish(&[&b]);
    assert!(unknown_key(verifier.verify(&token(&b))));
    until("the rotated key", || verifier.verify(&token(&b)).is_ok()).await;
    assert!(unknown_key(verifier.verify(&token(&a))), "withdrawn key");

    // The provider fails: the keys we have stay. A failed fetch is retried
    // (after the minimum interval), so a second failed request shows that
    // the source has handled the first.
    provider.failing.store(true, Ordering::SeqCst);
    let before = provider.hits.load(Ordering::SeqCst);
    let stranger = token(&SigningKey::generate().unwrap());
    assert!(unknown_key(verifier.verify(&stranger)));
    until("a failed fetch and its retry", || {
        provider.hits.load(Ordering::SeqCst) >= before + 2
    })
    .await;
    assert!(
        verifier.verify(&token(&b)).is_ok(),
        "kept through a failure"
    );

    let _ = stop.send(());
    running.await.unwrap();
}

/// A flood of tokens naming keys nobody publishes costs the provider at
/// most one fetch per `min_interval`, not one per token. The clock is
/// paused (the source waits on tokio time), so the flood's 1.5 s are exact:
/// fetch starts are at least 500 ms apart, so at most four fall in it
/// (at 0, 0.5, 1 and 1.5 s), however the machine is loaded.
#[tokio::test(start_paused = true)]
async fn a_flood_of_unknown_keys_fetches_at_a_bounded_rate() {
    let a = SigningKey::generate().unwrap();
    let provider = Provider::default();
    provider.publish(&[&a]);
    let (verifier, stop, running) = running_source(&provider).await;
    // The fetch at start is done, and nothing has asked for another (no
    // token was verified yet): the source is idle until the flood.
    until("the first fetch", || !verifier.fetched().is_empty()).await;
    assert_eq!(provider.hits.load(Ordering::SeqCst), 1);
    assert!(verifier.verify(&token(&a)).is_ok());

    let strangers: Vec<String> = (0..20)
        .map(|_| token(&SigningKey::generate().unwrap()))
        .collect();
    let flood_started = tokio::time::Instant::now();
    while flood_started.elapsed() < Duration::from_millis(1_500) {
        for t in &strangers {
            assert!(unknown_key(verifier.verify(t)));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let during = provider.hits.load(Ordering::SeqCst) - 1;
    assert!(
        during <= 4,
        "{during} fetches in 1.5 s of unknown kids at a 500 ms minimum interval"
    );
    // And the flood did make the source look again.
    until("a fetch the flood asked for", || {
        provider.hits.load(Ordering::SeqCst) > 1
    })
    .await;

    let _ = stop.send(());
    running.await.unwrap();
}

#[tokio::test]
async fn a_document_without_an_ed25519_key_or_a_plain_http_provider_is_refused() {
    let provider = Provider::default();
    *provider.document.lock().unwrap() =
        r#"{"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0"}]}"#.to_owned();
    let url = provider.clone().serve().await;
    let verifier = Verifier::new(Vec::new(), &Audience::default());
    let source = JwksSource::new(JwksConfig::new(&url).unwrap(), verifier.clone()).unwrap();
    assert!(source.fetch().await.is_err());
    assert!(JwksConfig::new("http://idp.example.com/jwks.json").is_err());
    assert!(JwksConfig::new("https://idp.example.com/.well-known/jwks.json").is_ok());
    assert!(JwksConfig::new("http://[::1]:8080/jwks.json").is_ok());
}
