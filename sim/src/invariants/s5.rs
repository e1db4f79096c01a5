//! **S5**: an entry reported committed is never lost, with durable storage,
//! whatever minority crashes.
//!
//! "Reported committed" is what a member's application was told: today the
//! `View` behind each `Rebalance` and the `Stable` behind each
//! `ClusterStable`; client `apply` results join them with the replicated
//! state machine. The checker remembers each such entry (cluster, index,
//! term). Every leader, the first time it is seen leading a term, must hold
//! all of them in its log, with the same term, unless compacted into its
//! snapshot (Raft's leader completeness, seen from outside); and at the end
//! of the run, the settled leader is checked once more.
//!
//! Leader completeness speaks of entries committed in *earlier* terms, and a
//! leader can be seen late: one whose fsync stalled reports leading term 1
//! after term 2 committed entries it never had, and that is legal (it is
//! deposed and cannot commit). The term an entry committed in is at most the
//! term of any member that reported it, so a leader of term T is held to the
//! entries some member reported while in a term ≤ T.

use std::collections::{BTreeMap, BTreeSet};

use quorate_core::raft::Payload;
use quorate_core::{ClusterUuid, Event, Instant, MemberId};

use super::{NodeIdx, Observation, Violation};

#[derive(Clone, Copy, Debug)]
struct Reported {
    term: u64,
    /// The lowest term a member was in when it reported the entry: the
    /// entry committed in this term or an earlier one.
    reporter_term: u64,
    what: &'static str,
    slot: NodeIdx,
    at: Instant,
}

/// See the module doc.
#[derive(Debug, Default)]
pub struct NothingLost {
    reported: BTreeMap<(ClusterUuid, u64), Reported>,
    /// Leaderships already checked: (cluster, term, leader).
    checked: BTreeSet<(ClusterUuid, u64, MemberId)>,
}

impl NothingLost {
    /// Entries reported committed so far.
    pub fn reported(&self) -> usize {
        self.reported.len()
    }

    /// `slot`, in `reporter_term`, told its application that the entry at
    /// `index` of term `term` committed.
    fn report(&mut self, step: &Observation<'_>, index: u64, term: u64, what: &'static str) {
        let reported = self.reported.entry((step.uuid, index)).or_insert(Reported {
            term,
            reporter_term: step.term,
            what,
            slot: step.slot,
            at: step.at,
        });
        reported.reporter_term = reported.reporter_term.min(step.term);
    }

    /// Checks one step: records what it reported, and checks a new leader.
    pub fn observe(&mut self, step: &Observation<'_>) -> Result<(), Violation> {
        for event in step.events {
            let found = match event {
                Event::Rebalance(view) => step.entries.iter().find(|entry| {
                    entry.index <= step.commit_index
                        && matches!(&entry.payload, Payload::View(v) if v.epoch == view.epoch)
                }),
                Event::ClusterStable(view) => step.entries.iter().rev().find(|entry| {
                    entry.index <= step.commit_index && entry.payload == Payload::Stable { epoch: view.epoch }
                }),
                _ => None,
            };
            // Not in this step's entries: delivered from a snapshot, or
            // reported by a new leader for a Stable committed before.
            if let Some(entry) = found {
                self.report(step, entry.index, entry.term, entry.payload.kind());
            }
        }
        if step.leading && self.checked.insert((step.uuid, step.term, step.member)) {
            self.check_leader(step)?;
        }
        Ok(())
    }

    /// Checks that `step`'s member holds every entry reported committed in
    /// its cluster: the final check, on the leader the run settled with.
    pub fn check_leader(&self, step: &Observation<'_>) -> Result<(), Violation> {
        for (&(uuid, index), reported) in self.reported.range((step.uuid, 0)..=(step.uuid, u64::MAX)) {
            debug_assert_eq!(uuid, step.uuid);
            if reported.reporter_term > step.term {
                // Possibly committed after this leader's term: see the module doc.
                continue;
            }
            match (step.term_at)(index) {
                Some(term) if term == reported.term => {}
                // Compacted into the snapshot, which stands for it.
                None if index <= step.snapshot_index => {}
                held => {
                    return Err(Violation {
                        invariant: "S5",
                        at: step.at,
                        detail: format!(
                            "leader {} ({}, term {}) holds {} at #{index}, but {} was reported committed there \
                             as t{} {} by {} at {}",
                            step.slot,
                            step.member,
                            step.term,
                            held.map_or_else(|| "nothing".to_owned(), |term| format!("an entry of t{term}")),
                            reported.what,
                            reported.term,
                            reported.what,
                            reported.slot,
                            reported.at
                        ),
                    });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::synthetic::*;

    fn delivered() -> Observation<'static> {
        Observation {
            commit_index: 4,
            entries: entries([entry(4, 2, Payload::View(view(3, &[1, 2])))]),
            events: events([Event::Rebalance(view(3, &[1, 2]))]),
            ..step(10, 1, 2, 2)
        }
    }

    #[test]
    fn a_new_leader_holding_every_reported_entry_is_fine() {
        let mut s5 = NothingLost::default();
        s5.observe(&delivered()).unwrap();
        assert_eq!(s5.reported(), 1);
        let term_at = |index: u64| (index <= 5).then_some(if index == 5 { 3 } else { 2 });
        s5.observe(&Observation { leading: true, commit_index: 3, term_at: &term_at, ..step(20, 0, 1, 3) }).unwrap();
        // Compacted into its snapshot: fine too.
        let compacted = |index: u64| (index == 5).then_some(3);
        let leader =
            Observation { leading: true, commit_index: 5, snapshot_index: 4, term_at: &compacted, ..step(30, 2, 3, 4) };
        s5.observe(&leader).unwrap();
    }

    #[test]
    fn a_new_leader_missing_a_reported_entry_is_caught() {
        let mut s5 = NothingLost::default();
        s5.observe(&delivered()).unwrap();
        // It lost index 4 (its disk dropped a synced write, say) and got elected.
        let term_at = |index: u64| (index <= 3).then_some(2);
        let violation = s5
            .observe(&Observation { leading: true, commit_index: 3, term_at: &term_at, ..step(20, 0, 1, 3) })
            .unwrap_err();
        assert_eq!(violation.invariant, "S5");
        assert!(violation.detail.contains("holds nothing at #4"), "{violation}");
        // Or it holds another entry there.
        let other = |index: u64| (index <= 4).then_some(1);
        let violation = s5
            .observe(&Observation { leading: true, commit_index: 3, term_at: &other, ..step(30, 2, 3, 4) })
            .unwrap_err();
        assert!(violation.detail.contains("an entry of t1 at #4"), "{violation}");
    }

    #[test]
    fn a_deposed_leader_seen_late_is_held_only_to_entries_reported_in_its_term_or_before() {
        // Reported committed at #4 (of term 2) by a member in term 2; a leader
        // of term 1 is seen only afterwards (its fsync stalled) without it.
        let mut s5 = NothingLost::default();
        s5.observe(&delivered()).unwrap();
        let nothing = |index: u64| (index <= 3).then_some(1);
        s5.observe(&Observation { leading: true, commit_index: 3, term_at: &nothing, ..step(20, 0, 1, 1) }).unwrap();
        // Reported by a member in term 1, an entry committed in term 1, by
        // the leader of term 1, which must hold it.
        let mut s5 = NothingLost::default();
        let in_term_1 = Observation {
            commit_index: 4,
            entries: entries([entry(4, 1, Payload::View(view(3, &[1, 2])))]),
            events: events([Event::Rebalance(view(3, &[1, 2]))]),
            ..step(10, 1, 2, 1)
        };
        s5.observe(&in_term_1).unwrap();
        let violation = s5
            .observe(&Observation { leading: true, commit_index: 3, term_at: &nothing, ..step(30, 3, 4, 1) })
            .unwrap_err();
        assert!(violation.detail.contains("holds nothing at #4"), "{violation}");
    }
}
