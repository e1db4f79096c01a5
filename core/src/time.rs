//! Time as the core sees it: a monotonic instant handed in by the caller.
//!
//! The core never reads a clock. Every input carries `now`, an [`Instant`] on
//! whatever monotonic scale the driver picked (the tokio adapter uses its
//! runtime's clock, the test driver a virtual one). Only differences between
//! instants mean anything.

use core::ops::{Add, AddAssign};
use core::time::Duration;

/// A point on the caller's monotonic clock, in nanoseconds from an arbitrary origin.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    /// The origin of the caller's clock.
    pub const ZERO: Instant = Instant(0);

    /// The instant `nanos` nanoseconds after the origin.
    pub const fn from_nanos(nanos: u64) -> Self {
        Instant(nanos)
    }

    /// Nanoseconds since the origin.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;

    /// Saturates at the far end of the scale rather than wrapping: a deadline
    /// that far away simply never fires.
    fn add(self, rhs: Duration) -> Instant {
        let nanos = u64::try_from(rhs.as_nanos()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_add(nanos))
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, rhs: Duration) {
        *self = *self + rhs;
    }
}

impl core::fmt::Display for Instant {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let millis = self.0 / 1_000_000;
        write!(f, "{}.{:03}s", millis / 1000, millis % 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adding_a_huge_duration_saturates_instead_of_wrapping() {
        let late = Instant::from_nanos(u64::MAX - 5) + Duration::from_secs(1);
        assert_eq!(late, Instant::from_nanos(u64::MAX));
        assert_eq!(Instant::ZERO + Duration::MAX, Instant::from_nanos(u64::MAX));
    }

    #[test]
    fn duration_since_a_later_instant_is_zero() {
        let early = Instant::from_nanos(10);
        let late = Instant::from_nanos(30);
        assert_eq!(late.saturating_duration_since(early), Duration::from_nanos(20));
        assert_eq!(early.saturating_duration_since(late), Duration::ZERO);
    }
}
