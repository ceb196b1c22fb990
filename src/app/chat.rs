//! The chat endpoint (`/` and `/ws`), the article's "hybrid": a WebSocket
//! client's message is published on the same hub the SSE streams read
//! from, so every SSE client sees the chat too, and every broadcast (a
//! triggered event, the periodic update) reaches the WebSocket clients.
//!
//! A chat connection has two threads. This one reads messages and answers
//! them; a second one, the writer, waits on the hub and writes broadcasts.
//! Reading and waiting for broadcasts cannot happen on one thread with
//! blocking I/O (a thread blocked in `read` cannot also wait on a queue),
//! and both threads write through one `Link`, whose lock keeps every frame
//! whole.

use std::fmt;
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use super::broker::PublishError;
use super::{App, Counted};
use crate::config::CONNECTION_STACK;
use crate::hub::Queue;
use crate::json::{self, Json, JsonError};
use crate::time;
use crate::websocket::message::CloseCode;
use crate::websocket::protocol::Message;
use crate::websocket::session::{Ended, Link, Session};

/// Usernames longer than this are refused (they travel with every message).
pub const MAX_USERNAME: usize = 64;

/// Runs the chat on this connection until it ends.
pub fn serve_chat(mut session: Session, app: &Arc<App>, id: u64) -> Ended {
    let link = Arc::clone(session.link());
    // The writer is a second thread, so it takes a second slot of the cap:
    // taken first, then checked, so that two chats arriving together can
    // both be refused but never both squeeze into the last slot.
    let slot = app.writer_threads.enter();
    if app.slots_in_use() > app.config.max_connections {
        session.close(
            CloseCode::TryAgainLater,
            "the server is full; try again later",
        );
        return Ended::ServerClosed;
    }
    // Subscribe before the welcome, so nothing broadcast after the welcome
    // can be missed; the writer thread starts sending after it.
    let subscription = app.hub.subscribe(None);
    let welcome = json::object([
        ("type", "welcome".into()),
        (
            "message",
            format!("Welcome to the WebSocket chat! ID: {id}").into(),
        ),
        ("clientId", id.into()),
    ]);
    if let Err(e) = link.send(Message::Text(welcome.to_string())) {
        return Ended::WriteFailed(format!("could not send the welcome: {e}"));
    }
    let writer = match start_writer(id, subscription.events, &link, slot) {
        Ok(writer) => writer,
        Err(e) => {
            session.close(CloseCode::GoingAway, "server busy");
            return Ended::WriteFailed(format!("could not start the writer thread: {e}"));
        }
    };
    let ended = read_messages(&mut session, app, id);
    // Leaving the hub ends the writer's queue, and with it the writer.
    drop(subscription.membership);
    let _ = writer.join();
    ended
}

/// The writer thread: every broadcast, as the frame header the hub made
/// once and the data every subscriber shares.
fn start_writer(
    id: u64,
    events: Queue,
    link: &Arc<Link>,
    slot: Counted,
) -> std::io::Result<JoinHandle<()>> {
    let link = Arc::clone(link);
    thread::Builder::new()
        .name(format!("conn-{id}-out"))
        .stack_size(CONNECTION_STACK / 2)
        .spawn(move || {
            write_broadcasts(&events, &link);
            drop(slot); // the thread is over: its slot is free
        })
}

fn write_broadcasts(events: &Queue, link: &Link) {
    for event in events.iter() {
        if link
            .send_shared(event.ws_head(), event.ws_payload())
            .is_err()
        {
            break;
        }
    }
    // The queue ended. Either the reader is done (and has closed), or the
    // hub dropped us because we fell behind: then say so, and end the
    // connection so the reading thread wakes up too.
    if link.is_open() {
        let _ = link.close(
            Some(CloseCode::Policy),
            "too slow: fell behind the broadcast",
        );
    }
    link.shutdown();
}

/// The reading loop: each message is a chat message or gets an error reply.
fn read_messages(session: &mut Session, app: &App, id: u64) -> Ended {
    loop {
        let problem = match session.next_message() {
            Ok(Message::Text(text)) => chat_message(&text, id, app).err(),
            Ok(Message::Binary(_)) => Some(ChatError::Binary),
            Err(ended) => return ended,
        };
        if let Some(problem) = problem {
            let error = json::object([
                ("type", "error".into()),
                ("message", problem.to_string().into()),
            ]);
            if let Err(e) = session.link().send(Message::Text(error.to_string())) {
                session.link().shutdown();
                return Ended::WriteFailed(format!("could not send an error reply: {e}"));
            }
        }
    }
}

/// Why a chat message was not broadcast; sent back to its client as
/// `{"type": "error", "message": …}`.
#[derive(Debug)]
pub enum ChatError {
    Binary,
    InvalidJson(JsonError),
    /// Valid JSON, but not an object (the JSON kind it is).
    NotAnObject(&'static str),
    /// A `type` other than `"chat"` (the JSON text of it).
    UnknownType(String),
    MissingMessage,
    /// `message` is not a string (the JSON kind it is).
    MessageNotText(&'static str),
    MessageTooLong {
        limit: usize,
    },
    UsernameTooLong,
    /// `username` is not a string (the JSON kind it is).
    UsernameNotText(&'static str),
    /// The event was not published: the hub refused it, or the broker
    /// could not take it.
    Publish(PublishError),
}

impl fmt::Display for ChatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChatError::Binary => {
                write!(f, "binary messages are not part of the chat; send JSON text")
            }
            ChatError::InvalidJson(e) => write!(f, "Invalid JSON: {e}"),
            ChatError::NotAnObject(kind) => write!(
                f,
                "a chat message is a JSON object such as {{\"type\":\"chat\",\"message\":\"hi\",\"username\":\"ann\"}}, not {kind}"
            ),
            ChatError::UnknownType(other) => write!(f, "unknown message type {other}; send \"chat\""),
            ChatError::MissingMessage => write!(f, "message is required"),
            ChatError::MessageNotText(kind) => write!(f, "message must be a string, not {kind}"),
            ChatError::MessageTooLong { limit } => {
                write!(f, "message is longer than {limit} bytes")
            }
            ChatError::UsernameTooLong => {
                write!(f, "username is longer than {MAX_USERNAME} bytes")
            }
            ChatError::UsernameNotText(kind) => write!(f, "username must be a string, not {kind}"),
            ChatError::Publish(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ChatError {}

/// Checks a chat message and broadcasts it.
pub fn chat_message(text: &str, id: u64, app: &App) -> Result<(), ChatError> {
    let request = json::parse(text.as_bytes()).map_err(ChatError::InvalidJson)?;
    if !matches!(request, Json::Object(_)) {
        return Err(ChatError::NotAnObject(request.kind()));
    }
    match request.get("type") {
        None => {}
        Some(Json::String(t)) if t == "chat" => {}
        Some(other) => return Err(ChatError::UnknownType(other.to_string())),
    }
    let message = match request.get("message") {
        Some(Json::String(m)) if !m.is_empty() => m.clone(),
        Some(Json::String(_)) | None => return Err(ChatError::MissingMessage),
        Some(other) => return Err(ChatError::MessageNotText(other.kind())),
    };
    // A chat message becomes a broadcast event, like a posted one, so the
    // same limit (--max-body) bounds what one client can make everyone
    // receive, and what the history may hold.
    let limit = app.config.max_body;
    if message.len() > limit {
        return Err(ChatError::MessageTooLong { limit });
    }
    let username = username(request.get("username"))?;
    let data = json::object([
        ("type", "chat".into()),
        ("message", message.into()),
        ("username", username.into()),
        ("timestamp", time::now_iso8601().into()),
        ("clientId", id.into()),
    ]);
    app.publish(None, &data.to_string())
        .map(drop)
        .map_err(ChatError::Publish)
}

/// The name a message is shown with: trimmed, `Anonymous` when absent.
fn username(value: Option<&Json>) -> Result<String, ChatError> {
    let name = match value {
        None | Some(Json::Null) => "Anonymous",
        Some(Json::String(name)) if name.trim().is_empty() => "Anonymous",
        Some(Json::String(name)) if name.trim().len() <= MAX_USERNAME => name.trim(),
        Some(Json::String(_)) => return Err(ChatError::UsernameTooLong),
        Some(other) => return Err(ChatError::UsernameNotText(other.kind())),
    };
    Ok(name.to_string())
}
