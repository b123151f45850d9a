//! A fair edge (issue 32, point 2), over real sockets against `roaming up`:
//! each principal's share of the gateway's calls in flight, request bodies
//! that must arrive in time on the gateway and every service port,
//! malformed gRPC frames and `grpc-timeout`s refused as the caller's fault
//! and never counted as server faults. A binary of its own: its flood would
//! slow the timing-sensitive tests of `limits.rs` down, and it reads the
//! process's RPC metrics.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests"
)]

mod support;

use proto::view as pv;
use support::*;
use tonic::{Code, Status};

/// The admin port's Prometheus text.
async fn scrape(admin: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(admin).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    text
}

/// `roaming_rpc_server_requests_total` by (component, method, code).
fn rpc_counts(text: &str) -> std::collections::BTreeMap<(String, String, String), f64> {
    let mut counts = std::collections::BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("roaming_rpc_server_requests_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.split_once("} ") else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=\"")))
                .map(|v| v.trim_end_matches('"').to_owned())
                .unwrap_or_default()
        };
        counts.insert(
            (label("component"), label("rpc_method"), label("grpc_code")),
            value.trim().parse().unwrap(),
        );
    }
    counts
}

/// What `RoamingHighErrorRate` counts as a server fault
/// (deploy/observability/prometheus-alerts.yaml).
const SERVER_FAULTS: [&str; 5] = ["2", "4", "13", "14", "15"];

/// The calls of `methods` counted with a server-fault code.
fn faults(
    counts: &std::collections::BTreeMap<(String, String, String), f64>,
    methods: &[&str],
) -> f64 {
    counts
        .iter()
        .filter(|((_, method, code), _)| {
            methods.contains(&method.as_str()) && SERVER_FAULTS.contains(&code.as_str())
        })
        .map(|(_, n)| n)
        .sum()
}

const ISSUE_TOKEN: &str = "/roaming.auth.v1.AuthService/IssueToken";
const GET_RESERVATION: &str = "/roaming.reservation.v1.ReservationService/GetReservation";
const GET_PAYMENT: &str = "/roaming.payment.v1.PaymentService/GetPayment";
const LIST_DEVICES: &str = "/roaming.rental.v1.RentalService/ListDevices";
const GET_SESSION: &str = "/roaming.parking.v1.ParkingService/GetSession";
const LIST_MINE: &str = "/roaming.view.v1.ViewService/ListMyReservations";
const HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";
/// The method the deadline test calls with malformed headers: not one of the
/// malformed-frame test's, whose counts must be its own (the metrics are the
/// process's, and the tests of this file run at once).
const LIST_OFFERS: &str = "/roaming.reservation.v1.ReservationService/ListDeviceOffers";

/// Who is called (named in failures), where, which method, with what
/// headers.
type Target<'a> = (
    &'a str,
    std::net::SocketAddr,
    &'a str,
    &'a [(&'a str, &'a str)],
);

/// Bodies that are not one gRPC message of the method, and the reason each
/// is refused with.
fn malformed() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    vec![
        ("empty body", vec![], "MALFORMED_FRAME"),
        (
            "compressed flag without grpc-encoding",
            vec![1, 0, 0, 0, 2, 0x0a, 0x00],
            "MALFORMED_FRAME",
        ),
        (
            "truncated frame",
            vec![0, 0, 0, 0, 9, 0x0a, 0x01],
            "MALFORMED_FRAME",
        ),
        ("truncated header", vec![0, 0], "MALFORMED_FRAME"),
        (
            "two messages",
            [raw::frame(b""), raw::frame(b"")].concat(),
            "MALFORMED_FRAME",
        ),
        // Field 1, length-delimited, announcing 5 bytes and carrying 2: no
        // message of the API decodes it.
        (
            "undecodable protobuf",
            raw::frame(&[0x0a, 0x05, b'a', b'b']),
            "MALFORMED_MESSAGE",
        ),
    ]
}

/// Issue 32, point 2: malformed gRPC framing and undecodable messages are
/// `INVALID_ARGUMENT` with a reason, not `INTERNAL`, on the gateway (its own
/// login, which needs no token, and the calls it forwards) and on every
/// service port (a health check, which needs no token either, included),
/// over a real socket; none of them is counted as a server fault, so no
/// stranger can move the error-rate alert. Without a token, a service port
/// never reads the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_are_invalid_argument_everywhere_and_never_a_server_fault() {
    let m = TestMesh::start_with(|s| {
        s.admin_listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    })
    .await;
    let admin = m.mesh().admin.as_ref().unwrap().addr;
    let before = rpc_counts(&scrape(admin).await);
    let alice = raw::bearer(&token(ALICE));
    let with_token = [("authorization", alice.as_str())];
    let direct = m.direct();
    let gateway = m.mesh().gateway.addr;
    let targets: Vec<Target<'_>> = vec![
        ("gateway, login (no token)", gateway, ISSUE_TOKEN, &[]),
        ("gateway, forwarded", gateway, GET_RESERVATION, &with_token),
        (
            "reservation",
            direct.reservation,
            GET_RESERVATION,
            &with_token,
        ),
        ("payment", direct.payment, GET_PAYMENT, &with_token),
        ("rental", direct.rental, LIST_DEVICES, &with_token),
        ("parking", direct.parking, GET_SESSION, &with_token),
        ("view", direct.view, LIST_MINE, &with_token),
        ("view, health (no token)", direct.view, HEALTH_CHECK, &[]),
    ];
    // Answers of calls the RPC metrics count (health is not counted).
    let mut counted = 0;
    for (target, addr, path, headers) in &targets {
        let connection = raw::connect(*addr).await;
        for (what, body, why) in malformed() {
            if *path == HEALTH_CHECK && why == "MALFORMED_MESSAGE" {
                // Field 1 of a health request is its service name: the
                // undecodable body is framing-correct and decodes as
                // truncated there too; asked below with its own body.
                continue;
            }
            let s = raw::call(&connection, path, headers, &body).await;
            assert_eq!(
                (s.code(), reason(&s).as_str()),
                (Code::InvalidArgument, why),
                "{target}, {what}: {s:?}"
            );
            if *path != HEALTH_CHECK {
                counted += 1;
            }
        }
    }
    // The health check's body: a string that is not UTF-8.
    let view = raw::connect(direct.view).await;
    let s = raw::call(&view, HEALTH_CHECK, &[], &raw::frame(&[0x0a, 0x01, 0xff])).await;
    assert_eq!(
        (s.code(), reason(&s).as_str()),
        (Code::InvalidArgument, "MALFORMED_MESSAGE"),
        "{s:?}"
    );
    // Without a token a service port refuses before it reads anything.
    let reservation = raw::connect(direct.reservation).await;
    let s = raw::call(&reservation, GET_RESERVATION, &[], &[1, 0, 0, 0, 9]).await;
    assert_eq!(s.code(), Code::Unauthenticated, "{s:?}");

    // Every answer was counted, none as a server fault.
    let methods = [
        ISSUE_TOKEN,
        GET_RESERVATION,
        GET_PAYMENT,
        LIST_DEVICES,
        GET_SESSION,
        LIST_MINE,
    ];
    let after = rpc_counts(&scrape(admin).await);
    assert!(
        (faults(&after, &methods) - faults(&before, &methods)).abs() < 0.5,
        "server faults counted: {after:?}"
    );
    let invalid = |counts: &std::collections::BTreeMap<(String, String, String), f64>| {
        counts
            .iter()
            .filter(|((_, method, code), _)| methods.contains(&method.as_str()) && code == "3")
            .map(|(_, n)| n)
            .sum::<f64>()
    };
    // A forwarded call counts at the gateway, and at the service when it
    // got there (the undecodable message: its framing is right).
    let expected = f64::from(counted + 1);
    let more = invalid(&after) - invalid(&before);
    assert!(
        (more - expected).abs() < 0.5,
        "{more} more, not {expected}: {after:?}"
    );
    println!("{counted} malformed calls counted: INVALID_ARGUMENT, server faults unchanged");
    m.stop().await;
}

/// Issue 32, point 2: a request body that never completes is cut
/// `request_body_timeout_ms` after its headers (`CANCELLED`,
/// `REQUEST_BODY_TIMEOUT`) on every service port, a health check's too, and
/// at the gateway; and it holds only its own principal's share of the
/// gateway meanwhile. Two principals flooding the gateway with such calls
/// (the finding: 64 of another customer's 126 calls then failed with
/// `UNAVAILABLE`) take 64 places each, are refused beyond with
/// `IN_FLIGHT_LIMIT`, and the other customer's calls all pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_bodies_are_cut_in_time_and_two_principals_cannot_take_everyones_places() {
    use std::time::Duration;
    const BODY_TIMEOUT: Duration = Duration::from_secs(3);
    const FLOOD: usize = 100;
    let m = TestMesh::start_with(|s| {
        s.request_body_timeout_ms = 3_000;
        // The flood below is within the rate: the share is what holds.
        s.gateway.rate_per_second = 1_000;
        s.gateway.burst = 1_000;
    })
    .await;
    let gateway = m.mesh().gateway.addr;
    let direct = m.direct();
    let limit = m.settings.gateway.max_calls_per_principal;
    assert_eq!(limit, 64, "the default share");

    // Two attackers, FLOOD unfinished calls each, over two connections each.
    let flood_started = tokio::time::Instant::now();
    let mut flood = tokio::task::JoinSet::new();
    for attacker in ["mallory", "trudy"] {
        let bearer = raw::bearer(&token(As(attacker, "customer", None)));
        for _ in 0..2 {
            let connection = raw::connect(gateway).await;
            for _ in 0..FLOOD / 2 {
                let connection = connection.clone();
                let bearer = bearer.clone();
                flood.spawn(async move {
                    raw::unfinished(
                        &connection,
                        LIST_MINE,
                        &[("authorization", bearer.as_str())],
                        &[0, 0],
                    )
                    .await
                });
            }
        }
    }
    // The calls beyond each attacker's share are refused at once.
    let mut cut = 0;
    let mut refused = 0;
    let mut slowest = Duration::ZERO;
    let mut count = |s: Status, took: Duration| match reason(&s).as_str() {
        "REQUEST_BODY_TIMEOUT" => {
            assert_eq!(s.code(), Code::Cancelled);
            cut += 1;
            slowest = slowest.max(took);
        }
        "IN_FLIGHT_LIMIT" => {
            assert_eq!(s.code(), Code::ResourceExhausted);
            assert!(retry_delay(&s).is_some());
            refused += 1;
        }
        other => panic!("{other}: {s:?}"),
    };
    for _ in 0..2 * (FLOOD - limit) {
        let (s, took) = flood.join_next().await.unwrap().unwrap();
        count(s, took);
    }
    // Meanwhile, while the attackers hold their shares, a customer's 126
    // calls, eight at a time.
    let started = tokio::time::Instant::now();
    let view = m.view().await;
    let mut calls = tokio::task::JoinSet::new();
    for worker in 0..8 {
        let mut view = view.clone();
        calls.spawn(async move {
            let mut failed = Vec::new();
            for _ in (worker..126).step_by(8) {
                if let Err(e) = view
                    .list_my_reservations(req(BOB, pv::ListMyReservationsRequest::default()))
                    .await
                {
                    failed.push(e);
                }
            }
            failed
        });
    }
    let mut failed = Vec::new();
    while let Some(f) = calls.join_next().await {
        failed.extend(f.unwrap());
    }
    let victim_done = started.elapsed();
    assert!(
        failed.is_empty(),
        "{} of 126 failed: {failed:?}",
        failed.len()
    );
    assert!(
        flood_started.elapsed() < BODY_TIMEOUT,
        "the customer's calls ran while the flood held its places"
    );
    while let Some(answer) = flood.join_next().await {
        let (s, took) = answer.unwrap();
        count(s, took);
    }
    assert_eq!(cut, 2 * limit, "each attacker held its share, no more");
    assert_eq!(refused, 2 * FLOOD - 2 * limit);
    assert!(
        slowest >= BODY_TIMEOUT && slowest < BODY_TIMEOUT + Duration::from_secs(2),
        "{slowest:?}"
    );
    // Their places are free again.
    let bearer = raw::bearer(&token(As("mallory", "customer", None)));
    let s = raw::call(
        &raw::connect(gateway).await,
        LIST_MINE,
        &[("authorization", bearer.as_str())],
        &raw::frame(b""),
    )
    .await;
    assert_eq!(s.code(), Code::Ok, "{s:?}");

    // Every service port cuts an unfinished body too: a hundred at once on
    // the reservation port, and one per other port and a health check.
    let alice = raw::bearer(&token(ALICE));
    let with_token = [("authorization", alice.as_str())];
    let reservation = raw::connect(direct.reservation).await;
    let mut held = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let connection = reservation.clone();
        let alice = alice.clone();
        held.spawn(async move {
            raw::unfinished(
                &connection,
                GET_RESERVATION,
                &[("authorization", alice.as_str())],
                &[0, 0, 0, 0, 40, 0x0a],
            )
            .await
        });
    }
    for (addr, path, headers) in [
        (direct.payment, GET_PAYMENT, &with_token[..]),
        (direct.rental, LIST_DEVICES, &with_token[..]),
        (direct.parking, GET_SESSION, &with_token[..]),
        (direct.view, LIST_MINE, &with_token[..]),
        (direct.view, HEALTH_CHECK, &[][..]),
    ] {
        let connection = raw::connect(addr).await;
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let path = path.to_owned();
        held.spawn(async move {
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            raw::unfinished(&connection, &path, &headers, &[]).await
        });
    }
    let mut slowest = Duration::ZERO;
    let mut n = 0;
    while let Some(answer) = held.join_next().await {
        let (s, took) = answer.unwrap();
        assert_eq!(
            (s.code(), reason(&s).as_str()),
            (Code::Cancelled, "REQUEST_BODY_TIMEOUT"),
            "{s:?}"
        );
        slowest = slowest.max(took);
        n += 1;
    }
    assert_eq!(n, 105);
    assert!(
        slowest < BODY_TIMEOUT + Duration::from_secs(2),
        "{slowest:?}"
    );
    println!(
        "victim: 126 calls, 0 failed, in {victim_done:?}; attackers: {cut} held and cut, \
         {refused} refused at once; service ports: {n} unfinished bodies cut, the last after {slowest:?}"
    );
    m.stop().await;
}

/// Issue 32, point 2: a malformed `grpc-timeout` is refused at the gateway
/// (passed on, the service's tonic ignored it and the call had no deadline
/// at all), and a deadline longer than `gateway.max_deadline_ms` is cut to
/// it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_grpc_timeout_is_refused_and_a_long_one_is_capped() {
    use std::time::Duration;
    let m = TestMesh::start_with(|s| {
        s.payment.fault_latency_ms = 1_500;
        s.call_deadline_ms = 5_000;
        s.pending_ttl_ms = 60_000;
        s.gateway.default_deadline_ms = 400;
        s.gateway.max_deadline_ms = 400;
    })
    .await;
    let connection = raw::connect(m.mesh().gateway.addr).await;
    let alice = raw::bearer(&token(ALICE));
    for bad in ["-1S", "1.5S", "abc", "10", "S", "123456789S", "10s"] {
        let s = raw::call(
            &connection,
            LIST_OFFERS,
            &[("authorization", alice.as_str()), ("grpc-timeout", bad)],
            &raw::frame(b""),
        )
        .await;
        assert_eq!(
            (s.code(), reason(&s).as_str()),
            (Code::InvalidArgument, "INVALID_TIMEOUT"),
            "{bad}: {s:?}"
        );
    }
    // A valid one passes.
    let s = raw::call(
        &connection,
        LIST_OFFERS,
        &[("authorization", alice.as_str()), ("grpc-timeout", "5S")],
        &raw::frame(b""),
    )
    .await;
    assert_eq!(s.code(), Code::Ok, "{s:?}");

    // A reserve (payment takes 1.5 s) asking for 11,415 years gets 400 ms.
    let mut reserve = m.reservation().await;
    let mut request = req(ALICE, roaming_request("capped", 3, 4));
    request
        .metadata_mut()
        .insert("grpc-timeout", "99999999H".parse().unwrap());
    let started = tokio::time::Instant::now();
    let e = reserve.reserve_roaming(request).await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
    assert!(took < Duration::from_millis(1_200), "{took:?}");
    m.stop().await;
}
