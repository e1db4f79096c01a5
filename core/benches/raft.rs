//! Raft experiments in virtual time (DESIGN §3.2–3.3), run in the
//! deterministic driver [`quorate_core::testing::Sim`]:
//!
//! - `figure16`: the Raft paper's Figure 16 (Ongaro & Ousterhout 2014, §9.3,
//!   top graph): five members, a broadcast time of about 15 ms, the leader
//!   crashed at a uniformly random moment within its heartbeat interval (half
//!   the shortest election timeout), for election timeouts 150–150 …
//!   150–300 ms; the time until a new leader is elected, and until every
//!   survivor knows it.
//! - `failover_lan`: `Config::lan` on the driver's default network: leader
//!   crash → new leader known to all; leader crash → `ClusterStable` for a view
//!   without it; a member joins → `ClusterStable` for a view with it.
//! - `throughput`: committed entries per second through the core, three
//!   members. `Node` takes no client entries yet (no `Command::Apply`), so it
//!   measures what can be driven from outside: one `Noop` per leadership
//!   transfer (serial commits), and a new learner catching up on that log
//!   (batched replication).
//!
//! Times are virtual and a function of the seeds, not of the machine; wall
//! times only say what a run cost. Jobs run on `QUORATE_BENCH_THREADS` threads
//! (default: all cores). Every run checks S1 (one leader per term) at every
//! step.
//!
//! ```text
//! cargo bench -p quorate-core --bench raft                    # everything, ~2 s on 2 cores (after the build)
//! cargo bench -p quorate-core --bench raft -- figure16        # experiments whose name contains "figure16"
//! QUORATE_BENCH_FULL=1 cargo bench -p quorate-core --bench raft   # 1,000 crashes per timeout range, ~7 s
//! cargo bench -p quorate-core --bench raft -- --list
//! ```
//!
//! Without `--bench` (as under `cargo test --benches`) a small smoke version
//! runs, so the file is exercised without the cost.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use core::num::NonZeroU32;
use core::time::Duration;
use quorate_core::testing::{Disk, NetConfig, NodeIdx, OneLeaderPerTerm, Sim};
use quorate_core::{Bootstrap, Config, Event, Instant, MemberId, Role};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const MILLISECOND: Duration = Duration::from_millis(1);

/// Longest one crash may go without a leader known to all survivors before
/// the trial counts as "none within the cap".
const ELECTION_CAP: Duration = Duration::from_secs(60);

/// Longest a cluster may take to form, or a view change to become stable.
const SETTLE_CAP: Duration = Duration::from_secs(120);

// ----- the plan ---------------------------------------------------------------------------------

/// What one invocation runs.
struct Plan {
    /// Leader crashes per election-timeout range of Figure 16.
    figure16_crashes: u64,
    /// Crashes per simulated cluster (each cluster is one job).
    figure16_per_cluster: u64,
    /// Runs (fresh clusters) per size of the `lan` failover experiment.
    failover_runs: u64,
    /// Entries committed per throughput run.
    commands: u64,
}

impl Plan {
    fn default_run() -> Plan {
        Plan { figure16_crashes: 300, figure16_per_cluster: 50, failover_runs: 200, commands: 200_000 }
    }

    fn full_run() -> Plan {
        Plan { figure16_crashes: 1_000, figure16_per_cluster: 100, failover_runs: 1_000, commands: 1_000_000 }
    }

    /// Small enough for a debug build: proves the file runs, measures nothing.
    fn smoke_run() -> Plan {
        Plan { figure16_crashes: 4, figure16_per_cluster: 2, failover_runs: 2, commands: 500 }
    }
}

const EXPERIMENTS: [&str; 3] = ["figure16", "failover_lan", "throughput"];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|arg| arg == "--list") {
        for name in EXPERIMENTS {
            println!("{name}: benchmark");
        }
        return;
    }
    let benching = args.iter().any(|arg| arg == "--bench");
    let full = std::env::var("QUORATE_BENCH_FULL").is_ok_and(|value| value == "1");
    let filter = args.iter().find(|arg| !arg.starts_with('-')).cloned();
    let plan = match (benching, full) {
        (false, _) => Plan::smoke_run(),
        (true, false) => Plan::default_run(),
        (true, true) => Plan::full_run(),
    };
    let selected = |name: &str| filter.as_deref().is_none_or(|filter| name.contains(filter));
    println!(
        "quorate raft experiments: {} mode, {} threads, debug assertions {}",
        if !benching {
            "smoke (no --bench)"
        } else if full {
            "full"
        } else {
            "default"
        },
        threads(),
        if cfg!(debug_assertions) { "on" } else { "off" },
    );
    if !EXPERIMENTS.iter().any(|name| selected(name)) {
        println!("no experiment matches {filter:?}; try --list");
        return;
    }
    let started = wall_clock();
    if selected("figure16") {
        figure16_table(&plan);
    }
    if selected("failover_lan") {
        failover_table(&plan);
    }
    if selected("throughput") {
        throughput_table(&plan);
    }
    println!("\ntotal wall time {:.1} s", seconds(wall_elapsed(started)));
}

// ----- shared -----------------------------------------------------------------------------------

/// What the step hook saw: every `LeaderChanged` and `ClusterStable`, and S1.
#[derive(Default)]
struct Seen {
    /// `(at, reporter, leader, term)`.
    leader_changes: Vec<(Instant, NodeIdx, Option<MemberId>, u64)>,
    /// `(at, reporter, epoch)`.
    cluster_stable: Vec<(Instant, NodeIdx, u64)>,
    s1: OneLeaderPerTerm,
}

fn watch(sim: &mut Sim) -> Rc<RefCell<Seen>> {
    let seen = Rc::new(RefCell::new(Seen::default()));
    let hook = Rc::clone(&seen);
    sim.set_step_hook(move |sim| {
        let mut seen = hook.borrow_mut();
        seen.s1.check(sim);
        for record in sim.step_events() {
            match &record.event {
                Event::LeaderChanged { leader, term } => {
                    seen.leader_changes.push((record.at, record.node, *leader, *term))
                }
                Event::ClusterStable(view) => seen.cluster_stable.push((record.at, record.node, view.epoch)),
                _ => {}
            }
        }
    });
    seen
}

/// The leader every node of `nodes` knows, if they all know the same one
/// and it leads (and is one of them).
fn agreed_leader(sim: &Sim, nodes: &[NodeIdx]) -> Option<(NodeIdx, u64)> {
    let first = sim.node(*nodes.first()?)?.leader()?;
    if !nodes.iter().all(|&idx| sim.node(idx).is_some_and(|node| node.leader() == Some(first))) {
        return None;
    }
    let idx = sim.node_of(first).filter(|idx| nodes.contains(idx))?;
    let node = sim.node(idx)?;
    (node.role() == Role::Leader).then(|| (idx, node.term()))
}

/// `size` members with `config`, all `bootstrap_expect = size`, joined
/// through the first; runs until one view of all of them is stable.
fn form(seed: u64, size: usize, config: &Config, net: NetConfig) -> (Sim, Vec<NodeIdx>, Rc<RefCell<Seen>>) {
    let mut sim = Sim::new(seed);
    sim.set_check_invariants(false);
    sim.set_record_events(false);
    *sim.net_mut() = net;
    let mut config = config.clone();
    config.bootstrap = Bootstrap::Expect(NonZeroU32::new(size as u32).expect("at least one member"));
    let nodes = sim.add_nodes(size, &config);
    let seen = watch(&mut sim);
    sim.join_all(&nodes, nodes[0]);
    let formed = sim.run_until_every(SETTLE_CAP, 10 * MILLISECOND, |sim| stable_view_of(sim, &nodes));
    assert!(formed, "seed {seed}: {size} members did not form a stable cluster within {SETTLE_CAP:?}");
    (sim, nodes, seen)
}

/// Whether every node of `nodes` knows one leader and holds one stable view of exactly `nodes`.
fn stable_view_of(sim: &Sim, nodes: &[NodeIdx]) -> bool {
    let Some((leader, _)) = agreed_leader(sim, nodes) else { return false };
    let mut ids: Vec<MemberId> = nodes.iter().map(|&idx| sim.member_id(idx)).collect();
    ids.sort();
    let view = sim.node(leader).and_then(|node| node.view()).map(|view| (view.epoch, view.ids().collect::<Vec<_>>()));
    view.as_ref().is_some_and(|(_, members)| *members == ids)
        && nodes.iter().all(|&idx| {
            let node = sim.node(idx).expect("up");
            node.is_stable() && node.view().map(|v| v.epoch) == view.as_ref().map(|(epoch, _)| *epoch)
        })
}

/// One leader crash: how long until a new leader was elected, and until
/// every survivor knew it (`None`: not within the cap).
#[derive(Clone, Copy, Debug)]
struct Failover {
    elected: Option<Duration>,
    known: Option<Duration>,
    /// Terms the election took (the new leader's term minus the crashed one's).
    terms: u64,
}

/// Crashes the leader of `nodes` after a uniformly random wait within
/// `jitter`, and runs until the survivors agree on a new leader. Returns the
/// crashed slot, when it crashed, and the measurement.
fn crash_leader(
    sim: &mut Sim,
    nodes: &[NodeIdx],
    seen: &Rc<RefCell<Seen>>,
    rng: &mut ChaCha8Rng,
    jitter: Duration,
) -> (NodeIdx, Instant, Failover) {
    let wait = Duration::from_nanos(rng.random_range(0..u64::try_from(jitter.as_nanos()).unwrap_or(1).max(1)));
    sim.run_for(wait);
    let (victim, old_term) = agreed_leader(sim, nodes).expect("a leader before the crash");
    let survivors: Vec<NodeIdx> = nodes.iter().copied().filter(|&idx| idx != victim).collect();
    let crashed_at = sim.now();
    let first_change = seen.borrow().leader_changes.len();
    sim.crash(victim);
    let agreed = sim.run_until(ELECTION_CAP, |sim| agreed_leader(sim, &survivors).is_some_and(|(_, t)| t > old_term));
    if !agreed {
        return (victim, crashed_at, Failover { elected: None, known: None, terms: 0 });
    }
    let (leader, new_term) = agreed_leader(sim, &survivors).expect("agreed");
    let leader_id = sim.member_id(leader);
    let seen = seen.borrow();
    let changes = &seen.leader_changes[first_change..];
    // Elected: the winner reported itself leader (for the last time, in case
    // it won an earlier term and lost it before anyone heard).
    let elected = changes
        .iter()
        .rev()
        .find(|(_, node, who, term)| *node == leader && *who == Some(leader_id) && *term > old_term)
        .map(|(at, ..)| *at);
    // Known: the last survivor to hear of it.
    let known = survivors
        .iter()
        .filter_map(|&idx| {
            changes.iter().rev().find(|(_, node, who, _)| *node == idx && *who == Some(leader_id)).map(|(at, ..)| *at)
        })
        .max();
    let since = |at: Option<Instant>| at.map(|at| at.saturating_duration_since(crashed_at));
    (victim, crashed_at, Failover { elected: since(elected), known: since(known), terms: new_term - old_term })
}

/// Restarts `victim` with its disk, rejoins it, and runs until all of
/// `nodes` know one leader again and `victim` holds the leader's commit.
fn bring_back(sim: &mut Sim, nodes: &[NodeIdx], victim: NodeIdx) {
    sim.restart(victim, Disk::Keep);
    let seeds: Vec<NodeIdx> = nodes.iter().copied().filter(|&idx| idx != victim).collect();
    sim.join(victim, &seeds);
    let caught_up = |sim: &Sim| {
        agreed_leader(sim, nodes).is_some_and(|(leader, _)| {
            let commit = sim.node(leader).expect("up").commit_index();
            sim.node(victim).is_some_and(|node| node.commit_index() >= commit)
        })
    };
    let back = sim.run_until(SETTLE_CAP, caught_up);
    assert!(back, "{victim} did not rejoin within {SETTLE_CAP:?} (replay: Sim::new({}))", sim.seed());
}

// ----- Figure 16 --------------------------------------------------------------------------------

/// The paper's numbers for the top graph of Figure 16, as its text states them.
fn paper(min_ms: u64, max_ms: u64) -> &'static str {
    match (min_ms, max_ms) {
        (150, 150) => ">10 s (always)",
        (150, 155) => "median 287 ms",
        (150, 200) => "max 513 ms",
        _ => "(graph only)",
    }
}

/// Figure 16's network: a broadcast (request and reply) of about 15 ms with
/// jitter: one-way latency uniform in 5–10 ms, so a round trip is 10–20 ms.
fn figure16_net() -> NetConfig {
    NetConfig { latency_min: 5 * MILLISECOND, latency_max: 10 * MILLISECOND, ..NetConfig::default() }
}

fn figure16_config(min_ms: u64, max_ms: u64) -> Config {
    let mut config = Config::lan("figure16");
    config.raft.election_timeout = Duration::from_millis(min_ms);
    config.raft.election_timeout_max = Duration::from_millis(max_ms);
    // "The leader was crashed uniformly randomly within its heartbeat
    // interval, which was half of the minimum election timeout."
    config.raft.heartbeat_interval = Duration::from_millis(min_ms / 2);
    config
}

fn figure16_cluster(seed: u64, min_ms: u64, max_ms: u64, crashes: u64) -> Vec<Failover> {
    let config = figure16_config(min_ms, max_ms);
    let (mut sim, nodes, seen) = form(seed, 5, &config, figure16_net());
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xf16);
    let mut results = Vec::new();
    for _ in 0..crashes {
        let (victim, _, failover) = crash_leader(&mut sim, &nodes, &seen, &mut rng, config.raft.heartbeat_interval);
        results.push(failover);
        if failover.known.is_none() {
            break; // no leader within the cap: this cluster measures nothing more
        }
        bring_back(&mut sim, &nodes, victim);
        // Let every follower hear a few heartbeats from the leader again.
        sim.run_for(config.raft.election_timeout_max);
    }
    results
}

fn figure16_table(plan: &Plan) {
    let ranges: [(u64, u64); 6] = [(150, 150), (150, 151), (150, 155), (150, 175), (150, 200), (150, 300)];
    let net = figure16_net();
    println!(
        "\n## Figure 16 (Raft paper §9.3, top graph): time without a leader after a leader crash\n\
         5 members, Config::lan with election timeouts drawn uniformly from [min, max] \
         (RaftConfig::election_timeout and election_timeout_max), heartbeat = min / 2, the leader crashed \
         uniformly within a heartbeat interval; one-way latency {:?}-{:?} (a round trip of 10-20 ms, ~15 ms \
         broadcast), fsync {:?}. PreVote and CheckQuorum on (our default; the paper had neither), so every \
         election costs one extra round trip. {} crashes per range ({} per cluster, the crashed leader restarted \
         with its disk between crashes); cap {:?} per crash. Times in ms: median / p99 / max.\n",
        net.latency_min,
        net.latency_max,
        quorate_core::testing::DiskConfig::default().fsync_delay,
        plan.figure16_crashes,
        plan.figure16_per_cluster,
        ELECTION_CAP,
    );
    let clusters = plan.figure16_crashes.div_ceil(plan.figure16_per_cluster);
    let jobs: Vec<(u64, u64, u64, u64)> = ranges
        .iter()
        .flat_map(|&(min, max)| {
            (0..clusters).map(move |cluster| {
                let crashes =
                    plan.figure16_per_cluster.min(plan.figure16_crashes - cluster * plan.figure16_per_cluster);
                (min, max, 1_000 * max + cluster, crashes)
            })
        })
        .collect();
    let started = wall_clock();
    let results = parallel(jobs.clone(), |(min, max, seed, crashes)| figure16_cluster(seed, min, max, crashes));
    let mut by_range: BTreeMap<(u64, u64), Vec<Failover>> = BTreeMap::new();
    for ((min, max, ..), failovers) in jobs.iter().zip(results) {
        by_range.entry((*min, *max)).or_default().extend(failovers);
    }
    println!(
        "{:>10} {:>8} {:>24} {:>24} {:>14} {:>9} {:>16}",
        "timeout", "crashes", "elected (ms)", "known to all (ms)", "terms med/max", "over cap", "paper"
    );
    for (min, max) in ranges {
        let failovers = &by_range[&(min, max)];
        let elected: Vec<f64> = failovers.iter().filter_map(|f| f.elected).map(millis).collect();
        let known: Vec<f64> = failovers.iter().filter_map(|f| f.known).map(millis).collect();
        let over = failovers.iter().filter(|f| f.known.is_none()).count();
        let terms: Vec<f64> = failovers.iter().filter(|f| f.known.is_some()).map(|f| f.terms as f64).collect();
        println!(
            "{:>10} {:>8} {:>24} {:>24} {:>14} {:>9} {:>16}",
            format!("{min}-{max}"),
            failovers.len(),
            triple(&elected),
            triple(&known),
            format!("{} / {}", median(&terms), terms.iter().copied().fold(0.0, f64::max)),
            over,
            paper(min, max)
        );
    }
    println!("(wall {:.1} s)", seconds(wall_elapsed(started)));
}

// ----- failover and views on the lan profile ----------------------------------------------------

struct LanRun {
    /// Leader crash → new leader known to all survivors.
    failover: Failover,
    /// Leader crash → `ClusterStable` for a view without the crashed leader.
    crash_stable: Option<Duration>,
    /// A new member joins → `ClusterStable` for a view with it.
    join_stable: Option<Duration>,
}

/// Runs until a leader reports `ClusterStable` for an epoch whose view (on
/// that leader) satisfies `wanted`; returns when, after `since`.
fn until_cluster_stable(
    sim: &mut Sim,
    seen: &Rc<RefCell<Seen>>,
    since: Instant,
    wanted: impl Fn(&[MemberId]) -> bool,
) -> Option<Duration> {
    let first = seen.borrow().cluster_stable.len();
    let hit = |sim: &Sim| {
        seen.borrow().cluster_stable[first..]
            .iter()
            .find(|(_, node, epoch)| {
                sim.node(*node)
                    .and_then(|node| node.view())
                    .is_some_and(|view| view.epoch == *epoch && wanted(&view.ids().collect::<Vec<_>>()))
            })
            .map(|(at, ..)| *at)
    };
    let found = sim.run_until_every(SETTLE_CAP, 10 * MILLISECOND, |sim| hit(sim).is_some());
    if !found {
        return None;
    }
    hit(sim).map(|at| at.saturating_duration_since(since))
}

fn lan_run(seed: u64, size: usize) -> LanRun {
    let config = Config::lan("failover");
    let (mut sim, nodes, seen) = form(seed, size, &config, NetConfig::default());
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x1a4);
    // Leader crash: a new leader, then a view without the old one.
    let (victim, crashed_at, failover) =
        crash_leader(&mut sim, &nodes, &seen, &mut rng, config.raft.heartbeat_interval);
    let victim_id = sim.member_id(victim);
    let crash_stable = until_cluster_stable(&mut sim, &seen, crashed_at, |members| !members.contains(&victim_id));
    // A new member joins: a view with it.
    let newcomer = sim.add_node("newcomer", Config::lan("failover"));
    let newcomer_id = sim.member_id(newcomer);
    let survivors: Vec<NodeIdx> = nodes.iter().copied().filter(|&idx| idx != victim).collect();
    let joined_at = sim.now();
    sim.join(newcomer, &survivors);
    let join_stable = until_cluster_stable(&mut sim, &seen, joined_at, |members| members.contains(&newcomer_id));
    LanRun { failover, crash_stable, join_stable }
}

fn failover_table(plan: &Plan) {
    let config = Config::lan("failover");
    let net = NetConfig::default();
    println!(
        "\n## Failover and view changes, Config::lan\n\
         election timeout {:?}-{:?}, heartbeat {:?}, probe {:?}, view_debounce {:?}, applications ack after \
         10 ms; one-way latency {:?}-{:?}, fsync {:?}. {} fresh clusters per size; the leader crashed uniformly \
         within a heartbeat interval. Reference: etcd 3.4 at its defaults (100 ms heartbeat, 1 s election) took \
         1.09 s from leader kill to a new leader on loopback. Times: median / p99 / max.\n",
        config.raft.election_timeout,
        config.raft.election_timeout_max,
        config.raft.heartbeat_interval,
        config.membership.probe_interval,
        config.rebalance.view_debounce,
        net.latency_min,
        net.latency_max,
        quorate_core::testing::DiskConfig::default().fsync_delay,
        plan.failover_runs,
    );
    let sizes = [3usize, 5];
    let jobs: Vec<(usize, u64)> = sizes
        .iter()
        .flat_map(|&size| (0..plan.failover_runs).map(move |run| (size, 10_000 * size as u64 + run)))
        .collect();
    let started = wall_clock();
    let runs = parallel(jobs.clone(), |(size, seed)| lan_run(seed, size));
    println!(
        "{:>8} {:>6} {:>24} {:>24} {:>26} {:>26}",
        "members", "runs", "elected (ms)", "known to all (ms)", "crash -> stable (s)", "join -> stable (s)"
    );
    for size in sizes {
        let runs: Vec<&LanRun> = jobs.iter().zip(&runs).filter(|((s, _), _)| *s == size).map(|(_, run)| run).collect();
        let column = |value: fn(&LanRun) -> Option<Duration>, scale: fn(Duration) -> f64| {
            let values: Vec<f64> = runs.iter().filter_map(|run| value(run)).map(scale).collect();
            let missing = runs.len() - values.len();
            let text = triple(&values);
            if missing > 0 { format!("{text} ({missing} none)") } else { text }
        };
        println!(
            "{:>8} {:>6} {:>24} {:>24} {:>26} {:>26}",
            size,
            runs.len(),
            column(|run| run.failover.elected, millis),
            column(|run| run.failover.known, millis),
            column(|run| run.crash_stable, seconds),
            column(|run| run.join_stable, seconds),
        );
    }
    println!("(wall {:.1} s)", seconds(wall_elapsed(started)));
}

// ----- throughput -------------------------------------------------------------------------------

struct Throughput {
    batch: usize,
    /// Entries committed, and the virtual and wall time they took.
    committed: u64,
    virtual_time: Duration,
    wall: Duration,
    /// Appends the leader sent and persists it asked for, per committed entry.
    appends_per_entry: f64,
    persists_per_entry: f64,
}

/// Bytes of each client command: a small KV write.
const COMMAND_BYTES: usize = 128;

/// Batches a client keeps in flight before waiting for commits.
const BATCHES_IN_FLIGHT: u64 = 4;

/// A near-zero-latency network, so virtual time measures protocol rounds
/// and wall time the core's own cost.
fn throughput_net() -> NetConfig {
    NetConfig {
        latency_min: Duration::from_micros(50),
        latency_max: Duration::from_micros(100),
        ..NetConfig::default()
    }
}

/// A client hands the leader `batch` commands per input, keeping
/// [`BATCHES_IN_FLIGHT`] batches uncommitted, until `total` entries committed.
fn throughput_run(seed: u64, batch: usize, total: u64) -> Throughput {
    let config = Config::lan("throughput");
    let (mut sim, nodes, _seen) = form(seed, 3, &config, throughput_net());
    sim.disk_mut().fsync_delay = Duration::from_micros(50);
    sim.clear_step_hook();
    let (leader, _) = agreed_leader(&sim, &nodes).expect("formed");
    let counters = |sim: &Sim| {
        let node = sim.node(leader).expect("up");
        let appends = node.metrics().sent.get("append").copied().unwrap_or(0);
        (node.commit_index(), node.log_entries(0).last().map_or(0, |entry| entry.index), appends)
    };
    let (start_commit, _, start_appends) = counters(&sim);
    let start_persists = sim.storage(leader).writes();
    let command = vec![0x5a; COMMAND_BYTES];
    let (virtual_start, wall_start) = (sim.now(), wall_clock());
    loop {
        let (commit, last, _) = counters(&sim);
        if commit - start_commit >= total {
            break;
        }
        if last - commit < batch as u64 * BATCHES_IN_FLIGHT {
            let proposed = sim.propose_commands(leader, std::iter::repeat_n(command.clone(), batch));
            proposed.unwrap_or_else(|error| panic!("the leader refused a batch: {error} (replay: Sim::new({seed}))"));
        }
        assert!(sim.step(), "the simulation ran dry (replay: Sim::new({seed}))");
    }
    let (commit, _, appends) = counters(&sim);
    let committed = commit - start_commit;
    Throughput {
        batch,
        committed,
        virtual_time: sim.now().saturating_duration_since(virtual_start),
        wall: wall_elapsed(wall_start),
        appends_per_entry: (appends - start_appends) as f64 / committed as f64,
        persists_per_entry: (sim.storage(leader).writes() - start_persists) as f64 / committed as f64,
    }
}

fn throughput_table(plan: &Plan) {
    println!(
        "\n## Committed entries per second through the core, 3 members, Config::lan\n\
         A client hands the leader B commands of {COMMAND_BYTES} bytes per input and keeps {BATCHES_IN_FLIGHT} \
         batches uncommitted. One-way latency 50-100 us, fsync 50 us; node invariant checks off. Wall rates are \
         one thread running all three cores and the driver; virtual rates are what the protocol allows at that \
         latency. Appends and persists are the leader's, per committed entry.\n"
    );
    let jobs: Vec<(u64, usize)> = [1usize, 16, 256].iter().flat_map(|&batch| [(1u64, batch), (2, batch)]).collect();
    let runs = parallel(jobs.clone(), |(seed, batch)| throughput_run(seed, batch, plan.commands));
    println!(
        "{:>6} {:>6} {:>10} {:>12} {:>12} {:>14} {:>14}",
        "seed", "B", "entries", "wall/s", "virtual/s", "appends/entry", "persists/entry"
    );
    for ((seed, _), run) in jobs.iter().zip(&runs) {
        println!(
            "{:>6} {:>6} {:>10} {:>12.0} {:>12.0} {:>14.3} {:>14.3}",
            seed,
            run.batch,
            run.committed,
            run.committed as f64 / seconds(run.wall).max(1e-9),
            run.committed as f64 / seconds(run.virtual_time).max(1e-9),
            run.appends_per_entry,
            run.persists_per_entry,
        );
    }
}

// ----- helpers ----------------------------------------------------------------------------------

fn threads() -> usize {
    std::env::var("QUORATE_BENCH_THREADS")
        .ok()
        .and_then(|value| value.parse().ok())
        .filter(|&threads| threads > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
}

/// Runs `work` on every job on [`threads`] threads; results in job order.
/// Each job builds its own `Sim` (it is not `Send`).
fn parallel<J: Sync + Clone, R: Send>(jobs: Vec<J>, work: impl Fn(J) -> R + Sync) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new(jobs.iter().map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..threads().min(jobs.len()) {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(index) else { break };
                    let result = work(job.clone());
                    results.lock().expect("no worker panicked")[index] = Some(result);
                }
            });
        }
    });
    results.into_inner().expect("no worker panicked").into_iter().map(|result| result.expect("every job ran")).collect()
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        len if len % 2 == 1 => sorted[len / 2],
        len => (sorted[len / 2 - 1] + sorted[len / 2]) / 2.0,
    }
}

/// Nearest-rank percentile.
fn percentile(values: &[f64], fraction: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((fraction * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1));
    sorted.get(rank - 1).copied().unwrap_or(f64::NAN)
}

/// Median / p99 / max.
fn triple(values: &[f64]) -> String {
    let max = values.iter().copied().fold(f64::NAN, f64::max);
    let precision = if max >= 100.0 { 0 } else { 2 };
    format!(
        "{:.precision$} / {:.precision$} / {:.precision$}",
        median(values),
        percentile(values, 0.99),
        max,
        precision = precision
    )
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn seconds(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

#[allow(clippy::disallowed_methods, reason = "wall time only reports what a run cost; the simulation never reads it")]
fn wall_clock() -> std::time::Instant {
    std::time::Instant::now()
}

fn wall_elapsed(started: std::time::Instant) -> Duration {
    started.elapsed()
}
