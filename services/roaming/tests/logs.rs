//! No card number, bearer token or password in any log line, at debug level,
//! in JSON (fields included), across successful, declined, invalid and
//! unauthenticated calls. This test binary's only test: the subscriber is global.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests"
)]

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use proto::auth::IssueTokenRequest;
use proto::auth::auth_service_client::AuthServiceClient;
use proto::view as pv;
use support::*;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn secrets_appear_in_no_log_line() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("debug"))
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_span_list(true)
                .with_current_span(true)
                .with_writer(move || writer.clone()),
        )
        .init();

    let m = TestMesh::start_with(|s| s.payment.fault_failure_rate = 0.0).await;
    let token = token(ALICE);
    let mut reservations = m.reservation().await;
    // Paid, declined, and refused as invalid (a number that fails Luhn).
    reservations
        .reserve_roaming(with_token(&token, roaming_request("log-ok", 3, 4)))
        .await
        .unwrap();
    let mut declined = roaming_request("log-declined", 3, 4);
    declined.payment = Some(card_number("4000000000000002"));
    reservations
        .reserve_roaming(with_token(&token, declined))
        .await
        .unwrap_err();
    let mut invalid = roaming_request("log-invalid", 3, 4);
    invalid.payment = Some(card_number("4111111111111112"));
    let e = reservations
        .reserve_roaming(with_token(&token, invalid))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    // A tampered token and a wrong password.
    let tampered = format!("{token}x");
    m.view()
        .await
        .list_my_reservations(with_token(
            &tampered,
            pv::ListMyReservationsRequest::default(),
        ))
        .await
        .unwrap_err();
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", m.addrs().view))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let issued = AuthServiceClient::new(channel.clone())
        .issue_token(IssueTokenRequest {
            username: "alice".into(),
            password: "demo".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .access_token;
    AuthServiceClient::new(channel)
        .issue_token(IssueTokenRequest {
            username: "alice".into(),
            password: "Sup3r-Secret-Passw0rd".into(),
        })
        .await
        .unwrap_err();
    m.stop().await;

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines = logs.lines().count();
    assert!(lines > 20, "the capture works: {lines} lines");
    assert!(
        logs.contains("login refused"),
        "the failed login was logged"
    );
    // The separator-free form and the grouped form a client might send.
    for secret in [
        "4111111111111111",
        "4111 1111 1111 1111",
        "4000000000000002",
        "4111111111111112",
        token.as_str(),
        tampered.as_str(),
        issued.as_str(),
        "Sup3r-Secret-Passw0rd",
    ] {
        if let Some(line) = logs.lines().find(|l| l.contains(secret)) {
            panic!("a secret is in the logs: {line}");
        }
    }
    // No part of a token's signature either (the last segment).
    let signature = token.rsplit('.').next().unwrap();
    assert!(!logs.contains(signature));
}
