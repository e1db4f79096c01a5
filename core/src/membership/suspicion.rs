//! Lifeguard's dynamic suspicion timeout (Dadgar et al. 2018, §4.2).
//!
//! A suspicion starts with a long timeout and shortens as *independent*
//! members confirm it, so a truly failed member is declared dead quickly while
//! a member suspected by one unhealthy peer has a long time to refute:
//!
//! ```text
//! floor   = suspicion_mult · max(1, log10 n) · probe_interval
//! max     = suspicion_max_mult · floor
//! timeout = max(floor, max − (max − floor) · log(c + 1) / log(k + 1))
//! ```
//!
//! with `c` confirmations so far and `k` expected. Logarithms are fixed-point
//! ([`crate::fixed`]) so every platform computes the same deadline.

use std::collections::BTreeSet;

use core::time::Duration;

use crate::fixed::{self, ONE_Q32};
use crate::id::MemberId;
use crate::membership::member::Version;
use crate::time::Instant;

/// The shortest suspicion timeout for a cluster of `members`.
pub(crate) fn floor(suspicion_mult: u32, members: usize, probe_interval: Duration) -> Duration {
    let scale_q32 = fixed::log10_at_least_one_q32(members as u64);
    let nanos = (u128::from(suspicion_mult) * probe_interval.as_nanos() * u128::from(scale_q32)) >> 32;
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// The timeout after `confirmations` of `expected` independent confirmations.
pub(crate) fn timeout(confirmations: u32, expected: u32, min: Duration, max: Duration) -> Duration {
    if expected == 0 || confirmations >= expected || max <= min {
        return min;
    }
    let fraction_q32 = (u128::from(fixed::log2_q32(u64::from(confirmations) + 1)) << 32)
        / u128::from(fixed::log2_q32(u64::from(expected) + 1));
    let span = (max - min).as_nanos();
    let cut = span * fraction_q32 / u128::from(ONE_Q32);
    let nanos = max.as_nanos() - cut.min(span);
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX)).max(min)
}

/// One live suspicion of one member.
#[derive(Clone, Debug)]
pub(crate) struct Suspicion {
    /// The claim under suspicion; a confirmation must be about the same one.
    pub(crate) version: Version,
    started: Instant,
    /// Who suspected first; their later messages are not independent.
    first: MemberId,
    /// Other members that confirmed, at most `expected` of them.
    confirmations: BTreeSet<MemberId>,
    expected: u32,
    min: Duration,
    max: Duration,
}

impl Suspicion {
    pub(crate) fn new(
        version: Version,
        now: Instant,
        first: MemberId,
        expected: u32,
        min: Duration,
        max: Duration,
    ) -> Self {
        Suspicion { version, started: now, first, confirmations: BTreeSet::new(), expected, min, max }
    }

    /// Records a confirmation by `from`; true if it was new and independent,
    /// which shortens the deadline.
    pub(crate) fn confirm(&mut self, from: MemberId) -> bool {
        if from == self.first || self.confirmations.len() as u32 >= self.expected {
            return false;
        }
        self.confirmations.insert(from)
    }

    pub(crate) fn deadline(&self) -> Instant {
        self.started + timeout(self.confirmations.len() as u32, self.expected, self.min, self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn floor_grows_with_log10_of_the_cluster_size() {
        // Lifeguard §4.2 / memberlist: floor = mult · max(1, log10 n) · interval.
        let table = [(1, 4_000), (5, 4_000), (10, 4_000), (100, 8_000), (1000, 12_000)];
        for (index, (members, expected_millis)) in table.into_iter().enumerate() {
            let millis = floor(4, members, SECOND).as_millis();
            assert!(millis.abs_diff(expected_millis) <= 1, "row {index}: n = {members}: {millis} ms");
        }
    }

    #[test]
    fn timeout_decays_from_max_to_floor_with_confirmations() {
        // Lifeguard §4.2: c = 0 gives max, c = k gives the floor, in between log-scaled.
        let (min, max) = (2 * SECOND, 12 * SECOND);
        assert_eq!(timeout(0, 3, min, max), max);
        assert_eq!(timeout(3, 3, min, max), min);
        assert_eq!(timeout(9, 3, min, max), min);
        assert_eq!(timeout(0, 0, min, max), min, "no confirmations expected: floor at once");
        // c = 1 of k = 3: 12 − 10 · log(2)/log(4) = 7 s.
        let one = timeout(1, 3, min, max);
        assert!(one.as_millis().abs_diff(7_000) <= 1, "{one:?}");
        let two = timeout(2, 3, min, max);
        assert!(min < two && two < one);
    }

    #[test]
    fn only_independent_confirmations_shorten_the_deadline() {
        let version = Version::new(1, 0, crate::membership::State::Suspect);
        let first = MemberId::from_u128(1);
        let mut suspicion = Suspicion::new(version, Instant::ZERO, first, 2, SECOND, 6 * SECOND);
        assert_eq!(suspicion.deadline(), Instant::ZERO + 6 * SECOND);
        assert!(!suspicion.confirm(first), "the first suspector does not confirm itself");
        assert!(suspicion.confirm(MemberId::from_u128(2)));
        assert!(!suspicion.confirm(MemberId::from_u128(2)), "a repeat is not independent");
        assert!(suspicion.confirm(MemberId::from_u128(3)));
        assert!(!suspicion.confirm(MemberId::from_u128(4)), "past k the floor is reached");
        assert_eq!(suspicion.deadline(), Instant::ZERO + SECOND);
    }
}
