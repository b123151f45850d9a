//! What the sections share: the loopback address of a default port, and the
//! checks and environment forms of URLs.

use std::net::SocketAddr;

/// `127.0.0.1:port`.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A database URL from the environment: as given, even empty (which its
/// check then refuses), so a missing secret never falls back to SQLite.
#[allow(clippy::unnecessary_wraps)] // the shape of an environment parser
pub fn database_url_from_env(value: &str) -> Result<Option<String>, String> {
    Ok(Some(value.to_owned()))
}

/// `sqlite:` or `postgres:` (`postgresql:`), when set.
#[allow(clippy::ref_option)] // a check takes the setting's own type
pub fn database_scheme(url: &Option<String>) -> Result<(), String> {
    match url {
        Some(url)
            if !(url.starts_with("sqlite:")
                || url.starts_with("postgres:")
                || url.starts_with("postgresql:")) =>
        {
            Err("must start with sqlite: or postgres:".to_owned())
        }
        _ => Ok(()),
    }
}

/// Every address an `http://` or `https://` URL.
#[allow(clippy::ptr_arg)] // a check takes the setting's own type
pub fn http_urls(addrs: &Vec<String>) -> Result<(), String> {
    match addrs
        .iter()
        .find(|a| !(a.starts_with("http://") || a.starts_with("https://")))
    {
        Some(a) => Err(format!("{a:?} must be an http:// URL")),
        None => Ok(()),
    }
}

/// `off`, `optional` or `required`.
#[allow(clippy::ptr_arg)] // a check takes the setting's own type
pub fn mesh_tls(value: &String) -> Result<(), String> {
    adapters_grpc::tls::ClientCerts::parse(value).map(drop)
}

/// One `nats://` server or several, comma-separated, each one the client
/// can parse (`adapters_bus::nats::servers`), when set.
#[allow(clippy::ref_option)] // a check takes the setting's own type
pub fn nats_scheme(url: &Option<String>) -> Result<(), String> {
    match url {
        Some(url) => adapters_bus::nats::servers(url).map(drop),
        None => Ok(()),
    }
}

/// Not empty.
#[allow(clippy::ptr_arg)] // a check takes the setting's own type
pub fn not_empty(value: &String) -> Result<(), String> {
    if value.is_empty() {
        Err("must not be empty".to_owned())
    } else {
        Ok(())
    }
}
