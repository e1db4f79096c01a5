//! The `quorate` command: `agent` runs a member, `status` and `members` ask
//! one through its admin API, `recover` rescues a cluster that lost quorum for
//! good, and `demo` runs a live local cluster.

#[cfg(madsim)]
fn main() {
    // The simulator drives the library directly; this binary is not built for it.
}

#[cfg(not(madsim))]
fn main() -> std::process::ExitCode {
    use clap::Parser;

    let cli = cli::Cli::parse();
    let json = matches!(&cli.command, cli::Command::Agent(args) if args.log_format == cli::LogFormat::Json);
    let default_level = if matches!(cli.command, cli::Command::Agent(_)) { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default_level.into());
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colour);
    if json {
        logs.json().init();
    } else {
        logs.init();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            cli::Command::Demo(args) => demo::run(args).await,
            cli::Command::Agent(args) => agent::run(*args).await,
            cli::Command::Status(args) => client::status(args),
            cli::Command::Members(args) => client::members(args),
            cli::Command::Kv(args) => client::kv(args),
            cli::Command::Routes(args) => client::routes(args),
            cli::Command::Recover(args) => recover::run(args).await,
        }
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
type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[cfg(not(madsim))]
mod cli {
    use std::net::{IpAddr, SocketAddr};
    use std::path::PathBuf;

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
        /// Run one member. SIGINT or SIGTERM leaves gracefully; a second one exits at once.
        Agent(Box<AgentArgs>),
        /// Show a member's view of the cluster (through its --http address).
        Status(ClientArgs),
        /// List the members a member knows (through its --http address).
        Members(ClientArgs),
        /// Read, write and watch the replicated KV store (through a member's --http address).
        Kv(KvArgs),
        /// List the live members serving modules (their module, version and
        /// endpoints tags), through a member's --http address.
        Routes(ClientArgs),
        /// Recover from a permanent loss of quorum: make the member whose data
        /// dir this is the only voter of a new cluster.
        Recover(RecoverArgs),
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

    #[derive(Args, Debug)]
    pub struct AgentArgs {
        /// The cluster's name; members of other names are refused.
        #[arg(long, default_value = "quorate")]
        pub cluster: String,
        /// This member's name.
        #[arg(long)]
        pub name: String,
        /// Address to listen on, UDP and TCP.
        #[arg(long)]
        pub bind: SocketAddr,
        /// Address other members reach this one at (default: the bind address).
        #[arg(long)]
        pub advertise: Option<SocketAddr>,
        /// A member to join through, HOST:PORT; repeatable, any one reachable is enough.
        #[arg(long)]
        pub join: Vec<String>,
        /// Where to find members: static:ADDR[,ADDR...], dns:HOST:PORT, srv:NAME[@DNS-SERVER:PORT] or file:PATH.
        #[arg(long)]
        pub discovery: Option<String>,
        /// Where durable state lives (default ./NAME.quorate).
        #[arg(long)]
        pub data_dir: Option<PathBuf>,
        /// A tag, KEY=VALUE; repeatable.
        #[arg(long = "tag", value_parser = parse_tag)]
        pub tags: Vec<(String, String)>,
        /// Serve the admin HTTP API on this address.
        #[arg(long)]
        pub http: Option<SocketAddr>,
        /// Bootstrap a new cluster with exactly this many members, all started alike.
        #[arg(long, conflicts_with = "bootstrap", value_parser = clap::value_parser!(u32).range(1..))]
        pub bootstrap_expect: Option<u32>,
        /// Bootstrap a cluster of this member alone.
        #[arg(long)]
        pub bootstrap: bool,
        /// Timing profile.
        #[arg(long, value_enum, default_value_t = ProfileArg::Lan)]
        pub profile: ProfileArg,
        /// Raft heartbeat interval in milliseconds, overriding the profile's
        /// (as etcd's flag); needs --election-timeout, at least twice as long.
        #[arg(long, value_name = "MS", requires = "election_timeout", value_parser = clap::value_parser!(u64).range(1..))]
        pub heartbeat_interval: Option<u64>,
        /// Shortest Raft election timeout in milliseconds; each is drawn up to
        /// twice this (as etcd's flag). Needs --heartbeat-interval.
        #[arg(long, value_name = "MS", requires = "heartbeat_interval", value_parser = clap::value_parser!(u64).range(1..))]
        pub election_timeout: Option<u64>,
        /// Log format.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        pub log_format: LogFormat,
    }

    #[derive(Args, Debug)]
    pub struct ClientArgs {
        /// The member's admin HTTP address.
        #[arg(long)]
        pub http: SocketAddr,
        /// Print the JSON the member returned.
        #[arg(long)]
        pub json: bool,
    }

    #[derive(Args, Debug)]
    pub struct KvArgs {
        #[command(flatten)]
        pub client: ClientArgs,
        #[command(subcommand)]
        pub command: KvCommand,
    }

    #[derive(Subcommand, Debug)]
    pub enum KvCommand {
        /// Print a key's value (exit 1 if absent).
        Get {
            /// The key.
            key: String,
        },
        /// Set a key; prints the store revision of the write.
        Put {
            /// The key.
            key: String,
            /// The value.
            value: String,
            /// Write only if the key's revision is this (0: only if absent); exit 1 otherwise.
            #[arg(long)]
            cas: Option<u64>,
        },
        /// Delete a key.
        Delete {
            /// The key.
            key: String,
        },
        /// List the keys starting with a prefix, with their values.
        List {
            /// The prefix (default: every key).
            #[arg(default_value = "")]
            prefix: String,
            /// At most this many.
            #[arg(long, default_value_t = 1000)]
            limit: u32,
        },
        /// Print every change to the keys starting with a prefix, one per
        /// line, until interrupted.
        Watch {
            /// The prefix (default: every key).
            #[arg(default_value = "")]
            prefix: String,
            /// Start after this store revision (default: the oldest change the store keeps).
            #[arg(long, default_value_t = 0)]
            after: u64,
        },
    }

    #[derive(Args, Debug)]
    pub struct RecoverArgs {
        /// The stopped member's data dir.
        #[arg(long)]
        pub data_dir: PathBuf,
        /// Confirm: the other members must never rejoin with their current data dirs.
        #[arg(long)]
        pub yes: bool,
    }

    #[derive(Clone, Copy, Debug, ValueEnum)]
    pub enum ProfileArg {
        /// The default for real deployments (500 ms protocol period).
        Lan,
        /// Five times faster (100 ms protocol period).
        Fast,
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
    pub enum LogFormat {
        /// Human-readable lines.
        Text,
        /// One JSON object per line.
        Json,
    }

    fn parse_tag(text: &str) -> Result<(String, String), String> {
        match text.split_once('=') {
            Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
            _ => Err(format!("expected KEY=VALUE, found {text:?}")),
        }
    }
}

#[cfg(not(madsim))]
fn profile(arg: cli::ProfileArg) -> quorate::Profile {
    match arg {
        cli::ProfileArg::Lan => quorate::Profile::Lan,
        cli::ProfileArg::Fast => quorate::Profile::Fast,
    }
}

#[cfg(not(madsim))]
mod agent {
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::time::Duration;

    use quorate::Event;

    use crate::Result;
    use crate::cli::AgentArgs;

    /// How long a graceful leave on a signal may take before the agent exits anyway.
    const LEAVE_LIMIT: Duration = Duration::from_secs(30);

    pub async fn run(args: AgentArgs) -> Result<()> {
        let mut join = Vec::new();
        for target in &args.join {
            let found: Vec<SocketAddr> = tokio::net::lookup_host(target.as_str())
                .await
                .map_err(|error| format!("--join {target}: {error}"))?
                .collect();
            join.extend(found);
        }
        let data_dir = args.data_dir.clone().unwrap_or_else(|| format!("{}.quorate", args.name).into());
        let mut builder = quorate::Cluster::builder()
            .cluster(args.cluster.as_str())
            .node(args.name.as_str())
            .bind(args.bind)
            .profile(crate::profile(args.profile))
            .data_dir(&data_dir)
            .join(join);
        if let Some(advertise) = args.advertise {
            builder = builder.advertise(advertise);
        }
        if let (Some(heartbeat), Some(election)) = (args.heartbeat_interval, args.election_timeout) {
            builder = builder.raft_timing(Duration::from_millis(heartbeat), Duration::from_millis(election));
        }
        for (key, value) in &args.tags {
            builder = builder.tag(key.as_str(), value.as_str())?;
        }
        if let Some(spec) = &args.discovery {
            builder = builder.discovery(quorate::discovery::parse(spec)?);
        }
        if let Some(expect) = args.bootstrap_expect {
            builder = builder.bootstrap_expect(expect);
        } else if args.bootstrap {
            builder = builder.bootstrap();
        }
        let cluster = Arc::new(builder.start().await?);
        tracing::info!(
            name = cluster.name(),
            id = %cluster.id(),
            addr = %cluster.addr(),
            data_dir = %data_dir.display(),
            boot_id = cluster.boot_id(),
            "agent started"
        );
        let _admin = match args.http {
            Some(addr) => {
                let server =
                    quorate::admin::serve(cluster.clone(), addr).await.map_err(|e| format!("--http {addr}: {e}"))?;
                tracing::info!(http = %server.addr(), "admin API listening");
                Some(server)
            }
            None => None,
        };
        // The agent runs no application: it acks every view at once.
        cluster.on_rebalance(|view, done| {
            tracing::info!(epoch = view.epoch, members = view.members.len(), "rebalance: acking");
            done.ack();
        });
        let mut events = cluster.events();
        let printer = tokio::spawn(async move {
            while let Ok(event) = events.recv().await {
                log_event(&event);
            }
        });
        tokio::select! {
            biased;
            () = shutdown_signal() => {}
            stopped = cluster.stopped() => {
                printer.abort();
                // Only a storage failure ends the member on its own.
                stopped?;
                return Err("the member stopped on its own".into());
            }
        }
        tracing::info!("leaving gracefully (a second signal exits at once)");
        let leaving = cluster.clone();
        tokio::select! {
            biased;
            () = shutdown_signal() => {
                tracing::warn!("second signal: exiting without finishing the leave");
                std::process::exit(130);
            }
            left = tokio::time::timeout(LEAVE_LIMIT, leaving.leave()) => match left {
                Ok(Ok(())) => tracing::info!("left the cluster"),
                Ok(Err(error)) => tracing::warn!(%error, "leave failed"),
                Err(_) => tracing::warn!("leave did not finish in {LEAVE_LIMIT:?}; exiting"),
            },
        }
        printer.abort();
        Ok(())
    }

    async fn shutdown_signal() {
        let interrupt = tokio::signal::ctrl_c();
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(terminate) => terminate,
            Err(error) => {
                tracing::warn!(%error, "cannot watch SIGTERM; only SIGINT stops the agent");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            biased;
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }

    fn log_event(event: &Event) {
        match event {
            Event::Joined => tracing::info!("joined: reached another member"),
            Event::MemberJoined(m) => tracing::info!(member = %m.name, id = %m.id, addr = %m.addr, "member joined"),
            Event::MemberRestarted(m) => tracing::info!(member = %m.name, boot_id = m.boot_id, "member restarted"),
            Event::MemberUpdated(m) => tracing::debug!(member = %m.name, "member updated"),
            Event::MemberSuspected(m) => tracing::info!(member = %m.name, "member suspected"),
            Event::MemberRecovered(m) => tracing::info!(member = %m.name, "member refuted the suspicion"),
            Event::MemberFailed(m) => tracing::warn!(member = %m.name, id = %m.id, "member failed"),
            Event::MemberLeft(m) => tracing::info!(member = %m.name, "member left"),
            Event::MemberReaped(id) => tracing::debug!(%id, "member forgotten"),
            Event::NameConflict { name, other } => tracing::error!(%name, %other, "another member uses this name"),
            Event::Bootstrapped { uuid, voters } => {
                tracing::info!(?uuid, voters = voters.len(), "bootstrapped a new cluster")
            }
            Event::BootstrapRefused { reason } => tracing::warn!(%reason, "not bootstrapping"),
            Event::JoinedCluster { uuid } => tracing::info!(?uuid, "joined the cluster"),
            Event::LeaderChanged { leader, term } => tracing::info!(leader = ?leader, term, "leader changed"),
            Event::Rebalance(view) => tracing::debug!(epoch = view.epoch, "new view"),
            Event::ClusterStable(view) => tracing::info!(epoch = view.epoch, "cluster stable (as leader)"),
            Event::LeaveComplete => tracing::info!("leave complete"),
            Event::Fenced { by } => {
                tracing::error!(?by, "fenced: this member's cluster was recovered elsewhere; wipe its data dir")
            }
            // The caller of `apply` has its answer; nothing for the log.
            Event::Applied { .. } | Event::Read { .. } => {}
        }
    }
}

#[cfg(not(madsim))]
mod client {
    use std::fmt::Write as _;
    use std::io::Write as _;

    use serde_json::Value;

    use crate::Result;
    use crate::cli::ClientArgs;

    fn get(args: &ClientArgs, path: &str) -> Result<Value> {
        let url = format!("http://{}{path}", args.http);
        let value = ureq::get(&url)
            .call()
            .map_err(|error| format!("{url}: {error}"))?
            .body_mut()
            .read_json::<Value>()
            .map_err(|error| format!("{url}: {error}"))?;
        Ok(value)
    }

    fn text(value: &Value) -> String {
        match value {
            Value::String(text) => text.clone(),
            Value::Null => "-".to_owned(),
            other => other.to_string(),
        }
    }

    pub fn status(args: ClientArgs) -> Result<()> {
        let status = get(&args, "/v1/status")?;
        if args.json {
            return emit(serde_json::to_string_pretty(&status)? + "\n");
        }
        let view: Vec<String> = status["view"].as_array().map(|v| v.iter().map(text).collect()).unwrap_or_default();
        let this_member = if status["is_leader"] == true { ", this member" } else { "" };
        let mut out = String::new();
        let _ = writeln!(out, "name      {} ({})", text(&status["name"]), text(&status["id"]));
        let _ = writeln!(out, "address   {}", text(&status["addr"]));
        let _ = writeln!(out, "boot      {}", text(&status["boot_id"]));
        let _ = writeln!(out, "leader    {} (term {}){this_member}", text(&status["leader"]), text(&status["term"]));
        let _ = writeln!(out, "view      epoch {}: {}", text(&status["epoch"]), view.join(", "));
        let _ = writeln!(out, "stable    {}", text(&status["stable"]));
        let _ = writeln!(out, "active    {}\n", text(&status["active"]));
        members_table(&mut out, status["members"].as_array().map(Vec::as_slice).unwrap_or_default());
        emit(out)
    }

    pub fn members(args: ClientArgs) -> Result<()> {
        let members = get(&args, "/v1/members")?;
        if args.json {
            return emit(serde_json::to_string_pretty(&members)? + "\n");
        }
        let mut out = String::new();
        members_table(&mut out, members.as_array().map(Vec::as_slice).unwrap_or_default());
        emit(out)
    }

    fn members_table(out: &mut String, members: &[Value]) {
        let _ = writeln!(out, "{:<20} {:<22} {:<8} {:<14} TAGS", "NAME", "ADDRESS", "STATE", "ID");
        for member in members {
            let tags: Vec<String> = member["tags"]
                .as_object()
                .map(|tags| tags.iter().map(|(k, v)| format!("{k}={}", text(v))).collect())
                .unwrap_or_default();
            let (name, addr, state, id) =
                (text(&member["name"]), text(&member["addr"]), text(&member["state"]), text(&member["id"]));
            let _ = writeln!(out, "{name:<20} {addr:<22} {state:<8} {id:<14} {}", tags.join(","));
        }
    }

    pub fn routes(args: ClientArgs) -> Result<()> {
        let routes = get(&args, "/v1/routes")?;
        if args.json {
            return emit(serde_json::to_string_pretty(&routes)? + "\n");
        }
        let mut out = String::new();
        let _ = writeln!(out, "{:<20} {:<12} {:<20} ENDPOINTS", "MODULE", "VERSION", "MEMBER");
        for route in routes.as_array().map(Vec::as_slice).unwrap_or_default() {
            let endpoints: Vec<String> =
                route["endpoints"].as_array().map(|list| list.iter().map(text).collect()).unwrap_or_default();
            let (module, version, member) = (text(&route["module"]), text(&route["version"]), text(&route["member"]));
            let _ = writeln!(out, "{module:<20} {version:<12} {member:<20} {}", endpoints.join(","));
        }
        emit(out)
    }

    /// `quorate kv watch`: one line per change, as the member streams them.
    fn kv_watch(base: &str, prefix: &str, after: u64, json: bool) -> Result<()> {
        use std::io::BufRead as _;
        let url = format!("{base}/v1/watch?prefix={}&after={after}", urlencoding(prefix));
        let mut response = ureq::get(&url).call().map_err(|error| format!("{base}: {error}"))?;
        for line in std::io::BufReader::new(response.body_mut().as_reader()).lines() {
            let line = line.map_err(|error| format!("{base}: {error}"))?;
            let change: Value = serde_json::from_str(&line).map_err(|error| format!("{base}: {error}"))?;
            if let Some(error) = change.get("error") {
                return Err(format!("{base}: the watch ended: {}", text(error)).into());
            }
            let out = if json {
                line + "\n"
            } else if change.get("deleted").is_some() {
                format!("{} {} deleted\n", text(&change["revision"]), text(&change["key"]))
            } else {
                let value =
                    change.get("value").map(text).unwrap_or_else(|| format!("(hex) {}", text(&change["value_hex"])));
                format!("{} {} = {value}\n", text(&change["revision"]), text(&change["key"]))
            };
            emit(out)?;
        }
        Err(format!("{base}: the member closed the watch").into())
    }

    /// Writes to stdout; a reader that went away (`| head`) is not an error.
    /// `quorate kv ...`: one HTTP call; the HTTP status decides the exit code.
    pub fn kv(args: crate::cli::KvArgs) -> Result<()> {
        use crate::cli::KvCommand;
        let base = format!("http://{}", args.client.http);
        let path = |key: &str| format!("{base}/v1/kv/{}", urlencoding(key));
        let response = match &args.command {
            KvCommand::Get { key } => ureq::get(&path(key)).call(),
            KvCommand::Put { key, value, cas } => {
                let url = match cas {
                    Some(revision) => format!("{}?cas={revision}", path(key)),
                    None => path(key),
                };
                ureq::put(&url).send(value.as_bytes())
            }
            KvCommand::Delete { key } => ureq::delete(&path(key)).call(),
            KvCommand::List { prefix, limit } => {
                ureq::get(&format!("{base}/v1/kv?prefix={}&limit={limit}", urlencoding(prefix))).call()
            }
            KvCommand::Watch { prefix, after } => return kv_watch(&base, prefix, *after, args.client.json),
        };
        let mut response = match response {
            Ok(response) => response,
            // 404 and 409 are answers, not failures of the call.
            Err(ureq::Error::StatusCode(code)) => return Err(format!("{base}: HTTP {code}").into()),
            Err(error) => return Err(format!("{base}: {error}").into()),
        };
        let value: Value = response.body_mut().read_json().map_err(|error| format!("{base}: {error}"))?;
        if args.client.json {
            return emit(serde_json::to_string_pretty(&value)? + "\n");
        }
        let shown = |entry: &Value| {
            entry.get("value").map(text).unwrap_or_else(|| format!("(hex) {}", text(&entry["value_hex"])))
        };
        let out = match &args.command {
            KvCommand::Get { .. } => format!("{}\n", shown(&value)),
            KvCommand::Put { .. } => format!("revision {}\n", text(&value["revision"])),
            KvCommand::Delete { .. } => format!("deleted {}\n", text(&value["deleted"])),
            KvCommand::Watch { .. } => unreachable!("a watch returned above"),
            KvCommand::List { .. } => {
                let mut out = String::new();
                for entry in value.as_array().map(Vec::as_slice).unwrap_or_default() {
                    let _ = writeln!(
                        out,
                        "{} = {}  (revision {})",
                        text(&entry["key"]),
                        shown(entry),
                        text(&entry["modified"])
                    );
                }
                out
            }
        };
        emit(out)
    }

    /// Percent-encodes a key for a URL path or query (keeping `/`, which
    /// the server's `{*key}` route takes whole).
    fn urlencoding(key: &str) -> String {
        const KEY: &percent_encoding::AsciiSet =
            &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~').remove(b'/');
        percent_encoding::utf8_percent_encode(key, KEY).to_string()
    }

    fn emit(text: String) -> Result<()> {
        match std::io::stdout().lock().write_all(text.as_bytes()) {
            Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            other => Ok(other?),
        }
    }
}

#[cfg(not(madsim))]
mod recover {
    use quorate::storage::{FileStorage, Storage};
    use quorate_core::{Config, Identity, Instant, Node, Output};

    use crate::Result;
    use crate::cli::RecoverArgs;

    pub async fn run(args: RecoverArgs) -> Result<()> {
        eprintln!("WARNING: recovery makes this member the only voter of a NEW cluster.");
        eprintln!("Use it only after a permanent loss of quorum. The old members are refused from then on,");
        eprintln!("and any old member that hears from this one fences itself; wipe their data dirs before");
        eprintln!("they rejoin. Never run it on more than one member.");
        if !args.yes {
            return Err("not recovering without --yes".into());
        }
        let dir = args.data_dir.clone();
        let mut storage = FileStorage::open(&dir);
        let loaded = storage.load()?;
        if loaded.recovered.raft.snapshot.is_none() && loaded.recovered.raft.entries.is_empty() {
            return Err(format!("{} holds no Raft state: nothing to recover", dir.display()).into());
        }
        let old_uuid = loaded.recovered.cluster_uuid;
        let mut recovered = loaded.recovered;
        recovered.force_new_cluster = true;
        // The cluster name only reaches envelopes; nothing of it is stored.
        let identity = Identity {
            id: loaded.member_id,
            name: "recovery".parse()?,
            addr: "127.0.0.1:1".parse()?,
            tags: Default::default(),
            durable: true,
        };
        let mut node = Node::new(Config::lan("quorate"), identity, 0, recovered, Instant::ZERO)?;
        let writes: Vec<_> = std::iter::from_fn(|| node.poll())
            .filter_map(|output| match output {
                Output::Persist(persist) => Some(persist.state),
                _ => None,
            })
            .collect();
        storage.persist(&writes)?;
        println!(
            "Recovered {}: member {} is now the only voter of cluster {:?} (was {:?}).",
            dir.display(),
            loaded.member_id,
            node.cluster_uuid(),
            old_uuid
        );
        println!("Start it normally; it keeps its log and views.");
        Ok(())
    }
}

#[cfg(not(madsim))]
mod demo {
    use std::net::SocketAddr;
    use std::time::Duration;

    use quorate::{Cluster, Event, MemberId, Profile, State};
    use tokio::time::Instant;

    use crate::Result;
    use crate::cli::DemoArgs;

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
        let profile = crate::profile(args.profile);
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
            Event::ClusterStable(view) => format!("as leader: cluster stable at view {}", view.epoch),
            Event::LeaveComplete => "left the cluster".to_owned(),
            Event::Fenced { by } => format!("fenced: our cluster was recovered elsewhere as {by:?}"),
            Event::Joined
            | Event::MemberRestarted(_)
            | Event::MemberUpdated(_)
            | Event::MemberReaped(_)
            | Event::LeaderChanged { leader: None, .. }
            | Event::Rebalance(_)
            | Event::Applied { .. }
            | Event::Read { .. } => return None,
        })
    }
}
