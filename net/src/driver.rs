//! The one task that drives a member's protocol core.
//!
//! Like quinn's connection driver: feed each input with `now`, drain `poll()`
//! to empty, arm one timer at `next_deadline()`. Sends go to the transport;
//! persists are made durable and confirmed before the sends the core held
//! behind them are released; events go to subscribers, and a snapshot of the
//! member table is published whenever membership or the commit changed, and
//! at least every [`REPUBLISH_EVERY`] so counters move while nothing else does.

use std::collections::BTreeMap;
use std::future::pending;
use std::net::SocketAddr;
use std::time::Duration;

use quorate_core::rsm::ApplyError;
use quorate_core::{Channel, Event, Input, MemberId, MemberInfo, Node, Output, Tags, View};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::{Instant, sleep_until};

use crate::blocking::run_blocking;
use crate::stats::Stats;
use crate::storage::Storage;
use crate::transport::{Inbound, Transport};

/// Inputs handled at most before their outputs are carried out, so a flood
/// cannot hold back the sends and persists of what came first.
const MAX_BATCH: usize = 256;

/// The longest a published snapshot's counters lag behind the core's.
const REPUBLISH_EVERY: Duration = Duration::from_millis(500);

/// Orders from the [`crate::Cluster`] handle.
pub(crate) enum Request {
    Join(Vec<SocketAddr>),
    SetTags(Tags),
    /// Any other core command (acks, leadership transfer).
    Command(quorate_core::Command),
    /// Apply a command to the replicated state machine; answered on `reply`.
    Apply(Vec<u8>, oneshot::Sender<Result<Vec<u8>, ApplyError>>),
    /// A linearizable read-only query (`Cluster::read`).
    Read(Vec<u8>, oneshot::Sender<Result<Vec<u8>, ApplyError>>),
    /// Discovery's latest answer.
    Discovered(Vec<SocketAddr>),
    /// Leave gracefully; answered once the leave completed.
    Leave(oneshot::Sender<()>),
    /// Stop without leaving; answered once stopped.
    Shutdown(oneshot::Sender<()>),
}

/// What queries read without asking the driver.
#[derive(Clone, Debug)]
pub(crate) struct Snapshot {
    pub(crate) joined: bool,
    pub(crate) members: Vec<MemberInfo>,
    pub(crate) leader: Option<MemberId>,
    pub(crate) term: u64,
    pub(crate) view: Option<View>,
    pub(crate) stable: bool,
    pub(crate) active: bool,
    pub(crate) boot_id: u64,
    pub(crate) metrics: quorate_core::Metrics,
    pub(crate) stats: Stats,
    /// Why the member stopped on its own (its storage failed), if it did.
    pub(crate) failure: Option<String>,
}

impl Snapshot {
    pub(crate) fn of(node: &Node, stats: &Stats) -> Self {
        Snapshot {
            joined: node.is_joined(),
            members: node.members().cloned().collect(),
            leader: node.leader(),
            term: node.term(),
            view: node.view().cloned(),
            stable: node.is_stable(),
            active: node.is_active(),
            boot_id: node.boot_id(),
            metrics: node.metrics().clone(),
            stats: stats.clone(),
            failure: None,
        }
    }
}

pub(crate) struct Driver {
    pub(crate) node: Node,
    pub(crate) transport: Transport,
    pub(crate) inbound: mpsc::Receiver<Inbound>,
    pub(crate) requests: mpsc::Receiver<Request>,
    pub(crate) events: broadcast::Sender<Event>,
    pub(crate) snapshot: watch::Sender<Snapshot>,
    /// The instant the core's clock counts from.
    pub(crate) origin: Instant,
    pub(crate) leave_waiters: Vec<oneshot::Sender<()>>,
    pub(crate) leave_complete: bool,
    /// Taken out while a persist runs off the runtime's threads.
    pub(crate) storage: Option<Box<dyn Storage>>,
    /// The commit index of the last published snapshot.
    pub(crate) published_commit: u64,
    /// When the last snapshot was published.
    pub(crate) published_at: Instant,
    pub(crate) stats: Stats,
    /// `apply` and `read` calls waiting for their [`Event::Applied`] or
    /// [`Event::Read`], by request number.
    pub(crate) applies: BTreeMap<u64, oneshot::Sender<Result<Vec<u8>, ApplyError>>>,
    pub(crate) next_request: u64,
    #[cfg(madsim)]
    pub(crate) hooks: crate::sim::Hooks,
}

impl Driver {
    pub(crate) async fn run(mut self) {
        if !self.flush().await {
            return;
        }
        loop {
            let deadline = self.node.next_deadline().map(|at| self.origin + Duration::from_nanos(at.as_nanos()));
            let timer = async {
                match deadline {
                    Some(at) => sleep_until(at).await,
                    None => pending().await,
                }
            };
            tokio::select! {
                biased;
                request = self.requests.recv() => match request {
                    Some(request) => {
                        if !self.on_request(request) {
                            return;
                        }
                    }
                    // Every handle is gone: nobody can ask anything more.
                    None => return,
                },
                Some(message) = self.inbound.recv() => {
                    let input = Input::Receive { from: message.from, channel: message.channel, bytes: &message.bytes };
                    self.node.handle(self.now(), input);
                }
                () = timer => self.node.handle(self.now(), Input::Tick),
            }
            // Whatever else is already waiting goes into the same flush: one
            // append and one fsync carry every command that arrived while the
            // last one ran (group commit), instead of one each.
            for _ in 0..MAX_BATCH {
                if let Ok(request) = self.requests.try_recv() {
                    if !self.on_request(request) {
                        return;
                    }
                } else if let Ok(message) = self.inbound.try_recv() {
                    let input = Input::Receive { from: message.from, channel: message.channel, bytes: &message.bytes };
                    self.node.handle(self.now(), input);
                } else {
                    break;
                }
            }
            if !self.flush().await {
                return;
            }
            if self.leave_complete {
                // The member left gracefully; its process part is over.
                return;
            }
        }
    }

    fn now(&self) -> quorate_core::Instant {
        let elapsed = Instant::now().saturating_duration_since(self.origin);
        quorate_core::Instant::from_nanos(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX))
    }

    /// Handles one request; false when the driver must stop.
    fn on_request(&mut self, request: Request) -> bool {
        let now = self.now();
        match request {
            Request::Join(addrs) => self.node.handle(now, Input::Command(quorate_core::Command::Join(addrs))),
            Request::SetTags(tags) => self.node.handle(now, Input::Command(quorate_core::Command::SetTags(tags))),
            Request::Command(command) => self.node.handle(now, Input::Command(command)),
            Request::Apply(command, reply) => {
                let request = self.await_answer(reply);
                self.node.handle(now, Input::Command(quorate_core::Command::Apply { request, command }));
            }
            Request::Read(query, reply) => {
                let request = self.await_answer(reply);
                self.node.handle(now, Input::Command(quorate_core::Command::Read { request, query }));
            }
            Request::Discovered(addrs) => self.node.handle(now, Input::Discovered(addrs)),
            Request::Leave(done) => {
                self.leave_waiters.push(done);
                self.node.handle(now, Input::Command(quorate_core::Command::Leave));
            }
            Request::Shutdown(done) => {
                let _ = done.send(());
                return false;
            }
        }
        true
    }

    /// Numbers a request whose answer goes to `reply`.
    fn await_answer(&mut self, reply: oneshot::Sender<Result<Vec<u8>, ApplyError>>) -> u64 {
        // Callers that gave up (dropped their future) free their slot.
        self.applies.retain(|_, waiting| !waiting.is_closed());
        let request = self.next_request;
        self.next_request += 1;
        self.applies.insert(request, reply);
        request
    }

    /// Carries out everything the core asked for, making persists durable
    /// (one group commit per drain) and confirming them until nothing more is
    /// released. False if storage failed: the member must stop.
    async fn flush(&mut self) -> bool {
        loop {
            let mut persisted = None;
            let mut writes = Vec::new();
            let mut membership_changed = false;
            #[cfg(madsim)]
            let mut step_events = Vec::new();
            while let Some(output) = self.node.poll() {
                match output {
                    Output::Send(transmit) => match transmit.channel {
                        Channel::Datagram => self.transport.send_datagram(transmit.to, &transmit.bytes).await,
                        Channel::Stream => self.transport.send_frame(transmit.to, transmit.bytes),
                    },
                    Output::Persist(persist) => {
                        writes.push(persist.state);
                        persisted = Some(persist.seq);
                    }
                    Output::Event(event @ (Event::Applied { .. } | Event::Read { .. })) => {
                        // An answer to one caller, not news for everyone.
                        #[cfg(madsim)]
                        step_events.push(event.clone());
                        if let Event::Applied { request, result } | Event::Read { request, result } = event
                            && let Some(reply) = self.applies.remove(&request)
                        {
                            let _ = reply.send(result);
                        }
                    }
                    Output::Event(event) => {
                        membership_changed = true;
                        let elapsed = Instant::now().saturating_duration_since(self.origin);
                        match &event {
                            Event::LeaderChanged { .. } => self.stats.leader_changes += 1,
                            Event::Rebalance(view) => self.stats.view_delivered(view.epoch, elapsed),
                            Event::ClusterStable(view) => self.stats.view_stable(view.epoch, elapsed),
                            _ => {}
                        }
                        if event == Event::LeaveComplete {
                            self.leave_complete = true;
                            for waiter in self.leave_waiters.drain(..) {
                                let _ = waiter.send(());
                            }
                        }
                        #[cfg(madsim)]
                        step_events.push(event.clone());
                        // No subscriber is not an error.
                        let _ = self.events.send(event);
                    }
                }
            }
            #[cfg(madsim)]
            if let Some(observer) = &mut self.hooks.observer {
                observer(&self.node, &step_events);
            }
            // Queries read the snapshot: refresh it on any event, when a
            // commit moved (a follower's `Stable` raises no event), and
            // now and then for the counters.
            if membership_changed
                || self.node.commit_index() != self.published_commit
                || self.published_at.elapsed() >= REPUBLISH_EVERY
            {
                self.publish(None);
            }
            let Some(seq) = persisted else { return true };
            if let Err(error) = self.persist(writes).await {
                tracing::error!(%error, "storage failed; stopping this member");
                self.publish(Some(error.to_string()));
                return false;
            }
            self.node.handle(self.now(), Input::Persisted(seq));
        }
    }

    /// Writes `writes` and syncs them, off the runtime's threads (fsync
    /// blocks). In the simulator the sync takes virtual time, so a kill can
    /// find the batch written and not yet synced.
    async fn persist(&mut self, writes: Vec<quorate_core::PersistState>) -> Result<(), crate::storage::StorageError> {
        self.with_storage(move |storage| storage.write(&writes)).await?;
        #[cfg(madsim)]
        if !self.hooks.sync_latency.is_zero() {
            let slow = if crate::buggify!() { 10 } else { 1 };
            tokio::time::sleep(self.hooks.sync_latency * slow).await;
        }
        self.with_storage(|storage| storage.sync()).await
    }

    async fn with_storage<T: Send + 'static>(
        &mut self,
        work: impl FnOnce(&mut Box<dyn Storage>) -> T + Send + 'static,
    ) -> T {
        let mut storage = self.storage.take().expect("storage is back between calls");
        let (storage, result) = run_blocking(move || {
            let result = work(&mut storage);
            (storage, result)
        })
        .await;
        self.storage = Some(storage);
        result
    }

    fn publish(&mut self, failure: Option<String>) {
        self.published_commit = self.node.commit_index();
        self.published_at = Instant::now();
        self.snapshot.send_replace(Snapshot { failure, ..Snapshot::of(&self.node, &self.stats) });
    }
}
