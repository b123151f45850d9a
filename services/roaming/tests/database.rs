//! A service's PostgreSQL goes away (connections cut, new ones refused) and
//! comes back, under a real embedded mesh: calls answer `UNAVAILABLE` with a
//! `RetryInfo` (reads `STORE_UNAVAILABLE`, changes `OUTCOME_UNKNOWN`), never
//! `INTERNAL`, and succeed again once the database is back.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests"
)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use adapters_store::testing::TestDatabase;
use proto::reservation as pb;
use support::*;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tonic::Code;

/// A TCP proxy to PostgreSQL standing for its Service: while `down`, every
/// connection through it is cut and new ones are closed at once.
async fn proxy(target: SocketAddr, down: watch::Receiver<bool>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let mut down = down.clone();
            tokio::spawn(async move {
                if *down.borrow() {
                    return;
                }
                let Ok(mut server) = TcpStream::connect(target).await else {
                    return;
                };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    _ = down.wait_for(|d| *d) => {}
                }
            });
        }
    });
    addr
}

fn through(url: &str, proxy: SocketAddr) -> String {
    let mut url = url::Url::parse(url).unwrap();
    url.set_host(Some("127.0.0.1")).unwrap();
    url.set_port(Some(proxy.port())).unwrap();
    url.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_that_goes_away_is_unavailable_with_a_retry_hint_then_served_again() {
    let db = TestDatabase::postgres().await;
    let target: SocketAddr = {
        let url = url::Url::parse(db.url()).unwrap();
        let host = url.host_str().unwrap().to_owned();
        tokio::net::lookup_host((host, url.port().unwrap_or(5432)))
            .await
            .unwrap()
            .next()
            .unwrap()
    };
    let (down, watch_down) = watch::channel(false);
    let url = through(db.url(), proxy(target, watch_down).await);
    let m = TestMesh::start_with(|s| {
        s.reservation.database_url = Some(url.clone());
    })
    .await;
    let mut reservations = m.reservation().await;
    let reserved = reservations
        .reserve_roaming(req(ALICE, roaming_request("db-1", 3, 5)))
        .await
        .expect("reserved with the database up")
        .into_inner()
        .reservation
        .unwrap();
    let get = pb::GetReservationRequest {
        reservation_id: reserved.reservation_id.clone(),
    };

    down.send(true).unwrap();
    let read = reservations
        .get_reservation(req(ALICE, get.clone()))
        .await
        .expect_err("the database is down");
    assert_eq!(read.code(), Code::Unavailable, "{read:?}");
    assert_eq!(reason(&read), proto::reasons::STORE_UNAVAILABLE);
    assert!(retry_delay(&read).is_some(), "a RetryInfo: {read:?}");
    let write = reservations
        .reserve_roaming(req(ALICE, roaming_request("db-2", 6, 7)))
        .await
        .expect_err("the database is down");
    assert_eq!(write.code(), Code::Unavailable, "{write:?}");
    assert!(retry_delay(&write).is_some(), "a RetryInfo: {write:?}");
    assert!(
        [
            proto::reasons::OUTCOME_UNKNOWN,
            proto::reasons::STORE_UNAVAILABLE
        ]
        .contains(&reason(&write).as_str()),
        "{write:?}"
    );

    // Back: the same calls succeed, the reserve by its own request_id.
    down.send(false).unwrap();
    let again = eventually(Duration::from_secs(20), "the database is back", || {
        let mut reservations = reservations.clone();
        let get = get.clone();
        async move { reservations.get_reservation(req(ALICE, get)).await.ok() }
    })
    .await;
    assert_eq!(
        again.into_inner().reservation.unwrap().reservation_id,
        reserved.reservation_id
    );
    let retried = eventually(Duration::from_secs(20), "the reserve goes through", || {
        let mut reservations = reservations.clone();
        async move {
            reservations
                .reserve_roaming(req(ALICE, roaming_request("db-2", 6, 7)))
                .await
                .ok()
        }
    })
    .await;
    assert!(retried.into_inner().reservation.is_some());
    m.stop().await;
}
