//! Membership experiments in virtual time (DESIGN §3.1): a join storm, the
//! steady-state load, and crash detection with and without loss, all run in
//! the deterministic driver [`quorate_core::testing::Sim`] with `Config::lan`
//! and the driver's default network (1–5 ms one-way latency, uniform; no loss
//! unless stated).
//!
//! Every figure is a function of the seeds, not of the machine: the tables
//! report medians (and p90 / max) over seeds, and the wall time only to say
//! what a run costs. Seeds run in parallel on `QUORATE_BENCH_THREADS` threads
//! (default: all cores).
//!
//! ```text
//! cargo bench -p quorate-core --bench membership              # everything, ~3 min on 2 cores
//! cargo bench -p quorate-core --bench membership -- crash     # experiments whose name contains "crash"
//! QUORATE_BENCH_FULL=1 cargo bench -p quorate-core --bench membership   # more seeds
//! cargo bench -p quorate-core --bench membership -- --list
//! ```
//!
//! Without `--bench` (as under `cargo test --benches`) a small smoke version
//! runs, so the file is exercised without the cost.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use core::time::Duration;
use quorate_core::testing::{NetConfig, NodeIdx, Sim, live_members_declared_failed};
use quorate_core::{Config, Event, Instant, MemberId, State};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const SECOND: Duration = Duration::from_secs(1);

/// Without a single gossip datagram sent anywhere for this long (ten gossip
/// intervals), every broadcast queue is empty: a member gossips at every
/// gossip tick while its queue holds anything.
const QUIET: Duration = Duration::from_secs(2);

/// Longest a settle may take before the run is reported as not settled.
const SETTLE_CAP: Duration = Duration::from_secs(600);

/// Longest a join storm may take to converge.
const CONVERGE_CAP: Duration = Duration::from_secs(120);

/// Longest a crash may take to be known everywhere.
const DETECT_CAP: Duration = Duration::from_secs(120);

// ----- the plan ---------------------------------------------------------------------------------

/// What one invocation runs.
struct Plan {
    /// Members of the join storm, and how many seeds.
    storm: (usize, u64),
    /// `(members, seeds)` of the steady-state runs.
    steady: Vec<(usize, u64)>,
    /// Virtual time over which steady-state traffic is counted.
    steady_window: Duration,
    /// `(members, crashes, crashes per cluster)` without loss.
    crash: Vec<(usize, u64, u64)>,
    /// `(members, crashes)` with [`LOSS`].
    lossy: Vec<(usize, u64)>,
    /// Virtual time each lossy cluster runs before its crash, counting false positives.
    lossy_soak: Duration,
}

/// Datagram loss of the lossy crash runs.
const LOSS: f64 = 0.10;

impl Plan {
    fn default_run() -> Plan {
        Plan {
            storm: (1_000, 3),
            steady: vec![(10, 3), (100, 3), (1_000, 1)],
            steady_window: 180 * SECOND,
            crash: vec![(5, 20, 1), (10, 20, 1), (20, 20, 1), (100, 20, 1), (1_000, 6, 3)],
            lossy: vec![(5, 20), (20, 20)],
            lossy_soak: 120 * SECOND,
        }
    }

    fn full_run() -> Plan {
        Plan {
            storm: (1_000, 7),
            steady: vec![(10, 5), (100, 5), (1_000, 3)],
            steady_window: 180 * SECOND,
            crash: vec![(5, 100, 1), (10, 100, 1), (20, 100, 1), (100, 100, 1), (1_000, 20, 5)],
            lossy: vec![(5, 100), (20, 100)],
            lossy_soak: 300 * SECOND,
        }
    }

    /// Small enough for a debug build: proves the file runs, measures nothing.
    fn smoke_run() -> Plan {
        Plan {
            storm: (30, 1),
            steady: vec![(10, 1)],
            steady_window: 30 * SECOND,
            crash: vec![(5, 2, 1), (20, 2, 2)],
            lossy: vec![(5, 1)],
            lossy_soak: 10 * SECOND,
        }
    }
}

const EXPERIMENTS: [&str; 4] = ["join_storm", "steady_state", "crash_detection", "crash_detection_loss"];

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
    // `crash_detection` is a prefix of `crash_detection_loss`: an exact name picks only itself.
    let exact = |name: &str| filter.as_deref() == Some(name);
    let config = Config::lan("bench");
    let period = config.membership.probe_interval;
    let net = NetConfig::default();
    assert_eq!(net.loss, 0.0, "the experiments use the driver's lossless default network unless stated");

    println!(
        "quorate membership experiments: {} mode, {} threads, Config::lan (probe {:?}, timeout {:?}, \
         suspicion_mult {}, max_mult {}, gossip {:?} to {}, push-pull {:?}), driver's default network \
         ({:?}-{:?} one-way, uniform), debug assertions {}",
        if !benching {
            "smoke (no --bench)"
        } else if full {
            "full"
        } else {
            "default"
        },
        threads(),
        period,
        config.membership.probe_timeout,
        config.membership.suspicion_mult,
        config.membership.suspicion_max_mult,
        config.membership.gossip_interval,
        config.membership.gossip_nodes,
        config.membership.push_pull_interval,
        net.latency_min,
        net.latency_max,
        if cfg!(debug_assertions) { "on" } else { "off" },
    );
    if !EXPERIMENTS.iter().any(|name| selected(name)) {
        println!("no experiment matches {filter:?}; try --list");
        return;
    }
    let started = wall_clock();
    if selected("join_storm") {
        join_storm_table(&plan);
    }
    if selected("steady_state") {
        steady_state_table(&plan);
    }
    if selected("crash_detection") && !exact("crash_detection_loss") {
        crash_table(&plan);
    }
    if selected("crash_detection_loss") && !exact("crash_detection") {
        lossy_crash_table(&plan);
    }
    println!("\ntotal wall time {:.1} s", seconds(wall_elapsed(started)));
}

// ----- join storm -------------------------------------------------------------------------------

struct Storm {
    seed: u64,
    /// Protocol periods from the first start until every member saw every member alive.
    periods: Option<f64>,
    datagrams: f64,
    datagram_bytes: f64,
    frames: f64,
    frame_bytes: f64,
    /// Stream bytes the seed every member joined through sent (its join replies).
    seed_frame_bytes: f64,
    wall: Duration,
}

/// Starts `members` nodes spread evenly over one protocol period, each told
/// to join through the first as soon as it starts, and runs until every
/// member sees every member alive (checked every tenth of a period).
fn start_storm(seed: u64, members: usize) -> (Sim, Vec<NodeIdx>, Option<Instant>) {
    let config = Config::lan("bench");
    let period = config.membership.probe_interval;
    let mut sim = Sim::new(seed);
    sim.set_check_invariants(false);
    sim.set_record_events(false);
    let first = sim.add_node("n0", config.clone());
    let mut nodes = vec![first];
    for index in 1..members {
        sim.run_for(period / members as u32);
        let node = sim.add_node(&format!("n{index}"), config.clone());
        sim.join(node, &[first]);
        nodes.push(node);
    }
    assert!(sim.now() < Instant::ZERO + period, "every member started within one protocol period");
    let converged = sim.run_until_every(CONVERGE_CAP, period / 10, Sim::converged);
    let converged_at = converged.then(|| sim.now());
    (sim, nodes, converged_at)
}

fn join_storm(seed: u64, members: usize) -> Storm {
    let started = wall_clock();
    let (sim, nodes, converged_at) = start_storm(seed, members);
    let period = Config::lan("bench").membership.probe_interval;
    let counters = sim.counters();
    let per_member = |value: u64| value as f64 / members as f64;
    Storm {
        seed,
        periods: converged_at.map(|at| at.as_nanos() as f64 / period.as_nanos() as f64),
        datagrams: per_member(counters.datagrams.sent),
        datagram_bytes: per_member(counters.datagrams.bytes_sent),
        frames: per_member(counters.streams.sent),
        frame_bytes: per_member(counters.streams.bytes_sent),
        seed_frame_bytes: sim.node_counters(nodes[0]).streams.bytes_sent as f64,
        wall: wall_elapsed(started),
    }
}

fn join_storm_table(plan: &Plan) {
    let (members, seeds) = plan.storm;
    println!(
        "\n## Join storm: {members} members started within one protocol period, all joining through one seed\n\
         periods from the first start until every member sees every member alive (push-pull included, \
         checked every 0.1 period); traffic sent per member until then. Target: <= 20 periods.\n"
    );
    let runs = parallel((1..=seeds).collect(), |seed| join_storm(seed, members));
    println!(
        "{:>6} {:>9} {:>17} {:>17} {:>15} {:>17} {:>15} {:>8}",
        "seed",
        "periods",
        "datagrams/member",
        "datagram KB/mbr",
        "frames/member",
        "stream KB/mbr",
        "seed stream MB",
        "wall s"
    );
    for run in &runs {
        println!(
            "{:>6} {:>9} {:>17.1} {:>17.1} {:>15.1} {:>17.1} {:>15.1} {:>8.1}",
            run.seed,
            run.periods.map_or_else(|| "never".to_string(), |periods| format!("{periods:.1}")),
            run.datagrams,
            run.datagram_bytes / 1000.0,
            run.frames,
            run.frame_bytes / 1000.0,
            run.seed_frame_bytes / 1e6,
            seconds(run.wall)
        );
    }
    let converged: Vec<f64> = runs.iter().filter_map(|run| run.periods).collect();
    assert_eq!(converged.len(), runs.len(), "a join storm did not converge within {CONVERGE_CAP:?}");
    let median_of = |value: fn(&Storm) -> f64| median(&runs.iter().map(value).collect::<Vec<_>>());
    println!(
        "{:>6} {:>9.1} {:>17.1} {:>17.1} {:>15.1} {:>17.1} {:>15.1}   target <= 20 periods: {}",
        "median",
        median(&converged),
        median_of(|run| run.datagrams),
        median_of(|run| run.datagram_bytes) / 1000.0,
        median_of(|run| run.frames),
        median_of(|run| run.frame_bytes) / 1000.0,
        median_of(|run| run.seed_frame_bytes) / 1e6,
        if median(&converged) <= 20.0 { "met" } else { "MISSED" },
    );
}

// ----- steady state -----------------------------------------------------------------------------

/// What the whole cluster sent in a window.
#[derive(Clone, Default)]
struct Traffic {
    datagrams: u64,
    datagram_bytes: u64,
    frames: u64,
    frame_bytes: u64,
    /// Messages sent by kind (`ping`, `ack`, `gossip`, `push_pull`, ...), summed over members.
    kinds: BTreeMap<&'static str, u64>,
}

impl Traffic {
    fn of(sim: &Sim) -> Traffic {
        let counters = sim.counters();
        let mut kinds = BTreeMap::new();
        for node in sim.up_nodes() {
            for (&kind, &count) in &sim.node(node).expect("up").metrics().sent {
                *kinds.entry(kind).or_default() += count;
            }
        }
        Traffic {
            datagrams: counters.datagrams.sent,
            datagram_bytes: counters.datagrams.bytes_sent,
            frames: counters.streams.sent,
            frame_bytes: counters.streams.bytes_sent,
            kinds,
        }
    }

    fn since(&self, earlier: &Traffic) -> Traffic {
        let mut kinds = self.kinds.clone();
        for (kind, count) in kinds.iter_mut() {
            *count -= earlier.kinds.get(kind).copied().unwrap_or(0);
        }
        Traffic {
            datagrams: self.datagrams - earlier.datagrams,
            datagram_bytes: self.datagram_bytes - earlier.datagram_bytes,
            frames: self.frames - earlier.frames,
            frame_bytes: self.frame_bytes - earlier.frame_bytes,
            kinds,
        }
    }

    fn kind(&self, kind: &str) -> u64 {
        self.kinds.get(kind).copied().unwrap_or(0)
    }
}

/// Gossip datagrams sent so far by the members that are up.
fn gossip_sent(sim: &Sim) -> u64 {
    sim.up_nodes().map(|node| sim.node(node).expect("up").metrics().sent.get("gossip").copied().unwrap_or(0)).sum()
}

/// Runs until no member has gossiped for [`QUIET`], i.e. every broadcast
/// queue is empty; returns how long that took, quiet time excluded, or `None`
/// if it did not happen within [`SETTLE_CAP`].
fn settle(sim: &mut Sim) -> Option<Duration> {
    let start = sim.now();
    let mut last = gossip_sent(sim);
    let mut last_change = start;
    let step = Duration::from_millis(250);
    while sim.now().saturating_duration_since(last_change) < QUIET {
        if sim.now().saturating_duration_since(start) > SETTLE_CAP {
            return None;
        }
        sim.run_for(step);
        let sent = gossip_sent(sim);
        if sent != last {
            last = sent;
            last_change = sim.now();
        }
    }
    Some(last_change.saturating_duration_since(start))
}

/// Counts, from a step hook, reports that matter to the experiments.
#[derive(Default)]
struct Reports {
    /// `member_failed` about a member up in the boot declared dead (S6).
    false_failures: u64,
    /// `member_suspected` about a member up in the boot suspected.
    live_suspected: u64,
    /// Every `member_failed`, with its time and reporter.
    failed: Vec<(Instant, NodeIdx, MemberId)>,
}

fn watch(sim: &mut Sim) -> Rc<RefCell<Reports>> {
    let reports = Rc::new(RefCell::new(Reports::default()));
    let hook_reports = Rc::clone(&reports);
    sim.set_step_hook(move |sim| {
        if sim.step_events().is_empty() {
            return;
        }
        let mut reports = hook_reports.borrow_mut();
        reports.false_failures += live_members_declared_failed(sim).count() as u64;
        for record in sim.step_events() {
            match &record.event {
                Event::MemberFailed(info) => reports.failed.push((record.at, record.node, info.id)),
                Event::MemberSuspected(info) => {
                    let up = sim.node_of(info.id).and_then(|node| sim.node(node));
                    if up.is_some_and(|node| node.boot_id() == info.boot_id) {
                        reports.live_suspected += 1;
                    }
                }
                _ => {}
            }
        }
    });
    reports
}

struct Steady {
    members: usize,
    seed: u64,
    settle: Option<Duration>,
    traffic: Traffic,
    window: Duration,
    wall: Duration,
}

fn steady_state(seed: u64, members: usize, window: Duration) -> Steady {
    let started = wall_clock();
    let (mut sim, _, converged_at) = start_storm(seed, members);
    assert!(converged_at.is_some(), "{members} members (seed {seed}) did not converge: {:?}", sim.check_converged());
    let settle = settle(&mut sim);
    let reports = watch(&mut sim);
    let before = Traffic::of(&sim);
    sim.run_for(window);
    let traffic = Traffic::of(&sim).since(&before);
    sim.clear_step_hook();
    let reports = reports.borrow();
    assert!(sim.converged(), "steady state left convergence: {:?}", sim.check_converged());
    assert_eq!(
        (reports.failed.len(), reports.live_suspected),
        (0, 0),
        "N = {members}, seed {seed}: failures or suspicions in a quiet cluster"
    );
    if settle.is_some() {
        assert_eq!(traffic.kind("gossip"), 0, "N = {members}, seed {seed}: gossip in the window, queues not drained");
    }
    Steady { members, seed, settle, traffic, window, wall: wall_elapsed(started) }
}

/// memberlist's push-pull scaling, as `Membership::push_pull_interval` applies it:
/// the base interval times `1 + max(0, bits(n - 1) - 5)`.
fn push_pull_interval(members: usize) -> Duration {
    let doublings = (usize::BITS - members.saturating_sub(1).leading_zeros()).saturating_sub(5);
    Config::lan("bench").membership.push_pull_interval * (1 + doublings)
}

fn steady_state_table(plan: &Plan) {
    let period = Config::lan("bench").membership.probe_interval;
    println!(
        "\n## Steady state: packets sent per member per protocol period, after convergence and after every \
         broadcast queue drained\n\
         (no gossip datagram anywhere for {QUIET:?}); counted over {:?} of virtual time. Push-pull runs every \
         30 s x (1 + max(0, bits(n-1) - 5)): 30 s up to 32 members, 90 s at 100, 180 s at 1,000.\n\
         Target: flat in N.\n",
        plan.steady_window
    );
    let jobs: Vec<(usize, u64)> =
        plan.steady.iter().flat_map(|&(members, seeds)| (1..=seeds).map(move |seed| (members, seed))).collect();
    let window = plan.steady_window;
    let runs = parallel(jobs, |(members, seed)| steady_state(seed, members, window));
    println!(
        "{:>6} {:>5} {:>9} {:>12} {:>12} {:>12} {:>12} {:>12} {:>10} {:>7}",
        "N",
        "seeds",
        "settle s",
        "datagrams",
        "dgram bytes",
        "frames",
        "frame bytes",
        "ping+ack",
        "push-pull",
        "wall s"
    );
    for &(members, _) in &plan.steady {
        let group: Vec<&Steady> = runs.iter().filter(|run| run.members == members).collect();
        let per = |run: &Steady, value: u64| {
            value as f64 / run.members as f64 / (run.window.as_secs_f64() / period.as_secs_f64())
        };
        let column = |value: fn(&Traffic) -> u64| {
            median(&group.iter().map(|run| per(run, value(&run.traffic))).collect::<Vec<_>>())
        };
        let settles: Vec<f64> = group.iter().filter_map(|run| run.settle.map(seconds)).collect();
        let settle = if settles.len() == group.len() {
            format!("{:.0}", median(&settles))
        } else {
            format!(">{}", SETTLE_CAP.as_secs())
        };
        println!(
            "{:>6} {:>5} {:>9} {:>12.3} {:>12.1} {:>12.4} {:>12.1} {:>12.3} {:>9.0}s {:>7.1}",
            members,
            group.len(),
            settle,
            column(|traffic| traffic.datagrams),
            column(|traffic| traffic.datagram_bytes),
            column(|traffic| traffic.frames),
            column(|traffic| traffic.frame_bytes),
            column(|traffic| traffic.kind("ping") + traffic.kind("ack")),
            push_pull_interval(members).as_secs_f64(),
            median(&group.iter().map(|run| seconds(run.wall)).collect::<Vec<_>>()),
        );
        for run in &group {
            let others: Vec<String> = run
                .traffic
                .kinds
                .iter()
                .filter(|&(_, &count)| count > 0)
                .map(|(kind, count)| format!("{kind} {:.4}", per(run, *count)))
                .collect();
            println!("{:>6}   seed {}: per member per period: {}", "", run.seed, others.join(", "));
        }
    }
    println!("(all columns per member per protocol period; medians over seeds)");
}

// ----- crash detection --------------------------------------------------------------------------

struct Crash {
    members: usize,
    /// Crash to the first `member_failed` about the victim anywhere.
    first: Duration,
    /// Crash to the moment every survivor holds the victim dead.
    everywhere: Duration,
    false_failures: u64,
    live_suspected: u64,
    /// Virtual time the run watched for false positives.
    watched: Duration,
}

/// Runs `crashes` crashes in one converged, settled cluster of `members`, one
/// after another: each at a random moment of a protocol period, of a random
/// member, after the previous one is known everywhere and gossip settled.
fn crash_runs(seed: u64, members: usize, crashes: u64, loss: f64, soak: Duration) -> Vec<Crash> {
    let period = Config::lan("bench").membership.probe_interval;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_c4a5);
    let (mut sim, nodes, converged_at) = start_storm(seed, members);
    assert!(converged_at.is_some(), "{members} members (seed {seed}) did not converge: {:?}", sim.check_converged());
    assert!(settle(&mut sim).is_some(), "{members} members (seed {seed}) never settled");
    sim.net_mut().loss = loss;
    let mut results = Vec::new();
    for _ in 0..crashes {
        let reports = watch(&mut sim);
        let watch_start = sim.now();
        sim.run_for(soak);
        // Under loss a live member may be suspect for a moment: crash only once nobody is.
        let converged = sim.run_until(DETECT_CAP, Sim::converged);
        assert!(converged, "seed {seed}: not converged before the crash: {:?}", sim.check_converged());
        let offset = Duration::from_nanos(rng.random_range(0..period.as_nanos() as u64));
        sim.run_for(offset);
        let up: Vec<NodeIdx> = nodes.iter().copied().filter(|&node| sim.is_up(node)).collect();
        let victim = up[rng.random_range(0..up.len())];
        let victim_id = sim.member_id(victim);
        let survivors: Vec<NodeIdx> = up.iter().copied().filter(|&node| node != victim).collect();
        sim.crash(victim);
        let crashed_at = sim.now();
        let everyone_knows = |sim: &Sim| {
            survivors.iter().all(|&node| sim.member_view(node, victim).is_some_and(|info| info.state == State::Dead))
        };
        let known = sim.run_until_every(DETECT_CAP, Duration::from_millis(10), everyone_knows);
        assert!(known, "seed {seed}: the crash of {victim} in {members} was not known everywhere in {DETECT_CAP:?}");
        sim.clear_step_hook();
        let reports = reports.borrow();
        let about_victim: Vec<&(Instant, NodeIdx, MemberId)> =
            reports.failed.iter().filter(|(at, _, id)| *id == victim_id && *at >= crashed_at).collect();
        let reporters: BTreeSet<NodeIdx> = about_victim.iter().map(|(_, node, _)| *node).collect();
        assert_eq!(reporters.len(), survivors.len(), "seed {seed}: every survivor reports the failure once");
        let first = about_victim.iter().map(|(at, ..)| *at).min().expect("reported");
        let last = about_victim.iter().map(|(at, ..)| *at).max().expect("reported");
        results.push(Crash {
            members,
            first: first.saturating_duration_since(crashed_at),
            everywhere: last.saturating_duration_since(crashed_at),
            false_failures: reports.false_failures,
            live_suspected: reports.live_suspected,
            watched: sim.now().saturating_duration_since(watch_start),
        });
        drop(reports);
        if results.len() < crashes as usize {
            sim.net_mut().loss = 0.0;
            assert!(settle(&mut sim).is_some(), "seed {seed}: gossip never settled after a crash");
            sim.net_mut().loss = loss;
        }
    }
    results
}

/// memberlist's LAN profile (probe 1 s, suspicion_mult 4): mean seconds to the first `dead`.
fn memberlist_reference(members: usize) -> &'static str {
    match members {
        5 => "serf measured 5.75 s",
        20 => "serf measured 6.6 s",
        10 => "memberlist ~6 s mean",
        100 => "memberlist ~10 s mean",
        1_000 => "memberlist ~14 s mean",
        _ => "",
    }
}

/// Lifeguard's suspicion floor with `Config::lan`: `3 · max(1, log10 n) · 500 ms`.
fn suspicion_floor(members: usize) -> f64 {
    let config = Config::lan("bench").membership;
    config.suspicion_mult.get() as f64 * (members as f64).log10().max(1.0) * config.probe_interval.as_secs_f64()
}

fn crash_jobs(sizes: &[(usize, u64, u64)]) -> Vec<(usize, u64, u64)> {
    let mut jobs = Vec::new();
    for &(members, crashes, per_cluster) in sizes {
        let clusters = crashes.div_ceil(per_cluster);
        for cluster in 0..clusters {
            let count = per_cluster.min(crashes - cluster * per_cluster);
            jobs.push((members, 1_000 + cluster, count));
        }
    }
    jobs
}

fn print_crash_rows(sizes: &[usize], runs: &[Crash], lossy: bool) {
    println!(
        "{:>6} {:>7} {:>7}   {:>23}   {:>23}   {}",
        "N",
        "crashes",
        "floor s",
        "first failed s med/p90/max",
        "all dead s med/p90/max",
        if lossy { "false positives (live suspected, refuted), watched" } else { "reference (to first dead)" }
    );
    for &members in sizes {
        let group: Vec<&Crash> = runs.iter().filter(|run| run.members == members).collect();
        let first: Vec<f64> = group.iter().map(|run| seconds(run.first)).collect();
        let everywhere: Vec<f64> = group.iter().map(|run| seconds(run.everywhere)).collect();
        let tail = if lossy {
            let false_failures: u64 = group.iter().map(|run| run.false_failures).sum();
            let suspected: u64 = group.iter().map(|run| run.live_suspected).sum();
            let watched: f64 = group.iter().map(|run| seconds(run.watched)).sum::<f64>() * members as f64 / 3600.0;
            format!("{false_failures} ({suspected}), {watched:.1} member-hours")
        } else {
            memberlist_reference(members).to_string()
        };
        println!(
            "{:>6} {:>7} {:>7.2}   {:>23}   {:>23}   {}",
            members,
            group.len(),
            suspicion_floor(members),
            triple(&first),
            triple(&everywhere),
            tail
        );
    }
}

fn crash_table(plan: &Plan) {
    println!(
        "\n## Crash detection: one member of a converged, settled cluster crashes at a random moment of a period\n\
         seconds from the crash to the first `member_failed` anywhere, and until every survivor holds it dead.\n\
         Each crash in its own cluster, except at N >= 1,000: several crashes one after another in one cluster \
         (each after the last was known everywhere and gossip settled).\n\
         `floor` is Lifeguard's suspicion floor, 3 x max(1, log10 n) x 500 ms; the timeout starts at 6 x floor and \
         falls to the floor with one independent confirmation.\n"
    );
    let runs: Vec<Crash> = parallel(crash_jobs(&plan.crash), |(members, seed, count)| {
        crash_runs(seed, members, count, 0.0, Duration::ZERO)
    })
    .into_iter()
    .flatten()
    .collect();
    let false_failures: u64 = runs.iter().map(|run| run.false_failures).sum();
    let sizes: Vec<usize> = plan.crash.iter().map(|&(members, ..)| members).collect();
    print_crash_rows(&sizes, &runs, false);
    println!(
        "memberlist's LAN constants: probe 1 s, timeout 500 ms, suspicion_mult 4, max_mult 6 \
         (floor 4 / 8 / 12 s at N = 10 / 100 / 1,000)."
    );
    assert_eq!(false_failures, 0, "a live member was declared dead without loss");
}

fn lossy_crash_table(plan: &Plan) {
    println!(
        "\n## Crash detection under {:.0} % datagram loss (streams lose nothing but pay TCP retransmission timeouts)\n\
         Each cluster converges without loss, then runs {:?} at {:.0} % loss before the crash, counting \
         live members declared dead (false positives, must be 0) and live members suspected.\n",
        LOSS * 100.0,
        plan.lossy_soak,
        LOSS * 100.0
    );
    let jobs: Vec<(usize, u64, u64)> = plan
        .lossy
        .iter()
        .flat_map(|&(members, crashes)| (0..crashes).map(move |index| (members, 2_000 + index, 1)))
        .collect();
    let soak = plan.lossy_soak;
    let runs: Vec<Crash> = parallel(jobs, |(members, seed, count)| crash_runs(seed, members, count, LOSS, soak))
        .into_iter()
        .flatten()
        .collect();
    let sizes: Vec<usize> = plan.lossy.iter().map(|&(members, _)| members).collect();
    print_crash_rows(&sizes, &runs, true);
    let false_failures: u64 = runs.iter().map(|run| run.false_failures).sum();
    assert_eq!(false_failures, 0, "S6: a live member was declared dead at {:.0} % loss", LOSS * 100.0);
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

fn triple(values: &[f64]) -> String {
    let max = values.iter().copied().fold(f64::NAN, f64::max);
    format!("{:.2} / {:.2} / {:.2}", median(values), percentile(values, 0.9), max)
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
