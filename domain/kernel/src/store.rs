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

    /// A change made without a causing event met the inbox: the store is at
    /// fault, not the caller.
    pub fn inbox_hit_without_cause() -> Self {
        Self::msg("inbox hit without a causing event")
    }
}

/// Why a change could not be saved (every context's repository).
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    /// The stored version is not the one the change was made on: reload, retry.
    #[error("concurrent change")]
    Conflict,
    /// The causing event is already in the inbox: its effect exists.
    #[error("event already handled")]
    AlreadyHandled,
    #[error(transparent)]
    Store(#[from] StoreError),
}
