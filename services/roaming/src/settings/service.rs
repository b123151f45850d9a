//! The section of a service that has no knobs of its own besides its port and
//! database: `[reservation]`, `[rental]`, `[parking]`, `[view]`.

use std::net::SocketAddr;

use super::checks::{database_scheme, database_url_from_env, loopback};

adapters_settings::section! {
    /// Where one service listens and keeps its data.
    #[derive(Debug, Clone)]
    pub struct ServiceSettings {
        /// Where the service listens (`roaming up` and `roaming serve`).
        pub listen: SocketAddr = loopback(0);
        /// `sqlite://...` or `postgres://...`; a SQLite file under `data_dir`
        /// when unset.
        pub database_url: Option<String> = None,
            env database_url_from_env,
            check database_scheme;
    }
}

impl ServiceSettings {
    /// Listening on `127.0.0.1:port`, with the default database.
    pub fn on(port: u16) -> Self {
        Self {
            listen: loopback(port),
            ..Self::default()
        }
    }
}
