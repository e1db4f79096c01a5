//! What the adapter counts on top of the core's traffic counters, for
//! `/metrics`: leader changes and how long rebalances take to become stable.

use std::collections::BTreeMap;
use std::time::Duration;

/// Upper bounds, in seconds, of the rebalance-to-stable histogram's buckets.
pub const STABLE_BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// Views whose start is remembered while waiting for their `Stable`.
const PENDING_VIEWS: usize = 16;

/// A cumulative histogram in Prometheus' shape.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    /// Observations at or under each of [`STABLE_BUCKETS`].
    pub buckets: [u64; STABLE_BUCKETS.len()],
    /// Sum of all observations, in seconds.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&mut self, duration: Duration) {
        let seconds = duration.as_secs_f64();
        for (bucket, bound) in self.buckets.iter_mut().zip(STABLE_BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }
}

/// Counters the adapter keeps.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    /// How often the known leader changed.
    pub leader_changes: u64,
    /// On the leader: from a view's commit to its `Stable`, in seconds.
    pub rebalance_to_stable: Histogram,
    /// When each recent view was delivered, by epoch.
    view_started: BTreeMap<u64, Duration>,
}

impl Stats {
    /// A view was delivered at `now` (on the adapter's clock).
    pub(crate) fn view_delivered(&mut self, epoch: u64, now: Duration) {
        self.view_started.insert(epoch, now);
        while self.view_started.len() > PENDING_VIEWS {
            self.view_started.pop_first();
        }
    }

    /// View `epoch` became stable at `now`.
    pub(crate) fn view_stable(&mut self, epoch: u64, now: Duration) {
        if let Some(started) = self.view_started.remove(&epoch) {
            self.rebalance_to_stable.observe(now.saturating_sub(started));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_histogram_is_cumulative_and_only_completed_rebalances_count() {
        let mut stats = Stats::default();
        stats.view_delivered(1, Duration::from_millis(100));
        stats.view_stable(1, Duration::from_millis(400));
        stats.view_stable(2, Duration::from_millis(900)); // never delivered here
        let histogram = &stats.rebalance_to_stable;
        assert_eq!(histogram.count, 1);
        assert_eq!(histogram.buckets[..5], [0, 0, 0, 1, 1], "0.3 s lands in 0.5 and every bucket above");
        assert!((histogram.sum - 0.3).abs() < 1e-9);
    }
}
