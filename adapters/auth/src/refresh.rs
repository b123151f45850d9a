//! Refresh tokens: how a user's tokens are revoked before they expire.
//!
//! Access tokens are short-lived (15 minutes by default) and verified by every
//! service on its own, with no shared state. A login also returns a refresh
//! token, which only the gateway accepts (`AuthService/RefreshToken`): a
//! different audience, so no service ever takes it for an access token. It
//! names the login's credentials by a fingerprint (a digest of the password
//! hash and the roles, never the hash itself), and the gateway hands out a new
//! access token only while the configured principal still has that
//! fingerprint. Removing a principal or changing its password or roles
//! therefore revokes its refresh tokens at once, and its access tokens within
//! their lifetime.
//!
//! As the OAuth 2.0 Security BCP asks (RFC 9700, 4.14.2): a login lives at
//! most its `ttl` from the password check whatever is refreshed (`auth`); each
//! refresh token is single-use, a refresh answering with its successor (same
//! login, `fam`, next generation, `gen`); and a token used a second time
//! revokes its whole login ([`RefreshFamilies`]), because one of the two users
//! of it is a thief. What a gateway remembers of logins is its own: see
//! [`RefreshFamilies`] for what that means with several gateways.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use jsonwebtoken::{Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::keys::{ALGORITHM, SigningKey, TrustedKey};
use crate::token::{now, refusal_of};
use crate::{AuthError, Refusal};

/// The audience of refresh tokens; access tokens never carry it.
pub const REFRESH_AUDIENCE: &str = "roaming-refresh";

/// What a refresh token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct RefreshClaims {
    iss: String,
    aud: String,
    sub: String,
    exp: u64,
    nbf: u64,
    iat: u64,
    /// [`fingerprint`] of the credentials the login used.
    cred: String,
    /// The login (token family): random, shared by its rotated tokens.
    fam: String,
    /// This token's generation in its family: 0 at the password check.
    #[serde(rename = "gen")]
    generation: u32,
    /// When the password was checked (seconds since the epoch): the login
    /// ends `ttl` after it.
    auth: u64,
}

/// A digest of a principal's configured credentials: changes when its
/// password hash or anything about its roles changes.
pub fn fingerprint(phc_hash: &str, principal: &domain_kernel::Principal) -> String {
    let mut h = Sha256::new();
    h.update(phc_hash.as_bytes());
    h.update([0]);
    h.update(format!("{principal:?}").as_bytes());
    hex(&h.finalize()[..16])
}

/// Signs and checks refresh tokens with the gateway's key.
#[derive(Debug, Clone)]
pub struct RefreshTokens {
    key: SigningKey,
    trusted: TrustedKey,
    issuer: String,
    ttl: Duration,
    validation: Validation,
}

/// A refresh token's subject and credential fingerprint, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refresh {
    pub username: String,
    pub fingerprint: String,
    /// Seconds the refresh token has left.
    pub expires_in: u64,
    /// The login it belongs to and its generation there.
    pub family: String,
    pub generation: u32,
    /// When the login ends (seconds since the epoch).
    pub expires_at: u64,
    auth: u64,
}

impl RefreshTokens {
    /// `ttl` is a login's whole life, capped at 24 hours (the longest any
    /// token here lives).
    pub fn new(key: SigningKey, issuer: &str, ttl: Duration) -> Self {
        let mut validation = Validation::new(ALGORITHM);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[REFRESH_AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.leeway = 5;
        Self {
            trusted: TrustedKey::of(&key),
            key,
            issuer: issuer.to_owned(),
            ttl: ttl.min(Duration::from_secs(crate::token::MAX_TOKEN_LIFETIME_SECS)),
            validation,
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The first refresh token of a new login (a password was just checked).
    pub fn issue(&self, username: &str, fingerprint: &str) -> Result<String, AuthError> {
        let mut family = [0_u8; 16];
        getrandom::fill(&mut family).map_err(|e| AuthError::Key(e.to_string()))?;
        let now = now();
        self.sign(RefreshClaims {
            iss: self.issuer.clone(),
            aud: REFRESH_AUDIENCE.to_owned(),
            sub: username.to_owned(),
            exp: now + self.ttl.as_secs(),
            nbf: now,
            iat: now,
            cred: fingerprint.to_owned(),
            fam: hex(&family),
            generation: 0,
            auth: now,
        })
    }

    /// The successor of a checked refresh token: same login, next
    /// generation, and the login's end unchanged.
    pub fn rotate(&self, used: &Refresh) -> Result<String, AuthError> {
        let now = now();
        self.sign(RefreshClaims {
            iss: self.issuer.clone(),
            aud: REFRESH_AUDIENCE.to_owned(),
            sub: used.username.clone(),
            exp: used.expires_at,
            nbf: now.min(used.expires_at),
            iat: now,
            cred: used.fingerprint.clone(),
            fam: used.family.clone(),
            generation: used.generation.saturating_add(1),
            auth: used.auth,
        })
    }

    fn sign(&self, claims: RefreshClaims) -> Result<String, AuthError> {
        let mut header = Header::new(ALGORITHM);
        header.kid = Some(self.key.kid().to_owned());
        jsonwebtoken::encode(&header, &claims, self.key.encoding())
            .map_err(|e| AuthError::Key(e.to_string()))
    }

    /// The refresh token's claims, if it is one of ours and still valid.
    pub fn check(&self, token: &str) -> Result<Refresh, AuthError> {
        let refused = AuthError::Refused;
        let header = jsonwebtoken::decode_header(token).map_err(|_| refused(Refusal::Malformed))?;
        if header.alg != ALGORITHM {
            return Err(refused(Refusal::Algorithm));
        }
        if header.kid.as_deref() != Some(self.trusted.kid()) {
            return Err(refused(Refusal::UnknownKey));
        }
        let data =
            jsonwebtoken::decode::<RefreshClaims>(token, &self.trusted.decoding, &self.validation)
                .map_err(|e| refused(refusal_of(&e)))?;
        let c = data.claims;
        // A login ends `ttl` after its password check, whatever a token says
        // (a token signed with a longer ttl by an earlier configuration).
        let expires_at = c.exp.min(c.auth.saturating_add(self.ttl.as_secs()));
        if c.fam.is_empty() {
            return Err(refused(Refusal::MissingClaim));
        }
        if expires_at <= now() {
            return Err(refused(Refusal::Expired));
        }
        Ok(Refresh {
            expires_in: expires_at.saturating_sub(now()),
            username: c.sub,
            fingerprint: c.cred,
            family: c.fam,
            generation: c.generation,
            expires_at,
            auth: c.auth,
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        use std::fmt::Write as _;
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A refresh token used twice, past the grace for a lost answer: its login
/// is revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reused;

/// How a refresh token was spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spent {
    /// Its first use: hand out its successor.
    First,
    /// The newest spent token again within [`REPEAT_GRACE_SECS`]: its
    /// answer was probably lost (a dropped connection, a timeout), so its
    /// successor is handed out again (signed anew, same generation), not
    /// counted as a theft. A thief replaying it in that time gets a
    /// successor too; whichever of the two successors is used second then
    /// ends the login.
    Repeat,
}

/// How long after a refresh its token may come again as a lost answer's
/// retry (RFC 9700, 4.14.2, allows such a grace).
pub const REPEAT_GRACE_SECS: u64 = 30;

/// What a gateway remembers of the logins refreshed through it: per login,
/// the next generation it may accept, and whether it was revoked for a reuse.
///
/// In memory, per gateway. With one gateway (`roaming up`) a replayed token is
/// always caught. With several, a login is followed by each gateway its
/// refreshes reach: a token replayed at a gateway that saw a later generation
/// is caught there (and the login revoked there, where the thief's or the
/// owner's next refresh then fails), one replayed at a gateway that never saw
/// the login is taken once; a restart forgets. Bounded: at most `capacity`
/// logins, the ones ending soonest forgotten first when full.
#[derive(Debug)]
pub struct RefreshFamilies {
    logins: Mutex<HashMap<String, Login>>,
    capacity: usize,
}

#[derive(Debug, Clone, Copy)]
struct Login {
    /// The lowest generation still unused; `u32::MAX` once revoked.
    next: u32,
    expires_at: u64,
    /// When generation `next - 1` was spent (seconds since the epoch).
    spent_at: u64,
}

const REVOKED: u32 = u32::MAX;

impl RefreshFamilies {
    pub fn new(capacity: usize) -> Self {
        Self {
            logins: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// Spends `token`: [`Spent::First`] the first time its generation is
    /// used, [`Spent::Repeat`] for the newest spent one again within
    /// [`REPEAT_GRACE_SECS`] (the caller hands out its successor either way),
    /// `Err(Reused)` when it, or an older token of its login, was used before;
    /// the login is then revoked for good (until it ends).
    pub fn spend(&self, token: &Refresh) -> Result<Spent, Reused> {
        let now = now();
        let mut logins = self.logins.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(login) = logins.get_mut(&token.family) {
            if login.next != REVOKED
                && token.generation.saturating_add(1) == login.next
                && now.saturating_sub(login.spent_at) <= REPEAT_GRACE_SECS
            {
                return Ok(Spent::Repeat);
            }
            if login.next == REVOKED || token.generation < login.next {
                login.next = REVOKED;
                return Err(Reused);
            }
            login.next = token.generation.saturating_add(1);
            login.spent_at = now;
            return Ok(Spent::First);
        }
        if logins.len() >= self.capacity {
            logins.retain(|_, l| l.expires_at > now);
            if logins.len() >= self.capacity {
                // Forget the login ending soonest (never a revoked one while
                // another is left: a revocation is what this memory is for).
                let victim = logins
                    .iter()
                    .min_by_key(|(_, l)| (l.next == REVOKED, l.expires_at))
                    .map(|(k, _)| k.clone());
                if let Some(victim) = victim {
                    logins.remove(&victim);
                }
            }
        }
        logins.insert(
            token.family.clone(),
            Login {
                next: token.generation.saturating_add(1),
                expires_at: token.expires_at,
                spent_at: now,
            },
        );
        Ok(Spent::First)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Audience, Issuer, Verifier};
    use domain_kernel::Principal;

    #[test]
    fn a_refresh_token_is_no_access_token_and_names_the_credentials() {
        let key = SigningKey::generate().unwrap();
        let tokens = RefreshTokens::new(key.clone(), "roaming-gateway", Duration::from_hours(24));
        let alice = Principal::customer(&domain_kernel::CustomerId::parse("alice").unwrap());
        let fp = fingerprint("$argon2id$hash-1", &alice);
        let refresh = tokens.issue("alice", &fp).unwrap();
        let checked = tokens.check(&refresh).unwrap();
        assert_eq!(
            (checked.username.as_str(), checked.fingerprint),
            ("alice", fp.clone())
        );
        // A service refuses it as a bearer token.
        let services = Verifier::new(vec![TrustedKey::of(&key)], &Audience::default());
        assert!(services.verify(&refresh).is_err());
        // And an access token is no refresh token.
        let access = Issuer::new(key, Audience::default(), Duration::from_mins(5))
            .issue(&alice)
            .unwrap();
        assert!(matches!(
            tokens.check(&access),
            Err(AuthError::Refused(
                Refusal::WrongAudience | Refusal::Malformed | Refusal::MissingClaim
            ))
        ));
        // Another password, or other roles, is another fingerprint.
        assert_ne!(fingerprint("$argon2id$hash-2", &alice), fp);
        assert_ne!(
            fingerprint("$argon2id$hash-1", &Principal::operator("alice")),
            fp
        );
        // Another key's refresh token is refused.
        let other = RefreshTokens::new(
            SigningKey::generate().unwrap(),
            "roaming-gateway",
            Duration::from_hours(1),
        );
        assert!(tokens.check(&other.issue("alice", &fp).unwrap()).is_err());
    }

    #[test]
    fn a_refresh_rotates_within_the_logins_life_and_a_reuse_revokes_the_login() {
        let tokens = RefreshTokens::new(
            SigningKey::generate().unwrap(),
            "roaming-gateway",
            Duration::from_hours(1),
        );
        let families = RefreshFamilies::new(16);
        let first = tokens.check(&tokens.issue("alice", "fp").unwrap()).unwrap();
        assert_eq!(first.generation, 0);
        assert_eq!(families.spend(&first), Ok(Spent::First));
        // Its answer lost, the same token again at once: handed out again.
        assert_eq!(families.spend(&first), Ok(Spent::Repeat));
        let second = tokens.check(&tokens.rotate(&first).unwrap()).unwrap();
        assert_eq!(
            (second.family.as_str(), second.generation, second.expires_at),
            (first.family.as_str(), 1, first.expires_at),
            "same login, next generation, same end"
        );
        assert_eq!(families.spend(&second), Ok(Spent::First));
        // The first token again, a generation back: a thief or the owner
        // holds a copy.
        assert_eq!(families.spend(&first), Err(Reused));
        // ... and from now on the login is dead, its newest token included.
        let third = tokens.check(&tokens.rotate(&second).unwrap()).unwrap();
        assert_eq!(families.spend(&third), Err(Reused));
        // Another login of the same user is untouched.
        let other = tokens.check(&tokens.issue("alice", "fp").unwrap()).unwrap();
        assert_ne!(other.family, first.family);
        families.spend(&other).unwrap();
    }

    #[test]
    fn a_login_ends_its_ttl_after_the_password_check_whatever_its_token_says() {
        let key = SigningKey::generate().unwrap();
        let long = RefreshTokens::new(key.clone(), "roaming-gateway", Duration::from_hours(24));
        let token = long.issue("alice", "fp").unwrap();
        // The gateway now keeps logins 1 h: the 24 h token ends in 1 h.
        let short = RefreshTokens::new(key, "roaming-gateway", Duration::from_hours(1));
        let checked = short.check(&token).unwrap();
        assert!(checked.expires_in <= 3_600, "{}", checked.expires_in);
        let rotated = short.check(&short.rotate(&checked).unwrap()).unwrap();
        assert_eq!(rotated.expires_at, checked.expires_at);
    }

    #[test]
    fn a_full_memory_forgets_the_login_ending_soonest_and_keeps_revocations() {
        let tokens = RefreshTokens::new(
            SigningKey::generate().unwrap(),
            "roaming-gateway",
            Duration::from_hours(1),
        );
        let families = RefreshFamilies::new(2);
        let a = tokens.check(&tokens.issue("a", "fp").unwrap()).unwrap();
        families.spend(&a).unwrap();
        let a2 = tokens.check(&tokens.rotate(&a).unwrap()).unwrap();
        families.spend(&a2).unwrap();
        assert_eq!(families.spend(&a), Err(Reused)); // a revoked
        let mut b = tokens.check(&tokens.issue("b", "fp").unwrap()).unwrap();
        b.expires_at -= 10; // b ends first
        families.spend(&b).unwrap();
        let c = tokens.check(&tokens.issue("c", "fp").unwrap()).unwrap();
        families.spend(&c).unwrap(); // full: b forgotten, not the revoked a
        assert_eq!(families.spend(&a2), Err(Reused));
        let c2 = tokens.check(&tokens.rotate(&c).unwrap()).unwrap();
        families.spend(&c2).unwrap();
        assert_eq!(families.spend(&c), Err(Reused));
    }
}
