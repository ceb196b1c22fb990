//! The write loop of one event stream, shared by `GET /events` and
//! `GET /inspect`: wait for what the queue brings, write it in batches,
//! send a keep-alive comment when the stream has been quiet, notice a client
//! that has gone, and end the stream when it reaches its maximum age.
//!
//! What an item looks like on the wire is the caller's business: it hands
//! in a [`Feed`]. This module only knows sockets, time and the format.

use std::io::{self, Read};
use std::net::TcpStream;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::format::format_comment;
use crate::http::write_all_within;
use crate::random;

/// Where a stream's items come from: a queue of its own (the inspector's
/// records), or the hub's history read by id (a stream that fell behind).
pub trait Source {
    type Item;

    /// The items that are ready, waiting at most `wait` for the first.
    fn next(&mut self, wait: Duration) -> Next<Self::Item>;
}

/// What a [`Source`] had.
pub enum Next<T> {
    /// Items, in order.
    Items(Vec<T>),
    /// Nothing within the wait.
    Idle,
    /// Nothing more will come: the source let go of this stream.
    Closed,
}

/// A queue of its own: what is in it is taken all at once.
impl<T> Source for Receiver<T> {
    type Item = T;

    fn next(&mut self, wait: Duration) -> Next<T> {
        match self.recv_timeout(wait) {
            Ok(first) => Next::Items(std::iter::once(first).chain(self.try_iter()).collect()),
            Err(RecvTimeoutError::Timeout) => Next::Idle,
            Err(RecvTimeoutError::Disconnected) => Next::Closed,
        }
    }
}

/// What a stream carries: how one item from its queue goes on the wire.
pub trait Feed {
    type Item;

    /// Appends the bytes of `item` to `out` (and tells a tap, if the feed
    /// has one).
    fn append(&mut self, item: &Self::Item, out: &mut Vec<u8>);

    /// Bytes the loop writes by itself (a keep-alive comment), for a feed
    /// that reports what goes on the wire.
    fn wrote(&mut self, _bytes: &[u8]) {}
}

/// The times a stream keeps.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Quiet time after which a `: keep-alive` comment goes out.
    pub keepalive: Duration,
    /// The most one write may take (`--write-timeout-secs`).
    pub write_timeout: Duration,
    /// When the stream ends by itself (`--max-stream-secs`), if ever.
    pub ends_at: Option<Instant>,
    /// Whether to read the socket now and then to notice a client that has
    /// gone (not when its reading side is shut down already).
    pub check_client: bool,
}

/// Why a stream ended.
#[derive(Debug)]
pub enum End {
    /// The client hung up.
    ClientGone,
    /// A write failed or timed out: the client stopped reading.
    WriteFailed(io::Error),
    /// The source let go (a stream that fell too far behind the hub).
    QueueClosed,
    /// The stream reached its maximum age.
    MaxAge,
}

/// How often an idle stream checks whether its client has hung up.
const CLIENT_CHECK: Duration = Duration::from_secs(1);

/// Writes are gathered up to this size before going to the socket, so a
/// burst of events costs one system call instead of one per event.
const BATCH_BYTES: usize = 64 * 1024;

/// Runs the stream until it ends, and says why. The response head and the
/// opening events have been written already.
pub fn run<S: Source, F: Feed<Item = S::Item>>(
    stream: &TcpStream,
    source: &mut S,
    feed: &mut F,
    timing: &Timing,
) -> End {
    let mut last_write = Instant::now();
    // A short read timeout makes the client check cost a millisecond.
    if timing.check_client {
        let _ = stream.set_read_timeout(Some(Duration::from_millis(1)));
    }
    loop {
        let now = Instant::now();
        let mut wait = (last_write + timing.keepalive).saturating_duration_since(now);
        if timing.check_client {
            wait = wait.min(CLIENT_CHECK);
        }
        if let Some(ends_at) = timing.ends_at {
            let left = ends_at.saturating_duration_since(now);
            if left.is_zero() {
                return End::MaxAge;
            }
            wait = wait.min(left);
        }
        match source.next(wait) {
            Next::Items(items) => {
                // Whatever else was queued goes too, all at once.
                let items = items.into_iter();
                if let Err(e) = write_batched(stream, feed, items, timing.write_timeout) {
                    return End::WriteFailed(e);
                }
                last_write = Instant::now();
            }
            Next::Idle => {
                if timing.check_client && client_gone(stream) {
                    return End::ClientGone;
                }
                if last_write.elapsed() >= timing.keepalive {
                    if let Err(e) = keep_alive(stream, feed, timing.write_timeout) {
                        return End::WriteFailed(e);
                    }
                    last_write = Instant::now();
                }
            }
            Next::Closed => return End::QueueClosed,
        }
    }
}

/// Writes items through `feed`, gathered into batches of about
/// `BATCH_BYTES` (64 KiB). Also used for the replay that opens a resumed stream.
pub fn write_batched<F: Feed>(
    stream: &TcpStream,
    feed: &mut F,
    items: impl Iterator<Item = F::Item>,
    timeout: Duration,
) -> io::Result<()> {
    let mut batch: Vec<u8> = Vec::new();
    for item in items {
        feed.append(&item, &mut batch);
        if batch.len() >= BATCH_BYTES {
            write_all_within(stream, &batch, timeout)?;
            batch.clear();
        }
    }
    if !batch.is_empty() {
        write_all_within(stream, &batch, timeout)?;
    }
    Ok(())
}

/// A comment line keeps proxies from closing a quiet stream, and its
/// write is how a server learns that a client has gone without a word.
fn keep_alive<F: Feed>(stream: &TcpStream, feed: &mut F, timeout: Duration) -> io::Result<()> {
    let comment = format_comment("keep-alive");
    feed.wrote(&comment);
    write_all_within(stream, &comment, timeout)
}

/// A stream's client never sends anything after its request, so a read that
/// returns end-of-file means it has hung up. The read timeout is a
/// millisecond: if nothing is there, the client is simply still listening.
fn client_gone(stream: &TcpStream) -> bool {
    let mut scratch = [0u8; 512];
    match (&*stream).read(&mut scratch) {
        Ok(0) => true,
        Ok(_) => false, // unexpected bytes: ignore them
        Err(e) => !matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
        ),
    }
}

/// `--max-stream-secs`, jittered to 80–100 %: if a thousand streams opened
/// together they do not all end, and reconnect, in the same instant.
pub fn jittered(max: Duration) -> Option<Duration> {
    if max.is_zero() {
        None
    } else {
        Some(max.mul_f64(0.8 + 0.2 * random::random_f64()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_80_to_100_percent() {
        assert_eq!(jittered(Duration::ZERO), None);
        for _ in 0..1000 {
            let d = jittered(Duration::from_secs(10)).unwrap();
            assert!(
                d >= Duration::from_secs(8) && d <= Duration::from_secs(10),
                "{d:?}"
            );
        }
    }
}
