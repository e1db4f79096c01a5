//! What a run leaves behind: the event log, the fault log, recorded deliveries
//! and the trace hash that proves two runs identical (DESIGN §5, D1).

use std::net::SocketAddr;

use xxhash_rust::xxh3::Xxh3Default;

use super::{Disk, NodeIdx};
use crate::id::MemberId;
use crate::node::Event;
use crate::time::Instant;
use crate::wire::Channel;

/// One [`Event`] a node reported, with when, where and in which boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRecord {
    /// Virtual time of the report.
    pub at: Instant,
    /// The node that reported it.
    pub node: NodeIdx,
    /// The reporting node's boot id at the time.
    pub boot_id: u64,
    /// What it reported.
    pub event: Event,
}

impl EventRecord {
    /// A stable snake-case name of the event's kind, e.g. `"member_failed"`.
    pub fn kind(&self) -> &'static str {
        kind_and_subject(&self.event).0
    }

    /// The member the event is about, if it is about one.
    pub fn subject(&self) -> Option<MemberId> {
        kind_and_subject(&self.event).1
    }
}

/// Exhaustive on purpose: a new event must choose its name and subject here,
/// since both go into the trace hash.
fn kind_and_subject(event: &Event) -> (&'static str, Option<MemberId>) {
    match event {
        Event::Joined => ("joined", None),
        Event::MemberJoined(info) => ("member_joined", Some(info.id)),
        Event::MemberRestarted(info) => ("member_restarted", Some(info.id)),
        Event::MemberUpdated(info) => ("member_updated", Some(info.id)),
        Event::MemberSuspected(info) => ("member_suspected", Some(info.id)),
        Event::MemberRecovered(info) => ("member_recovered", Some(info.id)),
        Event::MemberFailed(info) => ("member_failed", Some(info.id)),
        Event::MemberLeft(info) => ("member_left", Some(info.id)),
        Event::MemberReaped(id) => ("member_reaped", Some(*id)),
        Event::NameConflict { other, .. } => ("name_conflict", Some(*other)),
        Event::LeaveComplete => ("leave_complete", None),
        Event::Bootstrapped { .. } => ("bootstrapped", None),
        Event::BootstrapRefused { .. } => ("bootstrap_refused", None),
        Event::JoinedCluster { .. } => ("joined_cluster", None),
        Event::LeaderChanged { leader, .. } => ("leader_changed", *leader),
        Event::Rebalance(_) => ("rebalance", None),
        Event::ClusterStable(_) => ("cluster_stable", None),
        Event::Applied { .. } => ("applied", None),
        Event::Read { .. } => ("read", None),
        Event::Fenced { .. } => ("fenced", None),
    }
}

/// A fault the test injected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// [`super::Sim::crash`].
    Crash(NodeIdx),
    /// [`super::Sim::restart`] or [`super::Sim::restart_at`].
    Restart {
        /// The node.
        node: NodeIdx,
        /// What its disk kept.
        disk: Disk,
        /// Its address after the restart.
        addr: SocketAddr,
    },
    /// [`super::Sim::pause`].
    Pause(NodeIdx),
    /// [`super::Sim::resume`].
    Resume(NodeIdx),
    /// [`super::Sim::partition`].
    Partition(Vec<Vec<NodeIdx>>),
    /// [`super::Sim::cut`].
    Cut {
        /// Sending side.
        from: NodeIdx,
        /// Receiving side.
        to: NodeIdx,
    },
    /// [`super::Sim::isolate`].
    Isolate(NodeIdx),
    /// [`super::Sim::heal`].
    Heal,
}

/// A fault and when it was injected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultRecord {
    /// Virtual time of the injection.
    pub at: Instant,
    /// The fault.
    pub fault: Fault,
}

/// One packet handed to a node, kept when
/// [`super::Sim::set_record_deliveries`] is on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// When it was sent (or injected).
    pub sent_at: Instant,
    /// When the node got it.
    pub at: Instant,
    /// The sending node; `None` for bytes given to [`super::Sim::inject`].
    pub src: Option<NodeIdx>,
    /// The receiving node.
    pub dst: NodeIdx,
    /// The source address the node saw.
    pub from: SocketAddr,
    /// How it came.
    pub channel: Channel,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// Running xxh3 over everything that makes a run what it is. Each record
/// starts with a tag byte and length-prefixes its variable parts, so no two
/// different sequences of records feed the hasher the same bytes.
#[derive(Clone)]
pub(crate) struct TraceHasher(Xxh3Default);

const TAG_DELIVERY: u8 = 1;
const TAG_EVENT: u8 = 2;
const TAG_FAULT: u8 = 3;

/// Stands for the sender of injected bytes.
const NO_NODE: u64 = u64::MAX;

impl TraceHasher {
    pub(crate) fn new() -> Self {
        TraceHasher(Xxh3Default::new())
    }

    pub(crate) fn digest(&self) -> u64 {
        self.0.digest()
    }

    pub(crate) fn delivery(&mut self, at: Instant, src: Option<NodeIdx>, dst: NodeIdx, channel: Channel, bytes: &[u8]) {
        let hasher = &mut self.0;
        hasher.update(&[TAG_DELIVERY, channel as u8]);
        hasher.update(&at.as_nanos().to_le_bytes());
        hasher.update(&src.map_or(NO_NODE, |src| src.0 as u64).to_le_bytes());
        hasher.update(&(dst.0 as u64).to_le_bytes());
        hasher.update(&(bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    }

    pub(crate) fn event(&mut self, record: &EventRecord) {
        let (kind, subject) = kind_and_subject(&record.event);
        let hasher = &mut self.0;
        hasher.update(&[TAG_EVENT, kind.len() as u8]);
        hasher.update(kind.as_bytes());
        hasher.update(&record.at.as_nanos().to_le_bytes());
        hasher.update(&(record.node.0 as u64).to_le_bytes());
        hasher.update(&record.boot_id.to_le_bytes());
        match subject {
            Some(id) => {
                hasher.update(&[1]);
                hasher.update(&id.0);
            }
            None => hasher.update(&[0]),
        }
    }

    pub(crate) fn fault(&mut self, record: &FaultRecord) {
        // Faults are rare; their debug form is stable enough within one build,
        // which is all a trace hash promises.
        let text = format!("{:?}", record.fault);
        let hasher = &mut self.0;
        hasher.update(&[TAG_FAULT]);
        hasher.update(&record.at.as_nanos().to_le_bytes());
        hasher.update(&(text.len() as u64).to_le_bytes());
        hasher.update(text.as_bytes());
    }
}
