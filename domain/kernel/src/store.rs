use std::fmt;

/// Storage or messaging failed for a reason the domain cannot act on (connection
/// lost, disk full, ...), or a record stayed contended through every retry.
/// Adapters wrap the cause; inbound adapters log it and answer with an opaque
/// `INTERNAL` / `UNAVAILABLE`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Too many concurrent changes to one record (`what`): every optimistic
    /// retry met a newer version. Not a failure of the store.
    #[error("too many concurrent changes to {0}")]
    Contention(&'static str),
}

impl StoreError {
    pub fn new(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Unavailable(source.into())
    }

    /// A failure described only by a message.
    pub fn msg(message: impl fmt::Display) -> Self {
        Self::new(message.to_string())
    }
}
