//! **L1**: after the faults stop, within a bound the scenario states: one
//! leader known to all live members, one view of exactly the live
//! non-lagging members on all of them, and `Stable` committed for it.
//!
//! The harness keeps each member's state as its last step left it
//! ([`MemberState`], the core driver's type) and asks [`Liveness`] whether
//! the live ones (running, not left) agree, every 100 ms of virtual time
//! after the faults end, until they do or the bound passes.

use quorate_core::testing::Liveness;
pub use quorate_core::testing::MemberState;

/// Whether L1 holds over the live members' states; if not, the first reason.
pub fn check(live: &[MemberState]) -> Result<(), String> {
    Liveness::check_states(live)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::NodeIdx;
    use crate::invariants::synthetic::id;

    fn settled(slot: usize, member: u128) -> MemberState {
        MemberState {
            node: NodeIdx(slot),
            id: Some(id(member)),
            running: true,
            leading: member == 1,
            leader: Some(id(1)),
            view: Some((4, vec![id(1), id(2), id(3)])),
            stable: true,
            lagging: Vec::new(),
        }
    }

    #[test]
    fn a_settled_cluster_holds() {
        check(&[settled(0, 1), settled(1, 2), settled(2, 3)]).unwrap();
    }

    #[test]
    fn each_way_of_not_being_settled_is_caught() {
        let mut no_leader = settled(1, 2);
        no_leader.leader = None;
        assert!(check(&[settled(0, 1), no_leader, settled(2, 3)]).unwrap_err().contains("n1 knows None"));
        let mut first_without = settled(0, 1);
        first_without.leader = None;
        assert!(check(&[first_without, settled(1, 2)]).unwrap_err().contains("knows no leader"));

        let mut old_view = settled(2, 3);
        old_view.view = Some((3, vec![id(1), id(2), id(3)]));
        assert!(check(&[settled(0, 1), settled(1, 2), old_view]).unwrap_err().contains("holds view"));

        // A fourth live member the view leaves out.
        let mut fourth = settled(3, 4);
        fourth.stable = true;
        let reason = check(&[settled(0, 1), settled(1, 2), settled(2, 3), fourth]).unwrap_err();
        assert!(reason.contains("live non-lagging members"), "{reason}");

        let mut unstable = settled(1, 2);
        unstable.stable = false;
        assert!(check(&[settled(0, 1), unstable, settled(2, 3)]).unwrap_err().contains("no Stable"));
    }

    #[test]
    fn a_lagging_member_left_out_of_the_view_holds() {
        let mut leader = settled(0, 1);
        leader.lagging = vec![id(4)];
        let mut lagging = settled(3, 4);
        lagging.leading = false;
        check(&[leader, settled(1, 2), settled(2, 3), lagging]).unwrap();
    }
}
