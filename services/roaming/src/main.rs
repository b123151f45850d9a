//! `roaming up` runs the whole mesh; `roaming serve <service>` runs one service.

fn main() -> anyhow::Result<()> {
    roaming::cli::main_with(std::env::args().skip(1).collect())
}
