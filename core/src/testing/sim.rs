//! The simulator proper: node slots, the event loop, routing and faults.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;

use core::time::Duration;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::NodeIdx;
use super::net::{ChannelCounters, Counters, Links, NetConfig, default_addr};
use super::queue::{Action, Packet, Queue};
use super::storage::{Disk, DiskConfig, Storage};
use super::trace::{Delivery, EventRecord, Fault, FaultRecord, TraceHasher};
use crate::config::Config;
use crate::id::MemberId;
use crate::membership::MemberInfo;
use crate::node::{Command, Event, Identity, Input, Node, Output, Persist, Transmit};
use crate::time::Instant;
use crate::wire::{Channel, Name, Tags};

/// Events one instant may hold before the simulator decides time is stuck
/// (a node re-arming a deadline that never lets the clock move).
const MAX_STEPS_PER_INSTANT: u64 = 1_000_000;

/// Source ports of simulated stream connections: Linux's default ephemeral range.
const EPHEMERAL_PORT_FIRST: u16 = 32_768;
const EPHEMERAL_PORT_COUNT: u64 = 28_232;

/// A callback run after every step; see [`Sim::set_step_hook`].
type StepHook = Box<dyn FnMut(&Sim)>;

/// Everything the simulator keeps about one node slot, across restarts.
struct Slot {
    name: Name,
    config: Config,
    tags: Tags,
    addr: SocketAddr,
    storage: Storage,
    /// The running node; `None` while down.
    node: Option<Node>,
    /// Raised when the node goes down and again when it starts: packets and
    /// disk syncs addressed to an older generation are dropped.
    generation: u64,
    paused: bool,
    /// The deadline that has a live timer entry in the queue, if any.
    scheduled: Option<Instant>,
    /// When this node's last issued write syncs: writes complete in order.
    last_sync: Instant,
    /// Packets that arrived while paused, in arrival order.
    buffered: VecDeque<Packet>,
    /// How many of `buffered` are datagrams (those are bounded).
    buffered_datagrams: usize,
    /// Syncs that completed while paused, to confirm on resume.
    confirmations: Vec<u64>,
    counters: Counters,
    /// The next start applies operator recovery ([`Sim::recover`]).
    force_new_cluster: bool,
    /// How long this node's application takes to ack a view; `None` never acks.
    ack_delay: Option<Duration>,
    /// Acks its application finished while paused, delivered on resume.
    deferred_acks: Vec<u64>,
}

/// One simulated TCP connection from one node to another.
struct Connection {
    src_generation: u64,
    dst_generation: u64,
    /// The source port the receiver sees.
    port: u16,
    /// When its last frame is delivered: later frames never overtake it.
    last_delivery: Instant,
}

/// Prints where a panic inside a node or its checks happened, so a failing
/// test names the node, the virtual time and the seed to replay.
struct PanicContext {
    doing: &'static str,
    node: NodeIdx,
    now: Instant,
    seed: u64,
}

impl Drop for PanicContext {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "quorate testing: panicked while {} {} at {} (Sim::new({}))",
                self.doing, self.node, self.now, self.seed
            );
        }
    }
}

/// A deterministic simulation of many nodes on one virtual clock.
///
/// See the [module documentation](super) for the model and an example.
pub struct Sim {
    seed: u64,
    /// The ack delay given to nodes added from now on.
    default_ack_delay: Option<Duration>,
    now: Instant,
    rng: ChaCha8Rng,
    net: NetConfig,
    disk: DiskConfig,
    slots: Vec<Slot>,
    by_addr: BTreeMap<SocketAddr, NodeIdx>,
    by_member: BTreeMap<MemberId, NodeIdx>,
    queue: Queue,
    links: Links,
    connections: BTreeMap<(NodeIdx, NodeIdx), Connection>,
    connections_opened: u64,
    counters: Counters,
    /// The event log; with recording off, only the current step's events.
    events: Vec<EventRecord>,
    /// Where the current step's events start in `events`.
    step_start: usize,
    record_events: bool,
    event_count: u64,
    faults: Vec<FaultRecord>,
    deliveries: Vec<Delivery>,
    record_deliveries: bool,
    trace: TraceHasher,
    check_invariants: bool,
    step_hook: Option<StepHook>,
    steps: u64,
    steps_this_instant: u64,
    /// Scratch space for draining a node's outputs, reused to save allocations.
    outputs: Vec<Output>,
}

impl core::fmt::Debug for Sim {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Sim")
            .field("seed", &self.seed)
            .field("now", &self.now)
            .field("nodes", &self.slots.len())
            .field("up", &self.up_nodes().count())
            .field("queued", &self.queue.len())
            .field("steps", &self.steps)
            .finish_non_exhaustive()
    }
}

// ----- construction and nodes -----------------------------------------------------------------

impl Sim {
    /// An empty simulation at time zero. Everything random in it derives from `seed`.
    pub fn new(seed: u64) -> Sim {
        Sim {
            seed,
            now: Instant::ZERO,
            rng: ChaCha8Rng::seed_from_u64(seed),
            net: NetConfig::default(),
            disk: DiskConfig::default(),
            slots: Vec::new(),
            by_addr: BTreeMap::new(),
            by_member: BTreeMap::new(),
            queue: Queue::default(),
            links: Links::default(),
            connections: BTreeMap::new(),
            connections_opened: 0,
            counters: Counters::default(),
            events: Vec::new(),
            step_start: 0,
            record_events: true,
            event_count: 0,
            faults: Vec::new(),
            deliveries: Vec::new(),
            record_deliveries: false,
            trace: TraceHasher::new(),
            check_invariants: true,
            step_hook: None,
            default_ack_delay: Some(Duration::from_millis(10)),
            steps: 0,
            steps_this_instant: 0,
            outputs: Vec::new(),
        }
    }

    /// Adds a node with fresh storage (a new durable id, boot counter 0) at
    /// [`default_addr`] of its slot, and starts it now. It does not join
    /// anyone: see [`Sim::join`].
    ///
    /// Panics if `name` is too long or `config` is invalid.
    pub fn add_node(&mut self, name: &str, config: Config) -> NodeIdx {
        self.add_node_with(name, config, Tags::default())
    }

    /// [`Sim::add_node`] with initial tags (restarts use them too).
    pub fn add_node_with(&mut self, name: &str, config: Config, tags: Tags) -> NodeIdx {
        let idx = NodeIdx(self.slots.len());
        let addr = default_addr(idx);
        if let Some(owner) = self.by_addr.get(&addr) {
            panic!("add_node: {addr}, the default address of {idx}, is taken by {owner} (restart_at moved it there)");
        }
        let name: Name = name.parse().unwrap_or_else(|error| panic!("add_node: node name {name:?}: {error}"));
        let member_id = MemberId::from_u128(self.rng.random());
        self.slots.push(Slot {
            name,
            config,
            tags,
            addr,
            storage: Storage::new(member_id),
            node: None,
            generation: 0,
            paused: false,
            scheduled: None,
            last_sync: Instant::ZERO,
            buffered: VecDeque::new(),
            buffered_datagrams: 0,
            confirmations: Vec::new(),
            counters: Counters::default(),
            force_new_cluster: false,
            ack_delay: self.default_ack_delay,
            deferred_acks: Vec::new(),
        });
        self.by_addr.insert(addr, idx);
        self.start(idx);
        idx
    }

    /// Adds `count` nodes named `n0`, `n1`, … after their slots, all with `config`.
    pub fn add_nodes(&mut self, count: usize, config: &Config) -> Vec<NodeIdx> {
        (0..count)
            .map(|_| {
                let name = NodeIdx(self.slots.len()).to_string();
                self.add_node(&name, config.clone())
            })
            .collect()
    }

    /// Starts the node of a slot from its synced storage.
    fn start(&mut self, idx: NodeIdx) {
        let seed = self.rng.random::<u64>();
        let now = self.now;
        let slot = &mut self.slots[idx.0];
        debug_assert!(slot.node.is_none(), "a slot runs one node at a time");
        let identity = Identity {
            id: slot.storage.member_id(),
            name: slot.name.clone(),
            addr: slot.addr,
            tags: slot.tags.clone(),
            // The simulated disk survives restarts unless a test loses it.
            durable: true,
        };
        let mut recovered = slot.storage.synced().clone();
        recovered.force_new_cluster = std::mem::take(&mut slot.force_new_cluster);
        let node = Node::new(slot.config.clone(), identity, seed, recovered, now)
            .unwrap_or_else(|error| panic!("{idx} ({}): Node::new refused its config: {error}", slot.name));
        slot.node = Some(node);
        slot.generation += 1;
        slot.scheduled = None;
        self.by_member.insert(slot.storage.member_id(), idx);
        self.begin_step();
        self.after_input(idx);
        self.end_step();
    }
}

// ----- inputs from the test -------------------------------------------------------------------

impl Sim {
    /// Hands the node a [`Command`] now. Panics if it is down or paused.
    pub fn command(&mut self, idx: NodeIdx, command: Command) {
        self.assert_running(idx, "command");
        self.begin_step();
        self.handle(idx, Input::Command(command));
        self.end_step();
    }

    /// Hands `idx` a batch of client commands in one input (see
    /// [`Node::propose_commands`]); the last index appended, if it leads.
    pub fn propose_commands(
        &mut self,
        idx: NodeIdx,
        commands: impl IntoIterator<Item = Vec<u8>>,
    ) -> Result<u64, crate::raft::ProposeError> {
        self.assert_running(idx, "propose_commands");
        self.begin_step();
        let now = self.now;
        let node = self.slots[idx.0].node.as_mut().expect("running");
        let proposed = node.propose_commands(now, commands);
        self.after_input(idx);
        self.end_step();
        proposed
    }

    /// Tells `idx` to join through the current addresses of `seeds`
    /// ([`Command::Join`]).
    pub fn join(&mut self, idx: NodeIdx, seeds: &[NodeIdx]) {
        let addrs = seeds.iter().map(|&seed| self.addr(seed)).collect();
        self.command(idx, Command::Join(addrs));
    }

    /// Tells every node of `nodes` but `seed` itself to join through `seed`.
    pub fn join_all(&mut self, nodes: &[NodeIdx], seed: NodeIdx) {
        for &node in nodes.iter().filter(|&&node| node != seed) {
            self.join(node, &[seed]);
        }
    }

    /// Hands the node a discovery result ([`Input::Discovered`]).
    pub fn discovered(&mut self, idx: NodeIdx, addrs: Vec<SocketAddr>) {
        self.assert_running(idx, "discovered");
        self.begin_step();
        self.handle(idx, Input::Discovered(addrs));
        self.end_step();
    }

    /// Hands raw bytes to a node now, as if they had arrived from `from`,
    /// bypassing the network (for fuzzing and wire tests). They go into the
    /// trace hash, not into the packet counters. Panics if it is down or paused.
    pub fn inject(&mut self, idx: NodeIdx, from: SocketAddr, channel: Channel, bytes: &[u8]) {
        self.assert_running(idx, "inject");
        self.begin_step();
        self.hand_over(None, idx, from, channel, bytes.to_vec(), self.now);
        self.end_step();
    }

    /// Puts bytes on the network as if node `src` had sent them to `to`: they
    /// meet the same latency, loss, cuts and stream ordering as the node's
    /// own. For network tests and for spoofed or replayed traffic. Panics if
    /// `src` is down.
    pub fn send_raw(&mut self, src: NodeIdx, to: SocketAddr, channel: Channel, bytes: Vec<u8>) {
        assert!(self.is_up(src), "send_raw: {src} is down");
        self.assert_valid_net();
        self.transmit(src, Transmit { to, channel, bytes });
    }
}

// ----- faults ---------------------------------------------------------------------------------

impl Sim {
    /// Kills the node: it stops at once, its pending writes are lost, packets
    /// in flight to it and stream frames in flight from it are dropped.
    /// Panics if it is already down.
    pub fn crash(&mut self, idx: NodeIdx) {
        assert!(self.is_up(idx), "crash: {idx} is already down");
        self.record_fault(Fault::Crash(idx));
        self.take_down(idx);
    }

    /// Starts the node again at its address, crashing it first if it is up.
    /// With [`Disk::Keep`] it keeps its durable id and recovers its synced
    /// state (so it raises its boot id); with [`Disk::Lost`] it is a new
    /// member under the same name: a fresh durable id at boot 1.
    pub fn restart(&mut self, idx: NodeIdx, disk: Disk) {
        let addr = self.addr(idx);
        self.restart_at(idx, disk, addr);
    }

    /// Restarts `idx` with its disk under operator recovery: it becomes the
    /// only voter of a new cluster uuid (`quorate recover`, DESIGN §3.2).
    pub fn recover(&mut self, idx: NodeIdx) {
        self.slots[idx.0].force_new_cluster = true;
        self.restart(idx, Disk::Keep);
    }

    /// How long node `idx`'s application takes to ack each view it is handed
    /// (`None`: it never acks, a stuck process). Applies to views delivered from now on.
    pub fn set_ack_delay(&mut self, idx: NodeIdx, delay: Option<Duration>) {
        self.slots[idx.0].ack_delay = delay;
    }

    /// The ack delay of nodes added from now on (default 10 ms).
    pub fn set_default_ack_delay(&mut self, delay: Option<Duration>) {
        self.default_ack_delay = delay;
    }

    /// [`Sim::restart`] at a new address, for a member that keeps its
    /// identity across an address change. The old address then reaches
    /// nobody. Panics if another slot has `addr`.
    pub fn restart_at(&mut self, idx: NodeIdx, disk: Disk, addr: SocketAddr) {
        if let Some(&owner) = self.by_addr.get(&addr).filter(|&&owner| owner != idx) {
            panic!("restart_at: {addr} already belongs to {owner}");
        }
        if self.is_up(idx) {
            self.take_down(idx);
        }
        let slot = &mut self.slots[idx.0];
        if addr != slot.addr {
            self.by_addr.remove(&slot.addr);
            self.by_addr.insert(addr, idx);
            slot.addr = addr;
        }
        if disk == Disk::Lost {
            let member_id = MemberId::from_u128(self.rng.random());
            self.by_member.remove(&slot.storage.member_id());
            slot.storage = Storage::new(member_id);
        }
        self.record_fault(Fault::Restart { node: idx, disk, addr });
        self.start(idx);
    }

    /// Stalls the node as a long GC pause would: no inputs and no timers
    /// until [`Sim::resume`]. Datagrams arriving meanwhile wait in its socket
    /// buffer ([`NetConfig::socket_buffer_datagrams`]), stream frames without
    /// bound, disk syncs complete but are confirmed only on resume. It still
    /// counts as up. Panics if it is down or already paused.
    pub fn pause(&mut self, idx: NodeIdx) {
        self.assert_running(idx, "pause");
        self.record_fault(Fault::Pause(idx));
        self.slots[idx.0].paused = true;
    }

    /// Ends a pause: the node gets the syncs confirmed meanwhile, then the
    /// buffered packets in arrival order, then a tick, all at the current
    /// time. Panics if it is not paused.
    pub fn resume(&mut self, idx: NodeIdx) {
        assert!(self.is_paused(idx), "resume: {idx} is not paused");
        self.record_fault(Fault::Resume(idx));
        let slot = &mut self.slots[idx.0];
        slot.paused = false;
        slot.buffered_datagrams = 0;
        let confirmations = std::mem::take(&mut slot.confirmations);
        let buffered = std::mem::take(&mut slot.buffered);
        let acks = std::mem::take(&mut slot.deferred_acks);
        self.begin_step();
        for seq in confirmations {
            self.handle(idx, Input::Persisted(seq));
        }
        for epoch in acks {
            self.handle(idx, Input::Command(Command::Ack { epoch }));
        }
        for packet in buffered {
            self.hand_over(Some(packet.src), idx, packet.from, packet.channel, packet.bytes, packet.sent_at);
        }
        self.handle(idx, Input::Tick);
        self.end_step();
    }

    /// Splits the network: members of different groups cannot talk, either
    /// way. Nodes named in no group form one more group together, so
    /// `partition(&[&[a, b]])` cuts `a` and `b` off from everyone else.
    /// Replaces an earlier partition; cuts and isolations stay.
    pub fn partition(&mut self, groups: &[&[NodeIdx]]) {
        for &node in groups.iter().flat_map(|group| group.iter()) {
            self.slot(node);
        }
        self.links.partition(groups);
        self.record_fault(Fault::Partition(groups.iter().map(|group| group.to_vec()).collect()));
    }

    /// Drops every packet from `from` to `to` (on the receiving side: a
    /// packet already in flight is dropped too); the other direction works.
    pub fn cut(&mut self, from: NodeIdx, to: NodeIdx) {
        self.slot(from);
        self.slot(to);
        self.links.cut(from, to);
        self.record_fault(Fault::Cut { from, to });
    }

    /// Cuts the node off from every other node, both ways.
    pub fn isolate(&mut self, idx: NodeIdx) {
        self.slot(idx);
        self.links.isolate(idx);
        self.record_fault(Fault::Isolate(idx));
    }

    /// Removes every partition, cut and isolation.
    pub fn heal(&mut self) {
        self.links.heal();
        self.record_fault(Fault::Heal);
    }

    /// Whether packets from `from` to `to` are currently dropped by a
    /// partition, cut or isolation.
    pub fn blocked(&self, from: NodeIdx, to: NodeIdx) -> bool {
        self.links.blocked(from, to)
    }

    fn take_down(&mut self, idx: NodeIdx) {
        let slot = &mut self.slots[idx.0];
        slot.node = None;
        slot.generation += 1;
        slot.paused = false;
        slot.scheduled = None;
        slot.last_sync = Instant::ZERO;
        slot.storage.crash();
        slot.confirmations.clear();
        slot.buffered_datagrams = 0;
        let lost = std::mem::take(&mut slot.buffered);
        for packet in lost {
            self.count(packet.src, packet.channel, |counters| counters.unreachable += 1);
        }
    }

    fn record_fault(&mut self, fault: Fault) {
        let record = FaultRecord { at: self.now, fault };
        self.trace.fault(&record);
        self.faults.push(record);
    }
}

// ----- time -----------------------------------------------------------------------------------

impl Sim {
    /// The current virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Processes the next queued event, moving the clock to it. Returns
    /// `false` if nothing is queued (every node down or without timers).
    pub fn step(&mut self) -> bool {
        // Checked here because `net_mut` may have changed it since the last step.
        self.assert_valid_net();
        let Some(entry) = self.queue.pop() else {
            return false;
        };
        if entry.at > self.now {
            self.now = entry.at;
            self.steps_this_instant = 0;
        } else {
            self.steps_this_instant += 1;
            assert!(
                self.steps_this_instant < MAX_STEPS_PER_INSTANT,
                "virtual time stuck at {}: {MAX_STEPS_PER_INSTANT} events without the clock moving (Sim::new({}))",
                self.now,
                self.seed
            );
        }
        self.steps += 1;
        self.begin_step();
        match entry.action {
            Action::Deliver(packet) => self.deliver(packet),
            Action::Timer { node, generation, deadline } => self.on_deadline(node, generation, deadline),
            Action::Synced { node, generation, seq } => self.on_synced(node, generation, seq),
            Action::AppAck { node, generation, epoch } => self.on_app_ack(node, generation, epoch),
        }
        self.end_step();
        true
    }

    /// Runs every event up to `now + duration`, then sets the clock there.
    pub fn run_for(&mut self, duration: Duration) {
        let deadline = self.now + duration;
        while self.queue.peek_at().is_some_and(|at| at <= deadline) {
            self.step();
        }
        self.now = self.now.max(deadline);
    }

    /// Runs until `done` holds, for at most `limit` of virtual time, and says
    /// whether it came to hold. `done` is checked at the start, then after the
    /// last event of every virtual millisecond that has events, and at the
    /// limit. When it returns `true` the clock stands at the event that made
    /// `done` hold; otherwise at `now + limit`.
    ///
    /// `Sim::converged` and friends fit directly: `sim.run_until(limit, Sim::converged)`.
    pub fn run_until(&mut self, limit: Duration, done: impl FnMut(&Sim) -> bool) -> bool {
        self.run_until_every(limit, Duration::from_millis(1), done)
    }

    /// [`Sim::run_until`] checking `done` at most once per `every` of virtual
    /// time, for predicates too costly to check every millisecond (e.g.
    /// convergence of a thousand nodes).
    pub fn run_until_every(&mut self, limit: Duration, every: Duration, mut done: impl FnMut(&Sim) -> bool) -> bool {
        assert!(!every.is_zero(), "run_until_every: `every` must be positive");
        self.assert_valid_net();
        let every_ns = u64::try_from(every.as_nanos()).unwrap_or(u64::MAX);
        let deadline = self.now + limit;
        if done(self) {
            return true;
        }
        let mut checked = self.now.as_nanos() / every_ns;
        while let Some(at) = self.queue.peek_at().filter(|&at| at <= deadline) {
            // The next event opens a new period: the state now is how the last one ended.
            if at.as_nanos() / every_ns != checked {
                if done(self) {
                    return true;
                }
                checked = at.as_nanos() / every_ns;
            }
            self.step();
        }
        self.now = self.now.max(deadline);
        done(self)
    }

    /// Events processed so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Events waiting in the queue (stale timer entries included).
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    fn on_deadline(&mut self, idx: NodeIdx, generation: u64, deadline: Instant) {
        let slot = &mut self.slots[idx.0];
        if slot.generation != generation || slot.scheduled != Some(deadline) {
            return; // stale: the node restarted or its deadline moved since
        }
        slot.scheduled = None;
        if slot.paused {
            return; // `resume` ticks it
        }
        self.handle(idx, Input::Tick);
    }

    /// The application of `idx` acks `epoch` (a paused one acks on resume).
    fn on_app_ack(&mut self, idx: NodeIdx, generation: u64, epoch: u64) {
        let slot = &mut self.slots[idx.0];
        if slot.generation != generation || slot.node.is_none() {
            return; // the process that rebalanced is gone
        }
        if slot.paused {
            slot.deferred_acks.push(epoch);
            return;
        }
        self.handle(idx, Input::Command(Command::Ack { epoch }));
    }

    fn on_synced(&mut self, idx: NodeIdx, generation: u64, seq: u64) {
        let slot = &mut self.slots[idx.0];
        if slot.generation != generation {
            return; // the node crashed first: the write was lost with it
        }
        let pending = slot.storage.sync(seq);
        debug_assert!(pending, "a write of the running generation stays pending until synced");
        if slot.paused {
            slot.confirmations.push(seq);
            return;
        }
        self.handle(idx, Input::Persisted(seq));
    }
}

// ----- driving one node -----------------------------------------------------------------------

impl Sim {
    /// Feeds one input to a running node and routes everything it outputs.
    fn handle(&mut self, idx: NodeIdx, input: Input<'_>) {
        let now = self.now;
        let node = self.slots[idx.0].node.as_mut().expect("callers hand inputs to up nodes only");
        {
            let _context = PanicContext { doing: "handling an input on", node: idx, now, seed: self.seed };
            // Logs name the simulated member and its virtual time.
            let _span = tracing::debug_span!("sim", node = idx.0, now = ?now).entered();
            node.handle(now, input);
        }
        self.after_input(idx);
    }

    /// Checks the node, drains its outputs, routes them and re-arms its timer.
    fn after_input(&mut self, idx: NodeIdx) {
        let slot = &mut self.slots[idx.0];
        let node = slot.node.as_mut().expect("callers drain up nodes only");
        if self.check_invariants {
            let _context =
                PanicContext { doing: "checking the invariants of", node: idx, now: self.now, seed: self.seed };
            node.check_invariants();
        }
        let boot_id = node.boot_id();
        let mut outputs = std::mem::take(&mut self.outputs);
        outputs.extend(std::iter::from_fn(|| node.poll()));
        let deadline = node.next_deadline();
        for output in outputs.drain(..) {
            match output {
                Output::Send(transmit) => self.transmit(idx, transmit),
                Output::Persist(persist) => self.write(idx, persist),
                Output::Event(event) => self.record_event(idx, boot_id, event),
            }
        }
        self.outputs = outputs;
        self.arm_timer(idx, deadline);
    }

    /// Keeps one live queue entry for the node's deadline; entries for
    /// earlier deadlines stay queued and are skipped when they come up.
    fn arm_timer(&mut self, idx: NodeIdx, deadline: Option<Instant>) {
        let slot = &mut self.slots[idx.0];
        if slot.scheduled == deadline {
            return;
        }
        slot.scheduled = deadline;
        if let Some(deadline) = deadline {
            let action = Action::Timer { node: idx, generation: slot.generation, deadline };
            self.queue.push(deadline.max(self.now), action);
        }
    }

    fn write(&mut self, idx: NodeIdx, persist: Persist) {
        let slot = &mut self.slots[idx.0];
        let at = (self.now + self.disk.fsync_delay).max(slot.last_sync);
        slot.last_sync = at;
        let action = Action::Synced { node: idx, generation: slot.generation, seq: persist.seq };
        slot.storage.write(persist);
        self.queue.push(at, action);
    }

    fn record_event(&mut self, node: NodeIdx, boot_id: u64, event: Event) {
        if let (Event::Rebalance(view), Some(delay)) = (&event, self.slots[node.0].ack_delay) {
            let generation = self.slots[node.0].generation;
            self.queue.push(self.now + delay, Action::AppAck { node, generation, epoch: view.epoch });
        }
        let record = EventRecord { at: self.now, node, boot_id, event };
        self.event_count += 1;
        self.trace.event(&record);
        self.events.push(record);
    }

    fn begin_step(&mut self) {
        if !self.record_events {
            self.events.clear();
        }
        self.step_start = self.events.len();
    }

    fn end_step(&mut self) {
        if let Some(mut hook) = self.step_hook.take() {
            hook(self);
            self.step_hook.get_or_insert(hook);
        }
    }
}

// ----- the network ----------------------------------------------------------------------------

impl Sim {
    /// Routes one `Send` of node `src`.
    fn transmit(&mut self, src: NodeIdx, transmit: Transmit) {
        let Transmit { to, channel, bytes } = transmit;
        let len = bytes.len() as u64;
        self.count(src, channel, |counters| {
            counters.sent += 1;
            counters.bytes_sent += len;
        });
        let Some(dst) = self.by_addr.get(&to).copied().filter(|&dst| self.is_up(dst)) else {
            self.count(src, channel, |counters| counters.unreachable += 1);
            return;
        };
        if self.links.blocked(src, dst) {
            self.count(src, channel, |counters| counters.blocked += 1);
            // A connection attempt across a cut fails; the next one is new.
            self.connections.remove(&(src, dst));
            return;
        }
        let src_generation = self.slots[src.0].generation;
        let dst_generation = self.slots[dst.0].generation;
        let src_addr = self.slots[src.0].addr;
        let sent_at = self.now;
        let packet = |from, bytes| Packet { src, dst, from, channel, bytes, sent_at, src_generation, dst_generation };
        match channel {
            Channel::Datagram => {
                if self.net.loss > 0.0 && self.rng.random_bool(self.net.loss) {
                    self.count(src, channel, |counters| counters.lost += 1);
                    return;
                }
                if self.net.duplicate > 0.0 && self.rng.random_bool(self.net.duplicate) {
                    self.count(src, channel, |counters| counters.duplicated += 1);
                    let at = self.now + self.latency();
                    self.queue.push(at, Action::Deliver(packet(src_addr, bytes.clone())));
                }
                let at = self.now + self.latency();
                self.queue.push(at, Action::Deliver(packet(src_addr, bytes)));
            }
            Channel::Stream => {
                let latency = self.latency();
                let key = (src, dst);
                let open = self
                    .connections
                    .get(&key)
                    .filter(|c| c.src_generation == src_generation && c.dst_generation == dst_generation)
                    .map(|c| (c.port, c.last_delivery));
                let (port, last_delivery) = match open {
                    Some(open) => open,
                    None => (self.open_port(), Instant::ZERO),
                };
                let retransmissions = self.retransmission_delay(open.is_none());
                let at = (self.now + latency + retransmissions).max(last_delivery);
                let connection = Connection { src_generation, dst_generation, port, last_delivery: at };
                self.connections.insert(key, connection);
                let from = SocketAddr::new(src_addr.ip(), port);
                self.queue.push(at, Action::Deliver(packet(from, bytes)));
            }
        }
    }

    /// A packet's time is up: hand it over, buffer it, or drop it.
    fn deliver(&mut self, packet: Packet) {
        let (src, dst, channel) = (packet.src, packet.dst, packet.channel);
        let receiver = &self.slots[dst.0];
        let receiver_same = receiver.node.is_some() && receiver.generation == packet.dst_generation;
        let connection_intact = channel == Channel::Datagram || self.slots[src.0].generation == packet.src_generation;
        if !(receiver_same && connection_intact) {
            self.count(src, channel, |counters| counters.unreachable += 1);
            return;
        }
        if self.links.blocked(src, dst) {
            self.count(src, channel, |counters| counters.blocked += 1);
            return;
        }
        if receiver.paused {
            self.buffer(packet);
            return;
        }
        self.hand_over(Some(src), dst, packet.from, channel, packet.bytes, packet.sent_at);
    }

    /// Keeps a packet for a paused node, dropping its oldest datagram when the
    /// socket buffer is full.
    fn buffer(&mut self, packet: Packet) {
        let capacity = self.net.socket_buffer_datagrams;
        let slot = &mut self.slots[packet.dst.0];
        let mut overflowed = None;
        if packet.channel == Channel::Datagram {
            if slot.buffered_datagrams >= capacity {
                let oldest = slot.buffered.iter().position(|old| old.channel == Channel::Datagram);
                match oldest.and_then(|oldest| slot.buffered.remove(oldest)) {
                    Some(oldest) => {
                        slot.buffered_datagrams -= 1;
                        overflowed = Some(oldest.src);
                    }
                    None => {
                        // A zero-sized buffer: the new datagram itself is dropped.
                        self.count(packet.src, Channel::Datagram, |counters| counters.overflowed += 1);
                        return;
                    }
                }
            }
            slot.buffered_datagrams += 1;
        }
        slot.buffered.push_back(packet);
        if let Some(src) = overflowed {
            self.count(src, Channel::Datagram, |counters| counters.overflowed += 1);
        }
    }

    /// Hands bytes to a running node, recording the delivery.
    fn hand_over(
        &mut self,
        src: Option<NodeIdx>,
        dst: NodeIdx,
        from: SocketAddr,
        channel: Channel,
        bytes: Vec<u8>,
        sent_at: Instant,
    ) {
        if src.is_some() {
            let len = bytes.len() as u64;
            let counters = [&mut self.counters, &mut self.slots[dst.0].counters];
            for counters in counters {
                let counters = counters.channel_mut(channel);
                counters.delivered += 1;
                counters.bytes_delivered += len;
            }
        }
        self.trace.delivery(self.now, src, dst, channel, &bytes);
        self.handle(dst, Input::Receive { from, channel, bytes: &bytes });
        if self.record_deliveries {
            self.deliveries.push(Delivery { sent_at, at: self.now, src, dst, from, channel, bytes });
        }
    }

    /// What TCP's retransmissions add to a frame under the configured loss:
    /// one retransmission timeout per lost attempt, doubling each time.
    fn retransmission_delay(&mut self, new_connection: bool) -> Duration {
        const MIN_RTO: Duration = Duration::from_millis(200);
        const SYN_RTO: Duration = Duration::from_secs(1);
        const GIVE_UP_AFTER: u32 = 8;
        let mut delay = Duration::ZERO;
        let mut timeout = if new_connection { SYN_RTO } else { MIN_RTO };
        for _ in 0..GIVE_UP_AFTER {
            if self.net.loss <= 0.0 || !self.rng.random_bool(self.net.loss) {
                break;
            }
            delay += timeout;
            timeout *= 2;
        }
        delay
    }

    /// A latency drawn uniformly from the configured range.
    fn latency(&mut self) -> Duration {
        let min = u64::try_from(self.net.latency_min.as_nanos()).unwrap_or(u64::MAX);
        let max = u64::try_from(self.net.latency_max.as_nanos()).unwrap_or(u64::MAX);
        if min >= max {
            return Duration::from_nanos(min);
        }
        Duration::from_nanos(self.rng.random_range(min..=max))
    }

    fn open_port(&mut self) -> u16 {
        let offset = self.connections_opened % EPHEMERAL_PORT_COUNT;
        self.connections_opened += 1;
        EPHEMERAL_PORT_FIRST + offset as u16
    }

    /// Adds to the network-wide counters and to `node`'s.
    fn count(&mut self, node: NodeIdx, channel: Channel, change: impl Fn(&mut ChannelCounters)) {
        change(self.counters.channel_mut(channel));
        change(self.slots[node.0].counters.channel_mut(channel));
    }

    fn assert_valid_net(&self) {
        if let Err(problem) = self.net.validate() {
            panic!("invalid NetConfig: {problem}");
        }
    }
}

// ----- observation and settings ---------------------------------------------------------------

impl Sim {
    /// The seed this simulation was built with.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Number of node slots, up or down.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no node was ever added.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Every slot, up or down.
    pub fn nodes(&self) -> impl Iterator<Item = NodeIdx> + use<> {
        (0..self.slots.len()).map(NodeIdx)
    }

    /// The slots whose node is up (paused ones included).
    pub fn up_nodes(&self) -> impl Iterator<Item = NodeIdx> + '_ {
        self.nodes().filter(|&idx| self.is_up(idx))
    }

    /// The slots whose node is up and not paused.
    pub fn running_nodes(&self) -> impl Iterator<Item = NodeIdx> + '_ {
        self.nodes().filter(|&idx| self.is_running(idx))
    }

    /// The node in slot `idx`, or `None` while it is down.
    pub fn node(&self, idx: NodeIdx) -> Option<&Node> {
        self.slot(idx).node.as_ref()
    }

    /// Whether the node is up (paused or not).
    pub fn is_up(&self, idx: NodeIdx) -> bool {
        self.slot(idx).node.is_some()
    }

    /// Whether the node is paused.
    pub fn is_paused(&self, idx: NodeIdx) -> bool {
        self.slot(idx).paused
    }

    /// Whether the node is up and not paused: it takes inputs.
    pub fn is_running(&self, idx: NodeIdx) -> bool {
        let slot = self.slot(idx);
        slot.node.is_some() && !slot.paused
    }

    /// What `observer` holds about the member in slot `subject` (its current
    /// durable id): `None` if the observer is down or does not know it.
    /// E.g. `sim.member_view(a, b).map(|info| info.state)`.
    pub fn member_view(&self, observer: NodeIdx, subject: NodeIdx) -> Option<&MemberInfo> {
        self.node(observer)?.member(self.member_id(subject))
    }

    /// The slot's current address.
    pub fn addr(&self, idx: NodeIdx) -> SocketAddr {
        self.slot(idx).addr
    }

    /// The slot's node name.
    pub fn name(&self, idx: NodeIdx) -> &Name {
        &self.slot(idx).name
    }

    /// The durable id of the slot's current storage (also while down).
    pub fn member_id(&self, idx: NodeIdx) -> MemberId {
        self.slot(idx).storage.member_id()
    }

    /// The slot's storage: synced state and pending writes.
    pub fn storage(&self, idx: NodeIdx) -> &Storage {
        &self.slot(idx).storage
    }

    /// The slot whose current storage has durable id `member`, up or down;
    /// `None` for an id no slot holds any more (its disk was lost).
    pub fn node_of(&self, member: MemberId) -> Option<NodeIdx> {
        self.by_member.get(&member).copied()
    }

    /// The slot listening at `addr`.
    pub fn node_at(&self, addr: SocketAddr) -> Option<NodeIdx> {
        self.by_addr.get(&addr).copied()
    }

    /// The network settings.
    pub fn net(&self) -> &NetConfig {
        &self.net
    }

    /// The network settings, to change; checked when the simulation next runs.
    pub fn net_mut(&mut self) -> &mut NetConfig {
        &mut self.net
    }

    /// The disk settings.
    pub fn disk(&self) -> &DiskConfig {
        &self.disk
    }

    /// The disk settings, to change.
    pub fn disk_mut(&mut self) -> &mut DiskConfig {
        &mut self.disk
    }

    /// Whether [`Node::check_invariants`] runs after every input (the default).
    /// Turn it off for large benchmarks; it costs O(members) per input.
    pub fn set_check_invariants(&mut self, on: bool) {
        self.check_invariants = on;
    }

    /// The event log, oldest first. With recording off it holds only the
    /// events of the latest step.
    pub fn events(&self) -> &[EventRecord] {
        &self.events
    }

    /// Takes the event log, leaving it empty.
    pub fn take_events(&mut self) -> Vec<EventRecord> {
        self.step_start = 0;
        std::mem::take(&mut self.events)
    }

    /// The events of the latest step (or of the latest direct input such as
    /// [`Sim::command`]), recorded or not: what a step hook checks.
    pub fn step_events(&self) -> &[EventRecord] {
        &self.events[self.step_start.min(self.events.len())..]
    }

    /// Whether events are kept in the log (the default). Off, they still go
    /// into the trace hash, [`Sim::event_count`] and [`Sim::step_events`];
    /// turn it off for large runs, where the log grows with members².
    pub fn set_record_events(&mut self, on: bool) {
        self.record_events = on;
    }

    /// Events reported so far, recorded or not.
    pub fn event_count(&self) -> u64 {
        self.event_count
    }

    /// Every fault injected so far, oldest first. Empty means S6 applies, as
    /// long as loss stayed at or below 10 %.
    pub fn faults(&self) -> &[FaultRecord] {
        &self.faults
    }

    /// Whether every packet handed to a node is kept, bytes included (off by
    /// default: it costs memory).
    pub fn set_record_deliveries(&mut self, on: bool) {
        self.record_deliveries = on;
    }

    /// The recorded deliveries, oldest first.
    pub fn deliveries(&self) -> &[Delivery] {
        &self.deliveries
    }

    /// Takes the recorded deliveries, leaving none.
    pub fn take_deliveries(&mut self) -> Vec<Delivery> {
        std::mem::take(&mut self.deliveries)
    }

    /// Network-wide packet counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// One slot's packet counters over all its boots: sent, duplicated and
    /// dropped as the sender, delivered as the receiver.
    pub fn node_counters(&self, idx: NodeIdx) -> &Counters {
        &self.slot(idx).counters
    }

    /// xxh3 over every delivered packet (time, sender, receiver, channel,
    /// bytes), every event (time, node, boot, kind, subject) and every fault,
    /// in order. Two runs are the same run exactly when their hashes match.
    pub fn trace_hash(&self) -> u64 {
        self.trace.digest()
    }

    /// Runs `hook` after every step (every queued event processed, every
    /// direct input such as [`Sim::command`]), with [`Sim::step_events`]
    /// holding what the step reported. A hook asserts invariants by
    /// panicking, e.g. [`super::assert_no_live_member_failed`]. Replaces
    /// any earlier hook.
    pub fn set_step_hook(&mut self, hook: impl FnMut(&Sim) + 'static) {
        self.step_hook = Some(Box::new(hook));
    }

    /// Removes the step hook.
    pub fn clear_step_hook(&mut self) {
        self.step_hook = None;
    }

    fn slot(&self, idx: NodeIdx) -> &Slot {
        let count = self.slots.len();
        self.slots.get(idx.0).unwrap_or_else(|| panic!("{idx} does not exist: the simulation has {count} nodes"))
    }

    fn assert_running(&self, idx: NodeIdx, what: &str) {
        let slot = self.slot(idx);
        assert!(slot.node.is_some(), "{what}: {idx} is down");
        assert!(!slot.paused, "{what}: {idx} is paused");
    }
}
