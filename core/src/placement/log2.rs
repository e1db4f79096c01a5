//! A fast `log2` in Q32.32 for the weighted scorer.
//!
//! [`crate::fixed::log2_q32`] is exact but spends 32 wide multiplications per
//! call, and the weighted scorer needs one logarithm per member per key. This
//! interpolates linearly in a table of `log2(1 + i/1024)` whose entries come
//! from `log2_q32` itself, so there is one source of truth for the values and
//! every build computes the same bits: integer operations only.

use std::sync::OnceLock;

use crate::fixed::log2_q32;

/// Mantissa bits that pick a table row; 1,025 rows of 8 bytes stay in L1.
pub(super) const TABLE_BITS: u32 = 10;

/// Mantissa bits below the row index that weigh the interpolation.
const INTERPOLATION_BITS: u32 = 32;

/// One row per `i / 2^TABLE_BITS` in `[0, 1]`, both ends included.
pub(super) const TABLE_ROWS: usize = (1 << TABLE_BITS) + 1;

/// `log2(1 + i / 2^TABLE_BITS)` in Q32.32, truncated, for every row `i`.
pub(super) type Table = [u64; TABLE_ROWS];

/// The table, built on first use.
///
/// Built lazily rather than as a `const` so its values come straight from
/// `log2_q32` (which is not a `const fn`) instead of from a second copy of it.
pub(super) fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        core::array::from_fn(|row| {
            // `2^TABLE_BITS + row` has mantissa exactly `1 + row / 2^TABLE_BITS`,
            // so subtracting the integer part leaves the row's value.
            log2_q32((1 << TABLE_BITS) + row as u64) - (u64::from(TABLE_BITS) << 32)
        })
    })
}

/// `log2(x)` in Q32.32 for `x ≥ 1`, by table and linear interpolation.
///
/// Exact at powers of two and at every table point; elsewhere below the exact
/// value by at most about `2^-22` (chords of a concave curve lie under it).
/// Never decreases as `x` grows. `x = 0` is read as `x = 1` rather than
/// panicking; the scorer never passes it.
pub(super) fn log2_q32_fast(table: &Table, x: u64) -> u64 {
    let x = x.max(1);
    let leading = x.leading_zeros();
    let integer = u64::from(63 - leading);
    // Top bit at 63: bits 62.. are the fraction of the mantissa in [1, 2).
    let mantissa = x << leading;
    let row = (mantissa >> (63 - TABLE_BITS)) as usize & ((1 << TABLE_BITS) - 1);
    let between = (mantissa >> (63 - TABLE_BITS - INTERPOLATION_BITS)) & ((1 << INTERPOLATION_BITS) - 1);
    let low = table[row];
    let high = table[row + 1];
    // The rise of one row is below 2^23 and `between` below 2^32: no overflow.
    (integer << 32) + low + (((high - low) * between) >> INTERPOLATION_BITS)
}

/// `-log2(u)` in Q32.32 for the unit fraction `u = score / 2^64`.
///
/// `score = 0` is read as `score = 1`, so the result is always in
/// `[1, 64 · 2^32]`: never zero (a weight divided by it is finite) and never
/// more than 64 (a weight times it fits a `u128` with room to spare). It never
/// increases as `score` grows.
pub(super) fn neg_log2_unit_q32(table: &Table, score: u64) -> u64 {
    (64 << 32) - log2_q32_fast(table, score)
}
