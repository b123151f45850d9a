//! The browser console's files on the gateway's public port.
//!
//! `GET` and `HEAD` are answered here from the files of `services/console/dist`
//! embedded at build time (`build.rs`); every other request goes on to
//! gRPC-web and gRPC. This layer sits before the gRPC-web translation because
//! tonic-web answers `400` to any HTTP/1.1 request that is not gRPC-web, and
//! gRPC and gRPC-web only ever `POST`.
//!
//! Every answer carries a Content-Security-Policy that allows scripts, styles
//! and calls from the gateway's own origin only (no inline script or style,
//! no framing), `X-Content-Type-Options: nosniff` and `Referrer-Policy:
//! no-referrer`. Files whose names carry a content hash (`assets/app-<hash>.js`)
//! are cached for a year as immutable; `index.html`, which names them, is
//! revalidated on every load (`no-cache` with an `ETag`).

use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::{Either, Ready, ready};
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use tonic::body::Body;
use tower::{Layer, Service};

/// One embedded file.
#[derive(Debug)]
pub struct File {
    /// URL path, `/index.html`, `/assets/app-5FJ3K2QX.js`.
    pub path: &'static str,
    pub content_type: &'static str,
    /// A strong validator of the bytes, quoted.
    pub etag: &'static str,
    /// The name carries a content hash: cache it forever.
    pub immutable: bool,
    pub body: &'static [u8],
}

mod embedded {
    use super::File;
    include!(concat!(env!("OUT_DIR"), "/console_files.rs"));
}

/// The policy of every console answer: the gateway's own origin only.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const REVALIDATE: &str = "no-cache";

/// Serves [`File`]s on `GET`/`HEAD`; passes everything else to `S`.
#[derive(Debug, Clone, Copy)]
pub struct ConsoleLayer {
    files: &'static [File],
}

impl ConsoleLayer {
    /// The console built into this binary.
    pub fn embedded() -> Self {
        Self::new(embedded::FILES)
    }

    pub fn new(files: &'static [File]) -> Self {
        Self { files }
    }
}

impl<S> Layer<S> for ConsoleLayer {
    type Service = Console<S>;

    fn layer(&self, inner: S) -> Console<S> {
        Console {
            inner,
            files: self.files,
        }
    }
}

/// See [`ConsoleLayer`].
#[derive(Debug, Clone)]
pub struct Console<S> {
    inner: S,
    files: &'static [File],
}

impl<S, B> Service<Request<B>> for Console<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Either<Ready<Result<Response<Body>, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if req.method() == Method::GET || req.method() == Method::HEAD {
            let answer = answer(self.files, &req);
            return Either::Left(ready(Ok(answer)));
        }
        Either::Right(self.inner.call(req))
    }
}

fn answer<B>(files: &'static [File], req: &Request<B>) -> Response<Body> {
    let path = match req.uri().path() {
        "/" => "/index.html",
        p => p,
    };
    let head = req.method() == Method::HEAD;
    let Some(file) = files.iter().find(|f| f.path == path) else {
        return respond(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            b"not found\n",
            head,
        );
    };
    let fresh = req
        .headers()
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| {
            let tag = tag.trim();
            tag == "*" || tag.trim_start_matches("W/") == file.etag
        });
    let status = if fresh {
        StatusCode::NOT_MODIFIED
    } else {
        StatusCode::OK
    };
    let mut response = respond(status, file.content_type, file.body, head || fresh);
    let headers = response.headers_mut();
    headers.insert(header::ETAG, HeaderValue::from_static(file.etag));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if file.immutable {
            IMMUTABLE
        } else {
            REVALIDATE
        }),
    );
    response
}

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: &'static [u8],
    no_body: bool,
) -> Response<Body> {
    let length = body.len();
    let body = if no_body {
        Body::empty()
    } else {
        Body::new(Full::new(Bytes::from_static(body)))
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if status != StatusCode::NOT_MODIFIED {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    }
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if status == StatusCode::NOT_FOUND {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    use super::*;

    static FILES: &[File] = &[
        File {
            path: "/index.html",
            content_type: "text/html; charset=utf-8",
            etag: "\"0000000000000001\"",
            immutable: false,
            body: b"<!doctype html>",
        },
        File {
            path: "/assets/app-ABCDEFGH.js",
            content_type: "text/javascript; charset=utf-8",
            etag: "\"0000000000000002\"",
            immutable: true,
            body: b"console.log(1)",
        },
    ];

    /// What the console passes on: answers 418 so a test sees it was reached.
    fn inner()
    -> impl Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future = impl Send>
    + Clone {
        tower::service_fn(|_req: Request<Body>| async {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::IM_A_TEAPOT;
            Ok::<_, Infallible>(r)
        })
    }

    async fn get(method: Method, path: &str, etag: Option<&str>) -> (Response<Body>, Bytes) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(tag) = etag {
            req = req.header(header::IF_NONE_MATCH, tag);
        }
        let req = req.body(Body::empty()).unwrap();
        let response = ConsoleLayer::new(FILES)
            .layer(inner())
            .oneshot(req)
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        (Response::from_parts(parts, Body::empty()), bytes)
    }

    fn header(r: &Response<Body>, name: header::HeaderName) -> &str {
        r.headers().get(name).unwrap().to_str().unwrap()
    }

    #[tokio::test]
    async fn the_root_is_the_index_revalidated_with_the_security_headers() {
        let (r, body) = get(Method::GET, "/", None).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(&body[..], b"<!doctype html>");
        assert_eq!(header(&r, header::CONTENT_TYPE), "text/html; charset=utf-8");
        assert_eq!(header(&r, header::CACHE_CONTROL), "no-cache");
        assert_eq!(header(&r, header::ETAG), "\"0000000000000001\"");
        assert_eq!(header(&r, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
        let csp = header(&r, header::CONTENT_SECURITY_POLICY);
        assert!(csp.contains("script-src 'self';"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
    }

    #[tokio::test]
    async fn hashed_assets_are_immutable_and_head_has_no_body() {
        let (r, body) = get(Method::HEAD, "/assets/app-ABCDEFGH.js", None).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(body.is_empty());
        assert_eq!(header(&r, header::CONTENT_LENGTH), "14");
        assert_eq!(
            header(&r, header::CACHE_CONTROL),
            "public, max-age=31536000, immutable"
        );
    }

    /// What every answer carries, whatever its status.
    fn assert_security_headers(r: &Response<Body>) {
        assert_eq!(
            header(r, header::CONTENT_SECURITY_POLICY),
            CONTENT_SECURITY_POLICY
        );
        assert_eq!(header(r, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
        assert_eq!(header(r, header::X_FRAME_OPTIONS), "DENY");
        assert_eq!(header(r, header::REFERRER_POLICY), "no-referrer");
    }

    #[tokio::test]
    async fn a_known_etag_is_answered_not_modified() {
        let (r, body) = get(Method::GET, "/", Some("W/\"0000000000000001\"")).await;
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        assert!(body.is_empty());
        assert!(r.headers().get(header::CONTENT_LENGTH).is_none());
        // A 304 repeats the validator and the caching rule of the 200.
        assert_eq!(header(&r, header::ETAG), "\"0000000000000001\"");
        assert_eq!(header(&r, header::CACHE_CONTROL), "no-cache");
        assert_security_headers(&r);
        let (r, _) = get(
            Method::HEAD,
            "/assets/app-ABCDEFGH.js",
            Some("\"x\", \"0000000000000002\""),
        )
        .await;
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        let (r, _) = get(Method::GET, "/", Some("*")).await;
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        // Another file's tag is not this one's.
        let (r, _) = get(Method::GET, "/", Some("\"0000000000000002\"")).await;
        assert_eq!(r.status(), StatusCode::OK);
        let (r, _) = get(Method::GET, "/", Some("\"other\"")).await;
        assert_eq!(r.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn an_unknown_path_is_not_found_and_not_cached() {
        let (r, _) = get(Method::GET, "/admin", None).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(header(&r, header::CACHE_CONTROL), "no-store");
        assert_security_headers(&r);
        let (r, body) = get(Method::HEAD, "/admin", Some("*")).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert!(body.is_empty());
        assert_security_headers(&r);
    }

    #[tokio::test]
    async fn only_the_embedded_names_are_served_as_they_are_spelled() {
        // Paths are compared with the embedded names, never resolved: no
        // dot segments, encodings, doubled slashes or other spellings.
        for path in [
            "/assets/../index.html",
            "/assets/%2e%2e/index.html",
            "//index.html",
            "/index.html/",
            "/INDEX.HTML",
            "/assets/",
            "/assets",
            "/assets/app-ABCDEFGH.js/",
            "/assets/app-ABCDEFGH.js%00",
            "/../../etc/passwd",
        ] {
            let (r, body) = get(Method::GET, path, None).await;
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
            assert_eq!(&body[..], b"not found\n", "{path}");
        }
        // A query does not change which file is served.
        let (r, body) = get(Method::GET, "/?next=/admin", None).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(&body[..], b"<!doctype html>");
        let (r, _) = get(Method::GET, "/index.html", None).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_security_headers(&r);
    }

    #[tokio::test]
    async fn every_other_method_goes_on_to_grpc() {
        for method in [Method::POST, Method::OPTIONS, Method::PUT, Method::DELETE] {
            let (r, _) = get(method.clone(), "/", None).await;
            assert_eq!(r.status(), StatusCode::IM_A_TEAPOT, "{method}");
        }
    }

    #[test]
    fn the_embedded_console_has_an_index_and_hashed_assets() {
        let files = embedded::FILES;
        assert!(
            files
                .iter()
                .any(|f| f.path == "/index.html" && !f.immutable)
        );
        assert!(
            files
                .iter()
                .any(|f| f.path.starts_with("/assets/") && f.immutable),
            "{:?}",
            files.iter().map(|f| f.path).collect::<Vec<_>>()
        );
    }
}
