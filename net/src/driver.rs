//! The one task that drives a member's protocol core.
//!
//! Like quinn's connection driver: feed each input with `now`, drain `poll()`
//! to empty, arm one timer at `next_deadline()`. Sends go to the transport;
//! persists are made durable and confirmed before the sends the core held
//! behind them are released; events go to subscribers, and a snapshot of the
//! member table is published whenever membership changed.

use std::future::pending;
use std::net::SocketAddr;
use std::time::Duration;

use quorate_core::{Channel, Event, Input, MemberInfo, Node, Output, Tags};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::{Instant, sleep_until};

use crate::transport::{Inbound, Transport};

/// Orders from the [`crate::Cluster`] handle.
pub(crate) enum Request {
    Join(Vec<SocketAddr>),
    SetTags(Tags),
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
}

impl Driver {
    pub(crate) async fn run(mut self) {
        self.flush().await;
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
            self.flush().await;
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

    /// Carries out everything the core asked for, confirming persists until
    /// nothing more is released.
    async fn flush(&mut self) {
        loop {
            let mut persisted = None;
            let mut membership_changed = false;
            while let Some(output) = self.node.poll() {
                match output {
                    Output::Send(transmit) => match transmit.channel {
                        Channel::Datagram => self.transport.send_datagram(transmit.to, &transmit.bytes).await,
                        Channel::Stream => self.transport.send_frame(transmit.to, transmit.bytes),
                    },
                    // In-memory storage: durable as soon as it is written.
                    Output::Persist(persist) => persisted = Some(persist.seq),
                    Output::Event(event) => {
                        membership_changed = true;
                        if event == Event::LeaveComplete {
                            self.leave_complete = true;
                            for waiter in self.leave_waiters.drain(..) {
                                let _ = waiter.send(());
                            }
                        }
                        // No subscriber is not an error.
                        let _ = self.events.send(event);
                    }
                }
            }
            if membership_changed {
                self.publish();
            }
            match persisted {
                Some(seq) => self.node.handle(self.now(), Input::Persisted(seq)),
                None => return,
            }
        }
    }

    fn publish(&self) {
        let snapshot = Snapshot { joined: self.node.is_joined(), members: self.node.members().cloned().collect() };
        self.snapshot.send_replace(snapshot);
    }
}
