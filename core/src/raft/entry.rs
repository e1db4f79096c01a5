//! Log entries (DESIGN §3.2): what the Raft log carries.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::id::MemberId;
use crate::view::View;
use crate::wire::{BoundedVec, limits};

/// One log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The term of the leader that appended it.
    pub term: u64,
    /// Its position in the log, from 1.
    pub index: u64,
    /// What it says.
    pub payload: Payload,
}

/// What an entry says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Payload {
    /// Appended by a new leader to commit an entry of its own term (§5.4.2).
    Noop,
    /// A new configuration; takes effect when appended, not when committed
    /// (dissertation §4.1).
    Config(Configuration),
    /// A new view of the members.
    View(View),
    /// Every member of view `epoch` acked it: the cluster is stable.
    Stable {
        /// The view's epoch.
        epoch: u64,
    },
    /// A client session registers; its id is this entry's index.
    Register {
        /// Log time (DESIGN §3.4), stamped by the leader.
        stamp: u64,
        /// The registering member's nonce, so it learns its session from
        /// its own log.
        nonce: u64,
    },
    /// An application command of a client session, applied once committed
    /// (DESIGN §3.4), at most once per (session, seq).
    Command {
        /// The client's session.
        session: u64,
        /// The command's number in the session.
        seq: u64,
        /// Every number below this was answered: their responses may go.
        confirmed_below: u64,
        /// Log time, stamped by the leader.
        stamp: u64,
        /// The command, opaque to the core.
        command: BoundedVec<u8, { limits::MAX_COMMAND_BYTES }>,
    },
}

impl Payload {
    /// A short, stable name of the payload kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Payload::Noop => "noop",
            Payload::Config(_) => "config",
            Payload::View(_) => "view",
            Payload::Stable { .. } => "stable",
            Payload::Register { .. } => "register",
            Payload::Command { .. } => "command",
        }
    }
}

/// Who votes and who only receives the log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Configuration {
    /// Members whose votes and acks count.
    pub voters: BTreeSet<MemberId>,
    /// Members that receive the log without voting.
    pub learners: BTreeSet<MemberId>,
}

impl Configuration {
    /// A configuration of these voters and no learners.
    pub fn of_voters(voters: impl IntoIterator<Item = MemberId>) -> Self {
        Configuration { voters: voters.into_iter().collect(), learners: BTreeSet::new() }
    }

    /// Whether `id` votes.
    pub fn is_voter(&self, id: MemberId) -> bool {
        self.voters.contains(&id)
    }

    /// Whether `id` receives the log (voter or learner).
    pub fn contains(&self, id: MemberId) -> bool {
        self.voters.contains(&id) || self.learners.contains(&id)
    }

    /// Voters and learners, sorted.
    pub fn members(&self) -> impl Iterator<Item = MemberId> + '_ {
        self.voters.iter().chain(&self.learners).copied()
    }

    /// How many members the configuration lists, which must stay within
    /// what a frame can carry.
    pub fn len(&self) -> usize {
        self.voters.len() + self.learners.len()
    }

    /// Whether it lists nobody.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks a decoded configuration: bounded, and nobody both voter and learner.
    pub fn is_valid(&self) -> bool {
        self.len() <= limits::MAX_MEMBERS && self.voters.is_disjoint(&self.learners)
    }
}

/// Entries in one append; a batch is also bounded by bytes (see
/// [`limits::MAX_APPEND_BYTES`]).
pub type Entries = BoundedVec<Entry, { limits::MAX_APPEND_ENTRIES }>;
