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

/// The handler could not apply the event now. It will be delivered again until
/// `max_deliver`, then dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HandleError(pub String);

impl HandleError {
    pub fn new(e: impl std::fmt::Display) -> Self {
        Self(e.to_string())
    }
}

/// Applies delivered events. Must be idempotent by event id (the inbox): every
/// event may arrive more than once. Returning `Ok` acknowledges it.
pub trait Handler: Send + Sync + 'static {
    fn handle<'a>(&'a self, delivery: Delivery<'a>) -> BoxFuture<'a, Result<(), HandleError>>;
}
