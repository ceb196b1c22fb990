//! One budget for the bytes the server is still receiving: partly received
//! WebSocket messages and request bodies, across every connection.
//!
//! Each connection has its own limits (`--max-message`, `--max-body`), but
//! a limit per connection times thousands of connections is more memory
//! than the machine has. The budget bounds the sum: a connection that
//! wants more than is left is refused at once (a WebSocket message closes
//! with 1013, try again later; a body gets 503), and nobody waits, so a
//! refusal can never hold up another connection.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A shared count of bytes in flight and its limit. Cloning it shares it.
#[derive(Debug, Clone)]
pub struct Budget {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    limit: usize,
    used: AtomicUsize,
}

impl Budget {
    pub fn new(limit: usize) -> Budget {
        Budget {
            shared: Arc::new(Shared {
                limit,
                used: AtomicUsize::new(0),
            }),
        }
    }

    /// A budget nothing can spend (for a client, or a test).
    pub fn unlimited() -> Budget {
        Budget::new(usize::MAX)
    }

    pub fn limit(&self) -> usize {
        self.shared.limit
    }

    /// Bytes reserved right now, by all connections together.
    pub fn used(&self) -> usize {
        self.shared.used.load(Ordering::Relaxed)
    }

    /// Takes `bytes` out of the budget until the returned reservation is
    /// dropped, or `None` if that would take it over its limit.
    pub fn reserve(&self, bytes: usize) -> Option<Reservation> {
        let mut reservation = Reservation {
            budget: self.clone(),
            bytes: 0,
        };
        reservation.grow(bytes).then_some(reservation)
    }

    fn take(&self, bytes: usize) -> bool {
        // Compare and swap, so two connections can never both take the
        // last bytes: one of them sees the other's update and tries again.
        let used = &self.shared.used;
        let mut now = used.load(Ordering::Relaxed);
        loop {
            let Some(after) = now.checked_add(bytes).filter(|&a| a <= self.shared.limit) else {
                return false;
            };
            match used.compare_exchange_weak(now, after, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(actual) => now = actual,
            }
        }
    }
}

/// Bytes held out of a [`Budget`]; given back when dropped, however the
/// connection that holds them ends.
#[derive(Debug)]
pub struct Reservation {
    budget: Budget,
    bytes: usize,
}

impl Reservation {
    /// Takes `more` bytes too; `false` (and nothing taken) if the budget
    /// cannot spare them.
    pub fn grow(&mut self, more: usize) -> bool {
        let taken = self.budget.take(more);
        if taken {
            self.bytes += more;
        }
        taken
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget
            .shared
            .used
            .fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_add_up_to_the_limit_and_come_back_when_dropped() {
        let budget = Budget::new(100);
        let a = budget.reserve(60).unwrap();
        assert!(budget.reserve(41).is_none(), "60 + 41 is over 100");
        let mut b = budget.reserve(40).unwrap();
        assert_eq!(budget.used(), 100);
        assert!(!b.grow(1));
        drop(a);
        assert!(b.grow(60));
        assert_eq!((b.bytes(), budget.used()), (100, 100));
        drop(b);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn threads_racing_for_the_last_bytes_never_overspend() {
        let budget = Budget::new(1000);
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let budget = budget.clone();
                std::thread::spawn(move || {
                    let mut kept = Vec::new();
                    for _ in 0..1000 {
                        if let Some(r) = budget.reserve(7) {
                            kept.push(r);
                        }
                        assert!(budget.used() <= 1000);
                    }
                    kept // held until every thread is done
                })
            })
            .collect();
        let kept: Vec<Vec<Reservation>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let granted: usize = kept.iter().map(Vec::len).sum();
        assert_eq!(granted, 1000 / 7, "every byte that fits was granted once");
        drop(kept);
        assert_eq!(budget.used(), 0);
    }
}
