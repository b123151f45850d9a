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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_follow_the_provider_at_a_bounded_rate() {
    let (a, b) = (
        SigningKey::generate().unwrap(),
        SigningKey::generate().unwrap(),
    );
    let provider = Provider::default();
    provider.publish(&[&a]);
    let url = provider.clone().serve().await;
    let verifier = Verifier::new(Vec::new(), &Audience::default());
    let mut config = JwksConfig::new(&url).unwrap();
    config.refresh_every = Duration::from_hours(1);
    config.min_interval = Duration::from_millis(500);
    let source = JwksSource::new(config, verifier.clone()).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(source.run(async {
        let _ = stopped.await;
    }));

    // Fetched at start.
    until("the first fetch", || verifier.verify(&token(&a)).is_ok()).await;

    // The provider rotates to b: the first b token is refused, and makes
    // the source look again; a moment later b verifies and a no longer does
    // (although a's token had been verified and remembered).
    provider.publish(&[&b]);
    assert!(unknown_key(verifier.verify(&token(&b))));
    until("the rotated key", || verifier.verify(&token(&b)).is_ok()).await;
    assert!(unknown_key(verifier.verify(&token(&a))), "withdrawn key");

    // A flood of tokens naming keys nobody publishes: at most one fetch per
    // min_interval (500 ms), not one per token.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let before = provider.hits.load(Ordering::SeqCst);
    let strangers: Vec<String> = (0..20)
        .map(|_| token(&SigningKey::generate().unwrap()))
        .collect();
    let flood_started = std::time::Instant::now();
    while flood_started.elapsed() < Duration::from_millis(1_500) {
        for t in &strangers {
            assert!(unknown_key(verifier.verify(t)));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let during = provider.hits.load(Ordering::SeqCst) - before;
    assert!(
        (1..=4).contains(&during),
        "{during} fetches in 1.5 s of unknown kids at a 500 ms minimum interval"
    );

    // The provider fails: the keys we have stay.
    provider.failing.store(true, Ordering::SeqCst);
    let before = provider.hits.load(Ordering::SeqCst);
    let _ = verifier.verify(&strangers[0]);
    until("a failed fetch", || {
        provider.hits.load(Ordering::SeqCst) > before
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        verifier.verify(&token(&b)).is_ok(),
        "kept through a failure"
    );

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
