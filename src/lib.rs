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
//!
//! # Reading order
//!
//! The lessons in `lessons/` read the code one step at a time, in the
//! order below; each chapter opens these modules (`lessons/README.md` has
//! what each teaches):
//!
//! | chapter | modules it opens |
//! | --- | --- |
//! | `lessons/00-the-journey-of-one-request.md` | the whole path once, one step per module |
//! | `lessons/01-the-listener-and-a-thread-per-connection.md` | [`server`], [`server::doorman`], [`server::waiting`], [`app`] |
//! | `lessons/02-reading-an-http-request.md` | [`http`], [`http::head`], [`server::connection`], [`server::router`], [`app::policy`] |
//! | `lessons/03-serving-files-safely.md` | [`static_files`] |
//! | `lessons/04-the-event-stream-format.md` | [`sse::format`], [`sse::stream`], [`app::events`], [`app::fanout`], [`app::ticker`] |
//! | `lessons/05-the-hub-ids-and-resuming.md` | [`hub`] |
//! | `lessons/06-posting-an-event-json-by-hand.md` | [`json`], [`time`], [`app::trigger`] |
//! | `lessons/07-the-websocket-handshake.md` | [`websocket::handshake`], [`app::upgrade`] |
//! | `lessons/08-frames-and-masking.md` | [`websocket::frame`] |
//! | `lessons/09-fragmentation-and-utf8.md` | [`websocket::message`] |
//! | `lessons/10-control-frames-and-closing.md` | [`websocket::protocol`], [`websocket::session`] |
//! | `lessons/11-one-hub-for-two-protocols.md` | [`app::chat`], [`app::echo`] |
//! | `lessons/12-conformance-with-autobahn.md` | [`websocket`] against the Autobahn suite (`tests/autobahn/`) |
//! | `lessons/13-the-browser-apis.md` | the page, `public/`, against [`app::events`] and [`app::chat`] |
//! | `lessons/14-the-clients.md` | [`client`], [`client::sse`], [`client::ws`], [`random`] |
//! | `lessons/15-the-frame-inspector.md` | [`inspect`], [`tap`], [`app::inspector_feed`] |
//! | `lessons/16-stepping-through-the-server-in-a-debugger.md` | all of them, in a debugger |
//! | `lessons/17-limits-as-decisions.md` | [`budget`], [`server::waiting`], [`config`] |
//! | `lessons/18-sse-vs-websocket-by-the-numbers.md` | [`config`]'s connection cap, and the benchmark in `src/bin/bench/` |
//! | `lessons/19-beyond-one-machine.md` | [`app::broker`], [`redis`], [`hub`]'s `append` and `restart`, and `tests/cluster/` |
//!
//! [`redis`], the cluster's shared event log, has no chapter yet.

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
