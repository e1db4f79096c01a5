//! The `quorate` command: `quorate demo` runs a live local cluster.
//!
//! The operator commands (`agent`, `status`, `members`, `recover`) arrive
//! with the rest of the adapter.

#[cfg(madsim)]
fn main() {
    // The simulator drives the library directly; this binary is not built for it.
}

#[cfg(not(madsim))]
fn main() -> std::process::ExitCode {
    use clap::Parser;

    let cli = cli::Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(match cli.command {
        cli::Command::Demo(args) => demo::run(args),
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(not(madsim))]
mod cli {
    use std::net::IpAddr;

    use clap::{Args, Parser, Subcommand, ValueEnum};

    /// quorate: membership, leader election and rebalancing for any tokio service.
    #[derive(Parser, Debug)]
    #[command(version, about)]
    pub struct Cli {
        #[command(subcommand)]
        pub command: Command,
    }

    #[derive(Subcommand, Debug)]
    pub enum Command {
        /// Run a live cluster on this machine and walk through failure
        /// detection, restart and graceful leave, then keep it running.
        Demo(DemoArgs),
    }

    #[derive(Args, Debug)]
    pub struct DemoArgs {
        /// Members to start (at least 3, so one can fail and one can leave).
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(3..=64))]
        pub members: u16,
        /// Address to bind every member on.
        #[arg(long, default_value = "127.0.0.1")]
        pub ip: IpAddr,
        /// First port; members use consecutive ports. 0 lets the OS pick each.
        #[arg(long, default_value_t = 0)]
        pub port: u16,
        /// Timing profile.
        #[arg(long, value_enum, default_value_t = ProfileArg::Fast)]
        pub profile: ProfileArg,
        /// Stop after this many seconds once the walkthrough is over (default: run until Ctrl-C).
        #[arg(long)]
        pub duration: Option<u64>,
        /// Print only the walkthrough, not every member's events.
        #[arg(long)]
        pub quiet: bool,
    }

    #[derive(Clone, Copy, Debug, ValueEnum)]
    pub enum ProfileArg {
        /// The default for real deployments (500 ms protocol period).
        Lan,
        /// Five times faster (100 ms protocol period).
        Fast,
    }
}

#[cfg(not(madsim))]
mod demo {
    use std::net::SocketAddr;
    use std::time::Duration;

    use quorate::{Cluster, Event, Profile, State};
    use tokio::time::Instant;

    use crate::cli::{DemoArgs, ProfileArg};

    type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

    /// How long any step may take before the demo says the cluster is unwell.
    const STEP_LIMIT: Duration = Duration::from_secs(60);

    struct Demo {
        started: Instant,
        profile: Profile,
        quiet: bool,
        members: Vec<Option<Cluster>>,
    }

    pub async fn run(args: DemoArgs) -> Result<()> {
        let profile = match args.profile {
            ProfileArg::Lan => Profile::Lan,
            ProfileArg::Fast => Profile::Fast,
        };
        let mut demo = Demo { started: Instant::now(), profile, quiet: args.quiet, members: Vec::new() };
        let count = usize::from(args.members);
        println!("Starting {count} members on {} ({:?} profile).", args.ip, profile);
        for index in 0..count {
            let port =
                if args.port == 0 { 0 } else { args.port.checked_add(index as u16).ok_or("port range overflows")? };
            let seed = demo.members.first().and_then(|m| m.as_ref()).map(Cluster::addr);
            let member = demo.start(&format!("n{}", index + 1), SocketAddr::new(args.ip, port), seed).await?;
            println!("  {} listening on {} (durable id {})", member.name(), member.addr(), member.id());
            demo.members.push(Some(member));
        }

        let formed = demo.wait("every member sees every other alive", all_see_all).await?;
        println!("Cluster formed in {formed:.2?}.\n");
        demo.print_table();

        let victim = count - 1;
        let victim_name = format!("n{count}");
        let victim_id = demo.members[victim].as_ref().expect("started").id();
        println!("\nCrashing {victim_name}: it stops without a goodbye.");
        demo.members[victim] = None;
        let detected = demo
            .wait("every survivor marks the crashed member dead", |members| {
                live(members).all(|m| m.members().iter().any(|i| i.id == victim_id && i.state == State::Dead))
            })
            .await?;
        println!("Every survivor marked {victim_name} dead after {detected:.2?}.\n");

        println!("Restarting {victim_name} without its data: a new durable id under the same name.");
        let seed = demo.members[0].as_ref().map(Cluster::addr);
        let reborn = demo.start(&victim_name, SocketAddr::new(args.ip, 0), seed).await?;
        let reborn_id = reborn.id();
        demo.members[victim] = Some(reborn);
        let rejoined = demo.wait("every member sees the restarted member alive", all_see_all).await?;
        println!("{victim_name} is back as {reborn_id} after {rejoined:.2?}; its old id {victim_id} stays dead.\n");

        let leaver = count - 2;
        let leaver_name = format!("n{}", count - 1);
        let leaver_id = demo.members[leaver].as_ref().expect("started").id();
        println!("{leaver_name} leaves gracefully.");
        let member = demo.members[leaver].take().expect("started");
        member.leave().await?;
        let left = demo
            .wait("every member holds the leaver as left", |members| {
                live(members).all(|m| m.members().iter().any(|i| i.id == leaver_id && i.state == State::Left))
            })
            .await?;
        println!("Every member holds {leaver_name} as left after {left:.2?}; nobody reported it as failed.\n");
        demo.print_table();

        match args.duration {
            Some(seconds) => {
                println!("\nRunning for {seconds} s more.");
                tokio::time::sleep(Duration::from_secs(seconds)).await;
            }
            None => {
                println!("\nThe cluster keeps running; press Ctrl-C to stop.");
                tokio::signal::ctrl_c().await?;
            }
        }
        for member in demo.members.into_iter().flatten() {
            member.leave().await?;
        }
        println!("Every member left. Bye.");
        Ok(())
    }

    fn live(members: &[Option<Cluster>]) -> impl Iterator<Item = &Cluster> {
        members.iter().flatten()
    }

    /// Every running member holds exactly the running members alive.
    fn all_see_all(members: &[Option<Cluster>]) -> bool {
        let mut running: Vec<_> = live(members).map(Cluster::id).collect();
        running.sort();
        live(members).all(|member| {
            let mut alive: Vec<_> = member.members().iter().filter(|i| i.state == State::Alive).map(|i| i.id).collect();
            alive.sort();
            alive == running
        })
    }

    impl Demo {
        async fn start(&self, name: &str, bind: SocketAddr, seed: Option<SocketAddr>) -> Result<Cluster> {
            let member = Cluster::builder()
                .cluster("demo")
                .node(name)
                .bind(bind)
                .profile(self.profile)
                .join(seed)
                .start()
                .await?;
            if !self.quiet {
                let mut events = member.events();
                let (name, started) = (name.to_owned(), self.started);
                tokio::spawn(async move {
                    while let Ok(event) = events.recv().await {
                        if let Some(line) = describe(&event) {
                            println!("    {:>7.3}s  {name}: {line}", started.elapsed().as_secs_f64());
                        }
                    }
                });
            }
            Ok(member)
        }

        /// Waits until `done` holds, checking every few milliseconds; how long it took.
        async fn wait(&self, what: &str, done: impl Fn(&[Option<Cluster>]) -> bool) -> Result<Duration> {
            let since = Instant::now();
            while !done(&self.members) {
                if since.elapsed() > STEP_LIMIT {
                    return Err(format!("not done after {STEP_LIMIT:?}: {what}").into());
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok(since.elapsed())
        }

        fn print_table(&self) {
            let Some(observer) = live(&self.members).next() else { return };
            println!("  {:<6} {:<22} {:<14} {:<8} {:>4}", "NAME", "ADDRESS", "DURABLE ID", "STATE", "INC");
            let mut members = observer.members();
            members.sort_by(|a, b| (a.name.as_str(), a.id).cmp(&(b.name.as_str(), b.id)));
            for member in members {
                println!(
                    "  {:<6} {:<22} {:<14} {:<8} {:>4}",
                    member.name.as_str(),
                    member.addr.to_string(),
                    member.id.to_string(),
                    member.state.as_str(),
                    member.incarnation
                );
            }
            println!("  (as {} sees it)", observer.name());
        }
    }

    fn describe(event: &Event) -> Option<String> {
        Some(match event {
            Event::Joined => "joined the cluster".to_owned(),
            Event::MemberJoined(info) => format!("{} joined ({})", info.name, info.id),
            Event::MemberRestarted(info) => format!("{} restarted (boot {})", info.name, info.boot_id),
            Event::MemberSuspected(info) => format!("{} is suspect", info.name),
            Event::MemberRecovered(info) => format!("{} refuted the suspicion", info.name),
            Event::MemberFailed(info) => format!("{} ({}) failed", info.name, info.id),
            Event::MemberLeft(info) => format!("{} left", info.name),
            Event::NameConflict { name, other } => format!("name conflict: {name} is also used by {other}"),
            Event::LeaveComplete => "left the cluster".to_owned(),
            Event::Bootstrapped { voters, .. } => format!("bootstrapped a cluster of {} voters", voters.len()),
            Event::BootstrapRefused { reason } => format!("not bootstrapping: {reason}"),
            Event::JoinedCluster { .. } => "joined an existing cluster".to_owned(),
            Event::LeaderChanged { leader: Some(leader), term } => format!("leader is {leader} (term {term})"),
            Event::LeaderChanged { leader: None, .. } => "no leader known".to_owned(),
            Event::Rebalance(view) => format!("view {} of {} members", view.epoch, view.members.len()),
            Event::ClusterStable { epoch } => format!("cluster stable at view {epoch}"),
            Event::MemberUpdated(_) | Event::MemberReaped(_) => return None,
        })
    }
}
