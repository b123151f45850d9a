//! The outermost layer: which service a call is for, and whether it streams.

use std::collections::HashSet;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use prost::Message;
use tonic::Status;
use tower::{Layer, Service};

use super::call::{Response, answer, take_ready};

/// Where a call goes, put on the request by [`RouteLayer`] for the layers
/// below it (and [`Forward`](super::Forward), which sends it there).
#[derive(Debug, Clone)]
pub struct Route {
    /// The gRPC service (`package.Service`) of the path.
    pub service: Arc<str>,
    /// Whether the method streams (no default deadline, not counted against
    /// the concurrency limit: a watch may last for hours).
    pub streaming: bool,
}

/// Finds the call's service among those the gateway fronts and puts its
/// [`Route`] on the request; a service this gateway does not front is
/// `UNIMPLEMENTED`.
#[derive(Debug, Clone)]
pub struct RouteLayer {
    services: Arc<HashSet<String>>,
    streaming: Arc<HashSet<String>>,
}

impl RouteLayer {
    /// `services` are gRPC service names (`package.Service`), `streaming` the
    /// `/package.Service/Method` paths of streaming methods
    /// ([`streaming_methods`]).
    pub fn new(services: HashSet<String>, streaming: HashSet<String>) -> Self {
        Self {
            services: Arc::new(services),
            streaming: Arc::new(streaming),
        }
    }
}

impl<S> Layer<S> for RouteLayer {
    type Service = Routed<S>;

    fn layer(&self, inner: S) -> Routed<S> {
        Routed {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`RouteLayer`] makes.
#[derive(Debug, Clone)]
pub struct Routed<S> {
    inner: S,
    layer: RouteLayer,
}

impl<S, B> Service<http::Request<B>> for Routed<S>
where
    S: Service<http::Request<B>, Response = Response> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let path = request.uri().path();
        let service = path
            .strip_prefix('/')
            .and_then(|p| p.split_once('/'))
            .map(|(s, _)| s)
            .unwrap_or_default();
        if !self.layer.services.contains(service) {
            let status =
                Status::unimplemented(format!("no service {service:?} behind this gateway"));
            return Box::pin(async move { Ok(answer(&status)) });
        }
        let route = Route {
            service: service.into(),
            streaming: self.layer.streaming.contains(path),
        };
        request.extensions_mut().insert(route);
        let mut inner = take_ready(&mut self.inner);
        Box::pin(async move { inner.call(request).await })
    }
}

/// The `/package.Service/Method` paths of streaming methods in `descriptors`.
pub fn streaming_methods(descriptors: &[u8]) -> HashSet<String> {
    let Ok(set) = prost_types::FileDescriptorSet::decode(descriptors) else {
        return HashSet::new();
    };
    let mut out = HashSet::new();
    for file in &set.file {
        for service in &file.service {
            for method in &service.method {
                if method.client_streaming() || method.server_streaming() {
                    out.insert(format!(
                        "/{}.{}/{}",
                        file.package(),
                        service.name(),
                        method.name()
                    ));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use tonic::Code;
    use tower::ServiceExt as _;

    use super::*;
    use crate::proxy::testing::{STREAMING, UNARY, ok, over, request, status};

    #[test]
    fn the_watch_is_the_streaming_method() {
        let streaming = streaming_methods(proto::FILE_DESCRIPTOR_SET);
        assert!(streaming.contains(STREAMING));
        assert!(!streaming.contains(UNARY));
    }

    #[tokio::test]
    async fn route_refuses_unknown_services_and_marks_streaming_methods() {
        let service = "roaming.view.v1.ViewService";
        let layer = RouteLayer::new(
            HashSet::from([service.to_owned()]),
            HashSet::from([STREAMING.to_owned()]),
        );
        let (svc, mut handle) = over(layer);

        for path in ["/no.such.Service/Call", "/", "/nopath"] {
            let refused = svc.clone().oneshot(request(path)).await.unwrap();
            assert_eq!(
                status(&refused).unwrap().code(),
                Code::Unimplemented,
                "{path}"
            );
        }
        // Nothing reached the inner service.
        assert!(handle.poll_request().is_pending());

        for (path, streaming) in [
            (STREAMING, true),
            ("/roaming.view.v1.ViewService/GetReservationView", false),
        ] {
            let call = tokio::spawn({
                let svc = svc.clone();
                async move { svc.oneshot(request(path)).await }
            });
            let (seen, reply) = handle.next_request().await.unwrap();
            let route = seen.extensions().get::<Route>().unwrap();
            assert_eq!(&*route.service, service);
            assert_eq!(route.streaming, streaming, "{path}");
            reply.send_response(ok());
            assert!(status(&call.await.unwrap().unwrap()).is_none());
        }
    }
}
