//! What a start checks before it connects anywhere: the keys it reads, the
//! database URL it opens, the broker it needs, the replicas it calls, the
//! gateway's logins. `roaming serve` and `roaming up` run these functions,
//! then bind and connect; `roaming check-config` runs the same functions and
//! stops there: nothing is dialled, bound or written. A problem is a
//! [`SettingsError`] naming the setting's variable
//! (`invalid setting ROAMING_AUTH_SIGNING_KEY_FILE: /etc/...: No such file or directory`).

use std::fmt::Write as _;
use std::net::SocketAddr;

use adapters_settings::{SettingsError, bad};
use adapters_store::{Backend, Db};
use gateway::{PrincipalEntry, Upstreams};

use crate::Settings;
use crate::auth::{KeyFiles, Keys};

/// What `roaming serve` runs: the mesh's components, each also its own
/// `service.name` in traces.
pub const SERVICES: [&str; 6] = adapters_telemetry::export::COMPONENTS;

/// A service that calls another one's replicas.
#[derive(Debug, Clone, Copy)]
pub struct Call {
    /// The service that calls.
    pub caller: &'static str,
    /// The service called.
    pub callee: &'static str,
    /// The setting that lists the callee's replicas (its TOML key).
    pub setting: &'static str,
    /// Why a start refuses an empty list, when it does.
    pub required: Option<&'static str>,
}

/// Every call a service makes to another (the gateway's are
/// [`Upstreams`]).
pub const CALLS: [Call; 3] = [
    Call {
        caller: "reservation",
        callee: "payment",
        setting: "payment_addrs",
        required: None,
    },
    Call {
        caller: "rental",
        callee: "reservation",
        setting: "reservation_addrs",
        required: Some("rental asks the reservation service before every hand-over"),
    },
    Call {
        caller: "parking",
        callee: "reservation",
        setting: "reservation_addrs",
        required: None,
    },
];

/// Whether `caller` may start calling `addrs` (the replicas its [`Call`]
/// names): a list it requires is not empty, and each address is one a
/// channel can be built to.
///
/// # Errors
/// Names the setting that lists the replicas.
pub fn check_call(caller: &str, addrs: &[String]) -> Result<(), SettingsError> {
    let Some(call) = CALLS.iter().find(|c| c.caller == caller) else {
        return Ok(());
    };
    let setting = Settings::variable(call.setting);
    if addrs.is_empty()
        && let Some(why) = call.required
    {
        return Err(bad(&setting, format!("not set: {why}")));
    }
    adapters_grpc::balance::check_addresses(addrs).map_err(|e| bad(&setting, e))
}

/// The certificate files a start of `servers` (the services whose ports it
/// opens) that dials with `callers` (identity and the addresses it dials)
/// reads, read and parsed as the start will: the servers' when `mesh_tls`
/// is not `off`, a caller's when it dials an `https://` address, the
/// gateway's public port's when `gateway.tls_cert` is set (`public`).
///
/// What was checked, for the summary (`mesh identity rental`, `public
/// certificate`).
///
/// # Errors
/// Names `mesh_tls_dir` or `gateway.tls_cert`, and the file.
pub fn check_tls(
    settings: &Settings,
    servers: &[&str],
    callers: &[(&str, &[String])],
    public: bool,
) -> Result<Vec<String>, SettingsError> {
    let mut checked = Vec::new();
    let dir_problem = |e: adapters_grpc::tls::TlsError| bad(&Settings::variable("mesh_tls_dir"), e);
    let mut identities: Vec<&str> = Vec::new();
    if settings.client_certs() != adapters_grpc::tls::ClientCerts::Off {
        identities.extend(servers);
    }
    for (caller, addrs) in callers {
        if addrs.iter().any(|a| adapters_grpc::balance::is_https(a)) && !identities.contains(caller)
        {
            identities.push(caller);
        }
    }
    for identity in identities {
        // Validation made sure the directory is set when it is needed.
        if let Some(files) = settings.mesh_files(identity) {
            files.check().map_err(dir_problem)?;
            checked.push(format!("mesh identity {identity}"));
        }
    }
    if public
        && let (Some(cert), Some(key)) = (&settings.gateway.tls_cert, &settings.gateway.tls_key)
    {
        adapters_grpc::tls::PemFiles {
            cert: cert.clone(),
            key: key.clone(),
            ca: None,
        }
        .check()
        .map_err(|e| bad(&Settings::variable("gateway.tls_cert"), e))?;
        checked.push("public certificate".to_owned());
    }
    Ok(checked)
}

/// The database `service` opens: its URL (or the SQLite file under the data
/// directory) and which backend, as [`Db::connect_pooled`] parses it.
///
/// # Errors
/// Names the service's `database_url` (or the data directory, for the
/// default SQLite file); never repeats the URL (it carries a password).
pub fn database(
    settings: &Settings,
    service: &str,
    explicit: Option<&String>,
) -> Result<(String, Backend), SettingsError> {
    let url = settings.database_url(service, explicit);
    let setting = if explicit.is_some() {
        format!("{service}.database_url")
    } else {
        "data_dir".to_owned()
    };
    let backend = Db::check_url(&url).map_err(|e| bad(&Settings::variable(&setting), e))?;
    Ok((url, backend))
}

/// The gateway's upstreams: each service's configured replicas.
pub fn gateway_upstreams(settings: &Settings) -> Upstreams {
    Upstreams {
        reservation: settings.reservation_addrs.clone(),
        payment: settings.payment_addrs.clone(),
        rental: settings.rental_addrs.clone(),
        parking: settings.parking_addrs.clone(),
        view: settings.view_addrs.clone(),
        discovery: settings.discovery(),
    }
}

/// What [`gateway::start`] requires of `upstreams`.
///
/// # Errors
/// Names the setting of the upstream refused (`ROAMING_PAYMENT_ADDRS`).
pub fn check_upstreams(upstreams: &Upstreams) -> Result<(), SettingsError> {
    upstreams
        .check()
        .map_err(|(upstream, e)| bad(&Settings::variable(&format!("{upstream}_addrs")), e))
}

/// The gateway's logins: the configured principals, or `fallback`.
///
/// # Errors
/// Names `gateway.principals` (a file-only setting).
pub fn check_logins(settings: &Settings, fallback: &[PrincipalEntry]) -> Result<(), SettingsError> {
    settings
        .gateway
        .credentials(fallback)
        .map(drop)
        .map_err(|e| bad("gateway.principals", e))
}

/// One service's start, checked (`roaming serve SERVICE`).
#[derive(Debug)]
pub struct Plan {
    pub service: &'static str,
    pub keys: Keys,
    pub listen: SocketAddr,
    /// Its database (a service; the gateway has none).
    pub database: Option<Backend>,
    /// The broker (a service; the gateway has none).
    pub nats_url: Option<String>,
    /// The replicas it calls: each callee and its addresses.
    pub calls: Vec<(&'static str, Vec<String>)>,
    /// The certificates it reads, checked ([`check_tls`]).
    pub tls: Vec<String>,
}

/// Checks everything `roaming serve service` needs before it binds or
/// connects: its signing key (which must exist: a service of a distributed
/// mesh never creates one) and trusted keys, the broker's URL, its database
/// URL, the replicas it calls (and the key it signs those calls with); for
/// the gateway its logins and every upstream.
///
/// # Errors
/// The first problem, naming its setting; an unknown service names
/// `service`.
pub fn serve(settings: &Settings, service: &str) -> Result<Plan, SettingsError> {
    let Some(service) = SERVICES.iter().copied().find(|s| *s == service) else {
        return Err(bad(
            "service",
            format!(
                "unknown service {service:?}: one of {}",
                SERVICES.join(", ")
            ),
        ));
    };
    let keys = Keys::read(settings, KeyFiles::MustExist)?;
    if service == "gateway" {
        check_logins(settings, &[])?;
        let upstreams = gateway_upstreams(settings);
        check_upstreams(&upstreams)?;
        let dialled: Vec<String> = upstreams
            .each()
            .iter()
            .flat_map(|(_, _, addrs)| addrs.iter().cloned())
            .collect();
        let tls = check_tls(
            settings,
            &[],
            &[(adapters_grpc::tls::GATEWAY_IDENTITY, &dialled)],
            true,
        )?;
        return Ok(Plan {
            tls,
            service,
            keys,
            listen: settings.gateway.listen,
            database: None,
            nats_url: None,
            calls: upstreams
                .each()
                .iter()
                .map(|(name, _, addrs)| (*name, addrs.to_vec()))
                .collect(),
        });
    }
    let Some(nats_url) = settings.nats_url.clone() else {
        return Err(bad(
            &Settings::variable("nats_url"),
            "not set: `roaming serve` runs one service of a distributed mesh (the embedded bus only works inside `roaming up`)",
        ));
    };
    let (listen, explicit) = match service {
        "reservation" => (
            settings.reservation.listen,
            &settings.reservation.database_url,
        ),
        "payment" => (settings.payment.listen, &settings.payment.database_url),
        "rental" => (settings.rental.listen, &settings.rental.database_url),
        "parking" => (settings.parking.listen, &settings.parking.database_url),
        _ => (settings.view.listen, &settings.view.database_url),
    };
    let (_, backend) = database(settings, service, explicit.as_ref())?;
    let mut calls = Vec::new();
    if let Some(call) = CALLS.iter().find(|c| c.caller == service) {
        let addrs = match call.callee {
            "payment" => &settings.payment_addrs,
            _ => &settings.reservation_addrs,
        };
        check_call(service, addrs)?;
        keys.caller_key(service)?;
        calls.push((call.callee, addrs.clone()));
    }
    let callers: Vec<(&str, &[String])> = calls
        .iter()
        .map(|(_, addrs)| (service, addrs.as_slice()))
        .collect();
    let tls = check_tls(settings, &[service], &callers, false)?;
    Ok(Plan {
        tls,
        service,
        keys,
        listen,
        database: Some(backend),
        nats_url: Some(nats_url),
        calls,
    })
}

/// `roaming up`'s start, checked.
#[derive(Debug)]
pub struct UpPlan {
    pub keys: Keys,
    /// The certificates it reads, checked ([`check_tls`]).
    pub tls: Vec<String>,
}

/// Checks everything `roaming up` needs before it binds or connects: the
/// signing key (`files`: created when missing at a start, made in memory by
/// the check), the trusted keys, each service's database URL, every
/// configured list of replicas, and the gateway's logins (the demo
/// principals unless configured).
///
/// # Errors
/// The first problem, naming its setting.
pub fn up(settings: &Settings, files: KeyFiles) -> Result<UpPlan, SettingsError> {
    let keys = Keys::read(settings, files)?;
    for (service, explicit) in [
        ("payment", &settings.payment.database_url),
        ("reservation", &settings.reservation.database_url),
        ("rental", &settings.rental.database_url),
        ("parking", &settings.parking.database_url),
        ("view", &settings.view.database_url),
    ] {
        database(settings, service, explicit.as_ref())?;
    }
    // A configured list replaces the local service (an empty one stands
    // for the local service's address).
    for (name, _, addrs) in gateway_upstreams(settings).each() {
        adapters_grpc::balance::check_addresses(addrs)
            .map_err(|e| bad(&Settings::variable(&format!("{name}_addrs")), e))?;
    }
    check_logins(settings, &PrincipalEntry::demo())?;
    // With `mesh_tls` on every port here serves TLS and `up` dials them all
    // at `https://` addresses: every identity is read. Off, an identity is
    // read only for a configured `https://` address it dials.
    let tls = if settings.client_certs() == adapters_grpc::tls::ClientCerts::Off {
        let gateway_dials: Vec<String> = settings
            .addresses()
            .iter()
            .flat_map(|(_, addrs)| addrs.iter().cloned())
            .collect();
        let callers: [(&str, &[String]); 4] = [
            ("reservation", &settings.payment_addrs),
            ("rental", &settings.reservation_addrs),
            ("parking", &settings.reservation_addrs),
            (adapters_grpc::tls::GATEWAY_IDENTITY, &gateway_dials),
        ];
        check_tls(settings, &[], &callers, true)?
    } else {
        check_tls(settings, &adapters_grpc::tls::local::IDENTITIES, &[], true)?
    };
    Ok(UpPlan { keys, tls })
}

impl Plan {
    /// The line `roaming check-config` prints for a start that would go on.
    pub fn summary(&self) -> String {
        let mut out = format!("ok: serve {}: listens on {}", self.service, self.listen);
        match self.database {
            Some(Backend::Postgres) => out.push_str(", database PostgreSQL"),
            Some(Backend::Sqlite) => out.push_str(", database SQLite"),
            None => {}
        }
        if let Some(url) = &self.nats_url {
            let _ = write!(out, ", NATS {url}");
        }
        for (callee, addrs) in &self.calls {
            let _ = write!(out, ", {callee} at {}", addrs.join(" "));
        }
        let _ = write!(
            out,
            ", {} signing key, {} trusted keys",
            if self.keys.signing_key().is_some() {
                "a"
            } else {
                "no"
            },
            self.keys.trusted()
        );
        if !self.tls.is_empty() {
            let _ = write!(out, ", TLS: {}", self.tls.join(", "));
        }
        out
    }
}

impl UpPlan {
    /// The line `roaming check-config up` prints for a start that would go on.
    pub fn summary(&self, settings: &Settings) -> String {
        let key = match &settings.auth.signing_key_file {
            Some(path) => path.clone(),
            None => settings.data_dir.join("keys").join("issuer.pem"),
        };
        let tls = if self.tls.is_empty() {
            String::new()
        } else {
            format!(", TLS: {}", self.tls.join(", "))
        };
        format!(
            "ok: up: gateway on {}, data in {}, events on {}, signing key {} ({}), {} trusted keys{tls}",
            settings.gateway.listen,
            settings.data_dir.display(),
            settings.nats_url.as_deref().unwrap_or("the embedded bus"),
            key.display(),
            if key.exists() {
                "present"
            } else {
                "created at the first start"
            },
            self.keys.trusted()
        )
    }
}

#[cfg(test)]
mod deploy_mesh {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

    use proto::service_names;
    use serde_json::{Value, json};

    use super::{CALLS, SERVICES};
    use crate::Settings;

    /// What deploy/mesh.json must say of `service`, from the code: its port's
    /// setting, the health names it serves (the runtime's `""`, liveness and
    /// for a service the bus entry and its own name: adapters/grpc runtime
    /// and host.rs), whom it calls ([`CALLS`], the gateway every upstream),
    /// and whether it needs the broker and a database.
    fn expected(service: &str) -> Value {
        let var = |key: &str| Settings::variable(key);
        if service == "gateway" {
            let upstreams = crate::plan::gateway_upstreams(&Settings::default());
            return json!({
                "listen": var("gateway.listen"),
                "public": true,
                "identity": adapters_grpc::tls::GATEWAY_IDENTITY,
                "health": ["", service_names::LIVENESS],
                "readiness": "",
                "calls": upstreams.each().iter().map(|(name, _, _)| *name).collect::<Vec<_>>(),
                "broker": false,
                "database": null,
            });
        }
        let own = match service {
            "reservation" => service_names::RESERVATION,
            "payment" => service_names::PAYMENT,
            "rental" => service_names::RENTAL,
            "parking" => service_names::PARKING,
            _ => service_names::VIEW,
        };
        json!({
            "listen": var(&format!("{service}.listen")),
            "public": false,
            // Host::open serves with the service's own name's certificate.
            "identity": service,
            "health": ["", service_names::LIVENESS, service_names::BUS, own],
            "readiness": own,
            "calls": CALLS.iter().filter(|c| c.caller == service).map(|c| c.callee).collect::<Vec<_>>(),
            "broker": true,
            "database": var(&format!("{service}.database_url")),
        })
    }

    #[test]
    fn deploy_mesh_json_is_the_code() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/mesh.json");
        let file: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let processes = file["processes"].as_object().expect("processes");
        let mut names: Vec<&str> = processes.keys().map(String::as_str).collect();
        let mut want = SERVICES.to_vec();
        names.sort_unstable();
        want.sort_unstable();
        assert_eq!(
            names, want,
            "deploy/mesh.json names every process `serve` runs"
        );
        for service in SERVICES {
            assert_eq!(
                processes[service],
                expected(service),
                "deploy/mesh.json, process {service}: expected\n{}",
                serde_json::to_string_pretty(&expected(service)).unwrap()
            );
        }
        let var = |key: &str| Value::String(Settings::variable(key));
        assert_eq!(file["admin_listen"], var("admin_listen"));
        assert_eq!(file["broker_url"], var("nats_url"));
        assert_eq!(file["shutdown_delay_ms"], var("shutdown_delay_ms"));
        assert_eq!(file["shutdown_grace_ms"], var("shutdown_grace_ms"));
        assert_eq!(file["mesh_tls"], var("mesh_tls"));
        assert_eq!(file["mesh_tls_dir"], var("mesh_tls_dir"));
        assert_eq!(file["public_tls_cert"], var("gateway.tls_cert"));
        assert_eq!(file["public_tls_key"], var("gateway.tls_key"));
        // The files of an identity, as the code names them.
        let files = adapters_grpc::tls::PemFiles::identity(std::path::Path::new(""), "x");
        let name = |p: &std::path::Path| {
            Value::String(p.file_name().unwrap().to_string_lossy().into_owned())
        };
        assert_eq!(
            file["mesh_tls_files"],
            Value::Array(vec![
                name(&files.cert),
                name(&files.key),
                name(files.ca.as_deref().unwrap())
            ])
        );
    }
}
