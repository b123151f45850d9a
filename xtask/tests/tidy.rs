//! The architecture invariants hold for this workspace, and the checks would
//! catch them breaking.

#![allow(clippy::expect_used, reason = "test helpers")]

use serde_json::{Value, json};

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/metadata.json")).expect("fixture parses")
}

fn node_mut<'a>(metadata: &'a mut Value, name_prefix: &str) -> &'a mut Value {
    metadata["resolve"]["nodes"]
        .as_array_mut()
        .expect("nodes")
        .iter_mut()
        .find(|n| {
            n["id"]
                .as_str()
                .is_some_and(|id| id.starts_with(name_prefix))
        })
        .expect("node")
}

fn add_dep(metadata: &mut Value, from: &str, to_id: &str, kind: &Value) {
    node_mut(metadata, from)["deps"]
        .as_array_mut()
        .expect("deps")
        .push(json!({"name": "x", "pkg": to_id, "dep_kinds": [{"kind": kind.clone(), "target": null}]}));
}

const TOKIO: &str = "tokio 1.54.0 (registry+https://github.com/rust-lang/crates.io-index)";
const SEA_ORM: &str = "sea-orm 2.0.4 (registry+https://github.com/rust-lang/crates.io-index)";
const HELPER: &str = "helper 1.0.0 (registry+https://github.com/rust-lang/crates.io-index)";
const ADAPTER: &str = "adapters-db 0.1.0 (path+file:///ws/adapters/db)";

#[test]
fn this_workspace_keeps_its_domain_pure() {
    xtask::tidy().expect("tidy");
}

#[test]
fn a_clean_fixture_passes_and_dev_dependencies_are_allowed() {
    assert_eq!(
        xtask::domain_violations(&fixture()).unwrap(),
        Vec::<String>::new()
    );
}

#[test]
fn adding_tokio_to_a_domain_crate_fails() {
    let mut m = fixture();
    add_dep(&mut m, "domain-y", TOKIO, &Value::Null);
    assert_eq!(xtask::domain_violations(&m).unwrap(), ["domain-y -> tokio"]);
}

#[test]
fn adding_sea_orm_to_a_domain_crate_fails() {
    let mut m = fixture();
    add_dep(&mut m, "domain-x", SEA_ORM, &Value::Null);
    assert_eq!(
        xtask::domain_violations(&m).unwrap(),
        ["domain-x -> sea-orm"]
    );
}

#[test]
fn a_forbidden_crate_reached_transitively_fails() {
    let mut m = fixture();
    add_dep(&mut m, "domain-x", HELPER, &Value::Null);
    assert_eq!(
        xtask::domain_violations(&m).unwrap(),
        ["domain-x -> helper -> tokio"]
    );
}

#[test]
fn depending_on_an_adapter_crate_fails() {
    let mut m = fixture();
    add_dep(&mut m, "domain-y", ADAPTER, &json!("build"));
    assert_eq!(
        xtask::domain_violations(&m).unwrap(),
        ["domain-y -> adapters-db"]
    );
}

#[test]
fn tokio_added_to_a_real_domain_crate_is_caught_too() {
    // The same check on this workspace's own metadata, with tokio (present as a
    // dev-dependency) promoted to a normal dependency of domain-reservation.
    let out = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml"))
        .output()
        .expect("cargo metadata");
    let mut m: Value = serde_json::from_slice(&out.stdout).expect("json");
    let tokio = m["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .find(|p| p["name"] == "tokio")
        .and_then(|p| p["id"].as_str())
        .expect("tokio is in the graph")
        .to_owned();
    let node = m["resolve"]["nodes"]
        .as_array_mut()
        .expect("nodes")
        .iter_mut()
        .find(|n| {
            n["id"]
                .as_str()
                .is_some_and(|id| id.contains("/domain/reservation"))
        })
        .expect("domain-reservation node");
    node["deps"].as_array_mut().expect("deps").push(
        json!({"name": "tokio", "pkg": tokio, "dep_kinds": [{"kind": null, "target": null}]}),
    );
    let violations = xtask::domain_violations(&m).unwrap();
    assert!(
        violations
            .iter()
            .any(|v| v.starts_with("domain-reservation -> tokio")),
        "{violations:?}"
    );
}

#[test]
fn a_circle_put_back_into_a_real_crate_is_caught() {
    // adapters-store as it is on disk, but with `db` naming `migrations`
    // again, which names every store, each of which names `db`.
    let root =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../adapters/store/src/lib.rs");
    let read = |path: &std::path::Path| {
        let text = std::fs::read_to_string(path).ok()?;
        Some(if path.ends_with("src/db.rs") {
            text + "\nfn circle(_: crate::migrations::ViewMigrator) {}\n"
        } else {
            text
        })
    };
    let found: Vec<String> = xtask::circles::circles(&root, &read)
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        found.contains(&"db -> migrations -> payment -> db".to_owned()),
        "{found:?}"
    );
    let untouched = |path: &std::path::Path| std::fs::read_to_string(path).ok();
    assert_eq!(xtask::circles::circles(&root, &untouched).unwrap(), []);
}
