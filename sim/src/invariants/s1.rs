//! **S1**: at most one leader per term.
//!
//! The core's checker ([`quorate_core::testing::OneLeaderPerTerm`]) fed from
//! the real adapter: a member's own claim (it leads its term), the leader it
//! accepted for its term, and every `LeaderChanged` it reported (which also
//! catches a leadership that begins and ends within one step).

use quorate_core::Event;
use quorate_core::testing::{self, LeaderSource};

use super::{Observation, Violation};

/// See the module doc.
#[derive(Debug, Default)]
pub struct OneLeaderPerTerm(testing::OneLeaderPerTerm);

impl OneLeaderPerTerm {
    /// Terms with a known leader so far.
    pub fn terms(&self) -> usize {
        self.0.terms()
    }

    /// Checks one step.
    pub fn observe(&mut self, step: &Observation<'_>) -> Result<(), Violation> {
        for event in step.events {
            if let &Event::LeaderChanged { leader: Some(leader), term } = event {
                self.0.observe(step.at, step.slot, term, leader, LeaderSource::Reported)?;
            }
        }
        if step.leading {
            self.0.observe(step.at, step.slot, step.term, step.member, LeaderSource::Role)?;
        }
        if let Some(leader) = step.leader {
            self.0.observe(step.at, step.slot, step.term, leader, LeaderSource::Known)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::synthetic::*;

    #[test]
    fn one_leader_known_by_all_is_fine() {
        let mut s1 = OneLeaderPerTerm::default();
        s1.observe(&Observation { leading: true, leader: Some(id(1)), ..step(10, 0, 1, 3) }).unwrap();
        s1.observe(&Observation { leader: Some(id(1)), ..step(11, 1, 2, 3) }).unwrap();
        // A new term with another leader is a new election, not a violation.
        s1.observe(&Observation { leading: true, leader: Some(id(2)), ..step(20, 1, 2, 4) }).unwrap();
        assert_eq!(s1.terms(), 2);
    }

    #[test]
    fn two_members_leading_one_term_is_caught() {
        let mut s1 = OneLeaderPerTerm::default();
        s1.observe(&Observation { leading: true, leader: Some(id(1)), ..step(10, 0, 1, 3) }).unwrap();
        let violation = s1.observe(&Observation { leading: true, leader: Some(id(2)), ..step(12, 1, 2, 3) });
        let violation = violation.unwrap_err();
        assert_eq!(violation.invariant, "S1");
        assert!(violation.detail.contains("term 3 has two leaders"), "{violation}");
    }

    #[test]
    fn a_leadership_seen_only_in_an_event_is_caught() {
        let mut s1 = OneLeaderPerTerm::default();
        s1.observe(&Observation { leader: Some(id(1)), ..step(10, 2, 3, 5) }).unwrap();
        let events = events([Event::LeaderChanged { leader: Some(id(2)), term: 5 }]);
        let violation = s1.observe(&Observation { events, ..step(11, 1, 4, 6) }).unwrap_err();
        assert_eq!(violation.invariant, "S1");
    }
}
