//! `roaming.auth.v1.AuthService`: credentials in, a signed token out.

use std::sync::Arc;

use adapters_auth::{Credentials, Issuer};
use adapters_grpc::status::{invalid, reason, retry_later};
use domain_kernel::Violations;
use proto::auth::auth_service_server::AuthService;
use proto::auth::{IssueTokenRequest, IssueTokenResponse};
use tokio::sync::Semaphore;
use tonic::{Code, Request, Response, Status};
use tracing::{info, warn};

use crate::limit::RateLimiter;

/// Password checks running at once: argon2 is CPU- and memory-heavy by design,
/// and a flood of logins must not starve the executor or the machine.
const CONCURRENT_CHECKS: usize = 2;

#[derive(Debug)]
pub struct TokenService {
    issuer: Option<Issuer>,
    credentials: Arc<Credentials>,
    logins: RateLimiter,
    checks: Arc<Semaphore>,
}

impl TokenService {
    /// Without an `issuer` (tokens come from an external provider) every
    /// request is answered `FAILED_PRECONDITION`.
    pub fn new(issuer: Option<Issuer>, credentials: Credentials, logins_per_minute: u32) -> Self {
        let per_minute = f64::from(logins_per_minute);
        Self {
            issuer,
            credentials: Arc::new(credentials),
            logins: RateLimiter::new(per_minute / 60.0, logins_per_minute.clamp(1, 10)),
            checks: Arc::new(Semaphore::new(CONCURRENT_CHECKS)),
        }
    }
}

#[tonic::async_trait]
impl AuthService for TokenService {
    async fn issue_token(
        &self,
        request: Request<IssueTokenRequest>,
    ) -> Result<Response<IssueTokenResponse>, Status> {
        let IssueTokenRequest { username, password } = request.into_inner();
        let mut v = Violations::default();
        if username.trim().is_empty() || username.len() > 128 {
            v.add("username", "must be 1-128 characters");
        }
        if password.is_empty() || password.len() > 1_024 {
            v.add("password", "must be 1-1024 characters");
        }
        if !v.is_empty() {
            return Err(invalid(&v));
        }
        let Some(issuer) = &self.issuer else {
            return Err(reason(
                Code::FailedPrecondition,
                "EXTERNAL_IDENTITY_PROVIDER",
                "this gateway does not issue tokens; get one from the identity provider",
                &[],
            ));
        };
        if let Err(wait) = self.logins.check(&username) {
            return Err(retry_later(
                Code::ResourceExhausted,
                "LOGIN_RATE_LIMITED",
                "too many login attempts for this username",
                wait,
                &[],
            ));
        }
        let permit = Arc::clone(&self.checks)
            .acquire_owned()
            .await
            .map_err(|_| Status::unavailable("stopping"))?;
        let credentials = Arc::clone(&self.credentials);
        let user = username.clone();
        let principal = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            credentials.check(&user, &password)
        })
        .await
        .map_err(|_| Status::internal("password check failed"))?;
        let Some(principal) = principal else {
            info!(username, "login refused");
            return Err(reason(
                Code::Unauthenticated,
                "BAD_CREDENTIALS",
                "unknown username or wrong password",
                &[],
            ));
        };
        let token = issuer.issue(&principal).map_err(|e| {
            warn!(error = %e, "signing a token failed");
            Status::internal("could not sign a token")
        })?;
        info!(username, "token issued");
        Ok(Response::new(IssueTokenResponse {
            access_token: token,
            token_type: "Bearer".to_owned(),
            expires_in: i64::try_from(issuer.ttl().as_secs()).unwrap_or(i64::MAX),
        }))
    }
}
