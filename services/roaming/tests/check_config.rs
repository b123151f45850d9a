//! `roaming check-config`: the checks of a start, and nothing else. A
//! problem is one line naming the setting (or file) and exit status 2; a
//! configuration a start would accept prints `ok: ...` and exits 0; either
//! way nothing is created on disk. A real start with the same problem stops
//! with the same line before it binds or connects.

#![allow(clippy::expect_used, clippy::unwrap_used, reason = "tests")]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_roaming");

/// A fresh, empty directory of this test's own, removed when dropped.
struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scratch(name: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!(
        "roaming-check-config-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Scratch(dir)
}

/// Every path under `dir`.
fn tree(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path.clone());
            }
            out.insert(path);
        }
    }
    out
}

/// `roaming ARGS` in `dir` with only `env` (and PATH) in its environment.
fn run(dir: &Path, args: &[&str], env: &[(&str, String)]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap()
}

/// Exit status 2 and exactly one line on stderr, which is returned.
fn refused(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr:?}");
    assert!(
        out.stdout.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    lines[0].to_owned()
}

/// Exit status 0 and one `ok:` line on stdout, which is returned.
fn accepted(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.lines().count(), 1, "{stdout:?}");
    assert!(stdout.starts_with("ok: "), "{stdout:?}");
    stdout.trim_end().to_owned()
}

/// A directory with a signing key (`key.pem`), and the environment of a
/// service of a distributed mesh that trusts it.
fn service_env(dir: &Path) -> Vec<(&'static str, String)> {
    let key = dir.join("key.pem");
    let out = Command::new(BIN)
        .args(["keygen", key.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let x = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    vec![
        ("ROAMING_NATS_URL", "nats://nats:4222".to_owned()),
        ("ROAMING_AUTH_SIGNING_KEY_FILE", key.display().to_string()),
        ("ROAMING_AUTH_TRUSTED_KEYS", format!("{x},reservation={x}")),
        ("ROAMING_PAYMENT_ADDRS", "http://payment:50052".to_owned()),
        (
            "ROAMING_RESERVATION_ADDRS",
            "http://reservation:50051".to_owned(),
        ),
        ("ROAMING_RENTAL_ADDRS", "http://rental:50053".to_owned()),
        ("ROAMING_PARKING_ADDRS", "http://parking:50054".to_owned()),
        ("ROAMING_VIEW_ADDRS", "http://view:50055".to_owned()),
        (
            "ROAMING_RESERVATION_DATABASE_URL",
            "postgresql://app:secret-pw@pg-reservation-rw.roaming:5432/reservation".to_owned(),
        ),
        ("ROAMING_RESERVATION_LISTEN", "0.0.0.0:50051".to_owned()),
        ("ROAMING_DATA_DIR", dir.join("data").display().to_string()),
    ]
}

fn with(
    env: &[(&'static str, String)],
    name: &'static str,
    value: impl Into<String>,
) -> Vec<(&'static str, String)> {
    let mut env: Vec<_> = env.iter().filter(|(k, _)| *k != name).cloned().collect();
    env.push((name, value.into()));
    env
}

fn without(env: &[(&'static str, String)], name: &str) -> Vec<(&'static str, String)> {
    env.iter().filter(|(k, _)| *k != name).cloned().collect()
}

#[test]
fn a_valid_configuration_is_ok_for_every_service_and_creates_nothing() {
    let dir = scratch("valid");
    let env = service_env(&dir);
    let before = tree(&dir);
    let gateway_toml =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/gateway.example.toml");
    let line = accepted(&run(
        &dir,
        &[
            "check-config",
            "serve",
            "gateway",
            "--config",
            gateway_toml.to_str().unwrap(),
        ],
        &env,
    ));
    assert!(
        line.starts_with("ok: serve gateway: listens on 127.0.0.1:50050"),
        "{line}"
    );
    for service in ["reservation", "payment", "rental", "parking", "view"] {
        let line = accepted(&run(&dir, &["check-config", "serve", service], &env));
        assert!(
            line.starts_with(&format!("ok: serve {service}: ")),
            "{line}"
        );
    }
    let line = accepted(&run(&dir, &["check-config", "serve", "reservation"], &env));
    assert!(
        line.contains("database PostgreSQL") && line.contains("payment at http://payment:50052"),
        "{line}"
    );
    // The password of the database URL is never printed.
    assert!(!line.contains("secret-pw"), "{line}");
    assert_eq!(tree(&dir), before, "the check wrote nothing");
}

#[test]
fn check_config_up_creates_neither_the_data_directory_nor_the_key() {
    let dir = scratch("up");
    let line = accepted(&run(&dir, &["check-config", "up"], &[]));
    assert!(line.contains("created at the first start"), "{line}");
    let key = dir.join("given.pem");
    let line = accepted(&run(
        &dir,
        &["check-config", "up"],
        &[("ROAMING_AUTH_SIGNING_KEY_FILE", key.display().to_string())],
    ));
    assert!(
        line.contains("given.pem (created at the first start)"),
        "{line}"
    );
    assert_eq!(tree(&dir), BTreeSet::new(), "nothing created");
    // A key file that is there must be a key.
    std::fs::write(&key, "not a key").unwrap();
    let line = refused(&run(
        &dir,
        &["check-config", "up"],
        &[("ROAMING_AUTH_SIGNING_KEY_FILE", key.display().to_string())],
    ));
    assert!(
        line.starts_with(
            "invalid setting ROAMING_AUTH_SIGNING_KEY_FILE: not an Ed25519 PKCS#8 PEM key"
        ),
        "{line}"
    );
}

#[test]
fn an_unknown_setting_is_named() {
    let dir = scratch("unknown");
    let env = with(
        &service_env(&dir),
        "ROAMING_RESERVATON_LISTEN",
        "0.0.0.0:50051",
    );
    let line = refused(&run(&dir, &["check-config", "serve", "reservation"], &env));
    assert_eq!(
        line,
        "invalid setting ROAMING_RESERVATON_LISTEN: unknown setting"
    );
}

#[test]
fn a_bad_value_is_named() {
    let dir = scratch("bad-value");
    let env = with(
        &service_env(&dir),
        "ROAMING_RESERVATION_LISTEN",
        "0.0.0.0:abc",
    );
    let line = refused(&run(&dir, &["check-config", "serve", "reservation"], &env));
    assert_eq!(
        line,
        "invalid setting ROAMING_RESERVATION_LISTEN: invalid socket address syntax"
    );
    let env = with(
        &service_env(&dir),
        "ROAMING_RESERVATION_DATABASE_URL",
        "postgresql://app:secret-pw@pg:port/reservation",
    );
    let line = refused(&run(&dir, &["check-config", "serve", "reservation"], &env));
    assert!(
        line.starts_with("invalid setting ROAMING_RESERVATION_DATABASE_URL: not a URL"),
        "{line}"
    );
    assert!(!line.contains("secret-pw"), "{line}");
    let env = with(
        &service_env(&dir),
        "ROAMING_PAYMENT_ADDRS",
        "http://pay ment:50052",
    );
    let line = refused(&run(&dir, &["check-config", "serve", "reservation"], &env));
    assert!(
        line.starts_with("invalid setting ROAMING_PAYMENT_ADDRS: \"http://pay ment:50052\""),
        "{line}"
    );
}

#[test]
fn a_missing_file_is_named_and_not_created() {
    let dir = scratch("missing");
    let missing = dir.join("keys").join("reservation.pem");
    let env = with(
        &service_env(&dir),
        "ROAMING_AUTH_SIGNING_KEY_FILE",
        missing.display().to_string(),
    );
    let before = tree(&dir);
    let line = refused(&run(&dir, &["check-config", "serve", "reservation"], &env));
    assert_eq!(
        line,
        format!(
            "invalid setting ROAMING_AUTH_SIGNING_KEY_FILE: {}: No such file or directory (os error 2)",
            missing.display()
        )
    );
    // The `_FILE` form of any setting.
    let env = with(
        &service_env(&dir),
        "ROAMING_RESERVATION_DATABASE_URL_FILE",
        dir.join("db").join("uri").display().to_string(),
    );
    let env = without(&env, "ROAMING_RESERVATION_DATABASE_URL");
    let line = refused(&run(&dir, &["check-config", "serve", "reservation"], &env));
    assert!(
        line.starts_with("invalid setting ROAMING_RESERVATION_DATABASE_URL_FILE: "),
        "{line}"
    );
    // The gateway's logins file.
    let line = refused(&run(
        &dir,
        &[
            "check-config",
            "serve",
            "gateway",
            "--config",
            "/no/such/gateway.toml",
        ],
        &service_env(&dir),
    ));
    assert_eq!(
        line,
        "invalid setting config file: /no/such/gateway.toml: No such file or directory (os error 2)"
    );
    assert_eq!(tree(&dir), before, "nothing created");
}

#[test]
fn what_a_service_needs_is_named() {
    let dir = scratch("needs");
    let env = service_env(&dir);
    let line = refused(&run(
        &dir,
        &["check-config", "serve", "view"],
        &without(&env, "ROAMING_NATS_URL"),
    ));
    assert!(
        line.starts_with("invalid setting ROAMING_NATS_URL: not set"),
        "{line}"
    );
    let line = refused(&run(
        &dir,
        &["check-config", "serve", "rental"],
        &without(&env, "ROAMING_RESERVATION_ADDRS"),
    ));
    assert!(
        line.starts_with("invalid setting ROAMING_RESERVATION_ADDRS: not set"),
        "{line}"
    );
    let line = refused(&run(
        &dir,
        &["check-config", "serve", "gateway"],
        &without(&env, "ROAMING_VIEW_ADDRS"),
    ));
    assert!(
        line.starts_with("invalid setting ROAMING_VIEW_ADDRS: no address"),
        "{line}"
    );
    // Payment calls nobody: it runs on trusted keys alone; rental signs its
    // calls to reservation and needs a key of its own.
    let trusting = without(&env, "ROAMING_AUTH_SIGNING_KEY_FILE");
    accepted(&run(&dir, &["check-config", "serve", "payment"], &trusting));
    let line = refused(&run(&dir, &["check-config", "serve", "rental"], &trusting));
    assert!(
        line.starts_with("invalid setting ROAMING_AUTH_SIGNING_KEY_FILE: not set: rental calls"),
        "{line}"
    );
    let out = run(&dir, &["check-config", "serve", "billing"], &env);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_start_stops_with_the_same_line_before_it_binds_or_connects() {
    let dir = scratch("start");
    let missing = dir.join("keys").join("payment.pem");
    let env = with(
        &service_env(&dir),
        "ROAMING_AUTH_SIGNING_KEY_FILE",
        missing.display().to_string(),
    );
    // An admin port that is taken would fail the start first, if it bound it.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let env = with(
        &env,
        "ROAMING_ADMIN_LISTEN",
        taken.local_addr().unwrap().to_string(),
    );
    let before = tree(&dir);
    let check = refused(&run(&dir, &["check-config", "serve", "payment"], &env));
    let start = refused(&run(&dir, &["serve", "payment"], &env));
    assert_eq!(start, check);
    assert!(check.contains("ROAMING_AUTH_SIGNING_KEY_FILE"), "{check}");
    assert_eq!(tree(&dir), before, "a start never creates a service's key");
}

/// `roaming certs --out DIR`: a local CA and every identity's files.
fn certs(dir: &Path) -> PathBuf {
    let out = dir.join("tls");
    let made = Command::new(BIN)
        .args(["certs", "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    for identity in [
        "gateway",
        "reservation",
        "payment",
        "rental",
        "parking",
        "view",
        "public",
    ] {
        for file in ["tls.crt", "tls.key", "ca.crt"] {
            assert!(out.join(identity).join(file).exists(), "{identity}/{file}");
        }
    }
    // A second run keeps the CA it made.
    let again = Command::new(BIN)
        .args(["certs", "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!again.status.success(), "a CA is never replaced");
    out
}

#[test]
fn the_certificates_a_start_reads_are_checked_and_named() {
    let dir = scratch("tls");
    let tls = certs(&dir);
    let env = with(
        &with(&service_env(&dir), "ROAMING_MESH_TLS", "required"),
        "ROAMING_MESH_TLS_DIR",
        tls.display().to_string(),
    );
    let env = with(&env, "ROAMING_PAYMENT_ADDRS", "https://payment:50052");
    let ok = accepted(&run(&dir, &["check-config", "serve", "reservation"], &env));
    assert!(ok.contains("TLS: mesh identity reservation"), "{ok}");
    assert!(ok.contains("payment at https://payment:50052"), "{ok}");

    // Required, but no certificates.
    let line = refused(&run(
        &dir,
        &["check-config", "serve", "reservation"],
        &without(&env, "ROAMING_MESH_TLS_DIR"),
    ));
    assert!(line.contains("ROAMING_MESH_TLS_DIR"), "{line}");
    // An https:// address with TLS off and no certificates.
    let plain = without(
        &with(&env, "ROAMING_MESH_TLS", "off"),
        "ROAMING_MESH_TLS_DIR",
    );
    let line = refused(&run(
        &dir,
        &["check-config", "serve", "reservation"],
        &plain,
    ));
    assert!(line.contains("ROAMING_PAYMENT_ADDRS"), "{line}");
    // A mode that is none.
    let line = refused(&run(
        &dir,
        &["check-config", "serve", "reservation"],
        &with(&env, "ROAMING_MESH_TLS", "sometimes"),
    ));
    // Named by its key, as every declared check is (`a_bad_value_is_named`).
    assert!(
        line.contains("mesh_tls") && line.contains("off, optional, required"),
        "{line}"
    );
    // The gateway's certificate without its key, and one that does not exist.
    let gateway = with(
        &env,
        "ROAMING_GATEWAY_TLS_CERT",
        tls.join("public").join("tls.crt").display().to_string(),
    );
    let line = refused(&run(&dir, &["check-config", "serve", "gateway"], &gateway));
    assert!(line.contains("ROAMING_GATEWAY_TLS_KEY"), "{line}");
    let gateway = with(
        &with(
            &gateway,
            "ROAMING_GATEWAY_TLS_KEY",
            tls.join("public").join("tls.key").display().to_string(),
        ),
        "ROAMING_GATEWAY_TLS_CERT",
        tls.join("public").join("missing.crt").display().to_string(),
    );
    let line = refused(&run(&dir, &["check-config", "serve", "gateway"], &gateway));
    assert!(
        line.contains("ROAMING_GATEWAY_TLS_CERT") && line.contains("missing.crt"),
        "{line}"
    );

    // A key that is not the certificate's (a renewal caught half-way): the
    // start refuses it with the same line as the check, before it binds.
    std::fs::copy(
        tls.join("payment").join("tls.key"),
        tls.join("reservation").join("tls.key"),
    )
    .unwrap();
    let check = refused(&run(&dir, &["check-config", "serve", "reservation"], &env));
    assert!(
        check.contains("ROAMING_MESH_TLS_DIR") && check.contains("not the key of"),
        "{check}"
    );
    let start = refused(&run(&dir, &["serve", "reservation"], &env));
    assert_eq!(start, check);
}
