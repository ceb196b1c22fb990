//! Fair slots at the cap: the connections that are waiting for a request,
//! so that when the server is full, the one that has waited longest can be
//! closed to make room for a newcomer.
//!
//! A connection that has sent nothing (or half a request head) costs a
//! slot as much as one being served. Without this, a client opening idle
//! sockets faster than the head timeout closes them keeps the server full,
//! and every honest newcomer gets 503. With it, idle sockets only push out
//! each other (and keep-alive connections nobody is using), while a
//! connection busy with real work (a request being answered, an SSE
//! stream, a WebSocket) is never closed to make room: when every slot is
//! busy like that, the newcomer still gets its 503 at once.
//!
//! The choice, against the other way of doing it (a first-byte deadline
//! that shrinks as the server fills): evicting costs nothing until the
//! server is full, never cuts off a slow but honest client while there is
//! room, and needs no tuning.

use std::collections::HashMap;
use std::net::{Shutdown, TcpStream};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The connections now waiting for (the rest of) a request head.
#[derive(Default)]
pub struct Waiting {
    entries: Mutex<HashMap<u64, Entry>>,
}

struct Entry {
    /// A second handle on the socket, to close it from the accept loop.
    stream: TcpStream,
    since: Instant,
}

/// A connection that was closed to make room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evicted {
    pub id: u64,
    /// How long it had waited without sending a whole request.
    pub idle: Duration,
}

impl Waiting {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Connection `id` starts waiting for a request; it stops when the
    /// returned guard is dropped. (`None` if the socket cannot be cloned:
    /// the connection is then simply never evicted.)
    pub fn start(&self, id: u64, stream: &TcpStream) -> Option<WaitingGuard<'_>> {
        let stream = stream.try_clone().ok()?;
        let since = Instant::now();
        self.lock().insert(id, Entry { stream, since });
        Some(WaitingGuard { waiting: self, id })
    }

    /// Closes the connection that has waited longest, if any is waiting.
    /// Its thread, blocked reading, sees the end of the stream and ends.
    pub fn evict_longest_idle(&self) -> Option<Evicted> {
        let mut entries = self.lock();
        let (&id, _) = entries.iter().min_by_key(|(_, e)| e.since)?;
        let entry = entries.remove(&id)?;
        drop(entries);
        let _ = entry.stream.shutdown(Shutdown::Both);
        Some(Evicted {
            id,
            idle: entry.since.elapsed(),
        })
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A connection's place among the waiting, until dropped.
pub struct WaitingGuard<'a> {
    waiting: &'a Waiting,
    id: u64,
}

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.waiting.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;

    fn pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (client, server)
    }

    #[test]
    fn the_longest_waiting_is_closed_first_and_a_guard_leaves_when_dropped() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let waiting = Waiting::default();
        let (mut old_client, old) = pair(&listener);
        let _old = waiting.start(1, &old).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let (_new_client, new) = pair(&listener);
        let new_guard = waiting.start(2, &new).unwrap();
        assert_eq!(waiting.len(), 2);

        let evicted = waiting.evict_longest_idle().unwrap();
        assert_eq!(evicted.id, 1);
        assert!(evicted.idle >= Duration::from_millis(20));
        // Its peer sees the connection end.
        assert_eq!(old_client.read(&mut [0; 8]).unwrap(), 0);

        drop(new_guard);
        assert!(waiting.is_empty());
        assert_eq!(waiting.evict_longest_idle(), None);
    }
}
