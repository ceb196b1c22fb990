//! The accept loop, one thread per connection, and routing.
//!
//! Reading order: [`Server::run`] accepts connections and gives each its own
//! named thread; [`handle_connection`] reads requests off that connection one
//! after another and answers them; [`route`] decides what a request is for.
//! Streams (SSE, WebSocket) take the connection over and never return to
//! the request loop.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::http::{self, Connection, HeadLimits, HttpError, ReadError, RequestHead, Response};
use crate::hub::Hub;
use crate::inspect::Inspector;
use crate::json::{self, Json};
use crate::{sse, static_files, time, websocket};

/// Stack size for connection threads. The default (2 MiB) is sized for
/// arbitrary programs; a connection thread needs a small fraction of it, and
/// thousands of idle SSE streams should not reserve gigabytes of address
/// space. The JSON reader's nesting limit keeps recursion bounded.
pub const CONNECTION_STACK: usize = 256 * 1024;

/// State every connection thread shares.
pub struct Shared {
    pub config: Config,
    pub hub: Arc<Hub>,
    /// `config.public_dir`, canonicalized once at start.
    pub public_root: PathBuf,
    pub started: Instant,
    /// TCP connections being served (not counting refused ones).
    pub open_connections: AtomicUsize,
    pub sse_streams: AtomicUsize,
    pub ws_connections: AtomicUsize,
    pub inspector: Inspector,
    next_connection_id: AtomicU64,
}

impl Shared {
    /// Prints a log line, unless `--quiet`.
    pub fn log(&self, line: fmt::Arguments<'_>) {
        if !self.config.quiet {
            println!("{line}");
        }
    }

    pub fn head_limits(&self) -> HeadLimits {
        HeadLimits {
            max_head_bytes: self.config.max_head_bytes,
            max_headers: self.config.max_headers,
            max_uri_bytes: self.config.max_uri_bytes,
        }
    }

    /// The body of `GET /stats`.
    pub fn stats(&self) -> Json {
        json::object([
            (
                "sse_connections",
                (self.sse_streams.load(Ordering::Relaxed) as u64).into(),
            ),
            (
                "ws_connections",
                (self.ws_connections.load(Ordering::Relaxed) as u64).into(),
            ),
            ("events_sent", self.hub.last_id().into()),
            ("uptime_secs", self.started.elapsed().as_secs().into()),
            (
                "open_connections",
                (self.open_connections.load(Ordering::Relaxed) as u64).into(),
            ),
            (
                "max_connections",
                (self.config.max_connections as u64).into(),
            ),
            ("subscribers", (self.hub.subscriber_count() as u64).into()),
            ("dropped_slow_subscribers", self.hub.dropped_count().into()),
            ("history", (self.hub.history_len() as u64).into()),
        ])
    }
}

/// Adds one to a counter now and takes it away when dropped, so a count
/// stays right however the thread that holds it ends.
pub struct Counted<'a>(&'a AtomicUsize);

impl<'a> Counted<'a> {
    pub fn new(counter: &'a AtomicUsize) -> Counted<'a> {
        counter.fetch_add(1, Ordering::Relaxed);
        Counted(counter)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
}

/// A server running on a background thread (see [`Server::spawn`]).
pub struct RunningServer {
    pub addr: SocketAddr,
    pub shared: Arc<Shared>,
}

impl RunningServer {
    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Server {
    /// Opens the listening socket. With port 0 the OS picks a free port;
    /// [`Server::local_addr`] tells which.
    pub fn bind(config: Config) -> io::Result<Server> {
        let public_root = std::fs::canonicalize(&config.public_dir).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("public directory {}: {e}", config.public_dir.display()),
            )
        })?;
        let listener = TcpListener::bind((config.host.as_str(), config.port)).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot listen on {}:{}: {e}", config.host, config.port),
            )
        })?;
        let shared = Arc::new(Shared {
            hub: Hub::new(config.history, config.queue),
            inspector: Inspector::new(config.inspect),
            public_root,
            started: Instant::now(),
            open_connections: AtomicUsize::new(0),
            sse_streams: AtomicUsize::new(0),
            ws_connections: AtomicUsize::new(0),
            next_connection_id: AtomicU64::new(1),
            config,
        });
        Ok(Server { listener, shared })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn shared(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }

    /// Runs the server on a background thread and returns at once: how the
    /// integration tests start one on port 0.
    pub fn spawn(self) -> io::Result<RunningServer> {
        let addr = self.local_addr()?;
        let shared = self.shared();
        thread::Builder::new()
            .name("accept".into())
            .spawn(move || self.run())?;
        Ok(RunningServer { addr, shared })
    }

    /// The accept loop. Runs until the process ends.
    pub fn run(self) {
        let shared = self.shared;
        start_ticker(&shared);
        let doorman = start_doorman(Arc::clone(&shared));
        for incoming in self.listener.incoming() {
            let stream = match incoming {
                Ok(stream) => stream,
                Err(e) => {
                    // Out of file descriptors (EMFILE) or a connection reset
                    // before we got to it: log, pause briefly, keep serving.
                    shared.log(format_args!("accept failed: {e}"));
                    thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            let id = shared.next_connection_id.fetch_add(1, Ordering::Relaxed);
            let open = shared.open_connections.load(Ordering::Relaxed);
            if open >= shared.config.max_connections {
                let _ = doorman.send((stream, Refusal::AtLimit));
                continue;
            }
            // Counted here, before its thread exists: counting inside the
            // thread would let a burst of accepts overshoot the cap.
            let counted = OpenConnection::new(&shared);
            // `spawn` can fail (no memory for a stack, a thread limit). The
            // socket waits in a slot so that, if it does, we still have it
            // and can answer 503 instead of dropping it without a word.
            let slot = Arc::new(Mutex::new(Some(stream)));
            let thread_slot = Arc::clone(&slot);
            let spawned = thread::Builder::new()
                .name(format!("conn-{id}"))
                .stack_size(CONNECTION_STACK)
                .spawn(move || {
                    let stream = thread_slot.lock().ok().and_then(|mut s| s.take());
                    if let Some(stream) = stream {
                        handle_connection(stream, id, &counted.0);
                    }
                    // `counted` is dropped here: the connection is over.
                });
            if let Err(e) = spawned {
                shared.log(format_args!(
                    "client {id}: could not start a thread ({e}): answering 503"
                ));
                if let Some(stream) = slot.lock().ok().and_then(|mut s| s.take()) {
                    let _ = doorman.send((stream, Refusal::NoThread));
                }
            }
        }
    }
}

/// One accepted connection, counted in `open_connections` from its accept
/// until its thread ends, or fails to start (the guard is then dropped with
/// the closure that never ran).
struct OpenConnection(Arc<Shared>);

impl OpenConnection {
    fn new(shared: &Arc<Shared>) -> OpenConnection {
        shared.open_connections.fetch_add(1, Ordering::Relaxed);
        OpenConnection(Arc::clone(shared))
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves one TCP connection from its first request to its close.
pub fn handle_connection(stream: TcpStream, id: u64, shared: &Arc<Shared>) {
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    let opened = Instant::now();
    shared.log(format_args!(
        "client {id} connected from {peer} (open connections: {})",
        shared.open_connections.load(Ordering::Relaxed)
    ));
    // Without a write timeout, a client that stops reading would block this
    // thread forever once the socket's send buffer is full.
    let _ = stream.set_write_timeout(Some(shared.config.write_timeout));
    // Small writes (one event, one frame) should leave at once, not wait for
    // more data to fill a packet (Nagle's algorithm).
    let _ = stream.set_nodelay(true);
    let kind = serve_requests(Connection::new(stream), id, shared);
    shared.log(format_args!(
        "client {id} disconnected ({kind}, {:.1} s; open connections: {})",
        opened.elapsed().as_secs_f64(),
        shared.open_connections.load(Ordering::Relaxed) - 1
    ));
}

/// The request loop of one connection: read a head, answer, repeat while
/// the connection is persistent. Returns what the connection turned out to
/// be, for the log line.
fn serve_requests(mut conn: Connection, id: u64, shared: &Arc<Shared>) -> &'static str {
    let config = &shared.config;
    // The first request should follow the connect promptly; later ones may
    // come after a pause (a browser keeps connections open for reuse).
    let mut idle = config.head_timeout;
    loop {
        let head = match conn.read_head(shared.head_limits(), idle, config.head_timeout) {
            Ok(head) => head,
            Err(ReadError::Http(error)) => {
                shared.log(format_args!("client {id}: {error}"));
                refuse(&mut conn, &error.to_response(), shared);
                return "http";
            }
            Err(ReadError::Closed | ReadError::Io(_)) => return "http",
        };
        idle = config.idle_timeout;
        // Rules for every request, whatever its route: exactly one Host,
        // and a body whose end can be found.
        let body_length = match http::check_head(&head).and_then(|()| http::body_length(&head)) {
            Ok(length) => length,
            Err(error) => {
                shared.log(format_args!("client {id}: {error}"));
                refuse(&mut conn, &error.to_response(), shared);
                return "http";
            }
        };
        let route = route(&head);
        // A body sent with a request that takes none must still be read:
        // left on the connection, it would be parsed as the next request.
        if body_length > 0 && !matches!(route, Route::Trigger) {
            if let Err(error) = skip_body(&mut conn, &head, body_length, shared) {
                if let ReadError::Http(error) = error {
                    shared.log(format_args!("client {id}: {error}"));
                    refuse(&mut conn, &error.to_response(), shared);
                }
                return "http";
            }
        }
        let keep_alive = head.keep_alive();
        let response = match route {
            Route::Events => {
                sse::serve_stream(conn.stream, &head, shared, id);
                return "sse";
            }
            Route::WebSocket(endpoint) => {
                websocket::serve(conn, &head, shared, id, endpoint);
                return "websocket";
            }
            Route::Inspect if !shared.inspector.enabled() => {
                Response::text(404, "The inspector is off (--no-inspect)\n")
            }
            Route::Inspect => {
                crate::inspect::serve_stream(conn.stream, shared, id);
                return "inspect";
            }
            Route::Trigger => match trigger_event(&mut conn, &head, body_length, shared) {
                Ok(response) => response,
                Err(ReadError::Http(error)) => {
                    // Answered in JSON like the route's other answers; the
                    // body may be unread, so the connection ends here.
                    refuse(
                        &mut conn,
                        &json_error(error.status(), &error.to_string()),
                        shared,
                    );
                    return "http";
                }
                Err(_) => return "http",
            },
            Route::Respond(build) => build(&head, shared),
        };
        let bytes = response.to_bytes(head.method == "HEAD", !keep_alive);
        if http::write_all_within(&conn.stream, &bytes, config.write_timeout).is_err()
            || !keep_alive
        {
            return "http";
        }
    }
}

/// Sends a last response and ends the connection without losing it.
///
/// The request may not have been read to its end (a body over the limit, a
/// head that broke a rule). Closing a socket with unread bytes makes the
/// kernel answer with a reset, which can destroy the response before the
/// client reads it. So: write, half-close (the client sees the end of the
/// response), then read and discard for a moment before closing.
pub fn refuse(conn: &mut Connection, response: &Response, shared: &Shared) {
    let bytes = response.to_bytes(false, true);
    if http::write_all_within(&conn.stream, &bytes, shared.config.write_timeout).is_ok() {
        conn.linger(LINGER, LINGER_BYTES);
    }
}

/// How long, and for how many bytes, [`refuse`] waits for a client to stop
/// sending before closing.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 1 << 20;

/// Reads and drops the body of a request that takes none.
fn skip_body(
    conn: &mut Connection,
    head: &RequestHead,
    length: usize,
    shared: &Shared,
) -> Result<(), ReadError> {
    if length > shared.config.max_body {
        return Err(HttpError::BodyTooLarge {
            limit: shared.config.max_body,
        }
        .into());
    }
    if head.has_token("expect", "100-continue") {
        let _ = http::write_all_within(
            &conn.stream,
            b"HTTP/1.1 100 Continue\r\n\r\n",
            shared.config.write_timeout,
        );
    }
    conn.read_body(length, Instant::now() + shared.config.head_timeout)
        .map(drop)
}

/// What a request is for.
pub enum Route {
    /// An ordinary response, built by this function.
    Respond(fn(&RequestHead, &Shared) -> Response),
    Events,
    Trigger,
    Inspect,
    WebSocket(Endpoint),
}

/// The two WebSocket endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Echo,
}

/// Every method this server answers. Others that HTTP defines get `405`
/// where a path exists; methods nobody defined get `501` (RFC 9110 §9.1).
const KNOWN_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// Decides what a request is for, from its method, path and headers alone.
pub fn route(head: &RequestHead) -> Route {
    let method = head.method.as_str();
    if !KNOWN_METHODS.contains(&method) {
        return Route::Respond(|head, _| {
            HttpError::NotImplemented(format!("the method {} is not supported", head.method))
                .to_response()
        });
    }
    if method == "OPTIONS" {
        return Route::Respond(|_, _| cors_preflight());
    }
    let wants_websocket = head.has_token("upgrade", "websocket");
    // On the WebSocket-only paths, anything that looks like a handshake goes
    // to the handshake check, which says what is wrong with it (400); a plain
    // GET is told that this path speaks only WebSocket (426).
    let tries_handshake = wants_websocket
        || head.header("upgrade").is_some()
        || head.header("sec-websocket-key").is_some();
    let path = head.path();
    match (method, path) {
        ("GET", "/") if wants_websocket => Route::WebSocket(Endpoint::Chat),
        ("GET", "/ws") if tries_handshake => Route::WebSocket(Endpoint::Chat),
        ("GET", "/echo") if tries_handshake => Route::WebSocket(Endpoint::Echo),
        ("GET", "/ws" | "/echo") => Route::Respond(|_, _| upgrade_required()),
        ("GET", "/events") => Route::Events,
        ("GET", "/inspect") => Route::Inspect,
        ("POST", "/trigger-event") => Route::Trigger,
        ("GET" | "HEAD", "/stats") => {
            Route::Respond(|_, shared| Response::json(200, &shared.stats()))
        }
        (_, "/events" | "/inspect" | "/ws" | "/echo") => {
            Route::Respond(|_, _| method_not_allowed("GET, OPTIONS"))
        }
        (_, "/trigger-event") => Route::Respond(|_, _| method_not_allowed("POST, OPTIONS")),
        (_, "/stats") => Route::Respond(|_, _| method_not_allowed("GET, HEAD, OPTIONS")),
        ("GET" | "HEAD", _) => {
            Route::Respond(|head, shared| static_files::serve(&shared.public_root, head.path()))
        }
        _ => Route::Respond(|_, _| method_not_allowed("GET, HEAD, OPTIONS")),
    }
}

fn method_not_allowed(allow: &'static str) -> Response {
    Response::text(405, &format!("Method not allowed here; allowed: {allow}\n"))
        .header("Allow", allow)
}

fn upgrade_required() -> Response {
    Response::text(
        426,
        "This endpoint speaks WebSocket: send Upgrade: websocket\n",
    )
    .header("Upgrade", "websocket")
    .header("Sec-WebSocket-Version", "13")
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

/// `POST /trigger-event`: checks, reads the body, broadcasts.
fn trigger_event(
    conn: &mut Connection,
    head: &RequestHead,
    length: usize,
    shared: &Shared,
) -> Result<Response, ReadError> {
    if let Some(content_type) = head.header("content-type") {
        let media_type = content_type.split(';').next().unwrap_or("").trim();
        if !media_type.eq_ignore_ascii_case("application/json") {
            return Err(HttpError::UnsupportedMediaType(format!(
                "send the body as application/json, not {media_type}"
            ))
            .into());
        }
    }
    if length > shared.config.max_body {
        return Err(HttpError::BodyTooLarge {
            limit: shared.config.max_body,
        }
        .into());
    }
    // curl (and others) ask before sending a large body; say yes.
    if head.has_token("expect", "100-continue") {
        let go_on = b"HTTP/1.1 100 Continue\r\n\r\n";
        http::write_all_within(&conn.stream, go_on, shared.config.write_timeout)
            .map_err(ReadError::Io)?;
    }
    let body = conn.read_body(length, Instant::now() + shared.config.head_timeout)?;
    let request = match json::parse(&body) {
        Ok(value) => value,
        Err(e) => return Ok(json_error(400, &format!("Invalid JSON: {e}"))),
    };
    let message = match request.get("message") {
        Some(Json::String(m)) if !m.is_empty() => m.clone(),
        _ => return Ok(json_error(400, "Message is required")),
    };
    let event_type = match request.get("type") {
        None => "notification".to_string(),
        // These types describe one connection; a broadcast must not pose as them.
        Some(Json::String(t)) if RESERVED_TYPES.contains(&t.as_str()) => {
            return Ok(json_error(
                400,
                &format!("type {t:?} is reserved for the server"),
            ));
        }
        Some(Json::String(t)) if !t.is_empty() => t.clone(),
        Some(_) => return Ok(json_error(400, "type must be a non-empty string")),
    };
    let event_name = match request.get("event") {
        None => None,
        Some(Json::String(name)) if !name.is_empty() && sse::check_field(name).is_ok() => {
            Some(name.as_str())
        }
        Some(_) => {
            return Ok(json_error(
                400,
                "event must be a non-empty string without line breaks",
            ));
        }
    };
    let data = json::object([
        ("type", event_type.into()),
        ("message", message.into()),
        ("timestamp", time::now_iso8601().into()),
    ]);
    let published = match shared.hub.publish(event_name, &data.to_string()) {
        Ok(published) => published,
        Err(e) => return Ok(json_error(400, &e.to_string())),
    };
    Ok(Response::json(
        200,
        &json::object([
            ("success", true.into()),
            ("message", "Event sent to all SSE clients".into()),
            ("id", published.id.into()),
            ("delivered", (published.delivered as u64).into()),
        ]),
    ))
}

/// Event types the server sends to one connection only.
const RESERVED_TYPES: [&str; 3] = ["welcome", "initial_data", "reset"];

fn json_error(status: u16, message: &str) -> Response {
    Response::json(status, &json::object([("error", message.into())]))
}

/// The `periodic_update` event, every `--tick-secs`.
fn start_ticker(shared: &Arc<Shared>) {
    let tick = shared.config.tick;
    if tick.is_zero() {
        return;
    }
    let shared = Arc::clone(shared);
    let _ = thread::Builder::new()
        .name("ticker".into())
        .spawn(move || loop {
            thread::sleep(tick);
            let listeners = shared.hub.subscriber_count() as u64;
            let data = json::object([
                ("type", "periodic_update".into()),
                (
                    "message",
                    format!("Periodic update: {listeners} clients connected").into(),
                ),
                ("timestamp", time::now_iso8601().into()),
                ("connections", listeners.into()),
            ]);
            let _ = shared.hub.publish(None, &data.to_string());
        });
}

/// Why the doorman is turning a connection away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// `--max-connections` are open already.
    AtLimit,
    /// The operating system would not start another thread.
    NoThread,
}

/// The doorman answers connections the server cannot take with a polite
/// `503 Service Unavailable` and `Retry-After`, on one thread for all of them.
///
/// Closing a socket while the client's request is still unread makes the
/// kernel send a reset, which can destroy the 503 before the client reads
/// it. So the doorman writes the answer, half-closes its side, and keeps
/// reading (and discarding) until the client closes or two seconds pass.
fn start_doorman(shared: Arc<Shared>) -> Sender<(TcpStream, Refusal)> {
    let (sender, receiver) = channel();
    let _ = thread::Builder::new()
        .name("doorman".into())
        .spawn(move || doorman(receiver, &shared));
    sender
}

fn doorman(receiver: Receiver<(TcpStream, Refusal)>, shared: &Shared) {
    const LINGER: Duration = Duration::from_secs(2);
    const MAX_LINGERING: usize = 1024;
    let limit = shared.config.max_connections;
    let answer = |why: &str| {
        let body = format!("The server cannot take this connection ({why}); retry in a moment\n");
        Response::text(503, &body)
            .header("Retry-After", "1")
            .to_bytes(false, true)
    };
    let at_limit = answer(&format!("it is at its limit of {limit} connections"));
    let no_thread = answer("it could not start a thread for it");
    let mut lingering: Vec<(TcpStream, Instant)> = Vec::new();
    let mut scratch = [0u8; 4096];
    loop {
        let next = if lingering.is_empty() {
            receiver.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            receiver.recv_timeout(Duration::from_millis(20))
        };
        match next {
            Ok((stream, why)) => {
                let answer = match why {
                    Refusal::AtLimit => {
                        shared.log(format_args!(
                            "refused a connection: at the limit of {limit}"
                        ));
                        &at_limit
                    }
                    Refusal::NoThread => &no_thread,
                };
                // Non-blocking: the doorman must never wait on one client.
                // A fresh socket's send buffer always has room for this.
                if stream.set_nonblocking(true).is_ok() && (&stream).write_all(answer).is_ok() {
                    let _ = stream.shutdown(Shutdown::Write);
                    if lingering.len() == MAX_LINGERING {
                        lingering.remove(0);
                    }
                    lingering.push((stream, Instant::now()));
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        lingering.retain(|(stream, since)| {
            if since.elapsed() > LINGER {
                return false;
            }
            loop {
                match (&*stream).read(&mut scratch) {
                    Ok(0) => return false,
                    Ok(_) => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                    Err(_) => return false,
                }
            }
        });
    }
}
