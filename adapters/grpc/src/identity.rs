//! The identity seam: the one place a request's [`Principal`] is decided.
//!
//! DEVELOPMENT ONLY, until the edge issue replaces it with token verification:
//! [`DevIdentity`] trusts the `x-dev-subject`, `x-dev-roles` (comma-separated)
//! and `x-dev-booth` metadata. Handlers read the principal with [`principal`]
//! and never look at metadata themselves, so swapping this interceptor for a JWT
//! verifier changes nothing else.

use domain_kernel::{BoothCode, Principal, Role};
use tonic::service::Interceptor;
use tonic::{Request, Status};

pub const SUBJECT: &str = "x-dev-subject";
pub const ROLES: &str = "x-dev-roles";
pub const BOOTH: &str = "x-dev-booth";

/// Reads the development identity headers into the request's extensions.
#[derive(Debug, Clone, Copy, Default)]
pub struct DevIdentity;

impl Interceptor for DevIdentity {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let md = request.metadata();
        let get = |k: &str| {
            md.get(k)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        let Some(subject) = get(SUBJECT) else {
            return Err(Status::unauthenticated(
                "no identity: send x-dev-subject and x-dev-roles",
            ));
        };
        let roles: Vec<Role> = get(ROLES)
            .unwrap_or_default()
            .split(',')
            .filter(|r| !r.trim().is_empty())
            .map(|r| {
                Role::parse(r.trim())
                    .ok_or_else(|| Status::unauthenticated(format!("unknown role {r:?}")))
            })
            .collect::<Result<_, _>>()?;
        let booth = get(BOOTH)
            .map(|b| {
                BoothCode::parse(b).map_err(|e| Status::unauthenticated(format!("x-dev-booth {e}")))
            })
            .transpose()?;
        let principal = Principal::new(subject, roles, booth);
        request.extensions_mut().insert(principal);
        Ok(request)
    }
}

/// The caller's principal, as the identity layer set it.
pub fn principal<T>(request: &Request<T>) -> Result<Principal, Status> {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("no identity"))
}

/// Metadata a client sends to act as `principal` (development identity).
pub fn dev_metadata(principal: &Principal) -> Vec<(&'static str, String)> {
    let roles: Vec<&str> = principal.roles().iter().map(|r| r.as_str()).collect();
    let mut md = vec![
        (SUBJECT, principal.subject().to_owned()),
        (ROLES, roles.join(",")),
    ];
    if let Some(b) = principal.booth() {
        md.push((BOOTH, b.to_string()));
    }
    md
}

/// Adds the development identity of `principal` to an outgoing request.
pub fn authorize<T>(request: &mut Request<T>, principal: &Principal) {
    for (k, v) in dev_metadata(principal) {
        if let Ok(v) = v.parse() {
            request.metadata_mut().insert(k, v);
        }
    }
}
