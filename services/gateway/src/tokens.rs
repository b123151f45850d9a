//! `roaming.auth.v1.AuthService`: credentials in, a signed token out.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant};

use adapters_auth::{Credentials, Issuer};
use adapters_grpc::status::{invalid, reason, retry_later};
use domain_kernel::Principal;
use domain_kernel::Violations;
use proto::auth::auth_service_server::AuthService;
use proto::auth::{IssueTokenRequest, IssueTokenResponse};
use tokio::sync::oneshot;
use tonic::{Code, Request, Response, Status};
use tracing::{info, warn};

use crate::limit::RateLimiter;

/// Threads checking passwords: argon2 is CPU- and memory-heavy by design (19
/// MiB a check), so a flood of logins must not starve the machine. A fixed
/// pool, not the blocking pool: each thread keeps its allocator arena, so the
/// memory a flood can pin is this many buffers, not one per blocking thread.
const CHECK_THREADS: usize = 2;
/// Checks that may wait for a thread; more are refused at once.
const QUEUED_CHECKS: usize = 8;
/// How long a queued check may wait before it is refused.
const CHECK_DEADLINE: Duration = Duration::from_secs(3);

type Job = (
    String,
    String,
    Instant,
    oneshot::Sender<Option<Option<Principal>>>,
);

/// A fixed pool of password-checking threads behind a bounded queue.
#[derive(Debug)]
struct Checker {
    jobs: mpsc::SyncSender<Job>,
}

impl Checker {
    fn new(credentials: Credentials) -> Self {
        let (jobs, queue) = mpsc::sync_channel::<Job>(QUEUED_CHECKS);
        let queue = Arc::new(Mutex::new(queue));
        let credentials = Arc::new(credentials);
        for n in 0..CHECK_THREADS {
            let queue = Arc::clone(&queue);
            let credentials = Arc::clone(&credentials);
            let spawned = std::thread::Builder::new()
                .name(format!("password-check-{n}"))
                .spawn(move || {
                    loop {
                        let job = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
                        let Ok((user, password, queued, answer)) = job else {
                            return;
                        };
                        // Waited too long: the caller has been told already.
                        if queued.elapsed() > CHECK_DEADLINE {
                            let _ = answer.send(None);
                            continue;
                        }
                        let _ = answer.send(Some(credentials.check(&user, &password)));
                    }
                });
            if let Err(e) = spawned {
                warn!(error = %e, "could not start a password-check thread");
            }
        }
        Self { jobs }
    }

    /// `Err(())` when the queue is full or the check did not start in time.
    async fn check(&self, user: String, password: String) -> Result<Option<Principal>, ()> {
        let (answer, answered) = oneshot::channel();
        self.jobs
            .try_send((user, password, Instant::now(), answer))
            .map_err(|_| ())?;
        match tokio::time::timeout(CHECK_DEADLINE + Duration::from_secs(1), answered).await {
            Ok(Ok(Some(outcome))) => Ok(outcome),
            _ => Err(()),
        }
    }
}

/// Logs refused logins at WARN, at most once a second, with the count.
#[derive(Debug, Default)]
struct RefusalLog(Mutex<(Option<Instant>, u64)>);

impl RefusalLog {
    fn refused(&self, why: &'static str, username: &str, peer: Option<IpAddr>) {
        let mut last = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        last.1 += 1;
        if last.0.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            let peer = peer.map(|p| p.to_string()).unwrap_or_default();
            warn!(
                username,
                peer,
                refused_since_last = last.1,
                "login refused: {why}"
            );
            *last = (Some(Instant::now()), 0);
        }
    }
}

#[derive(Debug)]
pub struct TokenService {
    issuer: Option<Issuer>,
    checker: Checker,
    /// Attempts per (username, source address): a stranger elsewhere cannot
    /// lock a user out.
    per_user: RateLimiter,
    /// Attempts per source address, over all usernames (password spraying).
    per_source: RateLimiter,
    refusals: RefusalLog,
}

impl TokenService {
    /// Without an `issuer` (tokens come from an external provider) every
    /// request is answered `FAILED_PRECONDITION`.
    pub fn new(issuer: Option<Issuer>, credentials: Credentials, logins_per_minute: u32) -> Self {
        let per_minute = f64::from(logins_per_minute);
        Self {
            issuer,
            checker: Checker::new(credentials),
            per_user: RateLimiter::new(per_minute / 60.0, logins_per_minute.clamp(1, 10)),
            per_source: RateLimiter::new(
                2.0 * per_minute / 60.0,
                logins_per_minute.saturating_mul(2).clamp(1, 20),
            ),
            refusals: RefusalLog::default(),
        }
    }
}

#[tonic::async_trait]
impl AuthService for TokenService {
    async fn issue_token(
        &self,
        request: Request<IssueTokenRequest>,
    ) -> Result<Response<IssueTokenResponse>, Status> {
        let peer = request.remote_addr().map(|a| a.ip());
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
        let source = peer.map_or_else(String::new, |p| p.to_string());
        let limited = self
            .per_source
            .check(&source)
            .and_then(|()| self.per_user.check(&format!("{username}\u{0}{source}")));
        if let Err(wait) = limited {
            self.refusals.refused("rate limited", &username, peer);
            return Err(retry_later(
                Code::ResourceExhausted,
                "LOGIN_RATE_LIMITED",
                "too many login attempts from this address",
                wait,
                &[],
            ));
        }
        let Ok(principal) = self.checker.check(username.clone(), password).await else {
            self.refusals
                .refused("password checks busy", &username, peer);
            return Err(retry_later(
                Code::ResourceExhausted,
                "LOGIN_BUSY",
                "too many logins at once; try again shortly",
                Duration::from_secs(1),
                &[],
            ));
        };
        let Some(principal) = principal else {
            self.refusals.refused("bad credentials", &username, peer);
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
