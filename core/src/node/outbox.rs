//! The outbox: outputs waiting for the driver, and the rule that holds sends
//! behind unconfirmed persists (STYLE: persistence orders sends).

use std::collections::VecDeque;
use std::net::SocketAddr;

use crate::metrics::Metrics;
use crate::node::{Event, Output, Persist, PersistState, Transmit};
use crate::wire::{Body, Channel, Envelope, Header, limits};

/// Outputs waiting for the driver, and the rule that holds sends behind
/// unconfirmed persists.
#[derive(Debug)]
pub(crate) struct Outbox {
    header: Header,
    ready: VecDeque<Output>,
    /// Sends queued after a persist that is not yet confirmed.
    held: VecDeque<Transmit>,
    next_persist_seq: u64,
    /// The highest persist sequence number handed out and not yet confirmed.
    unconfirmed: Option<u64>,
    pub(crate) metrics: Metrics,
    events_reported: u64,
}

impl Outbox {
    pub(crate) fn new(header: Header) -> Self {
        Outbox {
            header,
            ready: VecDeque::new(),
            held: VecDeque::new(),
            next_persist_seq: 1,
            unconfirmed: None,
            metrics: Metrics::default(),
            events_reported: 0,
        }
    }

    /// Encodes `body` and queues it for `to`; a message too large for its
    /// channel is counted and dropped (sub-machines budget sizes, so this is a
    /// bug, reported in logs).
    pub(crate) fn send(&mut self, to: SocketAddr, channel: Channel, body: Body) {
        let kind = body.kind();
        let envelope = Envelope { header: self.header, body };
        let bytes = match envelope.encode(channel) {
            Ok(bytes) => bytes,
            Err(error) => {
                self.metrics.oversized_outputs += 1;
                tracing::warn!(%to, kind, %error, "message not sent");
                return;
            }
        };
        if channel == Channel::Datagram && self.ready.len() + self.held.len() >= limits::MAX_QUEUED_OUTPUTS {
            self.metrics.dropped_outputs += 1;
            return;
        }
        self.metrics.count_sent(kind, bytes.len());
        let transmit = Transmit { to, channel, bytes };
        if self.unconfirmed.is_some() {
            self.held.push_back(transmit);
        } else {
            self.ready.push_back(Output::Send(transmit));
        }
    }

    /// Bytes of an envelope around an empty body: what every message pays.
    pub(crate) fn header_len(&self) -> usize {
        postcard::experimental::serialized_size(&self.header).unwrap_or(64)
    }

    /// Queues a persist; every send queued after it waits for its
    /// confirmation. Returns its sequence number.
    pub(crate) fn persist(&mut self, state: PersistState) -> u64 {
        let seq = self.next_persist_seq;
        self.next_persist_seq += 1;
        self.unconfirmed = Some(seq);
        self.ready.push_back(Output::Persist(Persist { seq, state }));
        seq
    }

    pub(crate) fn pop(&mut self) -> Option<Output> {
        self.ready.pop_front()
    }

    pub(crate) fn header(&self) -> &Header {
        &self.header
    }

    /// Changes the cluster uuid every later envelope carries.
    pub(crate) fn set_cluster_uuid(&mut self, uuid: crate::id::ClusterUuid) {
        self.header.cluster_uuid = uuid;
    }

    /// Events reported so far: a cheap sign that something changed.
    pub(crate) fn events_reported(&self) -> u64 {
        self.events_reported
    }

    pub(crate) fn event(&mut self, event: Event) {
        self.events_reported += 1;
        self.ready.push_back(Output::Event(event));
    }

    pub(crate) fn confirm_persisted(&mut self, seq: u64) {
        if self.unconfirmed.is_some_and(|waiting| seq >= waiting) {
            self.unconfirmed = None;
            self.ready.extend(self.held.drain(..).map(Output::Send));
        }
    }
}
