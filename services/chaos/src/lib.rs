//! The distributed mesh as processes (`mesh`): nats-server, fresh PostgreSQL
//! databases, keys, `roaming serve` per replica and gateways. The chaos suite
//! (the `chaos` binary) and `bench --distributed` run on it.

pub mod mesh;
