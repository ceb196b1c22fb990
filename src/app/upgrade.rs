//! The WebSocket handshake on the two WebSocket endpoints, then the
//! endpoint itself: from here on the connection speaks frames, not HTTP.

use std::net::TcpStream;
use std::sync::Arc;

use super::{chat, echo, App};
use crate::http::{write_all_within, Connection, RequestHead};
use crate::inspect::Kind;
use crate::tap::Tap;
use crate::websocket::handshake;
use crate::websocket::message::Role;
use crate::websocket::protocol::Protocol;
use crate::websocket::session::{Ended, Link, Session, Timeouts};

/// The two WebSocket endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/` and `/ws`: the chat, on the hub.
    Chat,
    /// `/echo`: every message comes back.
    Echo,
}

/// Answers an upgrade request and, if it is valid, runs the endpoint on
/// the connection until it closes. The request loop has already applied
/// the `Host` and `Origin` policy (`policy`) by the time it calls this.
pub fn upgrade(
    mut conn: Connection,
    head: &RequestHead,
    app: &Arc<App>,
    id: u64,
    endpoint: Endpoint,
) {
    let key = match handshake::check_request(head) {
        Ok(key) => key,
        Err(error) => {
            app.log(format_args!("client {id}: {error}"));
            conn.refuse(&error.to_response(), app.config.write_timeout);
            return;
        }
    };
    let answer = handshake::response(key);
    if write_all_within(&conn.stream, &answer, app.config.write_timeout).is_err() {
        return;
    }
    let (stream, leftover) = conn.into_parts();
    let _counted = app.ws_connections.enter();
    app.log(format_args!(
        "client {id} opened a WebSocket on {} (WebSocket clients: {})",
        head.path(),
        app.ws_connections.get()
    ));
    let ended = match open_session(stream, &leftover, app, id, endpoint) {
        Ok(session) => match endpoint {
            Endpoint::Chat => chat::serve_chat(session, app, id),
            Endpoint::Echo => echo::serve_echo(session),
        },
        Err(e) => Ended::WriteFailed(format!("could not clone the socket: {e}")),
    };
    app.log(format_args!("client {id}: WebSocket ended: {ended}"));
}

/// The protocol core, the link that writes its frames, and the reading
/// loop, for one connection. The chat's frames are shown in the inspector;
/// the echo's are not (benchmarks and conformance runs use it).
fn open_session(
    stream: TcpStream,
    leftover: &[u8],
    app: &App,
    id: u64,
    endpoint: Endpoint,
) -> std::io::Result<Session> {
    let stream = Arc::new(stream);
    // A chat message is small JSON, broadcast to everyone: its limit is far
    // below the echo's, and it is checked from the frame headers, before
    // the message is buffered, let alone parsed.
    let (limit, flag) = match endpoint {
        Endpoint::Chat => (app.config.max_chat_bytes, "--max-chat-bytes"),
        Endpoint::Echo => (app.config.max_message, "--max-message"),
    };
    let protocol = Protocol::new(Role::Server, limit)
        .with_limit_flag(flag)
        .with_budget(app.budget.clone());
    let tap = match endpoint {
        Endpoint::Chat => app.inspector.tap(id, Kind::WebSocket),
        Endpoint::Echo => None,
    };
    let tap = tap.map(|t| Box::new(t) as Box<dyn Tap>);
    let link = Link::new(protocol, Arc::clone(&stream), app.config.write_timeout, tap);
    let timeouts = Timeouts {
        ping_interval: app.config.ping_interval,
        pong_timeout: app.config.pong_timeout,
        close_timeout: app.config.close_timeout,
        message_timeout: app.config.message_timeout,
    };
    Ok(Session::new(stream, leftover, link, timeouts))
}
