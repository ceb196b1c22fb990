//! # Server-Sent Events and WebSocket, by hand
//!
//! An HTTP/1.1 server on `std::net`, one thread per connection, that speaks
//! both real-time protocols of the web without a framework, so that every
//! byte on the wire can be traced to a line of code here.
//!
//! Reading order (the lessons in `lessons/` follow it):
//!
//! 1. [`server`]: the listener, one thread per connection, routing.
//! 2. [`http`]: reading a request head with limits, writing responses.
//! 3. [`static_files`]: serving `public/` without leaving it.
//! 4. [`sse`]: the `text/event-stream` format and one stream's loop.
//! 5. [`hub`]: the broadcast hub, event ids, and resuming.
//! 6. [`json`] and [`time`]: the small formats the events are made of.
//! 7. [`websocket`]: the handshake, frames, messages, the close handshake.
//! 8. [`chat`]: the chat and echo endpoints, one hub for two protocols.
//! 9. [`inspect`]: the frame inspector behind the demo page.
//! 10. [`client`]: the SSE and WebSocket clients, the other side of the wire.
//!
//! [`config`] holds every flag and limit; [`random`] makes random numbers
//! from `std` alone.

pub mod chat;
pub mod client;
pub mod config;
pub mod http;
pub mod hub;
pub mod inspect;
pub mod json;
pub mod random;
pub mod server;
pub mod sse;
pub mod static_files;
pub mod time;
pub mod websocket;
