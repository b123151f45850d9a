//! The command line: `roaming up` runs the whole mesh, `roaming serve <service>`
//! (or a per-service binary) runs one service.

use std::path::PathBuf;

use crate::Settings;
use crate::auth::MeshAuth;
use crate::bus::Bus;
use anyhow::{Context, bail};

const USAGE: &str = "usage: roaming up [--config FILE]
       roaming serve <gateway|reservation|payment|rental|parking|view> [--config FILE]
       roaming keygen FILE        (an Ed25519 signing key, created if FILE is missing; prints its public `x`)
       roaming hash-password      (reads a password on stdin; prints its argon2 hash)
       roaming createdb URL...    (creates each postgres:// database that is missing)
       roaming wait-serving ADDR... [--within SECS]   (until each answers health SERVING)
       roaming seed-demo GATEWAY [--password P]      (the demo catalog, through the API as `ops`)
       roaming dlq list [--consumer DURABLE] [--nats URL]   (dead letters, one line each)
       roaming dlq replay (--consumer DURABLE | --event ID | --all) [--dry-run] [--nats URL]
                                  (each to the one consumer it failed for, then removed)
       roaming view rebuild --into URL [--nats URL]   (the view from the streams into a fresh database)

Settings come from FILE (TOML) and ROAMING_* environment variables.";

/// Runs the CLI with `args` (without the program name).
pub fn main_with(args: Vec<String>) -> anyhow::Result<()> {
    match args.first().map(String::as_str) {
        Some("keygen") => return keygen(args.get(1).context(USAGE)?),
        Some("hash-password") => return hash_password(),
        Some("dlq") => return crate::dlq::main(&args[1..]),
        Some("view") => return crate::rebuild::main(&args[1..]),
        Some(command @ ("createdb" | "wait-serving" | "seed-demo")) => {
            return operator_command(command, &args[1..]);
        }
        _ => {}
    }
    let config = args
        .iter()
        .position(|a| a == "--config")
        .map(|i| {
            args.get(i + 1)
                .map(PathBuf::from)
                .context("--config needs a file")
        })
        .transpose()?;
    let settings = match Settings::load(config.as_deref(), std::env::vars()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let component = match args.first().map(String::as_str) {
        Some("serve") => args.get(1).map_or("roaming", String::as_str).to_owned(),
        _ => "roaming".to_owned(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // The OTLP exporters open their gRPC channels on this runtime.
    let _telemetry = {
        let _entered = runtime.enter();
        adapters_telemetry::init(&component, settings.log_json)
    };
    let result = match args.first().map(String::as_str) {
        Some("up") => runtime.block_on(run_up(settings)),
        Some("serve") => {
            let service = args.get(1).context(USAGE)?.clone();
            runtime.block_on(run_one(settings, &service))
        }
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    // Push the last metrics out (OTLP) before the process ends.
    if let Some(metrics) = adapters_telemetry::metrics::installed() {
        metrics.shutdown();
    }
    result
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            let _ = ctrl_c.await;
            return;
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

async fn run_up(settings: Settings) -> anyhow::Result<()> {
    let mesh = crate::up::up(&settings).await?;
    println!("{}", mesh.banner());
    shutdown_signal().await;
    println!("stopping...");
    mesh.stop(settings.shutdown_grace()).await;
    Ok(())
}

/// Creates the key unless `path` holds one (so a script may run it again and
/// still learn the public key); never overwrites.
fn keygen(path: &str) -> anyhow::Result<()> {
    let key = adapters_auth::SigningKey::load_or_create(std::path::Path::new(path))
        .with_context(|| format!("signing key {path}"))?;
    println!("{}", key.public_x());
    Ok(())
}

/// The value after `flag` in `args`, and `args` without both.
fn take_flag(args: &[String], flag: &str) -> anyhow::Result<(Option<String>, Vec<String>)> {
    let mut rest = Vec::new();
    let mut value = None;
    let mut iter = args.iter();
    while let Some(a) = iter.next() {
        if a == flag {
            value = Some(
                iter.next()
                    .with_context(|| format!("{flag} needs a value"))?
                    .clone(),
            );
        } else {
            rest.push(a.clone());
        }
    }
    Ok((value, rest))
}

fn operator_command(command: &str, args: &[String]) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match command {
        "createdb" => runtime.block_on(crate::ops::create_databases(args)),
        "wait-serving" => {
            let (within, addrs) = take_flag(args, "--within")?;
            let within = within
                .map(|w| w.parse::<u64>().context("--within takes seconds"))
                .transpose()?
                .unwrap_or(60);
            runtime.block_on(crate::ops::wait_serving(
                &addrs,
                std::time::Duration::from_secs(within),
            ))
        }
        _ => {
            let (password, rest) = take_flag(args, "--password")?;
            let [gateway] = rest.as_slice() else {
                bail!("{USAGE}");
            };
            runtime.block_on(crate::ops::seed_demo(
                gateway,
                password.as_deref().unwrap_or("demo"),
            ))
        }
    }
}

fn hash_password() -> anyhow::Result<()> {
    let mut password = String::new();
    std::io::stdin().read_line(&mut password)?;
    let password = password.trim_end_matches(['\r', '\n']);
    anyhow::ensure!(!password.is_empty(), "no password on stdin");
    println!("{}", adapters_auth::hash_password(password)?);
    Ok(())
}

async fn run_gateway(settings: Settings) -> anyhow::Result<()> {
    let auth = MeshAuth::distributed(&settings)?;
    let upstreams = gateway::Upstreams {
        reservation: settings.reservation_addrs.clone(),
        payment: settings.payment_addrs.clone(),
        rental: settings.rental_addrs.clone(),
        parking: settings.parking_addrs.clone(),
        view: settings.view_addrs.clone(),
    };
    let gateway = crate::up::start_gateway(&settings, &auth, upstreams, &[]).await?;
    println!("gateway listening on {}", gateway.addr);
    shutdown_signal().await;
    gateway.announce_stop().await;
    tokio::time::sleep(settings.shutdown_delay()).await;
    gateway.stop(settings.shutdown_grace()).await;
    Ok(())
}

async fn run_one(settings: Settings, service: &str) -> anyhow::Result<()> {
    crate::host::process_init(service);
    let admin = match settings.admin_listen {
        Some(listen) => Some(crate::admin::start(listen).await?),
        None => None,
    };
    let result = Box::pin(run_one_service(settings, service)).await;
    if let Some(admin) = admin {
        admin.stop().await;
    }
    result
}

async fn run_one_service(settings: Settings, service: &str) -> anyhow::Result<()> {
    if service == "gateway" {
        return run_gateway(settings).await;
    }
    let auth = MeshAuth::distributed(&settings)?;
    let bus = Bus::connect(
        settings.nats_url.as_deref(),
        &settings.nats_prefix,
        settings.nats_stream_replicas,
    )
    .await?;
    if matches!(bus, Bus::Embedded(_)) {
        bail!(
            "`roaming serve` runs one service of a distributed mesh: set ROAMING_NATS_URL (the embedded bus only works inside `roaming up`)"
        );
    }
    std::fs::create_dir_all(&settings.data_dir).ok();
    let running = match service {
        "reservation" => {
            crate::reservation::start(&settings, &auth, &bus, &settings.payment_addrs)
                .await?
                .0
        }
        "payment" => crate::payment::start(&settings, &auth, &bus).await?.0,
        "rental" => {
            crate::rental::start(&settings, &auth, &bus, &settings.reservation_addrs)
                .await?
                .0
        }
        "parking" => {
            crate::parking::start(&settings, &auth, &bus, &settings.reservation_addrs)
                .await?
                .0
        }
        "view" => crate::view::start(&settings, &auth, &bus).await?.0,
        other => bail!("unknown service {other:?}\n{USAGE}"),
    };
    println!("{} listening on {}", running.name, running.addr);
    shutdown_signal().await;
    running.announce_stop().await;
    tokio::time::sleep(settings.shutdown_delay()).await;
    running.stop(settings.shutdown_grace()).await;
    Ok(())
}
