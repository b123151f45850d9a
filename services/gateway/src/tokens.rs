//! `roaming.auth.v1.AuthService`: credentials in, a signed token out.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant};

use adapters_auth::{AuthError, Credentials, Issuer, RefreshTokens};
use adapters_grpc::status::{invalid, reason, retry_later};
use domain_kernel::Principal;
use domain_kernel::Violations;
use proto::auth::auth_service_server::AuthService;
use proto::auth::{
    IssueTokenRequest, IssueTokenResponse, RefreshTokenRequest, RefreshTokenResponse,
};
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
    fn new(credentials: Arc<Credentials>) -> Self {
        let (jobs, queue) = mpsc::sync_channel::<Job>(QUEUED_CHECKS);
        let queue = Arc::new(Mutex::new(queue));
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

/// How long a login lasts before the password is asked again.
const REFRESH_TTL: Duration = Duration::from_hours(24);

#[derive(Debug)]
pub struct TokenService {
    /// Access and refresh tokens, both signed with the gateway's key; `None`
    /// when tokens come from an external provider.
    signing: Option<(Issuer, RefreshTokens)>,
    credentials: Arc<Credentials>,
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
        let credentials = Arc::new(credentials);
        Self {
            signing: issuer.map(|i| {
                let refresh =
                    RefreshTokens::new(i.key().clone(), &i.audience().issuer, REFRESH_TTL);
                (i, refresh)
            }),
            checker: Checker::new(Arc::clone(&credentials)),
            credentials,
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
        let Some((issuer, refresh)) = &self.signing else {
            return Err(external_provider());
        };
        let source = peer.map_or_else(String::new, |p| p.to_string());
        let limited = self
            .per_source
            .check(&source)
            .and_then(|()| self.per_user.check(&format!("{username}\u{0}{source}")));
        if let Err(wait) = limited {
            self.refusals.refused("rate limited", &username, peer);
            return Err(login_rate_limited(wait));
        }
        let Ok(principal) = self.checker.check(username.clone(), password).await else {
            self.refusals
                .refused("password checks busy", &username, peer);
            return Err(retry_later(
                Code::ResourceExhausted,
                proto::reasons::LOGIN_BUSY,
                "too many logins at once; try again shortly",
                Duration::from_secs(1),
                &[],
            ));
        };
        let Some(principal) = principal else {
            self.refusals.refused("bad credentials", &username, peer);
            return Err(reason(
                Code::Unauthenticated,
                proto::reasons::BAD_CREDENTIALS,
                "unknown username or wrong password",
                &[],
            ));
        };
        let token = issuer.issue(&principal).map_err(signing_failed)?;
        // The credentials that just checked out; gone only if the principal
        // list changed in between (it does not change while running).
        let (refresh_token, refresh_expires_in) = match self.credentials.current(&username) {
            Some((fingerprint, _)) => (
                refresh
                    .issue(&username, &fingerprint)
                    .map_err(signing_failed)?,
                seconds(refresh.ttl()),
            ),
            None => (String::new(), 0),
        };
        info!(username, "token issued");
        Ok(Response::new(IssueTokenResponse {
            access_token: token,
            token_type: "Bearer".to_owned(),
            expires_in: seconds(issuer.ttl()),
            refresh_token,
            refresh_expires_in,
        }))
    }

    async fn refresh_token(
        &self,
        request: Request<RefreshTokenRequest>,
    ) -> Result<Response<RefreshTokenResponse>, Status> {
        let peer = request.remote_addr().map(|a| a.ip());
        let raw = request.into_inner().refresh_token;
        if raw.is_empty() || raw.len() > 4_096 {
            return Err(invalid(&Violations::one(
                "refresh_token",
                "must be 1-4096 characters",
            )));
        }
        let Some((issuer, refresh)) = &self.signing else {
            return Err(external_provider());
        };
        let source = peer.map_or_else(String::new, |p| p.to_string());
        if let Err(wait) = self.per_source.check(&source) {
            self.refusals.refused("rate limited", "", peer);
            return Err(login_rate_limited(wait));
        }
        let claims = refresh.check(&raw).map_err(|e| {
            self.refusals.refused("bad refresh token", "", peer);
            adapters_auth::layer::unauthenticated(&e)
        })?;
        // The login's credentials must still be the configured ones: a
        // removed principal, a new password or other roles end the login.
        let principal = match self.credentials.current(&claims.username) {
            Some((fingerprint, principal)) if fingerprint == claims.fingerprint => principal,
            _ => {
                self.refusals
                    .refused("refresh of a revoked login", &claims.username, peer);
                return Err(reason(
                    Code::Unauthenticated,
                    proto::reasons::REFRESH_REVOKED,
                    "this login was revoked; sign in again",
                    &[],
                ));
            }
        };
        let token = issuer.issue(&principal).map_err(signing_failed)?;
        Ok(Response::new(RefreshTokenResponse {
            access_token: token,
            token_type: "Bearer".to_owned(),
            expires_in: seconds(issuer.ttl()),
        }))
    }
}

/// `IssueToken` / `RefreshToken` on a gateway whose tokens come from elsewhere.
fn external_provider() -> Status {
    reason(
        Code::FailedPrecondition,
        proto::reasons::EXTERNAL_IDENTITY_PROVIDER,
        "this gateway does not issue tokens; get one from the identity provider",
        &[],
    )
}

fn login_rate_limited(wait: Duration) -> Status {
    retry_later(
        Code::ResourceExhausted,
        proto::reasons::LOGIN_RATE_LIMITED,
        "too many login attempts from this address",
        wait,
        &[],
    )
}

fn seconds(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

fn signing_failed(e: AuthError) -> Status {
    warn!(error = %e, "signing a token failed");
    Status::internal("could not sign a token")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use adapters_auth::{Audience, SigningKey, hash_password};
    use domain_kernel::{CustomerId, Role};

    use super::*;

    fn gateway(key: &SigningKey, users: &[(&str, &str, Role)]) -> TokenService {
        let mut credentials = Credentials::default();
        for (name, password, role) in users {
            credentials
                .add(
                    name,
                    &hash_password(password).unwrap(),
                    Principal::new(*name, [*role], None),
                )
                .unwrap();
        }
        let issuer = Issuer::new(key.clone(), Audience::default(), Duration::from_mins(15));
        TokenService::new(Some(issuer), credentials, 30)
    }

    async fn login(g: &TokenService, user: &str, password: &str) -> IssueTokenResponse {
        g.issue_token(Request::new(IssueTokenRequest {
            username: user.into(),
            password: password.into(),
        }))
        .await
        .unwrap()
        .into_inner()
    }

    async fn refresh(g: &TokenService, token: &str) -> Result<RefreshTokenResponse, Status> {
        g.refresh_token(Request::new(RefreshTokenRequest {
            refresh_token: token.into(),
        }))
        .await
        .map(Response::into_inner)
    }

    fn why(s: &Status) -> String {
        use tonic_types::StatusExt as _;
        s.get_details_error_info()
            .map(|i| i.reason)
            .unwrap_or_default()
    }

    /// Revocation (issue 17): a login ends when its principal is removed or
    /// its password or roles change, even though the refresh token itself is
    /// still valid; the gateways that restart with the new principals (same
    /// key) refuse it.
    #[tokio::test]
    async fn a_changed_or_removed_principal_can_no_longer_refresh() {
        let key = SigningKey::generate().unwrap();
        let before = gateway(
            &key,
            &[
                ("alice", "pw-1", Role::Customer),
                ("bob", "pw-b", Role::Customer),
                ("carol", "pw-c", Role::Customer),
            ],
        );
        let alice = login(&before, "alice", "pw-1").await;
        let bob = login(&before, "bob", "pw-b").await;
        let carol = login(&before, "carol", "pw-c").await;
        let again = refresh(&before, &alice.refresh_token).await.unwrap();
        let verifier = adapters_auth::Verifier::new(
            vec![adapters_auth::TrustedKey::of(&key)],
            &Audience::default(),
        );
        assert_eq!(
            verifier.verify(&again.access_token).unwrap().customer_id(),
            Some(CustomerId::parse("alice").unwrap())
        );

        // alice changed her password, bob was removed, carol became staff.
        let after = gateway(
            &key,
            &[
                ("alice", "pw-2", Role::Customer),
                ("carol", "pw-c", Role::Operator),
            ],
        );
        for token in [
            &alice.refresh_token,
            &bob.refresh_token,
            &carol.refresh_token,
        ] {
            let refused = refresh(&after, token).await.unwrap_err();
            assert_eq!(
                (refused.code(), why(&refused)),
                (
                    Code::Unauthenticated,
                    proto::reasons::REFRESH_REVOKED.to_owned()
                )
            );
        }
        // A new login works again; garbage and access tokens are no refresh tokens.
        let fresh = login(&after, "alice", "pw-2").await;
        assert!(refresh(&after, &fresh.refresh_token).await.is_ok());
        for bad in [fresh.access_token.as_str(), "not-a-token"] {
            assert_eq!(
                refresh(&after, bad).await.unwrap_err().code(),
                Code::Unauthenticated
            );
        }
    }
}
