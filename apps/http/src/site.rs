//! The site: which response a request gets.
//!
//! | path                      | response                                                  |
//! |---------------------------|-----------------------------------------------------------|
//! | `/`, `/index.html`        | nginx's default welcome page (612 bytes), `text/html`     |
//! | `/hello.txt`              | a greeting, `text/plain`                                  |
//! | `/status`                 | app name, uptime, requests served, open connections       |
//! | `/bytes/N`                | N bytes of the pattern `(i % 251) as u8`, N ≤ 64 MiB      |
//! | anything else             | 404                                                       |
//!
//! Only GET and HEAD are served (405 with `Allow: GET, HEAD` otherwise); HEAD gets GET's
//! headers, and the connection leaves out the body. `/bytes/N` with N not a decimal number is
//! 400, with N over [`MAX_PATTERN_BYTES`] 413. The query string is ignored.

use crate::request::{Method, Request};
use crate::response::{Body, ByteWriter, Response, Status};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write as _;
use core::time::Duration;

/// nginx's default welcome page, byte for byte (the benchmark compares against nginx serving it).
pub const INDEX_HTML: &[u8] = include_bytes!("../static/index.html");
pub const HELLO_TXT: &[u8] = include_bytes!("../static/hello.txt");
/// The largest `/bytes/N`.
pub const MAX_PATTERN_BYTES: u64 = 64 * 1024 * 1024;

/// What `/status` shows, filled in by the server (or a test).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerStatus {
    pub app_name: String,
    pub uptime: Duration,
    pub requests_served: u64,
    pub open_connections: u64,
}

/// What the site needs from the server around it. The server shares one among its
/// connections; host tests pass a fake.
pub trait ServerContext {
    /// A snapshot for `/status`; asked for only when that page is requested.
    fn status(&self) -> ServerStatus;
    /// Called once for every response the connection starts, errors included.
    fn request_served(&self);
}

/// The response to a parsed request.
pub fn respond(request: &Request, context: &dyn ServerContext) -> Response {
    if !matches!(request.method, Method::Get | Method::Head) {
        let mut response = Response::error(Status::MethodNotAllowed);
        response.allow = Some("GET, HEAD");
        return response;
    }
    match path_of(&request.target) {
        "/" | "/index.html" => Response::new(Status::Ok, "text/html", Body::Static(INDEX_HTML)),
        "/hello.txt" => Response::new(Status::Ok, "text/plain", Body::Static(HELLO_TXT)),
        "/status" => Response::new(
            Status::Ok,
            "text/plain",
            Body::Generated(status_page(&context.status())),
        ),
        path => match path.strip_prefix("/bytes/") {
            Some(count) => pattern_response(count),
            None => Response::error(Status::NotFound),
        },
    }
}

/// The path of a request target: without query or fragment, and without the scheme and
/// authority of an absolute-form target (RFC 9112 §3.2.2).
pub fn path_of(target: &str) -> &str {
    let mut path = target;
    for scheme in ["http://", "https://"] {
        let has_scheme = path
            .get(..scheme.len())
            .is_some_and(|prefix| prefix.eq_ignore_ascii_case(scheme));
        if has_scheme {
            let authority_and_path = &path[scheme.len()..];
            path = authority_and_path
                .find('/')
                .map_or("/", |slash| &authority_and_path[slash..]);
        }
    }
    let end = path.find(['?', '#']).unwrap_or(path.len());
    &path[..end]
}

fn pattern_response(count: &str) -> Response {
    if count.is_empty() || !count.bytes().all(|byte| byte.is_ascii_digit()) {
        return Response::error(Status::BadRequest);
    }
    match count.parse::<u64>() {
        Ok(length) if length <= MAX_PATTERN_BYTES => Response::new(
            Status::Ok,
            "application/octet-stream",
            Body::Pattern { length },
        ),
        // All digits but too large (for u64, or for the limit).
        _ => Response::error(Status::ContentTooLarge),
    }
}

/// The text of `/status`.
pub fn status_page(status: &ServerStatus) -> Vec<u8> {
    let mut text = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = write!(
        ByteWriter(&mut text),
        "app: {}\nuptime: {}.{:03} s\nrequests served: {}\nopen connections: {}\n",
        status.app_name,
        status.uptime.as_secs(),
        status.uptime.subsec_millis(),
        status.requests_served,
        status.open_connections,
    );
    text
}
