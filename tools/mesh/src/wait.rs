//! Waiting on conditions, never on the clock alone: until a server answers
//! `SERVING`, until a check returns something.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::bail;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// Waits until `addr` answers `SERVING` for `""`; how long that took.
pub async fn wait_serving(addr: SocketAddr, within: Duration) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        if serving(addr).await {
            return Ok(started.elapsed());
        }
        if started.elapsed() > within {
            bail!("{addr} not SERVING after {within:?}");
        }
        // Often at first, so a start's figure is not the poll's period.
        let pause = if started.elapsed() < Duration::from_secs(1) {
            2
        } else {
            20
        };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

/// Whether `addr` answers `SERVING` for `""` now.
pub async fn serving(addr: SocketAddr) -> bool {
    let Ok(endpoint) = tonic::transport::Endpoint::from_shared(format!("http://{addr}")) else {
        return false;
    };
    let Ok(channel) = endpoint
        .connect_timeout(Duration::from_millis(200))
        .connect()
        .await
    else {
        return false;
    };
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    });
    request.set_timeout(Duration::from_millis(500));
    HealthClient::new(channel)
        .check(request)
        .await
        .is_ok_and(|r| r.into_inner().status == 1)
}

/// Calls `check` every `every` until it returns `Some`, or fails naming
/// `what` once `within` passed.
pub async fn eventually<T, F, Fut>(
    within: Duration,
    every: Duration,
    what: &str,
    mut check: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {within:?} waiting for {what}");
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::time::Duration;

    use super::eventually;

    #[tokio::test]
    async fn eventually_returns_what_the_check_found_and_names_what_never_came() {
        let mut calls = 0;
        let found = eventually(
            Duration::from_secs(5),
            Duration::ZERO,
            "the third call",
            || {
                calls += 1;
                std::future::ready((calls == 3).then_some(calls))
            },
        )
        .await
        .unwrap();
        assert_eq!(found, 3);

        let never = eventually(Duration::ZERO, Duration::ZERO, "nothing", || {
            std::future::ready(None::<()>)
        })
        .await
        .unwrap_err();
        assert!(never.to_string().contains("nothing"), "{never}");
    }
}
