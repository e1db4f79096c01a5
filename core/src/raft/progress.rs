//! The leader's view of one follower's log (raft-rs and etcd's progress
//! tracker, Raft §5.3).
//!
//! *Probe*: the follower's log position is unknown; send one append at a
//! time and back off on refusal. *Replicate*: it is known; pipeline appends
//! optimistically, within a window of messages and bytes in flight.
//! *Snapshot*: the entries it needs are compacted; a snapshot is in flight.

use std::collections::VecDeque;

/// Where a follower is in the protocol above.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProgressState {
    Probe,
    Replicate,
    Snapshot {
        /// The snapshot's last index.
        index: u64,
    },
}

#[derive(Clone, Debug)]
pub(crate) struct Progress {
    /// The highest index known to be on the follower.
    pub(crate) match_index: u64,
    /// The next index to send.
    pub(crate) next_index: u64,
    pub(crate) state: ProgressState,
    /// In `Probe`: an append is out and unanswered; wait for its answer or
    /// the next heartbeat before sending another.
    probe_sent: bool,
    /// In `Replicate`: the last index and size of each append in flight.
    inflight: VecDeque<(u64, usize)>,
    inflight_bytes: usize,
}

impl Progress {
    pub(crate) fn new(next_index: u64) -> Self {
        Progress {
            match_index: 0,
            next_index,
            state: ProgressState::Probe,
            probe_sent: false,
            inflight: VecDeque::new(),
            inflight_bytes: 0,
        }
    }

    /// Whether the leader must hold further appends for now.
    pub(crate) fn is_paused(&self, max_messages: usize, max_bytes: usize) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.inflight.len() >= max_messages || self.inflight_bytes >= max_bytes,
            ProgressState::Snapshot { .. } => true,
        }
    }

    /// Records an append sent with entries up to `last_index` (`bytes` of them).
    pub(crate) fn sent(&mut self, last_index: u64, bytes: usize) {
        match self.state {
            ProgressState::Probe => self.probe_sent = true,
            ProgressState::Replicate => {
                self.next_index = last_index + 1;
                if bytes > 0 {
                    self.inflight.push_back((last_index, bytes));
                    self.inflight_bytes += bytes;
                }
            }
            ProgressState::Snapshot { .. } => {}
        }
    }

    /// A heartbeat interval passed: a probe may be retried.
    pub(crate) fn resume_probe(&mut self) {
        self.probe_sent = false;
    }

    /// The follower stores everything up to `index`. Returns whether that is news.
    pub(crate) fn on_success(&mut self, index: u64) -> bool {
        let news = index > self.match_index;
        if news {
            self.match_index = index;
        }
        self.next_index = self.next_index.max(index + 1);
        while self.inflight.front().is_some_and(|&(last, _)| last <= index) {
            let (_, bytes) = self.inflight.pop_front().expect("checked");
            self.inflight_bytes -= bytes;
        }
        match self.state {
            ProgressState::Probe => self.become_replicate(),
            ProgressState::Snapshot { index: snapshot } if self.match_index >= snapshot => self.become_replicate(),
            _ => {}
        }
        news
    }

    /// The follower refused the append whose previous index was `rejected`,
    /// and says to retry from `next_hint`. Returns whether the refusal was
    /// current (not a late answer to an append already superseded).
    pub(crate) fn on_reject(&mut self, rejected: u64, next_hint: u64) -> bool {
        match self.state {
            // In Replicate a refusal at or below what it matched is stale.
            ProgressState::Replicate if rejected <= self.match_index => false,
            ProgressState::Replicate => {
                self.become_probe();
                self.next_index = next_hint.clamp(self.match_index + 1, rejected.max(self.match_index + 1));
                true
            }
            // In Probe only the answer to the probe counts: its previous index is next − 1.
            ProgressState::Probe if rejected + 1 != self.next_index => false,
            ProgressState::Probe => {
                self.next_index = next_hint.clamp(self.match_index + 1, rejected.max(self.match_index + 1));
                self.probe_sent = false;
                true
            }
            ProgressState::Snapshot { .. } => false,
        }
    }

    /// A successful answer brought no news while the window is full: the
    /// appends in flight, sent earlier on the same stream, were lost or their
    /// answers were (a reset connection drops queued frames; a restarted
    /// follower may answer before it knows where the leader is). Nothing
    /// else would free the window, so probe again, from where the
    /// follower's log ends (`end`, exclusive, from its answer; 0 if unknown)
    /// or from what was in flight, whichever is first. Returns whether it did.
    pub(crate) fn on_stalled(&mut self, end: u64) -> bool {
        if self.state != ProgressState::Replicate {
            return false;
        }
        let resume = if end == 0 { self.match_index + 1 } else { end.min(self.next_index) };
        self.become_probe();
        self.next_index = resume.max(self.match_index + 1);
        true
    }

    pub(crate) fn become_probe(&mut self) {
        self.state = ProgressState::Probe;
        self.probe_sent = false;
        self.inflight.clear();
        self.inflight_bytes = 0;
        self.next_index = self.next_index.max(self.match_index + 1);
    }

    pub(crate) fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.probe_sent = false;
        self.next_index = self.match_index + 1;
    }

    pub(crate) fn become_snapshot(&mut self, index: u64) {
        self.state = ProgressState::Snapshot { index };
        self.probe_sent = false;
        self.inflight.clear();
        self.inflight_bytes = 0;
    }

    pub(crate) fn check_invariants(&self) {
        assert!(self.next_index > self.match_index, "next index beyond what matched");
        assert_eq!(self.inflight_bytes, self.inflight.iter().map(|&(_, bytes)| bytes).sum::<usize>(), "inflight bytes");
        if self.state != ProgressState::Replicate {
            assert!(self.inflight.is_empty(), "only replication pipelines");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_waits_for_its_answer_then_replication_pipelines_within_its_window() {
        let mut progress = Progress::new(6);
        assert!(!progress.is_paused(2, 1000));
        progress.sent(5, 0);
        assert!(progress.is_paused(2, 1000), "one probe at a time");
        assert!(progress.on_success(5));
        assert_eq!((progress.state, progress.next_index), (ProgressState::Replicate, 6));
        progress.sent(7, 100);
        progress.sent(9, 100);
        assert!(progress.is_paused(2, 1000), "two appends in flight fill the window");
        assert_eq!(progress.next_index, 10, "replication advances next optimistically");
        progress.on_success(7);
        assert!(!progress.is_paused(2, 1000), "an answer frees its slot");
        progress.check_invariants();
    }

    #[test]
    fn a_refusal_sends_replication_back_to_probing_and_stale_refusals_are_ignored() {
        // Raft §5.3: on refusal the leader decrements next and retries.
        let mut progress = Progress::new(1);
        progress.on_success(4);
        progress.sent(8, 10);
        assert!(!progress.on_reject(3, 2), "refusing at or below the match is a late answer");
        assert!(progress.on_reject(6, 5));
        assert_eq!((progress.state, progress.next_index), (ProgressState::Probe, 5));
        // The hint never sends next below match + 1.
        progress.sent(4, 0);
        assert!(progress.on_reject(4, 1));
        assert_eq!(progress.next_index, 5);
        progress.check_invariants();
    }

    #[test]
    fn a_snapshot_pauses_appends_until_it_is_acknowledged() {
        let mut progress = Progress::new(3);
        progress.become_snapshot(100);
        assert!(progress.is_paused(8, usize::MAX));
        progress.on_success(100);
        assert_eq!((progress.state, progress.next_index), (ProgressState::Replicate, 101));
    }
}
