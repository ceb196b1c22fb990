//! # Server-Sent Events and WebSocket, by hand
//!
//! An HTTP/1.1 server on `std::net`, one thread per connection, that speaks
//! both real-time protocols of the web without a framework, so that every
//! byte on the wire can be traced to a line of code here.
//!
//! The modules are listed in the order a byte meets them on its way in,
//! from the socket up to the application; every `crate::` import points
//! down this list, never up (`tests/layers.rs` checks it):
//!
//! | layer | modules |
//! | --- | --- |
//! | the server | [`server`]: accept loop, connection cap and doorman, request loop, router |
//! | the application | [`app`]: shared state and one file per endpoint |
//! | broadcast and inspection | [`hub`], [`inspect`] |
//! | the protocols | [`sse`], [`websocket`], [`static_files`], [`redis`] (the broker's, RESP2) |
//! | HTTP | [`http`]: request heads, bodies, responses, deadline-bounded I/O |
//! | leaves | [`config`], [`json`], [`time`], [`random`], [`tap`], [`budget`] |
//!
//! [`client`] is the other side of the wire (the SSE and WebSocket clients
//! the programs in `src/bin/` and the tests use); it shares the protocol
//! modules with the server.

pub mod server;

pub mod app;

pub mod hub;
pub mod inspect;

pub mod redis;
pub mod sse;
pub mod static_files;
pub mod websocket;

pub mod http;

pub mod budget;
pub mod config;
pub mod json;
pub mod random;
pub mod tap;
pub mod time;

pub mod client;
