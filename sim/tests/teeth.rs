//! Teeth: a checker that has never caught a bug is not done. Each planted
//! bug (`quorate_core::teeth`, the `teeth` feature) must be found by a sweep
//! of its scenario within the number of seeds stated here, by the invariant
//! it breaks; the test prints the replay line of the seed that found it.
//!
//! Run with the planted bugs compiled in:
//! `RUSTFLAGS="--cfg madsim" cargo test --release -p quorate-sim --features teeth --target-dir target/madsim`
//! (`scripts/test-all` does).

#![cfg(all(madsim, feature = "teeth"))]

use quorate_core::teeth::Plant;
use quorate_sim::harness::quiet_panics;
use quorate_sim::{Options, Scenario, replay_line, run_seed};

/// Sweeps `scenario` from seed 0 with `plant` until a seed fails; asserts
/// that one does within `within` seeds, and that `invariant` caught it.
fn found(plant: Plant, scenario: Scenario, invariant: &str, within: u64) {
    quiet_panics();
    let options = Options { plant: Some(plant), ..Options::default() };
    for seed in 0..within {
        let result = run_seed(scenario, seed, &options);
        let Some(failure) = &result.outcome.failure else { continue };
        let first = failure.to_string();
        let first = first.lines().next().unwrap_or_default();
        assert_eq!(
            failure.kind(),
            invariant,
            "{plant}: seed {seed} of {scenario} failed, but not by {invariant}: {first}"
        );
        println!(
            "{plant}: found by {invariant} at seed {seed} of {scenario} ({} of {within} seeds)\n  {first}\n  {}",
            seed + 1,
            replay_line(&result.plan, Some(plant))
        );
        return;
    }
    panic!("{plant}: no seed of {scenario} in 0..{within} found it");
}

#[test]
fn a_double_vote_is_caught_by_s1() {
    found(Plant::DoubleVote, Scenario::Partition, "S1", 60);
}

#[test]
fn a_stable_one_ack_early_is_caught_by_s4() {
    found(Plant::EarlyStable, Scenario::Steady, "S4", 20);
}

#[test]
fn a_view_delivered_out_of_order_is_caught_by_s3() {
    found(Plant::ViewOutOfOrder, Scenario::Crash, "S3", 30);
}

#[test]
fn a_read_answered_from_local_state_is_caught_by_the_linearizability_check() {
    found(Plant::StaleRead, Scenario::Mixed, "LIN", 10);
}
