//! Repository chores, run as `cargo xtask <task>`.
//!
//! `tidy` checks three architecture invariants, the first two from
//! `cargo metadata`:
//!
//! - domain crates depend on no adapter, transport or runtime crate, following
//!   the resolved graph transitively (normal and build dependencies;
//!   dev-dependencies such as tokio for async tests are allowed);
//! - no adapter crate depends on another adapter crate (normal and build
//!   dependencies: an integration test may join two), except the
//!   [`SHARED_ADAPTERS`], which implement no port and every adapter may use;
//! - no module circles inside a crate: in the library and binaries of every
//!   workspace member, no two sibling modules name each other, directly or
//!   through other siblings. A child's use of its parent (`super::`) and a
//!   parent's of its children are the tree, not a circle; `a::x` naming `b::y`
//!   counts as `a` naming `b`; `#[cfg(test)]` code does not count
//!   ([`circles`] says exactly what is read). A circle is shown as
//!   `crate: a -> b -> a`, with one place that makes each step.

pub mod circles;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// Crates a domain crate must not reach: runtimes, transports, storage, brokers,
/// telemetry exporters. A prefix ends with `*`.
pub const FORBIDDEN: &[&str] = &[
    "tokio",
    "tokio-*",
    "async-std",
    "mio",
    "tonic",
    "tonic-*",
    "prost",
    "prost-*",
    "protox",
    "hyper",
    "h2",
    "tower",
    "tower-*",
    "axum",
    "reqwest",
    "sea-orm",
    "sea-orm-*",
    "sea-query",
    "sqlx",
    "sqlx-*",
    "async-nats",
    "opentelemetry",
    "opentelemetry*",
    "tracing-opentelemetry",
];

fn forbidden(name: &str) -> bool {
    FORBIDDEN.iter().any(|f| match f.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == *f,
    })
}

/// Every way a domain crate breaks the invariant, as `domain-x -> ... -> crate`
/// lines. `metadata` is the JSON of `cargo metadata --format-version 1`.
pub fn domain_violations(metadata: &Value) -> Result<Vec<String>> {
    let root = metadata["workspace_root"]
        .as_str()
        .context("workspace_root")?;
    let root = Path::new(root);
    let packages = metadata["packages"].as_array().context("packages")?;
    let by_id: HashMap<&str, &Value> = packages
        .iter()
        .filter_map(|p| Some((p["id"].as_str()?, p)))
        .collect();
    let under = |id: &str, dir: &str| {
        by_id
            .get(id)
            .and_then(|p| p["manifest_path"].as_str())
            .is_some_and(|m| Path::new(m).starts_with(root.join(dir)))
    };
    let name = |id: &str| {
        by_id
            .get(id)
            .and_then(|p| p["name"].as_str())
            .unwrap_or(id)
            .to_owned()
    };

    let nodes = metadata["resolve"]["nodes"]
        .as_array()
        .context("resolve.nodes (run without --no-deps)")?;
    let deps: HashMap<&str, Vec<&str>> = nodes
        .iter()
        .filter_map(|n| {
            let id = n["id"].as_str()?;
            let runtime_deps = n["deps"]
                .as_array()?
                .iter()
                .filter(|d| {
                    d["dep_kinds"].as_array().is_some_and(|kinds| {
                        kinds.iter().any(|k| k["kind"].as_str() != Some("dev"))
                    })
                })
                .filter_map(|d| d["pkg"].as_str())
                .collect();
            Some((id, runtime_deps))
        })
        .collect();

    let members = metadata["workspace_members"]
        .as_array()
        .context("workspace_members")?;
    let mut found = BTreeSet::new();
    for member in members
        .iter()
        .filter_map(Value::as_str)
        .filter(|m| under(m, "domain"))
    {
        // Breadth-first over runtime dependencies, remembering the path.
        let mut seen = HashSet::from([member]);
        let mut frontier = vec![(member, vec![name(member)])];
        while let Some((id, path)) = frontier.pop() {
            for dep in deps.get(id).into_iter().flatten() {
                if !seen.insert(dep) {
                    continue;
                }
                let mut path = path.clone();
                path.push(name(dep));
                let dep_name = name(dep);
                let outward = ["adapters", "services"].iter().any(|dir| under(dep, dir))
                    || dep_name == "proto";
                if forbidden(&dep_name) || outward {
                    found.insert(path.join(" -> "));
                } else {
                    frontier.push((dep, path));
                }
            }
        }
    }
    Ok(found.into_iter().collect())
}

/// Adapter crates every adapter may depend on, and why:
/// - `adapters-codec`: the one translation between wire (proto) and domain
///   types, shared by the gRPC servers and clients, the store's outbox and the
///   consumers; two copies would drift;
/// - `adapters-telemetry`: metrics and trace-context propagation, which every
///   adapter emits; it adapts no port of any domain;
/// - `adapters-files`: owner-only directories, which the store (SQLite),
///   auth (signing keys) and gRPC (TLS keys) adapters create; it adapts no
///   port either.
pub const SHARED_ADAPTERS: &[&str] = &["adapters-codec", "adapters-telemetry", "adapters-files"];

/// Every direct dependency of an adapter crate on another adapter crate that
/// is not one of the [`SHARED_ADAPTERS`], as `adapters-x -> adapters-y` lines.
pub fn adapter_violations(metadata: &Value) -> Result<Vec<String>> {
    let root = metadata["workspace_root"]
        .as_str()
        .context("workspace_root")?;
    let adapters = Path::new(root).join("adapters");
    let packages = metadata["packages"].as_array().context("packages")?;
    let is_adapter = |p: &Value| {
        p["manifest_path"]
            .as_str()
            .is_some_and(|m| Path::new(m).starts_with(&adapters))
    };
    let adapter_names: HashSet<&str> = packages
        .iter()
        .filter(|p| is_adapter(p))
        .filter_map(|p| p["name"].as_str())
        .collect();
    let mut found = BTreeSet::new();
    for package in packages.iter().filter(|p| is_adapter(p)) {
        let name = package["name"].as_str().unwrap_or_default();
        for dep in package["dependencies"].as_array().into_iter().flatten() {
            let dep_name = dep["name"].as_str().unwrap_or_default();
            let runtime = dep["kind"].as_str() != Some("dev");
            if runtime
                && dep_name != name
                && adapter_names.contains(dep_name)
                && !SHARED_ADAPTERS.contains(&dep_name)
            {
                found.insert(format!("{name} -> {dep_name}"));
            }
        }
    }
    Ok(found.into_iter().collect())
}

/// Every module circle in the library and binary targets of the workspace
/// members, as `crate: a -> b -> a` lines, each followed by the places that
/// make its steps. Sources are read from disk.
pub fn module_circles(metadata: &Value) -> Result<Vec<String>> {
    let members: HashSet<&str> = metadata["workspace_members"]
        .as_array()
        .context("workspace_members")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let packages = metadata["packages"].as_array().context("packages")?;
    let mut found = Vec::new();
    for package in packages
        .iter()
        .filter(|p| p["id"].as_str().is_some_and(|id| members.contains(id)))
    {
        let name = package["name"].as_str().unwrap_or_default();
        for target in package["targets"].as_array().into_iter().flatten() {
            let kinds: Vec<&str> = target["kind"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let label = if kinds
                .iter()
                .any(|k| k.contains("lib") || *k == "proc-macro")
            {
                name.to_owned()
            } else if kinds.contains(&"bin") {
                format!(
                    "{name} (bin {})",
                    target["name"].as_str().unwrap_or_default()
                )
            } else {
                continue; // tests, benches, examples, build scripts
            };
            let root = Path::new(target["src_path"].as_str().context("src_path")?);
            let base = root.ancestors().nth(2).unwrap_or(Path::new(""));
            let read = |path: &Path| std::fs::read_to_string(path).ok();
            for circle in circles::circles(root, &read)? {
                let prefix = format!("{}/", base.display());
                let because = circle
                    .because
                    .iter()
                    .map(|b| b.strip_prefix(&prefix).unwrap_or(b));
                found.push(
                    std::iter::once(format!("{label}: {circle}"))
                        .chain(because.map(|b| format!("    {b}")))
                        .collect::<Vec<_>>()
                        .join("\n  "),
                );
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Runs `cargo metadata` on this workspace and fails with every violation.
pub fn tidy() -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let output = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(&manifest)
        .output()
        .context("running cargo metadata")?;
    if !output.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let metadata: Value =
        serde_json::from_slice(&output.stdout).context("parsing cargo metadata")?;
    let mut problems = Vec::new();
    let violations = domain_violations(&metadata)?;
    if !violations.is_empty() {
        problems.push(format!(
            "domain crates must not depend on adapter, transport or runtime crates:\n  {}",
            violations.join("\n  ")
        ));
    }
    let violations = adapter_violations(&metadata)?;
    if !violations.is_empty() {
        problems.push(format!(
            "adapter crates must not depend on other adapter crates (but {}):\n  {}",
            SHARED_ADAPTERS.join(", "),
            violations.join("\n  ")
        ));
    }
    let circles = module_circles(&metadata)?;
    if !circles.is_empty() {
        problems.push(format!(
            "modules must not name each other in a circle (see `circles` in xtask):\n  {}",
            circles.join("\n  ")
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        bail!("{}", problems.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_and_exact_names() {
        assert!(forbidden("tokio"));
        assert!(forbidden("tokio-util"));
        assert!(forbidden("sea-orm-migration"));
        assert!(forbidden("opentelemetry_sdk"));
        assert!(!forbidden("time"));
        assert!(!forbidden("thiserror"));
        assert!(!forbidden("towel"));
    }

    fn adapter(name: &str, deps: &[(&str, Option<&str>)]) -> Value {
        serde_json::json!({
            "name": name,
            "manifest_path": format!("/ws/adapters/{name}/Cargo.toml"),
            "dependencies": deps
                .iter()
                .map(|(d, kind)| serde_json::json!({ "name": d, "kind": kind }))
                .collect::<Vec<_>>(),
        })
    }

    #[test]
    fn an_adapter_on_another_adapter_is_named_unless_shared_or_for_tests() {
        let metadata = serde_json::json!({
            "workspace_root": "/ws",
            "packages": [
                adapter("adapters-grpc", &[
                    ("adapters-store", None),
                    ("adapters-codec", None),
                    ("adapters-telemetry", None),
                    ("tonic", None),
                ]),
                adapter("adapters-bus", &[("adapters-store", Some("dev"))]),
                adapter("adapters-store", &[("adapters-store", Some("dev"))]),
                adapter("adapters-codec", &[]),
                adapter("adapters-telemetry", &[]),
            ],
        });
        assert_eq!(
            adapter_violations(&metadata).unwrap(),
            ["adapters-grpc -> adapters-store"]
        );
    }

    #[test]
    fn this_workspace_is_tidy() {
        tidy().unwrap();
    }
}
