//! What the harnesses send: tokens for any principal, and the requests,
//! cards, dates and timestamps of the mesh's calls.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use adapters_auth::Issuer;
use domain_kernel::Principal;
use proto::{common, reservation as pb};
use tonic::Request;
use tonic::metadata::{Ascii, MetadataValue};

/// Signs tokens with a key the mesh trusts (its issuer key), each principal's
/// once: clients reuse tokens too, and a load must not measure signing.
#[derive(Debug, Clone)]
pub struct Callers {
    issuer: Arc<Issuer>,
    tokens: Arc<Mutex<HashMap<String, MetadataValue<Ascii>>>>,
    timeout: Option<Duration>,
}

impl Callers {
    pub fn new(issuer: &Issuer) -> Self {
        Self {
            issuer: Arc::new(issuer.clone()),
            tokens: Arc::default(),
            timeout: None,
        }
    }

    /// Every request gets this deadline (`grpc-timeout`).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// `Bearer <token>` for `who`, signed the first time it is asked for.
    pub fn bearer(&self, who: &Principal) -> Option<MetadataValue<Ascii>> {
        let key = format!("{who:?}");
        let mut tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(value) = tokens.get(&key) {
            return Some(value.clone());
        }
        let token = self.issuer.issue(who).ok()?;
        let value = adapters_auth::bearer(&token).ok()?;
        tokens.insert(key, value.clone());
        Some(value)
    }

    /// `message` as `who` sends it (without a token if it could not be
    /// signed: the mesh then refuses it, which the caller sees).
    pub fn req<T>(&self, who: &Principal, message: T) -> Request<T> {
        let mut r = Request::new(message);
        if let Some(value) = self.bearer(who) {
            r.metadata_mut().insert("authorization", value);
        }
        if let Some(timeout) = self.timeout {
            r.set_timeout(timeout);
        }
        r
    }
}

/// The card every harness pays with (the payment service's fake acquirer
/// accepts it).
pub fn card() -> common::PaymentCard {
    card_number("4111111111111111")
}

/// A card with another number (the fake acquirer declines some).
pub fn card_number(number: &str) -> common::PaymentCard {
    common::PaymentCard {
        card_number: number.to_owned(),
        expiry_month: 12,
        expiry_year: 2035,
        holder_name: "Kim Minji".to_owned(),
        company: "VISA".to_owned(),
    }
}

/// `YYYY-MM-DD`, `days` after today (UTC).
pub fn date_in(days: i64) -> String {
    let d = time::OffsetDateTime::now_utc().date() + time::Duration::days(days);
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// `t` to the second.
pub fn at(t: time::OffsetDateTime) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.unix_timestamp(),
        nanos: 0,
    }
}

/// Now plus `offset`, to the second.
pub fn ts(offset: time::Duration) -> prost_types::Timestamp {
    at(time::OffsetDateTime::now_utc() + offset)
}

/// An egg-lte to Japan, picked up at `pickup` and returned at `back`, from
/// `from_day` to `to_day` days after today, paid with [`card`].
pub fn roaming_request(
    request_id: &str,
    (pickup, back): (&str, &str),
    from_day: i64,
    to_day: i64,
) -> pb::ReserveRoamingRequest {
    pb::ReserveRoamingRequest {
        request_id: request_id.to_owned(),
        device_model: "egg-lte".to_owned(),
        country: "JP".to_owned(),
        pickup_booth: pickup.to_owned(),
        return_booth: back.to_owned(),
        start_date: date_in(from_day),
        end_date: date_in(to_day),
        payment: Some(card()),
    }
}

/// `space` for `plate` from `from` to `to` after now, paid with [`card`].
pub fn parking_request(
    request_id: &str,
    space: &str,
    plate: &str,
    from: time::Duration,
    to: time::Duration,
) -> pb::ReserveParkingRequest {
    let now = time::OffsetDateTime::now_utc();
    pb::ReserveParkingRequest {
        request_id: request_id.to_owned(),
        space_id: space.to_owned(),
        vehicle_plate: plate.to_owned(),
        start_time: Some(at(now + from)),
        end_time: Some(at(now + to)),
        payment: Some(card()),
    }
}
