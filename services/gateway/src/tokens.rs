//! `roaming.auth.v1.AuthService`: credentials in, a signed token out.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use adapters_auth::{AuthError, Credentials, Issuer, RefreshFamilies, RefreshTokens, Reused};
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
/// Checks that may wait for a thread, over all usernames; more are refused at
/// once. A waiting check holds its password only (at most 1 KiB), not a
/// buffer.
const QUEUED_CHECKS: usize = 32;
/// Checks one username may have waiting: a flood aimed at one account takes
/// two places, not the queue.
const QUEUED_PER_USERNAME: usize = 2;
/// Checks waiting in the lane of known places (see [`Lane`]).
const QUEUED_KNOWN: usize = 16;
/// How long a queued check may wait before it is refused.
const CHECK_DEADLINE: Duration = Duration::from_secs(3);
/// Known places remembered (username and source): the oldest are forgotten.
const KNOWN_PLACES: usize = 100_000;

/// Which queue a login waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    /// The username signed in successfully from this source (address, or
    /// IPv6 /64) before, on this gateway: served first. An attacker cannot
    /// take this lane for a username without sending from its owner's network.
    Known,
    /// Everyone else, round-robin by username.
    Fair,
}

struct Job {
    user: String,
    password: String,
    queued: Instant,
    answer: oneshot::Sender<Checked>,
}

/// What became of a queued check.
enum Checked {
    /// It waited past `CHECK_DEADLINE` and was not run.
    Late,
    /// The principal, if the password was right.
    Done(Option<Principal>),
}

/// Checks waiting in one lane: one turn per username in order, at most
/// `QUEUED_PER_USERNAME` of a username's.
#[derive(Default)]
struct FairQueue {
    by_user: HashMap<String, VecDeque<Job>>,
    turns: VecDeque<String>,
    waiting: usize,
}

impl FairQueue {
    /// Queues `job` unless the lane holds `capacity` or its username's share.
    fn push(&mut self, job: Job, capacity: usize) -> bool {
        if self.waiting >= capacity {
            return false;
        }
        let user = job.user.clone();
        let queue = self.by_user.entry(user.clone()).or_default();
        if queue.len() >= QUEUED_PER_USERNAME {
            return false;
        }
        queue.push_back(job);
        if queue.len() == 1 {
            self.turns.push_back(user);
        }
        self.waiting += 1;
        true
    }

    fn pop(&mut self) -> Option<Job> {
        let user = self.turns.pop_front()?;
        let queue = self.by_user.get_mut(&user)?;
        let job = queue.pop_front();
        if queue.is_empty() {
            self.by_user.remove(&user);
        } else {
            self.turns.push_back(user);
        }
        self.waiting -= usize::from(job.is_some());
        job
    }
}

/// Of four checks while both lanes wait, the known lane's share.
const KNOWN_SHARE: u32 = 3;

/// The waiting checks: the known lane first (three turns in four while the
/// other lane waits too, so it can never starve it), each lane one turn per
/// username.
#[derive(Default)]
struct Queues {
    known: FairQueue,
    fair: FairQueue,
    known_streak: u32,
    closed: bool,
}

impl Queues {
    fn next(&mut self) -> Option<Job> {
        let known_turn =
            self.known.waiting > 0 && (self.fair.waiting == 0 || self.known_streak < KNOWN_SHARE);
        if known_turn {
            self.known_streak += 1;
            self.known.pop()
        } else {
            self.known_streak = 0;
            self.fair.pop()
        }
    }
}

/// A fixed pool of password-checking threads behind bounded, fair queues:
/// during a flood from many addresses, a username's own checks wait behind
/// one check of each other username (not behind the flood's whole queue), and
/// a login from a place its owner signed in from before goes first.
struct Checker {
    queues: Arc<(Mutex<Queues>, Condvar)>,
}

impl std::fmt::Debug for Checker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checker").finish_non_exhaustive()
    }
}

impl Checker {
    fn new(credentials: Arc<Credentials>) -> Self {
        let queues = Arc::new((Mutex::new(Queues::default()), Condvar::new()));
        for n in 0..CHECK_THREADS {
            let queues = Arc::clone(&queues);
            let credentials = Arc::clone(&credentials);
            let spawned = std::thread::Builder::new()
                .name(format!("password-check-{n}"))
                .spawn(move || {
                    loop {
                        let (lock, ready) = &*queues;
                        let job = {
                            let mut q = lock.lock().unwrap_or_else(PoisonError::into_inner);
                            loop {
                                if q.closed {
                                    return;
                                }
                                if let Some(job) = q.next() {
                                    break job;
                                }
                                q = ready.wait(q).unwrap_or_else(PoisonError::into_inner);
                            }
                        };
                        // The caller is gone (its call cancelled): no check.
                        if job.answer.is_closed() {
                            continue;
                        }
                        // Waited too long: the caller has been told already.
                        if job.queued.elapsed() > CHECK_DEADLINE {
                            let _ = job.answer.send(Checked::Late);
                            continue;
                        }
                        let _ = job
                            .answer
                            .send(Checked::Done(credentials.check(&job.user, &job.password)));
                    }
                });
            if let Err(e) = spawned {
                warn!(error = %e, "could not start a password-check thread");
            }
        }
        Self { queues }
    }

    /// `Err(())` when its queue is full or the check did not start in time.
    async fn check(
        &self,
        user: String,
        password: String,
        lane: Lane,
    ) -> Result<Option<Principal>, ()> {
        let (answer, answered) = oneshot::channel();
        {
            let (lock, ready) = &*self.queues;
            let mut q = lock.lock().unwrap_or_else(PoisonError::into_inner);
            let job = Job {
                user,
                password,
                queued: Instant::now(),
                answer,
            };
            let queued = match lane {
                Lane::Known => q.known.push(job, QUEUED_KNOWN),
                Lane::Fair => q.fair.push(job, QUEUED_CHECKS),
            };
            if !queued {
                return Err(());
            }
            ready.notify_one();
        }
        match tokio::time::timeout(CHECK_DEADLINE + Duration::from_secs(1), answered).await {
            Ok(Ok(Checked::Done(outcome))) => Ok(outcome),
            _ => Err(()),
        }
    }
}

impl Drop for Checker {
    fn drop(&mut self) {
        let (lock, ready) = &*self.queues;
        lock.lock().unwrap_or_else(PoisonError::into_inner).closed = true;
        ready.notify_all();
    }
}

/// Where a login comes from, for its limits: an IPv4 address, or the /64 of
/// an IPv6 one (a customer line is given a /64 or more, so counting /128s
/// would give one attacker 2^64 sources). IPv4-mapped addresses count as IPv4.
fn source_of(peer: Option<IpAddr>) -> String {
    match peer.map(|ip| ip.to_canonical()) {
        None => String::new(),
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

/// (username, source) pairs that signed in successfully: bounded, the oldest
/// forgotten first.
#[derive(Debug, Default)]
struct KnownPlaces(Mutex<(HashSet<String>, VecDeque<String>)>);

impl KnownPlaces {
    fn key(username: &str, source: &str) -> String {
        format!("{username}\u{0}{source}")
    }

    fn contains(&self, username: &str, source: &str) -> bool {
        let places = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        places.0.contains(&Self::key(username, source))
    }

    fn add(&self, username: &str, source: &str) {
        let key = Self::key(username, source);
        let mut places = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if places.0.insert(key.clone()) {
            places.1.push_back(key);
            while places.1.len() > KNOWN_PLACES {
                if let Some(old) = places.1.pop_front() {
                    places.0.remove(&old);
                }
            }
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

/// Logins remembered for refresh-token reuse detection (see
/// [`RefreshFamilies`]): the ones ending soonest are forgotten first.
const REMEMBERED_LOGINS: usize = 200_000;

/// How logins are limited.
#[derive(Debug, Clone, Copy)]
pub struct LoginLimits {
    /// Password attempts per minute per username and source.
    pub per_minute: u32,
    /// A login's whole life: refreshing never extends it past this after the
    /// password check.
    pub ttl: Duration,
}

#[derive(Debug)]
pub struct TokenService {
    /// Access and refresh tokens, both signed with the gateway's key; `None`
    /// when tokens come from an external provider.
    signing: Option<(Issuer, RefreshTokens)>,
    credentials: Arc<Credentials>,
    checker: Checker,
    /// Places each username signed in from: their logins go first.
    known: KnownPlaces,
    /// Refresh tokens spent, per login.
    families: RefreshFamilies,
    /// Attempts per (username, source): a stranger elsewhere cannot lock a
    /// user out.
    per_user: RateLimiter,
    /// Attempts per source, over all usernames (password spraying).
    per_source: RateLimiter,
    refusals: RefusalLog,
}

impl TokenService {
    /// Without an `issuer` (tokens come from an external provider) every
    /// request is answered `FAILED_PRECONDITION`.
    pub fn new(issuer: Option<Issuer>, credentials: Credentials, limits: LoginLimits) -> Self {
        let logins_per_minute = limits.per_minute;
        let per_minute = f64::from(logins_per_minute);
        let credentials = Arc::new(credentials);
        Self {
            signing: issuer.map(|i| {
                let refresh = RefreshTokens::new(i.key().clone(), &i.audience().issuer, limits.ttl);
                (i, refresh)
            }),
            checker: Checker::new(Arc::clone(&credentials)),
            known: KnownPlaces::default(),
            families: RefreshFamilies::new(REMEMBERED_LOGINS),
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
        let source = source_of(peer);
        let limited = self
            .per_source
            .check(&source)
            .and_then(|()| self.per_user.check(&format!("{username}\u{0}{source}")));
        if let Err(wait) = limited {
            self.refusals.refused("rate limited", &username, peer);
            return Err(login_rate_limited(wait));
        }
        let lane = if self.known.contains(&username, &source) {
            Lane::Known
        } else {
            Lane::Fair
        };
        let Ok(principal) = self.checker.check(username.clone(), password, lane).await else {
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
        self.known.add(&username, &source);
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
        if let Err(wait) = self.per_source.check(&source_of(peer)) {
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
        // Signed before it is spent: a failure here spends nothing.
        let token = issuer.issue(&principal).map_err(signing_failed)?;
        let next = refresh.rotate(&claims).map_err(signing_failed)?;
        // Single use: a second use of this token (or of an older one of its
        // login) means a copy is in other hands, so the login ends for both;
        // the newest one again within a short grace is a lost answer's retry.
        if self.families.spend(&claims) == Err(Reused) {
            self.refusals
                .refused("refresh token reused", &claims.username, peer);
            return Err(reason(
                Code::Unauthenticated,
                proto::reasons::REFRESH_REUSED,
                "this refresh token was used before, so the login was ended; sign in again",
                &[],
            ));
        }
        Ok(Response::new(RefreshTokenResponse {
            access_token: token,
            token_type: "Bearer".to_owned(),
            expires_in: seconds(issuer.ttl()),
            refresh_token: next,
            refresh_expires_in: i64::try_from(claims.expires_in).unwrap_or(i64::MAX),
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
        TokenService::new(
            Some(issuer),
            credentials,
            LoginLimits {
                per_minute: 30,
                ttl: Duration::from_hours(24),
            },
        )
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

    /// OAuth 2.0 Security BCP: each refresh token is single-use; using one
    /// again (the owner's copy and a thief's) ends the login for both, past
    /// the short grace for a lost answer's retry.
    #[tokio::test]
    async fn a_refresh_token_is_rotated_and_a_reused_one_ends_the_login() {
        let key = SigningKey::generate().unwrap();
        let g = gateway(&key, &[("alice", "pw", Role::Customer)]);
        let first = login(&g, "alice", "pw").await;
        let second = refresh(&g, &first.refresh_token).await.unwrap();
        assert_ne!(second.refresh_token, first.refresh_token);
        assert!(second.refresh_expires_in <= first.refresh_expires_in);
        // The answer was lost and the client asks again at once: served.
        let retried = refresh(&g, &first.refresh_token).await.unwrap();
        assert!(!retried.refresh_token.is_empty());
        let third = refresh(&g, &second.refresh_token).await.unwrap();
        // The first token, replayed.
        let reused = refresh(&g, &first.refresh_token).await.unwrap_err();
        assert_eq!(
            (reused.code(), why(&reused)),
            (
                Code::Unauthenticated,
                proto::reasons::REFRESH_REUSED.to_owned()
            )
        );
        // The login is over: the newest token is refused too.
        let after = refresh(&g, &third.refresh_token).await.unwrap_err();
        assert_eq!(why(&after), proto::reasons::REFRESH_REUSED);
        // A new password check starts a new login.
        let again = login(&g, "alice", "pw").await;
        assert!(refresh(&g, &again.refresh_token).await.is_ok());
    }

    #[test]
    fn an_ipv6_source_is_its_64_and_a_mapped_ipv4_its_address() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(
            source_of(ip("2001:db8:1:2:aaaa::1")),
            source_of(ip("2001:db8:1:2:ffff:1:2:3"))
        );
        assert_ne!(
            source_of(ip("2001:db8:1:2::1")),
            source_of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(source_of(ip("::ffff:192.0.2.7")), "192.0.2.7");
        assert_ne!(source_of(ip("192.0.2.7")), source_of(ip("192.0.2.8")));
    }

    fn job(user: &str) -> (Job, oneshot::Receiver<Checked>) {
        let (answer, answered) = oneshot::channel();
        let job = Job {
            user: user.to_owned(),
            password: String::new(),
            queued: Instant::now(),
            answer,
        };
        (job, answered)
    }

    /// A flood of one username's checks waits behind one turn of every other
    /// username; the known lane goes first, three turns in four.
    #[test]
    fn the_queue_serves_known_places_first_then_usernames_in_turn() {
        let mut q = Queues::default();
        let mut receivers = Vec::new();
        for user in ["flood", "flood", "flood", "alice", "bob"] {
            let (j, r) = job(user);
            receivers.push(r);
            let queued = q.fair.push(j, QUEUED_CHECKS);
            assert_eq!(queued, receivers.len() != 3, "{user}: two per username");
        }
        for user in ["k1", "k2", "k3", "k4", "k1", "k1"] {
            let (j, r) = job(user);
            receivers.push(r);
            q.known.push(j, QUEUED_KNOWN);
        }
        let order: Vec<String> = std::iter::from_fn(|| q.next().map(|j| j.user)).collect();
        assert_eq!(
            order,
            [
                "k1", "k2", "k3", "flood", "k4", "k1", "alice", "bob", "flood"
            ]
        );
        assert_eq!((q.known.waiting, q.fair.waiting), (0, 0));
        assert!(q.fair.by_user.is_empty() && q.known.turns.is_empty());
    }
}
