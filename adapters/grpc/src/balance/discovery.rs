//! Where an upstream's replicas come from: an address whose host is an IP is
//! one replica for good; one whose host is a name is a replica per address
//! the name resolves to (a Kubernetes headless Service: one A record per
//! ready pod), asked again every interval and soon after a replica fails.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::FutureExt as _;
use futures::future::{BoxFuture, join_all};
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use http::Uri;
use tokio::sync::Notify;
use tokio::time::Instant;
use tonic::transport::Endpoint;
use tracing::warn;

use super::{Pool, UpstreamError, endpoint};

/// The least time between two resolutions that a failing replica asks for
/// (the periodic ones keep their interval).
pub(super) const MIN_GAP: Duration = Duration::from_millis(250);

/// How host names in upstream addresses are resolved, and how often again.
///
/// Addresses whose host is an IP literal (`http://127.0.0.1:50051`,
/// `http://[::1]:50051`) are never resolved.
#[derive(Debug, Clone)]
pub struct Discovery {
    interval: Duration,
    nameserver: Option<SocketAddr>,
}

impl Default for Discovery {
    fn default() -> Self {
        Self::every(Self::DEFAULT_INTERVAL)
    }
}

impl Discovery {
    /// The interval when none is configured (the `resolve_interval_ms`
    /// setting's default).
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

    /// Names resolved as the system says (`/etc/resolv.conf`: its
    /// nameservers, search domains and `ndots`), again every `interval`.
    pub fn every(interval: Duration) -> Self {
        Self {
            interval,
            nameserver: None,
        }
    }

    /// Names resolved by the nameserver at `addr` alone (UDP, no search
    /// domains), not the system's: for tests.
    #[must_use]
    pub fn nameserver(self, addr: SocketAddr) -> Self {
        Self {
            nameserver: Some(addr),
            ..self
        }
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// A lookup that asks the nameserver every time: the cache is cleared
    /// first, so a change shows within the interval whatever the records'
    /// TTL.
    pub(super) fn lookup(&self) -> Result<Lookup, String> {
        let builder = match self.nameserver {
            None => TokioResolver::builder_tokio().map_err(|e| e.to_string())?,
            Some(addr) => {
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut config = ResolverConfig::default();
                config
                    .name_servers
                    .push(NameServerConfig::new(addr.ip(), true, vec![udp]));
                TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
            }
        };
        let resolver = Arc::new(builder.build().map_err(|e| e.to_string())?);
        Ok(Arc::new(move |host: String| {
            let resolver = Arc::clone(&resolver);
            async move {
                resolver.clear_cache();
                resolver
                    .lookup_ip(host.as_str())
                    .await
                    .map(|found| found.iter().collect())
                    .map_err(|e| e.to_string())
            }
            .boxed()
        }))
    }
}

/// Resolves a host name to its addresses (an error says why not).
pub(super) type Lookup =
    Arc<dyn Fn(String) -> BoxFuture<'static, Result<Vec<IpAddr>, String>> + Send + Sync>;

/// One configured address.
pub(super) enum Source {
    /// Its host is an IP address: one replica.
    Fixed {
        address: String,
        endpoint: Box<Endpoint>,
    },
    /// Its host is a name: a replica per address it resolves to.
    Named(Named),
}

/// An address whose host is a name.
pub(super) struct Named {
    /// As configured (`http://reservation:50051`).
    pub(super) address: String,
    pub(super) host: String,
    scheme: String,
    port: u16,
    /// What every call carries as its `:authority`: the name, not the IP
    /// dialled (so a TLS client could verify it).
    origin: Uri,
}

impl Named {
    /// The replica at `ip`: the address it shows as, and its endpoint.
    pub(super) fn replica(
        &self,
        ip: IpAddr,
    ) -> Result<(String, Endpoint), tonic::transport::Error> {
        let address = format!("{}://{}", self.scheme, SocketAddr::new(ip, self.port));
        let endpoint = endpoint(&address)?.origin(self.origin.clone());
        Ok((address, endpoint))
    }
}

/// What `address` is (an `http://` or `https://` URL).
pub(super) fn source(address: &str) -> Result<Source, UpstreamError> {
    let bad = |reason: String| UpstreamError::Address {
        address: address.to_owned(),
        reason,
    };
    let endpoint = endpoint(address).map_err(|e| bad(e.to_string()))?;
    let uri = endpoint.uri();
    let (Some(host), Some(authority)) = (uri.host(), uri.authority()) else {
        return Err(bad("no host".to_owned()));
    };
    // An IPv6 literal keeps its brackets in the URI.
    if host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok()
    {
        return Ok(Source::Fixed {
            address: address.to_owned(),
            endpoint: Box::new(endpoint),
        });
    }
    let scheme = uri.scheme_str().unwrap_or("http").to_owned();
    let port = uri
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    let origin = Uri::builder()
        .scheme(scheme.as_str())
        .authority(authority.clone())
        .path_and_query("/")
        .build()
        .map_err(|e| bad(e.to_string()))?;
    Ok(Source::Named(Named {
        address: address.to_owned(),
        host: host.to_owned(),
        scheme,
        port,
        origin,
    }))
}

/// Resolves every name of the pool now, then every `interval`, and sooner
/// (at most one per [`MIN_GAP`]) when `wake` is notified (a replica of a name
/// failed). An answer replaces that name's replicas; a failed lookup or an
/// empty answer keeps them (the pool never drops to nothing on a DNS hiccup).
/// Ends when the pool is dropped.
pub(super) async fn rediscover(
    pool: Weak<Pool>,
    wake: Arc<Notify>,
    names: Vec<(usize, Named)>,
    lookup: Lookup,
    interval: Duration,
) {
    loop {
        let answers = join_all(names.iter().map(|(_, n)| lookup(n.host.clone()))).await;
        let Some(pool) = pool.upgrade() else {
            return;
        };
        for ((source, named), answer) in names.iter().zip(answers) {
            match answer {
                Ok(ips) if !ips.is_empty() => pool.resolved(*source, named, &ips),
                Ok(_) => warn!(
                    service = %pool.service, address = %named.address,
                    "DNS answered no address: keeping the replicas known"
                ),
                Err(error) => warn!(
                    service = %pool.service, address = %named.address, %error,
                    "DNS lookup failed: keeping the replicas known"
                ),
            }
        }
        drop(pool);
        let resolved_at = Instant::now();
        tokio::select! {
            () = tokio::time::sleep_until(resolved_at + interval) => {}
            () = wake.notified() => tokio::time::sleep_until(resolved_at + MIN_GAP).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(address: &str) -> Named {
        match source(address).expect("a URL") {
            Source::Named(named) => named,
            Source::Fixed { .. } => panic!("{address} is a name"),
        }
    }

    #[test]
    fn ip_addresses_are_fixed_and_names_are_resolved() {
        for fixed in [
            "http://127.0.0.1:50051",
            "http://[::1]:50051",
            "https://10.1.2.3",
        ] {
            assert!(
                matches!(source(fixed), Ok(Source::Fixed { .. })),
                "{fixed} is fixed"
            );
        }
        let reservation = named("http://reservation:50051");
        assert_eq!(reservation.host, "reservation");
        let (address, endpoint) = reservation
            .replica(IpAddr::from([10, 0, 0, 7]))
            .expect("endpoint");
        assert_eq!(address, "http://10.0.0.7:50051");
        assert_eq!(endpoint.uri().to_string(), "http://10.0.0.7:50051/");
        assert_eq!(reservation.origin.to_string(), "http://reservation:50051/");

        let (address, _) = named("https://payment.roaming.svc.cluster.local")
            .replica(IpAddr::from([0xfd00, 0, 0, 0, 0, 0, 0, 1]))
            .expect("endpoint");
        assert_eq!(address, "https://[fd00::1]:443");
        assert!(matches!(
            source("not a url"),
            Err(UpstreamError::Address { .. })
        ));
    }
}
