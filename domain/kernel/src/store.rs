use std::fmt;

/// Storage or messaging failed for a reason the domain cannot act on, or a
/// record stayed contended through every retry. Adapters wrap the cause;
/// inbound adapters log it and answer `UNAVAILABLE` (retry) or `INTERNAL`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or answered in time: connection refused
    /// or lost, a pool or statement timeout, a failover under way (a
    /// read-only or shutting-down server). Transient: the same request may
    /// succeed a moment later (a write's outcome may be unknown).
    #[error("store unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Anything else: a bug, or stored data that no longer parses.
    #[error("store failed: {0}")]
    Failed(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Too many concurrent changes to one record (`what`): every optimistic
    /// retry met a newer version. Not a failure of the store.
    #[error("too many concurrent changes to {0}")]
    Contention(&'static str),
}

impl StoreError {
    /// A failure of unknown kind (not known to be transient).
    pub fn new(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Failed(source.into())
    }

    /// A transient unavailability of the store (see [`StoreError::Unavailable`]).
    pub fn unavailable(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Unavailable(source.into())
    }

    /// A failure described only by a message.
    pub fn msg(message: impl fmt::Display) -> Self {
        Self::new(message.to_string())
    }

    /// Whether retrying soon may succeed.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
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
