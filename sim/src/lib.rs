//! `quorate-sim`: the seeded fault-injection simulation of quorate's real
//! adapter under madsim (DESIGN §5).
//!
//! A run is a [`Plan`] (a pure function of a scenario and a `u64` seed)
//! carried out by the [`harness`] against `quorate::Cluster` built with
//! `--cfg madsim`, every step of every member checked by the
//! [`invariants`]. The `quorate-sim` binary sweeps seed ranges, replays one
//! seed with its full trace, and checks that a seed's trace repeats.
//!
//! Builds only with `--cfg madsim`: run it as `cargo sim ...` (see the
//! README); under a normal build this crate is empty.

#![cfg(madsim)]

pub mod harness;
pub mod invariants;
pub mod plan;
pub mod storage;

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use quorate_core::teeth::Plant;

pub use harness::{Failure, Options, Outcome, run};
pub use plan::{Plan, Scenario};

/// The commit this build came from (`+changes` when the work tree differed).
pub const COMMIT: &str = env!("QUORATE_SIM_COMMIT");

/// The command that replays `plan` exactly, with what a reader needs to
/// trust it: planted bug, profile and commit.
pub fn replay_line(plan: &Plan, plant: Option<Plant>) -> String {
    let (alias, plant) = match plant {
        Some(plant) => ("sim-teeth", format!(" --plant {plant}")),
        None => ("sim", String::new()),
    };
    format!(
        "cargo {alias} replay --scenario {} --seed {}{plant}    # profile {:?}, commit {COMMIT}",
        plan.scenario, plan.seed, plan.profile
    )
}

/// One seed of a sweep.
#[derive(Debug)]
pub struct SeedResult {
    /// The plan it ran.
    pub plan: Plan,
    /// What happened.
    pub outcome: Outcome,
    /// Wall time it took.
    pub wall: Duration,
}

/// Runs one seed.
pub fn run_seed(scenario: Scenario, seed: u64, options: &Options) -> SeedResult {
    let plan = Plan::new(scenario, seed);
    let started = Instant::now();
    let outcome = run(&plan, options);
    SeedResult { plan, outcome, wall: started.elapsed() }
}

/// Runs every `(scenario, seed)` of `work` on `jobs` threads (one
/// simulation per thread at a time, as madsim requires), calling `done`
/// with each result as it comes; returns them in `work`'s order. Each run
/// is a function of its seed alone, whatever the number of threads.
pub fn sweep(
    work: &[(Scenario, u64)],
    jobs: usize,
    options: &Options,
    done: impl Fn(&SeedResult) + Sync,
) -> Vec<SeedResult> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<SeedResult>>> = Mutex::new((0..work.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, work.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&(scenario, seed)) = work.get(i) else { return };
                    let result = run_seed(scenario, seed, options);
                    done(&result);
                    results.lock().expect("results lock")[i] = Some(result);
                }
            });
        }
    });
    results.into_inner().expect("results lock").into_iter().map(|result| result.expect("every seed ran")).collect()
}
