//! Checks a test asserts on a running simulation: convergence of the
//! membership views, and S6 (no live member declared dead) at every step.

use std::collections::BTreeMap;

use super::{EventRecord, NodeIdx, Sim};
use crate::id::MemberId;
use crate::membership::{MemberInfo, State};
use crate::node::Event;

/// Why an observer's membership view is not (yet) the expected one: the
/// first discrepancy found, for an assertion message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotConverged {
    /// The node whose view differs.
    pub observer: NodeIdx,
    /// What differs, in words.
    pub reason: String,
}

impl core::fmt::Display for NotConverged {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} {}", self.observer, self.reason)
    }
}

impl std::error::Error for NotConverged {}

/// The members an observer must see alive: durable id ⇒ slot and boot id.
type Expected = BTreeMap<MemberId, (NodeIdx, u64)>;

impl Sim {
    /// Whether every running node sees exactly the up nodes, itself included,
    /// as `Alive` in their current boot, and no other member as alive or
    /// suspect. Paused nodes count as up but are not asked. A node that left
    /// gracefully and is still up keeps this false: crash it once it reports
    /// [`Event::LeaveComplete`].
    pub fn converged(&self) -> bool {
        self.check_converged().is_ok()
    }

    /// [`Sim::converged`], saying what is still missing.
    pub fn check_converged(&self) -> Result<(), NotConverged> {
        let up: Vec<NodeIdx> = self.up_nodes().collect();
        self.check_groups_converged(&[&up])
    }

    /// Whether each group converged on its own: every running node of a group
    /// sees exactly the group's up nodes alive. For the sides of a partition.
    pub fn groups_converged(&self, groups: &[&[NodeIdx]]) -> bool {
        self.check_groups_converged(groups).is_ok()
    }

    /// [`Sim::groups_converged`], saying what is still missing.
    pub fn check_groups_converged(&self, groups: &[&[NodeIdx]]) -> Result<(), NotConverged> {
        for group in groups {
            let up: Vec<NodeIdx> = group.iter().copied().filter(|&idx| self.is_up(idx)).collect();
            let expected = self.expected(&up);
            for &observer in group.iter().filter(|&&idx| self.is_running(idx)) {
                self.check_view(observer, &expected)?;
            }
        }
        Ok(())
    }

    /// Whether `observer` sees exactly `expected` as `Alive` in their current
    /// boots and no other member as alive or suspect. Panics if an expected
    /// node is down (no boot of it can be alive).
    pub fn check_sees(&self, observer: NodeIdx, expected: &[NodeIdx]) -> Result<(), NotConverged> {
        for &idx in expected {
            assert!(self.is_up(idx), "check_sees: expected {idx} is down");
        }
        self.check_view(observer, &self.expected(expected))
    }

    fn expected(&self, nodes: &[NodeIdx]) -> Expected {
        nodes.iter().filter_map(|&idx| self.node(idx).map(|node| (node.id(), (idx, node.boot_id())))).collect()
    }

    fn check_view(&self, observer: NodeIdx, expected: &Expected) -> Result<(), NotConverged> {
        let fail = |reason: String| Err(NotConverged { observer, reason });
        let Some(node) = self.node(observer) else {
            return fail("is down".into());
        };
        let mut seen = 0;
        for info in node.members() {
            match (info.state, expected.get(&info.id)) {
                (State::Alive, Some(&(_, boot_id))) if info.boot_id == boot_id => seen += 1,
                (_, Some(&(idx, boot_id))) => {
                    return fail(format!(
                        "holds {} {}, but {idx} is up in boot {boot_id}",
                        describe(info),
                        info.state.as_str()
                    ));
                }
                (State::Alive | State::Suspect, None) => {
                    let who = self
                        .node_of(info.id)
                        .map_or_else(|| "no slot holds it".into(), |idx| format!("{idx} is not expected"));
                    return fail(format!("holds {} {}, but {who}", describe(info), info.state.as_str()));
                }
                (State::Dead | State::Left, None) => {}
            }
        }
        if seen < expected.len() {
            let missing = expected.iter().find(|&(&id, _)| node.member(id).is_none());
            let missing = missing.map_or_else(|| "a member".into(), |(_, (idx, _))| idx.to_string());
            return fail(format!("does not know {missing}"));
        }
        Ok(())
    }
}

fn describe(info: &MemberInfo) -> String {
    format!("{} ({}, boot {})", info.name, info.id, info.boot_id)
}

/// S6 over the latest step: the [`Event::MemberFailed`] reports of it about
/// a member that is up (paused counts) in the very boot declared dead.
///
/// S6 holds only with loss ≤ 10 % and no crash, partition or pause, so a
/// test checks it only while [`Sim::faults`] is empty.
pub fn live_members_declared_failed(sim: &Sim) -> impl Iterator<Item = &EventRecord> {
    sim.step_events().iter().filter(move |record| match &record.event {
        Event::MemberFailed(info) => {
            sim.node_of(info.id).and_then(|idx| sim.node(idx)).is_some_and(|node| node.boot_id() == info.boot_id)
        }
        _ => false,
    })
}

/// A step hook that panics on the first S6 violation
/// ([`live_members_declared_failed`]), naming the seed to replay:
/// `sim.set_step_hook(assert_no_live_member_failed)`.
pub fn assert_no_live_member_failed(sim: &Sim) {
    if let Some(record) = live_members_declared_failed(sim).next() {
        let subject = record.subject().and_then(|id| sim.node_of(id)).map_or_else(String::new, |idx| idx.to_string());
        panic!(
            "S6 violated at {}: {} declared {subject} dead while it is up; {:?} (Sim::new({}))",
            record.at,
            record.node,
            record.event,
            sim.seed()
        );
    }
}
