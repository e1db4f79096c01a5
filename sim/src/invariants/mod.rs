//! The invariants of DESIGN §5, one file each, fed every step of every
//! member of a run (STYLE "Tests": openraft's `invariants/`, TigerBeetle's
//! state checker outside the replica).
//!
//! A member's driver calls the harness after each step of its core
//! (`Builder::observer`); the harness turns the step into an
//! [`Observation`] and hands it to every checker. Each checker also has the
//! inputs only the harness knows (which processes run, which acks the
//! application sent, which faults struck). A checker returns the first
//! [`Violation`] with its evidence, and the run stops there.
//!
//! S1, S3 and S4 reuse the checkers the core's deterministic driver runs
//! (`quorate_core::testing`), fed here from the real adapter instead; the
//! others are the simulator's own. Every file tests its checker on synthetic
//! histories: it accepts a good one and catches a bad one.

pub mod d1;
pub mod l1;
pub mod linearizability;
pub mod s1;
pub mod s2;
pub mod s3;
pub mod s4;
pub mod s5;
pub mod s6;

use quorate_core::raft::Entry;
pub use quorate_core::testing::{NodeIdx, Violation};
use quorate_core::{ClusterUuid, Event, Instant, MemberId};

/// One step of one member, as the checkers see it.
#[derive(Clone, Copy)]
pub struct Observation<'a> {
    /// Virtual time since the run started.
    pub at: Instant,
    /// The member's slot.
    pub slot: NodeIdx,
    /// Its durable id.
    pub member: MemberId,
    /// Its boot id.
    pub boot_id: u64,
    /// Its cluster's uuid (nil before it bootstrapped or joined).
    pub uuid: ClusterUuid,
    /// Its Raft term.
    pub term: u64,
    /// Whether it leads `term`.
    pub leading: bool,
    /// The leader it knows for `term`.
    pub leader: Option<MemberId>,
    /// Its commit index.
    pub commit_index: u64,
    /// Its log from the first entry not yet checked for this member (the
    /// committed part once, the uncommitted tail each time).
    pub entries: &'a [Entry],
    /// The last index compacted into its snapshot: its log holds the
    /// entries after it.
    pub snapshot_index: u64,
    /// The term of the entry at an index of its log, if it holds one there
    /// (not compacted away, not past the end).
    pub term_at: &'a dyn Fn(u64) -> Option<u64>,
    /// The events the step raised, in order.
    pub events: &'a [Event],
}

/// Every safety checker of a run.
#[derive(Debug, Default)]
pub struct Checkers {
    /// S1: at most one leader per term.
    pub s1: s1::OneLeaderPerTerm,
    /// S2: committed entries form prefixes of one sequence.
    pub s2: s2::OneSequence,
    /// S3: one member set per epoch; delivered epochs increase.
    pub s3: s3::ViewAgreement,
    /// S4: at most one `Stable` per epoch, after every ack.
    pub s4: s4::StableAfterAcks,
    /// S5: nothing reported committed is lost.
    pub s5: s5::NothingLost,
    /// S6: no live member declared dead while detection is undisturbed.
    pub s6: s6::NoFalseDeath,
}

impl Checkers {
    /// Checks one step against every invariant.
    pub fn observe(&mut self, observation: &Observation<'_>) -> Result<(), Violation> {
        self.s1.observe(observation)?;
        self.s2.observe(observation)?;
        self.s3.observe(observation)?;
        self.s4.observe(observation)?;
        self.s5.observe(observation)?;
        self.s6.observe(observation)
    }

    /// The index up to which `member`'s committed log has been checked by
    /// every checker: the next observation's entries start after it.
    pub fn scanned_up_to(&self, member: MemberId) -> u64 {
        self.s2.scanned_up_to(member).min(self.s3.scanned_up_to(member)).min(self.s4.scanned_up_to(member))
    }
}

#[cfg(test)]
pub(crate) mod synthetic {
    //! Building blocks of synthetic histories.

    use quorate_core::raft::{Entry, Payload};
    use quorate_core::view::{View, ViewMember};
    use quorate_core::{ClusterUuid, Event, Instant, MemberId};

    use super::{NodeIdx, Observation};

    pub const UUID: ClusterUuid = ClusterUuid([7; 16]);

    pub fn id(n: u128) -> MemberId {
        MemberId::from_u128(n)
    }

    pub fn at(millis: u64) -> Instant {
        Instant::from_nanos(millis * 1_000_000)
    }

    pub fn view(epoch: u64, members: &[u128]) -> View {
        let members = members
            .iter()
            .map(|&n| ViewMember {
                id: id(n),
                name: format!("n{n}").parse().expect("a short name"),
                addr: ([10, 0, 0, n as u8], 7946).into(),
                capacity: 1,
            })
            .collect();
        View::new(epoch, members, Vec::new())
    }

    pub fn entry(index: u64, term: u64, payload: Payload) -> Entry {
        Entry { index, term, payload }
    }

    pub fn no_term(_: u64) -> Option<u64> {
        None
    }

    /// A step of member `member` in slot `slot` at `millis`, boot 1,
    /// following term `term` with nothing committed and nothing raised.
    pub fn step(millis: u64, slot: usize, member: u128, term: u64) -> Observation<'static> {
        Observation {
            at: at(millis),
            slot: NodeIdx(slot),
            member: id(member),
            boot_id: 1,
            uuid: UUID,
            term,
            leading: false,
            leader: None,
            commit_index: 0,
            snapshot_index: 0,
            entries: &[],
            term_at: &no_term,
            events: &[],
        }
    }

    pub fn events<const N: usize>(events: [Event; N]) -> &'static [Event] {
        Vec::leak(events.to_vec())
    }

    pub fn entries<const N: usize>(entries: [Entry; N]) -> &'static [Entry] {
        Vec::leak(entries.to_vec())
    }
}
