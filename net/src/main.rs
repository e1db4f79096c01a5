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

    use quorate::{Cluster, Event, MemberId, Profile, State};
    use tokio::time::Instant;

    use crate::cli::{DemoArgs, ProfileArg};

    type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

    /// How long any step may take before the demo says the cluster is unwell.
    const STEP_LIMIT: Duration = Duration::from_secs(60);
    /// Keys each member's demo application "serves", to show rebalancing.
    const KEYS: u64 = 1000;

    struct Demo {
        started: Instant,
        profile: Profile,
        quiet: bool,
        expect: u32,
        members: Vec<Option<Cluster>>,
    }

    pub async fn run(args: DemoArgs) -> Result<()> {
        let profile = match args.profile {
            ProfileArg::Lan => Profile::Lan,
            ProfileArg::Fast => Profile::Fast,
        };
        let count = usize::from(args.members);
        let expect = u32::from(args.members.min(5));
        let mut demo = Demo { started: Instant::now(), profile, quiet: args.quiet, expect, members: Vec::new() };
        println!(
            "Starting {count} members on {} ({profile:?} profile); the first {expect} bootstrap the cluster.",
            args.ip
        );
        println!("(State is kept in memory, so these voters are ephemeral: fine for a demo, not for production.)");
        for index in 0..count {
            let port =
                if args.port == 0 { 0 } else { args.port.checked_add(index as u16).ok_or("port range overflows")? };
            let seed = demo.members.first().and_then(|m| m.as_ref()).map(Cluster::addr);
            let bootstrap = index < expect as usize;
            let member =
                demo.start(&format!("n{}", index + 1), SocketAddr::new(args.ip, port), seed, bootstrap).await?;
            println!("  {} listening on {} (durable id {})", member.name(), member.addr(), member.id());
            demo.members.push(Some(member));
        }

        let formed = demo.wait("one leader and one stable view of every member", settled).await?;
        println!("\nCluster formed and stable after {formed:.2?}: {}.\n", demo.summary());
        demo.print_table();

        let leader = demo.leader_slot().ok_or("no leader")?;
        let leader_name = demo.members[leader].as_ref().map(|m| m.name().to_owned()).unwrap_or_default();
        let leader_id = demo.members[leader].as_ref().map(Cluster::id).ok_or("no leader")?;
        println!("\nCrashing the leader, {leader_name}: it stops without a goodbye.");
        let crashed_at = Instant::now();
        demo.members[leader] = None;
        let elected = demo
            .wait("a new leader known to every survivor", |members| {
                let mut leaders = live(members).map(Cluster::leader);
                let first = leaders.next().flatten();
                first.is_some_and(|l| l != leader_id) && leaders.all(|l| l == first)
            })
            .await?;
        println!("New leader known to every survivor {elected:.2?} after the crash.");
        demo.wait("a stable view without the crashed leader", settled).await?;
        println!(
            "Stable view without {leader_name} {:.2?} after the crash: {}.\n",
            crashed_at.elapsed(),
            demo.summary()
        );

        println!("Restarting {leader_name} without its data: a new durable id under the same name.");
        let seed = live(&demo.members).next().map(Cluster::addr);
        let reborn = demo.start(&leader_name, SocketAddr::new(args.ip, 0), seed, false).await?;
        println!("  {} is back as {}", reborn.name(), reborn.id());
        demo.members[leader] = Some(reborn);
        let back = demo.wait("a stable view with the restarted member", settled).await?;
        println!("Stable view with it after {back:.2?}: {}.\n", demo.summary());

        let leaver =
            demo.members.iter().rposition(|m| m.as_ref().is_some_and(|m| !m.is_leader())).ok_or("no follower")?;
        let member = demo.members[leaver].take().ok_or("no member")?;
        let leaver_name = member.name().to_owned();
        println!("{leaver_name} leaves gracefully.");
        let leave_started = Instant::now();
        member.leave().await?;
        demo.wait("a stable view without the leaver", settled).await?;
        println!(
            "{leaver_name} left; stable view without it {:.2?} later: {}.\n",
            leave_started.elapsed(),
            demo.summary()
        );
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
        println!("Stopping every member.");
        for member in demo.members.into_iter().flatten() {
            member.shutdown().await;
        }
        Ok(())
    }

    fn live(members: &[Option<Cluster>]) -> impl Iterator<Item = &Cluster> {
        members.iter().flatten()
    }

    /// Every running member knows the same leader, holds every running member
    /// alive, and sees one stable view of exactly them.
    fn settled(members: &[Option<Cluster>]) -> bool {
        let mut running: Vec<MemberId> = live(members).map(Cluster::id).collect();
        running.sort();
        let leader = live(members).next().and_then(Cluster::leader);
        leader.is_some()
            && live(members).all(|member| {
                let mut alive: Vec<_> =
                    member.members().iter().filter(|i| i.state == State::Alive).map(|i| i.id).collect();
                alive.sort();
                member.leader() == leader
                    && alive == running
                    && member.is_stable()
                    && member.view().is_some_and(|view| view.ids().collect::<Vec<_>>() == running)
            })
    }

    impl Demo {
        async fn start(
            &self,
            name: &str,
            bind: SocketAddr,
            seed: Option<SocketAddr>,
            bootstrap: bool,
        ) -> Result<Cluster> {
            let mut builder = Cluster::builder()
                .cluster("demo")
                .node(name)
                .bind(bind)
                .profile(self.profile)
                .allow_ephemeral_voters(true)
                .join(seed);
            if bootstrap {
                builder = builder.bootstrap_expect(self.expect);
            }
            let member = builder.start().await?;
            // The demo application: on every new view, "move" the keys it now
            // owns, then ack the epoch.
            let (name, started, quiet, id) = (name.to_owned(), self.started, self.quiet, member.id());
            let view_name = name.clone();
            member.on_rebalance(move |view, done| {
                let placement = view.placement();
                let owned = (0..KEYS).filter(|&key| placement.owner_u64(key) == Some(id)).count();
                if !quiet {
                    let at = started.elapsed().as_secs_f64();
                    let (epoch, size) = (view.epoch, view.members.len());
                    println!(
                        "    {at:>7.3}s  {view_name}: view {epoch} of {size} members: owns {owned} of {KEYS} keys"
                    );
                }
                done.ack();
            });
            if !quiet {
                let mut events = member.events();
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

        fn leader_slot(&self) -> Option<usize> {
            self.members.iter().position(|m| m.as_ref().is_some_and(Cluster::is_leader))
        }

        fn summary(&self) -> String {
            let Some(member) = live(&self.members).next() else { return "no members".to_owned() };
            let leader = member
                .leader()
                .and_then(|l| member.members().into_iter().find(|m| m.id == l))
                .map(|m| m.name.to_string());
            let view = member.view();
            format!(
                "leader {} (term {}), view {} of {} members",
                leader.unwrap_or_else(|| "none".to_owned()),
                member.term(),
                view.as_ref().map_or(0, |v| v.epoch),
                view.as_ref().map_or(0, |v| v.members.len())
            )
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
            let view = observer.view();
            println!(
                "  {:<6} {:<22} {:<14} {:<8} {:<7} {:>4}",
                "NAME", "ADDRESS", "DURABLE ID", "STATE", "IN VIEW", "INC"
            );
            let mut members = observer.members();
            members.sort_by(|a, b| (a.name.as_str(), a.id).cmp(&(b.name.as_str(), b.id)));
            for member in members {
                let in_view = view.as_ref().is_some_and(|v| v.contains(member.id));
                let leader = if observer.leader() == Some(member.id) { " (leader)" } else { "" };
                println!(
                    "  {:<6} {:<22} {:<14} {:<8} {:<7} {:>4}{leader}",
                    member.name.as_str(),
                    member.addr.to_string(),
                    member.id.to_string(),
                    member.state.as_str(),
                    if in_view { "yes" } else { "no" },
                    member.incarnation
                );
            }
            println!("  (as {} sees it)", observer.name());
        }
    }

    fn describe(event: &Event) -> Option<String> {
        Some(match event {
            Event::MemberJoined(info) => format!("{} joined ({})", info.name, info.id),
            Event::MemberSuspected(info) => format!("{} is suspect", info.name),
            Event::MemberRecovered(info) => format!("{} refuted the suspicion", info.name),
            Event::MemberFailed(info) => format!("{} ({}) failed", info.name, info.id),
            Event::MemberLeft(info) => format!("{} left", info.name),
            Event::NameConflict { name, other } => format!("name conflict: {name} is also used by {other}"),
            Event::Bootstrapped { voters, .. } => format!("bootstrapped a cluster of {} voters", voters.len()),
            Event::BootstrapRefused { reason } => format!("not bootstrapping: {reason}"),
            Event::JoinedCluster { .. } => "joined the cluster's log".to_owned(),
            Event::LeaderChanged { leader: Some(leader), term } => format!("leader is {leader} (term {term})"),
            Event::ClusterStable { epoch } => format!("as leader: cluster stable at view {epoch}"),
            Event::LeaveComplete => "left the cluster".to_owned(),
            Event::Fenced { by } => format!("fenced: our cluster was recovered elsewhere as {by:?}"),
            Event::Joined
            | Event::MemberRestarted(_)
            | Event::MemberUpdated(_)
            | Event::MemberReaped(_)
            | Event::LeaderChanged { leader: None, .. }
            | Event::Rebalance(_) => return None,
        })
    }
}
