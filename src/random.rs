//! Random numbers from `std` alone.
//!
//! `std` has no public random number generator, but it does seed every
//! `HashMap` with random keys from the operating system (so that attackers
//! cannot predict hash collisions). [`RandomState`] exposes those seeded
//! SipHash keys: hashing a counter with them gives numbers an observer
//! cannot predict. That is what the WebSocket client needs for its masking
//! keys (RFC 6455 §10.3: masks must not be predictable) and what reconnect
//! jitter needs. For simulations that must repeat, tests use a seeded
//! generator of their own instead.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// A random 64-bit number.
pub fn random_u64() -> u64 {
    static KEYS: OnceLock<RandomState> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = KEYS.get_or_init(RandomState::new).build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.finish()
}

/// A random number in `[0, 1)`.
pub fn random_f64() -> f64 {
    // The top 53 bits fill an f64's mantissa exactly.
    (random_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// Four random bytes: a WebSocket masking key.
pub fn random_mask() -> [u8; 4] {
    (random_u64() as u32).to_ne_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_differ_and_spread() {
        let values: Vec<u64> = (0..1000).map(|_| random_u64()).collect();
        let mut sorted = values.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 1000, "a repeat in 1000 draws of 64 bits");
        // Each bit should be set about half the time.
        for bit in 0..64 {
            let ones = values.iter().filter(|v| (*v >> bit) & 1 == 1).count();
            assert!(
                (350..650).contains(&ones),
                "bit {bit} set {ones} times of 1000"
            );
        }
        let f = random_f64();
        assert!((0.0..1.0).contains(&f));
    }
}
