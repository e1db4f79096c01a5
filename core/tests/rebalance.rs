//! Views, rebalance, ack and `Stable` in the deterministic driver (DESIGN §3.3,
//! invariants S3, S4 and L1 of §5).
//!
//! Every test runs a [`Ledger`] as the driver's step hook: after every step
//! it reads every log of every up node and every event of the step, and
//! panics at once on a breach of S3 (one member set per epoch among committed
//! and delivered views; delivered epochs strictly increase within a boot) or
//! S4 (at most one `Stable(e)` in any log, appended after an own-term entry
//! while `e` was the newest view in that log; `ClusterStable` only on a
//! leader, for its newest view, at most once per term and epoch). The driver
//! is deterministic: a seed that passes always passes.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use core::num::NonZeroU32;
use core::time::Duration;
use quorate_core::raft::Payload;
use quorate_core::rebalance::Message as ViewMessage;
use quorate_core::testing::{Disk, NodeIdx, Sim};
use quorate_core::wire::{self, Body, Channel, Envelope, Header};
use quorate_core::{Bootstrap, Command, Config, Event, Instant, MemberId, Node, Role, View};

const CLUSTER: &str = "views";

fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// The fast profile, bootstrapping with two others.
fn bootstrap_config() -> Config {
    let mut config = Config::fast(CLUSTER);
    config.bootstrap = Bootstrap::Expect(NonZeroU32::new(3).unwrap());
    config
}

/// The fast profile, joining an existing cluster.
fn join_config() -> Config {
    Config::fast(CLUSTER)
}

/// Three members that bootstrap together, joined through the first, with a
/// [`Ledger`] watching every step. Nothing has run yet.
fn bootstrapping(seed: u64) -> (Sim, Vec<NodeIdx>, Rc<RefCell<Ledger>>) {
    let mut sim = Sim::new(seed);
    let ledger = Ledger::install(&mut sim);
    let nodes = sim.add_nodes(3, &bootstrap_config());
    sim.join_all(&nodes, nodes[0]);
    (sim, nodes, ledger)
}

/// A cluster of `size` members (three bootstrap, then the others join through
/// the first), run until one stable view of all of them is settled everywhere.
fn stable_cluster(seed: u64, size: usize) -> (Sim, Vec<NodeIdx>, Rc<RefCell<Ledger>>) {
    let (mut sim, mut nodes, ledger) = bootstrapping(seed);
    // Joiners come after the bootstrap: with more unbootstrapped members in
    // sight than expected, the three refuse to bootstrap (DESIGN §3.2).
    assert!(
        sim.run_until(secs(10), |sim| settled_on(sim, &nodes)),
        "seed {seed}: the three never bootstrapped a stable view: {}",
        settle_report(&sim, &nodes)
    );
    for _ in 3..size {
        let name = NodeIdx(sim.len()).to_string();
        let node = sim.add_node(&name, join_config());
        sim.join(node, &[nodes[0]]);
        nodes.push(node);
    }
    let all = nodes.clone();
    let bound = secs(10) + secs(size as u64);
    assert!(
        sim.run_until(bound, |sim| settled_on(sim, &all)),
        "seed {seed}: no stable view of all {size} members within {bound:?}: {}",
        settle_report(&sim, &all)
    );
    (sim, nodes, ledger)
}

/// The up node leading in the highest term, if any.
fn leader(sim: &Sim) -> Option<NodeIdx> {
    sim.up_nodes().filter(|&idx| sim.node(idx).unwrap().is_leader()).max_by_key(|&idx| sim.node(idx).unwrap().term())
}

fn node(sim: &Sim, idx: NodeIdx) -> &Node {
    sim.node(idx).unwrap_or_else(|| panic!("{idx} is down"))
}

fn ids_of(view: &View) -> Vec<MemberId> {
    view.ids().collect()
}

/// The current durable ids of these slots, sorted like a view's members.
fn member_ids(sim: &Sim, nodes: &[NodeIdx]) -> Vec<MemberId> {
    let mut ids: Vec<MemberId> = nodes.iter().map(|&idx| sim.member_id(idx)).collect();
    ids.sort();
    ids
}

/// L1 for the members `expected`: every running node knows the same leader,
/// holds the same committed view of exactly `expected`, and reports it stable.
fn settled_on(sim: &Sim, expected: &[NodeIdx]) -> bool {
    let running: Vec<NodeIdx> = sim.running_nodes().collect();
    settle_problem(sim, &running, expected).is_none()
}

fn settle_report(sim: &Sim, expected: &[NodeIdx]) -> String {
    let running: Vec<NodeIdx> = sim.running_nodes().collect();
    settle_problem(sim, &running, expected).unwrap_or_else(|| "settled".into())
}

/// L1 within one side of a partition: its running nodes know one leader
/// among them and hold one stable view of exactly the side's members.
fn group_settled(sim: &Sim, group: &[NodeIdx]) -> bool {
    settle_problem(sim, group, group).is_none()
}

fn settle_problem(sim: &Sim, observers: &[NodeIdx], expected: &[NodeIdx]) -> Option<String> {
    let leaders = observers.iter().copied().filter(|&idx| sim.node(idx).is_some_and(Node::is_leader));
    let Some(leader) = leaders.max_by_key(|&idx| node(sim, idx).term()) else {
        return Some("no leader".into());
    };
    let leader_id = sim.member_id(leader);
    let ids = member_ids(sim, expected);
    let reference = node(sim, leader).view().cloned();
    for &idx in observers.iter().filter(|&&idx| sim.is_running(idx)) {
        let node = node(sim, idx);
        if node.leader() != Some(leader_id) {
            return Some(format!("{idx} knows leader {:?}, not {leader}", node.leader()));
        }
        match node.view() {
            Some(view) if view.same_members(&ids) && Some(view) == reference.as_ref() => {}
            view => return Some(format!("{idx} holds view {:?}, not {ids:?}", view.map(|v| (v.epoch, ids_of(v))))),
        }
        if !node.is_stable() {
            return Some(format!("{idx} does not report the view stable"));
        }
    }
    None
}

/// The newest committed epoch on `idx` (0 before any view).
fn epoch_on(sim: &Sim, idx: NodeIdx) -> u64 {
    node(sim, idx).view().map_or(0, |view| view.epoch)
}

// ----- the ledger: S3 and S4 after every step -------------------------------------------------

/// What the ledger saw of one epoch's `View` with one member set.
#[derive(Clone, Debug)]
struct ViewSeen {
    members: Vec<MemberId>,
    /// Where it was first seen, for failure messages.
    first_seen: String,
    /// When it first stood in any log (or was delivered).
    appended: Instant,
    /// When it was first committed on any node.
    committed: Option<Instant>,
    /// Whether any application was handed it.
    delivered: bool,
}

/// How a view was seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sighting {
    /// In a log, committed there or not.
    Log { committed: bool },
    /// Handed to an application.
    Delivered,
}

/// One `ClusterStable` report.
#[derive(Clone, Debug, PartialEq, Eq)]
struct StableReport {
    at: Instant,
    node: NodeIdx,
    term: u64,
    epoch: u64,
}

/// S3 and S4 checked after every step, plus a record of when each `View` and
/// `Stable` was first appended and first committed.
///
/// S3 proper (one member set per epoch among committed and delivered views)
/// panics at once. DESIGN §3.3 item 1 claims more, "no epoch can ever name
/// two member sets": a second member set for an epoch in any log, committed
/// or not, is recorded and asserted on by the tests of item 1
/// ([`Ledger::conflicts`]).
#[derive(Default)]
struct Ledger {
    /// Epoch ⇒ every member set seen under it, the first one first.
    views: BTreeMap<u64, Vec<ViewSeen>>,
    /// Epoch ⇒ (first appended, first committed) of its `Stable`.
    stables: BTreeMap<u64, (Instant, Option<Instant>)>,
    /// (durable id, boot) ⇒ epochs delivered to the application, in order.
    delivered: BTreeMap<(MemberId, u64), Vec<u64>>,
    reports: Vec<StableReport>,
    /// Per node: (boot, last index, last term, commit index) when its log was last read.
    read_at: BTreeMap<NodeIdx, (u64, u64, u64, u64)>,
}

impl Ledger {
    fn install(sim: &mut Sim) -> Rc<RefCell<Ledger>> {
        let ledger = Rc::new(RefCell::new(Ledger::default()));
        let hook = Rc::clone(&ledger);
        sim.set_step_hook(move |sim| hook.borrow_mut().observe(sim));
        ledger
    }

    fn observe(&mut self, sim: &Sim) {
        let seed = sim.seed();
        for idx in sim.up_nodes() {
            let node = node(sim, idx);
            let last = node.log_entries(1).last().map_or((0, 0), |entry| (entry.index, entry.term));
            let fingerprint = (node.boot_id(), last.0, last.1, node.commit_index());
            if self.read_at.insert(idx, fingerprint) == Some(fingerprint) {
                continue;
            }
            self.read_log(sim, idx, node, seed);
        }
        for record in sim.step_events() {
            match &record.event {
                Event::Rebalance(view) => {
                    let at = format!("{} Rebalance", record.node);
                    self.note_view(view.epoch, &ids_of(view), Sighting::Delivered, at, sim.now(), seed);
                    // The events of this step come from the node now in the slot.
                    let member = sim.member_id(record.node);
                    let delivered = self.delivered.entry((member, record.boot_id)).or_default();
                    // S3: within one boot, delivered epochs strictly increase.
                    assert!(
                        delivered.last().is_none_or(|&last| last < view.epoch),
                        "S3 (Sim::new({seed})): {} boot {} was delivered epoch {} after {delivered:?}",
                        record.node,
                        record.boot_id,
                        view.epoch
                    );
                    delivered.push(view.epoch);
                }
                Event::ClusterStable(view) => {
                    let epoch = view.epoch;
                    let reporter = sim.node(record.node).expect("a node that reports is up");
                    // S4: only a leader reports, for its newest view, stable in its log.
                    assert_eq!(
                        reporter.role(),
                        Role::Leader,
                        "S4 (Sim::new({seed})): {} reported ClusterStable({epoch}) as a {:?}",
                        record.node,
                        reporter.role()
                    );
                    assert!(
                        reporter.view().is_some_and(|view| view.epoch == epoch) && reporter.is_stable(),
                        "S4 (Sim::new({seed})): {} reported ClusterStable({epoch}) with view {:?}, stable: {}",
                        record.node,
                        reporter.view().map(|view| view.epoch),
                        reporter.is_stable()
                    );
                    let report = StableReport { at: record.at, node: record.node, term: reporter.term(), epoch };
                    // S4: at most once per term (one leader per term, S1) and epoch.
                    assert!(
                        !self.reports.iter().any(|r| r.term == report.term && r.epoch == report.epoch),
                        "S4 (Sim::new({seed})): ClusterStable({epoch}) reported twice in term {}: {:?} and {report:?}",
                        report.term,
                        self.reports
                    );
                    self.reports.push(report);
                }
                _ => {}
            }
        }
    }

    /// Reads one node's whole log: every `View` is noted; every `Stable`
    /// must be the only one of its epoch in the log, follow an entry of its
    /// own term and name the newest view before it (S4).
    fn read_log(&mut self, sim: &Sim, idx: NodeIdx, node: &Node, seed: u64) {
        let commit = node.commit_index();
        let mut stables_here = BTreeSet::new();
        let mut terms_here = BTreeSet::new();
        let mut newest_view = None;
        for entry in node.log_entries(1) {
            let committed = entry.index <= commit;
            match &entry.payload {
                Payload::View(view) => {
                    let at = format!("{idx}'s log at index {} (term {})", entry.index, entry.term);
                    let sighting = Sighting::Log { committed };
                    self.note_view(view.epoch, &ids_of(view), sighting, at, sim.now(), seed);
                    newest_view = Some(view.epoch);
                }
                Payload::Stable { epoch } => {
                    assert!(
                        stables_here.insert(*epoch),
                        "S4 (Sim::new({seed})): {idx}'s log holds two Stable({epoch}), the second at index {}",
                        entry.index
                    );
                    assert!(
                        terms_here.contains(&entry.term),
                        "S4 (Sim::new({seed})): {idx}'s Stable({epoch}) at index {} is its leader's first entry of \
                         term {}: appended before an own-term commit",
                        entry.index,
                        entry.term
                    );
                    assert!(
                        newest_view.is_none_or(|newest| newest == *epoch),
                        "S4 (Sim::new({seed})): {idx}'s Stable({epoch}) at index {} follows View({newest_view:?})",
                        entry.index
                    );
                    let times = self.stables.entry(*epoch).or_insert((sim.now(), None));
                    if committed {
                        times.1.get_or_insert(sim.now());
                    }
                }
                _ => {}
            }
            terms_here.insert(entry.term);
        }
    }

    /// Notes one sighting of a view. S3: among committed and delivered views,
    /// an epoch names one member set.
    fn note_view(&mut self, epoch: u64, ids: &[MemberId], sighting: Sighting, at: String, now: Instant, seed: u64) {
        let variants = self.views.entry(epoch).or_default();
        let index = variants.iter().position(|seen| seen.members == ids).unwrap_or_else(|| {
            variants.push(ViewSeen {
                members: ids.to_vec(),
                first_seen: at.clone(),
                appended: now,
                committed: None,
                delivered: false,
            });
            variants.len() - 1
        });
        let seen = &mut variants[index];
        match sighting {
            Sighting::Log { committed: true } => _ = seen.committed.get_or_insert(now),
            Sighting::Log { committed: false } => {}
            Sighting::Delivered => seen.delivered = true,
        }
        let agreed: Vec<&ViewSeen> =
            variants.iter().filter(|seen| seen.committed.is_some() || seen.delivered).collect();
        assert!(
            agreed.len() <= 1,
            "S3 (Sim::new({seed})): epoch {epoch} committed or delivered with two member sets: {:?} (first in {}) \
             and {:?} (first in {})",
            agreed[0].members,
            agreed[0].first_seen,
            agreed[1].members,
            agreed[1].first_seen
        );
    }

    /// The view of `epoch`: the committed or delivered one, else the only one seen.
    fn view(&self, epoch: u64) -> &ViewSeen {
        let variants = self.views.get(&epoch).unwrap_or_else(|| panic!("no View({epoch}) was ever seen"));
        variants.iter().find(|seen| seen.committed.is_some() || seen.delivered).unwrap_or_else(|| {
            assert_eq!(variants.len(), 1, "View({epoch}) is uncommitted and ambiguous: {variants:?}");
            &variants[0]
        })
    }

    /// Every epoch that some log named with two member sets, committed or
    /// not, described.
    /// Epochs committed (and so delivered) with more than one member set.
    /// An uncommitted View of a crashed leader may be overwritten by another
    /// of the same epoch, as any uncommitted Raft entry may; it never reaches
    /// an application, which is what S3 protects.
    fn conflicts(&self) -> Vec<String> {
        self.views
            .iter()
            .filter(|(_, variants)| variants.iter().filter(|seen| seen.committed.is_some()).count() > 1)
            .map(|(epoch, variants)| {
                let sightings: Vec<String> = variants
                    .iter()
                    .map(|seen| {
                        let status = if seen.committed.is_some() { "committed" } else { "never committed" };
                        format!("{:?} in {} ({status})", seen.members, seen.first_seen)
                    })
                    .collect();
                format!("epoch {epoch}: {}", sightings.join(" vs "))
            })
            .collect()
    }

    /// The newest epoch any log named.
    fn newest_epoch(&self) -> u64 {
        self.views.keys().last().copied().unwrap_or(0)
    }

    /// Epochs of the `Stable` entries ever seen in any log.
    fn stable_epochs(&self) -> Vec<u64> {
        self.stables.keys().copied().collect()
    }

    /// Epochs delivered to `member` in boot `boot_id`.
    fn delivered(&self, member: MemberId, boot_id: u64) -> &[u64] {
        self.delivered.get(&(member, boot_id)).map_or(&[], Vec::as_slice)
    }

    /// Every epoch some log or delivery named with `id` among the members.
    fn epochs_containing(&self, id: MemberId) -> Vec<u64> {
        let mut epochs: Vec<u64> = self
            .views
            .iter()
            .filter(|(_, variants)| variants.iter().any(|seen| seen.members.contains(&id)))
            .map(|(&epoch, _)| epoch)
            .collect();
        epochs.dedup();
        epochs
    }

    /// Every member set ever seen, with its epoch.
    fn all_views(&self) -> impl Iterator<Item = (u64, &ViewSeen)> {
        self.views.iter().flat_map(|(&epoch, variants)| variants.iter().map(move |seen| (epoch, seen)))
    }
}

/// An ack of `epoch` as `from` would send it in its current boot.
fn ack_bytes(sim: &Sim, from: NodeIdx, epoch: u64) -> Vec<u8> {
    let sender = node(sim, from);
    let header = Header {
        version: wire::PROTOCOL_VERSION,
        cluster_name_hash: quorate_core::id::cluster_name_hash(CLUSTER),
        cluster_uuid: sender.cluster_uuid(),
        from: sender.id(),
        boot_id: sender.boot_id(),
    };
    Envelope { header, body: Body::View(ViewMessage::Ack { epoch }) }.encode(Channel::Stream).unwrap()
}

fn acks_received(sim: &Sim, idx: NodeIdx) -> u64 {
    node(sim, idx).metrics().received.get("view_ack").copied().unwrap_or(0)
}

fn acks_sent(sim: &Sim, idx: NodeIdx) -> u64 {
    node(sim, idx).metrics().sent.get("view_ack").copied().unwrap_or(0)
}

// ----- the tests --------------------------------------------------------------------------------

#[test]
fn stable_is_appended_only_after_every_ack_and_never_while_one_is_missing() {
    // DESIGN §3.3 item 4 (Stable once every member of the newest view acked
    // it) and item 6 (a stuck process never blocks the cluster), S4.
    for seed in 1..=3 {
        let (mut sim, nodes, ledger) = bootstrapping(seed);
        let stuck = nodes[2];
        let stuck_id = sim.member_id(stuck);
        sim.set_ack_delay(stuck, None);
        let config = bootstrap_config().rebalance;

        // View 1 of all three commits; with one ack missing it never becomes
        // stable: the others go on only once the stuck member is lagging and
        // a view without it committed.
        let others = [nodes[0], nodes[1]];
        assert!(
            sim.run_until(secs(15), |sim| settled_on(sim, &others)),
            "seed {seed}: the others never settled without the stuck member: {}",
            settle_report(&sim, &others)
        );
        let epoch = epoch_on(&sim, nodes[0]);
        {
            let ledger = ledger.borrow();
            let first = ledger.view(1);
            assert_eq!(first.members, member_ids(&sim, &nodes), "seed {seed}: view 1 is of all three");
            let first_committed = first.committed.expect("view 1 committed");
            let newest = ledger.view(epoch);
            assert!(!newest.members.contains(&stuck_id), "seed {seed}: the stuck member is out of view {epoch}");
            // It took an ack timeout to give up on the stuck member.
            assert!(
                newest.appended >= first_committed + config.ack_timeout,
                "seed {seed}: view {epoch} without the stuck member appended at {}, view 1 committed at \
                 {first_committed}",
                newest.appended
            );
            // Stable is for the new epoch, after its view committed.
            let (stable_appended, stable_committed) = ledger.stables[&epoch];
            assert!(stable_appended >= newest.committed.unwrap(), "seed {seed}: Stable({epoch}) before its view");
            assert!(stable_committed.is_some(), "seed {seed}: Stable({epoch}) committed");
        }
        let lead = leader(&sim).unwrap();
        assert!(node(&sim, lead).lagging().any(|id| id == stuck_id), "seed {seed}: the leader holds it lagging");
        assert!(!node(&sim, stuck).is_active(), "seed {seed}: the stuck member knows it is out");

        // And it stays that way while the stuck member never acks.
        sim.run_for(secs(10));
        let ledger = ledger.borrow();
        for stable in ledger.stable_epochs() {
            assert!(
                !ledger.view(stable).members.contains(&stuck_id),
                "seed {seed}: Stable({stable}) appended though the stuck member of its view never acked it"
            );
        }
        assert_eq!(ledger.stable_epochs(), vec![epoch], "seed {seed}: one Stable, for the view without it");
        assert_eq!(epoch_on(&sim, nodes[0]), epoch, "seed {seed}: no further view");
    }
}

/// Where the View that the crashed leader appended survives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Uncommitted {
    /// Nowhere: the leader crashed before its disk or anyone got it.
    Lost,
    /// On the crashed leader's disk only (it was cut off, then crashed).
    OnItsDisk,
    /// In a voter's log, not committed anywhere: that voter's log is the
    /// most up to date of the survivors, so it is the one elected.
    OnAVoter,
}

/// A fourth member joins; the leader crashes right after appending the View
/// that adds it; a new leader takes over; the old one comes back with its
/// disk. Returns the ledger's conflicts (epochs named with two member sets
/// in any logs, committed or not).
fn crash_the_leader_right_after_it_appended_a_view(seed: u64, uncommitted: Uncommitted) -> Vec<String> {
    let (mut sim, mut nodes, ledger) = stable_cluster(seed, 3);
    let newcomer = sim.add_node("n3", join_config());
    sim.join(newcomer, &[nodes[0]]);
    nodes.push(newcomer);
    let uncommitted_view = |sim: &Sim, idx: NodeIdx| {
        let node = node(sim, idx);
        node.log_entries(node.commit_index() + 1).find_map(|entry| match &entry.payload {
            Payload::View(view) => Some((entry.index, view.clone())),
            _ => None,
        })
    };
    // Step by step until the leader holds a View beyond its commit index.
    let limit = sim.now() + secs(10);
    let (crashed, (index, appended)) = loop {
        assert!(sim.now() < limit, "seed {seed}: the leader never appended a view for the newcomer");
        assert!(sim.step(), "seed {seed}: nothing left to run");
        if let Some(lead) = leader(&sim)
            && let Some(view) = uncommitted_view(&sim, lead)
        {
            break (lead, view);
        }
    };
    let crashed_id = sim.member_id(crashed);
    let term = node(&sim, crashed).term();
    match uncommitted {
        Uncommitted::Lost => {}
        Uncommitted::OnItsDisk => {
            // Nobody receives the View, but the leader's disk keeps it.
            sim.isolate(crashed);
            sim.run_for(millis(5));
        }
        Uncommitted::OnAVoter => {
            // Until another voter holds it, before the leader counts a majority.
            let holds = |sim: &Sim, idx: NodeIdx| {
                idx != crashed
                    && node(sim, crashed).configuration().is_voter(sim.member_id(idx))
                    && uncommitted_view(sim, idx).is_some_and(|(i, _)| i == index)
            };
            loop {
                assert!(sim.step(), "seed {seed}: nothing left to run");
                assert!(node(&sim, crashed).commit_index() < index, "seed {seed}: committed before a voter held it");
                if nodes.iter().any(|&n| holds(&sim, n)) {
                    break;
                }
            }
        }
    }
    sim.crash(crashed);
    sim.heal();
    let held = nodes.iter().any(|&n| sim.is_up(n) && node(&sim, n).log_entries(index).any(|e| e.index == index));
    assert_eq!(held, uncommitted == Uncommitted::OnAVoter, "seed {seed}: which survivors hold index {index}");
    if uncommitted == Uncommitted::OnItsDisk {
        let stored = sim.storage(crashed).synced().raft.entries.iter().any(|entry| entry.index == index);
        assert!(stored, "seed {seed}: the uncommitted View is on the crashed leader's disk");
    }

    // A new leader takes over, and the survivors settle on a view without it.
    let survivors: Vec<NodeIdx> = nodes.iter().copied().filter(|&n| n != crashed).collect();
    assert!(
        sim.run_until(secs(20), |sim| settled_on(sim, &survivors)),
        "seed {seed}: the survivors never settled: {}",
        settle_report(&sim, &survivors)
    );
    let successor = leader(&sim).unwrap();
    assert!(node(&sim, successor).term() > term, "seed {seed}: a new leader in a later term");
    if uncommitted == Uncommitted::OnAVoter {
        // The new leader held the View: it commits it as it was, not another of its epoch.
        assert_eq!(ledger.borrow().view(appended.epoch).members, ids_of(&appended), "seed {seed}");
    }

    // The crashed leader comes back with its disk and rejoins: everyone settles on one view.
    sim.restart(crashed, Disk::Keep);
    sim.join(crashed, &[successor]);
    assert!(
        sim.run_until(secs(20), |sim| settled_on(sim, &nodes)),
        "seed {seed}: no view of all four after the restart: {}",
        settle_report(&sim, &nodes)
    );
    let ledger = ledger.borrow();
    let epoch = epoch_on(&sim, successor);
    assert!(ledger.view(epoch).members.contains(&crashed_id), "seed {seed}");
    for e in 1..=epoch {
        assert!(ledger.view(e).committed.is_some(), "seed {seed}: View({e}) never committed");
    }
    ledger.conflicts()
}

#[test]
fn no_committed_epoch_ever_names_two_member_sets_when_a_leader_crashes_with_an_uncommitted_view() {
    // DESIGN §3.3 item 1: "at most one uncommitted View exists at a time. So
    // no epoch can ever name two member sets, even across a leader change";
    // S3. The leader crashes before its View reaches its disk or anyone: its
    // entry can be overwritten (any uncommitted Raft entry can), but no epoch
    // is ever committed or delivered with two member sets.
    for seed in 1..=4 {
        let conflicts = crash_the_leader_right_after_it_appended_a_view(seed, Uncommitted::Lost);
        assert!(conflicts.is_empty(), "seed {seed}: an epoch names two member sets: {conflicts:#?}");
    }
}

#[test]
fn no_committed_epoch_ever_names_two_member_sets_when_the_crashed_leader_kept_its_uncommitted_view_on_disk() {
    // DESIGN §3.3 item 1, S3: the stale View is in the old leader's log when
    // it restarts, until the new leader's log overwrites it.
    for seed in 1..=4 {
        let conflicts = crash_the_leader_right_after_it_appended_a_view(seed, Uncommitted::OnItsDisk);
        assert!(conflicts.is_empty(), "seed {seed}: an epoch names two member sets: {conflicts:#?}");
    }
}

#[test]
fn a_new_leader_that_holds_the_uncommitted_view_commits_it_rather_than_another_of_its_epoch() {
    // DESIGN §3.3 item 1: the new leader compares with the latest View in its
    // log, committed or not; S3.
    for seed in 1..=4 {
        let conflicts = crash_the_leader_right_after_it_appended_a_view(seed, Uncommitted::OnAVoter);
        assert!(conflicts.is_empty(), "seed {seed}: an epoch names two member sets: {conflicts:#?}");
    }
}

#[test]
fn a_newer_view_supersedes_an_unfinished_one() {
    // DESIGN §3.3 item 5: acks for older epochs are ignored; the application
    // acts only on the newest view; S3 (delivered epochs increase per boot).
    for seed in 1..=3 {
        let (mut sim, mut nodes, ledger) = stable_cluster(seed, 3);
        let lead = leader(&sim).unwrap();
        let slow = nodes.iter().copied().find(|&n| n != lead).unwrap();
        sim.set_ack_delay(slow, None);

        // Two membership changes in quick succession.
        for round in 0..2 {
            let name = NodeIdx(sim.len()).to_string();
            let newcomer = sim.add_node(&name, join_config());
            sim.join(newcomer, &[nodes[0]]);
            nodes.push(newcomer);
            let epoch = 2 + round;
            assert!(
                sim.run_until(secs(10), |sim| epoch_on(sim, lead) == epoch),
                "seed {seed}: View({epoch}) never committed"
            );
        }
        let (second, third) = {
            let ledger = ledger.borrow();
            (ledger.view(2).committed.unwrap(), ledger.view(3).committed.unwrap())
        };
        let ack_timeout = bootstrap_config().rebalance.ack_timeout;
        assert!(third < second + ack_timeout, "seed {seed}: view 3 came while view 2 was still unfinished");
        assert!(sim.run_until(secs(1), |sim| epoch_on(sim, slow) == 3), "seed {seed}: slow never applied View(3)");
        assert_eq!(node(&sim, slow).view().unwrap().epoch, 3);

        // The slow member's application finishes the superseded view: nothing is sent.
        let sent = acks_sent(&sim, slow);
        sim.command(slow, Command::Ack { epoch: 2 });
        sim.run_for(millis(100));
        assert_eq!(acks_sent(&sim, slow), sent, "seed {seed}: an ack of a superseded epoch was sent");

        // An ack of epoch 2 that reaches the leader now is ignored: no Stable(3) without the ack of 3.
        let received = acks_received(&sim, lead);
        let bytes = ack_bytes(&sim, slow, 2);
        sim.send_raw(slow, sim.addr(lead), Channel::Stream, bytes);
        sim.run_for(secs(1));
        assert!(acks_received(&sim, lead) > received, "seed {seed}: the stale ack reached the leader");
        assert!(sim.now() < third + ack_timeout, "seed {seed}: the slow member is not yet lagging");
        assert_eq!(ledger.borrow().stable_epochs(), vec![1], "seed {seed}: no Stable for 2 or 3 yet");

        // Its ack of the newest epoch completes view 3; no Stable(2) ever.
        sim.command(slow, Command::Ack { epoch: 3 });
        assert!(
            sim.run_until(secs(2), |sim| settled_on(sim, &nodes)),
            "seed {seed}: view 3 never became stable: {}",
            settle_report(&sim, &nodes)
        );
        let ledger = ledger.borrow();
        assert_eq!(ledger.stable_epochs(), vec![1, 3], "seed {seed}: Stable only for the newest view");
        assert_eq!(
            ledger.delivered(sim.member_id(slow), 1),
            [1, 2, 3],
            "seed {seed}: slow acted on each view in order"
        );
    }
}

#[test]
fn across_leader_changes_cluster_stable_is_reported_by_leaders_only_and_at_least_once_per_term() {
    // DESIGN §3.3 item 4: `on_cluster_stable(e)` runs on a leader when its own
    // Stable(e) commits, and on a new leader whose first own-term entry
    // commits while the newest view is stable; once per term; S4.
    for seed in 1..=3 {
        let (mut sim, nodes, ledger) = stable_cluster(seed, 3);
        let first = leader(&sim).unwrap();
        let first_term = node(&sim, first).term();
        let reported = |sim: &Sim, ledger: &Ledger, idx: NodeIdx, epoch: u64| {
            let term = node(sim, idx).term();
            ledger.reports.iter().any(|r| r.node == idx && r.term == term && r.epoch == epoch)
        };
        assert!(reported(&sim, &ledger.borrow(), first, 1), "seed {seed}: the first leader reported view 1");

        // A graceful handover: the new leader finds view 1 stable and reports it.
        sim.command(first, Command::TransferLeadership(None));
        assert!(
            sim.run_until(secs(2), |sim| leader(sim)
                .is_some_and(|l| l != first && reported(sim, &ledger.borrow(), l, 1))),
            "seed {seed}: the new leader did not report view 1 stable; reports: {:?}",
            ledger.borrow().reports
        );
        let second = leader(&sim).unwrap();
        assert!(node(&sim, second).term() > first_term);

        // A crash of that leader: the next one reports view 1 again, then the view without the crashed member.
        sim.crash(second);
        let survivors: Vec<NodeIdx> = nodes.iter().copied().filter(|&n| n != second).collect();
        assert!(
            sim.run_until(secs(15), |sim| settled_on(sim, &survivors)),
            "seed {seed}: the survivors never settled: {}",
            settle_report(&sim, &survivors)
        );
        let third = leader(&sim).unwrap();
        let epoch = epoch_on(&sim, third);
        assert!(epoch >= 2, "seed {seed}");
        assert!(reported(&sim, &ledger.borrow(), third, 1), "seed {seed}: {:?}", ledger.borrow().reports);
        assert!(reported(&sim, &ledger.borrow(), third, epoch), "seed {seed}: {:?}", ledger.borrow().reports);

        // Every term that had a leader had a report: at least once across leader changes.
        let ledger = ledger.borrow();
        let led: BTreeSet<u64> = sim
            .events()
            .iter()
            .filter_map(|r| match r.event {
                Event::LeaderChanged { leader: Some(l), term } if l == sim.member_id(r.node) => Some(term),
                _ => None,
            })
            .collect();
        let reported_terms: BTreeSet<u64> = ledger.reports.iter().map(|r| r.term).collect();
        assert_eq!(led, reported_terms, "seed {seed}: terms led vs terms with a ClusterStable report");
    }
}

#[test]
fn a_minority_partition_commits_no_view_and_reports_unstable_once_it_loses_the_leader() {
    // DESIGN §3.3 (last paragraph): a minority keeps the last view and reports
    // `is_stable() == false` once it loses the leader; the majority commits a
    // view without it; L1 after the heal.
    for seed in 1..=3 {
        let (mut sim, nodes, ledger) = stable_cluster(seed, 5);
        let all_voters = |sim: &Sim| nodes.iter().all(|&n| node(sim, n).configuration().voters.len() == 5);
        assert!(sim.run_until(secs(10), all_voters), "seed {seed}: not all five became voters");
        assert!(sim.run_until(secs(5), |sim| settled_on(sim, &nodes)), "seed {seed}");
        let lead = leader(&sim).unwrap();
        let minority: Vec<NodeIdx> =
            [lead].into_iter().chain(nodes.iter().copied().filter(|&n| n != lead).take(1)).collect();
        let majority: Vec<NodeIdx> = nodes.iter().copied().filter(|n| !minority.contains(n)).collect();
        let epoch = epoch_on(&sim, lead);
        let commit = nodes.iter().map(|&n| node(&sim, n).commit_index()).max().unwrap();

        sim.partition(&[&minority, &majority]);
        let mut lost_leader = BTreeSet::new();
        let mut watch = |sim: &Sim| {
            for &m in &minority {
                let n = node(sim, m);
                assert!(
                    n.commit_index() <= commit,
                    "seed {seed}: {m} committed index {} on the minority side",
                    n.commit_index()
                );
                assert_eq!(epoch_on(sim, m), epoch, "seed {seed}: {m} left the last view");
                if n.leader().is_none() {
                    lost_leader.insert(m);
                }
                if lost_leader.contains(&m) {
                    assert!(!n.is_stable(), "seed {seed}: {m} lost its leader but reports stable");
                }
            }
        };
        assert!(
            sim.run_until(secs(15), |sim| {
                watch(sim);
                group_settled(sim, &majority)
            }),
            "seed {seed}: the majority never settled without the minority"
        );
        let majority_epoch = epoch_on(&sim, majority[0]);
        assert!(majority_epoch > epoch, "seed {seed}");
        sim.run_until(secs(2), |sim| {
            watch(sim);
            false
        });
        assert_eq!(lost_leader.len(), minority.len(), "seed {seed}: every minority member lost the leader");
        for &m in &minority {
            assert!(!node(&sim, m).is_stable(), "seed {seed}: {m}");
            assert_eq!(epoch_on(&sim, m), epoch, "seed {seed}: {m} keeps the last view");
        }
        {
            let ledger = ledger.borrow();
            let view = ledger.view(majority_epoch);
            assert_eq!(view.members, member_ids(&sim, &majority), "seed {seed}");
            assert!(ledger.stables.get(&majority_epoch).is_some_and(|s| s.1.is_some()), "seed {seed}");
        }

        // Healed, everyone settles on one view of all five.
        sim.heal();
        assert!(
            sim.run_until(secs(20), |sim| settled_on(sim, &nodes)),
            "seed {seed}: no view of all five after the heal: {}",
            settle_report(&sim, &nodes)
        );
    }
}

#[test]
fn a_stuck_member_becomes_lagging_stops_being_active_and_returns_only_after_the_hysteresis() {
    // DESIGN §3.3 item 6: lagging after `ack_timeout`, out of the next view,
    // `is_active() == false`; back once it acked the newest epoch and stayed
    // healthy for `lagging_hysteresis`.
    for seed in 1..=3 {
        let (mut sim, mut nodes, ledger) = stable_cluster(seed, 3);
        let config = bootstrap_config().rebalance;
        let lead = leader(&sim).unwrap();
        let stuck = nodes.iter().copied().find(|&n| n != lead).unwrap();
        let stuck_id = sim.member_id(stuck);
        sim.set_ack_delay(stuck, None);
        let newcomer = sim.add_node("n3", join_config());
        sim.join(newcomer, &[nodes[0]]);
        nodes.push(newcomer);
        assert!(sim.run_until(secs(10), |sim| epoch_on(sim, lead) == 2), "seed {seed}: no View(2)");
        assert!(ledger.borrow().view(2).members.contains(&stuck_id), "seed {seed}");

        // Lagging, left out, inactive.
        let rest: Vec<NodeIdx> = nodes.iter().copied().filter(|&n| n != stuck).collect();
        assert!(
            sim.run_until(secs(15), |sim| settled_on(sim, &rest) && !node(sim, stuck).is_active()),
            "seed {seed}: never settled without the stuck member: {}",
            settle_report(&sim, &rest)
        );
        assert!(node(&sim, leader(&sim).unwrap()).lagging().any(|id| id == stuck_id), "seed {seed}");
        let out = epoch_on(&sim, stuck);
        {
            let ledger = ledger.borrow();
            let appended = ledger.view(out).appended;
            assert!(appended >= ledger.view(2).committed.unwrap() + config.ack_timeout, "seed {seed}");
            assert_eq!(ledger.delivered(stuck_id, 1).last(), Some(&out), "seed {seed}: it was told");
        }
        assert!(node(&sim, stuck).primaries().all(|id| id != stuck_id), "seed {seed}");

        // Its application recovers and acks the newest epoch it delivered.
        sim.set_ack_delay(stuck, Some(millis(10)));
        sim.command(stuck, Command::Ack { epoch: out });
        let acked_at = sim.now();
        sim.run_for(config.lagging_hysteresis - millis(50));
        assert_eq!(ledger.borrow().epochs_containing(stuck_id), vec![1, 2], "seed {seed}: back before the hysteresis");
        assert!(!node(&sim, stuck).is_active(), "seed {seed}");

        let bound = millis(50) + config.view_debounce + secs(2);
        assert!(
            sim.run_until(bound, |sim| settled_on(sim, &nodes)),
            "seed {seed}: not back within {bound:?} after the hysteresis: {}",
            settle_report(&sim, &nodes)
        );
        assert!(node(&sim, stuck).is_active(), "seed {seed}");
        let back = epoch_on(&sim, stuck);
        assert!(ledger.borrow().view(back).appended >= acked_at + config.lagging_hysteresis, "seed {seed}");
    }
}

fn quick_restart_causes_no_new_view(seed: u64, restart_the_leader: bool) {
    let (mut sim, nodes, ledger) = stable_cluster(seed, 3);
    let config = bootstrap_config().rebalance;
    // The cluster has been running for a while.
    sim.run_for(config.ack_timeout + secs(1));
    let lead = leader(&sim).unwrap();
    let restarted = if restart_the_leader { lead } else { nodes.iter().copied().find(|&n| n != lead).unwrap() };
    let seed_node = nodes.iter().copied().find(|&n| n != restarted).unwrap();
    let epoch = epoch_on(&sim, lead);
    let old_boot = node(&sim, restarted).boot_id();
    // Acks received by the members that stay up (the restarted one's counters restart).
    let others: Vec<NodeIdx> = nodes.iter().copied().filter(|&n| n != restarted).collect();
    let acks = others.iter().map(|&n| acks_received(&sim, n)).sum::<u64>();

    sim.restart(restarted, Disk::Keep);
    sim.join(restarted, &[seed_node]);
    let new_boot = node(&sim, restarted).boot_id();
    assert!(new_boot > old_boot);

    sim.run_for(config.view_debounce + config.ack_timeout + secs(2));
    let ledger = ledger.borrow();
    assert_eq!(ledger.newest_epoch(), epoch, "seed {seed}: a View was appended after a quick restart");
    assert_eq!(
        ledger.delivered(sim.member_id(restarted), new_boot),
        [epoch],
        "seed {seed}: the new boot received the view again"
    );
    let acks_now = others.iter().map(|&n| acks_received(&sim, n)).sum::<u64>();
    // It acked again: to another leader, or recorded in its own table if it won
    // the election that its restart caused.
    let leads_again = leader(&sim) == Some(restarted);
    assert!(acks_now > acks || leads_again, "seed {seed}: the restarted member acked again");
    assert!(settled_on(&sim, &nodes), "seed {seed}: {}", settle_report(&sim, &nodes));
    let lead = leader(&sim).unwrap();
    assert_eq!(node(&sim, lead).lagging().count(), 0, "seed {seed}: nobody is lagging");
}

#[test]
fn a_quick_restart_with_its_data_dir_causes_no_new_view() {
    // DESIGN §3.3 item 8 (keeps its place) and item 3 (a restarted process
    // receives the current view again and acks it again).
    for seed in 1..=3 {
        quick_restart_causes_no_new_view(seed, false);
    }
}

#[test]
fn a_quick_restart_of_the_leader_with_its_data_dir_causes_no_new_view() {
    // DESIGN §3.3 item 8, for the member that leads.
    for seed in 1..=3 {
        quick_restart_causes_no_new_view(seed, true);
    }
}

#[test]
fn a_restart_with_a_lost_disk_makes_a_view_with_the_new_id_and_without_the_old() {
    // DESIGN §3.3 item 1 with §3.1: a new durable id under a known name
    // supersedes the old one at once.
    for seed in 1..=3 {
        let (mut sim, nodes, ledger) = stable_cluster(seed, 3);
        let lead = leader(&sim).unwrap();
        let wiped = nodes.iter().copied().find(|&n| n != lead).unwrap();
        let old_id = sim.member_id(wiped);
        let epoch = epoch_on(&sim, lead);
        sim.restart(wiped, Disk::Lost);
        sim.join(wiped, &[lead]);
        let new_id = sim.member_id(wiped);
        assert_ne!(old_id, new_id);
        assert!(
            sim.run_until(secs(20), |sim| settled_on(sim, &nodes)),
            "seed {seed}: no stable view with the new id: {}",
            settle_report(&sim, &nodes)
        );
        let view = node(&sim, lead).view().unwrap().clone();
        assert!(view.epoch > epoch, "seed {seed}");
        assert!(view.contains(new_id) && !view.contains(old_id), "seed {seed}: {view:?}");
        for (e, seen) in ledger.borrow().all_views() {
            assert!(
                !(seen.members.contains(&old_id) && seen.members.contains(&new_id)),
                "seed {seed}: View({e}) holds both the old and the new id"
            );
        }
    }
}

#[test]
fn every_member_of_a_stable_view_is_active_and_agrees_on_primaries_and_owners() {
    // DESIGN §3.3 item 2: the committed view offers rendezvous placement,
    // the same on every member.
    for seed in 1..=3 {
        let (sim, nodes, _ledger) = stable_cluster(seed, 5);
        let view = node(&sim, leader(&sim).unwrap()).view().unwrap().clone();
        let ids = ids_of(&view);
        assert_eq!(ids, member_ids(&sim, &nodes));
        let mut owners_seen = BTreeSet::new();
        for key in (0..200).map(|k| format!("key-{k}")) {
            let owner = view.owner(key.as_bytes()).unwrap();
            owners_seen.insert(owner);
            for &n in &nodes {
                let member = node(&sim, n);
                assert_eq!(member.view().unwrap().owner(key.as_bytes()), Some(owner), "seed {seed}: {n} on {key}");
                assert_eq!(member.view().unwrap().owners(key.as_bytes(), 3), view.owners(key.as_bytes(), 3));
            }
        }
        assert_eq!(owners_seen.len(), nodes.len(), "seed {seed}: 200 keys reach every member");
        for &n in &nodes {
            let member = node(&sim, n);
            assert!(member.is_active(), "seed {seed}: {n}");
            assert!(member.is_stable(), "seed {seed}: {n}");
            assert_eq!(member.primaries().collect::<Vec<_>>(), ids, "seed {seed}: {n}");
        }
    }
}

#[test]
fn a_leader_change_in_a_stable_cluster_marks_no_member_lagging() {
    // DESIGN §3.3 items 3 and 6: acks are re-sent after a leader change; a
    // member that acked is never lagging, so the next view keeps everyone.
    for seed in 1..=3 {
        let (mut sim, mut nodes, ledger) = stable_cluster(seed, 3);
        let config = bootstrap_config().rebalance;
        let first = leader(&sim).unwrap();
        sim.command(first, Command::TransferLeadership(None));
        assert!(sim.run_until(secs(2), |sim| leader(sim).is_some_and(|l| l != first)), "seed {seed}");
        sim.run_for(config.ack_timeout + secs(1));
        let second = leader(&sim).unwrap();
        let lagging: Vec<MemberId> = node(&sim, second).lagging().collect();
        assert!(lagging.is_empty(), "seed {seed}: the new leader holds {lagging:?} lagging; all acked view 1");

        let newcomer = sim.add_node("n3", join_config());
        sim.join(newcomer, &[nodes[0]]);
        nodes.push(newcomer);
        assert!(sim.run_until(secs(10), |sim| settled_on(sim, &nodes)), "seed {seed}: {}", settle_report(&sim, &nodes));
        let ledger = ledger.borrow();
        for (e, seen) in ledger.all_views() {
            assert!(
                seen.members.len() >= 3,
                "seed {seed}: View({e}) dropped members who all acked: {:?}",
                seen.members
            );
        }
    }
}

#[test]
fn a_learner_cut_off_from_the_leader_stops_reporting_stable() {
    // DESIGN §3.3 (last paragraph): a minority's members report
    // `is_stable() == false` once they lose the leader — a learner in it too.
    for seed in 1..=3 {
        let (mut sim, nodes, _ledger) = stable_cluster(seed, 6);
        let shaped = |sim: &Sim| {
            let configuration = node(sim, leader(sim).unwrap()).configuration();
            configuration.voters.len() == 5 && configuration.learners.len() == 1
        };
        assert!(sim.run_until(secs(10), shaped), "seed {seed}: never five voters and a learner");
        let lead = leader(&sim).unwrap();
        let learner_id = *node(&sim, lead).configuration().learners.first().unwrap();
        let learner = sim.node_of(learner_id).unwrap();
        assert!(node(&sim, learner).is_stable(), "seed {seed}");

        sim.partition(&[&[learner]]);
        let rest: Vec<NodeIdx> = nodes.iter().copied().filter(|&n| n != learner).collect();
        assert!(
            sim.run_until(secs(15), |sim| group_settled(sim, &rest)),
            "seed {seed}: the others never settled without the learner"
        );
        // Far longer than any election timeout: a voter would have dropped the leader long ago.
        sim.run_for(secs(3));
        let learner_node = node(&sim, learner);
        assert!(
            !learner_node.is_stable(),
            "seed {seed}: the cut-off learner still reports stable (leader {:?}, view {:?}) at {}",
            learner_node.leader(),
            learner_node.view().map(|view| view.epoch),
            sim.now()
        );
    }
}

#[test]
fn a_lagging_member_stays_out_of_the_views_across_a_leader_change() {
    // DESIGN §3.3 item 6: a lagging member returns only once it acked the
    // newest epoch and stayed healthy for `lagging_hysteresis`, whoever leads.
    for seed in 1..=3 {
        let (mut sim, mut nodes, ledger) = stable_cluster(seed, 4);
        let lead = leader(&sim).unwrap();
        let stuck = nodes.iter().copied().find(|&n| n != lead).unwrap();
        let stuck_id = sim.member_id(stuck);
        sim.set_ack_delay(stuck, None);
        let newcomer = sim.add_node("n4", join_config());
        sim.join(newcomer, &[nodes[0]]);
        nodes.push(newcomer);
        let rest: Vec<NodeIdx> = nodes.iter().copied().filter(|&n| n != stuck).collect();
        assert!(
            sim.run_until(secs(15), |sim| settled_on(sim, &rest)),
            "seed {seed}: never settled without the stuck member: {}",
            settle_report(&sim, &rest)
        );
        let out = epoch_on(&sim, lead);

        // Leadership moves to a member other than the stuck one; the stuck member never acks.
        let target = rest.iter().copied().find(|&n| n != leader(&sim).unwrap()).unwrap();
        let from = leader(&sim).unwrap();
        sim.command(from, Command::TransferLeadership(Some(sim.member_id(target))));
        assert!(sim.run_until(secs(2), |sim| leader(sim) == Some(target)), "seed {seed}: no handover");
        sim.run_for(secs(10));
        let back: Vec<u64> = ledger.borrow().epochs_containing(stuck_id).into_iter().filter(|&e| e > out).collect();
        assert!(back.is_empty(), "seed {seed}: the stuck member, which never acked, was back in views {back:?}");
    }
}
