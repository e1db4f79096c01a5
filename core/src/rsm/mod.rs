//! The replicated state machine (DESIGN §3.4): client sessions and the
//! application's state machine, driven by the committed log.
//!
//! Raft dissertation §6.3: every client registers a session (its id is the
//! index of its `Register` entry) and numbers its commands; the state machine
//! remembers, per session, the responses the client has not yet confirmed,
//! so a command retried after a timeout or a leader change is answered from
//! that table instead of being applied twice. The table is bounded and lives
//! in the snapshot. Sessions expire by *log time*: each leader stamps client
//! entries with the newest stamp it inherited plus its own elapsed time since
//! it was elected, never less than the previous stamp, so expiry is the same
//! decision on every member and log time never runs backwards across leaders.
//! A command of an expired or unknown session is answered `SessionExpired`,
//! never applied.
//!
//! [`client`] is the member's side: it registers, numbers, forwards and
//! retries; this module is what every member applies.

pub mod client;
pub mod kv;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::id::MemberId;

/// An application state machine, fed the committed commands in log order on
/// every member that holds the log. It must be deterministic: the same
/// commands in the same order give the same state and responses everywhere.
pub trait StateMachine: Send + 'static {
    /// Applies one committed command; returns the response for the client.
    fn apply(&mut self, command: &[u8]) -> Vec<u8>;
    /// Answers a read-only query from the current state, changing nothing
    /// (`read` on the cluster: run on the leader once ReadIndex confirmed
    /// the state is current).
    fn query(&self, query: &[u8]) -> Vec<u8>;
    /// The whole state, for a snapshot.
    fn snapshot(&self) -> Vec<u8>;
    /// Replaces the state with a snapshot's.
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError>;
}

/// A snapshot the state machine could not read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("state machine snapshot unreadable: {0}")]
pub struct RestoreError(pub String);

/// Why an `apply` did not produce a response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ApplyError {
    /// No leader answered within the apply timeout.
    #[error("no leader answered in time (last known leader: {leader:?})")]
    Timeout {
        /// The leader this member last knew of, if any.
        leader: Option<MemberId>,
    },
    /// The client's session expired (or was evicted) before this command
    /// was applied: it was not applied, and whether an earlier try was is
    /// unknown to the cluster. Never applied twice.
    #[error("the client session expired; the command was not applied by this request")]
    SessionExpired,
    /// The command is larger than a log entry may be.
    #[error("command of {0} bytes over the limit")]
    TooLarge(usize),
    /// The state machine's response is larger than a message may carry back
    /// to a member that does not hold the log. The command was applied (a
    /// read's query was only answered).
    #[error("response of {0} bytes over the limit")]
    ResponseTooLarge(usize),
    /// The member is leaving or was fenced; it takes no more commands.
    #[error("this member takes no more commands")]
    Stopped,
}

/// Sessions kept at most; registering one more evicts the least recently used.
pub const MAX_SESSIONS: usize = 4096;
/// Unconfirmed responses kept per session (commands in flight from one client).
pub const MAX_UNCONFIRMED: usize = 1024;

/// One client's session.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Log time of its last command (or registration).
    pub stamp: u64,
    /// Every sequence number below this was answered and confirmed.
    pub confirmed_below: u64,
    /// Responses to commands not yet confirmed, by sequence number.
    pub responses: BTreeMap<u64, Vec<u8>>,
}

/// What the state machine keeps besides the application's state; part of
/// the snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionTable {
    /// Sessions by id (the index of their `Register` entry).
    pub sessions: BTreeMap<u64, Session>,
    /// The newest log time applied.
    pub stamp: u64,
}

/// A client entry's outcome on the member that applied it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A session was registered; its id.
    Registered(u64),
    /// A command's response (fresh or remembered).
    Applied(Vec<u8>),
    /// The command's session is unknown or expired; nothing was applied.
    Expired,
}

/// The state machine with its sessions, as the core applies committed entries.
pub(crate) struct Replicated {
    machine: Box<dyn StateMachine>,
    table: SessionTable,
    /// Sessions idle longer than this (in log time) expire.
    session_ttl_nanos: u64,
}

impl core::fmt::Debug for Replicated {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Replicated").field("table", &self.table).finish_non_exhaustive()
    }
}

impl Replicated {
    pub(crate) fn new(machine: Box<dyn StateMachine>, session_ttl: core::time::Duration) -> Self {
        let session_ttl_nanos = u64::try_from(session_ttl.as_nanos()).unwrap_or(u64::MAX);
        Replicated { machine, table: SessionTable::default(), session_ttl_nanos }
    }

    /// The newest log time applied.
    pub(crate) fn stamp(&self) -> u64 {
        self.table.stamp
    }

    pub(crate) fn table(&self) -> &SessionTable {
        &self.table
    }

    /// Replaces the application's state machine, giving it the current state.
    pub(crate) fn replace_machine(&mut self, mut machine: Box<dyn StateMachine>) -> Result<(), RestoreError> {
        machine.restore(&self.machine.snapshot())?;
        self.machine = machine;
        Ok(())
    }

    /// Answers a read-only query from the applied state.
    pub(crate) fn query(&self, query: &[u8]) -> Vec<u8> {
        self.machine.query(query)
    }

    /// Registers a session at log index `index`.
    pub(crate) fn register(&mut self, index: u64, stamp: u64) -> Outcome {
        self.advance(stamp);
        if self.table.sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = self.table.sessions.iter().min_by_key(|(id, s)| (s.stamp, **id)).map(|(id, _)| *id)
        {
            self.table.sessions.remove(&oldest);
        }
        self.table.sessions.insert(index, Session { stamp, confirmed_below: 1, responses: BTreeMap::new() });
        Outcome::Registered(index)
    }

    /// Applies command `seq` of `session` once; a retry gets the remembered
    /// response.
    pub(crate) fn command(
        &mut self,
        session: u64,
        seq: u64,
        confirmed_below: u64,
        stamp: u64,
        command: &[u8],
    ) -> Outcome {
        self.advance(stamp);
        let Some(state) = self.table.sessions.get_mut(&session) else {
            return Outcome::Expired;
        };
        state.stamp = state.stamp.max(stamp);
        if confirmed_below > state.confirmed_below {
            state.confirmed_below = confirmed_below;
            state.responses = state.responses.split_off(&confirmed_below);
        }
        if let Some(response) = state.responses.get(&seq) {
            return Outcome::Applied(response.clone());
        }
        if seq < state.confirmed_below {
            // The client confirmed this answer already: a stray duplicate.
            return Outcome::Expired;
        }
        let response = self.machine.apply(command);
        if state.responses.len() >= MAX_UNCONFIRMED {
            state.responses.pop_first();
        }
        state.responses.insert(seq, response.clone());
        Outcome::Applied(response)
    }

    /// Moves log time forward and expires idle sessions.
    fn advance(&mut self, stamp: u64) {
        self.table.stamp = self.table.stamp.max(stamp);
        let now = self.table.stamp;
        let ttl = self.session_ttl_nanos;
        self.table.sessions.retain(|_, session| session.stamp.saturating_add(ttl) >= now);
    }

    /// The state for a snapshot.
    pub(crate) fn snapshot(&self) -> RsmState {
        RsmState { table: self.table.clone(), machine: self.machine.snapshot() }
    }

    /// Restores a snapshot's state.
    pub(crate) fn restore(&mut self, state: RsmState) -> Result<(), RestoreError> {
        self.machine.restore(&state.machine)?;
        self.table = state.table;
        Ok(())
    }
}

/// The replicated state machine's part of a snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RsmState {
    /// Sessions and log time.
    pub table: SessionTable,
    /// The application's snapshot.
    pub machine: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Appends each command to a list; answers with the list's length.
    #[derive(Default)]
    struct Log(Vec<Vec<u8>>);

    impl StateMachine for Log {
        fn apply(&mut self, command: &[u8]) -> Vec<u8> {
            self.0.push(command.to_vec());
            (self.0.len() as u64).to_le_bytes().to_vec()
        }
        fn query(&self, _query: &[u8]) -> Vec<u8> {
            (self.0.len() as u64).to_le_bytes().to_vec()
        }
        fn snapshot(&self) -> Vec<u8> {
            postcard::to_allocvec(&self.0).unwrap()
        }
        fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
            self.0 = postcard::from_bytes(snapshot).map_err(|e| RestoreError(e.to_string()))?;
            Ok(())
        }
    }

    const SECOND: u64 = 1_000_000_000;

    fn replicated() -> Replicated {
        Replicated::new(Box::<Log>::default(), core::time::Duration::from_secs(60))
    }

    #[test]
    fn a_retried_command_is_answered_from_the_table_not_applied_twice() {
        let mut rsm = replicated();
        assert_eq!(rsm.register(7, SECOND), Outcome::Registered(7));
        let first = rsm.command(7, 1, 1, 2 * SECOND, b"a");
        assert_eq!(first, Outcome::Applied(1u64.to_le_bytes().to_vec()));
        // The same command again (a retry after a leader change).
        assert_eq!(rsm.command(7, 1, 1, 3 * SECOND, b"a"), first);
        assert_eq!(rsm.command(7, 2, 2, 3 * SECOND, b"b"), Outcome::Applied(2u64.to_le_bytes().to_vec()));
        // Confirmed answers are dropped; a stray copy of one is not applied.
        assert_eq!(rsm.command(7, 1, 3, 4 * SECOND, b"a"), Outcome::Expired);
        assert_eq!(rsm.table().sessions[&7].responses.len(), 0);
    }

    #[test]
    fn sessions_expire_by_log_time_and_then_nothing_is_applied() {
        let mut rsm = replicated();
        rsm.register(3, SECOND);
        rsm.register(9, 50 * SECOND);
        // Log time passes session 3's ttl with session 9's traffic.
        assert!(matches!(rsm.command(9, 1, 1, 62 * SECOND, b"x"), Outcome::Applied(_)));
        assert_eq!(rsm.command(3, 1, 1, 62 * SECOND, b"y"), Outcome::Expired);
        assert_eq!(rsm.command(11, 1, 1, 62 * SECOND, b"z"), Outcome::Expired);
        // Only session 9's command was applied.
        assert_eq!(rsm.snapshot().machine, postcard::to_allocvec(&vec![b"x".to_vec()]).unwrap());
        // A stamp from the past never moves log time back.
        rsm.command(9, 2, 2, 10 * SECOND, b"w");
        assert_eq!(rsm.stamp(), 62 * SECOND);
    }

    #[test]
    fn the_table_is_bounded_and_survives_a_snapshot() {
        let mut rsm = replicated();
        for id in 1..=MAX_SESSIONS as u64 + 1 {
            rsm.register(id, id);
        }
        assert_eq!(rsm.table().sessions.len(), MAX_SESSIONS);
        assert!(!rsm.table().sessions.contains_key(&1), "the least recently used is evicted");
        for seq in 1..=MAX_UNCONFIRMED as u64 + 5 {
            rsm.command(2, seq, 1, SECOND, b"c");
        }
        assert_eq!(rsm.table().sessions[&2].responses.len(), MAX_UNCONFIRMED);
        let state = rsm.snapshot();
        let mut again = replicated();
        again.restore(state.clone()).unwrap();
        assert_eq!(again.snapshot(), state);
    }
}
