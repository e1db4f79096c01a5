//! Membership messages: SWIM's probes and gossip, and the push-pull exchange.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::id::MemberId;
use crate::membership::member::{MemberInfo, State, Version};
use crate::wire::{BoundedVec, limits};

/// Updates piggybacked on one datagram.
pub type Updates = BoundedVec<Update, { limits::MAX_PIGGYBACK }>;

/// One membership message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// A direct probe of `target`; answered with an [`Message::Ack`] of the same `seq`.
    Ping {
        /// Chosen by the prober (or the relaying member) to match the ack.
        seq: u32,
        /// Who the probe is for; a member that is not `target` stays silent.
        target: MemberId,
        /// Piggybacked updates.
        updates: Updates,
    },
    /// The answer to a ping, or a relayed answer to a `ping_req`.
    Ack {
        /// The `seq` of the ping or `ping_req` answered.
        seq: u32,
        /// Piggybacked updates.
        updates: Updates,
    },
    /// Asks the receiver to probe `target` on the sender's behalf.
    PingReq {
        /// The requester's probe `seq`, used in the relayed ack or nack.
        seq: u32,
        /// Member to probe.
        target: MemberId,
        /// Where to probe it.
        target_addr: SocketAddr,
        /// Piggybacked updates.
        updates: Updates,
    },
    /// Lifeguard: the relay got no ack from the target in time. Tells the
    /// requester that the relay, at least, is alive and reachable.
    Nack {
        /// The requester's probe `seq`.
        seq: u32,
    },
    /// Updates only, sent every gossip interval while any are pending.
    Gossip {
        /// The updates.
        updates: Updates,
    },
    /// Full-state exchange over a stream (anti-entropy, and how a member joins).
    PushPull(PushPull),
}

impl Message {
    /// A short, stable name of the message kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Ping { .. } => "ping",
            Message::Ack { .. } => "ack",
            Message::PingReq { .. } => "ping_req",
            Message::Nack { .. } => "nack",
            Message::Gossip { .. } => "gossip",
            Message::PushPull(push_pull) if push_pull.reply => "push_pull_reply",
            Message::PushPull(_) => "push_pull",
        }
    }
}

/// Every member the sender knows, dead and left ones included.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushPull {
    /// Sent to a seed to join through it.
    pub join: bool,
    /// This is the answer to a push-pull; do not answer it.
    pub reply: bool,
    /// The sender's member table, its own record included.
    pub members: BoundedVec<MemberInfo, { limits::MAX_MEMBERS }>,
}

/// A claim about one member, disseminated by piggybacking and gossip.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Update {
    /// The member is alive at this version, with this address and tags. The
    /// record's own `state` field is ignored.
    Alive(MemberInfo),
    /// `from` suspects the member at this version.
    Suspect {
        /// Member suspected.
        id: MemberId,
        /// Its boot.
        boot_id: u64,
        /// Its incarnation.
        incarnation: u32,
        /// Who suspects it: independent suspicions shorten the timeout.
        from: MemberId,
    },
    /// `from` declared the member dead at this version.
    Dead {
        /// Member declared dead.
        id: MemberId,
        /// Its boot.
        boot_id: u64,
        /// Its incarnation.
        incarnation: u32,
        /// Who declared it.
        from: MemberId,
    },
    /// The member left gracefully at this version.
    Left {
        /// Member that left.
        id: MemberId,
        /// Its boot.
        boot_id: u64,
        /// Its incarnation.
        incarnation: u32,
    },
}

impl Update {
    /// The member the claim is about.
    pub fn subject(&self) -> MemberId {
        match self {
            Update::Alive(info) => info.id,
            Update::Suspect { id, .. } | Update::Dead { id, .. } | Update::Left { id, .. } => *id,
        }
    }

    /// The version the claim carries.
    pub fn version(&self) -> Version {
        match self {
            Update::Alive(info) => Version::new(info.boot_id, info.incarnation, State::Alive),
            Update::Suspect { boot_id, incarnation, .. } => Version::new(*boot_id, *incarnation, State::Suspect),
            Update::Dead { boot_id, incarnation, .. } => Version::new(*boot_id, *incarnation, State::Dead),
            Update::Left { boot_id, incarnation, .. } => Version::new(*boot_id, *incarnation, State::Left),
        }
    }
}
