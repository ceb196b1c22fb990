//! Routing: what a request is for, from its method, path and headers
//! alone, and the plain answers that need nothing but the request.
//!
//! Every route is a variant of [`Route`] and every plain answer a named
//! function, so a debugger steps into `method_not_allowed`, not into a
//! closure.

use crate::app::upgrade::Endpoint;
use crate::app::App;
use crate::http::{HttpError, RequestHead, Response};
use crate::static_files;

/// What a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET /events`: an SSE stream (takes the connection over).
    Events,
    /// `POST /trigger-event`: reads a body and broadcasts it.
    Trigger,
    /// `GET /inspect`: the frame inspector's stream.
    Inspect,
    /// A WebSocket handshake on `/`, `/ws` or `/echo`.
    WebSocket(Endpoint),
    /// An answer made from the request alone.
    Plain(Plain),
}

/// The routes whose answer is one ordinary response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plain {
    /// `GET` or `HEAD /stats`.
    Stats,
    /// `GET` or `HEAD` of anything else: a file from `public/`.
    File,
    /// `OPTIONS` on any path: a CORS preflight.
    Preflight,
    /// A plain `GET` on a WebSocket-only path: `426`.
    UpgradeRequired,
    /// A path that exists, with a method it does not take: `405` with the
    /// methods it does take.
    MethodNotAllowed(&'static str),
    /// A method nobody defined: `501`.
    NotImplemented,
}

/// Every method this server answers. Others that HTTP defines get `405`
/// where a path exists; methods nobody defined get `501` (RFC 9110 §9.1).
const KNOWN_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// Decides what a request is for.
pub fn route(head: &RequestHead) -> Route {
    let method = head.method.as_str();
    if !KNOWN_METHODS.contains(&method) {
        return Route::Plain(Plain::NotImplemented);
    }
    if method == "OPTIONS" {
        return Route::Plain(Plain::Preflight);
    }
    let wants_websocket = head.has_token("upgrade", "websocket");
    // On the WebSocket-only paths, anything that looks like a handshake goes
    // to the handshake check, which says what is wrong with it (400); a plain
    // GET is told that this path speaks only WebSocket (426).
    let tries_handshake = wants_websocket
        || head.header("upgrade").is_some()
        || head.header("sec-websocket-key").is_some();
    let not_allowed = |allow| Route::Plain(Plain::MethodNotAllowed(allow));
    match (method, head.path()) {
        ("GET", "/") if wants_websocket => Route::WebSocket(Endpoint::Chat),
        ("GET", "/ws") if tries_handshake => Route::WebSocket(Endpoint::Chat),
        ("GET", "/echo") if tries_handshake => Route::WebSocket(Endpoint::Echo),
        ("GET", "/ws" | "/echo") => Route::Plain(Plain::UpgradeRequired),
        ("GET", "/events") => Route::Events,
        ("GET", "/inspect") => Route::Inspect,
        ("POST", "/trigger-event") => Route::Trigger,
        ("GET" | "HEAD", "/stats") => Route::Plain(Plain::Stats),
        (_, "/events" | "/inspect" | "/ws" | "/echo") => not_allowed("GET, OPTIONS"),
        (_, "/trigger-event") => not_allowed("POST, OPTIONS"),
        (_, "/stats") => not_allowed("GET, HEAD, OPTIONS"),
        ("GET" | "HEAD", _) => Route::Plain(Plain::File),
        _ => not_allowed("GET, HEAD, OPTIONS"),
    }
}

/// The answer to a plain route.
pub fn respond(plain: Plain, head: &RequestHead, app: &App) -> Response {
    match plain {
        Plain::Stats => Response::json(200, &app.stats()),
        Plain::File => static_files::serve(&app.public_root, head.path()),
        Plain::Preflight => cors_preflight(),
        Plain::UpgradeRequired => upgrade_required(),
        Plain::MethodNotAllowed(allow) => method_not_allowed(allow),
        Plain::NotImplemented => not_implemented(head),
    }
}

fn method_not_allowed(allow: &'static str) -> Response {
    Response::text(405, &format!("Method not allowed here; allowed: {allow}\n"))
        .header("Allow", allow)
}

fn not_implemented(head: &RequestHead) -> Response {
    HttpError::NotImplemented(format!("the method {} is not supported", head.method)).to_response()
}

fn upgrade_required() -> Response {
    Response::text(
        426,
        "This endpoint speaks WebSocket: send Upgrade: websocket\n",
    )
    .header("Upgrade", "websocket")
    .header("Sec-WebSocket-Version", "13")
}

/// `GET /inspect` with `--no-inspect`.
pub fn inspector_off() -> Response {
    Response::text(404, "The inspector is off (--no-inspect)\n")
}

/// The answer to a CORS preflight: a page on another origin may `POST` JSON
/// here and send the headers an `EventSource` polyfill would.
fn cors_preflight() -> Response {
    Response::new(204)
        .header("Access-Control-Allow-Origin", "*")
        .header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
        .header(
            "Access-Control-Allow-Headers",
            "Content-Type, Cache-Control, Last-Event-ID",
        )
        .header("Access-Control-Max-Age", "86400")
}
