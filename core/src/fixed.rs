//! Fixed-point arithmetic for decisions that must agree across platforms.
//!
//! Floating-point `ln`/`log10` come from the platform's libm, which may round
//! differently on another machine; a protocol decision or a placement must
//! not. These functions use integer operations only, so every build computes
//! the same bits.

/// One in Q32.32 fixed point.
pub const ONE_Q32: u64 = 1 << 32;

/// `log2(10)` in Q32.32, truncated.
pub const LOG2_10_Q32: u64 = 14_267_572_527;

/// `log2(x)` in Q32.32 fixed point, for `x ≥ 1`, truncated towards zero.
///
/// The integer part is the position of the highest set bit; the 32 fraction
/// bits come from repeatedly squaring the mantissa (each squaring doubles the
/// logarithm, so an overflow past 2 is the next fraction bit).
pub fn log2_q32(x: u64) -> u64 {
    assert!(x > 0, "log2 of zero");
    let integer = 63 - u64::from(x.leading_zeros());
    // Mantissa in [1, 2) as Q1.63.
    let mut mantissa = u128::from(x) << (63 - integer);
    let mut fraction = 0u64;
    for bit in (0..32).rev() {
        mantissa = (mantissa * mantissa) >> 63;
        if mantissa >= 1 << 64 {
            mantissa >>= 1;
            fraction |= 1 << bit;
        }
    }
    (integer << 32) | fraction
}

/// `max(1, log10(n))` in Q32.32, for SWIM's size-scaled timeouts.
pub fn log10_at_least_one_q32(n: u64) -> u64 {
    let log10 = (u128::from(log2_q32(n.max(1))) << 32) / u128::from(LOG2_10_Q32);
    (log10 as u64).max(ONE_Q32)
}

/// `ceil(log10(n))` for `n ≥ 1`: the number of decimal digits of `n - 1`, 0 for `n = 1`.
pub fn ceil_log10(n: u64) -> u32 {
    let mut digits = 0;
    let mut power = 1u64;
    while power < n {
        digits += 1;
        power = power.saturating_mul(10);
    }
    digits
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to_f64(q32: u64) -> f64 {
        q32 as f64 / ONE_Q32 as f64
    }

    #[test]
    fn log2_matches_floating_point_within_a_few_ulps_of_q32() {
        for x in [1u64, 2, 3, 5, 10, 100, 1000, 12345, 1 << 40, u64::MAX] {
            let exact = (x as f64).log2();
            let fixed = to_f64(log2_q32(x));
            assert!((exact - fixed).abs() < 1e-8, "log2({x}): {fixed} vs {exact}");
        }
        assert_eq!(log2_q32(1), 0);
        assert_eq!(log2_q32(1024), 10 << 32);
    }

    #[test]
    fn log10_is_floored_at_one() {
        assert_eq!(log10_at_least_one_q32(0), ONE_Q32);
        assert_eq!(log10_at_least_one_q32(9), ONE_Q32);
        assert!((to_f64(log10_at_least_one_q32(1000)) - 3.0).abs() < 1e-8);
        assert!((to_f64(log10_at_least_one_q32(50)) - 50f64.log10()).abs() < 1e-8);
    }

    #[test]
    fn ceil_log10_counts_decimal_orders() {
        let table = [(1, 0), (2, 1), (10, 1), (11, 2), (100, 2), (101, 3), (1001, 4)];
        for (index, (n, expected)) in table.into_iter().enumerate() {
            assert_eq!(ceil_log10(n), expected, "row {index}: n = {n}");
        }
    }
}
