//! The command line: `roaming up` runs the whole mesh, `roaming serve <service>`
//! (or a per-service binary) runs one service.

use std::path::PathBuf;

use crate::Settings;
use crate::auth::{KeyFiles, MeshAuth};
use crate::bus::Bus;
use crate::plan::Plan;
use adapters_settings::SettingsError;
use anyhow::{Context, bail};

const USAGE: &str = "usage: roaming up [--config FILE] [--tls]
                                  (--tls: TLS at the gateway, mutual TLS between the services,
                                   with a local CA made under the data directory on the first start)
       roaming serve <gateway|reservation|payment|rental|parking|view> [--config FILE]
       roaming check-config <up|serve SERVICE> [--config FILE]
                                  (checks what that start checks, connects to nothing, writes nothing)
       roaming certs [--out DIR] [--host NAME]...   (a local CA and the mesh's certificates, default data/tls)
       roaming keygen FILE        (an Ed25519 signing key, created if FILE is missing; prints its public `x`)
       roaming hash-password      (reads a password on stdin; prints its argon2 hash)
       roaming createdb URL...    (creates each postgres:// database that is missing)
       roaming wait-serving ADDR... [--within SECS]   (until each answers health SERVING)
       roaming seed-demo GATEWAY [--password P] [--cacert FILE]
                                  (the demo catalog, through the API as `ops`; an https:// GATEWAY is trusted by FILE's CA)
       roaming dlq list [--consumer DURABLE] [--nats URL]   (dead letters, one line each)
       roaming dlq replay (--consumer DURABLE | --event ID | --all) [--dry-run] [--nats URL]
                                  (each to the one consumer it failed for, then removed)
       roaming view rebuild --into URL [--nats URL]   (the view from the streams into a fresh database)

Settings come from FILE (TOML) and ROAMING_* environment variables. A setting
that is unknown, malformed or refused (a missing key file, a URL that does not
parse, a service without its broker) is one line naming it, and exit status 2,
before anything is bound or connected.";

/// A configuration problem: one line on stderr, exit status 2.
fn refuse(e: &impl std::fmt::Display) -> ! {
    eprintln!("{}", e.to_string().replace('\n', " "));
    std::process::exit(2);
}

fn usage() -> ! {
    eprintln!("{USAGE}");
    std::process::exit(2);
}

/// Runs the CLI with `args` (without the program name).
pub fn main_with(args: Vec<String>) -> anyhow::Result<()> {
    match args.first().map(String::as_str) {
        Some("keygen") => return keygen(args.get(1).context(USAGE)?),
        Some("certs") => return crate::certs::main(&args[1..]),
        Some("hash-password") => return hash_password(),
        Some("dlq") => return crate::dlq::main(&args[1..]),
        Some("view") => return crate::rebuild::main(&args[1..]),
        Some(command @ ("createdb" | "wait-serving" | "seed-demo")) => {
            return operator_command(command, &args[1..]);
        }
        _ => {}
    }
    let config = match args.iter().position(|a| a == "--config") {
        Some(i) => match args.get(i + 1) {
            Some(file) => Some(PathBuf::from(file)),
            None => refuse(&"--config needs a file"),
        },
        None => None,
    };
    // `check-config serve reservation` checks what `serve reservation` does.
    let (check, start) = match args.first().map(String::as_str) {
        Some("check-config") => (true, &args[1..]),
        _ => (false, &args[..]),
    };
    let service = match start.first().map(String::as_str) {
        Some("up") => None,
        Some("serve") => match start.get(1) {
            Some(s) if crate::plan::SERVICES.contains(&s.as_str()) => Some(s.clone()),
            _ => usage(),
        },
        _ => usage(),
    };
    let mut settings =
        Settings::load(config.as_deref(), std::env::vars()).unwrap_or_else(|e| refuse(&e));
    if service.is_none() && start.iter().any(|a| a == "--tls") {
        if check {
            refuse(
                &"check-config up --tls: the try-out certificates are made at the first start; check without --tls",
            );
        }
        crate::certs::try_out(&mut settings).unwrap_or_else(|e| refuse(&e));
    }
    if check {
        let summary = match &service {
            Some(service) => crate::plan::serve(&settings, service).map(|p| p.summary()),
            None => crate::plan::up(&settings, KeyFiles::InMemory).map(|p| p.summary(&settings)),
        };
        println!("{}", summary.unwrap_or_else(|e| refuse(&e)));
        return Ok(());
    }
    // A service checks its configuration before its runtime, telemetry and
    // admin port exist; `up` does once its data directory is there (its key
    // may be created in it).
    let plan = service
        .as_deref()
        .map(|s| crate::plan::serve(&settings, s).unwrap_or_else(|e| refuse(&e)));
    let component = service.clone().unwrap_or_else(|| "roaming".to_owned());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // The OTLP exporters open their gRPC channels on this runtime.
    let _telemetry = {
        let _entered = runtime.enter();
        adapters_telemetry::init(&component, env!("CARGO_PKG_VERSION"), settings.log_json)
    };
    let result = match plan {
        None => runtime.block_on(run_up(settings)),
        Some(plan) => runtime.block_on(run_one(settings, plan)),
    };
    // Push the last metrics out (OTLP) before the process ends.
    if let Some(metrics) = adapters_telemetry::metrics::installed() {
        metrics.shutdown();
    }
    if let Err(e) = &result
        && let Some(problem) = e.downcast_ref::<SettingsError>()
    {
        refuse(problem);
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
    println!("{}", mesh.banner(&settings));
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
            let (cacert, rest) = take_flag(&rest, "--cacert")?;
            let [gateway] = rest.as_slice() else {
                bail!("{USAGE}");
            };
            runtime.block_on(crate::ops::seed_demo(
                gateway,
                password.as_deref().unwrap_or("demo"),
                cacert.as_deref(),
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

async fn run_gateway(settings: Settings, plan: Plan) -> anyhow::Result<()> {
    let auth = MeshAuth::new(&settings, plan.keys)?;
    let upstreams = crate::plan::gateway_upstreams(&settings);
    let gateway = crate::up::start_gateway(&settings, &auth, upstreams, &[]).await?;
    println!("gateway listening on {}", gateway.addr);
    shutdown_signal().await;
    gateway.announce_stop().await;
    tokio::time::sleep(settings.shutdown_delay()).await;
    gateway.stop(settings.shutdown_grace()).await;
    Ok(())
}

async fn run_one(settings: Settings, plan: Plan) -> anyhow::Result<()> {
    crate::host::process_init(plan.service);
    let admin = match settings.admin_listen {
        Some(listen) => Some(crate::admin::start(listen).await?),
        None => None,
    };
    let result = Box::pin(run_one_service(settings, plan)).await;
    if let Some(admin) = admin {
        admin.stop().await;
    }
    result
}

async fn run_one_service(settings: Settings, plan: Plan) -> anyhow::Result<()> {
    if plan.service == "gateway" {
        return run_gateway(settings, plan).await;
    }
    let service = plan.service;
    // The replicas it calls, as the plan (plan::CALLS) says: the one table of
    // who calls whom, which deploy/mesh.json repeats (tested).
    let calls = |callee: &str| {
        plan.calls
            .iter()
            .find(|(c, _)| *c == callee)
            .map(|(_, addrs)| addrs.clone())
            .unwrap_or_default()
    };
    let auth = MeshAuth::new(&settings, plan.keys)?;
    // The plan holds the broker's URL: a service never runs on the embedded
    // bus.
    let bus = Bus::connect(
        plan.nats_url.as_deref(),
        &settings.nats_prefix,
        settings.nats_stream_replicas,
    )
    .await?;
    adapters_files::create_private_dir(&settings.data_dir).ok();
    let running = match service {
        "reservation" => {
            crate::reservation::start(&settings, &auth, &bus, &calls("payment"))
                .await?
                .0
        }
        "payment" => crate::payment::start(&settings, &auth, &bus).await?.0,
        "rental" => {
            crate::rental::start(&settings, &auth, &bus, &calls("reservation"))
                .await?
                .0
        }
        "parking" => {
            crate::parking::start(&settings, &auth, &bus, &calls("reservation"))
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
