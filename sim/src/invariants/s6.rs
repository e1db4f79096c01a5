//! **S6**: with loss ≤ 10 %, no crash, no partition, no pause and no
//! latency spike, no live member is ever declared dead.
//!
//! Checked while it applies: from the start of a run whose network stays
//! within those bounds (corruption counts as loss, BUGGIFY as a fault) until
//! the first fault that disturbs detection, after which a suspicion begun
//! before may rightly end in a declaration. Members joining are no fault.
//! While it applies, a `MemberFailed` about a member whose process is
//! running, or about one that completed a graceful leave, is a violation.

use std::collections::BTreeSet;

use quorate_core::{Event, Instant, MemberId};

use super::{Observation, Violation};

/// See the module doc.
#[derive(Debug, Default)]
pub struct NoFalseDeath {
    /// Since when, and why, S6 no longer applies.
    off: Option<(Instant, String)>,
    /// Members whose process runs.
    running: BTreeSet<MemberId>,
    /// Members that left gracefully.
    left: BTreeSet<MemberId>,
}

impl NoFalseDeath {
    /// A checker for a run that starts outside S6's conditions.
    pub fn off_from_start(why: &str) -> Self {
        NoFalseDeath { off: Some((Instant::ZERO, why.to_owned())), ..Self::default() }
    }

    /// Since when and why S6 stopped applying, if it did.
    pub fn off_since(&self) -> Option<&(Instant, String)> {
        self.off.as_ref()
    }

    /// A fault that disturbs detection struck: S6 applies no more.
    pub fn disturbed(&mut self, at: Instant, why: String) {
        self.off.get_or_insert((at, why));
    }

    /// `member`'s process runs (or stopped running).
    pub fn set_running(&mut self, member: MemberId, running: bool) {
        if running {
            self.running.insert(member);
        } else {
            self.running.remove(&member);
        }
    }

    /// `member` completed a graceful leave.
    pub fn left(&mut self, member: MemberId) {
        self.left.insert(member);
    }

    /// Checks one step.
    pub fn observe(&mut self, step: &Observation<'_>) -> Result<(), Violation> {
        if self.off.is_some() {
            return Ok(());
        }
        for event in step.events {
            let Event::MemberFailed(info) = event else { continue };
            let why = if self.running.contains(&info.id) {
                "its process is running"
            } else if self.left.contains(&info.id) {
                "it left gracefully"
            } else {
                continue;
            };
            return Err(Violation {
                invariant: "S6",
                at: step.at,
                detail: format!(
                    "{} ({}) declared {} ({}) dead, but {why}, and no fault has disturbed detection",
                    step.slot, step.member, info.id, info.name
                ),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use quorate_core::{MemberInfo, State, Tags};

    use super::*;
    use crate::invariants::synthetic::*;

    fn failed(member: u128) -> &'static [Event] {
        let info = MemberInfo {
            id: id(member),
            name: format!("n{member}").parse().unwrap(),
            addr: ([10, 0, 0, member as u8], 7946).into(),
            boot_id: 1,
            incarnation: 0,
            state: State::Dead,
            leaving: false,
            tags: Tags::new(),
            durable: true,
            cluster: Default::default(),
        };
        events([Event::MemberFailed(info)])
    }

    #[test]
    fn a_crashed_member_declared_dead_is_fine() {
        let mut s6 = NoFalseDeath::default();
        s6.set_running(id(2), true);
        s6.set_running(id(2), false);
        s6.observe(&Observation { events: failed(2), ..step(10, 0, 1, 1) }).unwrap();
    }

    #[test]
    fn a_running_member_declared_dead_is_caught() {
        let mut s6 = NoFalseDeath::default();
        s6.set_running(id(2), true);
        let violation = s6.observe(&Observation { events: failed(2), ..step(10, 0, 1, 1) }).unwrap_err();
        assert_eq!(violation.invariant, "S6");
        assert!(violation.detail.contains("its process is running"), "{violation}");
    }

    #[test]
    fn a_member_that_left_declared_dead_is_caught() {
        let mut s6 = NoFalseDeath::default();
        s6.left(id(3));
        let violation = s6.observe(&Observation { events: failed(3), ..step(10, 0, 1, 1) }).unwrap_err();
        assert!(violation.detail.contains("left gracefully"), "{violation}");
    }

    #[test]
    fn once_disturbed_it_no_longer_applies() {
        let mut s6 = NoFalseDeath::default();
        s6.set_running(id(2), true);
        s6.disturbed(at(5), "pause n1".into());
        s6.observe(&Observation { events: failed(2), ..step(10, 0, 1, 1) }).unwrap();
        assert_eq!(s6.off_since().unwrap().0, at(5));
        assert!(NoFalseDeath::off_from_start("loss 20 %").off_since().is_some());
    }
}
