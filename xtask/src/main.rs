//! `cargo xtask tidy`: see the library docs.

use anyhow::{Result, bail};

fn main() -> Result<()> {
    match std::env::args().nth(1).as_deref() {
        Some("tidy") => {
            xtask::tidy()?;
            println!("tidy: domain crates depend on no adapter, transport or runtime crate");
            Ok(())
        }
        _ => bail!("usage: cargo xtask tidy"),
    }
}
