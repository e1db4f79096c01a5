//! One table of every timer a node has armed, keyed by what the timer is for.
//!
//! The node's next deadline is the earliest entry. Setting a timer that is
//! already armed moves it; expired timers come out in deadline order (ties in
//! the order of [`Timer`]), so firing is deterministic.

use std::collections::{BTreeMap, BTreeSet};

use crate::id::MemberId;
use crate::time::Instant;

/// What a timer is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Timer {
    /// Start the next SWIM protocol period: probe the next member.
    Probe,
    /// The direct probe's ack is late: ask `k` members to probe indirectly.
    ProbeTimeout,
    /// A relayed (indirect) probe got no ack in time: send the requester a nack.
    RelayedProbe(u32),
    /// A suspect member's Lifeguard suspicion timeout: declare it dead.
    Suspicion(MemberId),
    /// Piggyback pending updates onto gossip datagrams to a few members.
    Gossip,
    /// Exchange full state with one random member over a stream.
    PushPull,
    /// Try a dead member or a discovery seed again, so split halves re-merge.
    Reconnect,
    /// Retry the discovery seeds that are due, with per-address backoff.
    SeedRetry,
    /// Our `Left` has been gossiped long enough: report the leave complete.
    LeavePropagated,
    /// No leader was heard from for an election timeout: campaign (Raft §5.2).
    Election,
    /// The leader's heartbeat to its followers.
    Heartbeat,
    /// The leader checks it heard from a majority in the last election timeout.
    CheckQuorum,
    /// Look again at views, acks, lagging members and voters (a debounce or a
    /// timeout is due).
    Reconcile,
    /// Send an unconfirmed view ack to the leader again.
    AckResend,
    /// A graceful leave waited long enough for its handoff: finish it anyway.
    LeaveTimeout,
    /// Resend this member's unanswered client requests; fail the overdue.
    ClientRetry,
}

/// Armed timers, ordered by deadline.
#[derive(Debug, Default)]
pub(crate) struct TimerTable {
    by_deadline: BTreeSet<(Instant, Timer)>,
    by_timer: BTreeMap<Timer, Instant>,
}

impl TimerTable {
    /// Arms `timer` at `deadline`, replacing its earlier deadline if armed.
    pub(crate) fn set(&mut self, timer: Timer, deadline: Instant) {
        if let Some(previous) = self.by_timer.insert(timer, deadline) {
            self.by_deadline.remove(&(previous, timer));
        }
        self.by_deadline.insert((deadline, timer));
    }

    /// Disarms `timer`; harmless if it is not armed.
    pub(crate) fn cancel(&mut self, timer: Timer) {
        if let Some(previous) = self.by_timer.remove(&timer) {
            self.by_deadline.remove(&(previous, timer));
        }
    }

    /// When `timer` fires, if armed.
    pub(crate) fn deadline(&self, timer: Timer) -> Option<Instant> {
        self.by_timer.get(&timer).copied()
    }

    /// The earliest deadline of all.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.by_deadline.first().map(|&(deadline, _)| deadline)
    }

    /// Disarms and returns the earliest timer due at `now`, if any.
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<Timer> {
        let &(deadline, timer) = self.by_deadline.first()?;
        if deadline > now {
            return None;
        }
        self.by_deadline.pop_first();
        self.by_timer.remove(&timer);
        Some(timer)
    }

    /// Checks that the two indexes agree.
    pub(crate) fn check_invariants(&self) {
        assert_eq!(self.by_deadline.len(), self.by_timer.len(), "timer indexes differ in size");
        for &(deadline, timer) in &self.by_deadline {
            assert_eq!(self.by_timer.get(&timer), Some(&deadline), "timer {timer:?} indexed twice");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(millis: u64) -> Instant {
        Instant::from_nanos(millis * 1_000_000)
    }

    #[test]
    fn rearming_a_timer_moves_it_instead_of_adding_a_second() {
        let mut timers = TimerTable::default();
        timers.set(Timer::Probe, at(10));
        timers.set(Timer::Probe, at(30));
        timers.set(Timer::Gossip, at(20));
        timers.check_invariants();
        assert_eq!(timers.next_deadline(), Some(at(20)));
        assert_eq!(timers.pop_expired(at(25)), Some(Timer::Gossip));
        assert_eq!(timers.pop_expired(at(25)), None, "the probe moved to 30 ms");
        assert_eq!(timers.pop_expired(at(30)), Some(Timer::Probe));
        assert_eq!(timers.next_deadline(), None);
    }

    #[test]
    fn timers_due_together_fire_in_a_fixed_order() {
        let mut timers = TimerTable::default();
        timers.set(Timer::Suspicion(MemberId::from_u128(2)), at(5));
        timers.set(Timer::Gossip, at(5));
        timers.set(Timer::Suspicion(MemberId::from_u128(1)), at(5));
        timers.cancel(Timer::SeedRetry);
        let fired: Vec<_> = std::iter::from_fn(|| timers.pop_expired(at(5))).collect();
        assert_eq!(
            fired,
            [Timer::Suspicion(MemberId::from_u128(1)), Timer::Suspicion(MemberId::from_u128(2)), Timer::Gossip,]
        );
        timers.check_invariants();
    }
}
