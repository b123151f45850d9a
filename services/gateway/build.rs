//! Embeds the browser console (`services/console/dist`, built by `npm run
//! build` there and committed) into the gateway, so `roaming up` serves it on
//! a machine without Node. Writes `$OUT_DIR/console_files.rs`: one entry per
//! file with its URL path, content type, an `ETag` (FNV-1a of the bytes) and
//! whether its name carries a content hash (then it is cached for a year).

use std::error::Error;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::{env, fs};

const MISSING: &str = "services/console/dist/index.html is missing: it is committed; \
    rebuild it with `npm ci && npm run build` in services/console";

fn main() -> Result<(), Box<dyn Error>> {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let dist = manifest.join("../console/dist");
    println!("cargo:rerun-if-changed={}", dist.display());
    let dist = fs::canonicalize(&dist).map_err(|e| format!("{MISSING} ({e})"))?;
    if !dist.join("index.html").is_file() {
        return Err(MISSING.into());
    }
    let mut files = Vec::new();
    walk(&dist, &mut files)?;
    files.sort();

    let mut out = String::from("pub(crate) static FILES: &[File] = &[\n");
    for path in &files {
        println!("cargo:rerun-if-changed={}", path.display());
        let rel = path
            .strip_prefix(&dist)?
            .to_str()
            .ok_or("console file names are UTF-8")?
            .replace('\\', "/");
        let bytes = fs::read(path)?;
        let immutable = rel.starts_with("assets/") && hashed(&rel);
        writeln!(
            out,
            "    File {{ path: {:?}, content_type: {:?}, etag: \"\\\"{:016x}\\\"\", immutable: {immutable}, body: include_bytes!({:?}) }},",
            format!("/{rel}"),
            content_type(&rel),
            fnv1a(&bytes),
            path.display().to_string(),
        )?;
    }
    out.push_str("];\n");
    fs::write(
        PathBuf::from(env::var("OUT_DIR")?).join("console_files.rs"),
        out,
    )?;
    Ok(())
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, files)?;
        } else {
            files.push(path);
        }
    }
    Ok(())
}

/// `app-5FJ3K2QX.js`: esbuild's `[name]-[hash]` names.
fn hashed(rel: &str) -> bool {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    let stem = name.split('.').next().unwrap_or(name);
    stem.rsplit_once('-')
        .is_some_and(|(_, hash)| hash.len() >= 8 && hash.chars().all(|c| c.is_ascii_alphanumeric()))
}

fn content_type(rel: &str) -> &'static str {
    match rel.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "txt" => "text/plain; charset=utf-8",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
