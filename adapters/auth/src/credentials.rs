//! Principals that log in with a password, hashed with argon2id.

use std::collections::HashMap;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use domain_kernel::Principal;

use crate::AuthError;

/// Hashes `password` as a PHC string (`$argon2id$v=19$...`) with a random salt.
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| AuthError::Key(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| AuthError::Key(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Key(e.to_string()))
}

/// Compared against when the username is unknown, so that a wrong username
/// costs as much time as a wrong password (no user enumeration by timing).
const DECOY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$9R9D7nYjzpBHkyYAMpa+zl7FqEOD1fQSEwWXuXDr6Ek";

/// Configured username/password principals.
#[derive(Clone, Default)]
pub struct Credentials {
    users: HashMap<String, (String, Principal)>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Credentials {
    /// Adds a principal; `phc_hash` must be an argon2 PHC string.
    pub fn add(
        &mut self,
        username: &str,
        phc_hash: &str,
        principal: Principal,
    ) -> Result<(), AuthError> {
        PasswordHash::new(phc_hash)
            .map_err(|e| AuthError::Key(format!("password hash of {username}: {e}")))?;
        self.users
            .insert(username.to_owned(), (phc_hash.to_owned(), principal));
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The configured principal of `username` and the [`fingerprint`] of its
    /// credentials now (cheap: no password check), for refreshing a login.
    ///
    /// [`fingerprint`]: crate::refresh::fingerprint
    pub fn current(&self, username: &str) -> Option<(String, Principal)> {
        self.users
            .get(username)
            .map(|(hash, p)| (crate::refresh::fingerprint(hash, p), p.clone()))
    }

    /// The principal whose username and password these are. CPU-heavy (tens of
    /// milliseconds by design): call it off the async executor.
    pub fn check(&self, username: &str, password: &str) -> Option<Principal> {
        let (hash, principal) = match self.users.get(username) {
            Some((hash, principal)) => (hash.as_str(), Some(principal)),
            None => (DECOY, None),
        };
        let parsed = PasswordHash::new(hash).ok()?;
        let ok = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        principal.filter(|_| ok).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_right_password_and_only_it_logs_in() {
        let hash = hash_password("demo").unwrap();
        let mut creds = Credentials::default();
        creds.add("ops", &hash, Principal::operator("ops")).unwrap();
        assert_eq!(creds.check("ops", "demo"), Some(Principal::operator("ops")));
        assert_eq!(creds.check("ops", "demo "), None);
        assert_eq!(creds.check("nobody", "demo"), None);
        assert!(creds.add("x", "plain", Principal::operator("x")).is_err());
        assert!(!format!("{creds:?}").contains("argon2"));
    }

    #[test]
    fn the_decoy_is_a_valid_hash() {
        assert!(PasswordHash::new(DECOY).is_ok());
    }
}
