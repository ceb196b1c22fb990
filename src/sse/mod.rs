//! Server-Sent Events: the `text/event-stream` format ([`format`](mod@format)), and the
//! one loop that keeps a stream open and fed ([`stream`]).
//!
//! Both know nothing of the application: what goes into a stream (the hub's
//! events, the inspector's records) is handed to the loop by the endpoints
//! in `app/`.

pub mod format;
pub mod stream;
