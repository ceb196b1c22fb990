//! One connection's thread: read a request, answer it, and again while the
//! connection is persistent, until a stream or a WebSocket takes it over.

use std::fmt;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Instant;

use super::router::{inspector_off, respond, route, Plain, Route};
use super::waiting::Waiting;
use crate::app::events::serve_events;
use crate::app::inspector_feed::serve_inspector;
use crate::app::policy::{self, Refused};
use crate::app::trigger::{json_error, trigger_event};
use crate::app::upgrade::upgrade;
use crate::app::App;
use crate::http::{self, Connection, HttpError, ReadError, RequestHead};

/// What a connection turned out to be, for the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    Http,
    Sse,
    WebSocket,
    Inspect,
}

impl fmt::Display for Served {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Served::Http => "http",
            Served::Sse => "sse",
            Served::WebSocket => "websocket",
            Served::Inspect => "inspect",
        })
    }
}

/// Serves one TCP connection from its first request to its close.
pub fn handle_connection(stream: TcpStream, id: u64, app: &Arc<App>, waiting: &Waiting) {
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    let opened = Instant::now();
    app.log(format_args!(
        "client {id} connected from {peer} (open connections: {})",
        app.open_connections.get()
    ));
    // Without a write timeout, a client that stops reading would block this
    // thread forever once the socket's send buffer is full.
    let _ = stream.set_write_timeout(Some(app.config.write_timeout));
    // Small writes (one event, one frame) should leave at once, not wait for
    // more data to fill a packet (Nagle's algorithm).
    let _ = stream.set_nodelay(true);
    let served = serve_requests(Connection::new(stream), id, app, waiting);
    app.log(format_args!(
        "client {id} disconnected ({served}, {:.1} s; open connections: {})",
        opened.elapsed().as_secs_f64(),
        app.open_connections.get() - 1
    ));
}

/// The request loop: read a head, answer, repeat while the connection is
/// persistent. Returns what the connection turned out to be.
fn serve_requests(mut conn: Connection, id: u64, app: &Arc<App>, waiting: &Waiting) -> Served {
    // The first request should follow the connect promptly; later ones may
    // come after a pause (a browser keeps connections open for reuse).
    let mut idle = app.config.head_timeout;
    loop {
        // While it waits for a request, the connection may be closed to
        // make room for a newcomer when the server is full.
        let guard = waiting.start(id, &conn.stream);
        let request = read_request(&mut conn, idle, id, app);
        drop(guard);
        let Some((head, body_length)) = request else {
            return Served::Http;
        };
        // Whom the server answers comes before what it answers: a name it
        // does not answer for (DNS rebinding) is refused on every route.
        if let Err(refused) = policy::check_host(&head, &app.config) {
            refuse_by_policy(&mut conn, &refused, false, id, app);
            return Served::Http;
        }
        idle = app.config.idle_timeout;
        conn = match answer(conn, head, body_length, id, app) {
            Ok(conn) => conn,
            Err(served) => return served,
        };
    }
}

/// Reads the next request head and checks the rules every request must
/// keep, whatever its route: exactly one Host, and a body whose end can be
/// found. `None`: the connection is over (answered, if there was a reason).
fn read_request(
    conn: &mut Connection,
    idle: std::time::Duration,
    id: u64,
    app: &App,
) -> Option<(RequestHead, usize)> {
    let checked = conn
        .read_head(app.head_limits(), idle, app.config.head_timeout)
        .and_then(|head| {
            let length = http::check_head(&head).and_then(|()| http::body_length(&head))?;
            Ok((head, length))
        });
    match checked {
        Ok(request) => Some(request),
        Err(ReadError::Http(error)) => {
            refuse(conn, &error, id, app);
            None
        }
        Err(ReadError::Closed | ReadError::Io(_)) => None,
    }
}

/// Answers one request. `Ok` gives the connection back for the next
/// request; `Err` says what it became (a stream took it over, or it ended).
fn answer(
    mut conn: Connection,
    request: RequestHead,
    body_length: usize,
    id: u64,
    app: &Arc<App>,
) -> Result<Connection, Served> {
    let head = &request;
    let route = route(head);
    if let Err(refused) = check_origin_for(route, head, app) {
        refuse_by_policy(&mut conn, &refused, route == Route::Trigger, id, app);
        return Err(Served::Http);
    }
    // A body sent with a request that takes none must still be read:
    // left on the connection, it would be parsed as the next request.
    if body_length > 0 && route != Route::Trigger {
        match conn.read_body(head, body_length, app.body_limits()) {
            Ok(_) => {}
            Err(ReadError::Http(error)) => {
                refuse(&mut conn, &error, id, app);
                return Err(Served::Http);
            }
            Err(ReadError::Closed | ReadError::Io(_)) => return Err(Served::Http),
        }
    }
    let response = match route {
        Route::Plain(plain) => respond(plain, head, app),
        Route::Events => {
            serve_events(conn.into_stream(), request, app, id);
            return Err(Served::Sse);
        }
        Route::WebSocket(endpoint) => {
            upgrade(conn, head, app, id, endpoint);
            return Err(Served::WebSocket);
        }
        Route::Inspect if !app.inspector.enabled() => inspector_off(),
        Route::Inspect => {
            serve_inspector(conn.into_stream(), app, id);
            return Err(Served::Inspect);
        }
        Route::Trigger => match trigger_event(&mut conn, head, body_length, app) {
            Ok(response) => response,
            Err(ReadError::Http(error)) => {
                // Answered in JSON like the route's other answers; the
                // body may be unread, so the connection ends here.
                let response = error.with_headers(json_error(error.status(), &error.to_string()));
                conn.refuse(&response, app.config.write_timeout);
                return Err(Served::Http);
            }
            Err(ReadError::Closed | ReadError::Io(_)) => return Err(Served::Http),
        },
    };
    let keep_alive = head.keep_alive();
    let bytes = response.to_bytes(head.method == "HEAD", !keep_alive);
    let written = http::write_all_within(&conn.stream, &bytes, app.config.write_timeout);
    match (written, keep_alive) {
        (Ok(()), true) => Ok(conn),
        _ => Err(Served::Http),
    }
}

/// The `Origin` policy, on the routes a page on another site could use to
/// act here: the WebSocket upgrade (cross-site WebSocket hijacking), the
/// trigger, and the preflight a browser sends before that `POST`. It is
/// checked here, before the handshake or the body is read, so the protocol
/// modules stay free of policy (see `app::policy`).
fn check_origin_for(route: Route, head: &RequestHead, app: &App) -> Result<(), Refused> {
    match route {
        Route::WebSocket(_) | Route::Trigger | Route::Plain(Plain::Preflight) => {
            policy::check_origin(head, &app.config)
        }
        _ => Ok(()),
    }
}

/// Answers a request the policy refuses (in JSON on `/trigger-event`, like
/// all its answers) and ends the connection; its body, if any, is unread.
fn refuse_by_policy(conn: &mut Connection, refused: &Refused, json: bool, id: u64, app: &App) {
    app.log(format_args!("client {id}: {refused}"));
    let response = if json {
        json_error(refused.status(), &refused.to_string())
    } else {
        refused.to_response()
    };
    conn.refuse(&response, app.config.write_timeout);
}

/// Logs why a request is refused, answers it, and ends the connection.
fn refuse(conn: &mut Connection, error: &HttpError, id: u64, app: &App) {
    app.log(format_args!("client {id}: {error}"));
    conn.refuse(&error.to_response(), app.config.write_timeout);
}
