//! Lifeguard's local health multiplier (Dadgar et al. 2018, §4.3).
//!
//! A member that is itself slow or lossy misses acks and would wrongly
//! suspect healthy peers. Lifeguard lets it notice: failed probes, missed
//! nacks and having to refute a suspicion about itself raise a score; each
//! successful probe lowers it. Probe interval and timeout are scaled by
//! `score + 1`, so an unhealthy member probes less often and waits longer.

use core::time::Duration;

/// The local health score, between 0 (healthy) and `max - 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Awareness {
    score: u32,
    max: u32,
}

impl Awareness {
    /// A healthy member whose multiplier may reach `max_multiplier`.
    pub(crate) fn new(max_multiplier: u32) -> Self {
        Awareness { score: 0, max: max_multiplier.max(1) }
    }

    /// Raises (positive) or lowers (negative) the score, clamped to its range.
    pub(crate) fn apply_delta(&mut self, delta: i32) {
        let raised = i64::from(self.score) + i64::from(delta);
        self.score = raised.clamp(0, i64::from(self.max - 1)) as u32;
    }

    /// The current score; 0 when healthy.
    pub(crate) fn score(self) -> u32 {
        self.score
    }

    /// `duration × (score + 1)`.
    pub(crate) fn scale(self, duration: Duration) -> Duration {
        duration * (self.score + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_score_stays_within_its_range_and_scales_timeouts() {
        // Lifeguard §4.3: the multiplier is bounded below by 1 and above by its max.
        let mut awareness = Awareness::new(8);
        awareness.apply_delta(-3);
        assert_eq!(awareness.score(), 0);
        awareness.apply_delta(3);
        assert_eq!(awareness.scale(Duration::from_millis(100)), Duration::from_millis(400));
        awareness.apply_delta(100);
        assert_eq!(awareness.score(), 7);
        assert_eq!(awareness.scale(Duration::from_millis(100)), Duration::from_millis(800));
    }
}
