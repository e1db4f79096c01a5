//! Helpers for the Raft tests: cluster builders, a per-step checker of the
//! Raft safety properties (Raft §5.2–5.4, dissertation §4; DESIGN §5's S1–S3),
//! and forged Raft frames for scripted schedules.
//!
//! The [`Checker`] runs after every step of the driver (every delivered
//! packet, timer, disk sync and direct input) and panics, naming the seed, on
//! the first breach of:
//!
//! - **S1 / Election Safety** (§5.2): at most one leader per term.
//! - **State Machine Safety** (§5.4.3, DESIGN S2): every member's committed
//!   prefix is a prefix of one sequence; an entry once seen committed at an
//!   index is never replaced there.
//! - **Log Matching** (§5.3): two logs holding an entry of the same index and
//!   term agree on every entry before it.
//! - **Leader Completeness** (§5.4): a leader of term `t` holds every entry
//!   seen committed by a member whose term was below `t`.
//! - **Own-term rule** (§5.4.2, dissertation §4.1 and the 2015 single-server
//!   bug): a leader's first entry of its term is its `Noop`; it appends a
//!   `Config` of its term only once that `Noop` has committed; it holds at
//!   most one uncommitted `Config` of its term.
//! - **Single-server changes** (dissertation §4.1–4.3): consecutive `Config`
//!   entries of a log differ by at most one server, and a server becomes a
//!   voter only from a learner (never straight from outside).
//! - **S3**: an epoch, wherever delivered, names one member set; within one
//!   boot of a member, delivered epochs strictly increase.
//!
//! Everything is keyed by cluster uuid: an operator's `recover` starts a new
//! cluster whose log and terms are its own.

#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use core::num::NonZeroU32;
use core::time::Duration;

use quorate_core::raft::{Message, Payload};
use quorate_core::testing::{NodeIdx, Sim};
use quorate_core::wire::{self, Body, Envelope, Header};
use quorate_core::{Bootstrap, Channel, ClusterUuid, Config, Configuration, Event, Instant, MemberId, Role};

pub const MS: Duration = Duration::from_millis(1);
pub const SECOND: Duration = Duration::from_secs(1);
pub const CLUSTER: &str = "raft";

/// The fast profile, bootstrapping with `expect` members.
pub fn expect(expect: u32) -> Config {
    let mut config = Config::fast(CLUSTER);
    config.bootstrap = Bootstrap::Expect(NonZeroU32::new(expect).unwrap());
    config
}

/// The fast profile for members that join an existing cluster.
pub fn joiner() -> Config {
    Config::fast(CLUSTER)
}

/// Election timeouts drawn from `[min, 2 × min]`, as in the fast and LAN profiles.
pub fn election_timeout(config: &mut Config, min: Duration) {
    config.raft.election_timeout = min;
    config.raft.election_timeout_max = 2 * min;
}

/// Elapsed virtual time from `earlier` to `later`.
pub fn since(later: Instant, earlier: Instant) -> Duration {
    later.saturating_duration_since(earlier)
}

/// The leader every running member of `group` names, if they all name the
/// same one and it is up, in `group` and leading.
pub fn agreed_leader(sim: &Sim, group: &[NodeIdx]) -> Option<NodeIdx> {
    let mut leader = None;
    for &idx in group.iter().filter(|&&idx| sim.is_running(idx)) {
        let named = sim.node(idx)?.leader()?;
        if leader.is_some_and(|known| known != named) {
            return None;
        }
        leader = Some(named);
    }
    let idx = sim.node_of(leader?)?;
    let node = sim.node(idx)?;
    (group.contains(&idx) && node.role() == Role::Leader).then_some(idx)
}

/// Runs until every running member of `group` names the same leader; panics
/// with the cluster's state otherwise.
pub fn await_leader(sim: &mut Sim, group: &[NodeIdx], limit: Duration) -> NodeIdx {
    if !sim.run_until(limit, |sim| agreed_leader(sim, group).is_some()) {
        panic!("no leader agreed by {group:?} within {limit:?} (Sim::new({}))\n{}", sim.seed(), describe(sim));
    }
    agreed_leader(sim, group).unwrap()
}

/// Steps one event at a time until `done` holds: for schedules that must act
/// between two events (e.g. right after an election, before the new leader's
/// first append leaves). Panics after `limit` of virtual time.
pub fn step_until(sim: &mut Sim, limit: Duration, mut done: impl FnMut(&Sim) -> bool) {
    let deadline = sim.now() + limit;
    while !done(sim) {
        assert!(sim.now() <= deadline, "not reached within {limit:?} (Sim::new({}))\n{}", sim.seed(), describe(sim));
        assert!(sim.step(), "nothing left to run (Sim::new({}))", sim.seed());
    }
}

/// One line per node: role, term, log and commit positions, leader and configuration.
pub fn describe(sim: &Sim) -> String {
    let mut out = format!("at {}:\n", sim.now());
    for idx in sim.nodes() {
        match sim.node(idx) {
            None => out.push_str(&format!("  {idx}: down\n")),
            Some(node) => {
                let last = node.log_entries(0).last().map(|e| (e.index, e.term));
                let configuration = node.configuration();
                out.push_str(&format!(
                    "  {idx} {} {:?} term {} last {:?} commit {} leader {:?} view {:?} stable {} voters {:?} learners {:?} \
                     uuid {:?}\n",
                    node.id(),
                    node.role(),
                    node.term(),
                    last,
                    node.commit_index(),
                    node.leader(),
                    node.view().map(|view| (view.epoch, view.members.len())),
                    node.is_stable(),
                    configuration.voters,
                    configuration.learners,
                    node.cluster_uuid(),
                ))
            }
        }
    }
    out
}

/// The `(index, term, kind)` of every entry in a member's log.
pub fn log_of(sim: &Sim, idx: NodeIdx) -> Vec<(u64, u64, &'static str)> {
    sim.node(idx).map_or_else(Vec::new, |node| {
        node.log_entries(0).map(|entry| (entry.index, entry.term, entry.payload.kind())).collect()
    })
}

/// The term of the entry at `index` in a member's log, if it holds one.
pub fn term_at(sim: &Sim, idx: NodeIdx, index: u64) -> Option<u64> {
    sim.node(idx)?.log_entries(index).next().filter(|entry| entry.index == index).map(|entry| entry.term)
}

/// The term of the entry at `index` in a member's synced storage.
pub fn synced_term_at(sim: &Sim, idx: NodeIdx, index: u64) -> Option<u64> {
    sim.storage(idx).synced().raft.entries.iter().find(|entry| entry.index == index).map(|entry| entry.term)
}

/// An encoded stream frame carrying a Raft message as member `from` (in its
/// current boot, of `uuid`) would send it: the schedules use it to make a real
/// leader send what any correct leader may send (e.g. a batch split in two).
pub fn forge(sim: &Sim, from: NodeIdx, uuid: ClusterUuid, message: Message) -> Vec<u8> {
    let node = sim.node(from).expect("forge: the sender must be up");
    let header = Header {
        version: wire::PROTOCOL_VERSION,
        cluster_name_hash: quorate_core::id::cluster_name_hash(CLUSTER),
        cluster_uuid: uuid,
        from: node.id(),
        boot_id: node.boot_id(),
    };
    Envelope { header, body: Body::Raft(message) }.encode(Channel::Stream).expect("a small frame encodes")
}

// ----- the checker ----------------------------------------------------------------------------

/// An entry seen committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Committed {
    pub term: u64,
    /// The lowest term of a member that reported it committed.
    pub seen_in_term: u64,
    pub at: Instant,
}

/// What one member's log looked like at the last check.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Snapshot {
    boot: (MemberId, u64),
    role: Option<Role>,
    term: u64,
    commit: u64,
    /// `(index, term)` of every entry held.
    terms: Vec<(u64, u64)>,
}

/// Per-cluster state of the checker.
#[derive(Default)]
pub struct ClusterHistory {
    /// S1: the leader of each term.
    pub leaders: BTreeMap<u64, MemberId>,
    /// Every committed index seen, with its entry's term.
    pub committed: BTreeMap<u64, Committed>,
    /// S3: the members of each delivered epoch.
    pub delivered: BTreeMap<u64, Vec<MemberId>>,
    /// The highest index verified against `committed`, per member boot.
    verified: BTreeMap<(MemberId, u64), u64>,
}

/// A member's role or term changed (or it started).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoleChange {
    pub at: Instant,
    pub node: NodeIdx,
    pub id: MemberId,
    pub role: Role,
    pub term: u64,
}

/// See the module documentation.
#[derive(Default)]
pub struct Checker {
    /// Every change of role or term of every member, in order.
    pub roles: Vec<RoleChange>,
    pub clusters: BTreeMap<ClusterUuid, ClusterHistory>,
    /// Per member boot: the newest delivered epoch (S3's second half).
    last_delivered: BTreeMap<(MemberId, u64), u64>,
    logs: BTreeMap<NodeIdx, Snapshot>,
    /// Skip the single-server rule for `Config` entries of this term and
    /// later on this member (an operator's forced configuration).
    pub forced: BTreeMap<MemberId, u64>,
    pub steps: u64,
}

pub type Shared = Rc<RefCell<Checker>>;

/// Installs a [`Checker`] as the step hook; returns it for later queries.
pub fn install(sim: &mut Sim) -> Shared {
    install_with(sim, |_| {})
}

/// [`install`], plus `extra` run after the checks at every step.
pub fn install_with(sim: &mut Sim, mut extra: impl FnMut(&Sim) + 'static) -> Shared {
    let checker: Shared = Rc::default();
    let shared = checker.clone();
    sim.set_step_hook(move |sim| {
        shared.borrow_mut().check(sim);
        extra(sim);
    });
    checker
}

impl Checker {
    fn fail(sim: &Sim, what: String) -> ! {
        panic!("{what} at {} (Sim::new({}))\n{}", sim.now(), sim.seed(), describe(sim));
    }

    /// All checks, for the current state of `sim`.
    pub fn check(&mut self, sim: &Sim) {
        self.steps += 1;
        self.check_deliveries(sim);
        let mut changed = Vec::new();
        for idx in sim.nodes() {
            let Some(node) = sim.node(idx) else {
                self.logs.remove(&idx);
                continue;
            };
            let uuid = node.cluster_uuid();
            if uuid.is_nil() {
                self.logs.remove(&idx);
                continue;
            }
            let history = self.clusters.entry(uuid).or_default();
            // S1.
            if node.role() == Role::Leader {
                let term = node.term();
                match history.leaders.get(&term) {
                    Some(&leader) if leader != node.id() => Self::fail(
                        sim,
                        format!("S1 violated: {idx} ({}) leads term {term}, already led by {leader}", node.id()),
                    ),
                    Some(_) => {}
                    None => {
                        history.leaders.insert(term, node.id());
                    }
                }
            }
            let last = node.log_entries(0).last().map(|entry| (entry.index, entry.term));
            let previous = self.logs.get(&idx);
            let boot = (node.id(), node.boot_id());
            let unchanged = previous.is_some_and(|p| {
                p.boot == boot
                    && p.role == Some(node.role())
                    && p.term == node.term()
                    && p.commit == node.commit_index()
                    && p.terms.last().copied() == last
                    && p.terms.first().map(|&(index, _)| index) == node.log_entries(0).next().map(|e| e.index)
            });
            if unchanged {
                continue;
            }
            if previous.is_none_or(|p| p.boot != boot || p.role != Some(node.role()) || p.term != node.term()) {
                let change =
                    RoleChange { at: sim.now(), node: idx, id: node.id(), role: node.role(), term: node.term() };
                self.roles.push(change);
            }
            let terms: Vec<(u64, u64)> = node.log_entries(0).map(|entry| (entry.index, entry.term)).collect();
            self.logs.insert(
                idx,
                Snapshot { boot, role: Some(node.role()), term: node.term(), commit: node.commit_index(), terms },
            );
            changed.push(idx);
        }
        if changed.is_empty() {
            return;
        }
        for &idx in &changed {
            self.check_committed(sim, idx);
            self.check_configurations(sim, idx);
        }
        for &idx in &changed {
            self.check_leader(sim, idx);
            self.check_log_matching(sim, idx);
        }
    }

    /// State Machine Safety: the newly committed entries of `idx` match what
    /// was seen committed at their indexes.
    fn check_committed(&mut self, sim: &Sim, idx: NodeIdx) {
        let node = sim.node(idx).unwrap();
        let history = self.clusters.get_mut(&node.cluster_uuid()).unwrap();
        let key = (node.id(), node.boot_id());
        let from = history.verified.get(&key).map_or(0, |&verified| verified + 1);
        let commit = node.commit_index();
        for entry in node.log_entries(from).take_while(|entry| entry.index <= commit) {
            match history.committed.get_mut(&entry.index) {
                Some(seen) if seen.term != entry.term => Self::fail(
                    sim,
                    format!(
                        "State Machine Safety violated: {idx} committed index {} of term {}, \
                         but an entry of term {} was committed there at {}",
                        entry.index, entry.term, seen.term, seen.at
                    ),
                ),
                Some(seen) => seen.seen_in_term = seen.seen_in_term.min(node.term()),
                None => {
                    let committed = Committed { term: entry.term, seen_in_term: node.term(), at: sim.now() };
                    history.committed.insert(entry.index, committed);
                }
            }
        }
        let verified = history.verified.entry(key).or_default();
        *verified = (*verified).max(commit);
    }

    /// Leader Completeness and the own-term rule, on a leader.
    fn check_leader(&mut self, sim: &Sim, idx: NodeIdx) {
        let node = sim.node(idx).unwrap();
        if node.role() != Role::Leader {
            return;
        }
        let history = &self.clusters[&node.cluster_uuid()];
        let term = node.term();
        let terms: BTreeMap<u64, u64> = node.log_entries(0).map(|entry| (entry.index, entry.term)).collect();
        let first = terms.keys().next().copied().unwrap_or(u64::MAX);
        for (&index, committed) in history.committed.range(first..) {
            if committed.seen_in_term < term && terms.get(&index) != Some(&committed.term) {
                Self::fail(
                    sim,
                    format!(
                        "Leader Completeness violated: {idx} leads term {term} without index {index} of term {} \
                         (committed by term {})",
                        committed.term, committed.seen_in_term
                    ),
                );
            }
        }
        let own: Vec<_> = node.log_entries(0).filter(|entry| entry.term == term).collect();
        let Some(noop) = own.first() else { return };
        // The term's first entry may have been compacted into a snapshot
        // (then it committed long ago): check only what the log still shows.
        let compacted = node.log_entries(0).next().is_some_and(|first| first.index == noop.index);
        if compacted {
            return;
        }
        if noop.payload != Payload::Noop {
            Self::fail(sim, format!("{idx} leads term {term} but its first entry of the term is {:?}", noop.payload));
        }
        let noop_index = noop.index;
        let commit = node.commit_index();
        for entry in &own {
            if matches!(entry.payload, Payload::Config(_)) && commit < noop_index {
                Self::fail(
                    sim,
                    format!(
                        "{idx} appended a Config at {} in term {term} before its Noop at {noop_index} committed \
                         (commit {commit})",
                        entry.index
                    ),
                );
            }
        }
        // Own-term Configs come after the committed Noop, so everything before
        // them is committed: only they can be in flight.
        let uncommitted = own.iter().filter(|e| e.index > commit && matches!(e.payload, Payload::Config(_))).count();
        if uncommitted > 1 {
            Self::fail(sim, format!("{idx} holds {uncommitted} uncommitted Config entries: one change at a time"));
        }
    }

    /// Single-server changes along one member's log.
    fn check_configurations(&mut self, sim: &Sim, idx: NodeIdx) {
        let node = sim.node(idx).unwrap();
        let forced_from = self.forced.get(&node.id()).copied().unwrap_or(u64::MAX);
        let mut previous: Option<&Configuration> = None;
        for entry in node.log_entries(0) {
            let Payload::Config(configuration) = &entry.payload else { continue };
            if let Some(previous) = previous
                && entry.term < forced_from
                && let Err(why) = single_server_change(previous, configuration)
            {
                Self::fail(sim, format!("{idx}'s log at {}: {why}: {previous:?} -> {configuration:?}", entry.index));
            }
            previous = Some(configuration);
        }
    }

    /// Log Matching between `idx` and every other member of its cluster.
    fn check_log_matching(&self, sim: &Sim, idx: NodeIdx) {
        let Some(mine) = self.logs.get(&idx) else { return };
        let uuid = sim.node(idx).unwrap().cluster_uuid();
        for (&other, theirs) in &self.logs {
            if other == idx || sim.node(other).is_none_or(|node| node.cluster_uuid() != uuid) {
                continue;
            }
            let theirs: BTreeMap<u64, u64> = theirs.terms.iter().copied().collect();
            let common: Vec<(u64, u64, u64)> = mine
                .terms
                .iter()
                .filter_map(|&(index, term)| theirs.get(&index).map(|&other_term| (index, term, other_term)))
                .collect();
            let Some(&(matched, _, _)) = common.iter().rev().find(|(_, a, b)| a == b) else { continue };
            if let Some(&(index, a, b)) = common.iter().find(|&&(index, a, b)| index < matched && a != b) {
                Self::fail(
                    sim,
                    format!(
                        "Log Matching violated: {idx} and {other} agree at index {matched} but differ at {index} \
                         (terms {a} and {b})"
                    ),
                );
            }
        }
    }

    /// S3 over the views delivered in this step.
    fn check_deliveries(&mut self, sim: &Sim) {
        for record in sim.step_events() {
            let Event::Rebalance(view) = &record.event else { continue };
            let Some(node) = sim.node(record.node) else { continue };
            let ids: Vec<MemberId> = view.ids().collect();
            let history = self.clusters.entry(node.cluster_uuid()).or_default();
            match history.delivered.get(&view.epoch) {
                Some(known) if *known != ids => Self::fail(
                    sim,
                    format!(
                        "S3 violated: {} delivered epoch {} as {ids:?}, elsewhere {known:?}",
                        record.node, view.epoch
                    ),
                ),
                Some(_) => {}
                None => {
                    history.delivered.insert(view.epoch, ids);
                }
            }
            let key = (node.id(), record.boot_id);
            if let Some(&last) = self.last_delivered.get(&key)
                && view.epoch <= last
            {
                Self::fail(sim, format!("S3 violated: {} delivered epoch {} after {last}", record.node, view.epoch));
            }
            self.last_delivered.insert(key, view.epoch);
        }
    }

    /// The whole committed prefix of every running member, checked again
    /// from scratch (the per-step check verifies each index once).
    pub fn check_all_committed(&self, sim: &Sim) {
        for idx in sim.nodes() {
            let Some(node) = sim.node(idx) else { continue };
            let Some(history) = self.clusters.get(&node.cluster_uuid()) else { continue };
            for entry in node.log_entries(0).take_while(|entry| entry.index <= node.commit_index()) {
                if let Some(seen) = history.committed.get(&entry.index)
                    && seen.term != entry.term
                {
                    Self::fail(sim, format!("{idx} holds committed index {} of another term", entry.index));
                }
            }
        }
    }

    /// Role changes of `idx` at or after `from`.
    pub fn roles_of(&self, idx: NodeIdx, from: Instant) -> impl Iterator<Item = &RoleChange> {
        self.roles.iter().filter(move |change| change.node == idx && change.at >= from)
    }

    /// The history of the cluster `idx` belongs to.
    pub fn history(&self, uuid: ClusterUuid) -> &ClusterHistory {
        &self.clusters[&uuid]
    }
}

/// Whether `next` follows `previous` by a single-server change: at most one
/// server changes role, and nobody becomes a voter but a learner.
pub fn single_server_change(previous: &Configuration, next: &Configuration) -> Result<(), String> {
    let role = |configuration: &Configuration, id: MemberId| {
        if configuration.is_voter(id) {
            2
        } else if configuration.learners.contains(&id) {
            1
        } else {
            0
        }
    };
    let servers: BTreeSet<MemberId> = previous.members().chain(next.members()).collect();
    let changed: Vec<MemberId> = servers.into_iter().filter(|&id| role(previous, id) != role(next, id)).collect();
    if changed.len() > 1 {
        return Err(format!("{} servers changed at once: {changed:?}", changed.len()));
    }
    if let Some(&id) = changed.first()
        && role(previous, id) == 0
        && role(next, id) == 2
    {
        return Err(format!("{id} became a voter without being a learner first"));
    }
    Ok(())
}
