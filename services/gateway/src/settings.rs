//! The gateway's settings (the `[gateway]` table of the mesh's settings).

use std::net::SocketAddr;
use std::path::PathBuf;

use adapters_auth::Credentials;
use adapters_settings::{POSITIVE, SettingsError, file_only};
use domain_kernel::{BoothCode, LotCode, Principal, Role};
use serde::{Deserialize, Serialize};

adapters_settings::section! {
    /// Limits at the edge and who may log in.
    #[derive(Debug, Clone)]
    pub struct GatewaySettings {
        /// The public port; loopback by default (plaintext is for one
        /// machine: a gateway on another address without `tls_cert` says so
        /// loudly at start). The services stay on loopback in `roaming up`.
        pub listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 50050));
        /// The public port's certificate chain (PEM, leaf first); with
        /// `tls_key`, the port serves TLS 1.2/1.3 (ALPN `h2`, `http/1.1` for
        /// gRPC-web) and plaintext only for health and reflection (probes).
        /// Read again every `tls_reload_ms`: a renewed certificate needs no
        /// restart.
        pub tls_cert: Option<PathBuf> = None;
        /// The key of `tls_cert` (PEM).
        pub tls_key: Option<PathBuf> = None;
        /// Calls per second each principal may make (sustained).
        pub rate_per_second: u32 = 200, check POSITIVE;
        /// Calls a principal may make at once before the rate applies.
        pub burst: u32 = 400, check POSITIVE;
        /// Login attempts per minute per username and source (an IPv4
        /// address or an IPv6 /64); a source may try twice this over all
        /// usernames.
        pub logins_per_minute: u32 = 30, check POSITIVE;
        /// A login's whole life, in seconds (60 to 86,400): its refresh
        /// tokens are single-use and rotated, and none outlives this much
        /// time after the password check.
        pub login_ttl_secs: u64 = 86_400, check 60..=86_400;
        /// Largest request message, in bytes (1 KiB to 16 MiB).
        pub max_message_bytes: usize = 64 * 1024, check 1_024..=16 * 1024 * 1024;
        /// Deadline given to unary calls that arrive without one, in
        /// milliseconds.
        pub default_deadline_ms: u64 = 10_000, check POSITIVE;
        /// The longest deadline a unary call may have, in milliseconds: a
        /// longer `grpc-timeout` is cut to this (watch streams keep theirs:
        /// they live as long as a page is open, bounded by the view's watch
        /// limits). At least `default_deadline_ms`.
        pub max_deadline_ms: u64 = 60_000, check POSITIVE;
        /// Unary calls in flight at once; more are shed with `UNAVAILABLE`.
        pub max_concurrent_calls: usize = 1_024, check POSITIVE;
        /// Unary calls one principal may have in flight at once at the
        /// gateway (from its token check to its answer, its body's arrival
        /// included); more are refused with `RESOURCE_EXHAUSTED` /
        /// `IN_FLIGHT_LIMIT` and a `RetryInfo`. A sixteenth of
        /// `max_concurrent_calls`: filling the gateway takes sixteen busy
        /// principals, while a principal calling at its whole rate (200/s)
        /// with calls of 250 ms (the reserve target) has 50 in flight.
        pub max_calls_per_principal: usize = 64, check POSITIVE;
        /// Unary calls inside one replica of a service at once (the gateway
        /// admits this many times the replicas its balancer knows: the
        /// addresses, or what their names resolve to, followed each second); a call
        /// over it waits its turn for at most `admission_wait_ms`, then is
        /// refused with `UNAVAILABLE` and a `RetryInfo`. Size it from the
        /// concurrency at which a replica's throughput stops growing
        /// (BENCHMARKS-LOG.md, run 5). Each gateway admits this many on its own:
        /// with several gateways a replica sees their sum.
        pub admission_per_replica: usize = 64, check 1..=MAX_ADMISSION_PER_REPLICA;
        /// The longest a call waits for admission, in milliseconds (at most
        /// `default_deadline_ms`).
        pub admission_wait_ms: u64 = 25;
        /// Origins of other web apps whose pages may call the gateway from a
        /// browser (gRPC-web with CORS), as `https://host[:port]`,
        /// comma-separated. Empty: only the console the gateway serves
        /// itself (same origin, no CORS).
        pub allowed_origins: Vec<String> = Vec::new(), check origins;
        /// Who may get a token from `AuthService/IssueToken` (file only). Empty
        /// in `roaming up` means the demo principals (DOMAIN.md, "The demo catalog").
        pub principals: Vec<PrincipalEntry> = Vec::new(), env file_only, check principals;
    }
}

/// One login: its argon2 PHC hash (`roaming hash-password` prints one), roles
/// and, for booth staff, the booth; for a gate, its parking lot.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalEntry {
    pub username: String,
    pub password_hash: String,
    pub roles: Vec<String>,
    #[serde(default)]
    pub booth: Option<String>,
    #[serde(default)]
    pub lot: Option<String>,
}

impl std::fmt::Debug for PrincipalEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrincipalEntry")
            .field("username", &self.username)
            .field("roles", &self.roles)
            .field("booth", &self.booth)
            .field("lot", &self.lot)
            .finish_non_exhaustive()
    }
}

/// The most unary calls the gateway admits into one replica (a larger value
/// means no admission limit at all; the benchmark's "before" uses 100,000).
pub const MAX_ADMISSION_PER_REPLICA: usize = 1_000_000;

/// The hash of the demo password `demo` (embedded mode only).
pub const DEMO_PASSWORD_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$LrrEiUf+UiA5dYW+OML28A$hHo4P0Ly8THiqf7aykioqyR/ngUmM6Bd26SrQgX1XMQ";

/// The demo principals (DOMAIN.md, "The demo catalog"): username, role, and the place
/// the role is bound to (the booth of booth staff, the lot of a gate).
pub const DEMO_PRINCIPALS: [(&str, &str, Option<&str>); 6] = [
    ("alice", "customer", None),
    ("bob", "customer", None),
    ("staff-icn-t1", "booth_staff", Some("ICN-T1")),
    ("staff-gmp", "booth_staff", Some("GMP")),
    ("gate-p1", "gate", Some("P1")),
    ("ops", "operator", None),
];

impl PrincipalEntry {
    pub fn demo() -> Vec<Self> {
        DEMO_PRINCIPALS
            .iter()
            .map(|(username, role, place)| Self {
                username: (*username).to_owned(),
                password_hash: DEMO_PASSWORD_HASH.to_owned(),
                roles: vec![(*role).to_owned()],
                booth: place.filter(|_| *role == "booth_staff").map(str::to_owned),
                lot: place.filter(|_| *role == "gate").map(str::to_owned),
            })
            .collect()
    }
}

impl GatewaySettings {
    /// Checks every setting (each against its declaration, then the ones
    /// that bound each other); the error names the setting.
    ///
    /// # Errors
    /// The first setting out of bounds.
    pub fn validate(&self) -> Result<(), SettingsError> {
        adapters_settings::Section::check(self, "gateway.")?;
        self.check_together()
    }

    /// The checks that involve two settings (each one alone is checked by its
    /// declaration).
    ///
    /// # Errors
    /// When `admission_wait_ms` exceeds `default_deadline_ms`, or that
    /// exceeds `max_deadline_ms`.
    pub fn check_together(&self) -> Result<(), SettingsError> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => {
                return Err(adapters_settings::bad(
                    "gateway.tls_key",
                    "not set: gateway.tls_cert needs its key",
                ));
            }
            (None, Some(_)) => {
                return Err(adapters_settings::bad(
                    "gateway.tls_cert",
                    "not set: gateway.tls_key needs its certificate",
                ));
            }
            _ => {}
        }
        if self.default_deadline_ms > self.max_deadline_ms {
            return Err(adapters_settings::bad(
                "gateway.default_deadline_ms",
                "must not exceed max_deadline_ms",
            ));
        }
        if self.admission_wait_ms > self.default_deadline_ms {
            return Err(adapters_settings::bad(
                "gateway.admission_wait_ms",
                "must not exceed default_deadline_ms",
            ));
        }
        Ok(())
    }

    /// The configured principals, or `fallback` when none are configured.
    pub fn credentials(&self, fallback: &[PrincipalEntry]) -> Result<Credentials, String> {
        credentials(if self.principals.is_empty() {
            fallback
        } else {
            &self.principals
        })
    }
}

/// The check of `gateway.principals`: each entry logs in as someone.
#[allow(clippy::ptr_arg)] // a check takes the setting's own type
fn origins(origins: &Vec<String>) -> Result<(), String> {
    match origins.iter().find(|o| !is_origin(o)) {
        Some(o) => Err(format!(
            "{o:?} is not an origin as a browser sends it (scheme://host[:port], http or https, \
             lower case, no default port, no path)"
        )),
        None => Ok(()),
    }
}

/// `https://console.example.com`, `http://127.0.0.1:8080`: what a browser
/// sends in `Origin`. No wildcard, path, query or trailing slash; the host in
/// lower case and no default port (`:443` for https, `:80` for http), since a
/// browser never sends those and CORS compares the bytes: such an entry would
/// silently grant nothing.
fn is_origin(origin: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        match v6.split_once(']') {
            Some((ip, rest)) if ip.parse::<std::net::Ipv6Addr>().is_ok() => {
                (ip, rest.strip_prefix(':').map_or(Some(rest), Some))
            }
            _ => return false,
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, Some("")),
        }
    };
    let port_ok = match port {
        Some("") => !authority.ends_with(':'),
        Some(p) => {
            p.parse::<u16>().is_ok_and(|p| p > 0)
                && !matches!((scheme, p), ("http", "80") | ("https", "443"))
        }
        None => false,
    };
    matches!(scheme, "http" | "https")
        && !host.is_empty()
        && (authority.starts_with('[')
            || host
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-')))
        && port_ok
}

#[allow(clippy::ptr_arg)] // a check takes the setting's own type
fn principals(entries: &Vec<PrincipalEntry>) -> Result<(), String> {
    credentials(entries).map(|_| ()).map_err(|e| {
        e.strip_prefix("gateway.principals ")
            .map_or_else(|| e.clone(), str::to_owned)
    })
}

/// The credentials of `entries`; the error names the entry.
fn credentials(entries: &[PrincipalEntry]) -> Result<Credentials, String> {
    let mut credentials = Credentials::default();
    for e in entries {
        let roles = e
            .roles
            .iter()
            .map(|r| {
                Role::parse(r)
                    .ok_or_else(|| format!("gateway.principals {}: unknown role {r:?}", e.username))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if roles.is_empty() {
            return Err(format!("gateway.principals {}: no role", e.username));
        }
        let booth = place(e, "booth", e.booth.as_deref(), BoothCode::parse)?;
        if roles.contains(&Role::BoothStaff) && booth.is_none() {
            return Err(format!(
                "gateway.principals {}: booth staff need a booth",
                e.username
            ));
        }
        let lot = place(e, "lot", e.lot.as_deref(), LotCode::parse)?;
        if roles.contains(&Role::Gate) && lot.is_none() {
            return Err(format!(
                "gateway.principals {}: a gate needs a lot",
                e.username
            ));
        }
        credentials
            .add(
                &e.username,
                &e.password_hash,
                Principal::new(e.username.clone(), roles, booth).with_lot(lot),
            )
            .map_err(|err| err.to_string())?;
    }
    Ok(credentials)
}

/// The booth or lot a principal is bound to, parsed; the error names both.
fn place<T, E: std::fmt::Display>(
    e: &PrincipalEntry,
    what: &str,
    raw: Option<&str>,
    parse: fn(&str) -> Result<T, E>,
) -> Result<Option<T>, String> {
    raw.map(parse)
        .transpose()
        .map_err(|err| format!("gateway.principals {}: {what} {err}", e.username))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_origins_are_bare_http_or_https_origins() {
        for good in [
            "https://console.example.com",
            "http://127.0.0.1:8080",
            "https://[::1]:8443",
            "http://localhost",
            "http://console.example.com:443",
            "https://console.example.com:80",
        ] {
            assert!(is_origin(good), "{good}");
        }
        for bad in [
            "*",
            "console.example.com",
            "https://console.example.com/",
            "https://console.example.com/app",
            "ftp://example.com",
            "https://example.com:",
            "https://example.com:99999",
            "https://",
            "https://[nope]:1",
            "https://exa mple.com",
            // A browser sends neither: the entry would never match.
            "https://Console.Example.com",
            "https://console.example.com:443",
            "http://console.example.com:80",
        ] {
            assert!(!is_origin(bad), "{bad}");
        }
        let s = GatewaySettings {
            allowed_origins: vec!["https://ok.example".into(), "*".into()],
            ..GatewaySettings::default()
        };
        let e = s.validate().unwrap_err().to_string();
        assert!(
            e.contains("gateway.allowed_origins") && e.contains("\"*\""),
            "{e}"
        );
    }

    #[test]
    fn the_demo_principals_are_valid_and_log_in_with_demo() {
        let s = GatewaySettings::default();
        s.validate().unwrap();
        let creds = s.credentials(&PrincipalEntry::demo()).unwrap();
        let staff = creds.check("staff-icn-t1", "demo").unwrap();
        assert_eq!(staff.booth().unwrap().as_str(), "ICN-T1");
        let gate = creds.check("gate-p1", "demo").unwrap();
        assert_eq!(gate.lot().unwrap().as_str(), "P1");
        assert!(creds.check("alice", "alice").is_none());
    }

    #[test]
    fn admission_limits_are_checked() {
        for (per_replica, wait_ms, problem) in [
            (
                0,
                25,
                "invalid setting gateway.admission_per_replica: must be 1-1000000",
            ),
            (
                MAX_ADMISSION_PER_REPLICA + 1,
                25,
                "invalid setting gateway.admission_per_replica: must be 1-1000000",
            ),
            (
                64,
                10_001,
                "invalid setting gateway.admission_wait_ms: must not exceed default_deadline_ms",
            ),
        ] {
            let s = GatewaySettings {
                admission_per_replica: per_replica,
                admission_wait_ms: wait_ms,
                ..GatewaySettings::default()
            };
            assert_eq!(s.validate().unwrap_err().to_string(), problem);
        }
    }

    #[test]
    fn the_default_deadline_is_within_the_cap() {
        let s = GatewaySettings {
            default_deadline_ms: 60_001,
            ..GatewaySettings::default()
        };
        assert_eq!(
            s.validate().unwrap_err().to_string(),
            "invalid setting gateway.default_deadline_ms: must not exceed max_deadline_ms"
        );
        let s = GatewaySettings {
            default_deadline_ms: 60_000,
            ..GatewaySettings::default()
        };
        s.validate().unwrap();
    }

    #[test]
    fn bad_principals_are_named() {
        let s = GatewaySettings {
            principals: vec![PrincipalEntry {
                username: "x".into(),
                password_hash: DEMO_PASSWORD_HASH.into(),
                roles: vec!["booth_staff".into()],
                booth: None,
                lot: None,
            }],
            ..GatewaySettings::default()
        };
        assert_eq!(
            s.validate().unwrap_err().to_string(),
            "invalid setting gateway.principals: x: booth staff need a booth"
        );
        let gate = GatewaySettings {
            principals: vec![PrincipalEntry {
                username: "g".into(),
                password_hash: DEMO_PASSWORD_HASH.into(),
                roles: vec!["gate".into()],
                booth: None,
                lot: None,
            }],
            ..GatewaySettings::default()
        };
        assert_eq!(
            gate.validate().unwrap_err().to_string(),
            "invalid setting gateway.principals: g: a gate needs a lot"
        );
    }
}
