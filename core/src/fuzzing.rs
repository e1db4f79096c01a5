//! Fuzz entry points, shared by the `cargo fuzz` targets in `fuzz/` and by the
//! corpus replay test `core/tests/fuzz_corpus.rs`, which runs every stored
//! input through them under plain `cargo test` (STYLE "Tests": fuzz targets take
//! `arbitrary` sequences of operations; internals stay behind this feature).
//!
//! - [`decode_envelope`]: any bytes through the wire decoder, both channels.
//! - [`node_inputs`]: one [`Node`] fed an arbitrary sequence of [`Input`]s.
//! - [`cluster_ops`]: a small cluster in the deterministic driver
//!   ([`crate::testing::Sim`]), membership alone or with Raft bootstrapped,
//!   under an arbitrary sequence of faults, commands and raw or mutated
//!   frames, then healed: its membership must converge and stay converged
//!   (DESIGN §3.1, "convergence after faults stop"; S6 once they have).
//!
//! Every entry point takes raw bytes and panics on a violation, so a failing
//! input is a reproducer: `cargo fuzz run <target> <file>`, or
//! `entry_point(&std::fs::read(file).unwrap())` in a unit test, where
//! [`cluster_ops`] also prints its operation log as the panic unwinds
//! ([`describe_cluster_ops`] decodes an input without running it).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::rc::Rc;

use arbitrary::{Arbitrary, Unstructured};
use core::num::NonZeroU32;
use core::time::Duration;

use crate::config::{Bootstrap, Config};
use crate::id::{ClusterUuid, MemberId, cluster_name_hash};
use crate::membership::{MemberInfo, Message, PushPull, State, Update, Updates};
use crate::node::{Command, Event, Identity, Input, Node, Output, Recovered};
use crate::testing::{Disk, NodeIdx, PORT, Sim, live_members_declared_failed};
use crate::time::Instant;
use crate::wire::{self, Body, BoundedVec, Channel, Envelope, Header, Name, Tags, limits};

/// The cluster name every fuzzed node uses.
const CLUSTER: &str = "fuzz";

// ----- decode_envelope ------------------------------------------------------------------------

/// Decodes `bytes` as they are (nearly always refused by the checksum) and
/// with a valid checksum appended, so the fuzzer reaches the decoder behind
/// it (see [`decode_sealed`]).
pub fn decode_envelope(bytes: &[u8]) {
    decode_sealed(bytes);
    decode_sealed(&wire::with_checksum(bytes));
}

/// Decodes `bytes` as a datagram and as a stream frame; a successful decode
/// must re-encode to a frame that decodes to the same envelope, and a valid
/// datagram is also a valid stream frame (only the size limit differs).
fn decode_sealed(bytes: &[u8]) {
    let datagram = Envelope::decode(bytes, Channel::Datagram);
    let stream = Envelope::decode(bytes, Channel::Stream);
    if let Ok(envelope) = &datagram {
        assert_eq!(stream.as_ref(), Ok(envelope), "a valid datagram is not the same valid stream frame");
    }
    for (channel, envelope) in [(Channel::Datagram, datagram), (Channel::Stream, stream)] {
        if let Ok(envelope) = envelope {
            let again = envelope.encode(channel).expect("a decoded envelope re-encodes within its channel's limit");
            assert_eq!(Envelope::decode(&again, channel).as_ref(), Ok(&envelope), "re-decode differs");
        }
    }
}

// ----- shared helpers -------------------------------------------------------------------------

/// How a fuzzed frame is derived from a real one (one the nodes sent, or one
/// built from arbitrary fields). Positions wrap around the frame's length.
#[derive(Arbitrary, Debug, Clone)]
enum Mutation {
    /// The frame as it was: a replay.
    Replay,
    /// One bit flipped.
    FlipBit { at: u16, bit: u8 },
    /// One byte overwritten.
    SetByte { at: u16, value: u8 },
    /// Cut short.
    Truncate { len: u16 },
    /// A run of bytes removed.
    Remove { at: u16, len: u8 },
    /// Bytes inserted.
    Insert { at: u16, bytes: Vec<u8> },
    /// The head of this frame joined to the tail of another.
    Splice { other: u8, at: u16, other_at: u16 },
    /// A trailing byte appended.
    Append { value: u8 },
}

impl Mutation {
    /// Applies the mutation to `frame`; `pool` supplies the other half of a splice.
    fn apply(&self, frame: &[u8], pool: &VecDeque<Frame>) -> Vec<u8> {
        let mut bytes = frame.to_vec();
        let wrap = |at: u16, len: usize| if len == 0 { 0 } else { usize::from(at) % len };
        match self {
            Mutation::Replay => {}
            Mutation::FlipBit { at, bit } => {
                if !bytes.is_empty() {
                    let at = wrap(*at, bytes.len());
                    bytes[at] ^= 1 << (bit % 8);
                }
            }
            Mutation::SetByte { at, value } => {
                if !bytes.is_empty() {
                    let at = wrap(*at, bytes.len());
                    bytes[at] = *value;
                }
            }
            Mutation::Truncate { len } => bytes.truncate(wrap(*len, bytes.len())),
            Mutation::Remove { at, len } => {
                let at = wrap(*at, bytes.len());
                let end = (at + usize::from(*len)).min(bytes.len());
                bytes.drain(at..end);
            }
            Mutation::Insert { at, bytes: inserted } => {
                let at = wrap(*at, bytes.len() + 1);
                bytes.splice(at..at, inserted.iter().copied());
            }
            Mutation::Splice { other, at, other_at } => {
                if let Some(other) = pool.get(usize::from(*other) % pool.len().max(1)) {
                    bytes.truncate(wrap(*at, bytes.len() + 1));
                    bytes.extend_from_slice(&other.bytes[wrap(*other_at, other.bytes.len() + 1)..]);
                }
            }
            Mutation::Append { value } => bytes.push(*value),
        }
        bytes
    }
}

/// A frame kept for replay and mutation.
#[derive(Clone, Debug)]
struct Frame {
    channel: Channel,
    bytes: Vec<u8>,
}

/// Frames kept for mutation: the most recent ones.
const POOL_FRAMES: usize = 64;

fn remember(pool: &mut VecDeque<Frame>, frame: Frame) {
    if pool.len() == POOL_FRAMES {
        pool.pop_front();
    }
    pool.push_back(frame);
}

/// xxh3 of a frame's bytes, to recognise replays cheaply.
fn frame_hash(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

/// Small tags from fuzz data: up to 8 keys `t0`…`t7`, short values.
#[derive(Arbitrary, Debug, Clone)]
struct SmallTags(Vec<(u8, u8)>);

impl SmallTags {
    fn build(&self) -> Tags {
        let mut tags = Tags::new();
        for &(key, len) in self.0.iter().take(limits::MAX_TAGS) {
            // Always fits: 8 keys of 2 bytes and values of at most 31.
            let _ = tags.insert(format!("t{}", key % 8), "v".repeat(usize::from(len % 32)));
        }
        tags
    }
}

// ----- node_inputs ----------------------------------------------------------------------------

/// Identity number of the fuzzed node in [`node_inputs`]; peers are the other small numbers.
const LOCAL: u8 = 1;
/// Peers are numbered `0..PEERS`; the fuzzed node is one of them.
const PEERS: u8 = 8;
/// Inputs one [`node_inputs`] run takes at most.
const MAX_NODE_INPUTS: usize = 256;
/// Longest single clock jump: past `dead_reap_after` of the fast profile, so reaping is reached.
const MAX_ADVANCE_MS: u32 = 2 * 3600 * 1000;

fn peer_id(n: u8) -> MemberId {
    MemberId::from_u128(u128::from(n % PEERS))
}

fn peer_addr(n: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, n % PEERS], PORT))
}

/// `m<n>`, the name peer `n` goes by (so peer [`LOCAL`]'s name is the node's own).
fn peer_name(n: u8) -> Name {
    format!("m{}", n % PEERS).parse().expect("short name")
}

/// Mostly small numbers, so claims about one member meet and compete, and
/// sometimes any value, for the edges (`u32::MAX` incarnations and the like).
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Num {
    Small(u8),
    Any(u64),
}

impl Num {
    fn u64(self) -> u64 {
        match self {
            Num::Small(n) => u64::from(n % 5),
            Num::Any(n) => n,
        }
    }

    fn u32(self) -> u32 {
        match self {
            Num::Small(n) => u32::from(n % 5),
            Num::Any(n) => n as u32,
        }
    }

    /// An incarnation, the highest included.
    fn incarnation(self) -> u32 {
        self.u32()
    }
}

/// A member record about peer `id`, as a message might carry it.
#[derive(Arbitrary, Debug, Clone)]
struct ArbMember {
    id: u8,
    /// Name of peer `name`, usually `id`'s own; another one makes name conflicts.
    name: Option<u8>,
    /// Address of peer `addr`, usually `id`'s own.
    addr: Option<u8>,
    boot_id: Num,
    incarnation: Num,
    state: State,
    leaving: bool,
    tags: SmallTags,
    durable: bool,
    cluster: crate::bootstrap::ClusterClaim,
}

impl ArbMember {
    fn build(&self) -> MemberInfo {
        MemberInfo {
            id: peer_id(self.id),
            name: peer_name(self.name.unwrap_or(self.id)),
            addr: peer_addr(self.addr.unwrap_or(self.id)),
            boot_id: self.boot_id.u64(),
            incarnation: self.incarnation.incarnation(),
            state: self.state,
            leaving: self.leaving,
            tags: self.tags.build(),
            durable: self.durable,
            cluster: self.cluster,
        }
    }
}

#[derive(Arbitrary, Debug, Clone)]
enum ArbUpdate {
    Alive(ArbMember),
    Suspect { id: u8, boot_id: Num, incarnation: Num, from: u8 },
    Dead { id: u8, boot_id: Num, incarnation: Num, from: u8 },
    Left { id: u8, boot_id: Num, incarnation: Num },
}

impl ArbUpdate {
    fn build(&self) -> Update {
        match self {
            ArbUpdate::Alive(member) => Update::Alive(member.build()),
            &ArbUpdate::Suspect { id, boot_id, incarnation, from } => Update::Suspect {
                id: peer_id(id),
                boot_id: boot_id.u64(),
                incarnation: incarnation.incarnation(),
                from: peer_id(from),
            },
            &ArbUpdate::Dead { id, boot_id, incarnation, from } => Update::Dead {
                id: peer_id(id),
                boot_id: boot_id.u64(),
                incarnation: incarnation.incarnation(),
                from: peer_id(from),
            },
            &ArbUpdate::Left { id, boot_id, incarnation } => {
                Update::Left { id: peer_id(id), boot_id: boot_id.u64(), incarnation: incarnation.incarnation() }
            }
        }
    }
}

fn build_updates(updates: &[ArbUpdate]) -> Updates {
    let list = updates.iter().take(limits::MAX_PIGGYBACK).map(ArbUpdate::build).collect();
    BoundedVec::try_from_vec(list).expect("taken at most MAX_PIGGYBACK")
}

/// A well-formed membership message about the small set of peers.
#[derive(Arbitrary, Debug, Clone)]
enum ArbMessage {
    Ping { seq: Num, target: u8, updates: Vec<ArbUpdate> },
    Ack { seq: Num, updates: Vec<ArbUpdate> },
    PingReq { seq: Num, target: u8, target_addr: u8, updates: Vec<ArbUpdate> },
    Nack { seq: Num },
    Gossip { updates: Vec<ArbUpdate> },
    PushPull { join: bool, reply: bool, members: Vec<ArbMember> },
}

impl ArbMessage {
    fn build(&self) -> Message {
        match self {
            ArbMessage::Ping { seq, target, updates } => {
                Message::Ping { seq: seq.u32(), target: peer_id(*target), updates: build_updates(updates) }
            }
            ArbMessage::Ack { seq, updates } => Message::Ack { seq: seq.u32(), updates: build_updates(updates) },
            ArbMessage::PingReq { seq, target, target_addr, updates } => Message::PingReq {
                seq: seq.u32(),
                target: peer_id(*target),
                target_addr: peer_addr(*target_addr),
                updates: build_updates(updates),
            },
            ArbMessage::Nack { seq } => Message::Nack { seq: seq.u32() },
            ArbMessage::Gossip { updates } => Message::Gossip { updates: build_updates(updates) },
            ArbMessage::PushPull { join, reply, members } => {
                let members = members.iter().take(limits::MAX_MEMBERS).map(ArbMember::build).collect();
                let members = BoundedVec::try_from_vec(members).expect("taken at most MAX_MEMBERS");
                Message::PushPull(PushPull { join: *join, reply: *reply, members })
            }
        }
    }
}

/// One input to the node of [`node_inputs`].
#[derive(Arbitrary, Debug, Clone)]
enum NodeOp {
    /// The clock moves on by up to [`MAX_ADVANCE_MS`] and the node is ticked.
    Advance {
        millis: u32,
    },
    /// The clock moves to the node's next deadline, which is then ticked.
    Deadline,
    /// A spurious tick at the current time.
    Tick,
    /// A well-formed message from peer `from` in boot `boot_id`.
    Message {
        from: u8,
        boot_id: Num,
        channel: Channel,
        message: ArbMessage,
    },
    /// Any bytes at all.
    Raw {
        from: u8,
        channel: Channel,
        bytes: Vec<u8>,
    },
    /// A frame seen earlier (sent to or by the node), mutated.
    Mutate {
        frame: u8,
        from: u8,
        channel: Option<Channel>,
        mutation: Mutation,
    },
    Join {
        peers: u8,
    },
    Discovered {
        peers: u8,
    },
    Leave,
    SetTags(SmallTags),
    /// A persist confirmation with any sequence number, early, late or bogus.
    Persisted(u64),
    /// The persist the node is waiting for, confirmed.
    PersistedPending,
}

/// Addresses of the peers whose bits are set in `mask` (bit `n` is peer `n`).
fn peer_addrs(mask: u8) -> Vec<SocketAddr> {
    (0..PEERS).filter(|n| mask & (1 << n) != 0).map(peer_addr).collect()
}

/// What the driver of [`node_inputs`] checks about the node's outputs, beyond
/// [`Node::check_invariants`]: sends are valid envelopes from this very node
/// and boot, and no send passes a persist that is not yet confirmed.
#[derive(Debug, Default)]
struct OutputChecks {
    /// The highest persist seq handed out and not yet confirmed.
    awaiting: Option<u64>,
    last_persist_seq: u64,
    /// `LeaveComplete` was reported: the process exits, no more inputs.
    left: bool,
}

impl OutputChecks {
    fn drain(&mut self, node: &mut Node, pool: &mut VecDeque<Frame>) {
        while let Some(output) = node.poll() {
            match output {
                Output::Send(transmit) => {
                    assert!(
                        self.awaiting.is_none(),
                        "a send left before persist {:?} was confirmed (persistence orders sends)",
                        self.awaiting
                    );
                    let envelope = Envelope::decode(&transmit.bytes, transmit.channel)
                        .unwrap_or_else(|error| panic!("the node sent an invalid envelope: {error}"));
                    assert_eq!(envelope.header.from, node.id(), "sent under another id");
                    assert_eq!(envelope.header.boot_id, node.boot_id(), "sent under another boot");
                    remember(pool, Frame { channel: transmit.channel, bytes: transmit.bytes });
                }
                Output::Persist(persist) => {
                    assert!(persist.seq > self.last_persist_seq, "persist sequence numbers increase");
                    self.last_persist_seq = persist.seq;
                    self.awaiting = Some(persist.seq);
                }
                Output::Event(Event::LeaveComplete) => self.left = true,
                Output::Event(_) => {}
            }
        }
    }

    fn confirmed(&mut self, seq: u64) {
        if self.awaiting.is_some_and(|awaiting| seq >= awaiting) {
            self.awaiting = None;
        }
    }
}

/// One node, built from fuzz data, fed an arbitrary sequence of inputs
/// (ticks at increasing times, well-formed and mutated and arbitrary frames
/// on both channels, commands, persist confirmations with any sequence
/// number, discovery results), with [`Node::check_invariants`] after each and
/// its outputs checked: every send is a valid envelope of this node and boot,
/// none passes an unconfirmed persist, persist sequence numbers increase, and
/// no deadline is left in the past. The run ends at `LeaveComplete`.
pub fn node_inputs(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let seed = u64::arbitrary(&mut u).unwrap_or(0);
    let recovered = Recovered { boot_id: u64::from(u8::arbitrary(&mut u).unwrap_or(0)), ..Recovered::default() };
    let identity = Identity {
        id: peer_id(LOCAL),
        name: peer_name(LOCAL),
        addr: peer_addr(LOCAL),
        tags: Tags::new(),
        durable: true,
    };
    let mut now = Instant::ZERO;
    let mut node = Node::new(Config::fast(CLUSTER), identity, seed, recovered, now).expect("the fast profile is valid");
    let mut checks = OutputChecks::default();
    let mut pool = VecDeque::new();
    node.check_invariants();
    checks.drain(&mut node, &mut pool);
    let name_hash = cluster_name_hash(CLUSTER);

    for _ in 0..MAX_NODE_INPUTS {
        if u.is_empty() {
            break;
        }
        let Ok(op) = NodeOp::arbitrary(&mut u) else { break };
        match op {
            NodeOp::Advance { millis } => {
                now += Duration::from_millis(u64::from(millis % (MAX_ADVANCE_MS + 1)));
                node.handle(now, Input::Tick);
            }
            NodeOp::Deadline => {
                if let Some(deadline) = node.next_deadline() {
                    now = now.max(deadline);
                }
                node.handle(now, Input::Tick);
            }
            NodeOp::Tick => node.handle(now, Input::Tick),
            NodeOp::Message { from, boot_id, channel, message } => {
                let header = Header {
                    version: wire::PROTOCOL_VERSION,
                    cluster_name_hash: name_hash,
                    cluster_uuid: ClusterUuid::NIL,
                    from: peer_id(from),
                    boot_id: boot_id.u64(),
                };
                let envelope = Envelope { header, body: Body::Membership(message.build()) };
                if let Ok(bytes) = envelope.encode(channel) {
                    node.handle(now, Input::Receive { from: peer_addr(from), channel, bytes: &bytes });
                    remember(&mut pool, Frame { channel, bytes });
                }
            }
            NodeOp::Raw { from, channel, bytes } => {
                node.handle(now, Input::Receive { from: peer_addr(from), channel, bytes: &bytes });
            }
            NodeOp::Mutate { frame, from, channel, mutation } => {
                if let Some(original) = pool.get(usize::from(frame) % pool.len().max(1)) {
                    let bytes = mutation.apply(&original.bytes, &pool);
                    let channel = channel.unwrap_or(original.channel);
                    node.handle(now, Input::Receive { from: peer_addr(from), channel, bytes: &bytes });
                }
            }
            NodeOp::Join { peers } => node.handle(now, Input::Command(Command::Join(peer_addrs(peers)))),
            NodeOp::Discovered { peers } => node.handle(now, Input::Discovered(peer_addrs(peers))),
            NodeOp::Leave => node.handle(now, Input::Command(Command::Leave)),
            NodeOp::SetTags(tags) => node.handle(now, Input::Command(Command::SetTags(tags.build()))),
            NodeOp::Persisted(seq) => {
                node.handle(now, Input::Persisted(seq));
                checks.confirmed(seq);
            }
            NodeOp::PersistedPending => {
                if let Some(seq) = checks.awaiting {
                    node.handle(now, Input::Persisted(seq));
                    checks.confirmed(seq);
                }
            }
        }
        node.check_invariants();
        checks.drain(&mut node, &mut pool);
        if let Some(deadline) = node.next_deadline() {
            // A deadline in the past would be a timer the node forgot to fire.
            assert!(deadline > now, "deadline {deadline} not after now {now} right after handling an input");
        }
        if checks.left {
            break;
        }
    }
}

// ----- cluster_ops ----------------------------------------------------------------------------

/// Operations one [`cluster_ops`] run applies at most.
const MAX_CLUSTER_OPS: usize = 64;
/// Longest single `Run` operation.
const MAX_RUN_MS: u64 = 4_000;
/// Virtual time all operations of one run may take together; further `Run`s are skipped.
const MAX_OPS_TIME: Duration = Duration::from_secs(60);
/// Most cluster members; the fewest is 3.
const MAX_MEMBERS: usize = 6;
/// Members that bootstrap Raft together when an input asks for Raft.
const RAFT_FOUNDERS: usize = 3;

/// One operation on the cluster of [`cluster_ops`]. Node numbers wrap around
/// the cluster size; an operation that does not apply (pausing a crashed
/// node, say) does nothing.
#[derive(Arbitrary, Debug, Clone)]
enum ClusterOp {
    /// Let up to [`MAX_RUN_MS`] of virtual time pass.
    Run {
        millis: u16,
    },
    Crash {
        node: u8,
    },
    /// Restart (crashing first if up), with or without the disk, optionally at
    /// a new address, and join through a live member (`via`) as an agent's
    /// `--join` would; `every_seed` lists every other slot as well.
    Restart {
        node: u8,
        keep_disk: bool,
        new_addr: bool,
        via: u8,
        every_seed: bool,
    },
    Pause {
        node: u8,
    },
    Resume {
        node: u8,
    },
    /// Two bits per node give its side (node `i` at bits `2i..2i+2`).
    Partition {
        sides: u16,
    },
    Cut {
        from: u8,
        to: u8,
    },
    Isolate {
        node: u8,
    },
    Heal,
    /// Datagram loss, at most 30 %.
    Loss {
        percent: u8,
    },
    /// Datagram duplication, at most 30 %.
    Duplicate {
        percent: u8,
    },
    /// Graceful leave; the process exits at `LeaveComplete`.
    Leave {
        node: u8,
    },
    SetTags {
        node: u8,
        tags: SmallTags,
    },
    /// An operator's join through another member.
    Join {
        node: u8,
        via: u8,
    },
    /// A discovery result naming the slots whose bits are set.
    Discovered {
        node: u8,
        mask: u8,
    },
    /// Arbitrary bytes handed to a node as if from `from`.
    Inject {
        node: u8,
        from: u8,
        channel: Channel,
        bytes: Vec<u8>,
    },
    /// A frame the cluster produced, mutated (or replayed), handed to a node.
    Mutate {
        node: u8,
        from: u8,
        frame: u8,
        channel: Option<Channel>,
        mutation: Mutation,
    },
}

/// What [`cluster_ops`] tracks about one node slot beyond what [`Sim`] does.
#[derive(Debug, Default, Clone)]
struct SlotState {
    /// The member left gracefully and its process exited; the final phase does
    /// not bring it back (a later `Restart` does, as an operator would).
    departed: bool,
    /// A `Leave` was issued to the current boot.
    leaving: bool,
    /// Addresses given to the current boot with `Join`.
    join_seeds: Vec<SocketAddr>,
    /// The current boot's latest discovery result.
    discovered: Vec<SocketAddr>,
}

struct ClusterRun {
    sim: Sim,
    config: Config,
    slots: Vec<SlotState>,
    /// The latest frames the nodes sent each other.
    pool: VecDeque<Frame>,
    /// Hashes of every frame a node sent: an injected frame among them is a replay.
    real_frames: BTreeSet<u64>,
    /// Injected frames a node would accept that no node ever sent: forged
    /// claims. An unauthenticated protocol cannot be asked to converge after
    /// those (a forged `Alive` at a boot id from the future sticks forever),
    /// so the final convergence check is skipped, not the invariant checks.
    forged: usize,
    ops_time: Duration,
    /// Addresses handed out by `Restart { new_addr: true }`.
    moved: u32,
    /// Set by the step hook when a member reports `LeaveComplete`: its
    /// process exits ([`ClusterRun::collect`] crashes it) before the next instant.
    leave_completed: Rc<Cell<bool>>,
    /// Whether `n0`–`n2` bootstrapped Raft.
    raft: bool,
    /// Every operation applied, printed if the run panics.
    log: Vec<String>,
}

/// Prints the operations of a run that panicked, after the driver's own
/// context line. Panics unwind under `cargo test` (replay an input there to
/// see this); libFuzzer aborts at once.
impl Drop for ClusterRun {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("cluster_ops, {} operations:\n  {}", self.log.len() - 1, self.log.join("\n  "));
        }
    }
}

impl ClusterRun {
    /// A formed cluster of `size` members joined through `n0`. With `raft`,
    /// `n0`–`n2` bootstrap a Raft cluster together first (`Bootstrap::Expect(3)`)
    /// and the others join it once it exists, so log, voters and views run
    /// under the faults too; without, it is membership alone.
    fn new(size: usize, seed: u64, raft: bool) -> Self {
        let config = Config::fast(CLUSTER);
        let mut sim = Sim::new(seed);
        let founders = if raft { RAFT_FOUNDERS } else { size };
        let mut founder_config = config.clone();
        if raft {
            founder_config.bootstrap = Bootstrap::Expect(NonZeroU32::new(RAFT_FOUNDERS as u32).expect("nonzero"));
        }
        let mut nodes = sim.add_nodes(founders, &founder_config);
        sim.join_all(&nodes, nodes[0]);
        if raft {
            let bootstrapped = |sim: &Sim| sim.events().iter().any(|record| record.kind() == "bootstrapped");
            let formed = sim.run_until(Duration::from_secs(10), bootstrapped);
            assert!(formed, "Sim::new({seed}): {RAFT_FOUNDERS} members did not bootstrap a cluster");
            for _ in founders..size {
                let node = sim.add_node(&NodeIdx(sim.len()).to_string(), config.clone());
                sim.join(node, &[nodes[0]]);
                nodes.push(node);
            }
        }
        let seed_addr = sim.addr(nodes[0]);
        let mut slots = vec![SlotState::default(); size];
        for slot in slots.iter_mut().skip(1) {
            slot.join_seeds.push(seed_addr);
        }
        let formed = sim.run_until(Duration::from_secs(10), Sim::converged);
        assert!(formed, "Sim::new({seed}): {size} members did not form a cluster: {:?}", sim.check_converged());
        sim.take_events();
        sim.set_record_deliveries(true);
        let leave_completed = Rc::new(Cell::new(false));
        let flag = Rc::clone(&leave_completed);
        sim.set_step_hook(move |sim| {
            if sim.step_events().iter().any(|record| record.event == Event::LeaveComplete) {
                flag.set(true);
            }
        });
        let raft_text = if raft { ", n0-n2 bootstrap Raft" } else { "" };
        let log = vec![format!("Sim::new({seed}), {size} members, Config::fast{raft_text}, joined through n0")];
        ClusterRun {
            sim,
            config,
            slots,
            pool: VecDeque::new(),
            real_frames: BTreeSet::new(),
            forged: 0,
            ops_time: Duration::ZERO,
            moved: 0,
            leave_completed,
            raft,
            log,
        }
    }

    fn node(&self, n: u8) -> NodeIdx {
        NodeIdx(usize::from(n) % self.slots.len())
    }

    /// Applies one operation, then collects what it produced.
    fn apply(&mut self, op: ClusterOp) {
        self.log.push(format!("{:?} {op:?}", self.sim.now()));
        match op {
            ClusterOp::Run { millis } => {
                let left = MAX_OPS_TIME.saturating_sub(self.ops_time);
                let span = Duration::from_millis(u64::from(millis) % (MAX_RUN_MS + 1)).min(left);
                self.ops_time += span;
                self.run_for(span);
            }
            ClusterOp::Crash { node } => {
                let idx = self.node(node);
                if self.sim.is_up(idx) {
                    self.sim.crash(idx);
                }
            }
            ClusterOp::Restart { node, keep_disk, new_addr, via, every_seed } => {
                let idx = self.node(node);
                let disk = if keep_disk || !self.may_lose_disk(idx) { Disk::Keep } else { Disk::Lost };
                let addr = if new_addr {
                    self.moved += 1;
                    let [_, a, b, c] = self.moved.to_be_bytes();
                    SocketAddr::new(Ipv4Addr::new(10, 200 + a % 50, b, c).into(), PORT)
                } else {
                    self.sim.addr(idx)
                };
                self.sim.restart_at(idx, disk, addr);
                self.slots[idx.0] = SlotState::default();
                let mut seeds: Vec<SocketAddr> =
                    self.live_peer(idx, via).map(|peer| self.sim.addr(peer)).into_iter().collect();
                if every_seed || seeds.is_empty() {
                    let others = self.sim.nodes().filter(|&other| other != idx).map(|other| self.sim.addr(other));
                    seeds.extend(others);
                }
                self.join(idx, seeds);
            }
            ClusterOp::Pause { node } => {
                let idx = self.node(node);
                if self.sim.is_running(idx) {
                    self.sim.pause(idx);
                }
            }
            ClusterOp::Resume { node } => {
                let idx = self.node(node);
                if self.sim.is_paused(idx) {
                    self.sim.resume(idx);
                }
            }
            ClusterOp::Partition { sides } => {
                let mut groups: [Vec<NodeIdx>; 4] = Default::default();
                for idx in self.sim.nodes() {
                    groups[usize::from((sides >> (2 * idx.0)) & 3)].push(idx);
                }
                let groups: Vec<&[NodeIdx]> = groups.iter().filter(|g| !g.is_empty()).map(Vec::as_slice).collect();
                self.sim.partition(&groups);
            }
            ClusterOp::Cut { from, to } => {
                let (from, to) = (self.node(from), self.node(to));
                if from != to {
                    self.sim.cut(from, to);
                }
            }
            ClusterOp::Isolate { node } => {
                let idx = self.node(node);
                self.sim.isolate(idx);
            }
            ClusterOp::Heal => self.sim.heal(),
            ClusterOp::Loss { percent } => self.sim.net_mut().loss = f64::from(percent % 31) / 100.0,
            ClusterOp::Duplicate { percent } => self.sim.net_mut().duplicate = f64::from(percent % 31) / 100.0,
            ClusterOp::Leave { node } => {
                let idx = self.node(node);
                if self.sim.is_running(idx) && !self.slots[idx.0].leaving {
                    self.slots[idx.0].leaving = true;
                    self.sim.command(idx, Command::Leave);
                }
            }
            ClusterOp::SetTags { node, tags } => {
                let idx = self.node(node);
                if self.sim.is_running(idx) {
                    self.sim.command(idx, Command::SetTags(tags.build()));
                }
            }
            ClusterOp::Join { node, via } => {
                let (idx, via) = (self.node(node), self.node(via));
                if self.sim.is_running(idx) && idx != via {
                    self.join(idx, vec![self.sim.addr(via)]);
                }
            }
            ClusterOp::Discovered { node, mask } => {
                let idx = self.node(node);
                if self.sim.is_running(idx) {
                    let addrs: Vec<SocketAddr> =
                        self.sim.nodes().filter(|other| mask & (1 << other.0) != 0).map(|n| self.sim.addr(n)).collect();
                    self.slots[idx.0].discovered = addrs.clone();
                    self.sim.discovered(idx, addrs);
                }
            }
            ClusterOp::Inject { node, from, channel, bytes } => {
                let idx = self.node(node);
                if self.sim.is_running(idx) {
                    self.inject(idx, from, channel, &bytes);
                }
            }
            ClusterOp::Mutate { node, from, frame, channel, mutation } => {
                let idx = self.node(node);
                if self.sim.is_running(idx) && !self.pool.is_empty() {
                    let original = &self.pool[usize::from(frame) % self.pool.len()];
                    let bytes = mutation.apply(&original.bytes, &self.pool);
                    let channel = channel.unwrap_or(original.channel);
                    self.inject(idx, from, channel, &bytes);
                }
            }
        }
        self.collect();
    }

    /// Up to date: the frames the nodes sent (each must be a valid envelope),
    /// and the members whose leave completed, whose processes now exit.
    fn collect(&mut self) {
        for delivery in self.sim.take_deliveries() {
            if delivery.src.is_none() {
                continue; // injected
            }
            if let Err(error) = Envelope::decode(&delivery.bytes, delivery.channel) {
                panic!("{:?} sent {} an invalid envelope: {error}", delivery.src, delivery.dst);
            }
            self.real_frames.insert(frame_hash(&delivery.bytes));
            let frame = Frame { channel: delivery.channel, bytes: delivery.bytes };
            remember(&mut self.pool, frame);
        }
        self.leave_completed.set(false);
        for record in self.sim.take_events() {
            if record.event != Event::LeaveComplete {
                continue;
            }
            let same_boot = self.sim.node(record.node).is_some_and(|node| node.boot_id() == record.boot_id);
            if same_boot {
                self.sim.crash(record.node);
                self.slots[record.node.0].departed = true;
            }
        }
    }

    /// Runs the simulation for `span`, stopping the process of every member
    /// the moment it reports `LeaveComplete` (checked before each later
    /// instant, through the step hook's flag).
    fn run_for(&mut self, span: Duration) {
        let deadline = self.sim.now() + span;
        loop {
            let left = deadline.saturating_duration_since(self.sim.now());
            let flag = Rc::clone(&self.leave_completed);
            let stopped = self.sim.run_until_every(left, Duration::from_nanos(1), move |_| flag.get());
            if !stopped {
                return;
            }
            self.collect();
            if self.sim.now() >= deadline {
                return;
            }
        }
    }

    /// Whether `idx` may restart without its disk. Any member may, except
    /// that the last founder still holding the cluster's uuid keeps it: three
    /// founders (`Bootstrap::Expect(3)`) that all lost their disks rightly
    /// bootstrap a second cluster, which the uuid fence keeps apart from the
    /// first for good (an operator's disaster, not a convergence failure).
    fn may_lose_disk(&self, idx: NodeIdx) -> bool {
        if !self.raft || idx.0 >= RAFT_FOUNDERS {
            return true;
        }
        (0..RAFT_FOUNDERS)
            .map(NodeIdx)
            .filter(|&founder| founder != idx)
            .any(|founder| !self.sim.storage(founder).synced().cluster_uuid.is_nil())
    }

    /// A member other than `idx` that is up and not leaving, picked by `via`.
    fn live_peer(&self, idx: NodeIdx, via: u8) -> Option<NodeIdx> {
        let live: Vec<NodeIdx> =
            self.sim.up_nodes().filter(|&other| other != idx && !self.slots[other.0].leaving).collect();
        (!live.is_empty()).then(|| live[usize::from(via) % live.len()])
    }

    fn join(&mut self, idx: NodeIdx, seeds: Vec<SocketAddr>) {
        self.slots[idx.0].join_seeds.extend(seeds.iter().copied());
        self.sim.command(idx, Command::Join(seeds));
    }

    /// Hands `bytes` to `idx` as if from `from` (a slot's address, or a stranger's).
    fn inject(&mut self, idx: NodeIdx, from: u8, channel: Channel, bytes: &[u8]) {
        let from = match usize::from(from) % (self.slots.len() + 1) {
            slot if slot < self.slots.len() => self.sim.addr(NodeIdx(slot)),
            _ => SocketAddr::from(([10, 250, 0, from], PORT)),
        };
        let accepted = Envelope::decode(bytes, channel)
            .is_ok_and(|envelope| envelope.header.cluster_name_hash == cluster_name_hash(CLUSTER));
        if accepted && !self.real_frames.contains(&frame_hash(bytes)) {
            self.forged += 1;
        }
        self.sim.inject(idx, from, channel, bytes);
    }

    /// What an operator does on finding several clusters that can never find
    /// each other: join each to the first. Members belong to one cluster when
    /// one of them can reach the other without outside help: it holds a
    /// record of it (alive, suspect or dead: those are probed or retried;
    /// a `Left` record is not) or its address as a seed (`Join`, discovery),
    /// at the slot's current address. The harness picks join targets at
    /// random, so without this two groups restarted through each other
    /// alone could form two clusters that know nothing of each other, which
    /// no protocol can merge.
    fn join_disjoint_clusters(&mut self) {
        let mut cluster_of: Vec<usize> = (0..self.slots.len()).collect();
        fn root(cluster_of: &mut [usize], mut idx: usize) -> usize {
            while cluster_of[idx] != idx {
                cluster_of[idx] = cluster_of[cluster_of[idx]];
                idx = cluster_of[idx];
            }
            idx
        }
        let up: Vec<NodeIdx> = self.sim.up_nodes().collect();
        for &idx in &up {
            let node = self.sim.node(idx).expect("up");
            let slot = &self.slots[idx.0];
            let known = node.members().filter(|info| info.id != node.id() && info.state != State::Left);
            let addrs = known.map(|info| info.addr).chain(slot.join_seeds.iter().chain(&slot.discovered).copied());
            for addr in addrs {
                if let Some(other) = self.sim.node_at(addr).filter(|&other| other != idx && self.sim.is_up(other)) {
                    let (a, b) = (root(&mut cluster_of, idx.0), root(&mut cluster_of, other.0));
                    cluster_of[a] = b;
                }
            }
        }
        let Some(&anchor) = up.first() else { return };
        for &idx in &up {
            let (own, first) = (root(&mut cluster_of, idx.0), root(&mut cluster_of, anchor.0));
            if own != first {
                self.log.push(format!("{:?} operator: {idx} joins {anchor} (disjoint clusters)", self.sim.now()));
                self.join(idx, vec![self.sim.addr(anchor)]);
                cluster_of[own] = first;
            }
        }
    }

    /// The longest a healed cluster may take to converge: a few reconnect and
    /// push-pull rounds (halves that declared each other dead merge through
    /// them), the longest seed backoff (a member alone retries its seeds),
    /// and twice the longest suspicion (a member that is gone but still
    /// believed alive is suspected, then declared dead), with the suspicion
    /// scaled for every durable id the run may have created.
    fn quiet_period(&self) -> Duration {
        let membership = &self.config.membership;
        let ids = (self.slots.len() + MAX_CLUSTER_OPS) as f64;
        let floor =
            membership.probe_interval.mul_f64(f64::from(membership.suspicion_mult.get()) * ids.log10().max(1.0));
        let suspicion_max = floor * membership.suspicion_max_mult.get();
        4 * (membership.reconnect_interval + membership.push_pull_interval)
            + membership.seed_backoff_max * 5 / 4
            + 2 * suspicion_max
    }

    /// Faults stop: the network heals and goes lossless, paused members
    /// resume, leaves complete, crashed members restart with their disk and
    /// re-join. Then membership must converge within [`Self::quiet_period`].
    fn settle_and_check(&mut self) {
        self.log.push(format!("{:?} settle: heal, resume, restart, re-join", self.sim.now()));
        self.sim.heal();
        self.sim.net_mut().loss = 0.0;
        self.sim.net_mut().duplicate = 0.0;
        let paused: Vec<NodeIdx> = self.sim.nodes().filter(|&idx| self.sim.is_paused(idx)).collect();
        for idx in paused {
            self.sim.resume(idx);
        }
        // A leave in flight completes (its handoff is bounded by
        // `leave_timeout`), and its process exits.
        self.collect();
        let leave_bound = self.config.leave_timeout + self.config.membership.leave_propagate + Duration::from_secs(1);
        let leaving = |run: &Self| run.sim.up_nodes().find(|idx| run.slots[idx.0].leaving);
        let started = self.sim.now();
        while leaving(self).is_some() && self.sim.now() < started + leave_bound {
            self.run_for(Duration::from_millis(100));
        }
        if let Some(idx) = leaving(self) {
            panic!("{idx} did not complete its leave within {leave_bound:?} once the faults stopped");
        }
        let crashed: Vec<NodeIdx> =
            self.sim.nodes().filter(|&idx| !self.sim.is_up(idx) && !self.slots[idx.0].departed).collect();
        for idx in crashed {
            self.sim.restart(idx, Disk::Keep);
            self.slots[idx.0] = SlotState::default();
            if let Some(peer) = self.live_peer(idx, 0) {
                self.join(idx, vec![self.sim.addr(peer)]);
            }
        }
        self.join_disjoint_clusters();
        self.collect();
        let quiet = self.quiet_period();
        let converged = self.sim.run_until(quiet, Sim::converged);
        self.collect();
        if self.forged > 0 {
            return;
        }
        assert!(
            converged,
            "no convergence within {quiet:?} after the faults stopped: {}",
            self.sim.check_converged().unwrap_err()
        );
        self.check_stability(quiet);
    }

    /// Once converged, it stays so: with no faults nobody up is declared dead
    /// (S6), and a round of push-pull finds nothing to disagree about.
    ///
    /// Frames sent while the faults lasted may still be on their way (a
    /// stream frame pays TCP's doubling retransmission timeouts for every
    /// loss, minutes in the worst case, and holds up the frames behind it), and
    /// a stale claim among them may rightly unsettle the cluster again. So the
    /// window opens once the frames in flight at convergence had their normal
    /// latency to land, and a flap in it is a bug only if no frame sent before
    /// the window arrived during it; otherwise the cluster must merely
    /// converge again.
    fn check_stability(&mut self, quiet: Duration) {
        let settle = self.sim.net().latency_max + Duration::from_millis(1);
        for _ in 0..3 {
            self.sim.run_for(settle);
            if self.sim.converged() {
                break;
            }
            let again = self.sim.run_until(quiet, Sim::converged);
            assert!(again, "converged, then diverged for good: {}", self.sim.check_converged().unwrap_err());
        }
        self.collect();
        let window_start = self.sim.now();
        self.log.push(format!("{window_start:?} converged; stability window"));
        let failures = Rc::new(RefCell::new(Vec::new()));
        let record = Rc::clone(&failures);
        self.sim.set_step_hook(move |sim| {
            let found = live_members_declared_failed(sim).map(|record| format!("{record:?}"));
            record.borrow_mut().extend(found);
        });
        self.sim.run_for(self.config.membership.push_pull_interval);
        self.sim.clear_step_hook();
        let late =
            self.sim.deliveries().iter().any(|delivery| delivery.src.is_some() && delivery.sent_at < window_start);
        self.collect();
        let failures = failures.borrow();
        let diverged = self.sim.check_converged().err();
        if failures.is_empty() && diverged.is_none() {
            return;
        }
        assert!(
            late,
            "with no fault and no frame from before, S6 failures {failures:?}; divergence {:?}",
            diverged.map(|problem| problem.to_string())
        );
        let healed = self.sim.run_until(quiet, Sim::converged);
        assert!(healed, "converged, then diverged for good: {}", self.sim.check_converged().unwrap_err());
    }
}

/// A cluster of 3 to 6 members ([`Config::fast`], seeded from the data; on
/// request three of them bootstrap Raft first) under up to 64 operations:
/// time, crashes, restarts with or without the disk (optionally at a new
/// address, re-joining as an agent would), pauses, partitions, one-way cuts,
/// isolation, loss and duplication up to 30 %, leaves, tags, joins,
/// discovery, arbitrary bytes and replayed or mutated real frames. The driver
/// checks every node's invariants after every input and this harness checks
/// every frame a node sends is a valid envelope. Then the faults stop and
/// membership must converge within a bound computed from the configuration
/// and stay converged (S6 included), unless a forged frame was accepted.
pub fn cluster_ops(data: &[u8]) {
    let input = decode_cluster_ops(data);
    let mut run = ClusterRun::new(input.size, input.seed, input.raft);
    for op in input.ops {
        run.apply(op);
    }
    run.settle_and_check();
}

/// What a [`cluster_ops`] input says, one line per operation, without
/// running it: for reading a reproducer.
pub fn describe_cluster_ops(data: &[u8]) -> String {
    let input = decode_cluster_ops(data);
    let mut text = format!("Sim::new({}), {} members, raft: {}\n", input.seed, input.size, input.raft);
    for op in input.ops {
        text += &format!("{op:?}\n");
    }
    text
}

/// The cluster an input asks for, and its operations.
struct ClusterInput {
    size: usize,
    seed: u64,
    raft: bool,
    ops: Vec<ClusterOp>,
}

fn decode_cluster_ops(data: &[u8]) -> ClusterInput {
    let mut u = Unstructured::new(data);
    let size = u.int_in_range(3..=MAX_MEMBERS).unwrap_or(3);
    let seed = u64::arbitrary(&mut u).unwrap_or(0);
    let raft = bool::arbitrary(&mut u).unwrap_or(false);
    let mut ops = Vec::new();
    while ops.len() < MAX_CLUSTER_OPS && !u.is_empty() {
        let Ok(op) = ClusterOp::arbitrary(&mut u) else { break };
        ops.push(op);
    }
    ClusterInput { size, seed, raft, ops }
}
