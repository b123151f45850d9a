//! The stories of "the mesh runs", against any running mesh: the embedded one
//! in one process, or five processes on PostgreSQL and NATS.

use std::time::Duration;

use futures::StreamExt;
use proto::reservation::ReservationStatus as S;
use proto::{parking as pk, payment as pp, rental as pr, reservation as pb, view as pv};
use tonic::Code;
use tonic_types::StatusExt;

use super::*;

/// `every_step_as_a_message`: with one view replica each change arrives as its
/// own message; with several, a watcher may get two steps in one message (the
/// view's history still lists each step, in order).
pub async fn roaming_story_from_reservation_to_retrieval_at_another_booth(
    c: &Cluster,
    every_step_as_a_message: bool,
) {
    let mut reservations = c.reservation().await;
    let mut rental = c.rental().await;

    let quote = reservations
        .quote_roaming(req(
            ALICE,
            pb::QuoteRoamingRequest {
                device_model: "egg-lte".into(),
                country: "JP".into(),
                pickup_booth: "ICN-T1".into(),
                return_booth: "GMP".into(),
                start_date: date_in(0),
                end_date: date_in(2),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((quote.days, quote.price.unwrap().minor_units), (3, 15_000));

    let r = reservations
        .reserve_roaming(req(ALICE, roaming_request("trip-1", 0, 2)))
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    assert_eq!(r.status, S::Reserved as i32);
    assert_eq!(r.price.unwrap().minor_units, 15_000, "the server's price");
    let id = r.reservation_id.clone();

    // The view knows it; from now on a watcher sees every change.
    view_reaches(c, ALICE, &id, S::Reserved).await;
    let mut watch = c
        .view()
        .await
        .watch_reservation(req(
            ALICE,
            pv::WatchReservationRequest {
                reservation_id: id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();

    // Rental accepted it (an event away), then the booth works.
    view_reaches(c, ALICE, &id, S::RentalAccepted).await;
    let devices = rental
        .list_devices(req(
            STAFF_T1,
            pr::ListDevicesRequest {
                booth: String::new(),
                device_model: "egg-lte".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .devices;
    let serial = devices[0].serial.clone();
    let handed = rental
        .hand_over_device(req(
            STAFF_T1,
            pr::HandOverDeviceRequest {
                reservation_id: id.clone(),
                serial: serial.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .rental
        .unwrap();
    assert_eq!(handed.status, pr::RentalStatus::HandedOver as i32);
    view_reaches(c, ALICE, &id, S::InUse).await;
    rental
        .return_device(req(
            STAFF_GMP,
            pr::ReturnDeviceRequest {
                reservation_id: id.clone(),
                booth: "GMP".into(),
            },
        ))
        .await
        .unwrap();
    view_reaches(c, ALICE, &id, S::Returned).await;
    rental
        .retrieve_device(req(
            STAFF_GMP,
            pr::RetrieveDeviceRequest {
                reservation_id: id.clone(),
            },
        ))
        .await
        .unwrap();
    view_reaches(c, ALICE, &id, S::Completed).await;
    // The rental's own retrieval comes on another stream than COMPLETED: wait
    // until the view has applied both.
    let view = c.view().await;
    let done = eventually(
        Duration::from_secs(10),
        "the view to show the retrieval",
        || {
            let mut view = view.clone();
            let id = id.clone();
            async move {
                view.get_reservation_view(req(
                    ALICE,
                    pv::GetReservationViewRequest { reservation_id: id },
                ))
                .await
                .ok()?
                .into_inner()
                .reservation
                .filter(|v| v.rental_status == pr::RentalStatus::Retrieved as i32)
            }
        },
    )
    .await;

    // The view shows every step, in order.
    let steps: Vec<i32> = done.history.iter().map(|h| h.status).collect();
    assert_eq!(
        steps,
        [
            S::Reserved,
            S::RentalAccepted,
            S::InUse,
            S::Returned,
            S::Completed
        ]
        .map(|s| s as i32)
    );
    assert_eq!(done.payment_status, pp::PaymentStatus::Captured as i32);
    assert_eq!(done.rental_status, pr::RentalStatus::Retrieved as i32);
    assert_eq!(done.device_serial, serial);

    // The watcher saw the changes as they happened, in order, up to COMPLETED.
    let mut seen = Vec::new();
    let mut last_history = Vec::new();
    while let Some(Ok(msg)) = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .ok()
        .flatten()
    {
        let view = msg.reservation.unwrap();
        if seen.last() != Some(&view.status) {
            seen.push(view.status);
        }
        last_history = view.history.iter().map(|h| h.status).collect();
        if view.status == S::Completed as i32 {
            break;
        }
    }
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "in order: {seen:?}");
    assert_eq!(seen.last(), Some(&(S::Completed as i32)), "{seen:?}");
    assert_eq!(
        last_history, steps,
        "the streamed view lists every step in order"
    );
    if every_step_as_a_message {
        assert!(
            seen.ends_with(&[S::InUse as i32, S::Returned as i32, S::Completed as i32]),
            "every step after the watch began: {seen:?}"
        );
    }

    // The unit moved to GMP's stock.
    let at_gmp = rental
        .list_devices(req(
            STAFF_GMP,
            pr::ListDevicesRequest {
                booth: "GMP".into(),
                device_model: "egg-lte".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .devices;
    assert!(
        at_gmp
            .iter()
            .any(|d| d.serial == serial && d.status == pr::DeviceStatus::InStock as i32)
    );
}

pub async fn cancel_before_hand_over_refunds_and_frees_the_resource_and_after_hand_over_is_refused(
    c: &Cluster,
) {
    let mut reservations = c.reservation().await;
    let payment = c.payment().await;
    let mut rental = c.rental().await;

    // ICN-T2 has 2 phone-5g: take both, cancel one, the third fits.
    let mut ids = Vec::new();
    for (i, who) in [ALICE, BOB].into_iter().enumerate() {
        let r = reservations
            .reserve_roaming(req(who, phone_request(&format!("c{i}"), 3, 4)))
            .await
            .unwrap();
        ids.push(r.into_inner().reservation.unwrap().reservation_id);
    }
    let full = reservations
        .reserve_roaming(req(BOB, phone_request("c3", 3, 4)))
        .await
        .unwrap_err();
    assert_eq!(
        (full.code(), reason(&full)),
        (Code::FailedPrecondition, "SOLD_OUT".to_owned())
    );

    view_reaches(c, ALICE, &ids[0], S::RentalAccepted).await;
    // Bob cannot cancel Alice's: it does not exist for him.
    let other = reservations
        .cancel_reservation(req(
            BOB,
            pb::CancelReservationRequest {
                reservation_id: ids[0].clone(),
                reason: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::NotFound);
    let canceled = reservations
        .cancel_reservation(req(
            ALICE,
            pb::CancelReservationRequest {
                reservation_id: ids[0].clone(),
                reason: "plans changed".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    assert_eq!(canceled.status, S::Canceled as i32);

    let refunded = eventually(Duration::from_secs(10), "refund", || {
        let mut payment = payment.clone();
        let id = ids[0].clone();
        async move {
            let p = payment
                .get_payment(req(OPS, pp::GetPaymentRequest { reservation_id: id }))
                .await
                .ok()?
                .into_inner()
                .payment?;
            (p.status == pp::PaymentStatus::Refunded as i32).then_some(p)
        }
    })
    .await;
    assert_eq!(refunded.amount.unwrap().minor_units, 18_000);
    eventually(Duration::from_secs(10), "rental canceled", || {
        let mut rental = rental.clone();
        let id = ids[0].clone();
        async move {
            let r = rental
                .get_rental(req(OPS, pr::GetRentalRequest { reservation_id: id }))
                .await
                .ok()?
                .into_inner()
                .rental?;
            (r.status == pr::RentalStatus::Canceled as i32).then_some(())
        }
    })
    .await;
    let v = view_reaches(c, ALICE, &ids[0], S::Canceled).await;
    eventually(Duration::from_secs(10), "view shows the refund", || {
        let mut view = futures::executor::block_on(c.view());
        let id = ids[0].clone();
        async move {
            let v = view
                .get_reservation_view(req(
                    ALICE,
                    pv::GetReservationViewRequest { reservation_id: id },
                ))
                .await
                .ok()?
                .into_inner()
                .reservation?;
            (v.payment_status == pp::PaymentStatus::Refunded as i32).then_some(())
        }
    })
    .await;
    assert_eq!(v.status, S::Canceled as i32);
    // The unit is reservable again.
    reservations
        .reserve_roaming(req(BOB, phone_request("c4", 3, 4)))
        .await
        .unwrap();

    // Cancel after hand over is refused.
    let today = reservations
        .reserve_roaming(req(ALICE, roaming_request("c5", 0, 1)))
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    view_reaches(c, ALICE, &today.reservation_id, S::RentalAccepted).await;
    let serial = rental
        .list_devices(req(
            STAFF_T1,
            pr::ListDevicesRequest {
                booth: String::new(),
                device_model: "egg-lte".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .devices[0]
        .serial
        .clone();
    rental
        .hand_over_device(req(
            STAFF_T1,
            pr::HandOverDeviceRequest {
                reservation_id: today.reservation_id.clone(),
                serial,
            },
        ))
        .await
        .unwrap();
    // Once the reservation learned of the hand over, cancel is refused.
    view_reaches(c, ALICE, &today.reservation_id, S::InUse).await;
    let late = reservations
        .cancel_reservation(req(
            ALICE,
            pb::CancelReservationRequest {
                reservation_id: today.reservation_id.clone(),
                reason: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(reason(&late), "NOT_CANCELABLE");
    assert_eq!(late.code(), Code::FailedPrecondition);
}

pub async fn parking_story_enter_exit_and_refusals(c: &Cluster) {
    let mut reservations = c.reservation().await;
    let mut parking = c.parking().await;

    // An operator registers a space; the reservation catalog learns it.
    parking
        .register_space(req(
            OPS,
            pk::RegisterSpaceRequest {
                space_id: "P1-B1-042".into(),
                lot: "P1".into(),
                floor: "B1".into(),
                number: 42,
                hourly_rate: Some(proto::common::Money {
                    currency_code: "KRW".into(),
                    minor_units: 3_000,
                }),
            },
        ))
        .await
        .unwrap();
    let r = eventually(Duration::from_secs(10), "space reservable", || {
        let mut reservations = reservations.clone();
        async move {
            reservations
                .reserve_parking(req(
                    ALICE,
                    parking_request("p1", "P1-B1-042", "12가3456", 0, 120),
                ))
                .await
                .ok()
        }
    })
    .await
    .into_inner()
    .reservation
    .unwrap();
    assert_eq!(r.price.unwrap().minor_units, 6_000);

    // An overlapping window on the same space: sold out.
    let overlap = reservations
        .reserve_parking(req(
            BOB,
            parking_request("p2", "P1-B1-042", "34나5678", 60, 180),
        ))
        .await
        .unwrap_err();
    assert_eq!(
        (overlap.code(), reason(&overlap)),
        (Code::FailedPrecondition, "SOLD_OUT".to_owned())
    );

    // Another plate is refused.
    let denied = parking
        .enter(req(
            GATE,
            pk::EnterRequest {
                space_id: "P1-B1-042".into(),
                vehicle_plate: "99하9999".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        (denied.code(), reason(&denied)),
        (Code::PermissionDenied, "NOT_RESERVED".to_owned())
    );

    // The reserved plate enters (verified online) and leaves.
    let session = parking
        .enter(req(
            GATE,
            pk::EnterRequest {
                space_id: "P1-B1-042".into(),
                vehicle_plate: "12가 3456".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    assert_eq!(session.verification, pk::EntryVerification::Online as i32);
    assert_eq!(session.reservation_id, r.reservation_id);
    view_reaches(c, ALICE, &r.reservation_id, S::InUse).await;
    parking
        .exit(req(
            GATE,
            pk::ExitRequest {
                space_id: "P1-B1-042".into(),
                vehicle_plate: "12가3456".into(),
            },
        ))
        .await
        .unwrap();
    view_reaches(c, ALICE, &r.reservation_id, S::Completed).await;
    // The session's end comes on another stream than the status change: the
    // view may apply them in either order, and shows both once it has both.
    let view = c.view().await;
    eventually(
        Duration::from_secs(10),
        "the view to show the session ended",
        || {
            let mut view = view.clone();
            let id = r.reservation_id.clone();
            async move {
                let v = view
                    .get_reservation_view(req(
                        ALICE,
                        pv::GetReservationViewRequest { reservation_id: id },
                    ))
                    .await
                    .ok()?
                    .into_inner()
                    .reservation?;
                (v.session_status == pk::SessionStatus::Ended as i32
                    && v.status == S::Completed as i32)
                    .then_some(())
            }
        },
    )
    .await;
    // A customer is no gate.
    let not_gate = parking
        .enter(req(
            ALICE,
            pk::EnterRequest {
                space_id: "P1-B1-042".into(),
                vehicle_plate: "12가3456".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(not_gate.code(), Code::PermissionDenied);
}

pub async fn bad_input_gets_invalid_argument_with_every_field_violation(c: &Cluster) {
    let mut reservations = c.reservation().await;
    let mut bad = roaming_request("", 0, 2);
    bad.country = "Japan".into();
    bad.start_date = "tomorrow".into();
    bad.payment = Some(card_number("4111111111111112"));
    let e = reservations
        .reserve_roaming(req(ALICE, bad))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let fields: Vec<String> = e
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(
        fields,
        ["request_id", "country", "start_date", "payment.card_number"]
    );
    let no_identity = reservations
        .get_reservation(tonic::Request::new(pb::GetReservationRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(no_identity.code(), Code::Unauthenticated);
}

/// How one cancel/hand-over (or cancel/enter) race ended.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RaceTally {
    pub cancel_won: usize,
    pub use_won: usize,
}

fn loser_reason(e: &tonic::Status) -> String {
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    reason(e)
}

/// `tries` times: a roaming reservation for today, accepted by rental, then
/// the customer's cancel and the booth's hand-over at the same moment.
/// Exactly one wins each time, the other is refused with a stable reason, and
/// the end state matches the winner everywhere (reservation, payment, rental,
/// device): never a refund with the device out (DOMAIN.md, invariant 6).
pub async fn cancel_races_hand_over(c: &Cluster, tries: usize, tag: &str) -> RaceTally {
    let mut reservations = c.reservation().await;
    let mut rental = c.rental().await;
    // One fresh device per try, so every hand-over has stock.
    let serials: Vec<String> = (0..tries)
        .map(|i| format!("RACE-{}-{i}", tag.to_uppercase()))
        .collect();
    for serial in &serials {
        rental
            .register_device(req(
                OPS,
                pr::RegisterDeviceRequest {
                    serial: serial.clone(),
                    device_model: "egg-lte".into(),
                    booth: "ICN-T1".into(),
                },
            ))
            .await
            .unwrap();
    }
    let mut ids = Vec::new();
    for i in 0..tries {
        // The catalog learns the new stock from events: sold out until then.
        let id = eventually(Duration::from_secs(20), "a reservation for today", || {
            let mut reservations = reservations.clone();
            let request = roaming_request(&format!("race-{tag}-{i}"), 0, 1);
            async move {
                let r = reservations
                    .reserve_roaming(req(ALICE, request))
                    .await
                    .ok()?;
                Some(r.into_inner().reservation?.reservation_id)
            }
        })
        .await;
        ids.push(id);
    }
    for id in &ids {
        rental_reaches(c, id, pr::RentalStatus::Accepted).await;
    }

    let mut tally = RaceTally::default();
    let mut outcomes = Vec::new();
    for (id, serial) in ids.iter().zip(&serials) {
        let mut customer = reservations.clone();
        let mut booth = rental.clone();
        let cancel = customer.cancel_reservation(req(
            ALICE,
            pb::CancelReservationRequest {
                reservation_id: id.clone(),
                reason: "race".into(),
            },
        ));
        let hand_over = booth.hand_over_device(req(
            STAFF_T1,
            pr::HandOverDeviceRequest {
                reservation_id: id.clone(),
                serial: serial.clone(),
            },
        ));
        // Both at once, shifted by a few milliseconds either way, so that each
        // side sometimes gets there first.
        let shift = Duration::from_millis(u64::try_from(outcomes.len() % 8).unwrap() * 3);
        let early = outcomes.len() % 2 == 0;
        let (canceled, handed) = futures::join!(
            async {
                if !early {
                    tokio::time::sleep(shift).await;
                }
                cancel.await
            },
            async {
                if early {
                    tokio::time::sleep(shift).await;
                }
                hand_over.await
            }
        );
        let cancel_won = match (canceled, handed) {
            (Ok(_), Err(e)) => {
                assert_eq!(loser_reason(&e), "RESERVATION_CANCELED");
                true
            }
            (Err(e), Ok(_)) => {
                assert_eq!(loser_reason(&e), "NOT_CANCELABLE");
                false
            }
            (Ok(_), Ok(_)) => panic!("{id}: both the cancel and the hand-over succeeded"),
            (Err(a), Err(b)) => panic!("{id}: neither succeeded: {a:?} / {b:?}"),
        };
        if cancel_won {
            tally.cancel_won += 1;
        } else {
            tally.use_won += 1;
        }
        outcomes.push((id.clone(), serial.clone(), cancel_won));
    }

    // Every service agrees with the winner once the events have flowed.
    for (id, serial, cancel_won) in outcomes {
        let (want_payment, want_rental, want_status) = if cancel_won {
            (
                pp::PaymentStatus::Refunded,
                pr::RentalStatus::Canceled,
                S::Canceled,
            )
        } else {
            (
                pp::PaymentStatus::Captured,
                pr::RentalStatus::HandedOver,
                S::InUse,
            )
        };
        payment_reaches(c, &id, want_payment).await;
        rental_reaches(c, &id, want_rental).await;
        let r = reservations
            .get_reservation(req(
                ALICE,
                pb::GetReservationRequest {
                    reservation_id: id.clone(),
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .reservation
            .unwrap();
        assert_eq!(r.status, want_status as i32, "{id}");
        let devices = rental
            .list_devices(req(
                OPS,
                pr::ListDevicesRequest {
                    booth: "ICN-T1".into(),
                    device_model: "egg-lte".into(),
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .devices;
        let device = devices.iter().find(|d| d.serial == serial).unwrap();
        let want_device = if cancel_won {
            pr::DeviceStatus::InStock
        } else {
            pr::DeviceStatus::Rented
        };
        assert_eq!(device.status, want_device as i32, "{serial}");
    }
    tally
}

/// A parking reservation is cancelable only until its entry opens, so a
/// cancel and the gate's entry can never both succeed: with the window open,
/// `tries` races of cancel and `Enter` all end with the car in and the cancel
/// refused, as `ENTRY_OPEN` (the window is open) or, when the entry's
/// `IN_USE` committed before the cancel looked, `NOT_CANCELABLE`; a later
/// window is canceled and its plate refused.
pub async fn cancel_races_enter(c: &Cluster, tries: usize, tag: &str) {
    let mut reservations = c.reservation().await;
    let parking = c.parking().await;
    for i in 0..tries {
        let space = format!("P1-B1-{:03}", i % 10 + 1);
        let plate = format!("{:02}가{:04}", i % 90 + 10, i);
        let id = reservations
            .reserve_parking(req(
                ALICE,
                parking_request(
                    &format!("enter-race-{tag}-{i}"),
                    &space,
                    &plate,
                    0,
                    30 + i64::try_from(i).unwrap(),
                ),
            ))
            .await
            .unwrap()
            .into_inner()
            .reservation
            .unwrap()
            .reservation_id;
        let mut customer = reservations.clone();
        let mut gate = parking.clone();
        let (canceled, entered) = futures::join!(
            customer.cancel_reservation(req(
                ALICE,
                pb::CancelReservationRequest {
                    reservation_id: id.clone(),
                    reason: "race".into(),
                },
            )),
            gate.enter(req(
                GATE,
                pk::EnterRequest {
                    space_id: space.clone(),
                    vehicle_plate: plate.clone(),
                },
            ))
        );
        let refused = canceled.expect_err("a cancel after the entry opened");
        let reason = loser_reason(&refused);
        assert!(
            reason == "ENTRY_OPEN" || reason == "NOT_CANCELABLE",
            "{id}: the cancel lost for another reason: {refused:?}"
        );
        entered.expect("the car enters");
        gate.exit(req(
            GATE,
            pk::ExitRequest {
                space_id: space,
                vehicle_plate: plate,
            },
        ))
        .await
        .unwrap();
    }
    // A window that opens later: the cancel wins, the plate is refused.
    let later = reservations
        .reserve_parking(req(
            ALICE,
            parking_request(
                &format!("enter-later-{tag}"),
                "P1-B1-010",
                "77가7777",
                120,
                180,
            ),
        ))
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap()
        .reservation_id;
    reservations
        .cancel_reservation(req(
            ALICE,
            pb::CancelReservationRequest {
                reservation_id: later,
                reason: String::new(),
            },
        ))
        .await
        .unwrap();
    let denied = parking
        .clone()
        .enter(req(
            GATE,
            pk::EnterRequest {
                space_id: "P1-B1-010".into(),
                vehicle_plate: "77가7777".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(reason(&denied), "NOT_RESERVED");
}

/// Waits until the payment of `id` is `status` (as the operator sees it).
pub async fn payment_reaches(c: &Cluster, id: &str, status: pp::PaymentStatus) {
    let payment = c.payment().await;
    eventually(
        Duration::from_secs(20),
        &format!("payment of {id} {status:?}"),
        || {
            let mut payment = payment.clone();
            let id = id.to_owned();
            async move {
                let p = payment
                    .get_payment(req(OPS, pp::GetPaymentRequest { reservation_id: id }))
                    .await
                    .ok()?
                    .into_inner()
                    .payment?;
                (p.status == status as i32).then_some(())
            }
        },
    )
    .await;
}

/// Waits until the rental of `id` is `status` (as the operator sees it).
pub async fn rental_reaches(c: &Cluster, id: &str, status: pr::RentalStatus) {
    let rental = c.rental().await;
    eventually(
        Duration::from_secs(20),
        &format!("rental of {id} {status:?}"),
        || {
            let mut rental = rental.clone();
            let id = id.to_owned();
            async move {
                let r = rental
                    .get_rental(req(OPS, pr::GetRentalRequest { reservation_id: id }))
                    .await
                    .ok()?
                    .into_inner()
                    .rental?;
                (r.status == status as i32).then_some(())
            }
        },
    )
    .await;
}
