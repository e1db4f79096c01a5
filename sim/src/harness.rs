//! One run: a [`Plan`] carried out under madsim against the real adapter,
//! every step of every member checked.
//!
//! Each slot is a madsim node (its own IP, its own tasks) whose initial task
//! starts a real `quorate::Cluster` on the slot's simulated [`Disk`], with
//! the plan's sync latency and datagram faults, and acks each view after a
//! drawn delay, as an application would. The supervisor (madsim's main task)
//! applies the faults at their times; after the last one it heals the
//! network, resumes and restarts everyone, and waits for L1 within the
//! plan's bound. The members' drivers call [`World::observe`] after every
//! step; the first violation stops the run.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use madsim::net::NetSim;
use madsim::rand::Rng;
use madsim::runtime::{Handle, Runtime};
use madsim::task::NodeId;
use quorate::Cluster;
use quorate_core::raft::{Entry, Role};
use quorate_core::rsm::StateMachine;
use quorate_core::rsm::kv::Kv;
use quorate_core::teeth::Plant;
use quorate_core::{Event, MemberId, Node};

use crate::invariants::d1::Trace;
use crate::invariants::l1::{self, MemberState};
use crate::invariants::linearizability::{self, Call, Op, Return};
use crate::invariants::s6::NoFalseDeath;
use crate::invariants::{Checkers, NodeIdx, Observation, Violation};
use crate::plan::{Fault, Plan, Slot};
use crate::storage::Disk;

/// The port every member listens on (UDP and TCP), each on its own IP.
const PORT: u16 = 7946;
/// How often the supervisor looks for a violation, and checks L1.
const POLL: Duration = Duration::from_millis(100);
/// Initial members a member joins through (all of them in small clusters).
const SEEDS: usize = 5;
/// Search steps the linearizability check may take per key.
const LIN_BUDGET: u64 = 2_000_000;
/// Past this many slots, the core's internal checks are sampled.
const LARGE: usize = 50;

/// How a run is carried out, besides its plan.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The bug planted in every member (needs the `teeth` feature).
    pub plant: Option<Plant>,
    /// Keep the trace's lines (for `replay`).
    pub keep_trace: bool,
    /// Print each trace line as it is recorded (for `replay`).
    pub print_trace: bool,
}

/// Why a run failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// An invariant was broken.
    Violation(Violation),
    /// Something panicked: a member's internal invariant, or the adapter.
    Panic(String),
    /// The harness itself could not go on (a member failed to start).
    Harness(String),
}

impl Failure {
    /// The invariant's id, `panic` or `harness`.
    pub fn kind(&self) -> &str {
        match self {
            Failure::Violation(violation) => violation.invariant,
            Failure::Panic(_) => "panic",
            Failure::Harness(_) => "harness",
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Violation(violation) => write!(f, "{violation}"),
            Failure::Panic(message) => write!(f, "panic: {message}"),
            Failure::Harness(message) => write!(f, "harness: {message}"),
        }
    }
}

/// What a run did.
#[derive(Debug)]
pub struct Outcome {
    /// Why it failed, if it did.
    pub failure: Option<Failure>,
    /// The trace's hash (D1).
    pub trace_hash: u64,
    /// The trace's length in lines.
    pub trace_lines: u64,
    /// The trace, if kept.
    pub trace: Option<Vec<String>>,
    /// Virtual time the run covered.
    pub simulated: Duration,
    /// Member steps observed.
    pub steps: u64,
    /// How long after the faults L1 held, if it did.
    pub settled_after: Option<Duration>,
    /// Terms with a leader, epochs agreed, epochs made stable.
    pub terms: usize,
    /// Epochs whose members are known.
    pub epochs: usize,
    /// Epochs with a committed `Stable`.
    pub stable_epochs: usize,
    /// Writes lost to kills before their sync.
    pub lost_writes: u64,
    /// BUGGIFY sites reached, and how many were active.
    pub buggify_sites: (usize, usize),
    /// Client operations called, and how many were answered.
    pub client_ops: (usize, usize),
    /// Keys whose linearizability check ran out of its budget (reported
    /// apart: neither passed nor failed).
    pub lin_unchecked: usize,
}

thread_local! {
    static LAST_PANIC: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
    static IN_RUN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Installs a panic hook that, while a run is going on this thread, keeps
/// the message (with its location) for the run's report instead of printing
/// it: a sweep expects some runs to fail. Other panics print as before.
pub fn quiet_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if IN_RUN.with(std::cell::Cell::get) {
            LAST_PANIC.with(|last| *last.borrow_mut() = Some(info.to_string()));
        } else {
            default(info);
        }
    }));
}

/// Carries out `plan`.
pub fn run(plan: &Plan, options: &Options) -> Outcome {
    let mut config = madsim::Config::default();
    config.net.packet_loss_rate = plan.loss;
    let runtime = Runtime::with_seed_and_config(plan.seed, config);
    quorate::sim::reset_buggify();
    #[cfg(feature = "teeth")]
    quorate_core::teeth::plant(options.plant);
    #[cfg(not(feature = "teeth"))]
    assert!(options.plant.is_none(), "planting a bug needs the `teeth` feature");
    let world = Arc::new(Mutex::new(World::new(plan, options)));
    let supervisor = supervise(Arc::new(plan.clone()), world.clone());
    LAST_PANIC.with(|last| last.borrow_mut().take());
    IN_RUN.with(|in_run| in_run.set(true));
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| runtime.block_on(supervisor)));
    IN_RUN.with(|in_run| in_run.set(false));
    // The members' tasks go with the runtime, before the world is read.
    drop(runtime);
    let buggify = quorate::sim::buggify_sites();
    let mut world = world.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let (simulated, settled_after) = match result {
        Ok(times) => times,
        Err(payload) => {
            let message = LAST_PANIC
                .with(|last| last.borrow_mut().take())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "a panic without a message".to_owned());
            world.failure.get_or_insert(Failure::Panic(message));
            (world.last_at, None)
        }
    };
    Outcome {
        failure: world.failure.clone(),
        trace_hash: world.trace.hash(),
        trace_lines: world.trace.len(),
        trace: world.trace.lines().map(<[String]>::to_vec),
        simulated,
        steps: world.steps,
        settled_after,
        terms: world.checkers.s1.terms(),
        epochs: world.checkers.s3.epochs(),
        stable_epochs: world.checkers.s4.stable_epochs(),
        lost_writes: world.slots.iter().map(|slot| slot.disk.lost_writes()).sum(),
        buggify_sites: (buggify.len(), buggify.iter().filter(|(_, active)| *active).count()),
        client_ops: (world.history.len(), world.history.iter().filter(|op| op.returned.is_some()).count()),
        lin_unchecked: world.lin_unchecked,
    }
}

/// A slot's IP: 10.0.x.y, one per slot.
fn ip(slot: Slot) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, (slot / 250) as u8, (slot % 250) as u8 + 1))
}

fn addr(slot: Slot) -> SocketAddr {
    SocketAddr::new(ip(slot), PORT)
}

/// What the harness knows of one slot.
struct SlotState {
    disk: Disk,
    /// Starts so far (the first may bootstrap; restarts never do alone).
    starts: u32,
    /// Killed (and not restarted yet), or left.
    down: bool,
    paused: bool,
    left: bool,
    /// The durable id its current boot runs, once started.
    member: Option<MemberId>,
    /// As its last step left it, for L1.
    state: MemberState,
    /// What its last step left, to see what a step changed.
    signature: Option<Signature>,
}

/// What the checkers and the trace care about in a member's state; a step
/// that leaves it and raises no event needs no checking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Signature {
    term: u64,
    leading: bool,
    leader: Option<MemberId>,
    commit_index: u64,
    /// The last entry's (index, term): by log matching, the same log.
    last: (u64, u64),
}

/// Everything the supervisor and the members' observers share.
pub(crate) struct World {
    start: Option<madsim::time::Instant>,
    checkers: Checkers,
    trace: Trace,
    print_trace: bool,
    failure: Option<Failure>,
    slots: Vec<SlotState>,
    /// The newest voter set seen, by the (term, commit index) of the member
    /// that held it: which disks may be lost (DESIGN §5).
    voters: ((u64, u64), BTreeSet<MemberId>),
    /// The clients' operations, in call order.
    history: Vec<Op>,
    /// Asked for once L1 holds: the leader's state machine and when it was
    /// taken, for S5.
    final_state: Option<Option<(Vec<u8>, quorate_core::Instant)>>,
    /// Keys whose linearizability check ran out of budget.
    lin_unchecked: usize,
    steps: u64,
    last_at: Duration,
}

impl World {
    fn new(plan: &Plan, options: &Options) -> World {
        let mut checkers = Checkers::default();
        if !plan.detection_undisturbed() {
            checkers.s6 = NoFalseDeath::off_from_start("the network starts beyond S6's bounds");
        }
        World {
            start: None,
            checkers,
            trace: if options.keep_trace { Trace::keeping() } else { Trace::default() },
            print_trace: options.print_trace,
            failure: None,
            slots: Vec::new(),
            voters: ((0, 0), BTreeSet::new()),
            history: Vec::new(),
            final_state: None,
            lin_unchecked: 0,
            steps: 0,
            last_at: Duration::ZERO,
        }
    }

    fn elapsed(&mut self) -> Duration {
        let now = madsim::time::Instant::now();
        let elapsed = now.duration_since(*self.start.get_or_insert(now));
        self.last_at = elapsed;
        elapsed
    }

    fn now(&mut self) -> quorate_core::Instant {
        quorate_core::Instant::from_nanos(u64::try_from(self.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }

    fn record(&mut self, slot: Option<Slot>, what: &str) {
        let at = self.now();
        self.trace.record(at, slot.map(NodeIdx), what);
        if self.print_trace {
            tracing::info!(target: "quorate_sim::trace", "{at} {} {what}", slot.map_or("--".to_owned(), |s| format!("n{s}")));
        }
    }

    fn fail(&mut self, failure: Failure) {
        if self.failure.is_none() {
            self.record(None, &format!("FAILED {failure}"));
            self.failure = Some(failure);
        }
    }

    fn slot(&mut self, slot: Slot) -> &mut SlotState {
        while self.slots.len() <= slot {
            let index = self.slots.len();
            self.slots.push(SlotState {
                disk: Disk::new(MemberId::from_u128(madsim::rand::random())),
                starts: 0,
                down: false,
                paused: false,
                left: false,
                member: None,
                state: MemberState {
                    node: NodeIdx(index),
                    id: None,
                    running: false,
                    leading: false,
                    leader: None,
                    view: None,
                    stable: false,
                    lagging: Vec::new(),
                },
                signature: None,
            });
        }
        &mut self.slots[slot]
    }

    /// Whether the process in `slot` runs: started, not killed, paused or gone.
    fn running(&self, slot: Slot) -> bool {
        self.slots.get(slot).is_some_and(|s| s.member.is_some() && !s.down && !s.paused && !s.left)
    }

    fn set_running(&mut self, slot: Slot) {
        let running = self.running(slot);
        if let Some(member) = self.slots[slot].member {
            self.checkers.s6.set_running(member, running);
        }
        self.slots[slot].state.running = running;
    }

    /// A member's driver finished a step.
    fn observe(&mut self, slot: Slot, node: &Node, events: &[Event]) {
        if self.failure.is_some() {
            return;
        }
        // The core's own invariants, as its deterministic driver checks them:
        // after every step, or every 16th in a large cluster, where the
        // membership table's check is O(members) and would dominate the run.
        self.steps += 1;
        if self.slots.len() <= LARGE || self.steps.is_multiple_of(16) {
            node.check_invariants();
        }
        let member = node.id();
        let leading = node.role() == Role::Leader;
        let commit_index = node.commit_index();
        let last = node.log_entries(commit_index + 1).last().map_or((commit_index, 0), |e| (e.index, e.term));
        let signature = Signature { term: node.term(), leading, leader: node.leader(), commit_index, last };
        let changed = self.slot(slot).signature != Some(signature);
        if changed {
            self.slots[slot].signature = Some(signature);
            if (signature.term, commit_index) >= self.voters.0 {
                self.voters = ((signature.term, commit_index), node.configuration().voters.clone());
            }
            let role = match signature.leader {
                _ if leading => "leading".to_owned(),
                Some(leader) => format!("following {leader}"),
                None => "no leader".to_owned(),
            };
            self.record(Some(slot), &format!("term {} {role}, commit {commit_index}", signature.term));
        }
        for event in events {
            self.record(Some(slot), &format!("{event:?}"));
            if *event == Event::LeaveComplete {
                self.checkers.s6.left(member);
            }
        }
        if !changed && events.is_empty() {
            return;
        }
        let from = self.checkers.scanned_up_to(member) + 1;
        let entries: Vec<Entry> = node.log_entries(from).cloned().collect();
        let term_at = |index: u64| node.log_entries(index).next().filter(|e| e.index == index).map(|e| e.term);
        let observation = Observation {
            at: self.now(),
            slot: NodeIdx(slot),
            member,
            boot_id: node.boot_id(),
            uuid: node.cluster_uuid(),
            term: node.term(),
            leading,
            leader: node.leader(),
            commit_index,
            snapshot_index: node.snapshot_index(),
            entries: &entries,
            term_at: &term_at,
            events,
        };
        if let Err(violation) = self.checkers.observe(&observation) {
            self.fail(Failure::Violation(violation));
        }
        if leading && self.final_state == Some(None) {
            let at = self.now();
            self.final_state = Some(Some((node.state_machine_snapshot(), at)));
        }
        let state = &mut self.slots[slot].state;
        state.id = Some(member);
        state.leading = leading;
        state.leader = node.leader();
        if state.view.as_ref().map(|view| view.0) != node.view().map(|view| view.epoch) {
            state.view = node.view().map(|view| (view.epoch, view.ids().collect()));
        }
        state.stable = node.is_stable();
        state.lagging = node.lagging().collect();
    }

    /// `slot`'s member started (a new boot of `member`).
    fn started(&mut self, slot: Slot, member: MemberId) {
        let state = self.slot(slot);
        state.member = Some(member);
        state.signature = None;
        self.set_running(slot);
        self.record(Some(slot), &format!("started as {member}"));
    }

    /// A client called `call` on `key`; returns the operation's number.
    fn call(&mut self, slot: Slot, client: u64, key: String, call: Call) -> usize {
        let called = self.now();
        self.record(Some(slot), &format!("client {client:x} calls {call:?} on {key}"));
        self.history.push(Op { client, key, call, called, returned: None, result: Return::Unknown });
        self.history.len() - 1
    }

    /// Operation `op` was answered (`Return::Unknown`: failed without
    /// saying whether it applied, so it stays open-ended).
    fn returned(&mut self, slot: Slot, op: usize, result: Return) {
        let at = self.now();
        self.record(Some(slot), &format!("client op {op} returns {result:?}"));
        if result != Return::Unknown {
            self.history[op].returned = Some(at);
            self.history[op].result = result;
        }
    }

    /// `slot`'s application acked `epoch`.
    fn acked(&mut self, slot: Slot, member: MemberId, epoch: u64) {
        self.checkers.s4.acked(member, epoch);
        self.record(Some(slot), &format!("app acked epoch {epoch}"));
    }

    /// Up to [`SEEDS`] slots other than `slot` whose members have not left:
    /// where a starting member looks for the cluster.
    fn seeds(&self, slot: Slot) -> Vec<SocketAddr> {
        (0..self.slots.len()).filter(|&s| s != slot && !self.slots[s].left).take(SEEDS).map(addr).collect()
    }

    /// The leader every live member knows, if they agree on one.
    fn common_leader(&self) -> Option<MemberId> {
        let mut live = (0..self.slots.len()).filter(|&slot| !self.slots[slot].left).map(|slot| &self.slots[slot]);
        let leader = live.next()?.state.leader?;
        live.all(|s| s.member.is_some() && !s.down && !s.paused && s.state.leader == Some(leader)).then_some(leader)
    }

    /// The leader the live members see, by slot: the one leading the
    /// highest term.
    fn leader_slot(&self) -> Option<Slot> {
        (0..self.slots.len())
            .filter(|&slot| self.running(slot) && self.slots[slot].state.leading)
            .max_by_key(|&slot| self.slots[slot].signature.map_or(0, |s| s.term))
    }

    /// L1 over the live members.
    fn liveness(&self) -> Result<(), String> {
        let live: Vec<MemberState> = (0..self.slots.len())
            .filter(|&slot| !self.slots[slot].left)
            .map(|slot| self.slots[slot].state.clone())
            .collect();
        l1::check(&live)
    }

    /// One line per slot, for a liveness failure's evidence.
    fn describe(&self) -> String {
        let lines: Vec<String> = self
            .slots
            .iter()
            .enumerate()
            .map(|(slot, s)| {
                let status = if s.left {
                    "left"
                } else if s.down {
                    "down"
                } else if s.paused {
                    "paused"
                } else {
                    "up"
                };
                let state = &s.state;
                format!(
                    "  n{slot} {status} {:?} term {} commit {} last {:?} {} leader {:?} view {:?} stable {} lagging {:?}",
                    state.id,
                    s.signature.map_or(0, |signature| signature.term),
                    s.signature.map_or(0, |signature| signature.commit_index),
                    s.signature.map(|signature| signature.last),
                    if state.leading { "leading" } else { "following" },
                    state.leader,
                    state.view.as_ref().map(|(epoch, members)| (epoch, members.len())),
                    state.stable,
                    state.lagging
                )
            })
            .collect();
        lines.join("\n")
    }
}

fn lock(world: &Mutex<World>) -> MutexGuard<'_, World> {
    // A member that panicked holding the lock fails the run anyway.
    world.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The supervisor: starts the members, applies the faults, waits for L1.
/// Returns the virtual time covered and how long L1 took after the faults.
async fn supervise(plan: Arc<Plan>, world: Arc<Mutex<World>>) -> (Duration, Option<Duration>) {
    let handle = Handle::current();
    let net = NetSim::current();
    if plan.buggify {
        madsim::buggify::enable();
    }
    lock(&world).elapsed();
    let mut nodes: Vec<NodeId> = Vec::new();
    for slot in 0..plan.initial {
        nodes.push(create(&handle, &plan, &world, slot));
    }
    let mut network = Network::default();
    for (at, fault) in &plan.faults {
        if !wait_until(&world, *at).await {
            return (lock(&world).elapsed(), None);
        }
        apply(&handle, &net, &plan, &world, &mut nodes, &mut network, fault);
    }
    if !wait_until(&world, plan.faults_end).await {
        return (lock(&world).elapsed(), None);
    }
    // The faults end: heal, resume and restart everyone that has not left;
    // BUGGIFY stops too, or the quiet phase would not be quiet.
    madsim::buggify::disable();
    network.heal(&net);
    net.update_config(|config| {
        config.packet_loss_rate = 0.0;
        config.send_latency = Duration::from_millis(1)..Duration::from_millis(10);
    });
    for slot in 0..nodes.len() {
        let (paused, down, left) = {
            let mut w = lock(&world);
            let s = w.slot(slot);
            (s.paused, s.down, s.left)
        };
        if left {
            continue;
        }
        if paused {
            apply(&handle, &net, &plan, &world, &mut nodes, &mut network, &Fault::Resume(slot));
        }
        if down {
            apply(&handle, &net, &plan, &world, &mut nodes, &mut network, &Fault::Restart(slot));
        }
    }
    lock(&world).record(None, "faults end");
    let deadline = plan.faults_end + plan.liveness_bound;
    loop {
        let (now, verdict) = {
            let mut w = lock(&world);
            (w.elapsed(), if w.failure.is_some() { None } else { Some(w.liveness()) })
        };
        match verdict {
            None => return (now, None),
            Some(Ok(())) => {
                lock(&world).record(None, "L1 holds");
                let settled = now.saturating_sub(plan.faults_end);
                if plan.clients.is_some() {
                    check_clients(&world).await;
                }
                return (lock(&world).elapsed(), Some(settled));
            }
            Some(Err(reason)) if now >= deadline => {
                let mut w = lock(&world);
                let detail = format!(
                    "not reached within {:?} of the faults' end: {reason}\n{}",
                    plan.liveness_bound,
                    w.describe()
                );
                let at = w.now();
                w.fail(Failure::Violation(Violation { invariant: "L1", at, detail }));
                return (now, None);
            }
            Some(Err(_)) => tokio::time::sleep(POLL).await,
        }
    }
}

/// Once L1 holds: S5 over the clients' acknowledged writes (each is in the
/// leader's store, or overwritten by a later one), and linearizability of
/// their whole history.
async fn check_clients(world: &Mutex<World>) {
    lock(world).final_state = Some(None);
    let mut waited = Duration::ZERO;
    let state = loop {
        if let Some(Some(state)) = lock(world).final_state.clone() {
            break Some(state);
        }
        if waited >= Duration::from_secs(5) {
            break None;
        }
        tokio::time::sleep(POLL).await;
        waited += POLL;
    };
    let mut w = lock(world);
    let at = w.now();
    let Some((state, taken)) = state else {
        let detail = "the leader took no step within 5 s of L1 holding".to_owned();
        w.fail(Failure::Violation(Violation { invariant: "L1", at, detail }));
        return;
    };
    let mut store = Kv::new();
    if let Err(error) = StateMachine::restore(&mut store, &state) {
        let detail = format!("the leader's store does not decode: {error}");
        w.fail(Failure::Violation(Violation { invariant: "S5", at, detail }));
        return;
    }
    // Writes answered before the store was read (the clients go on meanwhile).
    for op in w.history.iter().filter(|op| op.returned.is_some_and(|at| at <= taken)) {
        let Return::Written(revision) = op.result else { continue };
        let kept = store.get(&op.key).is_some_and(|entry| entry.modified >= revision);
        if !kept || store.revision() < revision {
            let detail = format!(
                "client {:x}'s write to {:?} was acknowledged at revision {revision} ({:?}), but the settled \
                 leader's store holds {:?} at store revision {}",
                op.client,
                op.key,
                op.call,
                store.get(&op.key),
                store.revision()
            );
            w.fail(Failure::Violation(Violation { invariant: "S5", at, detail }));
            return;
        }
    }
    let (result, unchecked) = linearizability::check(&w.history, LIN_BUDGET);
    w.lin_unchecked = unchecked;
    if let Err(violation) = result {
        w.fail(Failure::Violation(violation));
    }
}

/// Sleeps until `at` after the start, waking every [`POLL`] to stop early on
/// a failure. False if the run failed.
async fn wait_until(world: &Mutex<World>, at: Duration) -> bool {
    loop {
        let (now, failed) = {
            let mut w = lock(world);
            (w.elapsed(), w.failure.is_some())
        };
        if failed {
            return false;
        }
        if now >= at {
            return true;
        }
        tokio::time::sleep((at - now).min(POLL)).await;
    }
}

/// Links the harness cut, so a heal restores exactly them.
#[derive(Default)]
struct Network {
    links: BTreeSet<(NodeId, NodeId)>,
    isolated: BTreeSet<NodeId>,
}

impl Network {
    fn cut(&mut self, net: &NetSim, from: NodeId, to: NodeId) {
        net.clog_link(from, to);
        self.links.insert((from, to));
    }

    fn heal(&mut self, net: &NetSim) {
        for (from, to) in std::mem::take(&mut self.links) {
            net.unclog_link(from, to);
        }
        for node in std::mem::take(&mut self.isolated) {
            net.unclog_node(node);
        }
    }
}

fn apply(
    handle: &Handle,
    net: &NetSim,
    plan: &Arc<Plan>,
    world: &Arc<Mutex<World>>,
    nodes: &mut Vec<NodeId>,
    network: &mut Network,
    fault: &Fault,
) {
    let mut w = lock(world);
    let mut what = fault.to_string();
    if fault.disturbs_detection() {
        let at = w.now();
        w.checkers.s6.disturbed(at, what.clone());
    }
    match *fault {
        Fault::Kill(slot) => {
            handle.kill(nodes[slot]);
            w.slot(slot).down = true;
            w.set_running(slot);
        }
        Fault::Restart(slot) | Fault::RestartWiped(slot) => {
            if matches!(fault, Fault::RestartWiped(_)) {
                // Only a minority of voters may lose their disks, and the
                // plan cannot know the voters: with fewer than three, losing
                // one of them loses the quorum for good.
                let voters = &w.voters.1;
                let member = w.slots[slot].member;
                if member.is_some_and(|member| voters.contains(&member)) && voters.len() < 3 {
                    what = format!("restart n{slot} with its disk kept (it is one of {} voters)", voters.len());
                } else {
                    w.slot(slot).disk = Disk::new(MemberId::from_u128(madsim::rand::random()));
                }
            }
            w.slot(slot).down = false;
            // The member marks itself running once it started.
            drop(w);
            handle.restart(nodes[slot]);
            w = lock(world);
        }
        Fault::Pause(slot) => {
            handle.pause(nodes[slot]);
            w.slot(slot).paused = true;
            w.set_running(slot);
        }
        Fault::Resume(slot) => {
            handle.resume(nodes[slot]);
            w.slot(slot).paused = false;
            w.set_running(slot);
        }
        Fault::Partition(ref side) => {
            network.heal(net);
            for &inside in side {
                for outside in (0..nodes.len()).filter(|slot| !side.contains(slot)) {
                    network.cut(net, nodes[inside], nodes[outside]);
                    network.cut(net, nodes[outside], nodes[inside]);
                }
            }
        }
        Fault::CutOneWay { from, to } => {
            if from < nodes.len() && to < nodes.len() {
                network.cut(net, nodes[from], nodes[to]);
            }
        }
        Fault::IsolateLeader => match w.leader_slot() {
            Some(slot) => {
                net.clog_node(nodes[slot]);
                network.isolated.insert(nodes[slot]);
                what = format!("isolate the leader, n{slot}");
            }
            None => what = "isolate the leader: none known".to_owned(),
        },
        Fault::Heal => network.heal(net),
        Fault::Loss(rate) => net.update_config(|config| config.packet_loss_rate = rate),
        Fault::Latency(low, high) => net.update_config(|config| {
            config.send_latency = Duration::from_millis(low)..Duration::from_millis(high + 1);
        }),
        Fault::Join(slot) => {
            drop(w);
            nodes.push(create(handle, plan, world, slot));
            w = lock(world);
        }
        // An operator decommissions members of a healthy cluster: a voter
        // leaves by a configuration change that needs a leader and a quorum
        // within the leave timeout, or it is gone and still a voter (and a
        // member gone before `bootstrap_expect` was met leaves the others
        // one short for good).
        Fault::Leave(slot) if w.common_leader().is_none() => {
            what = format!("n{slot} stays: the live members know no common leader");
        }
        Fault::Leave(slot) => {
            handle.send_ctrl_c(nodes[slot]);
            w.slot(slot).left = true;
            w.set_running(slot);
        }
    }
    w.record(None, &what);
}

/// Creates slot `slot`'s node; its initial task runs the member.
fn create(handle: &Handle, plan: &Arc<Plan>, world: &Arc<Mutex<World>>, slot: Slot) -> NodeId {
    lock(world).slot(slot);
    let (plan, world) = (plan.clone(), world.clone());
    handle
        .create_node()
        .name(format!("n{slot}"))
        .ip(ip(slot))
        .init(move || member(plan.clone(), world.clone(), slot))
        .build()
        .id()
}

/// One boot of the member in `slot`: start, ack views, leave on SIGINT.
async fn member(plan: Arc<Plan>, world: Arc<Mutex<World>>, slot: Slot) {
    let (disk, first_start, boot) = {
        let mut w = lock(&world);
        let s = w.slot(slot);
        s.starts += 1;
        (s.disk.clone(), s.starts == 1, s.starts)
    };
    // As discovery would, the seeds are members that have not left.
    let seeds = lock(&world).seeds(slot);
    let observer = {
        let world = world.clone();
        move |node: &Node, events: &[Event]| lock(&world).observe(slot, node, events)
    };
    let mut builder = Cluster::builder()
        .cluster("sim")
        .node(format!("n{slot}"))
        .bind(addr(slot))
        .join(seeds)
        .profile(plan.profile)
        .storage(disk.store())
        .sync_latency(plan.sync_latency)
        .datagram_faults(plan.datagram_faults)
        .observer(observer);
    if slot < plan.bootstrap_expect {
        // As an operator's unit file would, every start of an initial member
        // says how many form the cluster; a lone member's explicit bootstrap
        // is said only once (said again on an empty disk, it would found a
        // second cluster, as the operator asked).
        if plan.bootstrap_expect > 1 {
            builder = builder.bootstrap_expect(plan.bootstrap_expect as u32);
        } else if first_start {
            builder = builder.bootstrap();
        }
    }
    let cluster = match builder.start().await {
        Ok(cluster) => cluster,
        Err(error) => {
            lock(&world).fail(Failure::Harness(format!("n{slot} failed to start: {error}")));
            return;
        }
    };
    let me = cluster.id();
    lock(&world).started(slot, me);
    let acks = plan.acks;
    let ack_world = world.clone();
    cluster.on_rebalance(move |_view, done| {
        let mut rng = madsim::rand::thread_rng();
        let delay = if rng.gen_bool(acks.slow_chance) {
            acks.slow_delay
        } else {
            acks.max_delay.mul_f64(rng.gen_range(0.0..=1.0))
        };
        let world = ack_world.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            lock(&world).acked(slot, me, done.epoch());
            done.ack();
        });
    });
    let client = (slot as u64) << 32 | u64::from(boot);
    let leaving = tokio::select! {
        biased;
        _ = tokio::signal::ctrl_c() => true,
        stopped = cluster.stopped() => {
            if let Err(error) = stopped {
                lock(&world).fail(Failure::Harness(format!("n{slot} stopped: {error}")));
            }
            false
        }
        () = run_client(&plan, &world, slot, client, &cluster) => false,
    };
    if leaving {
        if let Err(error) = cluster.leave().await {
            lock(&world).record(Some(slot), &format!("leave failed: {error}"));
        }
        cluster.shutdown().await;
    }
}

/// One sequential KV client on this member: random operations on the
/// plan's keys, each recorded with its call and answer times. Runs forever
/// (or not at all without client traffic in the plan).
async fn run_client(plan: &Plan, world: &Mutex<World>, slot: Slot, client: u64, cluster: &Cluster) {
    let Some(clients) = plan.clients else { return std::future::pending().await };
    // Values are unique: this client's id and a counter.
    let mut counter = 0u64;
    // The revision this client last saw per key, for compare-and-set.
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    loop {
        let (gap, key, pick) = {
            let mut rng = madsim::rand::thread_rng();
            (clients.max_gap.mul_f64(rng.gen_range(0.0..=1.0)), rng.gen_range(0..clients.keys), rng.gen_range(0..10))
        };
        tokio::time::sleep(gap).await;
        let key = format!("k{key}");
        counter += 1;
        let value = client << 20 | counter;
        let call = match pick {
            0..5 => Call::Put(value),
            5..8 => Call::Get,
            _ => Call::Cas { expected: seen.get(&key).copied(), value },
        };
        let op = lock(world).call(slot, client, key.clone(), call.clone());
        let kv = cluster.kv();
        let result = match call {
            Call::Put(value) => kv.put(key.clone(), value.to_le_bytes()).await.map(Return::Written),
            Call::Get => kv.get(key.clone()).await.map(|entry| {
                let read = |bytes: &[u8]| bytes.try_into().map_or(u64::MAX, u64::from_le_bytes);
                Return::Value(entry.map(|entry| (read(&entry.value), entry.modified)))
            }),
            Call::Cas { expected, value } => {
                kv.compare_and_set(key.clone(), expected, value.to_le_bytes()).await.map(|outcome| match outcome {
                    Ok(revision) => Return::Written(revision),
                    Err(current) => Return::CasFailed(current),
                })
            }
        };
        let result = result.unwrap_or(Return::Unknown);
        match result {
            Return::Written(revision) => {
                seen.insert(key, revision);
            }
            Return::Value(Some((_, revision))) | Return::CasFailed(Some(revision)) => {
                seen.insert(key, revision);
            }
            _ => {}
        }
        lock(world).returned(slot, op, result);
    }
}
