//! Views: agreed, numbered member sets (DESIGN §3.3).
//!
//! A view is committed through the Raft log, so every member that delivers
//! epoch `e` delivers the same members. The epoch is a fencing token the
//! application can hand to the systems it writes to. A view answers placement
//! questions by rendezvous hashing over its members, weighted by their
//! `capacity` tag.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::id::MemberId;
use crate::placement::{Capacity, Placement};
use crate::wire::{BoundedVec, Name, limits};

/// One member as a view records it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ViewMember {
    /// Durable id.
    pub id: MemberId,
    /// Name.
    pub name: Name,
    /// Address when the view was made.
    pub addr: SocketAddr,
    /// Placement weight, from the member's `capacity` tag (1 without one).
    pub capacity: u32,
}

/// An agreed, numbered set of members, sorted by durable id.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct View {
    /// The view's number; each view's is one more than the previous one's.
    pub epoch: u64,
    /// The members, sorted by durable id, without repeats.
    pub members: BoundedVec<ViewMember, { limits::MAX_MEMBERS }>,
    /// Live members left out because they did not ack in time (DESIGN §3.3
    /// item 6), sorted. Committed with the view, so a new leader keeps them
    /// out until they have been healthy for the hysteresis.
    pub lagging: BoundedVec<MemberId, { limits::MAX_MEMBERS }>,
}

impl View {
    /// A view of `members` (sorted and deduplicated by id here), with the
    /// lagging members left out.
    pub fn new(epoch: u64, mut members: Vec<ViewMember>, mut lagging: Vec<MemberId>) -> Self {
        members.sort_by_key(|member| member.id);
        members.dedup_by_key(|member| member.id);
        members.truncate(limits::MAX_MEMBERS);
        lagging.sort();
        lagging.dedup();
        lagging.truncate(limits::MAX_MEMBERS);
        View {
            epoch,
            members: BoundedVec::try_from_vec(members).expect("truncated to the limit"),
            lagging: BoundedVec::try_from_vec(lagging).expect("truncated to the limit"),
        }
    }

    /// Whether `id` is held lagging in this view.
    pub fn is_lagging(&self, id: MemberId) -> bool {
        self.lagging.binary_search(&id).is_ok()
    }

    /// Whether `id` is a member of this view.
    pub fn contains(&self, id: MemberId) -> bool {
        self.members.binary_search_by_key(&id, |member| member.id).is_ok()
    }

    /// The members' durable ids, sorted.
    pub fn ids(&self) -> impl Iterator<Item = MemberId> + '_ {
        self.members.iter().map(|member| member.id)
    }

    /// Whether the two views name the same members (ignoring epochs and addresses).
    pub fn same_members(&self, ids: &[MemberId]) -> bool {
        self.members.len() == ids.len() && self.ids().zip(ids).all(|(a, &b)| a == b)
    }

    /// Rendezvous placement over this view's members, weighted by capacity.
    pub fn placement(&self) -> Placement {
        Placement::weighted(
            self.members.iter().map(|member| (member.id, Capacity::new(member.capacity).unwrap_or(Capacity::ONE))),
        )
    }

    /// The member that owns `key` in this view.
    pub fn owner(&self, key: &[u8]) -> Option<MemberId> {
        self.placement().owner(key)
    }

    /// The `n` members that own `key`, best first.
    pub fn owners(&self, key: &[u8], n: usize) -> Vec<MemberId> {
        self.placement().owners(key, n)
    }
}
