//! Issuing and verifying tokens: `EdDSA` only; `iss`, `aud`, `exp`, `nbf` and
//! `sub` required and checked; the key chosen by `kid` among trusted keys.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use domain_kernel::{BoothCode, LotCode, Principal, Role};
use jsonwebtoken::{Header, Validation};
use serde::{Deserialize, Serialize};

use crate::keys::{ALGORITHM, SigningKey, TrustedKey};
use crate::{AuthError, Refusal};

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub exp: u64,
    pub nbf: u64,
    pub iat: u64,
    /// Role names (`customer`, `booth_staff`, `gate`, `operator`, `service`).
    pub roles: Vec<String>,
    /// The booth of booth staff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub booth: Option<String>,
    /// The parking lot of a gate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lot: Option<String>,
}

/// Who issues tokens and for whom: the `iss` and `aud` every token carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audience {
    pub issuer: String,
    pub audience: String,
}

impl Default for Audience {
    fn default() -> Self {
        Self {
            issuer: "roaming-gateway".to_owned(),
            audience: "roaming-mesh".to_owned(),
        }
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Signs tokens with one key.
#[derive(Debug, Clone)]
pub struct Issuer {
    key: SigningKey,
    audience: Audience,
    ttl: Duration,
}

impl Issuer {
    pub fn new(key: SigningKey, audience: Audience, ttl: Duration) -> Self {
        Self { key, audience, ttl }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn audience(&self) -> &Audience {
        &self.audience
    }

    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// A token for `principal`, valid from now for the issuer's lifetime.
    pub fn issue(&self, principal: &Principal) -> Result<String, AuthError> {
        let now = now();
        let claims = Claims {
            iss: self.audience.issuer.clone(),
            aud: self.audience.audience.clone(),
            sub: principal.subject().to_owned(),
            iat: now,
            nbf: now,
            exp: now + self.ttl.as_secs(),
            roles: principal
                .roles()
                .iter()
                .map(|r| r.as_str().to_owned())
                .collect(),
            booth: principal.booth().map(ToString::to_string),
            lot: principal.lot().map(ToString::to_string),
        };
        self.sign(&claims)
    }

    /// Signs arbitrary claims (tests forge expired or misdirected tokens this way).
    pub fn sign(&self, claims: &Claims) -> Result<String, AuthError> {
        let mut header = Header::new(ALGORITHM);
        header.kid = Some(self.key.kid().to_owned());
        jsonwebtoken::encode(&header, claims, self.key.encoding())
            .map_err(|e| AuthError::Key(e.to_string()))
    }
}

/// Checks tokens against the trusted keys: the configured ones, and those a
/// [`crate::jwks::JwksSource`] fetched from an identity provider.
#[derive(Debug, Clone)]
pub struct Verifier {
    keys: Arc<[TrustedKey]>,
    fetched: FetchedKeys,
    validation: Validation,
    verified: Arc<Mutex<HashMap<String, Verified>>>,
}

/// The keys fetched from a JWKS URL, replaced whole on every fetch, and the
/// signal that a token named a key nobody knows (so the source fetches again,
/// at its bounded rate).
#[derive(Debug, Clone, Default)]
pub struct FetchedKeys {
    keys: Arc<std::sync::RwLock<Arc<[TrustedKey]>>>,
    unknown_kid: Arc<tokio::sync::Notify>,
}

impl FetchedKeys {
    fn find(&self, kid: &str) -> Option<TrustedKey> {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|k| k.kid == kid)
            .cloned()
    }

    /// Waits until a token named an unknown key (a permit is kept if that
    /// happened while nobody waited).
    pub async fn unknown_kid(&self) {
        self.unknown_kid.notified().await;
    }

    pub fn len(&self) -> usize {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A token whose signature and claims were checked: the same bytes need only
/// their validity period checked again (Ed25519 verification was a few
/// percent of a reservation's CPU time, repeated for the same bearer token).
#[derive(Debug, Clone)]
struct Verified {
    principal: Principal,
    nbf: u64,
    exp: u64,
}

/// Most verified tokens remembered (a few hundred bytes each); when full, the
/// memory starts over.
const VERIFIED_CAPACITY: usize = 1024;

/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 5;

/// The longest validity a token may have: `exp` at most this long after
/// `nbf` and after now (the gateway issues at most 24 h, services 10 min).
pub const MAX_TOKEN_LIFETIME_SECS: u64 = 86_400;

impl Verifier {
    pub fn new(keys: Vec<TrustedKey>, audience: &Audience) -> Self {
        let mut validation = Validation::new(ALGORITHM);
        validation.set_issuer(&[&audience.issuer]);
        validation.set_audience(&[&audience.audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        Self {
            keys: keys.into(),
            fetched: FetchedKeys::default(),
            validation,
            verified: Arc::default(),
        }
    }

    /// The fetched part of the key set, for a [`crate::jwks::JwksSource`].
    pub fn fetched(&self) -> &FetchedKeys {
        &self.fetched
    }

    /// Replaces the fetched keys. Remembered tokens are forgotten, so a key
    /// the provider withdrew stops verifying at once.
    pub fn install_fetched(&self, keys: Vec<TrustedKey>) {
        *self
            .fetched
            .keys
            .write()
            .unwrap_or_else(PoisonError::into_inner) = keys.into();
        self.verified
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    fn remembered(&self, token: &str) -> Option<Result<Principal, AuthError>> {
        let known = self
            .verified
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(token)
            .cloned()?;
        let now = now();
        Some(if now > known.exp + LEEWAY_SECS {
            Err(AuthError::Refused(Refusal::Expired))
        } else if now + LEEWAY_SECS < known.nbf {
            Err(AuthError::Refused(Refusal::NotYetValid))
        } else {
            Ok(known.principal)
        })
    }

    fn remember(&self, token: &str, verified: Verified) {
        let mut map = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= VERIFIED_CAPACITY {
            map.clear();
        }
        map.insert(token.to_owned(), verified);
    }

    /// The principal a token stands for, or why it is refused. The message is
    /// safe to send to the caller: it never contains the token.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        if let Some(known) = self.remembered(token) {
            return known;
        }
        let refused = AuthError::Refused;
        let header = jsonwebtoken::decode_header(token).map_err(|_| refused(Refusal::Malformed))?;
        if header.alg != ALGORITHM {
            return Err(refused(Refusal::Algorithm));
        }
        let key = match header.kid.as_deref() {
            Some(kid) => self
                .keys
                .iter()
                .find(|k| k.kid == kid)
                .cloned()
                .or_else(|| self.fetched.find(kid)),
            None if self.keys.len() == 1 && self.fetched.is_empty() => self.keys.first().cloned(),
            None => None,
        };
        let Some(key) = key else {
            if header.kid.is_some() {
                // Perhaps the provider rotated its keys: look again (bounded).
                self.fetched.unknown_kid.notify_one();
            }
            return Err(refused(Refusal::UnknownKey));
        };
        let data = jsonwebtoken::decode::<Claims>(token, &key.decoding, &self.validation)
            .map_err(|e| refused(refusal_of(&e)))?;
        let claims = data.claims;
        if claims.exp.saturating_sub(claims.nbf) > MAX_TOKEN_LIFETIME_SECS + LEEWAY_SECS
            || claims.exp.saturating_sub(now()) > MAX_TOKEN_LIFETIME_SECS + LEEWAY_SECS
        {
            return Err(refused(Refusal::TooLong));
        }
        if let Some(only) = &key.only_subject
            && (claims.sub != *only || claims.roles.iter().any(|r| r != "service"))
        {
            return Err(refused(Refusal::KeyScope));
        }
        let principal = principal_of(&claims)?;
        let verified = Verified {
            principal: principal.clone(),
            nbf: claims.nbf,
            exp: claims.exp,
        };
        self.remember(token, verified);
        Ok(principal)
    }
}

/// Why `jsonwebtoken` refused a token, as the caller is told.
pub(crate) fn refusal_of(e: &jsonwebtoken::errors::Error) -> Refusal {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::ExpiredSignature => Refusal::Expired,
        K::ImmatureSignature => Refusal::NotYetValid,
        K::InvalidIssuer => Refusal::WrongIssuer,
        K::InvalidAudience => Refusal::WrongAudience,
        K::InvalidSignature => Refusal::BadSignature,
        K::MissingRequiredClaim(_) => Refusal::MissingClaim,
        K::InvalidAlgorithm => Refusal::Algorithm,
        _ => Refusal::Malformed,
    }
}

/// The principal of verified claims. Unknown role names are ignored (an
/// external provider may add its own); a token with no known role is refused.
fn principal_of(claims: &Claims) -> Result<Principal, AuthError> {
    let refused = AuthError::Refused;
    let roles: Vec<Role> = claims.roles.iter().filter_map(|r| Role::parse(r)).collect();
    if roles.is_empty() {
        return Err(refused(Refusal::NoRole));
    }
    if claims.sub.trim().is_empty() {
        return Err(refused(Refusal::MissingClaim));
    }
    let booth = match (&claims.booth, roles.contains(&Role::BoothStaff)) {
        (Some(b), _) => Some(BoothCode::parse(b).map_err(|_| refused(Refusal::BadBooth))?),
        (None, true) => return Err(refused(Refusal::NoBooth)),
        (None, false) => None,
    };
    let lot = match (&claims.lot, roles.contains(&Role::Gate)) {
        (Some(l), _) => Some(LotCode::parse(l).map_err(|_| refused(Refusal::BadLot))?),
        (None, true) => return Err(refused(Refusal::NoLot)),
        (None, false) => None,
    };
    Ok(Principal::new(claims.sub.clone(), roles, booth).with_lot(lot))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Issuer, Verifier) {
        let key = SigningKey::generate().unwrap();
        let verifier = Verifier::new(vec![TrustedKey::of(&key)], &Audience::default());
        (
            Issuer::new(key, Audience::default(), Duration::from_mins(10)),
            verifier,
        )
    }

    #[test]
    fn a_remembered_token_is_still_refused_once_it_expired() {
        let (issuer, verifier) = pair();
        let who = Principal::customer(&domain_kernel::CustomerId::parse("alice").unwrap());
        let token = issuer.issue(&who).unwrap();
        assert_eq!(verifier.verify(&token).unwrap(), who);
        assert_eq!(verifier.verify(&token).unwrap(), who, "remembered");
        // The same bytes, remembered with a validity period that has passed.
        let mut known = verifier
            .verified
            .lock()
            .unwrap()
            .get(&token)
            .cloned()
            .unwrap();
        known.exp = now() - LEEWAY_SECS - 1;
        verifier.remember(&token, known.clone());
        assert!(matches!(
            verifier.verify(&token),
            Err(AuthError::Refused(Refusal::Expired))
        ));
        known.exp = now() + 60;
        known.nbf = now() + LEEWAY_SECS + 60;
        verifier.remember(&token, known);
        assert!(matches!(
            verifier.verify(&token),
            Err(AuthError::Refused(Refusal::NotYetValid))
        ));
    }

    #[test]
    fn an_issued_token_verifies_to_its_principal() {
        let (issuer, verifier) = pair();
        let staff = Principal::booth_staff("staff-gmp", BoothCode::parse("GMP").unwrap());
        let token = issuer.issue(&staff).unwrap();
        assert_eq!(verifier.verify(&token).unwrap(), staff);
    }

    #[test]
    fn a_key_for_one_service_signs_nothing_else() {
        let key = SigningKey::generate().unwrap();
        let verifier = Verifier::new(
            vec![TrustedKey::of(&key).only_for("reservation")],
            &Audience::default(),
        );
        let issuer = Issuer::new(key, Audience::default(), Duration::from_mins(10));
        let own = issuer.issue(&Principal::service("reservation")).unwrap();
        assert!(verifier.verify(&own).is_ok());
        for other in [
            Principal::service("payment"),
            Principal::operator("reservation"),
        ] {
            let token = issuer.issue(&other).unwrap();
            assert!(matches!(
                verifier.verify(&token),
                Err(AuthError::Refused(_))
            ));
        }
    }

    #[test]
    fn booth_staff_need_a_booth_and_someone_needs_a_role() {
        let (issuer, verifier) = pair();
        let mut claims = Claims {
            iss: "roaming-gateway".into(),
            aud: "roaming-mesh".into(),
            sub: "x".into(),
            exp: now() + 60,
            nbf: now(),
            iat: now(),
            roles: vec!["booth_staff".into()],
            booth: None,
            lot: None,
        };
        let err = verifier.verify(&issuer.sign(&claims).unwrap()).unwrap_err();
        assert!(matches!(err, AuthError::Refused(Refusal::NoBooth)));
        claims.roles = vec!["gate".into()];
        let err = verifier.verify(&issuer.sign(&claims).unwrap()).unwrap_err();
        assert!(matches!(err, AuthError::Refused(Refusal::NoLot)));
        claims.lot = Some("-".into());
        let err = verifier.verify(&issuer.sign(&claims).unwrap()).unwrap_err();
        assert!(matches!(err, AuthError::Refused(Refusal::BadLot)));
        claims.lot = Some("p2".into());
        let gate = verifier.verify(&issuer.sign(&claims).unwrap()).unwrap();
        assert_eq!(gate.lot().map(LotCode::as_str), Some("P2"));
        claims.roles = vec!["admin".into()];
        let err = verifier.verify(&issuer.sign(&claims).unwrap()).unwrap_err();
        assert!(matches!(err, AuthError::Refused(Refusal::NoRole)));
    }

    #[test]
    fn a_token_valid_for_longer_than_a_day_is_refused() {
        let (issuer, verifier) = pair();
        let claims = |nbf: u64, exp: u64| Claims {
            iss: "roaming-gateway".into(),
            aud: "roaming-mesh".into(),
            sub: "alice".into(),
            exp,
            nbf,
            iat: nbf,
            roles: vec!["customer".into()],
            booth: None,
            lot: None,
        };
        let day = MAX_TOKEN_LIFETIME_SECS;
        let ok = issuer.sign(&claims(now(), now() + day)).unwrap();
        assert!(verifier.verify(&ok).is_ok());
        for (nbf, exp) in [
            (now(), now() + day + 60),
            // Back-dated nbf does not buy a longer life either.
            (now() - 3_600, now() + day - 60),
            (now(), u64::MAX / 2),
        ] {
            let err = verifier
                .verify(&issuer.sign(&claims(nbf, exp)).unwrap())
                .unwrap_err();
            assert!(
                matches!(err, AuthError::Refused(Refusal::TooLong)),
                "{nbf} {exp}: {err:?}"
            );
        }
    }
}
