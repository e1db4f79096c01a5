//! A scenario's plan: everything a run does, drawn from its seed alone.
//!
//! The plan is a pure function of `(scenario, seed)`, made before the
//! simulation starts and printed at its start: cluster size, timing profile,
//! network settings, the timed fault schedule, how the application acks,
//! and the bound within which liveness (L1) must follow the faults. Faults
//! are drawn against a model of which members are up, down, paused or gone,
//! so every step of the schedule makes sense when it comes (a restart only
//! of a killed member, a resume only of a paused one). Only
//! [`Fault::IsolateLeader`] is resolved while the run goes, since who leads
//! is the protocol's business.

use std::fmt;
use std::time::Duration;

use quorate::Profile;
use quorate::sim::DatagramFaults;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A member's slot in a run: `n0`, `n1`, ... It keeps its name and address
/// across restarts; a restart with a lost disk is a new durable id in it.
pub type Slot = usize;

/// The scenarios, each a family of plans.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Scenario {
    /// No faults beyond datagram duplication and replay: nothing may be
    /// declared dead (S6) and the cluster must settle (L1).
    Steady,
    /// Kills and restarts, with the disk kept and, once, lost.
    Crash,
    /// Full and one-way partitions, the leader isolated, flapping links.
    Partition,
    /// Members joining, leaving gracefully and restarting.
    Churn,
    /// Up to 10 % loss with duplication, replay and corruption, and
    /// nothing else: nothing may be declared dead (S6).
    Lossy,
    /// Everything above drawn from the seed, with up to 30 % loss, latency
    /// spikes, pauses, slow acks and BUGGIFY.
    Mixed,
    /// At least 200 members: membership and views, a few kills.
    Scale,
}

impl Scenario {
    /// Every scenario, in the order CI runs them.
    pub const ALL: [Scenario; 7] = [
        Scenario::Steady,
        Scenario::Crash,
        Scenario::Partition,
        Scenario::Churn,
        Scenario::Lossy,
        Scenario::Mixed,
        Scenario::Scale,
    ];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Steady => "steady",
            Scenario::Crash => "crash",
            Scenario::Partition => "partition",
            Scenario::Churn => "churn",
            Scenario::Lossy => "lossy",
            Scenario::Mixed => "mixed",
            Scenario::Scale => "scale",
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One fault (or the end of one), at a time in the plan.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// The member's process dies; unsynced writes are lost.
    Kill(Slot),
    /// A killed member starts again with its disk.
    Restart(Slot),
    /// A killed member starts again with an empty disk: a new durable id.
    RestartWiped(Slot),
    /// The member stops running (a GC pause); its sockets stay open.
    Pause(Slot),
    /// A paused member runs again.
    Resume(Slot),
    /// These members can reach each other and no one else.
    Partition(Vec<Slot>),
    /// Nothing from `from` reaches `to`; the other way works.
    CutOneWay {
        /// The sender that is not heard.
        from: Slot,
        /// The receiver that does not hear it.
        to: Slot,
    },
    /// Whoever leads when the fault comes is cut off from everyone.
    IsolateLeader,
    /// Every partition, cut and isolation ends.
    Heal,
    /// Datagram loss rate from now on.
    Loss(f64),
    /// One-way latency from now on, in milliseconds (uniform in the range).
    Latency(u64, u64),
    /// A new member starts and joins through the initial members.
    Join(Slot),
    /// The member leaves gracefully (its process gets SIGINT).
    Leave(Slot),
}

impl Fault {
    /// Whether S6 stops applying from this fault on: anything other than a
    /// loss rate of at most 10 % can make a live member look dead.
    pub fn disturbs_detection(&self) -> bool {
        match self {
            Fault::Loss(rate) => *rate > 0.10,
            Fault::Join(_) | Fault::Heal => false,
            _ => true,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Kill(slot) => write!(f, "kill n{slot}"),
            Fault::Restart(slot) => write!(f, "restart n{slot}"),
            Fault::RestartWiped(slot) => write!(f, "restart n{slot} with its disk lost"),
            Fault::Pause(slot) => write!(f, "pause n{slot}"),
            Fault::Resume(slot) => write!(f, "resume n{slot}"),
            Fault::Partition(side) => {
                let names: Vec<String> = side.iter().map(|slot| format!("n{slot}")).collect();
                write!(f, "partition {{{}}} from the rest", names.join(","))
            }
            Fault::CutOneWay { from, to } => write!(f, "cut n{from} -> n{to}"),
            Fault::IsolateLeader => write!(f, "isolate the leader"),
            Fault::Heal => write!(f, "heal the network"),
            Fault::Loss(rate) => write!(f, "loss {:.0} %", rate * 100.0),
            Fault::Latency(low, high) => write!(f, "latency {low}-{high} ms"),
            Fault::Join(slot) => write!(f, "join n{slot}"),
            Fault::Leave(slot) => write!(f, "n{slot} leaves"),
        }
    }
}

/// How the application acks each view (`done.ack()`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Acks {
    /// Each ack comes after a delay uniform in `[0, max_delay]`.
    pub max_delay: Duration,
    /// The chance that an ack comes only after `slow_delay` instead.
    pub slow_chance: f64,
    /// Longer than the ack timeout: the member becomes lagging.
    pub slow_delay: Duration,
}

/// The clients' KV traffic: one sequential client per member boot.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Clients {
    /// Keys they share (few, so operations contend).
    pub keys: u32,
    /// Each client waits up to this long between operations.
    pub max_gap: Duration,
}

/// Everything one run does. See the module doc.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The scenario drawn from.
    pub scenario: Scenario,
    /// The seed it was drawn with; also madsim's seed.
    pub seed: u64,
    /// Members started at the beginning: slots `0..initial`.
    pub initial: usize,
    /// How many of them bootstrap the cluster together; the others join it.
    pub bootstrap_expect: usize,
    /// Timing profile of every member.
    pub profile: Profile,
    /// Datagram loss rate at the start.
    pub loss: f64,
    /// Duplication, replay and corruption on every member's receive path.
    pub datagram_faults: DatagramFaults,
    /// How long a storage sync takes.
    pub sync_latency: Duration,
    /// Whether BUGGIFY fires in the adapter's error paths.
    pub buggify: bool,
    /// How the application acks.
    pub acks: Acks,
    /// Client `apply` traffic, checked for linearizability (S2, S5, LIN).
    pub clients: Option<Clients>,
    /// The faults, in time order.
    pub faults: Vec<(Duration, Fault)>,
    /// When the faults stop: everything is healed, resumed and restarted.
    pub faults_end: Duration,
    /// Within this long after `faults_end`, L1 must hold.
    pub liveness_bound: Duration,
}

impl Plan {
    /// The plan of `scenario` for `seed`.
    pub fn new(scenario: Scenario, seed: u64) -> Plan {
        // The scenario is mixed into the seed so that two scenarios with one
        // seed do not draw the same numbers for different purposes.
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (scenario as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let profile = if scenario != Scenario::Scale && rng.random_bool(0.2) { Profile::Lan } else { Profile::Fast };
        // Every duration below is for the fast profile; lan is five times slower.
        let scale = if profile == Profile::Lan { 5 } else { 1 };
        let initial = match scenario {
            Scenario::Steady | Scenario::Mixed => rng.random_range(1..=9),
            Scenario::Crash | Scenario::Partition | Scenario::Lossy => rng.random_range(3..=9),
            Scenario::Churn => rng.random_range(3..=7),
            Scenario::Scale => rng.random_range(200..=240),
        };
        // A large cluster forms from a few members the others join.
        let bootstrap_expect = if scenario == Scenario::Scale { 3 } else { initial };
        let datagram_faults = match scenario {
            Scenario::Steady | Scenario::Lossy | Scenario::Mixed => DatagramFaults {
                duplicate: rng.random_range(0..=5) as f64 / 100.0,
                replay: rng.random_range(0..=5) as f64 / 100.0,
                corrupt: if scenario == Scenario::Steady { 0.0 } else { rng.random_range(0..=2) as f64 / 100.0 },
            },
            _ => DatagramFaults::default(),
        };
        let loss = match scenario {
            // Corruption is loss to the protocol: both count in S6's 10 %.
            Scenario::Lossy => rng.random_range(0..=10 - (datagram_faults.corrupt * 100.0) as u32) as f64 / 100.0,
            Scenario::Mixed if rng.random_bool(0.5) => rng.random_range(0..=30) as f64 / 100.0,
            _ => 0.0,
        };
        let sync_latency = Duration::from_micros(rng.random_range(100..=5_000));
        let buggify = scenario == Scenario::Mixed && rng.random_bool(0.5);
        let ack_timeout = Duration::from_secs(3) * scale;
        let acks = Acks {
            max_delay: ack_timeout / 10,
            slow_chance: if scenario == Scenario::Mixed { 0.03 } else { 0.0 },
            slow_delay: ack_timeout * 3 / 2,
        };
        let clients = matches!(scenario, Scenario::Mixed | Scenario::Crash).then(|| Clients {
            keys: rng.random_range(1..=4),
            max_gap: Duration::from_millis(rng.random_range(100..=500)),
        });
        let mut plan = Plan {
            scenario,
            seed,
            initial,
            bootstrap_expect,
            profile,
            loss,
            datagram_faults,
            sync_latency,
            buggify,
            acks,
            clients,
            faults: Vec::new(),
            faults_end: Duration::ZERO,
            liveness_bound: Duration::from_secs(40) * scale,
        };
        let mut schedule = Schedule::new(&mut rng, initial, scale);
        match scenario {
            Scenario::Steady | Scenario::Lossy => schedule.quiet(Duration::from_secs(15)),
            Scenario::Crash => schedule.draw(Duration::from_secs(20), &[Kind::Kill, Kind::Restart]),
            Scenario::Partition => {
                schedule.draw(Duration::from_secs(20), &[Kind::Partition, Kind::CutOneWay, Kind::Isolate, Kind::Flap])
            }
            Scenario::Churn => {
                schedule.draw(Duration::from_secs(25), &[Kind::Join, Kind::Leave, Kind::Kill, Kind::Restart])
            }
            Scenario::Mixed => schedule.draw(
                Duration::from_secs(30),
                &[
                    Kind::Kill,
                    Kind::Restart,
                    Kind::Pause,
                    Kind::Partition,
                    Kind::CutOneWay,
                    Kind::Isolate,
                    Kind::Flap,
                    Kind::Loss,
                    Kind::Latency,
                    Kind::Join,
                    Kind::Leave,
                ],
            ),
            Scenario::Scale => schedule.draw(Duration::from_secs(20), &[Kind::Kill, Kind::Restart]),
        }
        plan.faults = schedule.faults;
        plan.faults_end = schedule.end;
        plan
    }

    /// Slots that may ever be used: the initial members and every joiner.
    pub fn slots(&self) -> usize {
        let joins = self.faults.iter().filter(|(_, fault)| matches!(fault, Fault::Join(_))).count();
        self.initial + joins
    }

    /// Whether the run stays within S6's conditions from the start (until
    /// the first fault that disturbs detection).
    pub fn detection_undisturbed(&self) -> bool {
        self.loss + self.datagram_faults.corrupt <= 0.10 + 1e-9 && !self.buggify
    }

    /// The longest the run may take in virtual time.
    pub fn time_limit(&self) -> Duration {
        self.faults_end + self.liveness_bound
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "scenario {} seed {}", self.scenario, self.seed)?;
        writeln!(
            f,
            "  {} members ({} bootstrap), profile {:?}, loss {:.0} %, datagrams duplicated {:.0} % replayed {:.0} % corrupted {:.0} %",
            self.initial,
            self.bootstrap_expect,
            self.profile,
            self.loss * 100.0,
            self.datagram_faults.duplicate * 100.0,
            self.datagram_faults.replay * 100.0,
            self.datagram_faults.corrupt * 100.0
        )?;
        writeln!(
            f,
            "  sync {:?}, buggify {}, acks within {:?} ({:.0} % after {:?}), client traffic: {}",
            self.sync_latency,
            if self.buggify { "on" } else { "off" },
            self.acks.max_delay,
            self.acks.slow_chance * 100.0,
            self.acks.slow_delay,
            self.clients.map_or_else(
                || "none".to_owned(),
                |c| format!("KV on {} keys from every member, an operation every ≤ {:?}", c.keys, c.max_gap)
            )
        )?;
        for (at, fault) in &self.faults {
            writeln!(f, "  {:>9.3}s  {fault}", at.as_secs_f64())?;
        }
        write!(
            f,
            "  {:>9.3}s  faults end; L1 within {:?} (by {:.3}s)",
            self.faults_end.as_secs_f64(),
            self.liveness_bound,
            self.time_limit().as_secs_f64()
        )
    }
}

/// Kinds of fault a scenario draws from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Kill,
    Restart,
    Pause,
    Partition,
    CutOneWay,
    Isolate,
    Flap,
    Loss,
    Latency,
    Join,
    Leave,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Up,
    Down,
    Paused,
    Left,
}

/// Draws a fault schedule against a model of the members' states.
struct Schedule<'r> {
    rng: &'r mut ChaCha8Rng,
    status: Vec<Status>,
    initial: usize,
    /// Profile time scale: 1 for fast, 5 for lan.
    scale: u32,
    /// Whether a disk was lost already (at most once per run: a second
    /// loss before the first replacement committed could lose a majority).
    wiped: bool,
    /// Whether a partition, cut or isolation is in force.
    split: bool,
    /// Until then a leave is under way: nothing may disturb it (its
    /// configuration change needs a quorum within the leave timeout).
    calm_until: Duration,
    /// Pending ends of faults (resumes, restarts), by time.
    pending: Vec<(Duration, Fault)>,
    faults: Vec<(Duration, Fault)>,
    end: Duration,
}

impl<'r> Schedule<'r> {
    fn new(rng: &'r mut ChaCha8Rng, initial: usize, scale: u32) -> Self {
        Schedule {
            rng,
            status: vec![Status::Up; initial],
            initial,
            scale,
            wiped: false,
            split: false,
            calm_until: Duration::ZERO,
            pending: Vec::new(),
            faults: Vec::new(),
            end: Duration::ZERO,
        }
    }

    fn millis(&mut self, low: u64, high: u64) -> Duration {
        Duration::from_millis(self.rng.random_range(low..=high)) * self.scale
    }

    fn quiet(&mut self, length: Duration) {
        self.end = length * self.scale;
    }

    fn slots_in(&self, status: Status) -> Vec<Slot> {
        (0..self.status.len()).filter(|&slot| self.status[slot] == status).collect()
    }

    fn pick(&mut self, slots: &[Slot]) -> Option<Slot> {
        (!slots.is_empty()).then(|| slots[self.rng.random_range(0..slots.len())])
    }

    /// Faults of `kinds`, one every 0.5-3 s, until `length`.
    fn draw(&mut self, length: Duration, kinds: &[Kind]) {
        let length = length * self.scale;
        let mut at = self.millis(1_000, 3_000);
        while at < length {
            self.release(at);
            let kind = kinds[self.rng.random_range(0..kinds.len())];
            self.one(at, kind);
            at += self.millis(500, 3_000);
        }
        self.release(length);
        self.end = length;
    }

    /// Moves the pending ends due by `at` into the schedule.
    fn release(&mut self, at: Duration) {
        self.pending.sort_by_key(|(when, _)| *when);
        while self.pending.first().is_some_and(|(when, _)| *when <= at) {
            let (when, fault) = self.pending.remove(0);
            self.apply(when, fault);
        }
    }

    fn apply(&mut self, at: Duration, fault: Fault) {
        match &fault {
            Fault::Kill(slot) => self.status[*slot] = Status::Down,
            Fault::Restart(slot) | Fault::RestartWiped(slot) | Fault::Resume(slot) => self.status[*slot] = Status::Up,
            Fault::Pause(slot) => self.status[*slot] = Status::Paused,
            Fault::Leave(slot) => self.status[*slot] = Status::Left,
            Fault::Join(_) => self.status.push(Status::Up),
            Fault::Partition(_) | Fault::CutOneWay { .. } | Fault::IsolateLeader => self.split = true,
            Fault::Heal => self.split = false,
            _ => {}
        }
        self.faults.push((at, fault));
    }

    fn one(&mut self, at: Duration, kind: Kind) {
        if at < self.calm_until && !matches!(kind, Kind::Join) {
            return;
        }
        let up = self.slots_in(Status::Up);
        match kind {
            Kind::Kill => {
                // Keep one member up, so the run is never only restarts.
                if up.len() > 1
                    && let Some(slot) = self.pick(&up)
                {
                    self.apply(at, Fault::Kill(slot));
                    if self.rng.random_bool(0.7) {
                        let back = at + self.millis(300, 6_000);
                        self.pending.push((back, Fault::Restart(slot)));
                    }
                }
            }
            Kind::Restart => {
                let down = self.slots_in(Status::Down);
                if let Some(slot) = self.pick(&down) {
                    self.pending.retain(|(_, fault)| *fault != Fault::Restart(slot));
                    let wipe = !self.wiped && self.rng.random_bool(0.3);
                    self.wiped |= wipe;
                    self.apply(at, if wipe { Fault::RestartWiped(slot) } else { Fault::Restart(slot) });
                }
            }
            Kind::Pause => {
                if let Some(slot) = self.pick(&up) {
                    self.apply(at, Fault::Pause(slot));
                    // Some stalls are short, some outlast suspicion.
                    let back = at + self.millis(100, 4_000);
                    self.pending.push((back, Fault::Resume(slot)));
                }
            }
            Kind::Partition => {
                let members = self.status.len();
                if members >= 2 {
                    let size = self.rng.random_range(1..=members / 2);
                    let mut side: Vec<Slot> = (0..members).collect();
                    for i in 0..size {
                        let j = self.rng.random_range(i..members);
                        side.swap(i, j);
                    }
                    side.truncate(size);
                    side.sort();
                    self.apply(at, Fault::Partition(side));
                    let heal = at + self.millis(500, 5_000);
                    self.pending.push((heal, Fault::Heal));
                }
            }
            Kind::CutOneWay => {
                let members = self.status.len();
                if members >= 2 {
                    let from = self.rng.random_range(0..members);
                    let to = (from + self.rng.random_range(1..members)) % members;
                    self.apply(at, Fault::CutOneWay { from, to });
                    let heal = at + self.millis(500, 5_000);
                    self.pending.push((heal, Fault::Heal));
                }
            }
            Kind::Isolate => {
                self.apply(at, Fault::IsolateLeader);
                let heal = at + self.millis(500, 5_000);
                self.pending.push((heal, Fault::Heal));
            }
            Kind::Flap => {
                // One member's links go down and up a few times.
                let members = self.status.len();
                let slot = self.rng.random_range(0..members);
                let mut t = at;
                for _ in 0..self.rng.random_range(2..=5) {
                    self.pending.push((t, Fault::Partition(vec![slot])));
                    t += self.millis(100, 600);
                    self.pending.push((t, Fault::Heal));
                    t += self.millis(100, 600);
                }
            }
            Kind::Loss => {
                let rate = self.rng.random_range(0..=30) as f64 / 100.0;
                self.apply(at, Fault::Loss(rate));
                let back = at + self.millis(1_000, 6_000);
                self.pending.push((back, Fault::Loss(0.0)));
            }
            Kind::Latency => {
                let low = self.rng.random_range(20..=100);
                let high = low + self.rng.random_range(0..=200);
                self.apply(at, Fault::Latency(low, high));
                let back = at + self.millis(500, 3_000);
                self.pending.push((back, Fault::Latency(1, 10)));
            }
            Kind::Join => {
                // At most four joiners, so the plan stays readable.
                if self.status.len() < self.initial + 4 {
                    let slot = self.status.len();
                    self.apply(at, Fault::Join(slot));
                }
            }
            Kind::Leave => {
                // Keep at least two members that have not left. A voter's
                // leave is a configuration change that needs a quorum: one
                // begun while members are down, paused or cut off may end
                // (after the leave timeout) with the leaver gone and still
                // a voter, and no cluster recovers from more voters gone
                // than its quorum allows.
                let remaining = self.status.iter().filter(|status| **status != Status::Left).count();
                let all_up = up.len() == remaining && !self.split && self.pending.is_empty();
                if remaining > 2
                    && all_up
                    && let Some(slot) = self.pick(&up)
                {
                    self.apply(at, Fault::Leave(slot));
                    // The leave timeout (3 s fast) and a margin.
                    self.calm_until = at + self.millis(4_000, 4_000);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_is_a_function_of_its_seed() {
        for scenario in Scenario::ALL {
            for seed in 0..20 {
                let (a, b) = (Plan::new(scenario, seed), Plan::new(scenario, seed));
                assert_eq!(a.to_string(), b.to_string());
            }
        }
        assert_ne!(Plan::new(Scenario::Mixed, 1).to_string(), Plan::new(Scenario::Mixed, 2).to_string());
    }

    #[test]
    fn every_fault_makes_sense_when_it_comes() {
        for scenario in Scenario::ALL {
            for seed in 0..200 {
                let plan = Plan::new(scenario, seed);
                let mut status = vec![Status::Up; plan.initial];
                let mut wiped = 0;
                let mut last = Duration::ZERO;
                for (at, fault) in &plan.faults {
                    assert!(*at >= last, "{plan}: faults out of order");
                    assert!(*at <= plan.faults_end, "{plan}: a fault after the end");
                    last = *at;
                    match fault {
                        Fault::Kill(slot) => {
                            assert_eq!(status[*slot], Status::Up, "{plan}: {fault}");
                            status[*slot] = Status::Down;
                        }
                        Fault::Restart(slot) | Fault::RestartWiped(slot) => {
                            assert_eq!(status[*slot], Status::Down, "{plan}: {fault}");
                            status[*slot] = Status::Up;
                            wiped += usize::from(matches!(fault, Fault::RestartWiped(_)));
                        }
                        Fault::Pause(slot) => {
                            assert_eq!(status[*slot], Status::Up, "{plan}: {fault}");
                            status[*slot] = Status::Paused;
                        }
                        Fault::Resume(slot) => {
                            assert_eq!(status[*slot], Status::Paused, "{plan}: {fault}");
                            status[*slot] = Status::Up;
                        }
                        Fault::Leave(slot) => {
                            assert_eq!(status[*slot], Status::Up, "{plan}: {fault}");
                            status[*slot] = Status::Left;
                        }
                        Fault::Join(slot) => {
                            assert_eq!(*slot, status.len(), "{plan}: {fault}");
                            status.push(Status::Up);
                        }
                        _ => {}
                    }
                }
                assert!(wiped <= 1, "{plan}: more than one disk lost");
                assert!(status.iter().filter(|s| **s != Status::Left).count() >= 1, "{plan}: nobody left");
                if matches!(scenario, Scenario::Steady | Scenario::Lossy) {
                    assert!(plan.faults.is_empty() && plan.detection_undisturbed(), "{plan}");
                }
                if scenario == Scenario::Scale {
                    assert!(plan.initial >= 200, "{plan}");
                }
            }
        }
    }
}
