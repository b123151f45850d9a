use futures::future::BoxFuture;

/// One delivered event.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    pub subject: &'a str,
    pub payload: &'a [u8],
    pub headers: &'a [(String, String)],
    /// 1 on the first delivery.
    pub attempt: u64,
}

/// Why a handler did not apply an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandleError {
    /// The event itself is bad (does not decode, invalid fields): it will never
    /// apply. Delivered again up to `max_deliver` times, then dead-lettered.
    #[error("poison: {0}")]
    Poison(String),
    /// Something the handler depends on failed (database down, ...): the event
    /// is retried with backoff for as long as it takes and never dead-lettered,
    /// so an outage loses no event.
    #[error("transient: {0}")]
    Transient(String),
}

impl HandleError {
    pub fn poison(e: impl std::fmt::Display) -> Self {
        Self::Poison(e.to_string())
    }

    pub fn transient(e: impl std::fmt::Display) -> Self {
        Self::Transient(e.to_string())
    }

    pub fn is_poison(&self) -> bool {
        matches!(self, Self::Poison(_))
    }

    pub fn message(&self) -> &str {
        match self {
            Self::Poison(m) | Self::Transient(m) => m,
        }
    }
}

/// Applies delivered events. Must be idempotent by event id (the inbox): every
/// event may arrive more than once. Returning `Ok` acknowledges it.
pub trait Handler: Send + Sync + 'static {
    fn handle<'a>(&'a self, delivery: Delivery<'a>) -> BoxFuture<'a, Result<(), HandleError>>;
}
