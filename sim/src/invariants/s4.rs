//! **S4**: at most one `Stable(e)` per epoch in any log, appended by a
//! leader only after an own-term commit, after every member of view `e`
//! acked `e`, and while `e` was its newest view; `on_cluster_stable(e)` runs
//! only on a leader, at most once per term.
//!
//! The core's checker ([`quorate_core::testing::StableOnce`]) checks all of
//! that but the acks, which it cannot see from outside a member. The harness
//! can: the application acks through it, so it records each ack before the
//! member sends it. The first time any log shows a `Stable(e)`, every member
//! of view `e` must have acked `e` already.

use std::collections::{BTreeMap, BTreeSet};

use quorate_core::raft::Payload;
use quorate_core::testing;
use quorate_core::{ClusterUuid, Event, MemberId};

use super::{Observation, Violation};

/// See the module doc.
#[derive(Debug, Default)]
pub struct StableAfterAcks {
    stable: testing::StableOnce,
    /// Application acks: (member, epoch).
    acks: BTreeSet<(MemberId, u64)>,
    /// Members of each epoch's view, from the first log that committed it.
    views: BTreeMap<(ClusterUuid, u64), Vec<MemberId>>,
    /// Epochs whose `Stable` was checked against the acks.
    checked: BTreeSet<(ClusterUuid, u64)>,
}

impl StableAfterAcks {
    /// Epochs with a committed `Stable` so far.
    pub fn stable_epochs(&self) -> usize {
        self.stable.stable_epochs()
    }

    /// The index up to which `member`'s committed log was checked.
    pub fn scanned_up_to(&self, member: MemberId) -> u64 {
        self.stable.scanned_up_to(member)
    }

    /// `member`'s application acked `epoch` (just before the member sends
    /// the ack on).
    pub fn acked(&mut self, member: MemberId, epoch: u64) {
        self.acks.insert((member, epoch));
    }

    /// Checks one step.
    pub fn observe(&mut self, step: &Observation<'_>) -> Result<(), Violation> {
        let scanned = self.stable.scanned_up_to(step.member);
        // Views come from committed entries (an uncommitted one may yet be
        // replaced); a Stable is judged wherever it first shows. A leader
        // appends Stable(e) only once View(e) committed, so its members are
        // known by then.
        for entry in step.entries.iter().filter(|entry| entry.index > scanned) {
            match &entry.payload {
                Payload::View(view) if entry.index <= step.commit_index => {
                    self.views.entry((step.uuid, view.epoch)).or_insert_with(|| view.ids().collect());
                }
                &Payload::Stable { epoch } => {
                    let Some(members) = self.views.get(&(step.uuid, epoch)) else { continue };
                    if !self.checked.insert((step.uuid, epoch)) {
                        continue;
                    }
                    if let Some(missing) = members.iter().find(|&&member| !self.acks.contains(&(member, epoch))) {
                        return Err(Violation {
                            invariant: "S4",
                            at: step.at,
                            detail: format!(
                                "{} ({}) holds Stable({epoch}) at #{} t{}, but {missing} of view {epoch} {members:?} \
                                 never acked {epoch}",
                                step.slot, step.member, entry.index, entry.term
                            ),
                        });
                    }
                }
                _ => {}
            }
        }
        self.stable.observe_log(
            step.at,
            step.slot,
            step.member,
            step.uuid,
            step.commit_index,
            step.leading.then_some(step.term),
            step.entries,
        )?;
        for event in step.events {
            match event {
                &Event::LeaderChanged { leader, term } => {
                    self.stable.observe_leader_changed(step.slot, step.boot_id, leader, term)
                }
                Event::ClusterStable(view) => self.stable.observe_cluster_stable(
                    step.at,
                    step.slot,
                    step.member,
                    step.boot_id,
                    step.uuid,
                    view.epoch,
                )?,
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::synthetic::*;

    fn log() -> &'static [quorate_core::raft::Entry] {
        entries([entry(1, 1, Payload::View(view(1, &[1, 2, 3]))), entry(2, 1, Payload::Stable { epoch: 1 })])
    }

    fn leader_step(millis: u64, commit: u64) -> Observation<'static> {
        Observation {
            leading: true,
            leader: Some(id(1)),
            commit_index: commit,
            entries: log(),
            ..step(millis, 0, 1, 1)
        }
    }

    #[test]
    fn stable_after_every_ack_is_fine() {
        let mut s4 = StableAfterAcks::default();
        for member in 1..=3 {
            s4.acked(id(member), 1);
        }
        s4.observe(&Observation { commit_index: 1, entries: &log()[..1], ..leader_step(10, 1) }).unwrap();
        s4.observe(&leader_step(20, 2)).unwrap();
        assert_eq!(s4.stable_epochs(), 1);
    }

    #[test]
    fn stable_one_ack_early_is_caught() {
        let mut s4 = StableAfterAcks::default();
        s4.acked(id(1), 1);
        s4.acked(id(2), 1);
        // Member 3 acked epoch 1 of another view history, not this one's.
        s4.acked(id(3), 2);
        s4.observe(&Observation { commit_index: 1, entries: &log()[..1], ..leader_step(10, 1) }).unwrap();
        let violation = s4.observe(&leader_step(20, 1)).unwrap_err();
        assert_eq!(violation.invariant, "S4");
        assert!(violation.detail.contains("never acked 1"), "{violation}");
    }

    #[test]
    fn two_stables_of_one_epoch_are_caught() {
        let mut s4 = StableAfterAcks::default();
        for member in 1..=3 {
            s4.acked(id(member), 1);
        }
        let twice = entries([
            entry(1, 1, Payload::View(view(1, &[1, 2, 3]))),
            entry(2, 1, Payload::Stable { epoch: 1 }),
            entry(3, 1, Payload::Stable { epoch: 1 }),
        ]);
        let violation = s4.observe(&Observation { commit_index: 3, entries: twice, ..leader_step(10, 3) }).unwrap_err();
        assert!(violation.detail.contains("two Stable(1)"), "{violation}");
    }

    #[test]
    fn cluster_stable_reported_by_a_follower_is_caught() {
        let mut s4 = StableAfterAcks::default();
        let changed = events([Event::LeaderChanged { leader: Some(id(1)), term: 1 }]);
        s4.observe(&Observation { events: changed, ..step(10, 1, 2, 1) }).unwrap();
        let reported = events([Event::ClusterStable(view(1, &[1, 2]))]);
        let violation = s4.observe(&Observation { events: reported, ..step(20, 1, 2, 1) }).unwrap_err();
        assert!(violation.detail.contains("while not leading"), "{violation}");
    }
}
