//! Raft (Ongaro & Ousterhout 2014; Ongaro's dissertation 2014), DESIGN §3.2.
//!
//! Leader election with randomised timeouts, PreVote (dissertation §9.6) and
//! CheckQuorum (§6.2); log replication with conflict back-off, pipelining
//! within a bounded window, and the commit rule of §5.4.2 (only an entry of
//! the leader's own term is committed by counting replicas); snapshots of the
//! core's own state, sent in chunks (§7); leadership transfer (§3.10). A
//! configuration takes effect when appended, not when committed (§4.1); the
//! leader's policy for changing it, one server at a time, lives in
//! [`voters`].
//!
//! Persistence orders sends: every change to the term, the vote or the log
//! goes out as a `Persist` before any message that depends on it, and the
//! node's outbox holds those messages until the persist is confirmed. The
//! leader counts its own log towards a majority only up to what it has
//! persisted.

pub mod entry;
mod log;
pub mod message;
mod progress;
mod quorum;
pub mod voters;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;

use core::time::Duration;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::id::MemberId;
use crate::node::{Ctx, PersistState};
use crate::teeth::{Plant, planted};
use crate::time::Instant;
use crate::timer::Timer;
use crate::wire::{Body, BoundedVec, Channel, limits};

pub use entry::{Configuration, Entries, Entry, Payload};
pub use message::Message;

use log::Log;
use progress::{Progress, ProgressState};
use quorum::VoteResult;

/// Raft timing and limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaftConfig {
    /// How often a leader sends heartbeats (and retries stalled followers).
    pub heartbeat_interval: Duration,
    /// The shortest election timeout, also how long a leader keeps leading
    /// without hearing from a majority (CheckQuorum) and how long a follower
    /// keeps trusting a silent leader.
    pub election_timeout: Duration,
    /// The longest election timeout; each one is drawn uniformly from
    /// `[election_timeout, election_timeout_max]`.
    pub election_timeout_max: Duration,
    /// Appends in flight to one follower at most.
    pub max_inflight_appends: usize,
    /// Bytes of entries in flight to one follower at most.
    pub max_inflight_bytes: usize,
    /// Compact the log once this many entries follow the last snapshot.
    pub snapshot_threshold: usize,
    /// Serve reads on a leader lease instead of a round of heartbeats
    /// (dissertation §6.4.1). Off by default. A lease lasts nine tenths of
    /// `election_timeout` from the send of a heartbeat round a majority
    /// answered: followers that heard it refuse other candidates for an
    /// election timeout on their own clocks. It assumes no clock runs more
    /// than 10 % fast or slow against the leader's over that span and that
    /// the leader is not paused between reading its clock and answering
    /// (a stalled process, a VM migration), and that no member restarts
    /// and votes within an election timeout of its last heartbeat (a
    /// restart forgets it): each can serve a stale read.
    pub lease_reads: bool,
}

impl RaftConfig {
    /// LAN timing: 100 ms heartbeats (etcd's default), 300–600 ms election
    /// timeouts. Each heartbeat costs every follower a wakeup, so an idle
    /// member's CPU follows the heartbeat rate.
    pub fn lan() -> Self {
        RaftConfig {
            heartbeat_interval: Duration::from_millis(100),
            election_timeout: Duration::from_millis(300),
            election_timeout_max: Duration::from_millis(600),
            max_inflight_appends: 32,
            max_inflight_bytes: 8 * 1024 * 1024,
            snapshot_threshold: 8192,
            lease_reads: false,
        }
    }

    /// Test timing: 20 ms heartbeats, 100–200 ms election timeouts.
    pub fn fast() -> Self {
        RaftConfig {
            heartbeat_interval: Duration::from_millis(20),
            election_timeout: Duration::from_millis(100),
            election_timeout_max: Duration::from_millis(200),
            ..Self::lan()
        }
    }
}

/// A snapshot of the core's state at a log position (§7).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The last log index it covers.
    pub last_index: u64,
    /// The term of that entry.
    pub last_term: u64,
    /// The configuration as of `last_index`.
    pub configuration: Configuration,
    /// The state machine's own encoding of its state as of `last_index`.
    pub state: Vec<u8>,
}

/// A member's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Follows a leader, or waits for one.
    Follower,
    /// Asks whether it could win an election, without raising its term.
    PreCandidate,
    /// Campaigns in an election.
    Candidate,
    /// Leads its term.
    Leader,
}

/// What Raft recovered from storage.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RaftState {
    /// The latest term seen.
    pub term: u64,
    /// The vote cast in that term.
    pub vote: Option<MemberId>,
    /// The latest snapshot, if the log was ever compacted.
    pub snapshot: Option<Snapshot>,
    /// The entries after the snapshot, contiguous.
    pub entries: Vec<Entry>,
}

/// Why a proposal was refused. Nothing was appended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// Only the leader appends; here is who it is, if known.
    #[error("not the leader (leader: {0:?})")]
    NotLeader(Option<MemberId>),
    /// A leadership transfer is under way; proposals wait for the new leader.
    #[error("leadership transfer in progress")]
    Transferring,
    /// The command exceeds `wire::limits::MAX_COMMAND_BYTES`.
    #[error("command larger than {} bytes", crate::wire::limits::MAX_COMMAND_BYTES)]
    TooLarge,
}

/// The leader's state.
#[derive(Debug)]
struct Leading {
    progress: BTreeMap<MemberId, Progress>,
    /// The first index of this term; committing it commits all before it.
    term_start: u64,
    /// A transfer under way: the target and when to give up.
    transfer: Option<(MemberId, Instant)>,
    /// When each member last answered this leader.
    last_heard: BTreeMap<MemberId, Instant>,
    /// Members removed by a committed configuration: they get one more
    /// heartbeat, carrying the commit of their removal, then are dropped.
    retiring: BTreeSet<MemberId>,
    /// Heartbeat rounds and the reads waiting on them (ReadIndex).
    reads: Reads,
}

/// ReadIndex (dissertation §6.4): a read may be served at the commit index
/// it arrived at once a majority has answered an append sent after it
/// arrived, proving no other leader could have committed anything newer.
/// Every append carries the leader's current round and every answer echoes
/// it; a read waits for the round after the one current when it arrived.
#[derive(Debug, Default)]
struct Reads {
    /// The current round; appends carry it.
    round: u64,
    /// The round the oldest unconfirmed read needs started, if not yet.
    wanted: u64,
    /// The newest round each follower echoed, and when this leader sent it.
    acked: BTreeMap<MemberId, (u64, Instant)>,
    /// When recent rounds were sent, oldest first; for leases.
    sent: VecDeque<(u64, Instant)>,
    /// Reads waiting for their round: (id, round, index), rounds ascending.
    waiting: VecDeque<(u64, u64, u64)>,
    /// A leadership transfer began this term: the target may win at once,
    /// so no lease holds until the term ends.
    no_lease: bool,
}

/// Rounds whose send time a leader remembers, for leases.
const LEASE_ROUNDS: usize = 64;
/// Reads a leader holds waiting for their round at most.
pub const MAX_PENDING_READS: usize = 16_384;

/// A snapshot being received in chunks.
#[derive(Debug)]
struct Receiving {
    last_index: u64,
    last_term: u64,
    total: u64,
    data: Vec<u8>,
}

/// The Raft sub-machine of one node.
#[derive(Debug)]
pub struct Raft {
    config: RaftConfig,
    id: MemberId,
    term: u64,
    vote: Option<MemberId>,
    role: Role,
    leader: Option<MemberId>,
    log: Log,
    /// The configuration as of the snapshot point.
    snapshot_configuration: Configuration,
    /// The latest configuration in the log, in effect since it was appended.
    configuration: Configuration,
    commit_index: u64,
    /// Entries up to here were handed to the node.
    applied_index: u64,
    /// Entries up to here are durable on this member.
    persisted_index: u64,
    /// Persists of entries not yet confirmed: (persist seq, last index).
    unconfirmed: VecDeque<(u64, u64)>,
    votes: BTreeMap<MemberId, bool>,
    leading: Option<Leading>,
    /// When this member last heard from a current leader (leader stickiness).
    leader_contact: Option<Instant>,
    receiving: Option<Receiving>,
    /// The latest snapshot, encoded, for followers too far behind.
    snapshot: Option<(Snapshot, Vec<u8>)>,
    /// A snapshot installed from the leader, for the node to restore.
    restored: Option<Snapshot>,
    /// When this member last became leader.
    elected_at: Instant,
    /// This member left, or its cluster was recovered elsewhere: it takes
    /// no part in Raft any more.
    withdrawn: bool,
    /// The first entry appended locally this input and not yet persisted.
    unpersisted_from: Option<u64>,
    /// Entries were appended this input: send them at the flush.
    pending_broadcast: bool,
    /// Reads confirmed and not yet taken: (id, index).
    confirmed_reads: Vec<(u64, u64)>,
}

/// Where to reach members: the membership table, for Raft.
pub(crate) trait Directory {
    /// The address of member `id`, if known.
    fn addr_of(&self, id: MemberId) -> Option<SocketAddr>;
}

impl Raft {
    pub(crate) fn new(config: RaftConfig, id: MemberId, recovered: RaftState) -> Self {
        let (log, snapshot_configuration, snapshot) = match recovered.snapshot {
            Some(snapshot) => {
                let log = Log::new(snapshot.last_index, snapshot.last_term);
                let encoded = postcard::to_allocvec(&snapshot).unwrap_or_default();
                (log, snapshot.configuration.clone(), Some((snapshot, encoded)))
            }
            None => (Log::new(0, 0), Configuration::default(), None),
        };
        let commit_index = log.snapshot_index();
        let mut raft = Raft {
            config,
            id,
            term: recovered.term,
            vote: recovered.vote,
            role: Role::Follower,
            leader: None,
            log,
            snapshot_configuration,
            configuration: Configuration::default(),
            commit_index,
            applied_index: commit_index,
            persisted_index: 0,
            unconfirmed: VecDeque::new(),
            votes: BTreeMap::new(),
            leading: None,

            leader_contact: None,
            receiving: None,
            snapshot,
            restored: None,
            elected_at: Instant::ZERO,
            withdrawn: false,
            unpersisted_from: None,
            pending_broadcast: false,
            confirmed_reads: Vec::new(),
        };
        for entry in recovered.entries {
            if entry.index == raft.log.last_index() + 1 {
                raft.log.push(entry);
            }
        }
        raft.persisted_index = raft.log.last_index();
        raft.configuration = raft.configuration_at(raft.log.last_index());
        raft
    }

    /// Arms the election timer if this member has a configuration.
    pub(crate) fn start(&mut self, ctx: &mut Ctx<'_>) {
        if !self.configuration.is_empty() && !self.withdrawn {
            self.reset_election_timer(ctx);
        }
    }

    /// This member takes no more part in Raft: its leave completed, or its
    /// cluster was recovered elsewhere (DESIGN §3.2). It stops leading, never
    /// campaigns or votes again and ignores Raft traffic, so a leader whose
    /// membership table has not heard of it yet can never catch it up,
    /// promote or elect it again.
    pub(crate) fn withdraw(&mut self, ctx: &mut Ctx<'_>) {
        if self.role == Role::Leader {
            self.become_follower(ctx, self.term, None);
        }
        self.role = Role::Follower;
        self.leader = None;
        self.withdrawn = true;
        ctx.timers.cancel(Timer::Election);
    }

    // ----- queries ------------------------------------------------------------------------------

    pub(crate) fn term(&self) -> u64 {
        self.term
    }

    pub(crate) fn role(&self) -> Role {
        self.role
    }

    pub(crate) fn leader(&self) -> Option<MemberId> {
        self.leader
    }

    pub(crate) fn commit_index(&self) -> u64 {
        self.commit_index
    }

    /// Entries up to here were handed to the node.
    pub(crate) fn applied_index(&self) -> u64 {
        self.applied_index
    }

    pub(crate) fn last_index(&self) -> u64 {
        self.log.last_index()
    }

    pub(crate) fn configuration(&self) -> &Configuration {
        &self.configuration
    }

    /// Whether this member holds Raft state (a configuration, from bootstrap,
    /// a log or a snapshot).
    pub(crate) fn has_state(&self) -> bool {
        !self.configuration.is_empty() || self.log.last_index() > 0 || self.term > 0
    }

    /// Whether the latest configuration in the log is committed.
    pub(crate) fn configuration_committed(&self) -> bool {
        !self.entries_from(self.commit_index + 1).any(|entry| matches!(entry.payload, Payload::Config(_)))
    }

    /// Whether the leader has committed an entry of its own term.
    pub(crate) fn own_term_committed(&self) -> bool {
        self.leading.as_ref().is_some_and(|leading| self.commit_index >= leading.term_start)
    }

    /// The last index compacted into the snapshot.
    pub(crate) fn snapshot_index(&self) -> u64 {
        self.log.snapshot_index()
    }

    /// Entries from `from` to the end of the log.
    pub(crate) fn entries_from(&self, from: u64) -> impl Iterator<Item = &Entry> + Clone {
        (from.max(self.log.first_index())..=self.log.last_index()).filter_map(|index| self.log.entry(index))
    }

    /// On the leader: when member `id` last answered it (its election time if
    /// never). The leader's replication traffic is a second failure signal
    /// besides SWIM (DESIGN §3.3 item 1).
    pub(crate) fn last_heard(&self, id: MemberId) -> Option<Instant> {
        let leading = self.leading.as_ref()?;
        Some(leading.last_heard.get(&id).copied().unwrap_or(self.elected_at))
    }

    /// How long a member may stay silent before the leader counts it unreachable.
    pub(crate) fn election_timeout(&self) -> Duration {
        self.config.election_timeout
    }

    /// What the leader knows a member to have replicated: its match index.
    pub(crate) fn match_index(&self, id: MemberId) -> Option<u64> {
        if id == self.id {
            return Some(self.persisted_index);
        }
        self.leading.as_ref()?.progress.get(&id).map(|progress| progress.match_index)
    }

    // ----- inputs -------------------------------------------------------------------------------

    /// Writes the initial configuration as entry 1 of term 0. Every member
    /// bootstrapping the same cluster writes the same entry.
    pub(crate) fn bootstrap(&mut self, ctx: &mut Ctx<'_>, configuration: Configuration) {
        assert!(!self.has_state(), "bootstrap only a member without Raft state");
        let entry = Entry { term: 0, index: 1, payload: Payload::Config(configuration) };
        self.append_local(entry);
        self.reset_election_timer(ctx);
    }

    /// Forces a configuration of this member alone (operator recovery after a
    /// permanent loss of quorum): appended as an entry of a new term.
    pub(crate) fn force_configuration(&mut self, ctx: &mut Ctx<'_>, configuration: Configuration) {
        self.term += 1;
        self.vote = Some(self.id);
        self.persist_hard_state(ctx);
        let entry =
            Entry { term: self.term, index: self.log.last_index() + 1, payload: Payload::Config(configuration) };
        self.append_local(entry);
        self.reset_election_timer(ctx);
    }

    pub(crate) fn on_timer(&mut self, ctx: &mut Ctx<'_>, directory: &impl Directory, timer: Timer) {
        match timer {
            Timer::Election => self.on_election_timeout(ctx, directory),
            Timer::Heartbeat => self.on_heartbeat(ctx, directory),
            Timer::CheckQuorum => self.on_check_quorum(ctx),
            _ => {}
        }
    }

    /// Entries up to `seq` are durable.
    pub(crate) fn on_persisted(&mut self, ctx: &mut Ctx<'_>, seq: u64) {
        while let Some(&(pending, index)) = self.unconfirmed.front() {
            if pending > seq {
                break;
            }
            self.unconfirmed.pop_front();
            self.persisted_index = self.persisted_index.max(index.min(self.log.last_index()));
        }
        if self.role == Role::Leader {
            self.maybe_commit(ctx);
        }
    }

    /// Appends a new entry if this member leads; returns its index.
    pub(crate) fn propose(&mut self, payload: Payload) -> Result<u64, ProposeError> {
        let Some(leading) = &self.leading else {
            return Err(ProposeError::NotLeader(self.leader));
        };
        if leading.transfer.is_some() {
            return Err(ProposeError::Transferring);
        }
        let index = self.log.last_index() + 1;
        self.append_local(Entry { term: self.term, index, payload });
        Ok(index)
    }

    /// Registers read `id` on the leader (ReadIndex, dissertation §6.4); it
    /// comes back from [`Raft::take_confirmed_reads`] with the index the
    /// state must be applied to before serving it, unless leadership ends
    /// first (then it is forgotten: the caller fails it).
    pub(crate) fn read_index(&mut self, now: Instant, id: u64) -> Result<(), ProposeError> {
        let lease = self.lease_holds(now);
        let (voters, term) = (self.configuration.voters.len(), self.term);
        let Some(leading) = self.leading.as_mut() else {
            return Err(ProposeError::NotLeader(self.leader));
        };
        // Anything committed before this term is at most the last entry
        // inherited (Leader Completeness); the commit index may not show it
        // until this term's first entry commits.
        let index = self.commit_index.max(leading.term_start);
        let reads = &mut leading.reads;
        if lease || (voters <= 1 && self.configuration.is_voter(self.id)) || planted(Plant::StaleRead) {
            self.confirmed_reads.push((id, index));
            return Ok(());
        }
        if reads.waiting.len() >= MAX_PENDING_READS {
            tracing::warn!(term, "too many reads waiting for a heartbeat round; refusing one");
            return Err(ProposeError::NotLeader(Some(self.id)));
        }
        let round = reads.round + 1;
        reads.wanted = reads.wanted.max(round);
        reads.waiting.push_back((id, round, index));
        Ok(())
    }

    /// Reads confirmed since the last call: (id, index to apply first).
    pub(crate) fn take_confirmed_reads(&mut self) -> Vec<(u64, u64)> {
        std::mem::take(&mut self.confirmed_reads)
    }

    /// Whether this leader holds a lease now (only with `lease_reads`).
    fn lease_holds(&self, now: Instant) -> bool {
        let Some(leading) = self.leading.as_ref().filter(|_| self.config.lease_reads) else { return false };
        if leading.reads.no_lease || leading.transfer.is_some() {
            return false;
        }
        let id = self.id;
        // The latest send time such that a majority answered a round sent then.
        let since = quorum::majority_match(&self.configuration.voters, |voter| {
            let sent = if voter == id { Some(now) } else { leading.reads.acked.get(&voter).map(|&(_, at)| at) };
            sent.map_or(0, Instant::as_nanos)
        });
        since > 0 && now < Instant::from_nanos(since) + self.config.election_timeout * 9 / 10
    }

    /// A follower answered an append of `round`: confirm the reads a
    /// majority has now vouched for.
    fn on_round_acked(&mut self, from: MemberId, round: u64) {
        let id = self.id;
        let Some(leading) = self.leading.as_mut() else { return };
        let reads = &mut leading.reads;
        if round > reads.round || reads.acked.get(&from).is_some_and(|&(acked, _)| acked >= round) {
            return;
        }
        // A round older than those remembered proves nothing for a lease.
        let sent = reads.sent.iter().find(|&&(r, _)| r == round).map_or(Instant::ZERO, |&(_, at)| at);
        reads.acked.insert(from, (round, sent));
        let confirmed = quorum::majority_match(&self.configuration.voters, |voter| {
            if voter == id { reads.round } else { reads.acked.get(&voter).map_or(0, |&(r, _)| r) }
        });
        while let Some(&(read, round, index)) = reads.waiting.front()
            && round <= confirmed
        {
            reads.waiting.pop_front();
            self.confirmed_reads.push((read, index));
        }
    }

    /// Starts a heartbeat round: appends sent from now on carry it.
    fn next_round(&mut self, now: Instant) {
        let Some(leading) = self.leading.as_mut() else { return };
        let reads = &mut leading.reads;
        reads.round += 1;
        if reads.sent.len() >= LEASE_ROUNDS {
            reads.sent.pop_front();
        }
        reads.sent.push_back((reads.round, now));
    }

    /// Entries committed since the last call, in log order.
    pub(crate) fn take_committed(&mut self) -> Vec<Entry> {
        let entries: Vec<Entry> =
            ((self.applied_index + 1)..=self.commit_index).filter_map(|index| self.log.entry(index).cloned()).collect();
        self.applied_index = self.commit_index;
        entries
    }

    /// A snapshot installed from the leader since the last call.
    pub(crate) fn take_restored(&mut self) -> Option<Snapshot> {
        self.restored.take()
    }

    /// Whether the log has grown past the compaction threshold.
    pub(crate) fn wants_snapshot(&self) -> bool {
        self.log.len() > self.config.snapshot_threshold && self.applied_index > self.log.snapshot_index()
    }

    /// Compacts the log up to the applied index, with `state` the node's
    /// state as of that index.
    pub(crate) fn compact(&mut self, ctx: &mut Ctx<'_>, state: Vec<u8>) {
        let index = self.applied_index;
        let Some(term) = self.log.term(index) else { return };
        let snapshot =
            Snapshot { last_index: index, last_term: term, configuration: self.configuration_at(index), state };
        self.snapshot_configuration = snapshot.configuration.clone();
        self.log.compact(index);
        let encoded = postcard::to_allocvec(&snapshot).unwrap_or_default();
        ctx.outbox.persist(PersistState::Snapshot(snapshot.clone()));
        self.snapshot = Some((snapshot, encoded));
    }

    /// Hands leadership to `target` (or the most caught-up voter): it starts
    /// an election as soon as its log matches ours (§3.10).
    pub(crate) fn transfer_leadership(
        &mut self,
        ctx: &mut Ctx<'_>,
        directory: &impl Directory,
        target: Option<MemberId>,
    ) {
        let Some(leading) = &self.leading else { return };
        let target = target.filter(|&t| t != self.id && self.configuration.is_voter(t)).or_else(|| {
            leading
                .progress
                .iter()
                .filter(|&(id, _)| self.configuration.is_voter(*id))
                .max_by_key(|(id, progress)| (progress.match_index, **id))
                .map(|(&id, _)| id)
        });
        let Some(target) = target else { return };
        let deadline = ctx.now + self.config.election_timeout;
        if let Some(leading) = self.leading.as_mut() {
            leading.transfer = Some((target, deadline));
            leading.reads.no_lease = true;
        }
        tracing::info!(%target, term = self.term, "transferring leadership");
        self.try_finish_transfer(ctx, directory, target);
    }

    pub(crate) fn on_message(
        &mut self,
        ctx: &mut Ctx<'_>,
        directory: &impl Directory,
        from: MemberId,
        message: Message,
    ) {
        if self.withdrawn {
            return;
        }
        let term = message.term();
        if term > self.term {
            match message {
                // A pre-vote asks about a future term; it changes nothing here.
                Message::RequestVote { pre_vote: true, .. } => {}
                // A granted pre-vote carries the term we would campaign for.
                Message::Vote { pre_vote: true, granted: true, .. } => {}
                Message::RequestVote { transfer: false, .. } if self.leader_is_fresh(ctx.now) => {
                    // Dissertation §4.2.3: a member that hears from a live
                    // leader ignores disruptive vote requests entirely.
                    tracing::debug!(%from, term, "ignoring a vote request while the leader is alive");
                    return;
                }
                Message::Append { .. } | Message::InstallSnapshot { .. } | Message::TimeoutNow { .. } => {
                    self.become_follower(ctx, term, Some(from));
                }
                _ => self.become_follower(ctx, term, None),
            }
        } else if term < self.term {
            match message {
                // A stale leader learns our term and steps down.
                Message::Append { .. } | Message::InstallSnapshot { .. } => {
                    let response =
                        Message::AppendResponse { term: self.term, success: false, index: 0, next_hint: 0, round: 0 };
                    self.send(ctx, directory, from, response);
                }
                Message::RequestVote { pre_vote: true, .. } => {
                    let response = Message::Vote { term: self.term, pre_vote: true, granted: false };
                    self.send(ctx, directory, from, response);
                }
                _ => {}
            }
            return;
        }
        match message {
            Message::RequestVote { term, last_log_index, last_log_term, pre_vote, transfer } => {
                self.on_request_vote(ctx, directory, from, term, last_log_index, last_log_term, pre_vote, transfer)
            }
            Message::Vote { pre_vote, granted, .. } => self.on_vote(ctx, directory, from, pre_vote, granted),
            Message::Append { prev_log_index, prev_log_term, entries, leader_commit, round, .. } => {
                let entries = entries.into_vec();
                self.on_append(ctx, directory, from, prev_log_index, prev_log_term, entries, leader_commit, round)
            }
            Message::AppendResponse { success, index, next_hint, round, .. } => {
                self.on_append_response(ctx, directory, from, success, index, next_hint, round)
            }
            Message::InstallSnapshot { last_index, last_term, offset, total, data, .. } => {
                self.on_snapshot_chunk(ctx, directory, from, last_index, last_term, offset, total, data.into_vec())
            }
            Message::SnapshotResponse { last_index, received, done, .. } => {
                self.on_snapshot_response(ctx, directory, from, last_index, received, done)
            }
            Message::TimeoutNow { .. } => {
                if self.configuration.is_voter(self.id) {
                    tracing::info!(term = self.term, "leadership handed over: campaigning now");
                    self.become_candidate(ctx, directory, true);
                }
            }
        }
    }

    // ----- elections (§5.2, dissertation §9.6) -----------------------------------------------

    /// Whether a live leader is known: this member leads, or heard from its
    /// leader within the election timeout (dissertation §4.2.3).
    fn leader_is_fresh(&self, now: Instant) -> bool {
        self.role == Role::Leader || self.leader_contact.is_some_and(|at| now < at + self.config.election_timeout)
    }

    fn reset_election_timer(&mut self, ctx: &mut Ctx<'_>) {
        let (min, max) =
            (self.config.election_timeout, self.config.election_timeout_max.max(self.config.election_timeout));
        let spread = u64::try_from((max - min).as_nanos()).unwrap_or(u64::MAX);
        let timeout = min + Duration::from_nanos(ctx.rng.random_range(0..=spread));
        ctx.timers.set(Timer::Election, ctx.now + timeout);
    }

    fn on_election_timeout(&mut self, ctx: &mut Ctx<'_>, directory: &impl Directory) {
        if self.withdrawn {
            return;
        }
        self.reset_election_timer(ctx);
        if self.role == Role::Leader {
            return;
        }
        if !self.configuration.is_voter(self.id) {
            // A learner cannot campaign, but it stops vouching for a leader
            // it no longer hears from.
            if !self.leader_is_fresh(ctx.now) {
                self.leader = None;
            }
            return;
        }
        self.become_pre_candidate(ctx, directory);
    }

    fn become_pre_candidate(&mut self, ctx: &mut Ctx<'_>, directory: &impl Directory) {
        tracing::debug!(term = self.term, "pre-vote: asking whether an election could be won");
        self.role = Role::PreCandidate;
        self.leader = None;
        self.votes = BTreeMap::from([(self.id, true)]);
        self.request_votes(ctx, directory, true, false);
        if quorum::tally(&self.configuration.voters, &self.votes) == VoteResult::Won {
            self.become_candidate(ctx, directory, false);
        }
    }

    fn become_candidate(&mut self, ctx: &mut Ctx<'_>, directory: &impl Directory, transfer: bool) {
        self.role = Role::Candidate;
        self.leading = None;
        self.term += 1;
        self.vote = Some(self.id);
        self.leader = None;
        self.persist_hard_state(ctx);
        self.votes = BTreeMap::from([(self.id, true)]);
        self.reset_election_timer(ctx);
        tracing::debug!(term = self.term, "campaigning");
        self.request_votes(ctx, directory, false, transfer);
        if quorum::tally(&self.configuration.voters, &self.votes) == VoteResult::Won {
            self.become_leader(ctx);
        }
    }

    fn request_votes(&mut self, ctx: &mut Ctx<'_>, directory: &impl Directory, pre_vote: bool, transfer: bool) {
        let term = if pre_vote { self.term + 1 } else { self.term };
        let request = Message::RequestVote {
            term,
            last_log_index: self.log.last_index(),
            last_log_term: self.log.last_term(),
            pre_vote,
            transfer,
        };
        let voters: Vec<MemberId> = self.configuration.voters.iter().copied().filter(|&v| v != self.id).collect();
        for voter in voters {
            self.send(ctx, directory, voter, request.clone());
        }
    }

    #[allow(clippy::too_many_arguments, reason = "the fields of one message")]
    fn on_request_vote(
        &mut self,
        ctx: &mut Ctx<'_>,
        directory: &impl Directory,
        from: MemberId,
        term: u64,
        last_log_index: u64,
        last_log_term: u64,
        pre_vote: bool,
        transfer: bool,
    ) {
        let up_to_date = self.log.is_up_to_date(last_log_index, last_log_term);
        let granted = if pre_vote {
            // Grant a pre-vote for a later term to an up-to-date log, unless a
            // live leader is known (then an election would only disrupt).
            term > self.term && up_to_date && (transfer || !self.leader_is_fresh(ctx.now))
        } else {
            // §5.2, §5.4.1: one vote per term, only for a log at least as up to date.
            // The planted bug: a follower forgets whom it voted for.
            let forgetful = planted(Plant::DoubleVote) && self.role == Role::Follower;
            let free = self.vote.is_none_or(|vote| vote == from) || forgetful;
            free && up_to_date && self.leader.is_none_or(|leader| leader == from)
        };
        if granted && !pre_vote {
            self.vote = Some(from);
            self.persist_hard_state(ctx);
            self.reset_election_timer(ctx);
        }
        tracing::debug!(%from, term, pre_vote, granted, "vote request");
        let answer_term = if pre_vote && granted { term } else { self.term };
        self.send(ctx, directory, from, Message::Vote { term: answer_term, pre_vote, granted });
    }

    fn on_vote(
        &mut self,
        ctx: &mut Ctx<'_>,
        directory: &impl Directory,
        from: MemberId,
        pre_vote: bool,
        granted: bool,
    ) {
        let expected = if pre_vote { Role::PreCandidate } else { Role::Candidate };
        if self.role != expected {
            return;
        }
        self.votes.insert(from, granted);
        match quorum::tally(&self.configuration.voters, &self.votes) {
            VoteResult::Won if pre_vote => self.become_candidate(ctx, directory, false),
            VoteResult::Won => self.become_leader(ctx),
            VoteResult::Lost => {
                tracing::debug!(term = self.term, pre_vote, "election lost");
                self.role = Role::Follower;
                self.votes.clear();
            }
            VoteResult::Pending => {}
        }
    }

    fn become_follower(&mut self, ctx: &mut Ctx<'_>, term: u64, leader: Option<MemberId>) {
        let stepped_down = self.role == Role::Leader;
        if term > self.term {
            self.term = term;
            self.vote = None;
            self.persist_hard_state(ctx);
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.leading = None;
        self.votes.clear();
        if stepped_down {
            ctx.timers.cancel(Timer::Heartbeat);
            ctx.timers.cancel(Timer::CheckQuorum);
            self.reset_election_timer(ctx);
        }
    }

    fn become_leader(&mut self, ctx: &mut Ctx<'_>) {
        tracing::info!(term = self.term, "elected leader");
        self.role = Role::Leader;
        self.leader = Some(self.id);
        self.votes.clear();
        let next = self.log.last_index() + 1;
        self.leading = Some(Leading {
            progress: BTreeMap::new(),
            term_start: next,
            transfer: None,
            last_heard: BTreeMap::new(),
            retiring: BTreeSet::new(),
            reads: Reads::default(),
        });
        self.elected_at = ctx.now;
        self.sync_progress();
        ctx.timers.cancel(Timer::Election);
        ctx.timers.set(Timer::Heartbeat, ctx.now + self.config.heartbeat_interval);
        ctx.timers.set(Timer::CheckQuorum, ctx.now + self.config.election_timeout);
        // §5.4.2: a new leader commits entries of earlier terms only by
        // committing one of its own.
        self.append_local(Entry { term: self.term, index: next, payload: Payload::Noop });
    }

    /// Dissertation §6.2: a leader that has not heard from a majority within
    /// an election timeout steps down. The timer is armed for the moment that
    /// becomes true if nothing more is heard, so a leader cut off steps down
    /// one election timeout after its last contact with a majority.
    fn on_check_quorum(&mut self, ctx: &mut Ctx<'_>) {
        if self.role != Role::Leader {
            return;
        }
        let (id, now) = (self.id, ctx.now);
        // The latest moment by which a majority of the voters had been heard
        // from; the leader hears itself now, the others count from our election.
        let contact = quorum::majority_match(&self.configuration.voters, |voter| {
            let heard = if voter == id { Some(now) } else { self.last_heard(voter) };
            heard.map_or(0, Instant::as_nanos)
        });
        let deadline = Instant::from_nanos(contact) + self.config.election_timeout;
        if now < deadline {
            ctx.timers.set(Timer::CheckQuorum, deadline);
            return;
        }
        tracing::warn!(
            term = self.term,
            "CheckQuorum: no majority heard from within an election timeout; stepping down"
        );
        self.become_follower(ctx, self.term, None);
    }

    // ----- replication (§5.3) ----------------------------------------------------------------

    fn on_heartbeat(&mut self, ctx: &mut Ctx<'_>, directory: &impl Directory) {
        if self.role != Role::Leader {
            return;
        }
        ctx.timers.set(Timer::Heartbeat, ctx.now + self.config.heartbeat_interval);
        if let Some((_, deadline)) = self.leading.as_ref().and_then(|leading| leading.transfer)
            && ctx.now >= deadline
        {
            tracing::warn!(term = self.term, "leadership transfer timed out; staying leader");
            if let Some(leading) = self.leading.as_mut() {
                leading.transfer = None;
            }
        }
        self.next_round(ctx.now);
        let peers: Vec<MemberId> =
            self.leading.as_ref().map(|l| l.progress.keys().copied().collect()).unwrap_or_default();
        for peer in peers {
            if let Some(progress) = self.leading.as_mut().and_then(|l| l.progress.get_mut(&peer)) {
                progress.resume_probe();
            }
            self.send_append(ctx, directory, peer, true);
        }
        // Retiring members have had their last heartbeat.
        if let Some(leading) = self.leading.as_mut() {
            for id in std::mem::take(&mut leading.retiring) {
                leading.progress.remove(&id);
            }
        }
    }

    fn broadcast_append(&mut self, ctx: &mut Ctx<'_>, directory: &impl Directory) {
        let peers: Vec<MemberId> =
            self.leading.as_ref().map(|l| l.progress.keys().copied().collect()).unwrap_or_default();
        for peer in peers {
            self.send_append(ctx, directory, peer, false);
        }
    }

    /// Sends `peer` what it needs next: entries, a snapshot chunk, or (with
    /// `heartbeat`) at least an empty append so it knows we lead.
    fn send_append(&mut self, ctx: &mut Ctx<'_>, directory: &impl Directory, peer: MemberId, heartbeat: bool) {
        let (max_messages, max_bytes) = (self.config.max_inflight_appends, self.config.max_inflight_bytes);
        let Some(progress) = self.leading.as_ref().and_then(|l| l.progress.get(&peer)) else { return };
        if let ProgressState::Snapshot { index } = progress.state {
            if heartbeat {
                if self.snapshot.as_ref().is_some_and(|(snapshot, _)| snapshot.last_index != index) {
                    // Compacted again since this transfer began (the peer
                    // was down meanwhile): the answers name the snapshot
                    // sent, so start over with the one held now.
                    return self.start_snapshot(ctx, directory, peer);
                }
                // Keep the snapshot moving if a chunk or its answer was lost.
                self.send_snapshot_chunk(ctx, directory, peer, None);
            }
            return;
        }
        let paused = progress.is_paused(max_messages, max_bytes);
        if paused && !heartbeat {
            return;
        }
        // A heartbeat to a follower whose window is full carries no entries and
        // claims only what it surely holds (its match), so it is never refused
        // for entries still in flight.
        let next = if paused { progress.match_index + 1 } else { progress.next_index };
        let prev = next - 1;
        let Some(prev_term) = self.log.term(prev) else {
            // What it needs was compacted: send the snapshot.
            return self.start_snapshot(ctx, directory, peer);
        };
        let entries = if paused {
            Vec::new()
        } else {
            self.log.slice(next, limits::MAX_APPEND_ENTRIES, limits::MAX_APPEND_BYTES)
        };
        if entries.is_empty() && !heartbeat && prev == self.log.last_index() {
            return;
        }
        let last = prev + entries.len() as u64;
        let bytes: usize = entries.iter().map(|e| postcard::experimental::serialized_size(e).unwrap_or(0)).sum();
        if !paused && let Some(progress) = self.leading.as_mut().and_then(|l| l.progress.get_mut(&peer)) {
            progress.sent(last, bytes);
        }
        let message = Message::Append {
            term: self.term,
            prev_log_index: prev,
            prev_log_term: prev_term,
            entries: BoundedVec::try_from_vec(entries).expect("slice bounded by MAX_APPEND_ENTRIES"),
            leader_commit: self.commit_index,
            round: self.leading.as_ref().map_or(0, |l| l.reads.round),
        };
        self.send(ctx, directory, peer, message);
    }

    #[allow(clippy::too_many_arguments, reason = "the fields of one message")]
    fn on_append(
        &mut self,
        ctx: &mut Ctx<'_>,
        directory: &impl Directory,
        from: MemberId,
        prev_log_index: u64,
        prev_log_term: u64,
        entries: Vec<Entry>,
        leader_commit: u64,
        round: u64,
    ) {
        if self.role != Role::Follower || self.leader != Some(from) {
            self.become_follower(ctx, self.term, Some(from));
        }
        self.leader_contact = Some(ctx.now);
        self.reset_election_timer(ctx);
        let count = entries.len() as u64;
        if entries
            .iter()
            .enumerate()
            .any(|(offset, e)| e.index != prev_log_index + 1 + offset as u64 || e.term > self.term)
        {
            tracing::warn!(%from, "append with non-contiguous entries or a future term; ignored");
            return;
        }
        match self.log.append_after(prev_log_index, prev_log_term, entries) {
            Ok(truncated_from) => {
                if let Some(from_index) = truncated_from {
                    self.persist_entries_from(ctx, from_index);
                    self.configuration = self.configuration_at(self.log.last_index());
                }
                let last_new = prev_log_index + count;
                let commit = leader_commit.min(last_new).min(self.log.last_index());
                if commit > self.commit_index {
                    self.commit_index = commit;
                }
                // On success the hint is where this log ends: a leader whose
                // appends, or their answers, were lost (a connection reset
                // drops frames) learns so from the next heartbeat's answer.
                let end = self.log.last_index() + 1;
                let response =
                    Message::AppendResponse { term: self.term, success: true, index: last_new, next_hint: end, round };
                self.send(ctx, directory, from, response);
            }
            Err(conflict) => {
                let response = Message::AppendResponse {
                    term: self.term,
                    success: false,
                    index: prev_log_index,
                    next_hint: conflict.next_index,
                    round,
                };
                self.send(ctx, directory, from, response);
            }
        }
    }

    #[allow(clippy::too_many_arguments, reason = "the fields of one message")]
    fn on_append_response(
        &mut self,
        ctx: &mut Ctx<'_>,
        directory: &impl Directory,
        from: MemberId,
        success: bool,
        index: u64,
        next_hint: u64,
        round: u64,
    ) {
        if self.role != Role::Leader {
            return;
        }
        self.note_heard(ctx.now, from);
        // Refused or not, the answer is of this term: it vouches for the round.
        self.on_round_acked(from, round);
        if success && index > self.log.last_index() {
            // It claims entries this leader never appended: not an answer to us.
            tracing::warn!(%from, index, last = self.log.last_index(), "append response beyond our log; ignored");
            return;
        }
        let Some(progress) = self.leading.as_mut().and_then(|l| l.progress.get_mut(&from)) else { return };
        if success {
            let (max_messages, max_bytes) = (self.config.max_inflight_appends, self.config.max_inflight_bytes);
            let news = progress.on_success(index);
            if !news && progress.is_paused(max_messages, max_bytes) && progress.on_stalled(next_hint) {
                tracing::debug!(%from, end = next_hint, "appends or their answers were lost; probing again");
            }
            if news {
                self.maybe_commit(ctx);
            }
            self.send_append(ctx, directory, from, false);
            self.try_finish_transfer(ctx, directory, from);
        } else if progress.on_reject(index, next_hint) {
            self.send_append(ctx, directory, from, false);
        }
    }

    fn note_heard(&mut self, now: Instant, from: MemberId) {
        if let Some(leading) = self.leading.as_mut() {
            leading.last_heard.insert(from, now);
        }
    }

    /// §5.3, §5.4.2: commit up to the highest index a majority holds, if the
    /// entry there is of this term.
    fn maybe_commit(&mut self, ctx: &mut Ctx<'_>) {
        let Some(leading) = &self.leading else { return };
        let (id, persisted) = (self.id, self.persisted_index);
        let matched = |voter: MemberId| {
            if voter == id { persisted } else { leading.progress.get(&voter).map_or(0, |p| p.match_index) }
        };
        let majority = quorum::majority_match(&self.configuration.voters, matched);
        if majority > self.commit_index && self.log.term(majority) == Some(self.term) {
            let configuration_was_pending = !self.configuration_committed();
            self.commit_index = majority;
            if configuration_was_pending && self.configuration_committed() {
                self.sync_progress();
            }
            // A configuration that excludes the leader, once committed, ends its term (§4.2.2).
            if !self.configuration.is_voter(self.id) && self.configuration_at(majority) == self.configuration {
                tracing::info!(term = self.term, "removed from the voters; stepping down");
                self.become_follower(ctx, self.term, None);
            }
        }
    }

    fn try_finish_transfer(&mut self, ctx: &mut Ctx<'_>, directory: &impl Directory, peer: MemberId) {
        let Some(leading) = &self.leading else { return };
        let Some((target, _)) = leading.transfer else { return };
        let caught_up = leading.progress.get(&target).is_some_and(|p| p.match_index == self.log.last_index());
        if target == peer && caught_up {
            self.send(ctx, directory, target, Message::TimeoutNow { term: self.term });
        } else if target == peer {
            self.send_append(ctx, directory, target, false);
        }
    }

    // ----- snapshots (§7) --------------------------------------------------------------------

    fn start_snapshot(&mut self, ctx: &mut Ctx<'_>, directory: &impl Directory, peer: MemberId) {
        let Some((snapshot, _)) = &self.snapshot else {
            tracing::error!(%peer, "entries compacted but no snapshot held");
            return;
        };
        let index = snapshot.last_index;
        if let Some(progress) = self.leading.as_mut().and_then(|l| l.progress.get_mut(&peer)) {
            progress.become_snapshot(index);
        }
        self.send_snapshot_chunk(ctx, directory, peer, Some(0));
    }

    fn send_snapshot_chunk(
        &mut self,
        ctx: &mut Ctx<'_>,
        directory: &impl Directory,
        peer: MemberId,
        offset: Option<u64>,
    ) {
        let Some((snapshot, encoded)) = &self.snapshot else { return };
        let offset = offset.unwrap_or(0).min(encoded.len() as u64);
        let start = offset as usize;
        let end = (start + limits::SNAPSHOT_CHUNK_BYTES).min(encoded.len());
        let message = Message::InstallSnapshot {
            term: self.term,
            last_index: snapshot.last_index,
            last_term: snapshot.last_term,
            offset,
            total: encoded.len() as u64,
            data: BoundedVec::try_from_vec(encoded[start..end].to_vec()).expect("chunk bounded"),
        };
        self.send(ctx, directory, peer, message);
    }

    #[allow(clippy::too_many_arguments, reason = "the fields of one message")]
    fn on_snapshot_chunk(
        &mut self,
        ctx: &mut Ctx<'_>,
        directory: &impl Directory,
        from: MemberId,
        last_index: u64,
        last_term: u64,
        offset: u64,
        total: u64,
        data: Vec<u8>,
    ) {
        if self.role != Role::Follower || self.leader != Some(from) {
            self.become_follower(ctx, self.term, Some(from));
        }
        self.leader_contact = Some(ctx.now);
        self.reset_election_timer(ctx);
        let respond = |raft: &mut Self, ctx: &mut Ctx<'_>, received: u64, done: bool| {
            let response = Message::SnapshotResponse { term: raft.term, last_index, received, done };
            raft.send(ctx, directory, from, response);
        };
        if last_index <= self.commit_index {
            // Already have all it covers.
            return respond(self, ctx, total, true);
        }
        if total > limits::MAX_SNAPSHOT_BYTES as u64 {
            tracing::error!(total, limit = limits::MAX_SNAPSHOT_BYTES, "snapshot over the size limit refused");
            return;
        }
        if offset == 0 {
            self.receiving = Some(Receiving { last_index, last_term, total, data: Vec::new() });
        }
        let Some(receiving) = self.receiving.as_mut().filter(|r| r.last_index == last_index && r.total == total) else {
            return respond(self, ctx, 0, false);
        };
        if offset != receiving.data.len() as u64 || receiving.data.len() + data.len() > total as usize {
            let received = receiving.data.len() as u64;
            return respond(self, ctx, received, false);
        }
        receiving.data.extend_from_slice(&data);
        if (receiving.data.len() as u64) < total {
            let received = receiving.data.len() as u64;
            return respond(self, ctx, received, false);
        }
        let receiving = self.receiving.take().expect("checked above");
        let snapshot = match postcard::from_bytes::<Snapshot>(&receiving.data) {
            Ok(snapshot)
                if snapshot.last_index == receiving.last_index
                    && snapshot.last_term == receiving.last_term
                    && snapshot.configuration.is_valid() =>
            {
                snapshot
            }
            _ => {
                tracing::error!(%from, last_index, "malformed snapshot refused");
                return respond(self, ctx, 0, false);
            }
        };
        tracing::info!(last_index, last_term, "installing a snapshot from the leader");
        self.log.restore(snapshot.last_index, snapshot.last_term);
        self.snapshot_configuration = snapshot.configuration.clone();
        self.configuration = self.configuration_at(self.log.last_index());
        self.commit_index = self.commit_index.max(snapshot.last_index);
        self.applied_index = snapshot.last_index;
        self.persisted_index = self.persisted_index.min(self.log.last_index()).max(snapshot.last_index);
        ctx.outbox.persist(PersistState::Snapshot(snapshot.clone()));
        // Storage keeps entries after a snapshot's point; rewrite them as the
        // log now holds them (§7: a matching suffix, else nothing), or a
        // divergent old suffix would come back on restart.
        self.persist_entries_from(ctx, snapshot.last_index + 1);
        self.snapshot = Some((snapshot.clone(), receiving.data));
        self.restored = Some(snapshot);
        respond(self, ctx, total, true);
    }

    fn on_snapshot_response(
        &mut self,
        ctx: &mut Ctx<'_>,
        directory: &impl Directory,
        from: MemberId,
        last_index: u64,
        received: u64,
        done: bool,
    ) {
        if self.role != Role::Leader {
            return;
        }
        self.note_heard(ctx.now, from);
        let Some(progress) = self.leading.as_mut().and_then(|l| l.progress.get_mut(&from)) else { return };
        if progress.state != (ProgressState::Snapshot { index: last_index }) {
            return;
        }
        if done {
            progress.on_success(last_index);
            self.maybe_commit(ctx);
            self.send_append(ctx, directory, from, false);
        } else if self.snapshot.as_ref().is_some_and(|(snapshot, _)| snapshot.last_index != last_index) {
            // Compacted again mid-transfer: the rest of the old one is gone.
            self.start_snapshot(ctx, directory, from);
        } else {
            self.send_snapshot_chunk(ctx, directory, from, Some(received));
        }
    }

    // ----- storage -------------------------------------------------------------------------------

    fn persist_hard_state(&mut self, ctx: &mut Ctx<'_>) {
        ctx.outbox.persist(PersistState::HardState { term: self.term, vote: self.vote });
    }

    /// Appends an entry to this member's own log. It is sent and persisted
    /// at [`Raft::flush`], with whatever else this input appended: one append
    /// per follower and one persist per input, however many proposals.
    fn append_local(&mut self, entry: Entry) {
        let index = entry.index;
        let is_config = matches!(entry.payload, Payload::Config(_));
        self.log.push(entry);
        if is_config {
            self.configuration = self.configuration_at(index);
            self.sync_progress();
        }
        self.unpersisted_from = Some(self.unpersisted_from.map_or(index, |from| from.min(index)));
        self.pending_broadcast = true;
    }

    /// The end of an input: send what this leader appended (before its own
    /// fsync, which may run in parallel: it counts itself only once
    /// persisted), then persist it in one write.
    pub(crate) fn flush(&mut self, ctx: &mut Ctx<'_>, directory: &impl Directory) {
        // Reads arrived: a heartbeat round now, not at the next tick, unless
        // one is in flight (its answers come first; the new reads go in
        // the round after it, so a read load costs one round at a time).
        let round_wanted = self.leading.as_ref().is_some_and(|l| {
            let in_flight = l.reads.waiting.front().is_some_and(|&(_, round, _)| round <= l.reads.round);
            l.reads.wanted > l.reads.round && !in_flight
        });
        if round_wanted {
            self.next_round(ctx.now);
            let peers: Vec<MemberId> =
                self.leading.as_ref().map(|l| l.progress.keys().copied().collect()).unwrap_or_default();
            for peer in peers {
                self.send_append(ctx, directory, peer, true);
            }
            self.pending_broadcast = false;
        }
        if std::mem::take(&mut self.pending_broadcast) && self.role == Role::Leader {
            self.broadcast_append(ctx, directory);
        }
        if let Some(from) = self.unpersisted_from.take() {
            self.persist_entries_from(ctx, from);
        }
    }

    /// Persists the log from `from` to its end (replacing whatever storage
    /// holds from `from` on).
    fn persist_entries_from(&mut self, ctx: &mut Ctx<'_>, from: u64) {
        // Local appends not flushed yet go in the same write.
        let from = self.unpersisted_from.take().map_or(from, |pending| pending.min(from));
        let entries: Vec<Entry> = self.entries_from(from).cloned().collect();
        self.persisted_index = self.persisted_index.min(from.saturating_sub(1));
        // Earlier persists still in flight no longer cover what this one replaces.
        for (_, index) in &mut self.unconfirmed {
            *index = (*index).min(from.saturating_sub(1));
        }
        let seq = ctx.outbox.persist(PersistState::Entries { from, entries });
        self.unconfirmed.push_back((seq, self.log.last_index()));
    }

    /// Keeps the leader's progress table in step with the configuration: the
    /// latest one's members, and also the committed one's until the latest
    /// commits, so a removed member still learns that its removal committed.
    fn sync_progress(&mut self) {
        let committed = self.configuration_at(self.commit_index);
        let members: BTreeSet<MemberId> =
            self.configuration.members().chain(committed.members()).filter(|&id| id != self.id).collect();
        let next = self.log.last_index() + 1;
        if let Some(leading) = self.leading.as_mut() {
            // A member leaving the table gets one last heartbeat first (see `retiring`).
            let removed: Vec<MemberId> = leading.progress.keys().filter(|id| !members.contains(id)).copied().collect();
            leading.retiring.extend(removed);
            leading.retiring.retain(|id| !members.contains(id));
            for id in members {
                leading.progress.entry(id).or_insert_with(|| Progress::new(next));
            }
        }
    }

    /// The configuration in effect at `index`: the last one appended at or
    /// before it, else the snapshot's.
    fn configuration_at(&self, index: u64) -> Configuration {
        let latest = (self.log.first_index()..=index.min(self.log.last_index())).rev().find_map(|i| {
            match &self.log.entry(i)?.payload {
                Payload::Config(configuration) => Some(configuration.clone()),
                _ => None,
            }
        });
        latest.unwrap_or_else(|| self.snapshot_configuration.clone())
    }

    fn send(&mut self, ctx: &mut Ctx<'_>, directory: &impl Directory, to: MemberId, message: Message) {
        let Some(addr) = directory.addr_of(to) else {
            tracing::trace!(%to, kind = message.kind(), "no address for a raft peer");
            return;
        };
        ctx.outbox.send(addr, Channel::Stream, Body::Raft(message));
    }

    pub(crate) fn check_invariants(&self) {
        self.log.check_invariants();
        assert!(self.commit_index <= self.log.last_index(), "commit within the log");
        assert!(self.applied_index <= self.commit_index, "applied only what committed");
        assert!(self.commit_index >= self.log.snapshot_index(), "the snapshot covers only committed entries");
        assert_eq!(self.role == Role::Leader, self.leading.is_some(), "leader state only on the leader");
        if self.role == Role::Leader {
            assert_eq!(self.leader, Some(self.id), "a leader knows it leads");
            assert_eq!(self.vote, Some(self.id), "a leader voted for itself");
        }
        if let Some(leading) = &self.leading {
            for progress in leading.progress.values() {
                progress.check_invariants();
                assert!(progress.match_index <= self.log.last_index(), "a follower matched beyond our log");
            }
        }
        debug_assert_eq!(self.configuration, self.configuration_at(self.log.last_index()), "configuration in step");
    }
}
