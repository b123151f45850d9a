//! Random sequences of commands and events through the reservation use cases,
//! checking invariants 1-3 and monotonicity after every step.

use std::collections::HashMap;
use std::sync::Arc;

use domain_kernel::fakes::{FixedClock, SequentialIds};
use domain_kernel::{
    BoothCode, CardDetails, Clock, CountryCode, CustomerId, DateRange, DeviceModel, IdGenerator,
    Money, Principal, Recorded, RequestId, ReservationId, Serial, SpaceId, TimeWindow, Timestamp,
    VehiclePlate,
};
use proptest::prelude::*;
use time::Duration;
use time::macros::{date, datetime};

use crate::fakes::{FakePayments, InMemoryReservations, PaymentBehaviour};
use crate::ports::Catalog;
use crate::pricing::DeviceOffer;
use crate::{
    CatalogEvent, Details, ParkingDetails, Reservation, ReservationEvent, ReservationService,
    RoamingDetails, Status, Usage, UsageEvent,
};

const NOW: Timestamp = datetime!(2026-11-22 10:00 UTC);
const BOOTHS: [(&str, u32); 2] = [("ICN-T1", 2), ("GMP", 1)];
const SPACES: [&str; 2] = ["P1-B1-001", "P1-B1-002"];

#[derive(Debug, Clone)]
enum Command {
    Reserve {
        customer: u8,
        request: u8,
        details: DetailsSpec,
        payment: PaymentBehaviour,
    },
    Cancel {
        customer: u8,
        pick: prop::sample::Index,
    },
    Usage {
        pick: prop::sample::Index,
        usage: Usage,
    },
    RedeliverLastUsage,
    SweepStale,
}

#[derive(Debug, Clone)]
enum DetailsSpec {
    Roaming {
        booth: usize,
        start: u8,
        len: u8,
    },
    Parking {
        space: usize,
        start_h: i64,
        len_h: i64,
    },
}

fn details(spec: &DetailsSpec) -> Details {
    match *spec {
        DetailsSpec::Roaming { booth, start, len } => {
            let start = date!(2026 - 12 - 01).replace_day(start).expect("1..=20");
            let end = start + Duration::days(i64::from(len));
            Details::Roaming(RoamingDetails {
                device_model: DeviceModel::parse("egg-lte").expect("valid"),
                country: CountryCode::parse("JP").expect("valid"),
                pickup_booth: BoothCode::parse(BOOTHS[booth].0).expect("valid"),
                return_booth: BoothCode::parse("GMP").expect("valid"),
                dates: DateRange::new(start, end).expect("ordered"),
            })
        }
        DetailsSpec::Parking {
            space,
            start_h,
            len_h,
        } => Details::Parking(ParkingDetails {
            space_id: SpaceId::parse(SPACES[space]).expect("valid"),
            vehicle_plate: VehiclePlate::parse("12가3456").expect("valid"),
            window: TimeWindow::new(
                NOW + Duration::hours(start_h),
                NOW + Duration::hours(start_h + len_h),
            )
            .expect("ordered"),
        }),
    }
}

fn details_spec() -> impl Strategy<Value = DetailsSpec> {
    prop_oneof![
        (0..BOOTHS.len(), 1u8..8, 0u8..4).prop_map(|(booth, start, len)| DetailsSpec::Roaming {
            booth,
            start,
            len
        }),
        (0..SPACES.len(), 1i64..8, 1i64..4).prop_map(|(space, start_h, len_h)| {
            DetailsSpec::Parking {
                space,
                start_h,
                len_h,
            }
        }),
    ]
}

fn command() -> impl Strategy<Value = Command> {
    let payment = prop_oneof![
        6 => Just(PaymentBehaviour::Capture),
        1 => Just(PaymentBehaviour::Decline),
        1 => Just(PaymentBehaviour::Unavailable),
        1 => Just(PaymentBehaviour::CaptureThenTimeout),
    ];
    let usage = prop_oneof![
        Just(Usage::RentalAccepted),
        Just(Usage::HandedOver),
        Just(Usage::Returned),
        Just(Usage::Retrieved),
        Just(Usage::RentalCanceled),
        Just(Usage::ParkingStarted),
        Just(Usage::ParkingEnded),
    ];
    prop_oneof![
        5 => (0u8..3, 0u8..3, details_spec(), payment)
            .prop_map(|(customer, request, details, payment)| Command::Reserve { customer, request, details, payment }),
        2 => (0u8..3, any::<prop::sample::Index>()).prop_map(|(customer, pick)| Command::Cancel { customer, pick }),
        4 => (any::<prop::sample::Index>(), usage).prop_map(|(pick, usage)| Command::Usage { pick, usage }),
        1 => Just(Command::RedeliverLastUsage),
        1 => Just(Command::SweepStale),
    ]
}

fn customer(n: u8) -> Principal {
    Principal::customer(&CustomerId::parse(&format!("c{n}")).expect("valid"))
}

fn check_invariants(
    all: &[Reservation],
    outbox: &[Recorded<ReservationEvent>],
    captured: &HashMap<ReservationId, Money>,
) {
    for r in all {
        // Invariant 1: paid statuses have a capture of exactly the price; a capture
        // for a reservation that never got paid is announced as rejected (voided).
        if r.status.is_paid() {
            assert_eq!(
                captured.get(&r.id),
                Some(&r.price),
                "{r:?} paid without capture"
            );
        } else if captured.contains_key(&r.id) && r.status == Status::Rejected {
            assert!(
                outbox
                    .iter()
                    .any(|e| matches!(&e.event, ReservationEvent::Rejected(x) if x.id == r.id)),
                "captured but rejected without a rejected event: {r:?}"
            );
        }
        // Invariant 3: server-side price.
        let expected = match &r.details {
            Details::Roaming(d) => 5_000 * i64::from(d.dates.days()),
            Details::Parking(d) => 3_000 * i64::from(d.window.started_hours()),
        };
        assert_eq!(r.price.minor_units(), expected);
    }
    // Invariant 2: no overbooking.
    let holding: Vec<_> = all.iter().filter(|r| r.status.is_holding()).collect();
    for (booth, units) in BOOTHS {
        for day in 1..=12u8 {
            let day = date!(2026 - 12 - 01).replace_day(day).expect("valid");
            let taken = holding
                .iter()
                .filter(|r| matches!(&r.details, Details::Roaming(d) if d.pickup_booth.as_str() == booth && d.dates.contains(day)))
                .count();
            assert!(taken <= units as usize, "{booth} {day}: {taken} > {units}");
        }
    }
    for (i, a) in holding.iter().enumerate() {
        for b in &holding[i + 1..] {
            if let (Details::Parking(x), Details::Parking(y)) = (&a.details, &b.details) {
                assert!(
                    x.space_id != y.space_id || !x.window.overlaps(&y.window),
                    "overlap: {a:?} {b:?}"
                );
            }
        }
    }
    // Monotonicity: per reservation, status changes chain and never go back.
    let mut last: HashMap<ReservationId, Status> = HashMap::new();
    for e in outbox {
        if let ReservationEvent::StatusChanged {
            reservation_id,
            from,
            to,
            ..
        } = &e.event
        {
            let prev = last
                .insert(*reservation_id, *to)
                .unwrap_or(Status::PendingPayment);
            assert_eq!(
                prev, *from,
                "status changes of {reservation_id} do not chain"
            );
            assert!(!from.is_terminal(), "left terminal {from}");
            assert!(to.rank() > from.rank(), "moved back {from} -> {to}");
        }
    }
    for r in all {
        assert_eq!(
            last.get(&r.id).copied().unwrap_or(Status::PendingPayment),
            r.status
        );
    }
}

type Service = ReservationService<
    InMemoryReservations,
    InMemoryReservations,
    FakePayments,
    Arc<FixedClock>,
    Arc<SequentialIds>,
>;

/// One egg-lte price, the booths' stock and the spaces.
async fn seed(service: &Service, store: &InMemoryReservations, ids: &SequentialIds) {
    store
        .put_device_offer(&DeviceOffer {
            device_model: DeviceModel::parse("egg-lte").expect("valid"),
            daily_rate: Money::krw(5_000).expect("valid"),
            countries: vec![CountryCode::parse("JP").expect("valid")],
        })
        .await
        .expect("in memory");
    let mut serial = 0;
    for (booth, units) in BOOTHS {
        for _ in 0..units {
            serial += 1;
            let event = CatalogEvent::DeviceRegistered {
                serial: Serial::parse(&format!("S{serial}")).expect("valid"),
                device_model: DeviceModel::parse("egg-lte").expect("valid"),
                booth: BoothCode::parse(booth).expect("valid"),
            };
            service
                .handle_catalog(&Recorded::new(ids.event_id(), NOW, event))
                .await
                .expect("in memory");
        }
    }
    for space in SPACES {
        let event = CatalogEvent::SpaceRegistered {
            space_id: SpaceId::parse(space).expect("valid"),
            hourly_rate: Money::krw(3_000).expect("valid"),
        };
        service
            .handle_catalog(&Recorded::new(ids.event_id(), NOW, event))
            .await
            .expect("in memory");
    }
}

async fn run(commands: Vec<Command>) {
    let store = InMemoryReservations::default();
    let payments = FakePayments::default();
    let clock = Arc::new(FixedClock::at(NOW));
    let ids = Arc::new(SequentialIds::default());
    let service = ReservationService::new(
        store.clone(),
        store.clone(),
        payments.clone(),
        clock.clone(),
        ids.clone(),
    );
    seed(&service, &store, &ids).await;
    let card =
        CardDetails::parse("4111111111111111", 12, 2030, "A", "VISA", NOW.date()).expect("valid");
    let mut last_usage: Option<Recorded<UsageEvent>> = None;

    for command in commands {
        let ids_known: Vec<ReservationId> = {
            let mut v: Vec<_> = store.all().iter().map(|r| r.id).collect();
            v.sort();
            v
        };
        match command {
            Command::Reserve {
                customer: c,
                request,
                details: spec,
                payment,
            } => {
                payments.set(payment);
                let request = RequestId::parse(&format!("r{request}")).expect("valid");
                let _ = service
                    .reserve(&customer(c), request, details(&spec), card.clone())
                    .await;
            }
            Command::Cancel { customer: c, pick } if !ids_known.is_empty() => {
                let id = ids_known[pick.index(ids_known.len())];
                let _ = service.cancel(&customer(c), id, String::new()).await;
            }
            Command::Usage { pick, usage } if !ids_known.is_empty() => {
                let id = ids_known[pick.index(ids_known.len())];
                let event = Recorded::new(
                    ids.event_id(),
                    clock.now(),
                    UsageEvent {
                        reservation_id: id,
                        usage,
                    },
                );
                service.handle_usage(&event).await.expect("in memory");
                last_usage = Some(event);
            }
            Command::RedeliverLastUsage => {
                if let Some(event) = &last_usage {
                    let before = store.outbox().len();
                    service.handle_usage(event).await.expect("in memory");
                    assert_eq!(
                        store.outbox().len(),
                        before,
                        "a redelivered event had an effect"
                    );
                }
            }
            Command::SweepStale => {
                clock.advance(Duration::minutes(2));
                service.reject_stale_pending().await.expect("in memory");
            }
            Command::Cancel { .. } | Command::Usage { .. } => {}
        }
        check_invariants(&store.all(), &store.outbox(), &payments.captured());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn random_command_sequences_keep_invariants_one_to_three_and_monotonicity(
        commands in proptest::collection::vec(command(), 1..60)
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        rt.block_on(run(commands));
    }
}
