//! Go's `math.Log`, `math.Log2`, `math.Log10` and `math.Exp2`, operation for operation (Go
//! 1.2x `src/math/log.go`, `log10.go`, `exp.go`; on amd64 `Log` is assembly computing the
//! same expression in the same order, `Exp2` is the Go code). The C library's functions
//! round differently in the last bit now and then, and Prometheus' answers are Go's.
//!
//! The constants are Go's decimal literals as written there (both languages round a decimal
//! literal to the nearest double).
#![allow(clippy::excessive_precision)]

/// `math.Frexp` for finite non-zero `x`: `frac` in `[0.5, 1)` and `exp` with
/// `x = frac × 2^exp`.
fn frexp(x: f64) -> (f64, i32) {
    if x == 0.0 || !x.is_finite() {
        return (x, 0);
    }
    let (mut x, mut exp) = (x, 0i32);
    if x.abs() < f64::MIN_POSITIVE {
        // Subnormal: normalise first.
        x *= (1u64 << 52) as f64;
        exp = -52;
    }
    let bits = x.to_bits();
    exp += ((bits >> 52) & 0x7ff) as i32 - 1022;
    let frac = f64::from_bits((bits & !(0x7ff << 52)) | (1022 << 52));
    (frac, exp)
}

/// `math.Log`.
pub(crate) fn log(x: f64) -> f64 {
    const LN2_HI: f64 = 6.931_471_803_691_238_164_90e-01;
    const LN2_LO: f64 = 1.908_214_929_270_587_700_02e-10;
    const L1: f64 = 6.666_666_666_666_735_130e-01;
    const L2: f64 = 3.999_999_999_940_941_908e-01;
    const L3: f64 = 2.857_142_874_366_239_149e-01;
    const L4: f64 = 2.222_219_843_214_978_396e-01;
    const L5: f64 = 1.818_357_216_161_805_012e-01;
    const L6: f64 = 1.531_383_769_920_937_332e-01;
    const L7: f64 = 1.479_819_860_511_658_591e-01;
    if x.is_nan() || x == f64::INFINITY {
        return x;
    }
    if x < 0.0 {
        return f64::NAN;
    }
    if x == 0.0 {
        return f64::NEG_INFINITY;
    }
    let (mut f1, mut ki) = frexp(x);
    if f1 < std::f64::consts::SQRT_2 / 2.0 {
        f1 *= 2.0;
        ki -= 1;
    }
    let f = f1 - 1.0;
    let k = f64::from(ki);
    let s = f / (2.0 + f);
    let s2 = s * s;
    let s4 = s2 * s2;
    let t1 = s2 * (L1 + s4 * (L3 + s4 * (L5 + s4 * L7)));
    let t2 = s4 * (L2 + s4 * (L4 + s4 * L6));
    let r = t1 + t2;
    let hfsq = 0.5 * f * f;
    k * LN2_HI - ((hfsq - (s * (hfsq + r) + k * LN2_LO)) - f)
}

/// `math.Log2`: exact for powers of two.
pub(crate) fn log2(x: f64) -> f64 {
    let (frac, exp) = frexp(x);
    if frac == 0.5 {
        return f64::from(exp - 1);
    }
    // Go's `1 / Ln2` is folded exactly, then rounded: log2(e).
    log(frac) * std::f64::consts::LOG2_E + f64::from(exp)
}

/// `math.Log10`.
pub(crate) fn log10(x: f64) -> f64 {
    log(x) * std::f64::consts::LOG10_E
}

/// `math.Exp2`.
pub(crate) fn exp2(x: f64) -> f64 {
    const LN2_HI: f64 = 6.931_471_803_691_238_164_90e-01;
    const LN2_LO: f64 = 1.908_214_929_270_587_700_02e-10;
    const OVERFLOW: f64 = 1.023_999_999_999_999_9e+03;
    const UNDERFLOW: f64 = -1.0740e+03;
    if x.is_nan() || x == f64::INFINITY {
        return x;
    }
    if x == f64::NEG_INFINITY {
        return 0.0;
    }
    if x > OVERFLOW {
        return f64::INFINITY;
    }
    if x < UNDERFLOW {
        return 0.0;
    }
    let k: i64 = if x > 0.0 {
        (x + 0.5) as i64
    } else if x < 0.0 {
        (x - 0.5) as i64
    } else {
        0
    };
    let t = x - k as f64;
    let hi = t * LN2_HI;
    let lo = -t * LN2_LO;
    expmulti(hi, lo, k)
}

/// `e^r × 2^k` where `r = hi - lo`.
fn expmulti(hi: f64, lo: f64, k: i64) -> f64 {
    const P1: f64 = 1.666_666_666_666_666_574_15e-01;
    const P2: f64 = -2.777_777_777_701_559_338_42e-03;
    const P3: f64 = 6.613_756_321_437_934_361_17e-05;
    const P4: f64 = -1.653_390_220_546_525_153_90e-06;
    const P5: f64 = 4.138_136_797_057_238_460_39e-08;
    let r = hi - lo;
    let t = r * r;
    let c = r - t * (P1 + t * (P2 + t * (P3 + t * (P4 + t * P5))));
    let y = 1.0 - ((lo - (r * c) / (2.0 - c)) - hi);
    ldexp(y, k)
}

/// `math.Ldexp`: `frac × 2^exp`, one rounding (only for a subnormal result).
fn ldexp(frac: f64, exp: i64) -> f64 {
    if frac == 0.0 || !frac.is_finite() {
        return frac;
    }
    let (f, e) = frexp(frac);
    let exp = exp.saturating_add(i64::from(e));
    // `f` is in [0.5, 1): f × 2^exp.
    if exp < -1075 {
        return 0.0_f64.copysign(frac);
    }
    if exp > 1024 {
        return f64::INFINITY.copysign(frac);
    }
    let bits = f.to_bits() & !(0x7ff << 52);
    if exp < -1021 {
        // Subnormal: build the normal number 2^53 larger, then scale once.
        let biased = (exp + 53 + 1022) as u64;
        return f64::from_bits(bits | (biased << 52)) * (1.0 / (1u64 << 53) as f64);
    }
    f64::from_bits(bits | (((exp + 1022) as u64) << 52))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn powers_of_two_and_special_cases() {
        assert_eq!(log2(8.0), 3.0);
        assert_eq!(log2(0.25), -2.0);
        assert_eq!(exp2(3.0), 8.0);
        assert_eq!(exp2(-1.0), 0.5);
        assert_eq!(exp2(0.0), 1.0);
        assert!(log(-1.0).is_nan());
        assert_eq!(log(0.0), f64::NEG_INFINITY);
        assert_eq!(exp2(f64::NEG_INFINITY), 0.0);
        assert_eq!(exp2(2000.0), f64::INFINITY);
        assert_eq!(exp2(-1074.0), f64::from_bits(1));
        assert_eq!(frexp(f64::from_bits(1)), (0.5, -1073));
    }

    #[test]
    fn close_to_the_c_library() {
        for i in 1..2000 {
            let x = f64::from(i) * 0.37;
            assert!(
                (log(x) - x.ln()).abs() <= x.ln().abs() * 4e-16 + 1e-300,
                "{x}"
            );
            assert!(
                (log2(x) - x.log2()).abs() <= x.log2().abs() * 4e-16 + 1e-300,
                "{x}"
            );
            let y = f64::from(i) / 97.0 - 10.0;
            assert!((exp2(y) - y.exp2()).abs() <= y.exp2() * 4e-16, "{y}");
        }
    }
}
