//! The two WebSocket endpoints: the chat (`/` and `/ws`) and the echo
//! (`/echo`), built on `websocket::session`.
//!
//! The chat is the article's "hybrid": a WebSocket client's message is
//! published on the same hub the SSE streams read from, so every SSE client
//! sees the chat too, and every broadcast (a triggered event, the periodic
//! update) reaches the WebSocket clients.
//!
//! A chat connection has two threads. This one reads frames and answers
//! them; a second one, the writer, waits on the hub and writes broadcasts.
//! Reading and waiting for broadcasts cannot happen on one thread with
//! blocking I/O (a thread blocked in `read` cannot also wait on a queue),
//! and both threads write through one `FrameWriter`, whose lock keeps every
//! frame whole.

use std::net::TcpStream;
use std::sync::Arc;
use std::thread;

use crate::json::{self, Json};
use crate::server::Shared;
use crate::time;
use crate::websocket::connection::CLOSE_POLICY;
use crate::websocket::frame::{OP_BINARY, OP_TEXT};
use crate::websocket::session::{Ended, FrameWriter, Message, Session, Timeouts};

/// Usernames longer than this are refused (they travel with every message).
pub const MAX_USERNAME: usize = 64;

fn timeouts(shared: &Shared) -> Timeouts {
    Timeouts {
        ping_interval: shared.config.ping_interval,
        pong_timeout: shared.config.pong_timeout,
        close_timeout: shared.config.close_timeout,
    }
}

/// `/echo`: every message comes back unchanged. One thread, no hub.
pub fn serve_echo(stream: TcpStream, leftover: &[u8], shared: &Shared, _id: u64) -> Ended {
    let Ok(write_half) = stream.try_clone() else {
        return Ended::Dropped("could not clone the socket".into());
    };
    let writer = FrameWriter::new(write_half, shared.config.write_timeout, None);
    let mut session = Session::new(
        stream,
        leftover,
        Arc::clone(&writer),
        shared.config.max_message,
        timeouts(shared),
        None,
    );
    loop {
        let sent = match session.next_message() {
            Ok(Message::Text(text)) => writer.send_message(OP_TEXT, text.as_bytes()),
            Ok(Message::Binary(data)) => writer.send_message(OP_BINARY, &data),
            Err(ended) => return ended,
        };
        if let Err(e) = sent {
            writer.shutdown();
            return Ended::Dropped(format!("a write failed: {e}"));
        }
    }
}

/// The chat endpoint.
pub fn serve_chat(stream: TcpStream, leftover: &[u8], shared: &Arc<Shared>, id: u64) -> Ended {
    let Ok(write_half) = stream.try_clone() else {
        return Ended::Dropped("could not clone the socket".into());
    };
    let inspect = shared.inspector.enabled().then(|| (Arc::clone(shared), id));
    let writer = FrameWriter::new(write_half, shared.config.write_timeout, inspect.clone());
    let mut session = Session::new(
        stream,
        leftover,
        Arc::clone(&writer),
        shared.config.max_message,
        timeouts(shared),
        inspect,
    );

    // Subscribe before the welcome, so nothing broadcast after the welcome
    // can be missed; the writer thread starts sending after it.
    let subscription = shared.hub.subscribe(None);
    let welcome = json::object([
        ("type", "welcome".into()),
        (
            "message",
            format!("Welcome to the WebSocket chat! ID: {id}").into(),
        ),
        ("clientId", id.into()),
    ]);
    if let Err(e) = writer.send_message(OP_TEXT, welcome.to_string().as_bytes()) {
        return Ended::Dropped(format!("could not send the welcome: {e}"));
    }
    let events = subscription.events;
    let thread_writer = Arc::clone(&writer);
    let writer_thread = thread::Builder::new()
        .name(format!("conn-{id}-out"))
        .stack_size(crate::server::CONNECTION_STACK / 2)
        .spawn(move || {
            for event in events.iter() {
                if thread_writer.send(&event.ws_frame).is_err() {
                    break;
                }
            }
            // The queue ended. Either the reader is done (and has closed),
            // or the hub dropped us because we fell behind: then say so,
            // and end the connection so the reading thread wakes up too.
            if !thread_writer.is_closed() {
                let _ = thread_writer
                    .send_close(Some(CLOSE_POLICY), "too slow: fell behind the broadcast");
            }
            thread_writer.shutdown();
        });
    if writer_thread.is_err() {
        let _ = writer.send_close(
            Some(crate::websocket::connection::CLOSE_GOING_AWAY),
            "server busy",
        );
        return Ended::Dropped("could not start the writer thread".into());
    }

    let ended = loop {
        let reply = match session.next_message() {
            Ok(Message::Text(text)) => chat_message(&text, id, shared).err(),
            Ok(Message::Binary(_)) => {
                Some("binary messages are not part of the chat; send JSON text".to_string())
            }
            Err(ended) => break ended,
        };
        if let Some(problem) = reply {
            let error = json::object([("type", "error".into()), ("message", problem.into())]);
            if let Err(e) = writer.send_message(OP_TEXT, error.to_string().as_bytes()) {
                writer.shutdown();
                break Ended::Dropped(format!("could not send an error reply: {e}"));
            }
        }
    };
    // Leaving the hub ends the writer's queue, and with it the writer.
    drop(subscription.membership);
    if let Ok(handle) = writer_thread {
        let _ = handle.join();
    }
    ended
}

/// Checks a chat message and broadcasts it. The error is sent back to the
/// client as `{"type": "error", "message": …}`.
pub fn chat_message(text: &str, id: u64, shared: &Shared) -> Result<(), String> {
    let request = json::parse(text.as_bytes()).map_err(|e| format!("Invalid JSON: {e}"))?;
    if !matches!(request, Json::Object(_)) {
        return Err(format!(
            "a chat message is a JSON object such as {{\"type\":\"chat\",\"message\":\"hi\",\"username\":\"ann\"}}, not {}",
            request.kind()
        ));
    }
    match request.get("type") {
        None => {}
        Some(Json::String(t)) if t == "chat" => {}
        Some(other) => return Err(format!("unknown message type {other}; send \"chat\"")),
    }
    let message = match request.get("message") {
        Some(Json::String(m)) if !m.is_empty() => m.clone(),
        Some(Json::String(_)) | None => return Err("message is required".into()),
        Some(other) => return Err(format!("message must be a string, not {}", other.kind())),
    };
    // A chat message becomes a broadcast event, like a posted one, so the
    // same limit (--max-body) bounds what one client can make everyone
    // receive, and what the history may hold.
    if message.len() > shared.config.max_body {
        return Err(format!(
            "message is longer than {} bytes",
            shared.config.max_body
        ));
    }
    let username = match request.get("username") {
        None | Some(Json::Null) => "Anonymous",
        Some(Json::String(name)) if name.trim().is_empty() => "Anonymous",
        Some(Json::String(name)) if name.trim().len() <= MAX_USERNAME => name.trim(),
        Some(Json::String(_)) => {
            return Err(format!("username is longer than {MAX_USERNAME} bytes"));
        }
        Some(other) => return Err(format!("username must be a string, not {}", other.kind())),
    }
    .to_string();
    let data = json::object([
        ("type", "chat".into()),
        ("message", message.into()),
        ("username", username.into()),
        ("timestamp", time::now_iso8601().into()),
        ("clientId", id.into()),
    ]);
    shared
        .hub
        .publish(None, &data.to_string())
        .map(|_| ())
        .map_err(|e| e.to_string())
}
