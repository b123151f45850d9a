//! Local certificates for a try-out of TLS on one machine: `roaming certs`
//! writes a CA and every identity's certificate (see
//! `adapters_grpc::tls::local` for the layout); `roaming up --tls` makes
//! them under the data directory on its first start and turns TLS on
//! everywhere (the gateway's port, mutual TLS between the services).
//! Production certificates come from cert-manager (deploy/README.md).

use std::path::{Path, PathBuf};

use adapters_grpc::tls::local::{LocalCa, PUBLIC};
use anyhow::{Context as _, bail};

use crate::Settings;

/// Where `roaming up --tls` keeps its certificates.
pub fn try_out_dir(settings: &Settings) -> PathBuf {
    settings.data_dir.join("tls")
}

/// Writes a new CA and every certificate under `dir` (the public port's
/// also for `hosts`). Refuses to replace a CA already there.
///
/// # Errors
/// A CA is there, or a file cannot be written.
pub fn write(dir: &Path, hosts: &[String]) -> anyhow::Result<()> {
    if dir.join("ca.crt").exists() {
        bail!(
            "{} already holds a CA: remove the directory to make a new one",
            dir.display()
        );
    }
    let ca = LocalCa::new("roaming mesh local CA")?;
    ca.write_mesh(dir, hosts)?;
    Ok(())
}

/// `roaming certs [--out DIR] [--host NAME]...`.
///
/// # Errors
/// A bad argument, a CA already there, a file that cannot be written.
pub fn main(args: &[String]) -> anyhow::Result<()> {
    let mut out = PathBuf::from("data/tls");
    let mut hosts = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--out" => out = PathBuf::from(args.next().context("--out needs a directory")?),
            "--host" => hosts.push(args.next().context("--host needs a name")?.clone()),
            other => {
                bail!("unknown argument {other:?}: roaming certs [--out DIR] [--host NAME]...")
            }
        }
    }
    write(&out, &hosts)?;
    let dir = out.display();
    println!(
        "a local CA and the mesh's certificates are in {dir}:\n  \
         {dir}/ca.crt                       the CA (give it to clients: grpcurl -cacert {dir}/ca.crt)\n  \
         {dir}/{PUBLIC}/tls.crt, tls.key      the gateway's public port (localhost, 127.0.0.1, ::1{})\n  \
         {dir}/<identity>/tls.crt, tls.key  gateway, reservation, payment, rental, parking, view\n\
         to use them:\n  \
         ROAMING_GATEWAY_TLS_CERT={dir}/{PUBLIC}/tls.crt ROAMING_GATEWAY_TLS_KEY={dir}/{PUBLIC}/tls.key \\\n  \
         ROAMING_MESH_TLS=required ROAMING_MESH_TLS_DIR={dir} roaming up",
        hosts.iter().fold(String::new(), |mut all, h| {
            all.push_str(", ");
            all.push_str(h);
            all
        })
    );
    Ok(())
}

/// `roaming up --tls`: the try-out certificates (made on the first start),
/// and every unset TLS setting pointed at them: the gateway's port serves
/// TLS, the services require mutual TLS.
///
/// # Errors
/// The certificates cannot be written.
pub fn try_out(settings: &mut Settings) -> anyhow::Result<()> {
    let dir = try_out_dir(settings);
    if !dir.join("ca.crt").exists() {
        write(&dir, &[])?;
    }
    if settings.mesh_tls == "off" {
        "required".clone_into(&mut settings.mesh_tls);
    }
    if settings.mesh_tls_dir.is_none() {
        settings.mesh_tls_dir = Some(dir.clone());
    }
    if settings.gateway.tls_cert.is_none() && settings.gateway.tls_key.is_none() {
        settings.gateway.tls_cert = Some(dir.join(PUBLIC).join("tls.crt"));
        settings.gateway.tls_key = Some(dir.join(PUBLIC).join("tls.key"));
    }
    Ok(())
}
