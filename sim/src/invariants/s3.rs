//! **S3**: for each epoch, every member that delivers it delivers the same
//! members; within one boot of a member, delivered epochs strictly increase.
//!
//! The core's checker ([`quorate_core::testing::ViewAgreement`]) fed from
//! the real adapter: every `Rebalance` a member's application received, and
//! every `View` entry its log holds at or below its commit index.

use quorate_core::testing;
use quorate_core::{Event, MemberId};

use super::{Observation, Violation};

/// See the module doc.
#[derive(Debug, Default)]
pub struct ViewAgreement(testing::ViewAgreement);

impl ViewAgreement {
    /// Epochs whose members are known so far.
    pub fn epochs(&self) -> usize {
        self.0.epochs()
    }

    /// The index up to which `member`'s committed log was checked.
    pub fn scanned_up_to(&self, member: MemberId) -> u64 {
        self.0.scanned_up_to(member)
    }

    /// Checks one step.
    pub fn observe(&mut self, step: &Observation<'_>) -> Result<(), Violation> {
        for event in step.events {
            if let Event::Rebalance(view) = event {
                self.0.observe_delivery(step.at, step.slot, step.member, step.boot_id, step.uuid, view)?;
            }
        }
        self.0.observe_log(step.at, step.slot, step.member, step.uuid, step.commit_index, step.entries)
    }
}

#[cfg(test)]
mod tests {
    use quorate_core::raft::Payload;

    use super::*;
    use crate::invariants::synthetic::*;

    #[test]
    fn members_delivering_the_committed_views_in_order_agree() {
        let mut s3 = ViewAgreement::default();
        let log = entries([entry(1, 1, Payload::View(view(1, &[1]))), entry(2, 1, Payload::View(view(2, &[1, 2])))]);
        let delivered = events([Event::Rebalance(view(2, &[1, 2]))]);
        s3.observe(&Observation { commit_index: 2, entries: log, events: delivered, ..step(10, 0, 1, 1) }).unwrap();
        s3.observe(&Observation { commit_index: 2, entries: log, events: delivered, ..step(11, 1, 2, 1) }).unwrap();
        assert_eq!(s3.epochs(), 2);
    }

    #[test]
    fn an_epoch_delivered_with_other_members_is_caught() {
        let mut s3 = ViewAgreement::default();
        s3.observe(&Observation { events: events([Event::Rebalance(view(4, &[1, 2]))]), ..step(10, 0, 1, 1) }).unwrap();
        let other = events([Event::Rebalance(view(4, &[1, 3]))]);
        let violation = s3.observe(&Observation { events: other, ..step(11, 1, 3, 1) }).unwrap_err();
        assert_eq!(violation.invariant, "S3");
        assert!(violation.detail.contains("epoch 4 names two member sets"), "{violation}");
    }

    #[test]
    fn an_older_epoch_delivered_after_a_newer_one_is_caught() {
        let mut s3 = ViewAgreement::default();
        let out_of_order = events([Event::Rebalance(view(3, &[1, 2])), Event::Rebalance(view(2, &[1]))]);
        let violation = s3.observe(&Observation { events: out_of_order, ..step(10, 0, 1, 1) }).unwrap_err();
        assert!(violation.detail.contains("strictly increase"), "{violation}");
        // After a restart (a new boot) the current view is delivered again: fine.
        let mut s3 = ViewAgreement::default();
        let again = events([Event::Rebalance(view(3, &[1, 2]))]);
        s3.observe(&Observation { events: again, ..step(10, 0, 1, 1) }).unwrap();
        s3.observe(&Observation { boot_id: 2, events: again, ..step(20, 0, 1, 1) }).unwrap();
    }
}
