//! WebSocket (RFC 6455), by hand, in the order a connection meets it: the
//! opening handshake ([`handshake`]), the frame format ([`frame`]),
//! messages from frames ([`message`]), the protocol's rules as a state
//! machine with no socket in it ([`protocol`]), and the socket loop that
//! drives it ([`session`]).
//!
//! None of it knows the application: the endpoints built on it (chat,
//! echo) are in `app/`.

pub mod frame;
pub mod handshake;
pub mod message;
pub mod protocol;
pub mod session;
