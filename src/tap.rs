//! A tap on a connection: where a protocol reports the bytes it reads and
//! writes, for whoever wants to watch them (the frame inspector behind the
//! demo page).
//!
//! The protocols (`sse/`, `websocket/`) must not know who watches: they sit
//! below the application, and the inspector is part of it. So they are
//! handed a `&dyn Tap` and call it; `inspect.rs` implements it.

/// Which way bytes went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the client to the server.
    In,
    /// From the server to the client.
    Out,
}

/// Something that wants to see a connection's frames or events.
pub trait Tap: Send + Sync {
    /// True while someone is watching. A caller that would do extra work
    /// only to report bytes (re-masking a frame, say) asks first.
    fn watching(&self) -> bool;

    /// Reports one frame or event of `total` bytes, of which `prefix` are
    /// the first ones (a tap keeps only a preview).
    fn record(&self, direction: Direction, prefix: &[u8], total: usize);
}

/// How many bytes of each frame or event a tap is shown: enough for the
/// header and the start of the payload.
pub const PREVIEW: usize = 256;
