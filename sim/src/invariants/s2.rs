//! **S2**: applied entries on every member form prefixes of one sequence.
//!
//! Every member applies the entries of its log up to its commit index, in
//! order; today those are the core's own (views, `Stable`, configurations),
//! and client `apply` commands join them with the replicated state machine.
//! For each cluster and index, the first committed entry seen anywhere is the
//! sequence's; any member committing another one there (another term or
//! another payload) breaks S2. Within one boot of a member, the commit index
//! never goes back. Entries a member skipped by installing a snapshot are
//! not seen, which S2 allows: the snapshot stands for them.

use std::collections::BTreeMap;

use quorate_core::raft::Entry;
use quorate_core::{ClusterUuid, Instant, MemberId};
use xxhash_rust::xxh3::xxh3_64;

use super::{NodeIdx, Observation, Violation};

#[derive(Clone, Copy, Debug)]
struct Witness {
    term: u64,
    digest: u64,
    slot: NodeIdx,
    at: Instant,
}

/// See the module doc.
#[derive(Debug, Default)]
pub struct OneSequence {
    sequence: BTreeMap<(ClusterUuid, u64), Witness>,
    /// Per member, committed entries checked up to here.
    scanned: BTreeMap<MemberId, u64>,
    /// Per (slot, member, boot), the highest commit index seen.
    commits: BTreeMap<(NodeIdx, MemberId, u64), u64>,
}

impl OneSequence {
    /// Indexes of the sequence known so far.
    pub fn len(&self) -> usize {
        self.sequence.len()
    }

    /// Whether no committed entry was seen yet.
    pub fn is_empty(&self) -> bool {
        self.sequence.is_empty()
    }

    /// The index up to which `member`'s committed log was checked.
    pub fn scanned_up_to(&self, member: MemberId) -> u64 {
        self.scanned.get(&member).copied().unwrap_or(0)
    }

    /// Checks one step.
    pub fn observe(&mut self, step: &Observation<'_>) -> Result<(), Violation> {
        let violation = |detail: String| Violation { invariant: "S2", at: step.at, detail };
        let previous = self.commits.entry((step.slot, step.member, step.boot_id)).or_insert(step.commit_index);
        if step.commit_index < *previous {
            return Err(violation(format!(
                "{} ({}, boot {}) moved its commit index back from {previous} to {}",
                step.slot, step.member, step.boot_id, step.commit_index
            )));
        }
        *previous = step.commit_index;
        let scanned = self.scanned_up_to(step.member);
        let mut checked = scanned;
        for entry in step.entries.iter().filter(|entry| entry.index > scanned && entry.index <= step.commit_index) {
            let digest = digest(entry);
            let witness = self.sequence.entry((step.uuid, entry.index)).or_insert(Witness {
                term: entry.term,
                digest,
                slot: step.slot,
                at: step.at,
            });
            if (witness.term, witness.digest) != (entry.term, digest) {
                return Err(violation(format!(
                    "{} ({}) committed #{} t{} ({}), but {} committed #{} t{} at {}",
                    step.slot,
                    step.member,
                    entry.index,
                    entry.term,
                    entry.payload.kind(),
                    witness.slot,
                    entry.index,
                    witness.term,
                    witness.at
                )));
            }
            checked = entry.index;
        }
        self.scanned.insert(step.member, checked);
        Ok(())
    }
}

/// A fingerprint of an entry's payload.
fn digest(entry: &Entry) -> u64 {
    xxh3_64(&postcard::to_allocvec(&entry.payload).expect("entries encode"))
}

#[cfg(test)]
mod tests {
    use quorate_core::raft::Payload;

    use super::*;
    use crate::invariants::synthetic::*;

    fn committed(
        millis: u64,
        slot: usize,
        member: u128,
        commit: u64,
        entries: &'static [Entry],
    ) -> Observation<'static> {
        Observation { commit_index: commit, entries, ..step(millis, slot, member, 2) }
    }

    #[test]
    fn members_committing_the_same_prefix_agree() {
        let mut s2 = OneSequence::default();
        let log = entries([
            entry(1, 1, Payload::View(view(1, &[1, 2]))),
            entry(2, 2, Payload::Stable { epoch: 1 }),
            entry(3, 2, Payload::View(view(2, &[1, 2, 3]))),
        ]);
        s2.observe(&committed(10, 0, 1, 3, log)).unwrap();
        // Another member is behind: a prefix.
        s2.observe(&committed(11, 1, 2, 2, log)).unwrap();
        // It catches up; the uncommitted tail it held before is not judged.
        s2.observe(&committed(12, 1, 2, 3, &log[2..])).unwrap();
        assert_eq!((s2.len(), s2.scanned_up_to(id(2))), (3, 3));
    }

    #[test]
    fn another_entry_committed_at_an_index_is_caught() {
        let mut s2 = OneSequence::default();
        s2.observe(&committed(10, 0, 1, 1, entries([entry(1, 1, Payload::Stable { epoch: 1 })]))).unwrap();
        let violation =
            s2.observe(&committed(20, 1, 2, 1, entries([entry(1, 1, Payload::Stable { epoch: 2 })]))).unwrap_err();
        assert_eq!(violation.invariant, "S2");
        assert!(violation.detail.contains("committed #1 t1"), "{violation}");
    }

    #[test]
    fn a_commit_index_going_back_within_a_boot_is_caught() {
        let mut s2 = OneSequence::default();
        let log = entries([entry(1, 1, Payload::Stable { epoch: 1 }), entry(2, 1, Payload::Stable { epoch: 2 })]);
        s2.observe(&committed(10, 0, 1, 2, log)).unwrap();
        // A restart (a new boot) may start lower: the commit index is not durable.
        s2.observe(&Observation { boot_id: 2, ..committed(20, 0, 1, 0, &[]) }).unwrap();
        let violation = s2.observe(&committed(30, 0, 1, 1, &[])).unwrap_err();
        assert!(violation.detail.contains("back from 2 to 1"), "{violation}");
    }
}
