//! Breaking dependencies on purpose: payment down (breaker), rental down
//! (events wait), reservation down (the gate decides from its replica).

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests"
)]

mod support;

use std::time::Duration;

use adapters_grpc::breaker::BreakerState;
use adapters_store::reservation::ReservationStore;
use proto::reservation::ReservationStatus as S;
use proto::{parking as pk, rental as pr};
use roaming::bus::Bus;
use support::*;
use tonic::Code;

/// Any free loopback port.
fn elsewhere() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Starts a healthy payment service (no injected faults) on `listen` in place
/// of the running one, which is stopped.
async fn swap_payment(
    mesh: &mut roaming::up::Mesh,
    settings: &roaming::Settings,
    listen: std::net::SocketAddr,
) {
    let mut s = settings.clone();
    s.payment.listen = listen;
    s.payment.fault_latency_ms = 0;
    let new = roaming::payment::start(&s, &mesh.auth, &mesh.bus)
        .await
        .unwrap()
        .0;
    std::mem::replace(&mut mesh.payment, new)
        .stop(Duration::from_secs(2))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_payment_down_the_breaker_opens_nothing_unpaid_is_kept_and_it_recovers() {
    let mut m = TestMesh::start().await;
    let mut reservations = m.reservation().await;
    reservations
        .reserve_roaming(req(ALICE, roaming_request("ok-1", 5, 6)))
        .await
        .unwrap();

    let payment_addr = m.mesh().payment.addr;
    let mut mesh = m.mesh.take().unwrap();
    // A placeholder on another port, replaced below: payment is gone from its address.
    swap_payment(&mut mesh, &m.settings, elsewhere()).await;

    // Every attempt is refused with UNAVAILABLE and a retry hint; after a few,
    // the breaker is open and refuses without calling.
    for i in 0..8 {
        let e = reservations
            .reserve_roaming(req(BOB, roaming_request(&format!("down-{i}"), 5, 6)))
            .await
            .unwrap_err();
        assert_eq!(
            (e.code(), reason(&e)),
            (Code::Unavailable, "PAYMENT_UNAVAILABLE".to_owned()),
            "{e:?}"
        );
        let delay = retry_delay(&e).expect("RetryInfo");
        assert!(
            delay > Duration::ZERO && delay <= Duration::from_secs(2),
            "{delay:?}"
        );
    }
    assert_eq!(
        mesh.reservations.payment_gateway().breaker().state(),
        BreakerState::Open
    );
    // Nothing unpaid holds capacity: every attempt ended REJECTED.
    let store: &ReservationStore = mesh.reservations.repository();
    let all = store.all().await.unwrap();
    let down: Vec<_> = all
        .iter()
        .filter(|r| r.request_id.as_str().starts_with("down-"))
        .collect();
    assert_eq!(down.len(), 8);
    assert!(
        down.iter()
            .all(|r| r.status == domain_reservation::Status::Rejected),
        "{down:?}"
    );

    // Payment comes back on its address: after the cool-down a probe closes the
    // breaker and reservations succeed again (the same request id may retry).
    swap_payment(&mut mesh, &m.settings, payment_addr).await;
    let ok = eventually(
        Duration::from_secs(15),
        "reservations succeed again",
        || {
            let mut reservations = reservations.clone();
            async move {
                reservations
                    .reserve_roaming(req(BOB, roaming_request("down-0", 5, 6)))
                    .await
                    .ok()
            }
        },
    )
    .await;
    assert_eq!(
        ok.into_inner().reservation.unwrap().status,
        S::Reserved as i32
    );
    assert_eq!(
        mesh.reservations.payment_gateway().breaker().state(),
        BreakerState::Closed
    );
    m.mesh = Some(mesh);
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_rental_down_reservations_succeed_and_rental_accepts_them_when_back() {
    let mut m = TestMesh::start().await;
    let mut reservations = m.reservation().await;
    let mut mesh = m.mesh.take().unwrap();
    let Bus::Embedded(bus) = mesh.bus.clone() else {
        panic!("embedded")
    };
    let rental_addr = mesh.rental.addr;
    let reservation_addrs = [format!("http://{}", mesh.reservation.addr)];
    let placeholder = {
        let mut s = m.settings.clone();
        s.rental.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        s.data_dir = s.data_dir.join("placeholder");
        std::fs::create_dir_all(&s.data_dir).unwrap();
        roaming::rental::start(&s, &mesh.auth, &mesh.bus, &reservation_addrs)
            .await
            .unwrap()
            .0
    };
    let down = std::mem::replace(&mut mesh.rental, placeholder);
    down.stop(Duration::from_secs(1)).await;
    bus.set_running("rental", false);

    let mut ids = Vec::new();
    for i in 0..3 {
        let r = reservations
            .reserve_roaming(req(ALICE, roaming_request(&format!("r{i}"), 2, 3)))
            .await
            .unwrap();
        ids.push(r.into_inner().reservation.unwrap().reservation_id);
    }

    // Rental comes back (same address, same database) and takes its durable over.
    let back = {
        let mut s = m.settings.clone();
        s.rental.listen = rental_addr;
        roaming::rental::start(&s, &mesh.auth, &mesh.bus, &reservation_addrs)
            .await
            .unwrap()
            .0
    };
    std::mem::replace(&mut mesh.rental, back)
        .stop(Duration::from_secs(1))
        .await;
    m.mesh = Some(mesh);
    let rental = m.rental().await;
    for id in &ids {
        eventually(
            Duration::from_secs(10),
            "rental accepted the missed reservation",
            || {
                let mut rental = rental.clone();
                let id = id.clone();
                async move {
                    let r = rental
                        .get_rental(req(OPS, pr::GetRentalRequest { reservation_id: id }))
                        .await
                        .ok()?
                        .into_inner()
                        .rental?;
                    (r.status == pr::RentalStatus::Accepted as i32).then_some(())
                }
            },
        )
        .await;
        view_reaches(&m, ALICE, id, S::RentalAccepted).await;
    }
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_reservation_down_a_reserved_car_still_enters_via_the_replica() {
    let mut m = TestMesh::start().await;
    let mut reservations = m.reservation().await;
    let r = reservations
        .reserve_parking(req(
            ALICE,
            parking_request("p", "P1-B1-003", "12가3456", 0, 90),
        ))
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    view_reaches(&m, ALICE, &r.reservation_id, S::Reserved).await;

    let mut mesh = m.mesh.take().unwrap();
    let placeholder = {
        let mut s = m.settings.clone();
        s.reservation.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        s.data_dir = s.data_dir.join("placeholder");
        std::fs::create_dir_all(&s.data_dir).unwrap();
        roaming::reservation::start(
            &s,
            &mesh.auth,
            &mesh.bus,
            &["http://127.0.0.1:9".to_owned()],
        )
        .await
        .unwrap()
        .0
    };
    std::mem::replace(&mut mesh.reservation, placeholder)
        .stop(Duration::from_secs(1))
        .await;
    m.mesh = Some(mesh);

    let parking = m.parking().await;
    let session = eventually(Duration::from_secs(10), "entry via the replica", || {
        let mut parking = parking.clone();
        async move {
            parking
                .enter(req(
                    GATE,
                    pk::EnterRequest {
                        space_id: "P1-B1-003".into(),
                        vehicle_plate: "12가3456".into(),
                    },
                ))
                .await
                .ok()
        }
    })
    .await
    .into_inner()
    .session
    .unwrap();
    assert_eq!(session.verification, pk::EntryVerification::Replica as i32);
    assert_eq!(session.reservation_id, r.reservation_id);
    // Another plate is still refused, also offline.
    let denied = parking
        .clone()
        .enter(req(
            GATE,
            pk::EnterRequest {
                space_id: "P1-B1-004".into(),
                vehicle_plate: "99하9999".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_payment_slower_than_the_deadline_rejects_the_reservation_and_the_late_capture_is_voided()
{
    // Payment answers after 800 ms; reservation waits 500 ms.
    let m = TestMesh::start_with(|s| s.payment.fault_latency_ms = 800).await;
    let mut reservations = m.reservation().await;
    let e = reservations
        .reserve_roaming(req(ALICE, roaming_request("slow", 5, 6)))
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), reason(&e)),
        (Code::Unavailable, "PAYMENT_UNAVAILABLE".to_owned())
    );
    let rid = {
        use tonic_types::StatusExt;
        e.get_details_error_info().unwrap().metadata["reservation_id"].clone()
    };
    // Invariant 1: whichever came first at payment (the late capture or the
    // rejection), no capture stands for the rejected reservation.
    let payment = m.payment().await;
    let voided = eventually(Duration::from_secs(10), "the late capture voided", || {
        let mut payment = payment.clone();
        let rid = rid.clone();
        async move {
            let p = payment
                .get_payment(req(
                    OPS,
                    proto::payment::GetPaymentRequest {
                        reservation_id: rid,
                    },
                ))
                .await
                .ok()?
                .into_inner()
                .payment?;
            (p.status == proto::payment::PaymentStatus::Voided as i32).then_some(p)
        }
    })
    .await;
    assert_eq!(voided.reservation_id, rid);
    let r = reservations
        .get_reservation(req(
            ALICE,
            proto::reservation::GetReservationRequest {
                reservation_id: rid,
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    assert_eq!(r.status, S::Rejected as i32);
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_payment_slower_than_the_deadline_opens_the_breaker_and_a_fast_one_closes_it() {
    // Payment answers after 1.5 s; reservation waits 500 ms (the client-side
    // timeout surfaces as CANCELLED "Timeout expired", which must count).
    let mut m = TestMesh::start_with(|s| s.payment.fault_latency_ms = 1_500).await;
    let mut reservations = m.reservation().await;
    let breaker = || m.mesh().reservations.payment_gateway().breaker().state();
    let mut attempts = 0;
    while breaker() != BreakerState::Open {
        attempts += 1;
        assert!(attempts <= 20, "the breaker never opened on a slow payment");
        let e = reservations
            .reserve_roaming(req(BOB, roaming_request(&format!("slow-{attempts}"), 5, 6)))
            .await
            .unwrap_err();
        assert_eq!(
            (e.code(), reason(&e)),
            (Code::Unavailable, "PAYMENT_UNAVAILABLE".to_owned()),
            "{e:?}"
        );
    }
    // Open: refused at once, without waiting for the slow payment.
    let e = reservations
        .reserve_roaming(req(BOB, roaming_request("while-open", 5, 6)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    assert!(retry_delay(&e).is_some(), "RetryInfo");

    // A fast payment on the same address: after the cool-down the probe
    // succeeds and the breaker closes.
    let payment_addr = m.mesh().payment.addr;
    let mut mesh = m.mesh.take().unwrap();
    swap_payment(&mut mesh, &m.settings, elsewhere()).await;
    swap_payment(&mut mesh, &m.settings, payment_addr).await;
    eventually(
        Duration::from_secs(15),
        "reservations succeed again",
        || {
            let mut reservations = reservations.clone();
            async move {
                reservations
                    .reserve_roaming(req(BOB, roaming_request("fast-again", 5, 6)))
                    .await
                    .ok()
            }
        },
    )
    .await;
    assert_eq!(
        mesh.reservations.payment_gateway().breaker().state(),
        BreakerState::Closed
    );
    m.mesh = Some(mesh);
    m.stop().await;
}
