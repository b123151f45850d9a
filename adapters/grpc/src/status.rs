//! Domain errors -> gRPC status with rich details (`google.rpc.*`).

use proto::reasons;
use std::collections::HashMap;
use std::time::Duration;

use domain_kernel::{StoreError, Violations};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};
use tracing::{error, warn};

use crate::ERROR_DOMAIN;

/// `INVALID_ARGUMENT` with one `BadRequest` field violation per bad field.
pub fn invalid(v: &Violations) -> Status {
    let violations: Vec<FieldViolation> = v
        .iter()
        .map(|f| FieldViolation::new(f.field.clone(), f.description.clone()))
        .collect();
    Status::with_error_details(
        Code::InvalidArgument,
        format!("invalid request: {v}"),
        ErrorDetails::with_bad_request(violations),
    )
}

/// A status with an `ErrorInfo` reason (and metadata).
pub fn reason(
    code: Code,
    reason: &str,
    message: impl Into<String>,
    metadata: &[(&str, String)],
) -> Status {
    let metadata: HashMap<String, String> = metadata
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    Status::with_error_details(
        code,
        message,
        ErrorDetails::with_error_info(reason, ERROR_DOMAIN, metadata),
    )
}

/// A status with `ErrorInfo` and `RetryInfo`: try again after `retry_after`.
pub fn retry_later(
    code: Code,
    reason_text: &str,
    message: impl Into<String>,
    retry_after: Duration,
    metadata: &[(&str, String)],
) -> Status {
    let mut details = ErrorDetails::with_retry_info(Some(retry_after));
    let metadata: HashMap<String, String> = metadata
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    details.set_error_info(reason_text, ERROR_DOMAIN, metadata);
    Status::with_error_details(code, message, details)
}

/// `ABORTED` with reason `BUSY`: the thing is changing, try again shortly.
pub fn busy(message: &str) -> Status {
    retry_later(
        Code::Aborted,
        reasons::BUSY,
        message,
        Duration::from_millis(200),
        &[],
    )
}

pub fn not_found(what: &str) -> Status {
    reason(
        Code::NotFound,
        reasons::NOT_FOUND,
        format!("{what} not found"),
        &[],
    )
}

pub fn forbidden() -> Status {
    reason(
        Code::PermissionDenied,
        reasons::FORBIDDEN,
        "the caller may not do this",
        &[],
    )
}

/// How long a client should wait before retrying a call its service's
/// database could not serve (a failover takes about this long).
pub const STORE_RETRY_AFTER: Duration = Duration::from_secs(1);

/// A store failure of a call that changes nothing (a read): an unavailable
/// store is `UNAVAILABLE` / `STORE_UNAVAILABLE` with a `RetryInfo` (safe to
/// retry), contention `ABORTED` / `BUSY`, anything else `INTERNAL`, logged
/// with its cause and answered opaquely.
pub fn store(e: &StoreError) -> Status {
    match e {
        StoreError::Unavailable(_) => {
            warn!(error = %e, "the database is unavailable");
            retry_later(
                Code::Unavailable,
                reasons::STORE_UNAVAILABLE,
                "the service's database is unavailable; retry shortly",
                STORE_RETRY_AFTER,
                &[],
            )
        }
        StoreError::Contention(_) => busy("the record is changing; try again"),
        StoreError::Failed(_) => {
            error!(error = ?e, "request failed unexpectedly");
            Status::internal("internal error")
        }
    }
}

/// A store failure of a call that changes something (each idempotent by
/// its `request_id` or its reservation): an unavailable store may have
/// failed before or after the commit, so the answer is `UNAVAILABLE` /
/// `OUTCOME_UNKNOWN` with a `RetryInfo`: retry with the same `request_id`
/// (or on the same reservation) to learn the outcome. Otherwise as
/// [`store`].
pub fn store_write(e: &StoreError) -> Status {
    match e {
        StoreError::Unavailable(_) => {
            warn!(error = %e, "the database is unavailable during a change");
            retry_later(
                Code::Unavailable,
                reasons::OUTCOME_UNKNOWN,
                "the service's database is unavailable; the change may or may not have been made: \
                 retry with the same request_id to learn its outcome",
                STORE_RETRY_AFTER,
                &[],
            )
        }
        _ => store(e),
    }
}

/// Converts a time span of the domain to std.
pub fn std_duration(d: time::Duration) -> Duration {
    d.try_into().unwrap_or(Duration::from_secs(1))
}
