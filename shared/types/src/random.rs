//! Randomness, injected. Library code draws its random numbers (WAL commit ids, segment
//! and collection nonces) from the [`Random`] it was given (`Deps::rng`), never from a
//! global generator, so a test can fix the seed and get the same ids on every run.
//!
//! The generator is SplitMix64 over an atomic counter: lock-free, a bijection of the
//! counter (no value repeats within 2^64 draws of one generator), and statistically good
//! enough for nonces. It is not for cryptography. Production seeds it from the operating
//! system ([`Random::from_entropy`]), so two processes draw independent sequences.

use std::sync::atomic::{AtomicU64, Ordering};

/// The SplitMix64 increment (2^64 / golden ratio, odd).
const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// A seeded, thread-safe source of random numbers.
#[derive(Debug)]
pub struct Random {
    state: AtomicU64,
}

impl Random {
    /// A generator whose sequence is a function of `seed` alone.
    pub fn seeded(seed: u64) -> Random {
        Random { state: AtomicU64::new(seed) }
    }

    /// A generator seeded from the operating system's entropy.
    #[allow(clippy::disallowed_methods)] // the one place the OS entropy is read
    pub fn from_entropy() -> Random {
        Random::seeded(rand::random())
    }

    /// The next 64 random bits.
    pub fn next_u64(&self) -> u64 {
        let mut z = self.state.fetch_add(GAMMA, Ordering::Relaxed).wrapping_add(GAMMA);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// The next 32 random bits.
    pub fn next_u32(&self) -> u32 {
        (self.next_u64() >> 32) as u32
    }
}

impl Default for Random {
    fn default() -> Random {
        Random::from_entropy()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn a_seed_fixes_the_sequence_and_values_do_not_repeat() {
        let (a, b) = (Random::seeded(7), Random::seeded(7));
        let first: Vec<u64> = (0..1000).map(|_| a.next_u64()).collect();
        let second: Vec<u64> = (0..1000).map(|_| b.next_u64()).collect();
        assert_eq!(first, second);
        assert_eq!(first.iter().collect::<HashSet<_>>().len(), 1000);
        assert_ne!(Random::seeded(8).next_u64(), first[0]);
        // SplitMix64's published first output for seed 0.
        assert_eq!(Random::seeded(0).next_u64(), 0xe220_a839_7b1d_cdaf);
    }

    #[test]
    fn bits_are_balanced() {
        let rng = Random::seeded(42);
        let ones: u32 = (0..4096).map(|_| rng.next_u64().count_ones()).sum();
        let mean = f64::from(ones) / 4096.0;
        assert!((31.0..33.0).contains(&mean), "mean set bits per draw {mean}");
    }
}
