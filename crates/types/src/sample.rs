/// One float sample: a millisecond Unix timestamp and a value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Milliseconds since the Unix epoch.
    pub t: i64,
    /// The sample value. Stale markers are a special NaN, see [`is_stale_nan`].
    pub v: f64,
}

impl Sample {
    /// A sample at `t` milliseconds with value `v`.
    pub fn new(t: i64, v: f64) -> Self {
        Sample { t, v }
    }

    /// Bitwise equality: NaN equals NaN of the same bit pattern, stale markers stay distinct.
    pub fn bit_eq(&self, other: &Sample) -> bool {
        self.t == other.t && self.v.to_bits() == other.v.to_bits()
    }
}

/// The bit pattern Prometheus writes as a staleness marker (a signalling NaN).
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// The staleness marker value.
pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// Whether `v` is the staleness marker. Compares bits: an ordinary NaN is not a marker.
pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_nan_is_not_ordinary_nan() {
        assert!(is_stale_nan(stale_nan()));
        assert!(!is_stale_nan(f64::NAN));
        assert!(stale_nan().is_nan());
    }
}
