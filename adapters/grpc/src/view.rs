//! `roaming.view.v1.ViewService`: "my page" and schedules, through the view's
//! use-case service (which holds the read policy); this adapter parses, maps
//! errors and limits open watch streams.

use proto::reasons;
use std::pin::Pin;

use adapters_codec::{
    instant_to_pb, money_to_pb, parking_details_to_pb, roaming_details_to_pb, status_to_pb,
};
use domain_kernel::{BoothCode, DateRange, ReservationId, SpaceId, Violations};
use domain_reservation::Details;
use domain_view::{Cursor, ReservationView, ViewChanges, ViewError, ViewRepository, ViewService};
use futures::Stream;
use proto::view::view_service_server::ViewService as Rpc;
use proto::{parking as pk, payment as pp, rental as pr, reservation as pb, view as pv};
use tonic::{Request, Response, Status};

use crate::fields;
use crate::identity::principal;
use crate::parking::session_status_to_pb;
use crate::payment::payment_status_to_pb;
use crate::rental::rental_status_to_pb;
use crate::reservation::kind_to_pb;
use crate::status::{forbidden, invalid, not_found, retry_later, store};

/// Watch streams open at once in one process, and per principal.
pub const MAX_WATCHES: usize = 10_000;
pub const MAX_WATCHES_PER_PRINCIPAL: usize = 32;

/// Open watch streams, in all and per principal (subject).
#[derive(Debug)]
struct Watches {
    total: usize,
    per_principal: usize,
    open: std::sync::Mutex<(usize, std::collections::HashMap<String, usize>)>,
}

/// One open watch stream's place, given back when the stream ends.
#[derive(Debug)]
struct WatchSlot {
    watches: std::sync::Arc<Watches>,
    subject: String,
}

impl Watches {
    fn enter(self: &std::sync::Arc<Self>, subject: &str) -> Result<WatchSlot, Status> {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mine = open.1.get(subject).copied().unwrap_or(0);
        if open.0 >= self.total || mine >= self.per_principal {
            let why = if mine >= self.per_principal {
                "too many open watch streams for this caller"
            } else {
                "too many open watch streams"
            };
            return Err(retry_later(
                tonic::Code::ResourceExhausted,
                reasons::WATCH_LIMIT,
                why,
                std::time::Duration::from_secs(5),
                &[],
            ));
        }
        open.0 += 1;
        *open.1.entry(subject.to_owned()).or_default() += 1;
        Ok(WatchSlot {
            watches: std::sync::Arc::clone(self),
            subject: subject.to_owned(),
        })
    }
}

impl Drop for WatchSlot {
    fn drop(&mut self) {
        let mut open = self
            .watches
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        open.0 = open.0.saturating_sub(1);
        if let Some(n) = open.1.get_mut(&self.subject) {
            *n -= 1;
            if *n == 0 {
                open.1.remove(&self.subject);
            }
        }
    }
}

/// The gRPC face of the view service.
#[derive(Debug)]
pub struct ViewRpc<R> {
    service: ViewService<R>,
    watches: std::sync::Arc<Watches>,
}

impl<R: ViewRepository> ViewRpc<R> {
    pub fn new(service: ViewService<R>) -> Self {
        Self::with_watch_limits(service, MAX_WATCHES, MAX_WATCHES_PER_PRINCIPAL)
    }

    /// At most `total` watch streams at once, `per_principal` for one caller;
    /// more are refused with `RESOURCE_EXHAUSTED` (`WATCH_LIMIT`).
    pub fn with_watch_limits(service: ViewService<R>, total: usize, per_principal: usize) -> Self {
        Self {
            service,
            watches: std::sync::Arc::new(Watches {
                total,
                per_principal,
                open: std::sync::Mutex::default(),
            }),
        }
    }
}

pub fn view_to_pb(v: &ReservationView) -> pv::ReservationView {
    let details = v.details.as_ref().map(|d| match d {
        Details::Roaming(r) => pv::reservation_view::Details::Roaming(roaming_details_to_pb(r)),
        Details::Parking(p) => pv::reservation_view::Details::Parking(parking_details_to_pb(p)),
    });
    pv::ReservationView {
        reservation_id: v.reservation_id.to_string(),
        customer_id: v
            .customer_id
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        kind: v
            .kind()
            .map_or(pb::ReservationKind::Unspecified, kind_to_pb) as i32,
        status: status_to_pb(v.status) as i32,
        price: v.price.map(money_to_pb),
        details,
        payment_status: v
            .payment_status
            .map_or(pp::PaymentStatus::Unspecified, payment_status_to_pb)
            as i32,
        rental_status: v
            .rental_status
            .map_or(pr::RentalStatus::Unspecified, rental_status_to_pb)
            as i32,
        session_status: v
            .session_status
            .map_or(pk::SessionStatus::Unspecified, session_status_to_pb)
            as i32,
        device_serial: v
            .device_serial
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        history: v
            .history
            .iter()
            .map(|h| pv::StatusChange {
                status: status_to_pb(h.status) as i32,
                at: Some(instant_to_pb(h.at)),
            })
            .collect(),
        updated_at: Some(instant_to_pb(v.updated_at)),
        version: i64::try_from(v.version).unwrap_or(i64::MAX),
    }
}

fn date(raw: &str) -> Result<time::Date, Status> {
    fields::one("date", DateRange::parse_date(raw))
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pv::WatchReservationResponse, Status>> + Send>>;

pub(crate) fn refused(e: ViewError) -> Status {
    match e {
        ViewError::Forbidden => forbidden(),
        ViewError::NotFound => not_found("reservation"),
        ViewError::Store(e) => store(&e),
    }
}

#[tonic::async_trait]
impl<R: ViewRepository> Rpc for ViewRpc<R> {
    async fn list_my_reservations(
        &self,
        request: Request<pv::ListMyReservationsRequest>,
    ) -> Result<Response<pv::ListMyReservationsResponse>, Status> {
        let who = principal(&request)?;
        let page = self.service.my_page(&who).map_err(refused)?;
        let r = request.into_inner();
        let size = match r.page_size {
            0 => 50,
            n if (1..=200).contains(&n) => u64::try_from(n).unwrap_or(50),
            _ => return Err(invalid(&Violations::one("page_size", "must be 1-200"))),
        };
        let after = if r.page_token.is_empty() {
            None
        } else {
            let parsed = r.page_token.split_once('_').and_then(|(micros, id)| {
                Some(Cursor {
                    created_micros: micros.parse::<i64>().ok()?,
                    reservation_id: ReservationId::parse(id).ok()?,
                })
            });
            Some(parsed.ok_or_else(|| {
                invalid(&Violations::one(
                    "page_token",
                    "not a token from a previous page",
                ))
            })?)
        };
        let page = page.list(size, after).await.map_err(refused)?;
        Ok(Response::new(pv::ListMyReservationsResponse {
            reservations: page.views.iter().map(view_to_pb).collect(),
            next_page_token: page
                .next
                .map(|c| format!("{}_{}", c.created_micros, c.reservation_id))
                .unwrap_or_default(),
        }))
    }

    async fn get_reservation_view(
        &self,
        request: Request<pv::GetReservationViewRequest>,
    ) -> Result<Response<pv::GetReservationViewResponse>, Status> {
        let who = principal(&request)?;
        let id = fields::reservation_id(&request.get_ref().reservation_id)?;
        let view = self.service.reservation(&who, id).await.map_err(refused)?;
        Ok(Response::new(pv::GetReservationViewResponse {
            reservation: Some(view_to_pb(&view)),
        }))
    }

    type WatchReservationStream = WatchStream;

    async fn watch_reservation(
        &self,
        request: Request<pv::WatchReservationRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let who = principal(&request)?;
        let id = fields::reservation_id(&request.get_ref().reservation_id)?;
        let slot = self.watches.enter(who.subject())?;
        let watch = self.service.watch(&who, id).await.map_err(refused)?;
        let (current, mut changes) = (watch.current, watch.changes);
        let service = self.service.clone();
        let stream = async_stream(move |tx| async move {
            // Held for as long as the stream is open.
            let _slot = slot;
            let mut last = current.version;
            if tx
                .send(Ok(pv::WatchReservationResponse {
                    reservation: Some(view_to_pb(&current)),
                }))
                .await
                .is_err()
            {
                return;
            }
            // Changes arrive through the watch: those this process applies at
            // once, those other replicas apply (competing consumers on a
            // shared database) when the store's periodic re-read of all
            // watched views finds them. A repository that cannot do the
            // latter asks for a re-read per watcher (`reread_every`).
            let every = service
                .reread_every()
                .unwrap_or(std::time::Duration::from_hours(1));
            let mut poll = tokio::time::interval(every);
            poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            poll.tick().await;
            loop {
                let next = tokio::select! {
                    () = tx.closed() => return,
                    _ = poll.tick() => match service.reread(id).await {
                        Ok(Some(v)) if v.version > last => v,
                        Ok(_) => continue,
                        Err(e) => {
                            let _ = tx.send(Err(store(&e))).await;
                            return;
                        }
                    },
                    change = changes.changed() => match change {
                        Some(v) if v.version > last => v,
                        Some(_) => continue,
                        None => return,
                    },
                };
                last = next.version;
                if tx
                    .send(Ok(pv::WatchReservationResponse {
                        reservation: Some(view_to_pb(&next)),
                    }))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        Ok(Response::new(stream))
    }

    async fn get_space_schedule(
        &self,
        request: Request<pv::GetSpaceScheduleRequest>,
    ) -> Result<Response<pv::GetSpaceScheduleResponse>, Status> {
        let who = principal(&request)?;
        let schedules = self.service.space_schedules(&who).map_err(refused)?;
        let r = request.into_inner();
        let space = fields::one("space_id", SpaceId::parse(&r.space_id))?;
        let schedule = schedules.space(&space).await.map_err(refused)?;
        let views = schedule.on(date(&r.date)?).await.map_err(refused)?;
        Ok(Response::new(pv::GetSpaceScheduleResponse {
            reservations: views.iter().map(view_to_pb).collect(),
        }))
    }

    async fn get_booth_schedule(
        &self,
        request: Request<pv::GetBoothScheduleRequest>,
    ) -> Result<Response<pv::GetBoothScheduleResponse>, Status> {
        let who = principal(&request)?;
        let r = request.into_inner();
        let booth = fields::one("booth", BoothCode::parse(&r.booth))?;
        let schedule = self.service.booth_schedule(&who, &booth).map_err(refused)?;
        let (pickups, returns) = schedule.on(date(&r.date)?).await.map_err(refused)?;
        Ok(Response::new(pv::GetBoothScheduleResponse {
            pickups: pickups.iter().map(view_to_pb).collect(),
            returns: returns.iter().map(view_to_pb).collect(),
        }))
    }
}

/// A stream fed by a task through a small channel; dropping the stream (the
/// client went away) ends the task at its next send.
fn async_stream<T, F, Fut>(body: F) -> Pin<Box<dyn Stream<Item = T> + Send>>
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::mpsc::Sender<T>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(body(tx));
    Box::pin(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)))
}
