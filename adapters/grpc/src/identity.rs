//! The caller of a request, as the token check decided it.
//!
//! Every server runs behind `adapters_auth::AuthLayer`, which verifies the
//! bearer token and puts the caller's [`Principal`] into the request's
//! extensions. Handlers read it with [`principal`] and never look at metadata
//! themselves; no other header is ever taken as an identity.

use domain_kernel::Principal;
use tonic::{Request, Status};

/// The caller's principal, as the token check set it.
pub fn principal<T>(request: &Request<T>) -> Result<Principal, Status> {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("no verified token"))
}
