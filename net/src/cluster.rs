//! The public handle of one member: how to start it, ask it things and stop it.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use quorate_core::wire::{Name, TagsError, TooLong};
use quorate_core::{Config, ConfigError, Event, Identity, MemberId, MemberInfo, Node, Recovered, State, Tags};
use rand::Rng;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::driver::{Driver, Request, Snapshot};
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
    /// The member has stopped (shut down, left, or its task ended).
    #[error("the member has stopped")]
    Stopped,
}

/// Configures and starts a member. See [`Cluster::builder`].
#[derive(Clone, Debug)]
pub struct Builder {
    cluster: String,
    node: Option<String>,
    bind: SocketAddr,
    advertise: Option<SocketAddr>,
    join: Vec<SocketAddr>,
    tags: Tags,
    profile: Profile,
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
        }
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

    /// Binds the sockets and starts the member's task.
    pub async fn start(self) -> Result<Cluster, Error> {
        let name: Name = self.node.as_deref().ok_or(Error::MissingName)?.parse()?;
        let config = self.profile.config(&self.cluster);
        config.validate()?;
        let (transport, inbound) =
            Transport::bind(self.bind).await.map_err(|source| Error::Bind { addr: self.bind, source })?;
        let local_addr = transport.local_addr();
        let advertise = match self.advertise {
            Some(addr) => addr,
            None if local_addr.ip().is_unspecified() => return Err(Error::AdvertiseRequired(local_addr)),
            None => local_addr,
        };
        // Without storage every start is a new member: a fresh durable id.
        // Under madsim this randomness is the simulator's, seeded and replayable.
        let mut rng = rand::rng();
        let id = MemberId(rng.random());
        // Storage arrives with its own issue: until then a member is in-memory, never a voter.
        let identity = Identity { id, name: name.clone(), addr: advertise, tags: self.tags, durable: false };
        let node = Node::new(config, identity, rng.random(), Recovered::default(), quorate_core::Instant::ZERO)?;
        let initial = Snapshot { joined: false, members: node.members().cloned().collect() };
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
        };
        let task = tokio::spawn(driver.run());
        let cluster = Cluster { id, name, advertise, requests, snapshot, events, counters, task };
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
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.task.abort();
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

    /// A stream of every [`Event`] from now on.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
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

    /// Whether this member still runs and holds itself alive.
    pub fn is_running(&self) -> bool {
        !self.task.is_finished()
            && self.snapshot.borrow().members.iter().any(|m| m.id == self.id && m.state == State::Alive)
    }

    async fn request(&self, request: Request) -> Result<(), Error> {
        self.requests.send(request).await.map_err(|_| Error::Stopped)
    }
}
