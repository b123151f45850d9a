//! The payment service's section, `[payment]`: its port and database, and the
//! fault knobs that show the breaker.

use std::net::SocketAddr;

use super::checks::{database_scheme, database_url_from_env, loopback};

adapters_settings::section! {
    /// Payment's settings, with the fault knobs for showing the breaker.
    #[derive(Debug, Clone)]
    pub struct PaymentSettings {
        /// Where the payment service listens.
        pub listen: SocketAddr = loopback(50052);
        /// `sqlite://...` or `postgres://...`; a SQLite file under `data_dir`
        /// when unset.
        pub database_url: Option<String> = None,
            env database_url_from_env,
            check database_scheme;
        /// Injected latency per `Pay`, in milliseconds (0: off).
        pub fault_latency_ms: u64 = 0;
        /// Fraction of `Pay` calls answered `UNAVAILABLE` (0.0: off).
        pub fault_failure_rate: f64 = 0.0, check 0.0..=1.0;
    }
}
