//! A member record, and the order in which claims about a member win.
//!
//! SWIM (Das et al. 2002, §4.2) orders claims by incarnation: an `alive` with a
//! higher incarnation overrides a suspicion, and at equal incarnation
//! `suspect` overrides `alive` and `dead` overrides both. quorate adds the boot
//! id in front (DESIGN §3.1) and `left` at the top, so one [`Version`] triple
//! orders every claim: newer boot, then higher incarnation, then the graver
//! state. A claim applies only if its version is greater than what we hold.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::bootstrap::ClusterClaim;
use crate::id::MemberId;
use crate::wire::{Name, Tags};

/// A member's liveness as one node sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
pub enum State {
    /// Answering probes, or not yet suspected.
    Alive,
    /// Missed a probe; declared dead unless it refutes in time.
    Suspect,
    /// Failed to refute a suspicion in time.
    Dead,
    /// Left gracefully. Never reported as a failure.
    Left,
}

impl State {
    /// Gravity at equal incarnation: a graver claim overrides a milder one.
    pub(crate) const fn rank(self) -> u8 {
        match self {
            State::Alive => 0,
            State::Suspect => 1,
            State::Dead => 2,
            State::Left => 3,
        }
    }

    /// Whether a member in this state is taken to be running (and is probed).
    pub const fn is_live(self) -> bool {
        matches!(self, State::Alive | State::Suspect)
    }

    /// A stable lower-case name for logs and the admin API.
    pub const fn as_str(self) -> &'static str {
        match self {
            State::Alive => "alive",
            State::Suspect => "suspect",
            State::Dead => "dead",
            State::Left => "left",
        }
    }
}

/// Everything known about one member; also its record in a push-pull exchange.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Durable id.
    pub id: MemberId,
    /// Name.
    pub name: Name,
    /// Address for datagrams and streams.
    pub addr: SocketAddr,
    /// Raised on every start of the member's process.
    pub boot_id: u64,
    /// Raised by the member to refute a suspicion or announce a change.
    pub incarnation: u32,
    /// Liveness.
    pub state: State,
    /// The member is in its leaving phase: still reachable, handing off.
    pub leaving: bool,
    /// Tags.
    pub tags: Tags,
    /// Its storage survives a restart, so it may vote (DESIGN §3.2).
    pub durable: bool,
    /// Its cluster membership: waiting to bootstrap or join, or the uuid of
    /// the cluster it belongs to.
    pub cluster: ClusterClaim,
}

impl MemberInfo {
    /// The version of what this record claims.
    pub fn version(&self) -> Version {
        Version::new(self.boot_id, self.incarnation, self.state)
    }
}

/// The order of claims about one member (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// Boot id the claim is about.
    pub boot_id: u64,
    /// Incarnation the claim is about.
    pub incarnation: u32,
    /// [`State::rank`] of the claimed state.
    rank: u8,
}

impl Version {
    /// The version of a claim that the member was in `state` at `(boot_id, incarnation)`.
    pub const fn new(boot_id: u64, incarnation: u32, state: State) -> Self {
        Version { boot_id, incarnation, rank: state.rank() }
    }

    /// The state claimed.
    pub const fn state(self) -> State {
        match self.rank {
            0 => State::Alive,
            1 => State::Suspect,
            2 => State::Dead,
            _ => State::Left,
        }
    }

    /// The same boot and incarnation, claiming `state`.
    pub const fn with_state(self, state: State) -> Self {
        Version::new(self.boot_id, self.incarnation, state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use State::*;

    #[test]
    fn claims_are_ordered_by_boot_then_incarnation_then_gravity() {
        // SWIM §4.2 precedence, extended with boot ids and `left` (DESIGN §3.1).
        // (current, claim, claim applies)
        let table = [
            ((1, 0, Alive), (1, 0, Suspect), true),
            ((1, 0, Suspect), (1, 0, Suspect), false), // a confirmation, not news
            ((1, 0, Suspect), (1, 1, Alive), true),    // refutation
            ((1, 1, Alive), (1, 0, Suspect), false),   // stale suspicion
            ((1, 0, Suspect), (1, 0, Dead), true),
            ((1, 0, Dead), (1, 0, Alive), false), // the dead cannot be revived at the same incarnation
            ((1, 0, Dead), (1, 1, Alive), true),
            ((1, 0, Dead), (1, 0, Left), true),
            ((1, 0, Left), (1, 0, Dead), false), // a leave is never turned into a failure
            ((1, 5, Alive), (2, 0, Alive), true), // a new boot wins whatever its incarnation
            ((2, 0, Alive), (1, 9, Dead), false), // news of an old boot never touches the new one
            ((2, 0, Left), (2, 1, Alive), true), // rejoin after leaving
        ];
        for (index, ((b0, i0, s0), (b1, i1, s1), applies)) in table.into_iter().enumerate() {
            let current = Version::new(b0, i0, s0);
            let claim = Version::new(b1, i1, s1);
            assert_eq!(claim > current, applies, "row {index}: {claim:?} over {current:?}");
        }
    }
}
