//! Small operator commands for setting a host up by hand or by script
//! (`scripts/distributed.sh`): create databases, wait for readiness, create
//! the demo catalog through the API.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use proto::auth::IssueTokenRequest;
use proto::auth::auth_service_client::AuthServiceClient;
use proto::common::Money;
use proto::parking::RegisterSpaceRequest;
use proto::parking::parking_service_client::ParkingServiceClient;
use proto::rental::RegisterDeviceRequest;
use proto::rental::rental_service_client::RentalServiceClient;
use proto::reservation::QuoteParkingRequest;
use proto::reservation::reservation_service_client::ReservationServiceClient;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// `roaming createdb URL...`: every PostgreSQL database named, if missing.
pub async fn create_databases(urls: &[String]) -> anyhow::Result<()> {
    if urls.is_empty() {
        bail!("createdb needs at least one postgres:// URL");
    }
    for url in urls {
        let created = adapters_store::create_database_if_missing(url)
            .await
            .with_context(|| format!("creating {}", adapters_settings::redacted(url)))?;
        println!(
            "{}: {}",
            adapters_settings::redacted(url),
            if created { "created" } else { "exists" }
        );
    }
    Ok(())
}

fn endpoint(address: &str) -> anyhow::Result<Endpoint> {
    let address = if address.contains("://") {
        address.to_owned()
    } else {
        format!("http://{address}")
    };
    Ok(Endpoint::from_shared(address.clone())
        .with_context(|| format!("address {address:?}"))?
        .connect_timeout(Duration::from_millis(500)))
}

async fn serving(address: &str) -> bool {
    let Ok(endpoint) = endpoint(address) else {
        return false;
    };
    let Ok(channel) = endpoint.connect().await else {
        return false;
    };
    let mut request = tonic::Request::new(HealthCheckRequest::default());
    request.set_timeout(Duration::from_secs(1));
    HealthClient::new(channel)
        .check(request)
        .await
        .is_ok_and(|r| r.into_inner().status == 1)
}

/// `roaming wait-serving ADDR... [--within SECS]`: until every address
/// answers `SERVING` (health `""`), or fails after `within`.
pub async fn wait_serving(addresses: &[String], within: Duration) -> anyhow::Result<()> {
    if addresses.is_empty() {
        bail!("wait-serving needs at least one address");
    }
    let started = Instant::now();
    for address in addresses {
        endpoint(address)?;
        while !serving(address).await {
            if started.elapsed() > within {
                bail!("{address} is not SERVING after {} s", within.as_secs());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

fn authorized<T>(message: T, token: &str) -> anyhow::Result<tonic::Request<T>> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    Ok(request)
}

/// Whether `status` says the thing was registered already (a second run).
fn already_there(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::AlreadyExists
}

/// A channel to the gateway at `address`: plaintext, or for `https://`
/// TLS trusting `cacert` (the server proving the URL's host name).
async fn gateway_channel(address: &str, cacert: Option<&str>) -> anyhow::Result<Channel> {
    let endpoint = endpoint(address)?;
    if endpoint.uri().scheme_str() != Some("https") {
        if cacert.is_some() {
            bail!("--cacert is for an https:// gateway address");
        }
        return Ok(endpoint.connect().await?);
    }
    let ca =
        cacert.context("an https:// gateway needs --cacert FILE (the CA of its certificate)")?;
    let host = endpoint
        .uri()
        .host()
        .context("no host in the gateway address")?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let tls = adapters_grpc::tls::ClientTls::trusting(std::path::Path::new(ca))?;
    Ok(endpoint
        .connect_with_connector(tls.connector(&host)?)
        .await?)
}

/// `roaming seed-demo GATEWAY [--password P] [--cacert FILE]`: logs in as `ops` and creates
/// the demo catalog of DOMAIN.md (the devices of three booths, ten
/// parking spaces) through the gateway, as an operator would; waits until the
/// reservation service has learnt it (from the events). A second run changes
/// nothing.
pub async fn seed_demo(gateway: &str, password: &str, cacert: Option<&str>) -> anyhow::Result<()> {
    let channel: Channel = gateway_channel(gateway, cacert)
        .await
        .with_context(|| format!("gateway at {gateway}"))?;
    let token = AuthServiceClient::new(channel.clone())
        .issue_token(IssueTokenRequest {
            username: "ops".to_owned(),
            password: password.to_owned(),
        })
        .await
        .context("logging in as ops (is the gateway's config the shipped example?)")?
        .into_inner()
        .access_token;
    let mut rental = RentalServiceClient::new(channel.clone());
    let mut devices = 0;
    for (booth, eggs, phones) in [("ICN-T1", 3, 2), ("ICN-T2", 2, 2), ("GMP", 2, 2)] {
        for (model, count) in [("egg-lte", eggs), ("phone-5g", phones)] {
            for n in 1..=count {
                let request = RegisterDeviceRequest {
                    serial: format!("{booth}-{model}-{n}"),
                    device_model: model.to_owned(),
                    booth: booth.to_owned(),
                };
                match rental.register_device(authorized(request, &token)?).await {
                    Ok(_) => devices += 1,
                    Err(s) if already_there(&s) => {}
                    Err(s) => bail!("registering device {booth}-{model}-{n}: {s}"),
                }
            }
        }
    }
    let mut parking = ParkingServiceClient::new(channel.clone());
    let mut spaces = 0;
    for n in 1..=10 {
        let request = RegisterSpaceRequest {
            space_id: format!("P1-B1-{n:03}"),
            lot: "P1".to_owned(),
            floor: "B1".to_owned(),
            number: n,
            hourly_rate: Some(Money {
                currency_code: "KRW".to_owned(),
                minor_units: 3_000,
            }),
        };
        match parking.register_space(authorized(request, &token)?).await {
            Ok(_) => spaces += 1,
            Err(s) if already_there(&s) => {}
            Err(s) => bail!("registering space P1-B1-{n:03}: {s}"),
        }
    }
    // The reservation catalog learns spaces (and stock) from events.
    let mut reservation = ReservationServiceClient::new(channel);
    let started = Instant::now();
    let now = std::time::SystemTime::now();
    let at = |d: Duration| prost_types::Timestamp::from(now + d);
    loop {
        let quote = QuoteParkingRequest {
            space_id: "P1-B1-010".to_owned(),
            start_time: Some(at(Duration::from_hours(1))),
            end_time: Some(at(Duration::from_hours(2))),
        };
        match reservation.quote_parking(authorized(quote, &token)?).await {
            Ok(_) => break,
            Err(s) if started.elapsed() < Duration::from_secs(30) => {
                tracing::debug!(status = %s, "catalog not there yet");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(s) => bail!("the reservation service did not learn the catalog in 30 s: {s}"),
        }
    }
    println!("demo catalog: {devices} devices and {spaces} spaces registered (the rest existed)");
    Ok(())
}
