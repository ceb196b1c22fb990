//! The doorman: answers the connections the server cannot take with a
//! polite `503 Service Unavailable` and `Retry-After`, on one thread for
//! all of them, so that a flood of them costs one thread, not one each.
//!
//! It must never wait on one client: its sockets are non-blocking, and it
//! lingers on each (see `http::linger`) one non-blocking step at a time.

use std::net::{Shutdown, TcpStream};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::app::App;
use crate::http::{discard_input, Input, Response};

/// Why the doorman is turning a connection away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `--max-connections` are open already.
    AtLimit,
    /// The operating system would not start another thread.
    NoThread,
}

/// How long the doorman lingers on a refused socket, how many it lingers
/// on at once, and how much it reads from each before giving up on it.
const LINGER: Duration = Duration::from_secs(2);
const MAX_LINGERING: usize = 1024;
const LINGER_BYTES: usize = 1 << 20;

/// Starts the doorman's thread; send it the connections to refuse.
pub fn start_doorman(app: Arc<App>) -> Sender<(TcpStream, Refusal)> {
    let (sender, receiver) = channel();
    let _ = thread::Builder::new()
        .name("doorman".into())
        .spawn(move || doorman(&receiver, &app));
    sender
}

/// A refused socket the doorman still reads from before closing it.
struct Lingering {
    stream: TcpStream,
    since: Instant,
    budget: usize,
}

fn doorman(receiver: &Receiver<(TcpStream, Refusal)>, app: &App) {
    let limit = app.config.max_connections;
    let at_limit = answer(&format!("it is at its limit of {limit} connections"));
    let no_thread = answer("it could not start a thread for it");
    let mut lingering: Vec<Lingering> = Vec::new();
    let mut scratch = [0u8; 4096];
    loop {
        let next = if lingering.is_empty() {
            receiver.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            receiver.recv_timeout(Duration::from_millis(20))
        };
        match next {
            Ok((stream, why)) => {
                let answer = match why {
                    Refusal::AtLimit => {
                        app.log(format_args!(
                            "refused a connection: at the limit of {limit}"
                        ));
                        &at_limit
                    }
                    Refusal::NoThread => &no_thread,
                };
                if let Some(refused) = refuse(stream, answer) {
                    if lingering.len() == MAX_LINGERING {
                        lingering.remove(0);
                    }
                    lingering.push(refused);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        lingering.retain_mut(|l| {
            l.since.elapsed() <= LINGER
                && discard_input(&l.stream, &mut scratch, &mut l.budget) == Input::Pending
        });
    }
}

/// The 503 answer, with the reason.
fn answer(why: &str) -> Vec<u8> {
    let body = format!("The server cannot take this connection ({why}); retry in a moment\n");
    Response::text(503, &body)
        .header("Retry-After", "1")
        .to_bytes(false, true)
}

/// Writes the answer and half-closes; the socket then lingers. A fresh
/// socket's send buffer always has room for this, so the non-blocking
/// write does not come up short.
fn refuse(stream: TcpStream, answer: &[u8]) -> Option<Lingering> {
    use std::io::Write;
    if stream.set_nonblocking(true).is_err() || (&stream).write_all(answer).is_err() {
        return None;
    }
    let _ = stream.shutdown(Shutdown::Write);
    Some(Lingering {
        stream,
        since: Instant::now(),
        budget: LINGER_BYTES,
    })
}
