//! The payment service: settings from `--config FILE` and `ROAMING_*`, served
//! against PostgreSQL and NATS until SIGTERM / Ctrl-C. See the README's
//! "Run it distributed".

fn main() -> anyhow::Result<()> {
    let mut args = vec!["serve".to_owned(), "payment".to_owned()];
    args.extend(std::env::args().skip(1));
    roaming::cli::main_with(args)
}
