//! `overhead`: bytes on the wire per message, counted, not computed.
//!
//! Every client here talks to the server through a relay of its own: a
//! socket pair in this process that copies bytes both ways and counts them
//! as it reads them off the sockets. So each figure is what actually
//! crossed a TCP connection for one message:
//!
//! - client to server, SSE: the whole `POST /trigger-event` request (head
//!   and JSON body `{"message": …}`), as a minimal client such as curl
//!   sends it (a browser's `fetch` adds a few hundred bytes of headers);
//! - client to server, WebSocket: the project's `WsClient` sending the same
//!   JSON text as a chat message on `/ws` (one masked frame);
//! - server to client: the same broadcast event as an SSE subscriber
//!   (`SseConnection`) receives it (`id: N\ndata: …\n\n`) and as a chat
//!   WebSocket (`WsClient`) does (one unmasked text frame).
//!
//! The ratio column is bytes on the wire per byte of message text: raw TCP
//! would be 1.00. The server's limits on bodies and chat messages are
//! raised to 1 MiB, so that a 64 KiB message (in its JSON) fits.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use realtime_by_hand::client::sse::SseConnection;
use realtime_by_hand::client::ws::{Received, WsClient};
use realtime_by_hand::client::Url;

use crate::report::{Results, Spec};
use crate::target::{self, find_marker, marker, trigger_body, Http, Setup};
use crate::tcp::size_label;
use crate::Ctx;

const GROUP: &str = "overhead: bytes on the wire per message (ratio: per byte of message)";

/// The server's body and chat-message limit for this scenario.
pub const MAX_BODY: usize = 1 << 20;

/// A one-connection relay that counts what it copies.
struct Relay {
    addr: SocketAddr,
    /// Bytes from the client to the server.
    up: Arc<AtomicU64>,
    /// Bytes from the server to the client.
    down: Arc<AtomicU64>,
}

impl Relay {
    /// Listens; the first client that connects is joined to `server`.
    fn start(server: SocketAddr) -> Result<Relay, String> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let (up, down) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (up2, down2) = (Arc::clone(&up), Arc::clone(&down));
        thread::spawn(move || {
            let Some(client) = accept_one(&listener) else {
                return;
            };
            let Ok(upstream) = TcpStream::connect(server) else {
                return;
            };
            let _ = (client.set_nodelay(true), upstream.set_nodelay(true));
            let (Ok(client2), Ok(upstream2)) = (client.try_clone(), upstream.try_clone()) else {
                return;
            };
            thread::spawn(move || copy(client2, upstream2, &up2));
            copy(upstream, client, &down2);
        });
        Ok(Relay { addr, up, down })
    }

    fn counts(&self) -> (u64, u64) {
        (
            self.up.load(Ordering::SeqCst),
            self.down.load(Ordering::SeqCst),
        )
    }
}

/// The relay's one client, if it comes within ten seconds.
fn accept_one(listener: &TcpListener) -> Option<TcpStream> {
    listener.set_nonblocking(true).ok()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match listener.accept() {
            Ok((client, _)) => return client.set_nonblocking(false).ok().map(|()| client),
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(2)),
            Err(_) => return None,
        }
    }
    None
}

/// Copies until either side closes; counts each read before writing it on.
fn copy(mut from: TcpStream, mut to: TcpStream, count: &AtomicU64) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                count.fetch_add(n as u64, Ordering::SeqCst);
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// The four clients, each behind its relay.
struct Clients {
    sse: (SseConnection, Relay),
    ws: (WsClient, Relay),
    chat: (WsClient, Relay),
    poster: (Http, Relay),
}

fn ws_client(server: SocketAddr) -> Result<(WsClient, Relay), String> {
    let relay = Relay::start(server)?;
    let mut client =
        WsClient::connect(&format!("ws://{}/ws", relay.addr)).map_err(|e| e.to_string())?;
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    client.receive().map_err(|e| format!("welcome: {e}"))?;
    Ok((client, relay))
}

fn connect(server: SocketAddr) -> Result<Clients, String> {
    let relay = Relay::start(server)?;
    let url = Url::parse(&format!("http://{}/events", relay.addr), &["http"])
        .map_err(|e| e.to_string())?;
    let mut sse = SseConnection::connect(&url, None).map_err(|e| format!("SSE: {e}"))?;
    sse.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    for _ in 0..2 {
        sse.next_event().map_err(|e| format!("SSE opening: {e}"))?; // welcome, initial data
    }
    let sse = (sse, relay);
    let relay = Relay::start(server)?;
    let poster = (Http::connect(relay.addr)?, relay);
    Ok(Clients {
        sse,
        ws: ws_client(server)?,
        chat: ws_client(server)?,
        poster,
    })
}

/// Reads SSE events until the one with this marker; comments are skipped.
fn sse_until(sse: &mut SseConnection, seq: usize) -> Result<(), String> {
    for _ in 0..16 {
        let event = sse.next_event().map_err(|e| format!("SSE: {e}"))?;
        if find_marker(&event.data) == Some(seq) {
            return Ok(());
        }
    }
    Err("the SSE subscriber never got the event".into())
}

fn ws_until(ws: &mut WsClient, seq: usize) -> Result<(), String> {
    for _ in 0..16 {
        if let Received::Text(text) = ws.receive().map_err(|e| format!("WebSocket: {e}"))? {
            if find_marker(&text) == Some(seq) {
                return Ok(());
            }
        }
    }
    Err("the WebSocket subscriber never got the event".into())
}

/// A message of exactly `size` bytes of text that carries the marker.
fn message(seq: usize, size: usize) -> String {
    let mut text = marker(seq);
    text.push_str(&"x".repeat(size.saturating_sub(text.len())));
    text
}

/// Measures one payload size: a POST to both subscribers, then a chat
/// message from the chat client. Returns (name, bytes) pairs.
fn measure(c: &mut Clients, seq: usize, size: usize) -> Result<Vec<(&'static str, u64)>, String> {
    let before = (c.sse.1.counts(), c.ws.1.counts(), c.poster.1.counts());
    c.poster.0.trigger(&message(seq, size))?;
    sse_until(&mut c.sse.0, seq)?;
    ws_until(&mut c.ws.0, seq)?;
    ws_until(&mut c.chat.0, seq)?;
    let after = (c.sse.1.counts(), c.ws.1.counts(), c.poster.1.counts());
    let chat_before = c.chat.1.counts();
    let body = trigger_body(&message(seq + 1, size));
    c.chat
        .0
        .send_text(&body)
        .map_err(|e| format!("chat: {e}"))?;
    // Its own broadcast coming back means the server has read the frame.
    ws_until(&mut c.chat.0, seq + 1)?;
    sse_until(&mut c.sse.0, seq + 1)?;
    ws_until(&mut c.ws.0, seq + 1)?;
    let chat_after = c.chat.1.counts();
    Ok(vec![
        ("sse-up", after.2 .0 - before.2 .0),
        ("sse-up-answer", after.2 .1 - before.2 .1),
        ("ws-up", chat_after.0 - chat_before.0),
        ("sse-down", after.0 .1 - before.0 .1),
        ("ws-down", after.1 .1 - before.1 .1),
    ])
}

fn label(name: &str) -> &'static str {
    match name {
        "sse-up" => "client->server, SSE: the POST request",
        "sse-up-answer" => "  and the POST's answer back",
        "ws-up" => "client->server, WebSocket: masked frame",
        "sse-down" => "server->client, SSE: the event block",
        _ => "server->client, WebSocket: the frame",
    }
}

pub fn run(server: SocketAddr, sizes: &[usize], results: &mut Results) -> Result<(), String> {
    let mut clients = connect(server)?;
    for (i, &size) in sizes.iter().enumerate() {
        for (name, bytes) in measure(&mut clients, 2 * i, size)? {
            let spec = Spec::new(
                GROUP,
                format!("overhead/{size}/{name}"),
                format!("{}: {}", size_label(size), label(name)),
                "B",
            );
            // The POST's answer carries no message: no ratio for it.
            let spec = if name == "sse-up-answer" {
                spec
            } else {
                spec.versus_constant(size as f64)
            };
            results.add(spec, bytes as f64);
        }
    }
    Ok(())
}

/// Where the server ran, and the limits raised for it.
pub fn notes(ctx: &Ctx, results: &mut Results) {
    let placement = target::placement(ctx, &Setup::default());
    results.note(format!("overhead: the server ran {placement}"));
    if ctx.opts.url.is_none() {
        results.note(format!(
            "overhead: max_body and max_chat_bytes raised to {} so that a 64 KiB message fits",
            size_label(MAX_BODY)
        ));
    }
}
