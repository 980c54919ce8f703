//! Maps keyed by a label set's identity ([`strata_types::Labels::identity`]), an address:
//! hashed with one multiplication instead of SipHash, for the lookups done per series and
//! step.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Hashes the integers written to it (addresses, flags) with a multiply-and-fold; other
/// bytes go through the same mix one at a time.
#[derive(Default, Clone, Copy)]
pub(crate) struct IdentityHasher(u64);

const K: u64 = 0x9E37_79B9_7F4A_7C15;

impl Hasher for IdentityHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.0 = (self.0.rotate_left(5) ^ u64::from(n)).wrapping_mul(K);
    }

    fn write_usize(&mut self, n: usize) {
        self.0 = (self.0.rotate_left(5) ^ n as u64).wrapping_mul(K);
    }

    fn finish(&self) -> u64 {
        // The multiplication leaves the low bits (which pick the bucket) poor for aligned
        // addresses: MurmurHash3's finaliser mixes the high bits in.
        let mut x = self.0 ^ (self.0 >> 33);
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^ (x >> 33)
    }
}

/// A map keyed by label-set identities.
pub(crate) type IdentityMap<K, V> = HashMap<K, V, BuildHasherDefault<IdentityHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_addresses_spread_over_buckets() {
        let mut low_bits = std::collections::HashSet::new();
        for i in 0..1024usize {
            let mut h = IdentityHasher::default();
            h.write_usize(0x7f00_0000_0000 + i * 64);
            low_bits.insert(h.finish() & 1023);
        }
        // 1,024 addresses 64 bytes apart land in as many of 1,024 buckets as random
        // keys would (1,024 × (1 - 1/e) ≈ 647).
        assert!(low_bits.len() > 600, "{}", low_bits.len());
    }
}
