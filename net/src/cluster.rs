//! The public handle of one member: how to start it, ask it things and stop it.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::num::NonZeroU32;
use std::path::PathBuf;

use crate::kv::KvClient;
use quorate_core::rsm::{ApplyError, RestoreError, StateMachine};
use quorate_core::wire::{Name, TagsError, TooLong};
use quorate_core::{
    Bootstrap, Command, Config, ConfigError, Event, Identity, MemberId, MemberInfo, Node, State, Tags, View,
};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::blocking::run_blocking;
use crate::discovery::Discovery;
use crate::driver::{Driver, Request, Snapshot};
use crate::routes::ConfigValidator;
use crate::stats::Stats;
use crate::storage::{FileStorage, MemoryStorage, Storage, StorageError};
use crate::transport::{Transport, TransportCounters};

/// Events kept for a slow subscriber; past this it misses the oldest and its
/// next `recv` reports how many (tokio's `RecvError::Lagged`).
const EVENT_BACKLOG: usize = 1024;
/// Requests waiting for the driver.
const REQUEST_QUEUE: usize = 64;

/// Timing profiles (see the README for the values and why).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Profile {
    /// For a data-centre network: the default.
    #[default]
    Lan,
    /// About five times faster: tests, demos and simulation.
    Fast,
}

impl Profile {
    fn config(self, cluster: &str) -> Config {
        match self {
            Profile::Lan => Config::lan(cluster),
            Profile::Fast => Config::fast(cluster),
        }
    }

    /// How often discovery is asked again.
    fn refresh_interval(self) -> Duration {
        match self {
            Profile::Lan => Duration::from_secs(30),
            Profile::Fast => Duration::from_secs(5),
        }
    }
}

/// Why a member could not start, or a request could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The builder was given no node name.
    #[error("a node name is required")]
    MissingName,
    /// A node name longer than the protocol allows.
    #[error("node name {0}")]
    Name(#[from] TooLong),
    /// A tag was refused; no tag was set.
    #[error("tag refused: {0}")]
    Tag(#[from] TagsError),
    /// The protocol configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// The address could not be bound for both UDP and TCP.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        source: io::Error,
    },
    /// Binding an unspecified address (0.0.0.0 or ::) needs the address
    /// others should use.
    #[error("bound to {0}: set an advertise address other members can reach")]
    AdvertiseRequired(SocketAddr),
    /// The member's storage could not be read or written.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// `bootstrap_expect` must be at least 1.
    #[error("bootstrap_expect must be at least 1")]
    BootstrapExpectZero,
    /// The member has stopped (shut down, left, failed storage, or its task ended).
    #[error("the member has stopped")]
    Stopped,
    /// The member stopped on its own: its storage failed mid-run.
    #[error("the member stopped: {0}")]
    Failed(String),
    /// An `apply` had no answer; nothing says it was applied, unless the
    /// error says so.
    #[error("apply: {0}")]
    Apply(#[from] ApplyError),
    /// The state machine could not take over the recovered state.
    #[error(transparent)]
    StateMachine(#[from] RestoreError),
    /// The KV store answered something a KV client cannot read.
    #[error("unexpected answer from the state machine: {0}")]
    Unexpected(String),
    /// A watch fell behind the changes the KV store remembers (those up to
    /// revision `floor` are forgotten): list the keys again and watch from
    /// the listing's revision.
    #[error("the changes after the watched revision were compacted (up to revision {floor})")]
    Compacted {
        /// The newest forgotten revision.
        floor: u64,
    },
    /// The configuration validator refused a module configuration.
    #[error("configuration of module {module:?} refused: {reason}")]
    InvalidConfig {
        /// The module.
        module: String,
        /// The validator's reason.
        reason: String,
    },
}

/// Configures and starts a member. See [`Cluster::builder`].
pub struct Builder {
    cluster: String,
    node: Option<String>,
    bind: SocketAddr,
    advertise: Option<SocketAddr>,
    join: Vec<SocketAddr>,
    tags: Tags,
    profile: Profile,
    storage: Option<Box<dyn Storage>>,
    discovery: Option<Box<dyn Discovery>>,
    refresh_interval: Option<Duration>,
    bootstrap: Option<Bootstrap>,
    bootstrap_expect_zero: bool,
    allow_ephemeral_voters: bool,
    raft_timing: Option<(Duration, Duration)>,
    lease_reads: bool,
    config_validator: Option<ConfigValidator>,
    config_delivery_timeout: Duration,
    state_machine: Option<Box<dyn StateMachine>>,
    #[cfg(madsim)]
    hooks: crate::sim::Hooks,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            cluster: "quorate".to_owned(),
            node: None,
            bind: SocketAddr::from(([127, 0, 0, 1], 7946)),
            advertise: None,
            join: Vec::new(),
            tags: Tags::new(),
            profile: Profile::default(),
            storage: None,
            discovery: None,
            refresh_interval: None,
            bootstrap: None,
            bootstrap_expect_zero: false,
            allow_ephemeral_voters: false,
            raft_timing: None,
            lease_reads: false,
            config_validator: None,
            config_delivery_timeout: Duration::from_secs(10),
            state_machine: None,
            #[cfg(madsim)]
            hooks: crate::sim::Hooks::default(),
        }
    }
}

/// The simulator's hooks ([`crate::sim`]); only in the `--cfg madsim` build.
#[cfg(madsim)]
impl Builder {
    /// Calls `observer` after every step of the member's core, with the
    /// events the step raised.
    pub fn observer(mut self, observer: impl FnMut(&Node, &[Event]) + Send + 'static) -> Self {
        self.hooks.observer = Some(Box::new(observer));
        self
    }

    /// How long each sync of the storage takes, in virtual time.
    pub fn sync_latency(mut self, latency: Duration) -> Self {
        self.hooks.sync_latency = latency;
        self
    }

    /// Datagram faults on this member's receive path.
    pub fn datagram_faults(mut self, faults: crate::sim::DatagramFaults) -> Self {
        self.hooks.datagram_faults = faults;
        self
    }
}

impl Builder {
    /// The cluster's name (default `quorate`). Members of other names are refused.
    pub fn cluster(mut self, name: impl Into<String>) -> Self {
        self.cluster = name.into();
        self
    }

    /// This member's name: required, unique in the cluster by convention.
    pub fn node(mut self, name: impl Into<String>) -> Self {
        self.node = Some(name.into());
        self
    }

    /// The address to listen on, UDP and TCP alike (default `127.0.0.1:7946`;
    /// port 0 picks a free one).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = addr;
        self
    }

    /// The address other members reach this one at, if not the bound one.
    pub fn advertise(mut self, addr: SocketAddr) -> Self {
        self.advertise = Some(addr);
        self
    }

    /// Addresses to join through; any one reachable is enough, the others
    /// are retried with backoff.
    pub fn join(mut self, addrs: impl IntoIterator<Item = SocketAddr>) -> Self {
        self.join.extend(addrs);
        self
    }

    /// Adds a tag gossiped with this member (service name, version, endpoints).
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Result<Self, Error> {
        self.tags.insert(key, value)?;
        Ok(self)
    }

    /// The timing profile (default [`Profile::Lan`]).
    pub fn profile(mut self, profile: Profile) -> Self {
        self.profile = profile;
        self
    }

    /// Override the profile's Raft timing, as etcd's `--heartbeat-interval`
    /// and `--election-timeout` do: the leader sends heartbeats every
    /// `heartbeat`, and each election timeout is drawn from
    /// `[election_timeout, 2 × election_timeout]`. The heartbeat must be at
    /// most half the election timeout ([`Error::Config`] at start otherwise).
    /// Every member of a cluster should use the same values.
    pub fn raft_timing(mut self, heartbeat: Duration, election_timeout: Duration) -> Self {
        self.raft_timing = Some((heartbeat, election_timeout));
        self
    }

    /// Serve [`Cluster::read`] on the leader's lease instead of a heartbeat
    /// round per batch of reads (off by default). Saves a round trip per
    /// read, but a read can be stale if a member's clock runs more than
    /// 10 % off the leader's over an election timeout, or the leader's
    /// process stalls (GC-like pauses, a VM migration) between checking its
    /// lease and answering, or a member restarts and votes within an
    /// election timeout of its last heartbeat. etcd's lease-based reads make
    /// the same trade.
    pub fn lease_reads(mut self, on: bool) -> Self {
        self.lease_reads = on;
        self
    }

    /// Checks every module configuration this member writes
    /// ([`Cluster::set_module_config`]): `Err(reason)` refuses it and
    /// nothing is written. Give every member the same validator.
    pub fn config_validator(
        mut self,
        validator: impl Fn(&str, &[u8]) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.config_validator = Some(Arc::new(validator));
        self
    }

    /// How long one delivery of a module configuration to
    /// [`Cluster::on_module_config`]'s handler may take (default 10 s);
    /// a late or failed one is tried again after as long.
    pub fn config_delivery_timeout(mut self, timeout: Duration) -> Self {
        self.config_delivery_timeout = timeout;
        self
    }

    /// Keep durable state (durable id, boot counter, Raft log) in this
    /// directory, created if missing. Without it, state lives in memory: a
    /// new member every start, never a voter (unless ephemeral voters are allowed).
    pub fn data_dir(self, dir: impl Into<PathBuf>) -> Self {
        self.storage(FileStorage::open(dir))
    }

    /// Find other members through `discovery`, asked at start and then every
    /// refresh interval (30 s with [`Profile::Lan`], 5 s with [`Profile::Fast`]).
    pub fn discovery(mut self, discovery: impl Discovery) -> Self {
        self.discovery = Some(Box::new(discovery));
        self
    }

    /// How often discovery is asked again.
    pub fn refresh_interval(mut self, interval: Duration) -> Self {
        self.refresh_interval = Some(interval);
        self
    }

    /// Keep durable state in a store of your own.
    pub fn storage(mut self, storage: impl Storage) -> Self {
        self.storage = Some(Box::new(storage));
        self
    }

    /// Bootstrap a new cluster together with exactly `n` members configured
    /// alike, once all of them see each other (Consul's `bootstrap_expect`).
    pub fn bootstrap_expect(mut self, n: u32) -> Self {
        match NonZeroU32::new(n) {
            Some(n) => self.bootstrap = Some(Bootstrap::Expect(n)),
            None => self.bootstrap_expect_zero = true,
        }
        self
    }

    /// Bootstrap a cluster of this member alone, at once.
    pub fn bootstrap(mut self) -> Self {
        self.bootstrap = Some(Bootstrap::Alone);
        self
    }

    /// Let members without durable storage vote (tests, demos). Such a
    /// cluster loses quorum, and its log, if a majority restarts at once.
    pub fn allow_ephemeral_voters(mut self, allow: bool) -> Self {
        self.allow_ephemeral_voters = allow;
        self
    }

    /// The replicated state machine every member applies committed commands
    /// to (DESIGN §3.4); the built-in KV store ([`Cluster::kv`]) when not
    /// set. It must be deterministic, and every member of a cluster must run
    /// the same one.
    pub fn state_machine(mut self, machine: impl StateMachine) -> Self {
        self.state_machine = Some(Box::new(machine));
        self
    }

    /// Binds the sockets and starts the member's task.
    pub async fn start(self) -> Result<Cluster, Error> {
        let name: Name = self.node.as_deref().ok_or(Error::MissingName)?.parse()?;
        if self.bootstrap_expect_zero {
            return Err(Error::BootstrapExpectZero);
        }
        let mut config = self.profile.config(&self.cluster);
        config.bootstrap = self.bootstrap.unwrap_or_default();
        config.voters.allow_ephemeral_voters = self.allow_ephemeral_voters;
        if let Some((heartbeat, election_timeout)) = self.raft_timing {
            config.raft.heartbeat_interval = heartbeat;
            config.raft.election_timeout = election_timeout;
            config.raft.election_timeout_max = election_timeout.saturating_mul(2);
        }
        config.raft.lease_reads = self.lease_reads;
        config.validate()?;
        let storage: Box<dyn Storage> = self.storage.unwrap_or_else(|| Box::new(MemoryStorage::new()));
        let (storage, loaded) = run_blocking(move || {
            let mut storage = storage;
            let loaded = storage.load();
            (storage, loaded)
        })
        .await;
        let loaded = loaded?;
        #[cfg(madsim)]
        let bound = Transport::bind(self.bind, self.hooks.datagram_faults).await;
        #[cfg(not(madsim))]
        let bound = Transport::bind(self.bind).await;
        let (transport, inbound) = bound.map_err(|source| Error::Bind { addr: self.bind, source })?;
        let local_addr = transport.local_addr();
        let advertise = match self.advertise {
            Some(addr) => addr,
            None if local_addr.ip().is_unspecified() => return Err(Error::AdvertiseRequired(local_addr)),
            None => local_addr,
        };
        let id = loaded.member_id;
        let durable = storage.is_durable();
        let identity = Identity { id, name: name.clone(), addr: advertise, tags: self.tags, durable };
        let mut node = Node::new(
            config,
            identity,
            u64::from_le_bytes(crate::random_bytes()),
            loaded.recovered,
            quorate_core::Instant::ZERO,
        )?;
        if let Some(machine) = self.state_machine {
            node.set_state_machine(machine)?;
        }
        let initial = Snapshot::of(&node, &Stats::default());
        let (snapshot_tx, snapshot) = watch::channel(initial);
        let (events, _) = broadcast::channel(EVENT_BACKLOG);
        let (requests, requests_rx) = mpsc::channel(REQUEST_QUEUE);
        let counters = transport.counters();
        let driver = Driver {
            node,
            transport,
            inbound,
            requests: requests_rx,
            events: events.clone(),
            snapshot: snapshot_tx,
            origin: Instant::now(),
            leave_waiters: Vec::new(),
            leave_complete: false,
            storage: Some(storage),
            published_commit: 0,
            published_at: Instant::now(),
            stats: Stats::default(),
            applies: BTreeMap::new(),
            next_request: 0,
            #[cfg(madsim)]
            hooks: self.hooks,
        };
        let task = tokio::spawn(driver.run());
        let refresh = self.refresh_interval.unwrap_or_else(|| self.profile.refresh_interval());
        let discovery_task =
            self.discovery.map(|discovery| tokio::spawn(poll_discovery(discovery, refresh, requests.clone())));
        let cluster = Cluster {
            id,
            name,
            advertise,
            requests,
            snapshot,
            events,
            counters,
            task,
            discovery_task,
            config_validator: self.config_validator,
            config_delivery_timeout: self.config_delivery_timeout,
        };
        if !self.join.is_empty() {
            cluster.request(Request::Join(self.join)).await?;
        }
        tracing::info!(member = %id, name = %cluster.name, addr = %advertise, "member started");
        Ok(cluster)
    }
}

/// A running member. Dropping it stops the member at once, without leaving:
/// to the others that is a crash. Call [`Cluster::leave`] first to leave.
pub struct Cluster {
    id: MemberId,
    name: Name,
    advertise: SocketAddr,
    requests: mpsc::Sender<Request>,
    snapshot: watch::Receiver<Snapshot>,
    events: broadcast::Sender<Event>,
    counters: Arc<TransportCounters>,
    task: JoinHandle<()>,
    discovery_task: Option<JoinHandle<()>>,
    config_validator: Option<ConfigValidator>,
    config_delivery_timeout: Duration,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(task) = &self.discovery_task {
            task.abort();
        }
    }
}

/// Asks `discovery` now and every `refresh`, handing each answer to the
/// member; ends when the member stops.
async fn poll_discovery(discovery: Box<dyn Discovery>, refresh: Duration, requests: mpsc::Sender<Request>) {
    loop {
        match discovery.peers().await {
            Ok(addrs) => {
                tracing::debug!(found = addrs.len(), "discovery answered");
                if requests.send(Request::Discovered(addrs)).await.is_err() {
                    return;
                }
            }
            Err(error) => tracing::warn!(%error, ?discovery, "discovery failed; keeping the previous seeds"),
        }
        tokio::time::sleep(refresh).await;
    }
}

impl Cluster {
    /// Starts configuring a member.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// This member's durable id.
    pub fn id(&self) -> MemberId {
        self.id
    }

    /// This member's name.
    pub fn name(&self) -> &str {
        self.name.as_str()
    }

    /// The address other members reach this one at.
    pub fn addr(&self) -> SocketAddr {
        self.advertise
    }

    /// Every member this one knows, itself included, in any state.
    pub fn members(&self) -> Vec<MemberInfo> {
        self.snapshot.borrow().members.clone()
    }

    /// Members this one holds alive (or suspect: not yet declared dead).
    pub fn live_members(&self) -> Vec<MemberInfo> {
        self.snapshot.borrow().members.iter().filter(|m| m.state.is_live()).cloned().collect()
    }

    /// Whether this member has reached another one.
    pub fn is_joined(&self) -> bool {
        self.snapshot.borrow().joined
    }

    /// The leader this member knows of.
    pub fn leader(&self) -> Option<MemberId> {
        self.snapshot.borrow().leader
    }

    /// Whether this member leads.
    pub fn is_leader(&self) -> bool {
        self.snapshot.borrow().leader == Some(self.id)
    }

    /// The current Raft term.
    pub fn term(&self) -> u64 {
        self.snapshot.borrow().term
    }

    /// The newest committed view.
    pub fn view(&self) -> Option<View> {
        self.snapshot.borrow().view.clone()
    }

    /// Whether the newest view is stable and a leader is known.
    pub fn is_stable(&self) -> bool {
        self.snapshot.borrow().stable
    }

    /// Whether this member is in the newest view (it owns what the view
    /// assigns it); a lagging or removed member is not and must stop serving.
    pub fn is_active(&self) -> bool {
        self.snapshot.borrow().active
    }

    /// The members of the newest view.
    pub fn primaries(&self) -> Vec<MemberId> {
        self.snapshot.borrow().view.as_ref().map(|view| view.ids().collect()).unwrap_or_default()
    }

    /// Applies `command` to the replicated state machine, from any member:
    /// forwarded to the leader, committed, applied at most once, and
    /// answered with the state machine's response (DESIGN §3.4). A retry
    /// after a lost answer or a leader change is the core's, with the same
    /// sequence number, so the command never applies twice. Fails with
    /// [`ApplyError::Timeout`] (naming the last known leader) when no leader
    /// answers within the profile's apply timeout.
    pub async fn apply(&self, command: impl Into<Vec<u8>>) -> Result<Vec<u8>, Error> {
        self.handle().apply(command.into()).await
    }

    /// Answers `query` from the replicated state machine
    /// ([`StateMachine::query`](quorate_core::rsm::StateMachine::query)),
    /// linearizably, from any member: it reflects every `apply` acknowledged
    /// before it was called. The leader serves it once a heartbeat round
    /// shows a majority still follows it (ReadIndex: no log write), or on
    /// its lease with [`Builder::lease_reads`]. Fails like [`Cluster::apply`]
    /// when no leader answers in time; a read is safe to retry.
    pub async fn read(&self, query: impl Into<Vec<u8>>) -> Result<Vec<u8>, Error> {
        self.handle().read(query.into()).await
    }

    /// The built-in replicated KV store: writes through [`Cluster::apply`],
    /// reads through [`Cluster::read`]. Only meaningful when the cluster
    /// runs the default state machine.
    pub fn kv(&self) -> KvClient {
        KvClient::new(self.handle())
    }

    /// This member's own tags, as gossiped.
    pub fn tags(&self) -> Tags {
        self.snapshot.borrow().members.iter().find(|m| m.id == self.id).map(|m| m.tags.clone()).unwrap_or_default()
    }

    pub(crate) fn config_validator(&self) -> Option<&ConfigValidator> {
        self.config_validator.as_ref()
    }

    pub(crate) fn config_delivery_timeout(&self) -> Duration {
        self.config_delivery_timeout
    }

    /// What background tasks (watches, module routes and configuration)
    /// keep of this member.
    pub(crate) fn handle(&self) -> Handle {
        Handle { requests: self.requests.clone(), snapshot: self.snapshot.clone() }
    }

    /// Tells the cluster this member finished rebalancing to view `epoch`
    /// (the epoch of an [`Event::Rebalance`]).
    pub async fn ack(&self, epoch: u64) -> Result<(), Error> {
        self.request(Request::Command(Command::Ack { epoch })).await
    }

    /// Calls `handler` with every new view this member must act on, and a
    /// [`Done`] to call once its work has moved to the view's owners. Views
    /// are delivered newest first: a view superseded before the handler ran
    /// is skipped, and acking a superseded view does nothing.
    pub fn on_rebalance(&self, mut handler: impl FnMut(View, Done) + Send + 'static) {
        let mut events = self.events();
        let requests = self.requests.clone();
        tokio::spawn(async move {
            while let Some(event) = next_event(&mut events).await {
                if let Event::Rebalance(view) = event {
                    let done = Done { epoch: view.epoch, requests: requests.clone() };
                    handler(view, done);
                }
            }
        });
    }

    /// Calls `handler` with the view each time this member, as leader, sees
    /// every member finish rebalancing to it: the place for cluster-wide
    /// housekeeping. At least once per stable view across leader changes, so
    /// deduplicate by `view.epoch`.
    pub fn on_cluster_stable(&self, mut handler: impl FnMut(View) + Send + 'static) {
        let mut events = self.events();
        tokio::spawn(async move {
            while let Some(event) = next_event(&mut events).await {
                if let Event::ClusterStable(view) = event {
                    handler(view);
                }
            }
        });
    }

    /// A stream of every [`Event`] from now on.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// This process's boot id (raised on every start with the same data dir).
    pub fn boot_id(&self) -> u64 {
        self.snapshot.borrow().boot_id
    }

    /// The core's traffic counters: messages sent, received and refused.
    pub fn metrics(&self) -> quorate_core::Metrics {
        self.snapshot.borrow().metrics.clone()
    }

    /// Leader changes and rebalance latencies.
    pub fn stats(&self) -> Stats {
        self.snapshot.borrow().stats.clone()
    }

    /// Counters of what the transport dropped.
    pub fn transport_counters(&self) -> &TransportCounters {
        &self.counters
    }

    /// Joins (or merges with) the cluster at any of `addrs`.
    pub async fn join(&self, addrs: impl IntoIterator<Item = SocketAddr>) -> Result<(), Error> {
        self.request(Request::Join(addrs.into_iter().collect())).await
    }

    /// Replaces this member's tags and gossips them.
    pub async fn set_tags(&self, tags: Tags) -> Result<(), Error> {
        self.request(Request::SetTags(tags)).await
    }

    /// Leaves gracefully: others see this member `Left`, never failed. Returns
    /// once the leave has been gossiped; the member then stops.
    pub async fn leave(&self) -> Result<(), Error> {
        let (done, finished) = oneshot::channel();
        self.request(Request::Leave(done)).await?;
        finished.await.map_err(|_| Error::Stopped)
    }

    /// Stops the member without leaving; others will detect it as failed.
    pub async fn shutdown(self) {
        let (done, finished) = oneshot::channel();
        if self.requests.send(Request::Shutdown(done)).await.is_ok() {
            let _ = finished.await;
        }
    }

    /// Resolves once the member's task has ended: `Ok` after a shutdown or a
    /// completed leave, [`Error::Failed`] if it stopped on its own because
    /// its storage failed (a process should then exit non-zero).
    pub async fn stopped(&self) -> Result<(), Error> {
        let mut snapshot = self.snapshot.clone();
        // `changed` errs once the driver dropped its end, i.e. has stopped.
        while snapshot.changed().await.is_ok() {}
        match snapshot.borrow().failure.clone() {
            Some(reason) => Err(Error::Failed(reason)),
            None => Ok(()),
        }
    }

    /// Whether this member still runs and holds itself alive.
    pub fn is_running(&self) -> bool {
        !self.task.is_finished()
            && self.snapshot.borrow().members.iter().any(|m| m.id == self.id && m.state == State::Alive)
    }

    async fn request(&self, request: Request) -> Result<(), Error> {
        self.requests.send(request).await.map_err(|_| Error::Stopped)
    }
}

/// A member's request channel and published state, cloned into the tasks
/// that outlive a borrow of the [`Cluster`]; they end when it stops.
#[derive(Clone)]
pub(crate) struct Handle {
    pub(crate) requests: mpsc::Sender<Request>,
    pub(crate) snapshot: watch::Receiver<Snapshot>,
}

impl Handle {
    pub(crate) async fn apply(&self, command: Vec<u8>) -> Result<Vec<u8>, Error> {
        let (reply, answer) = oneshot::channel();
        self.requests.send(Request::Apply(command, reply)).await.map_err(|_| Error::Stopped)?;
        Ok(answer.await.map_err(|_| Error::Stopped)??)
    }

    pub(crate) async fn read(&self, query: Vec<u8>) -> Result<Vec<u8>, Error> {
        let (reply, answer) = oneshot::channel();
        self.requests.send(Request::Read(query, reply)).await.map_err(|_| Error::Stopped)?;
        Ok(answer.await.map_err(|_| Error::Stopped)??)
    }
}

/// The completion handle of one rebalance: call [`Done::ack`] when this
/// member's work has moved to the owners the view names.
#[derive(Debug)]
pub struct Done {
    epoch: u64,
    requests: mpsc::Sender<Request>,
}

impl Done {
    /// The epoch of the view being acked.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Acks the view. Never blocks; a member that stopped ignores it.
    pub fn ack(self) {
        let _ = self.requests.try_send(Request::Command(Command::Ack { epoch: self.epoch }));
    }
}

/// The next event, skipping over a gap if the subscriber lagged; `None` once
/// the member stopped.
async fn next_event(events: &mut broadcast::Receiver<Event>) -> Option<Event> {
    loop {
        match events.recv().await {
            Ok(event) => return Some(event),
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "an event subscriber fell behind; events were skipped");
            }
            Err(broadcast::error::RecvError::Closed) => return None,
        }
    }
}
