//! `quorate-sim`: sweep seed ranges, replay one seed, check determinism.
//!
//! Run it through the cargo aliases (`cargo sim ...`, or `cargo sim-teeth
//! ...` with the planted bugs compiled in), which build it with `--cfg
//! madsim` in its own target dir.

#[cfg(not(madsim))]
fn main() {
    eprintln!("quorate-sim must be built with --cfg madsim: run it as `cargo sim ...` (see the README)");
    std::process::exit(2);
}

#[cfg(madsim)]
fn main() -> std::process::ExitCode {
    cli::main()
}

#[cfg(madsim)]
mod cli {
    use std::fmt::Write as _;
    use std::path::PathBuf;
    use std::process::ExitCode;
    use std::time::{Duration, Instant};

    use clap::{Parser, Subcommand};
    use indicatif::{ProgressBar, ProgressStyle};
    use quorate_core::teeth::Plant;
    use quorate_sim::harness::quiet_panics;
    use quorate_sim::invariants::d1;
    use quorate_sim::{Options, Plan, Scenario, SeedResult, replay_line, run_seed, sweep};

    #[derive(Parser)]
    #[command(name = "quorate-sim", version, about = "Seeded fault-injection simulation of quorate under madsim")]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    #[derive(Subcommand)]
    enum Command {
        /// Run a range of seeds of one or more scenarios; exit 1 on any failure.
        Sweep {
            /// Scenarios: a comma-separated list, or `all`.
            #[arg(long, value_parser = parse_scenarios)]
            scenario: ScenarioList,
            /// How many seeds of each scenario.
            #[arg(long, default_value_t = 100)]
            seeds: u64,
            /// The first seed.
            #[arg(long, default_value_t = 0)]
            start: u64,
            /// Simulations run at once, one thread each.
            #[arg(long, default_value_t = 1)]
            jobs: usize,
            /// Plant a known bug (`cargo sim-teeth` only).
            #[arg(long)]
            plant: Option<Plant>,
            /// No progress bar (CI logs).
            #[arg(long)]
            no_progress: bool,
        },
        /// Run one seed, printing its plan, its full trace and the trace hash.
        Replay {
            #[arg(long, value_enum)]
            scenario: Scenario,
            #[arg(long)]
            seed: u64,
            /// Also write the trace to this file, one line per step or event.
            #[arg(long)]
            trace: Option<PathBuf>,
            /// Plant a known bug (`cargo sim-teeth` only).
            #[arg(long)]
            plant: Option<Plant>,
            /// Log filter for the adapter's and the core's own logs, with
            /// member and virtual time on every line (e.g. `quorate=debug`).
            #[arg(long, default_value = "warn")]
            log: String,
        },
        /// Run each seed twice and compare the trace hashes (D1).
        CheckDeterminism {
            #[arg(long, value_parser = parse_scenarios)]
            scenario: ScenarioList,
            #[arg(long, default_value_t = 10)]
            seeds: u64,
            #[arg(long, default_value_t = 0)]
            start: u64,
            #[arg(long, default_value_t = 1)]
            jobs: usize,
            #[arg(long)]
            plant: Option<Plant>,
        },
        /// Print the plan a seed draws, without running it.
        Plan {
            #[arg(long, value_enum)]
            scenario: Scenario,
            #[arg(long)]
            seed: u64,
        },
    }

    #[derive(Clone, Debug)]
    struct ScenarioList(Vec<Scenario>);

    fn parse_scenarios(list: &str) -> Result<ScenarioList, String> {
        if list == "all" {
            return Ok(ScenarioList(Scenario::ALL.to_vec()));
        }
        list.split(',')
            .map(|name| {
                Scenario::ALL.into_iter().find(|scenario| scenario.name() == name.trim()).ok_or_else(|| {
                    let names: Vec<&str> = Scenario::ALL.iter().map(|scenario| scenario.name()).collect();
                    format!("no scenario {name:?}: one of {}, or all", names.join(", "))
                })
            })
            .collect::<Result<_, _>>()
            .map(ScenarioList)
    }

    pub fn main() -> ExitCode {
        let cli = Cli::parse();
        let plant = match &cli.command {
            Command::Sweep { plant, .. } | Command::Replay { plant, .. } | Command::CheckDeterminism { plant, .. } => {
                *plant
            }
            Command::Plan { .. } => None,
        };
        if plant.is_some() && !cfg!(feature = "teeth") {
            eprintln!("error: --plant needs the planted bugs compiled in: run `cargo sim-teeth ...`");
            return ExitCode::from(2);
        }
        match cli.command {
            Command::Sweep { scenario, seeds, start, jobs, plant, no_progress } => {
                run_sweep(&scenario.0, start, seeds, jobs, plant, no_progress)
            }
            Command::Replay { scenario, seed, trace, plant, log } => replay(scenario, seed, trace, plant, &log),
            Command::CheckDeterminism { scenario, seeds, start, jobs, plant } => {
                check_determinism(&scenario.0, start, seeds, jobs, plant)
            }
            Command::Plan { scenario, seed } => {
                println!("{}", Plan::new(scenario, seed));
                ExitCode::SUCCESS
            }
        }
    }

    fn progress_bar(len: usize, hidden: bool) -> ProgressBar {
        if hidden {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(len as u64);
        bar.set_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} seeds, {msg}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar
    }

    fn run_sweep(
        scenarios: &[Scenario],
        start: u64,
        seeds: u64,
        jobs: usize,
        plant: Option<Plant>,
        no_progress: bool,
    ) -> ExitCode {
        quiet_panics();
        let work: Vec<(Scenario, u64)> = scenarios
            .iter()
            .flat_map(|&scenario| (start..start.saturating_add(seeds)).map(move |s| (scenario, s)))
            .collect();
        let bar = progress_bar(work.len(), no_progress);
        let failures = std::sync::atomic::AtomicUsize::new(0);
        let options = Options { plant, ..Options::default() };
        let started = Instant::now();
        let results = sweep(&work, jobs, &options, |result| {
            if result.outcome.failure.is_some() {
                let n = failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                bar.println(format!("FAIL {}", replay_line(&result.plan, plant)));
                bar.set_message(format!("{n} failed"));
            }
            bar.inc(1);
        });
        bar.finish_and_clear();
        let wall = started.elapsed();
        print!("{}", summary(scenarios, &results, wall, jobs));
        let failed: Vec<&SeedResult> = results.iter().filter(|result| result.outcome.failure.is_some()).collect();
        if failed.is_empty() {
            println!("all {} seeds passed", results.len());
            return ExitCode::SUCCESS;
        }
        println!("\n{} of {} seeds failed; replay each with:", failed.len(), results.len());
        for result in failed {
            let failure = result.outcome.failure.as_ref().expect("failed");
            let first_line = failure.to_string();
            let first_line = first_line.lines().next().unwrap_or_default();
            println!("  {}\n      {first_line}", replay_line(&result.plan, plant));
        }
        ExitCode::FAILURE
    }

    /// The sweep's table: per scenario, seeds passed and failed, simulated
    /// seconds per wall second, seeds per second.
    fn summary(scenarios: &[Scenario], results: &[SeedResult], wall: Duration, jobs: usize) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<10} {:>6} {:>6} {:>6} {:>10} {:>9} {:>9} {:>8} {:>10} {:>10} {:>10}",
            "scenario",
            "seeds",
            "passed",
            "failed",
            "simulated",
            "wall",
            "sim/wall",
            "seeds/s",
            "L1 median",
            "client ops",
            "LIN unchkd"
        );
        for &scenario in scenarios {
            let of: Vec<&SeedResult> = results.iter().filter(|result| result.plan.scenario == scenario).collect();
            let failed = of.iter().filter(|result| result.outcome.failure.is_some()).count();
            let simulated: Duration = of.iter().map(|result| result.outcome.simulated).sum();
            // Per-seed wall time, summed: with several jobs the table reports
            // the simulator's speed, and the last line the sweep's.
            let busy: Duration = of.iter().map(|result| result.wall).sum();
            let mut settled: Vec<Duration> = of.iter().filter_map(|result| result.outcome.settled_after).collect();
            settled.sort();
            let median =
                settled.get(settled.len() / 2).map_or_else(|| "-".to_owned(), |d| format!("{:.2}s", d.as_secs_f64()));
            let ops: usize = of.iter().map(|result| result.outcome.client_ops.0).sum();
            // Keys whose linearizability search ran out of budget: neither passed nor failed.
            let unchecked: usize = of.iter().map(|result| result.outcome.lin_unchecked).sum();
            let _ = writeln!(
                out,
                "{:<10} {:>6} {:>6} {:>6} {:>9.0}s {:>8.1}s {:>8.0}x {:>8.2} {:>10} {:>10} {:>10}",
                scenario.name(),
                of.len(),
                of.len() - failed,
                failed,
                simulated.as_secs_f64(),
                busy.as_secs_f64(),
                simulated.as_secs_f64() / busy.as_secs_f64().max(1e-9),
                of.len() as f64 / busy.as_secs_f64().max(1e-9),
                median,
                ops,
                unchecked
            );
        }
        let _ = writeln!(
            out,
            "{} seeds in {:.1}s wall on {jobs} job(s): {:.2} seeds/s",
            results.len(),
            wall.as_secs_f64(),
            results.len() as f64 / wall.as_secs_f64().max(1e-9)
        );
        out
    }

    fn replay(scenario: Scenario, seed: u64, trace: Option<PathBuf>, plant: Option<Plant>, log: &str) -> ExitCode {
        let filter =
            tracing_subscriber::EnvFilter::try_new(format!("quorate_sim::trace=info,{log}")).unwrap_or_else(|error| {
                eprintln!("error: --log {log:?}: {error}");
                std::process::exit(2);
            });
        tracing_subscriber::fmt().with_env_filter(filter).with_timer(VirtualTime).with_target(false).init();
        let plan = Plan::new(scenario, seed);
        println!("{plan}");
        println!("{}", replay_line(&plan, plant));
        let options = Options { plant, keep_trace: trace.is_some(), print_trace: true };
        let result = run_seed(scenario, seed, &options);
        let outcome = &result.outcome;
        if let (Some(path), Some(lines)) = (&trace, &outcome.trace) {
            let mut text = lines.join("\n");
            text.push('\n');
            if let Err(error) = std::fs::write(path, text) {
                eprintln!("error: cannot write the trace to {}: {error}", path.display());
                return ExitCode::from(2);
            }
        }
        println!(
            "trace hash {:016x} ({} lines); {:.1}s simulated in {:.2}s; {} steps, {} terms, {} epochs, {} stable; \
             {} writes lost to kills; buggify sites {} reached, {} active; {} client ops ({} answered), \
             {} keys unchecked for linearizability",
            outcome.trace_hash,
            outcome.trace_lines,
            outcome.simulated.as_secs_f64(),
            result.wall.as_secs_f64(),
            outcome.steps,
            outcome.terms,
            outcome.epochs,
            outcome.stable_epochs,
            outcome.lost_writes,
            outcome.buggify_sites.0,
            outcome.buggify_sites.1,
            outcome.client_ops.0,
            outcome.client_ops.1,
            outcome.lin_unchecked
        );
        match &outcome.failure {
            None => {
                println!(
                    "passed; L1 {}",
                    outcome
                        .settled_after
                        .map_or_else(|| "-".to_owned(), |d| format!("held {:.2}s after the faults", d.as_secs_f64()))
                );
                ExitCode::SUCCESS
            }
            Some(failure) => {
                println!("FAILED: {failure}");
                ExitCode::FAILURE
            }
        }
    }

    fn check_determinism(
        scenarios: &[Scenario],
        start: u64,
        seeds: u64,
        jobs: usize,
        plant: Option<Plant>,
    ) -> ExitCode {
        quiet_panics();
        let work: Vec<(Scenario, u64)> = scenarios
            .iter()
            .flat_map(|&scenario| {
                (start..start.saturating_add(seeds)).flat_map(move |s| [(scenario, s), (scenario, s)])
            })
            .collect();
        let options = Options { plant, ..Options::default() };
        let bar = progress_bar(work.len(), false);
        let results = sweep(&work, jobs, &options, |_| bar.inc(1));
        bar.finish_and_clear();
        let mut diverged = 0;
        for pair in results.chunks(2) {
            let (a, b) = (&pair[0].outcome, &pair[1].outcome);
            match d1::check((a.trace_hash, a.trace_lines), (b.trace_hash, b.trace_lines)) {
                Ok(()) => {}
                Err(violation) => {
                    diverged += 1;
                    println!("{violation}\n  {}", replay_line(&pair[0].plan, plant));
                }
            }
        }
        let runs = results.len() / 2;
        if diverged == 0 {
            println!("D1 holds: {runs} seeds, each run twice, gave the same trace hash twice");
            ExitCode::SUCCESS
        } else {
            println!("D1 violated: {diverged} of {runs} seeds gave two traces");
            ExitCode::FAILURE
        }
    }

    /// Log timestamps in the simulation's virtual time.
    struct VirtualTime;

    impl tracing_subscriber::fmt::time::FormatTime for VirtualTime {
        fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
            match madsim::time::TimeHandle::try_current() {
                Some(time) => write!(w, "{:>10.6}s", time.elapsed().as_secs_f64()),
                None => write!(w, "{:>11}", "-"),
            }
        }
    }
}
