//! Raft messages (Raft §5, dissertation §4, §6, §9.6). The sender's id and
//! boot come from the envelope header.

use serde::{Deserialize, Serialize};

use crate::raft::entry::Entries;
use crate::wire::{BoundedVec, limits};

/// One Raft message; all travel on streams.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// A (pre-)candidate asks for a vote.
    RequestVote {
        /// The term the candidate campaigns for (for a pre-vote: the term it would campaign for).
        term: u64,
        /// The candidate's last log index.
        last_log_index: u64,
        /// The term of the candidate's last entry.
        last_log_term: u64,
        /// A pre-vote (dissertation §9.6): asks whether a real election could be won.
        pre_vote: bool,
        /// Sent on a leadership transfer: voters must not refuse because they
        /// heard from a leader recently.
        transfer: bool,
    },
    /// The answer to a vote request.
    Vote {
        /// The voter's term (for a granted pre-vote: the term asked for).
        term: u64,
        /// Whether it answers a pre-vote.
        pre_vote: bool,
        /// Granted or not.
        granted: bool,
    },
    /// Entries (possibly none: a heartbeat) to append after `prev_log_index`.
    Append {
        /// The leader's term.
        term: u64,
        /// Index of the entry just before the new ones.
        prev_log_index: u64,
        /// Its term.
        prev_log_term: u64,
        /// The entries.
        entries: Entries,
        /// The leader's commit index.
        leader_commit: u64,
        /// The leader's heartbeat round when it sent this; echoed in the
        /// answer, it proves the leader still led after the round began
        /// (ReadIndex, dissertation §6.4).
        round: u64,
    },
    /// The answer to an append.
    AppendResponse {
        /// The follower's term.
        term: u64,
        /// Whether the entries were appended.
        success: bool,
        /// On success the last index now matched; on refusal the
        /// `prev_log_index` that did not match.
        index: u64,
        /// On refusal, where the leader should retry from.
        next_hint: u64,
        /// The round of the append answered.
        round: u64,
    },
    /// One chunk of a snapshot of the core's state (§7).
    InstallSnapshot {
        /// The leader's term.
        term: u64,
        /// The snapshot's last included index.
        last_index: u64,
        /// The term of that entry.
        last_term: u64,
        /// Where this chunk starts in the snapshot's bytes.
        offset: u64,
        /// The snapshot's total size.
        total: u64,
        /// The bytes.
        data: BoundedVec<u8, { limits::SNAPSHOT_CHUNK_BYTES }>,
    },
    /// The answer to a snapshot chunk.
    SnapshotResponse {
        /// The follower's term.
        term: u64,
        /// The snapshot it answers.
        last_index: u64,
        /// Bytes received so far; equal to the total once installed.
        received: u64,
        /// Whether the snapshot is installed.
        done: bool,
    },
    /// Leadership transfer (dissertation §3.10): start an election now.
    TimeoutNow {
        /// The leader's term.
        term: u64,
    },
}

impl Message {
    /// A short, stable name of the message kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::RequestVote { pre_vote: true, .. } => "pre_vote",
            Message::RequestVote { .. } => "request_vote",
            Message::Vote { .. } => "vote",
            Message::Append { entries, .. } if entries.is_empty() => "heartbeat",
            Message::Append { .. } => "append",
            Message::AppendResponse { .. } => "append_response",
            Message::InstallSnapshot { .. } => "install_snapshot",
            Message::SnapshotResponse { .. } => "snapshot_response",
            Message::TimeoutNow { .. } => "timeout_now",
        }
    }

    /// The term the message carries.
    pub fn term(&self) -> u64 {
        match *self {
            Message::RequestVote { term, .. }
            | Message::Vote { term, .. }
            | Message::Append { term, .. }
            | Message::AppendResponse { term, .. }
            | Message::InstallSnapshot { term, .. }
            | Message::SnapshotResponse { term, .. }
            | Message::TimeoutNow { term } => term,
        }
    }
}
