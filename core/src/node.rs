//! The node: one sans-IO state machine that routes inputs to its sub-machines.
//!
//! Driven like quinn-proto: feed [`Input`]s with [`Node::handle`], drain
//! [`Node::poll`] until it returns `None`, and call `handle(now, Input::Tick)`
//! no later than [`Node::next_deadline`]. The node owns the one seeded RNG, the
//! one timer table and the one outbox; sub-machines borrow them through a
//! [`Ctx`] for the length of one input.

use std::collections::VecDeque;
use std::net::SocketAddr;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::config::{Config, ConfigError};
use crate::id::{ClusterUuid, MemberId, cluster_name_hash};
use crate::membership::{MemberInfo, Membership};
use crate::metrics::{Metrics, Rejection};
use crate::time::Instant;
use crate::timer::TimerTable;
use crate::wire::{self, Body, Channel, DecodeError, Envelope, Header, Name, Tags, limits};

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
}

/// What a node recovered from its storage at start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// The boot id of the previous start, 0 for new storage. The node raises it
    /// and persists the new value before its first send.
    pub boot_id: u64,
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
    /// Leave gracefully: a leaving phase, then `Left`, then
    /// [`Event::LeaveComplete`].
    Leave,
    /// Replace this member's tags and gossip them.
    SetTags(Tags),
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

/// The kinds of durable state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PersistState {
    /// This start's boot id, to be returned as [`Recovered::boot_id`] next start.
    BootId(u64),
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
    /// A member's address, tags or leaving flag changed.
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
    /// This node's `Left` has been gossiped; the driver may shut it down.
    LeaveComplete,
}

/// The protocol state machine of one member.
#[derive(Debug)]
pub struct Node {
    rng: ChaCha8Rng,
    timers: TimerTable,
    outbox: Outbox,
    membership: Membership,
    cluster_name_hash: u64,
}

/// What a sub-machine borrows from its node while it handles one input.
pub(crate) struct Ctx<'a> {
    pub(crate) now: Instant,
    pub(crate) rng: &'a mut ChaCha8Rng,
    pub(crate) timers: &'a mut TimerTable,
    pub(crate) outbox: &'a mut Outbox,
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
            cluster_uuid: ClusterUuid::NIL,
            from: identity.id,
            boot_id,
        };
        let mut node = Node {
            rng: ChaCha8Rng::seed_from_u64(seed),
            timers: TimerTable::default(),
            outbox: Outbox::new(header),
            membership: Membership::new(config.membership, identity, boot_id),
            cluster_name_hash,
        };
        node.outbox.persist(PersistState::BootId(boot_id));
        let (membership, mut ctx) = node.split(now);
        membership.start(&mut ctx);
        Ok(node)
    }

    /// Feeds one input. Afterwards drain [`Node::poll`] and re-read
    /// [`Node::next_deadline`]. `now` must never go backwards.
    pub fn handle(&mut self, now: Instant, input: Input<'_>) {
        match input {
            Input::Receive { from, channel, bytes } => self.on_receive(now, from, channel, bytes),
            Input::Tick => self.on_tick(now),
            Input::Command(command) => {
                let (membership, mut ctx) = self.split(now);
                match command {
                    Command::Join(addrs) => membership.add_seeds(&mut ctx, &addrs, false),
                    Command::Leave => {
                        // Nothing else to hand off yet: leadership transfer joins here with Raft.
                        membership.begin_leave(&mut ctx);
                        membership.complete_leave(&mut ctx);
                    }
                    Command::SetTags(tags) => membership.set_tags(&mut ctx, tags),
                }
            }
            Input::Discovered(addrs) => {
                let (membership, mut ctx) = self.split(now);
                membership.add_seeds(&mut ctx, &addrs, true);
            }
            Input::Persisted(seq) => self.outbox.confirm_persisted(seq),
        }
        // Fire anything already due, so a driver that only calls `handle` on
        // inputs still makes progress on overdue timers.
        self.on_tick(now);
    }

    /// The next output, or `None` when there is nothing more until the next
    /// [`Node::handle`].
    pub fn poll(&mut self) -> Option<Output> {
        self.outbox.ready.pop_front()
    }

    /// When to call `handle(now, Input::Tick)` at the latest; `None` if no timer
    /// is armed.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    /// This member's durable id.
    pub fn id(&self) -> MemberId {
        self.membership.local_id()
    }

    /// This start's boot id.
    pub fn boot_id(&self) -> u64 {
        self.outbox.header.boot_id
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

    /// Traffic counters.
    pub fn metrics(&self) -> &Metrics {
        &self.outbox.metrics
    }

    /// Checks every internal invariant, panicking with its name on a breach.
    /// Test drivers and the simulator call it after every input.
    pub fn check_invariants(&self) {
        self.timers.check_invariants();
        self.membership.check_invariants(&self.timers);
    }

    fn split(&mut self, now: Instant) -> (&mut Membership, Ctx<'_>) {
        let ctx = Ctx { now, rng: &mut self.rng, timers: &mut self.timers, outbox: &mut self.outbox };
        (&mut self.membership, ctx)
    }

    fn on_tick(&mut self, now: Instant) {
        while let Some(timer) = self.timers.pop_expired(now) {
            let (membership, mut ctx) = self.split(now);
            membership.on_timer(&mut ctx, timer);
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
        self.outbox.metrics.count_received(envelope.body.kind());
        let (membership, mut ctx) = self.split(now);
        match envelope.body {
            Body::Membership(message) => membership.on_message(&mut ctx, from, channel, &header, message),
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
    }
}

/// Outputs waiting for the driver, and the rule that holds sends behind
/// unconfirmed persists.
#[derive(Debug)]
pub(crate) struct Outbox {
    header: Header,
    ready: VecDeque<Output>,
    /// Sends queued after a persist that is not yet confirmed.
    held: VecDeque<Transmit>,
    next_persist_seq: u64,
    /// The highest persist sequence number handed out and not yet confirmed.
    unconfirmed: Option<u64>,
    pub(crate) metrics: Metrics,
}

impl Outbox {
    fn new(header: Header) -> Self {
        Outbox {
            header,
            ready: VecDeque::new(),
            held: VecDeque::new(),
            next_persist_seq: 1,
            unconfirmed: None,
            metrics: Metrics::default(),
        }
    }

    /// Encodes `body` and queues it for `to`; a message too large for its
    /// channel is counted and dropped (sub-machines budget sizes, so this is a
    /// bug, reported in logs).
    pub(crate) fn send(&mut self, to: SocketAddr, channel: Channel, body: Body) {
        let kind = body.kind();
        let envelope = Envelope { header: self.header, body };
        let bytes = match envelope.encode(channel) {
            Ok(bytes) => bytes,
            Err(error) => {
                self.metrics.oversized_outputs += 1;
                tracing::warn!(%to, kind, %error, "message not sent");
                return;
            }
        };
        if channel == Channel::Datagram && self.ready.len() + self.held.len() >= limits::MAX_QUEUED_OUTPUTS {
            self.metrics.dropped_outputs += 1;
            return;
        }
        self.metrics.count_sent(kind, bytes.len());
        let transmit = Transmit { to, channel, bytes };
        if self.unconfirmed.is_some() {
            self.held.push_back(transmit);
        } else {
            self.ready.push_back(Output::Send(transmit));
        }
    }

    /// Bytes of an envelope around an empty body: what every message pays.
    pub(crate) fn header_len(&self) -> usize {
        postcard::experimental::serialized_size(&self.header).unwrap_or(64)
    }

    pub(crate) fn persist(&mut self, state: PersistState) {
        let seq = self.next_persist_seq;
        self.next_persist_seq += 1;
        self.unconfirmed = Some(seq);
        self.ready.push_back(Output::Persist(Persist { seq, state }));
    }

    pub(crate) fn event(&mut self, event: Event) {
        self.ready.push_back(Output::Event(event));
    }

    fn confirm_persisted(&mut self, seq: u64) {
        if self.unconfirmed.is_some_and(|waiting| seq >= waiting) {
            self.unconfirmed = None;
            self.ready.extend(self.held.drain(..).map(Output::Send));
        }
    }
}
