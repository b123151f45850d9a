//! Domain errors -> gRPC status with rich details (`google.rpc.*`).

use proto::reasons;
use std::collections::HashMap;
use std::time::Duration;

use domain_kernel::{StoreError, Violations};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};
use tracing::error;

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

/// Unexpected failures: logged with their cause, answered opaquely.
pub fn internal(e: &StoreError) -> Status {
    error!(error = ?e, "request failed unexpectedly");
    Status::internal("internal error")
}

/// Converts a time span of the domain to std.
pub fn std_duration(d: time::Duration) -> Duration {
    d.try_into().unwrap_or(Duration::from_secs(1))
}
