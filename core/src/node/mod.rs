//! The node: one sans-IO state machine that routes inputs to its sub-machines.
//!
//! Driven like quinn-proto: feed [`Input`]s with [`Node::handle`], drain
//! [`Node::poll`] until it returns `None`, and call `handle(now, Input::Tick)`
//! no later than [`Node::next_deadline`]. The node owns the one seeded RNG, the
//! one timer table and the one outbox; sub-machines borrow them through a
//! [`Ctx`] for the length of one input. After every input the node lets its
//! sub-machines act on each other's news ([`coordinate`]): committed entries
//! reach the views, a leader reconciles voters and views with membership.

mod apply;
mod coordinate;
mod outbox;

use std::net::SocketAddr;

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::bootstrap::ClusterClaim;
use crate::config::{Bootstrap, Config, ConfigError};
use crate::id::{ClusterUuid, MemberId, cluster_name_hash};
use crate::membership::{MemberInfo, Membership};
use crate::metrics::{Metrics, Rejection};
use crate::raft::voters::VoterPolicy;
use crate::raft::{Configuration, Entry, Raft, RaftState, Role, Snapshot};
use crate::rebalance::{Rebalance, ViewState};
use crate::rsm::client::{Client, Origins};
use crate::rsm::{Replicated, RestoreError, RsmState, StateMachine};
use crate::time::Instant;
use crate::timer::TimerTable;
use crate::view::View;
use crate::wire::{self, Body, Channel, DecodeError, Envelope, Header, Name, Tags};

pub(crate) use outbox::Outbox;

/// Who a node is: fixed for the life of its storage, except the address and tags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Durable id, created with the member's storage and never reused.
    pub id: MemberId,
    /// Human-readable name, unique in the cluster by convention.
    pub name: Name,
    /// Address other members reach this one at (UDP and TCP, same port).
    pub addr: SocketAddr,
    /// Initial tags.
    pub tags: Tags,
    /// Whether the member's storage survives a restart (voters need it).
    pub durable: bool,
}

/// What a node recovered from its storage at start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// The boot id of the previous start, 0 for new storage. The node raises it
    /// and persists the new value before its first send.
    pub boot_id: u64,
    /// The cluster this member belongs to, nil if none yet.
    pub cluster_uuid: ClusterUuid,
    /// Term, vote, snapshot and log.
    pub raft: RaftState,
    /// Operator recovery after a permanent loss of quorum (like etcd's
    /// `--force-new-cluster`): make this member the only voter and mint a new
    /// cluster uuid, so the old members are refused until they are wiped and
    /// rejoin.
    pub force_new_cluster: bool,
    /// On a recovered member: the uuid of the cluster it replaced (nil if none).
    pub replaced_uuid: ClusterUuid,
    /// On an old member of a recovered cluster: the uuid that replaced ours.
    /// Such a member takes no part in Raft until its data dir is wiped.
    pub fenced_by: ClusterUuid,
}

impl Recovered {
    /// Folds one durable write into what the next start recovers. Every
    /// store applies its writes through this, so they all recover alike.
    pub fn apply(&mut self, state: &PersistState) {
        match state {
            PersistState::BootId(boot_id) => self.boot_id = *boot_id,
            PersistState::HardState { term, vote } => {
                self.raft.term = *term;
                self.raft.vote = *vote;
            }
            PersistState::Entries { from, entries } => {
                self.raft.entries.retain(|entry| entry.index < *from);
                self.raft.entries.extend(entries.iter().cloned());
            }
            PersistState::Snapshot(snapshot) => {
                self.raft.entries.retain(|entry| entry.index > snapshot.last_index);
                self.raft.snapshot = Some(snapshot.clone());
            }
            PersistState::ClusterUuid(uuid) => self.cluster_uuid = *uuid,
            PersistState::ReplacedUuid(uuid) => self.replaced_uuid = *uuid,
            PersistState::FencedBy(uuid) => self.fenced_by = *uuid,
        }
    }
}

/// Something that happened to the node, handed in by the driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input<'a> {
    /// Bytes arrived from `from` on `channel`. For a stream, `from` is the
    /// peer's socket address, not necessarily its advertised one.
    Receive {
        /// Source address.
        from: SocketAddr,
        /// How they came.
        channel: Channel,
        /// One datagram, or one whole frame without its length prefix.
        bytes: &'a [u8],
    },
    /// Time passed; fire whatever timers are due. Spurious ticks are harmless.
    Tick,
    /// An order from the application or operator.
    Command(Command),
    /// Discovery found these addresses; they replace the previous discovery
    /// result as seeds (addresses given with [`Command::Join`] stay).
    Discovered(Vec<SocketAddr>),
    /// Every [`Persist`] with a sequence number up to this one is durable.
    Persisted(u64),
}

/// Orders a node takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Join the cluster through any of these addresses (retried with backoff).
    Join(Vec<SocketAddr>),
    /// Leave gracefully: a leaving phase (leadership and the voter seat are
    /// handed off), then `Left`, then [`Event::LeaveComplete`].
    Leave,
    /// Replace this member's tags and gossip them.
    SetTags(Tags),
    /// The application finished rebalancing to view `epoch`.
    Ack {
        /// The epoch of the [`Event::Rebalance`] it finished.
        epoch: u64,
    },
    /// If leading, hand leadership to this voter (or the most caught-up one).
    TransferLeadership(Option<MemberId>),
    /// Apply `command` to the replicated state machine, at most once, from
    /// any member (DESIGN §3.4); the answer comes as [`Event::Applied`] with
    /// the same `request` number, chosen by the caller.
    Apply {
        /// The caller's number for this request.
        request: u64,
        /// The command for the state machine.
        command: Vec<u8>,
    },
    /// Answer `query` from the replicated state machine, linearizably, from
    /// any member: the leader runs it once a ReadIndex round (or, with
    /// `lease_reads`, its lease) shows its applied state is current. The
    /// answer comes as [`Event::Read`] with the same `request` number.
    Read {
        /// The caller's number for this request.
        request: u64,
        /// The query for [`StateMachine::query`](crate::rsm::StateMachine::query).
        query: Vec<u8>,
    },
}

/// Something the driver must do.
///
/// **Persistence orders sends.** A [`Output::Send`] that follows a
/// [`Output::Persist`] is held inside the node until an
/// [`Input::Persisted`] confirms that persist: whatever it says may depend on
/// the state being durable (a boot id, a vote, an appended entry). So the
/// driver may send everything `poll` hands it at once, and must sync every
/// persist before confirming it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Send bytes to an address.
    Send(Transmit),
    /// Make state durable, then answer with [`Input::Persisted`] of its `seq`.
    Persist(Persist),
    /// Tell the application.
    Event(Event),
}

/// Bytes for one destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Destination address.
    pub to: SocketAddr,
    /// Datagram or stream frame.
    pub channel: Channel,
    /// One encoded [`Envelope`].
    pub bytes: Vec<u8>,
}

/// State to make durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Persist {
    /// Confirm with [`Input::Persisted`]`(seq)`; sequence numbers increase by one.
    pub seq: u64,
    /// What to store.
    pub state: PersistState,
}

/// The kinds of durable state, each replacing what it names. Serializable,
/// so a store can log them as they come.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PersistState {
    /// This start's boot id, to be returned as [`Recovered::boot_id`] next start.
    BootId(u64),
    /// Raft's term and vote.
    HardState {
        /// The current term.
        term: u64,
        /// The vote cast in it.
        vote: Option<MemberId>,
    },
    /// Log entries: drop every stored entry from `from` on, then append these.
    Entries {
        /// The first index replaced.
        from: u64,
        /// The new entries, contiguous from `from`.
        entries: Vec<Entry>,
    },
    /// A snapshot: it replaces the stored snapshot and every entry it covers.
    Snapshot(Snapshot),
    /// The cluster this member now belongs to.
    ClusterUuid(ClusterUuid),
    /// This member was recovered; the uuid of the cluster it replaced.
    ReplacedUuid(ClusterUuid),
    /// This member's cluster was recovered elsewhere as this uuid.
    FencedBy(ClusterUuid),
}

/// What the application hears about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// This node reached at least one other member.
    Joined,
    /// A member is new to us, or came back after being dead or having left.
    MemberJoined(MemberInfo),
    /// A known member started again (a higher boot id); its old boot is gone.
    MemberRestarted(MemberInfo),
    /// A member's address, tags, leaving flag or cluster claim changed.
    MemberUpdated(MemberInfo),
    /// A member is suspected of having failed.
    MemberSuspected(MemberInfo),
    /// A suspect member refuted the suspicion.
    MemberRecovered(MemberInfo),
    /// A member was declared dead.
    MemberFailed(MemberInfo),
    /// A member left gracefully. Never reported as a failure.
    MemberLeft(MemberInfo),
    /// A dead or left member was forgotten.
    MemberReaped(MemberId),
    /// Another durable id uses this node's name, or a name we superseded
    /// came back alive. Two processes share a name: an operator error.
    NameConflict {
        /// The name in dispute.
        name: Name,
        /// The other durable id.
        other: MemberId,
    },
    /// This node bootstrapped a new cluster with these voters.
    Bootstrapped {
        /// The new cluster's uuid.
        uuid: ClusterUuid,
        /// The initial voters.
        voters: Vec<MemberId>,
    },
    /// This node will not bootstrap with the members in sight; why.
    BootstrapRefused {
        /// For the operator.
        reason: String,
    },
    /// This node became a member of an existing cluster.
    JoinedCluster {
        /// Its uuid.
        uuid: ClusterUuid,
    },
    /// The leader this node knows changed (`None`: no leader known).
    LeaderChanged {
        /// The new leader.
        leader: Option<MemberId>,
        /// Its term.
        term: u64,
    },
    /// A new view committed: move work to its owners, then send
    /// [`Command::Ack`] with its epoch.
    Rebalance(View),
    /// On the leader: every member acked this view and its `Stable`
    /// committed. Reported once per term and epoch; at least once across
    /// leader changes, so housekeeping deduplicates by epoch.
    ClusterStable(View),
    /// This node's `Left` has been gossiped; the driver may shut it down.
    LeaveComplete,
    /// A member of this node's configuration now belongs to the cluster
    /// `by`, recovered from ours: this node takes no part in Raft any more.
    /// Wipe its data dir and restart it to rejoin.
    Fenced {
        /// The recovered cluster's uuid.
        by: ClusterUuid,
    },
    /// A [`Command::Apply`] ended: the state machine's response once the
    /// command committed and applied, or why there is none.
    Applied {
        /// The request's number, as given.
        request: u64,
        /// The response, or the reason.
        result: Result<Vec<u8>, crate::rsm::ApplyError>,
    },
    /// A [`Command::Read`] ended: the query's answer, or why there is none.
    Read {
        /// The request's number, as given.
        request: u64,
        /// The answer, or the reason.
        result: Result<Vec<u8>, crate::rsm::ApplyError>,
    },
}

/// What a snapshot holds besides the log's own state: the views and the
/// replicated state machine.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct CoreState {
    pub(crate) view: ViewState,
    pub(crate) rsm: RsmState,
}

/// The protocol state machine of one member.
#[derive(Debug)]
pub struct Node {
    rng: ChaCha8Rng,
    timers: TimerTable,
    outbox: Outbox,
    membership: Membership,
    raft: Raft,
    rebalance: Rebalance,
    cluster_name: String,
    cluster_name_hash: u64,
    bootstrap: Bootstrap,
    voters: VoterPolicy,
    leave_timeout: core::time::Duration,
    /// What the coordination logic remembers between inputs.
    coordination: coordinate::State,
    /// The replicated state machine and its sessions (DESIGN §3.4).
    rsm: Replicated,
    /// This member's own `apply` requests.
    client: Client,
    /// On the leader: whom to answer when a client entry applies.
    origins: Origins,
    /// On the leader: log time.
    stamps: apply::Stamps,
    /// On the leader: reads waiting for their ReadIndex round or the apply.
    reads: apply::Reads,
}

/// What a sub-machine borrows from its node while it handles one input.
pub(crate) struct Ctx<'a> {
    pub(crate) now: Instant,
    pub(crate) rng: &'a mut ChaCha8Rng,
    pub(crate) timers: &'a mut crate::timer::TimerTable,
    pub(crate) outbox: &'a mut Outbox,
}

/// A node split into its parts, so one input can reach several sub-machines.
pub(crate) struct Parts<'a> {
    pub(crate) ctx: Ctx<'a>,
    pub(crate) membership: &'a mut Membership,
    pub(crate) raft: &'a mut Raft,
    pub(crate) rebalance: &'a mut Rebalance,
}

impl Node {
    /// Creates a node. It raises the recovered boot id and asks for it to be
    /// persisted; nothing is sent until that persist is confirmed.
    ///
    /// `seed` drives every random choice the node makes: two nodes built with
    /// the same arguments and fed the same inputs produce the same outputs.
    pub fn new(
        config: Config,
        identity: Identity,
        seed: u64,
        recovered: Recovered,
        now: Instant,
    ) -> Result<Node, ConfigError> {
        config.validate()?;
        let boot_id = recovered.boot_id.checked_add(1).expect("boot id exhausted");
        let cluster_name_hash = cluster_name_hash(&config.cluster_name);
        let header = Header {
            version: wire::PROTOCOL_VERSION,
            cluster_name_hash,
            cluster_uuid: recovered.cluster_uuid,
            from: identity.id,
            boot_id,
        };
        let id = identity.id;
        let state = recovered
            .raft
            .snapshot
            .as_ref()
            .and_then(|snapshot| postcard::from_bytes::<CoreState>(&snapshot.state).ok())
            .unwrap_or_default();
        let mut rsm = Replicated::new(Box::new(crate::rsm::kv::Kv::new()), config.session_ttl);
        if let Err(error) = rsm.restore(state.rsm) {
            tracing::error!(%error, "state machine snapshot unreadable; starting from an empty store");
        }
        let rng = ChaCha8Rng::seed_from_u64(seed);
        // The session nonce comes from the seed without a draw from `rng`, so
        // the node's random choices stay those of its seed alone.
        let client = Client::new(
            ChaCha8Rng::seed_from_u64(seed ^ 0x6e6f_6e63_655f_7273).next_u64(),
            config.raft.election_timeout,
            config.apply_timeout,
            config.session_ttl,
        );
        let mut node = Node {
            rng,
            timers: TimerTable::default(),
            outbox: Outbox::new(header),
            membership: Membership::new(config.membership, identity, boot_id),
            raft: Raft::new(config.raft, id, recovered.raft),
            rebalance: Rebalance::new(config.rebalance, state.view),
            cluster_name: config.cluster_name,
            cluster_name_hash,
            bootstrap: config.bootstrap,
            voters: config.voters,
            leave_timeout: config.leave_timeout,
            coordination: coordinate::State::default(),
            rsm,
            client,
            origins: Origins::default(),
            stamps: apply::Stamps::default(),
            reads: apply::Reads::default(),
        };
        node.outbox.persist(PersistState::BootId(boot_id));
        node.coordination.observe_leader(node.raft.leader(), node.raft.term());
        node.coordination.replaced_uuid = recovered.replaced_uuid;
        node.coordination.fenced_by = recovered.fenced_by;
        if !recovered.fenced_by.is_nil() {
            tracing::error!(by = ?recovered.fenced_by, "this member's cluster was recovered elsewhere; wipe its data dir to rejoin");
            let mut parts = node.parts(now);
            parts.raft.withdraw(&mut parts.ctx);
        }
        if recovered.force_new_cluster {
            node.force_new_cluster(now);
        }
        let claim = match (node.outbox.header().cluster_uuid, node.bootstrap) {
            (uuid, _) if !uuid.is_nil() => ClusterClaim::Member(uuid),
            (_, Bootstrap::Expect(expect)) => ClusterClaim::Expecting { expect: expect.get(), seen: 0 },
            _ => ClusterClaim::Joining,
        };
        let mut parts = node.parts(now);
        parts.membership.start(&mut parts.ctx);
        parts.membership.set_claim(&mut parts.ctx, claim);
        parts.raft.start(&mut parts.ctx);
        node.coordinate(now);
        node.flush_raft(now);
        Ok(node)
    }

    /// Replaces the replicated state machine (the built-in
    /// [`Kv`](crate::rsm::kv::Kv) by default) before the node takes its
    /// first input; it is given the state recovered so far.
    pub fn set_state_machine(&mut self, machine: Box<dyn StateMachine>) -> Result<(), RestoreError> {
        self.rsm.replace_machine(machine)
    }

    /// Feeds one input. Afterwards drain [`Node::poll`] and re-read
    /// [`Node::next_deadline`]. `now` must never go backwards.
    pub fn handle(&mut self, now: Instant, input: Input<'_>) {
        match input {
            Input::Receive { from, channel, bytes } => self.on_receive(now, from, channel, bytes),
            Input::Tick => {}
            Input::Command(command) => self.on_command(now, command),
            Input::Discovered(addrs) => {
                let mut parts = self.parts(now);
                parts.membership.add_seeds(&mut parts.ctx, &addrs, true);
            }
            Input::Persisted(seq) => {
                self.outbox.confirm_persisted(seq);
                let mut parts = self.parts(now);
                parts.raft.on_persisted(&mut parts.ctx, seq);
            }
        }
        // Fire anything already due, so a driver that only calls `handle` on
        // inputs still makes progress on overdue timers.
        self.on_tick(now);
        self.coordinate(now);
        self.flush_raft(now);
    }

    /// Sends and persists what Raft appended during this input, in one batch.
    fn flush_raft(&mut self, now: Instant) {
        let mut parts = self.parts(now);
        parts.raft.flush(&mut parts.ctx, &*parts.membership);
    }

    /// The next output, or `None` when there is nothing more until the next
    /// [`Node::handle`].
    pub fn poll(&mut self) -> Option<Output> {
        self.outbox.pop()
    }

    /// When to call `handle(now, Input::Tick)` at the latest; `None` if no timer
    /// is armed.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    // ----- queries ----------------------------------------------------------------------------

    /// This member's durable id.
    pub fn id(&self) -> MemberId {
        self.membership.local_id()
    }

    /// This start's boot id.
    pub fn boot_id(&self) -> u64 {
        self.outbox.header().boot_id
    }

    /// The cluster this member belongs to; nil before bootstrap or join.
    pub fn cluster_uuid(&self) -> ClusterUuid {
        self.outbox.header().cluster_uuid
    }

    /// Every member this node knows, itself included, dead and left ones too,
    /// in durable-id order.
    pub fn members(&self) -> impl Iterator<Item = &MemberInfo> {
        self.membership.members()
    }

    /// What this node knows of member `id`.
    pub fn member(&self, id: MemberId) -> Option<&MemberInfo> {
        self.membership.member(id)
    }

    /// Whether this node has reached at least one other member.
    pub fn is_joined(&self) -> bool {
        self.membership.is_joined()
    }

    /// Lifeguard's local health multiplier: 0 when healthy.
    pub fn local_health(&self) -> u32 {
        self.membership.local_health()
    }

    /// The current Raft term.
    pub fn term(&self) -> u64 {
        self.raft.term()
    }

    /// This member's Raft role.
    pub fn role(&self) -> Role {
        self.raft.role()
    }

    /// The leader this member knows of, if any.
    pub fn leader(&self) -> Option<MemberId> {
        self.raft.leader()
    }

    /// Whether this member leads.
    pub fn is_leader(&self) -> bool {
        self.raft.role() == Role::Leader
    }

    /// The voters and learners in effect (the latest in the log).
    pub fn configuration(&self) -> &Configuration {
        self.raft.configuration()
    }

    /// The index of the latest committed entry this member knows of.
    pub fn commit_index(&self) -> u64 {
        self.raft.commit_index()
    }

    /// The newest committed view.
    pub fn view(&self) -> Option<&View> {
        self.rebalance.state.view.as_ref()
    }

    /// Whether the newest view is stable (every member acked it and its
    /// `Stable` committed) and a leader is known: a member that lost the
    /// leader cannot vouch for the cluster.
    pub fn is_stable(&self) -> bool {
        self.raft.leader().is_some() && self.rebalance.state.is_stable()
    }

    /// Whether this member is in the newest committed view: it owns the keys
    /// the view assigns it. A lagging or removed member is not, and must stop
    /// serving.
    pub fn is_active(&self) -> bool {
        self.rebalance.is_active(self.id())
    }

    /// The members of the newest committed view: the ones serving.
    pub fn primaries(&self) -> impl Iterator<Item = MemberId> + '_ {
        self.rebalance.state.view.iter().flat_map(|view| view.ids())
    }

    /// Members the leader holds lagging (empty on other members).
    pub fn lagging(&self) -> impl Iterator<Item = MemberId> + '_ {
        self.rebalance.lagging()
    }

    /// Appends `commands` as one batch if this member leads: the core's side
    /// of a client write, for benchmarks and tests until the replicated state
    /// machine's API exists. Returns the last index appended.
    #[cfg(any(test, feature = "testing"))]
    pub fn propose_commands(
        &mut self,
        now: Instant,
        commands: impl IntoIterator<Item = Vec<u8>>,
    ) -> Result<u64, crate::raft::ProposeError> {
        let mut last = Err(crate::raft::ProposeError::NotLeader(self.raft.leader()));
        for (seq, command) in (1..).zip(commands) {
            let command =
                crate::wire::BoundedVec::try_from_vec(command).map_err(|_| crate::raft::ProposeError::TooLarge)?;
            // Session 0 is never registered: the entries replicate and commit,
            // and the state machine answers them `SessionExpired`.
            let payload = crate::raft::Payload::Command { session: 0, seq, confirmed_below: 0, stamp: 0, command };
            last = Ok(self.raft.propose(payload)?);
        }
        self.flush_raft(now);
        last
    }

    /// Log entries from `from` to the end of this member's log (for checkers).
    pub fn log_entries(&self, from: u64) -> impl Iterator<Item = &Entry> {
        self.raft.entries_from(from)
    }

    /// The replicated state machine's state as this member applied it
    /// (its snapshot encoding), for checkers.
    pub fn state_machine_snapshot(&self) -> Vec<u8> {
        self.rsm.snapshot().machine
    }

    /// The last index compacted into this member's snapshot (0 without
    /// one): its log holds the entries after it.
    pub fn snapshot_index(&self) -> u64 {
        self.raft.snapshot_index()
    }

    /// Traffic counters.
    pub fn metrics(&self) -> &Metrics {
        &self.outbox.metrics
    }

    /// Checks every internal invariant, panicking with its name on a breach.
    /// Test drivers and the simulator call it after every input.
    pub fn check_invariants(&self) {
        self.timers.check_invariants();
        self.membership.check_invariants(&self.timers);
        self.raft.check_invariants();
    }

    // ----- routing ----------------------------------------------------------------------------

    pub(crate) fn parts(&mut self, now: Instant) -> Parts<'_> {
        Parts {
            ctx: Ctx { now, rng: &mut self.rng, timers: &mut self.timers, outbox: &mut self.outbox },
            membership: &mut self.membership,
            raft: &mut self.raft,
            rebalance: &mut self.rebalance,
        }
    }

    fn on_tick(&mut self, now: Instant) {
        while let Some(timer) = self.timers.pop_expired(now) {
            use crate::timer::Timer::*;
            match timer {
                Election | Heartbeat | CheckQuorum => {
                    let mut parts = self.parts(now);
                    parts.raft.on_timer(&mut parts.ctx, &*parts.membership, timer);
                }
                Reconcile | AckResend | LeaveTimeout => self.on_coordination_timer(now, timer),
                ClientRetry => self.on_client_timer(now),
                Probe | ProbeTimeout | RelayedProbe(_) | Suspicion(_) | Gossip | PushPull | Reconnect | SeedRetry
                | LeavePropagated => {
                    let mut parts = self.parts(now);
                    parts.membership.on_timer(&mut parts.ctx, timer);
                }
            }
        }
    }

    fn on_receive(&mut self, now: Instant, from: SocketAddr, channel: Channel, bytes: &[u8]) {
        self.outbox.metrics.bytes_received += bytes.len() as u64;
        let envelope = match self.decode(channel, bytes) {
            Ok(envelope) => envelope,
            Err(reason) => {
                self.outbox.metrics.count_rejected(reason);
                tracing::debug!(%from, ?channel, len = bytes.len(), reason = reason.as_str(), "message rejected");
                return;
            }
        };
        let header = envelope.header;
        if header.from == self.id() {
            self.outbox.metrics.count_rejected(Rejection::FromSelf);
            return;
        }
        if self.membership.is_stale_boot(header.from, header.boot_id) {
            self.outbox.metrics.count_rejected(Rejection::StaleBoot);
            return;
        }
        if let Err(reason) = self.admit(now, from, channel, &header, &envelope.body) {
            self.outbox.metrics.count_rejected(reason);
            tracing::debug!(%from, sender = %header.from, reason = reason.as_str(), "message from another cluster");
            return;
        }
        self.outbox.metrics.count_received(envelope.body.kind());
        let mut parts = self.parts(now);
        match envelope.body {
            Body::Membership(message) => parts.membership.on_message(&mut parts.ctx, from, channel, &header, message),
            Body::Client(message) => {
                // Answers go to the sender's advertised address: a stream
                // arrives from an ephemeral port.
                let addr = crate::raft::Directory::addr_of(&*parts.membership, header.from);
                self.on_client_message(now, addr, message);
            }
            Body::Raft(message) => parts.raft.on_message(&mut parts.ctx, &*parts.membership, header.from, message),
            Body::View(crate::rebalance::Message::Ack { epoch }) => {
                // Only the leader tracks acks; it confirms those of the newest view.
                if parts.raft.role() == Role::Leader && parts.rebalance.on_ack(header.from, header.boot_id, epoch) {
                    // To its advertised address: the ack's stream came from an ephemeral port.
                    if let Some(addr) = crate::raft::Directory::addr_of(&*parts.membership, header.from) {
                        let confirmation = Body::View(crate::rebalance::Message::AckReceived { epoch });
                        parts.ctx.outbox.send(addr, Channel::Stream, confirmation);
                    }
                    self.coordination.dirty = true;
                }
            }
            // Meaningful only from another cluster, handled by `admit`.
            Body::Recovered => {}
            Body::View(crate::rebalance::Message::AckReceived { epoch }) => {
                if parts.raft.leader() == Some(header.from) {
                    parts.rebalance.on_ack_received(header.from, parts.raft.term(), epoch);
                }
            }
        }
    }

    fn decode(&self, channel: Channel, bytes: &[u8]) -> Result<Envelope, Rejection> {
        let (header, body) = Header::decode(bytes, channel).map_err(rejection_of)?;
        if header.cluster_name_hash != self.cluster_name_hash {
            return Err(Rejection::ForeignCluster);
        }
        let body = wire::decode_body(body).map_err(rejection_of)?;
        Ok(Envelope { header, body })
    }
}

fn rejection_of(error: DecodeError) -> Rejection {
    match error {
        DecodeError::TooLarge { .. } => Rejection::TooLarge,
        DecodeError::UnknownVersion(_) => Rejection::UnknownVersion,
        DecodeError::Malformed(_) | DecodeError::TrailingBytes(_) => Rejection::Malformed,
        DecodeError::Checksum { .. } => Rejection::Corrupt,
    }
}
