use std::fmt;

/// Storage or messaging failed for a reason the domain cannot act on (connection
/// lost, disk full, ...). Adapters wrap the cause; inbound adapters log it and
/// answer with an opaque `INTERNAL` / `UNAVAILABLE`.
#[derive(Debug, thiserror::Error)]
#[error("store unavailable: {source}")]
pub struct StoreError {
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl StoreError {
    pub fn new(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self {
            source: source.into(),
        }
    }

    /// A failure described only by a message.
    pub fn msg(message: impl fmt::Display) -> Self {
        Self::new(message.to_string())
    }
}
