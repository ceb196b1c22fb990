//! WebSocket (RFC 6455), by hand: the opening handshake ([`handshake`]),
//! the frame format ([`frame`]), messages from frames ([`connection`]), and
//! the socket loop ([`session`]). The endpoints built on them are in
//! `chat.rs`.

pub mod connection;
pub mod frame;
pub mod handshake;
pub mod session;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::chat;
use crate::http::{write_all_within, Connection, RequestHead};
use crate::server::{Counted, Endpoint, Shared};

/// Answers an upgrade request and, if it is valid, runs the endpoint on
/// the connection until it closes.
pub fn serve(
    mut conn: Connection,
    head: &RequestHead,
    shared: &Arc<Shared>,
    id: u64,
    endpoint: Endpoint,
) {
    let key = match handshake::check_request(head, &shared.config.allowed_origins) {
        Ok(key) => key,
        Err(error) => {
            shared.log(format_args!("client {id}: {error}"));
            crate::server::refuse(&mut conn, &error.to_response(), shared);
            return;
        }
    };
    let answer = handshake::response(key);
    if write_all_within(&conn.stream, &answer, shared.config.write_timeout).is_err() {
        return;
    }
    // From here on the connection speaks WebSocket frames, not HTTP.
    let (stream, leftover) = conn.into_parts();
    let _counted = Counted::new(&shared.ws_connections);
    shared.log(format_args!(
        "client {id} opened a WebSocket on {} (WebSocket clients: {})",
        head.path(),
        shared.ws_connections.load(Ordering::Relaxed)
    ));
    let ended = match endpoint {
        Endpoint::Chat => chat::serve_chat(stream, &leftover, shared, id),
        Endpoint::Echo => chat::serve_echo(stream, &leftover, shared, id),
    };
    shared.log(format_args!("client {id}: WebSocket ended: {ended}"));
}
