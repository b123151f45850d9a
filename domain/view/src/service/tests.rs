//! The use cases over an in-memory repository: who is refused what, and what
//! each caller is shown.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests"
)]

use std::collections::HashMap;
use std::sync::Mutex;

use domain_kernel::fakes::SequentialIds;
use domain_kernel::{
    BoothCode, CustomerId, IdGenerator, LotCode, Money, Principal, Recorded, ReservationId,
    SpaceId, StoreError, TimeWindow, VehiclePlate,
};
use domain_reservation::{Details, ParkingDetails, Status};
use time::Date;
use time::macros::{date, datetime};

use super::*;
use crate::fold::{Fact, apply};
use crate::ports::ViewChanges;

/// Views in a map, lots in another; schedules select with the pure functions.
#[derive(Default)]
struct Memory {
    views: Mutex<HashMap<ReservationId, ReservationView>>,
    lots: Mutex<HashMap<SpaceId, LotCode>>,
}

struct NoChanges;

impl ViewChanges for NoChanges {
    async fn changed(&mut self) -> Option<ReservationView> {
        None
    }
}

impl ViewRepository for Memory {
    type Changes = NoChanges;

    fn watch(&self, _: ReservationId) -> NoChanges {
        NoChanges
    }

    fn reread_every(&self) -> Option<std::time::Duration> {
        None
    }

    async fn apply(&self, event: &Recorded<ViewEvent>) -> Result<Applied, StoreError> {
        let mut views = self.views.lock().unwrap();
        let id = event.event.reservation_id;
        match apply(views.get(&id), event) {
            Some(next) => {
                views.insert(id, next.clone());
                Ok(Applied::Changed(Box::new(next)))
            }
            None => Ok(Applied::Unchanged),
        }
    }

    async fn record_space(&self, space: &Recorded<SpaceLot>) -> Result<(), StoreError> {
        self.lots
            .lock()
            .unwrap()
            .insert(space.event.space_id.clone(), space.event.lot.clone());
        Ok(())
    }

    async fn space_lot(&self, space: &SpaceId) -> Result<Option<LotCode>, StoreError> {
        Ok(self.lots.lock().unwrap().get(space).cloned())
    }

    async fn get(&self, id: ReservationId) -> Result<Option<ReservationView>, StoreError> {
        Ok(self.views.lock().unwrap().get(&id).cloned())
    }

    async fn list_for_customer(
        &self,
        customer: &CustomerId,
        limit: u64,
        _after: Option<Cursor>,
    ) -> Result<Vec<(Cursor, ReservationView)>, StoreError> {
        let views = self.views.lock().unwrap();
        Ok(views
            .values()
            .filter(|v| v.customer_id.as_ref() == Some(customer))
            .take(usize::try_from(limit).unwrap())
            .map(|v| {
                let cursor = Cursor {
                    created_micros: 0,
                    reservation_id: v.reservation_id,
                };
                (cursor, v.clone())
            })
            .collect())
    }

    async fn space_schedule(
        &self,
        space: &SpaceId,
        date: Date,
    ) -> Result<Vec<ReservationView>, StoreError> {
        let views: Vec<_> = self.views.lock().unwrap().values().cloned().collect();
        Ok(crate::space_schedule(&views, space, date)
            .into_iter()
            .cloned()
            .collect())
    }

    async fn booth_schedule(
        &self,
        booth: &BoothCode,
        date: Date,
    ) -> Result<(Vec<ReservationView>, Vec<ReservationView>), StoreError> {
        let views: Vec<_> = self.views.lock().unwrap().values().cloned().collect();
        let (p, r) = crate::booth_schedule(&views, booth, date);
        Ok((
            p.into_iter().cloned().collect(),
            r.into_iter().cloned().collect(),
        ))
    }
}

const DAY: Date = date!(2026 - 12 - 02);

fn customer(c: &str) -> Principal {
    Principal::customer(&CustomerId::parse(c).unwrap())
}

fn lot(l: &str) -> LotCode {
    LotCode::parse(l).unwrap()
}

/// Alice's parking reservation of `P1-B1-001` (in lot `P1`) on [`DAY`].
async fn world() -> (ViewService<Memory>, ReservationId, SpaceId) {
    let ids = SequentialIds::default();
    let service = ViewService::new(Memory::default());
    let space = SpaceId::parse("P1-B1-001").unwrap();
    let id = ids.reservation_id();
    let details = Details::Parking(ParkingDetails {
        space_id: space.clone(),
        vehicle_plate: VehiclePlate::parse("12가3456").unwrap(),
        window: TimeWindow::new(
            datetime!(2026-12-02 10:00 UTC),
            datetime!(2026-12-02 12:00 UTC),
        )
        .unwrap(),
    });
    let at = datetime!(2026-12-01 09:00 UTC);
    service
        .apply(&Recorded::new(
            ids.event_id(),
            at,
            ViewEvent {
                reservation_id: id,
                fact: Fact::Described {
                    customer_id: CustomerId::parse("alice").unwrap(),
                    price: Money::krw(6_000).unwrap(),
                    details,
                    status: Status::Reserved,
                },
            },
        ))
        .await
        .unwrap();
    service
        .record_space(&Recorded::new(
            ids.event_id(),
            at,
            SpaceLot {
                space_id: space.clone(),
                lot: lot("P1"),
            },
        ))
        .await
        .unwrap();
    (service, id, space)
}

#[tokio::test]
async fn my_page_is_for_customers_and_holds_only_their_own() {
    let (service, id, _) = world().await;
    let page = service
        .my_page(&customer("alice"))
        .unwrap()
        .list(10, None)
        .await
        .unwrap();
    assert_eq!(page.views.len(), 1);
    assert_eq!(page.views[0].reservation_id, id);
    assert_eq!(page.next, None, "a short page is the last");
    let bobs = service
        .my_page(&customer("bob"))
        .unwrap()
        .list(10, None)
        .await
        .unwrap();
    assert!(bobs.views.is_empty());
    assert!(matches!(
        service.my_page(&Principal::operator("ops")),
        Err(ViewError::Forbidden)
    ));
}

#[tokio::test]
async fn a_full_page_says_where_the_next_starts() {
    let (service, id, _) = world().await;
    let page = service
        .my_page(&customer("alice"))
        .unwrap()
        .list(1, None)
        .await
        .unwrap();
    assert_eq!(page.next.map(|c| c.reservation_id), Some(id));
}

#[tokio::test]
async fn another_customers_reservation_is_not_found_and_so_is_its_watch() {
    let (service, id, _) = world().await;
    assert!(service.reservation(&customer("alice"), id).await.is_ok());
    assert!(
        service
            .reservation(&Principal::operator("ops"), id)
            .await
            .is_ok()
    );
    assert!(matches!(
        service.reservation(&customer("bob"), id).await,
        Err(ViewError::NotFound)
    ));
    assert!(matches!(
        service.watch(&customer("bob"), id).await,
        Err(ViewError::NotFound)
    ));
    let watch = service.watch(&customer("alice"), id).await.unwrap();
    assert_eq!(watch.current.reservation_id, id);
}

#[tokio::test]
async fn space_schedules_follow_role_and_lot() {
    let (service, id, space) = world().await;
    // A customer may not ask at all.
    assert!(matches!(
        service.space_schedules(&customer("alice")),
        Err(ViewError::Forbidden)
    ));
    // A gate of another lot is refused this space.
    let elsewhere = Principal::gate("gate-p2", lot("P2"));
    let schedules = service.space_schedules(&elsewhere).unwrap();
    assert!(matches!(
        schedules.space(&space).await,
        Err(ViewError::Forbidden)
    ));
    // A gate of a space whose lot the view has not learnt is refused.
    let unknown = SpaceId::parse("P9-B1-001").unwrap();
    let own = Principal::gate("gate-p1", lot("P1"));
    let schedules = service.space_schedules(&own).unwrap();
    assert!(matches!(
        schedules.space(&unknown).await,
        Err(ViewError::Forbidden)
    ));
    // The lot's own gate sees the reservation, without the customer.
    let shown = schedules
        .space(&space)
        .await
        .unwrap()
        .on(DAY)
        .await
        .unwrap();
    assert_eq!(shown.len(), 1);
    assert_eq!(shown[0].reservation_id, id);
    assert_eq!(shown[0].customer_id, None);
    // An operator sees who it is.
    let ops = Principal::operator("ops");
    let schedules = service.space_schedules(&ops).unwrap();
    let shown = schedules
        .space(&space)
        .await
        .unwrap()
        .on(DAY)
        .await
        .unwrap();
    assert_eq!(
        shown[0].customer_id,
        Some(CustomerId::parse("alice").unwrap())
    );
}

#[tokio::test]
async fn booth_schedules_are_for_the_booths_staff() {
    let (service, _, _) = world().await;
    let gmp = BoothCode::parse("GMP").unwrap();
    let t1 = BoothCode::parse("ICN-T1").unwrap();
    assert!(
        service
            .booth_schedule(&Principal::booth_staff("s", gmp.clone()), &gmp)
            .is_ok()
    );
    assert!(matches!(
        service.booth_schedule(&Principal::booth_staff("s", t1), &gmp),
        Err(ViewError::Forbidden)
    ));
    assert!(matches!(
        service.booth_schedule(&customer("alice"), &gmp),
        Err(ViewError::Forbidden)
    ));
}
