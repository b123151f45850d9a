//! `cargo xtask tidy`: see the library docs.
//! `cargo xtask chaos [--release] [chaos options]`: builds the `roaming` and
//! `chaos` binaries and runs the fault-injection suite (RELIABILITY.md).
//! `cargo xtask rollout [--release]`: the same binaries, `chaos rollout`: a
//! rolling restart of every replica under load, then SIGKILLs.
//! `cargo xtask latency [--release]`: `chaos latency`, what replicas add to
//! reserve -> `RENTAL_ACCEPTED`.
//! `cargo xtask failover [--release]`: `chaos failover`, PostgreSQL failed
//! over to its synchronous standby under load.
//! `cargo xtask cluster [--release]`: `chaos cluster`, NATS cluster servers
//! killed under load.

use std::process::Command;

use anyhow::{Context as _, Result, bail};

const USAGE: &str = "usage: cargo xtask tidy
       cargo xtask chaos [--release] [--short] [--races N]
       cargo xtask rollout [--release]
       cargo xtask latency [--release]
       cargo xtask failover [--release]
       cargo xtask cluster [--release]";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("tidy") => {
            xtask::tidy()?;
            println!(
                "tidy: domain crates depend on no adapter, transport or runtime crate; adapters on no other adapter but the shared ones; no module circles inside a crate"
            );
            Ok(())
        }
        Some("chaos") => chaos(&args[1..]),
        Some(sub @ ("rollout" | "latency" | "failover" | "cluster")) => {
            let mut rest = vec![sub.to_owned()];
            rest.extend(args[1..].iter().cloned());
            chaos(&rest)
        }
        _ => bail!("{USAGE}"),
    }
}

/// Builds `roaming` and `chaos` (debug unless `--release`) and runs `chaos`
/// with the remaining arguments; its exit status is ours.
fn chaos(args: &[String]) -> Result<()> {
    let release = args.iter().any(|a| a == "--release");
    let rest: Vec<&String> = args.iter().filter(|a| *a != "--release").collect();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut build = Command::new(&cargo);
    build
        .current_dir(&root)
        // The whole workspace's binaries: the same feature set as `cargo test
        // --workspace`, so after the test suite nothing is compiled again.
        .args(["build", "--workspace", "--bins"]);
    if release {
        build.arg("--release");
    }
    if !build.status().context("running cargo build")?.success() {
        bail!("building the chaos suite failed");
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map_or_else(|_| root.join("target"), std::path::PathBuf::from);
    let binary = target
        .join(if release { "release" } else { "debug" })
        .join("chaos");
    let status = Command::new(&binary)
        .args(rest)
        .status()
        .with_context(|| format!("running {}", binary.display()))?;
    if !status.success() {
        bail!("chaos: failed ({status})");
    }
    Ok(())
}
