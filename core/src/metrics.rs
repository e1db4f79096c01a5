//! Counters a node keeps about its own traffic, for `/metrics` and for tests.
//!
//! Plain counters, never reset; the adapter turns them into Prometheus text.

use std::collections::BTreeMap;

/// Why received bytes were dropped before reaching a sub-machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rejection {
    /// Over the channel's size limit.
    TooLarge,
    /// An unknown protocol version.
    UnknownVersion,
    /// Not a well-formed envelope.
    Malformed,
    /// Damaged on the way: the bytes do not match their checksum.
    Corrupt,
    /// Another cluster's name hash.
    ForeignCluster,
    /// Sent by this very member (e.g. its own address listed as a seed).
    FromSelf,
    /// From an older boot of a member whose newer boot we know.
    StaleBoot,
    /// A probe meant for another member that used to have this address.
    Misdirected,
    /// A message other than a join from a member without a cluster uuid.
    Unbootstrapped,
}

impl Rejection {
    /// A stable lower-case name for metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::TooLarge => "too_large",
            Rejection::UnknownVersion => "unknown_version",
            Rejection::Malformed => "malformed",
            Rejection::Corrupt => "corrupt",
            Rejection::ForeignCluster => "foreign_cluster",
            Rejection::FromSelf => "from_self",
            Rejection::StaleBoot => "stale_boot",
            Rejection::Misdirected => "misdirected",
            Rejection::Unbootstrapped => "unbootstrapped",
        }
    }
}

/// Traffic counters of one node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metrics {
    /// Messages sent, by kind.
    pub sent: BTreeMap<&'static str, u64>,
    /// Messages received and accepted, by kind.
    pub received: BTreeMap<&'static str, u64>,
    /// Bytes sent, envelopes included.
    pub bytes_sent: u64,
    /// Bytes received, rejected ones included.
    pub bytes_received: u64,
    /// Messages refused, by reason.
    pub rejected: BTreeMap<Rejection, u64>,
    /// Datagrams dropped because the caller did not drain `poll()`.
    pub dropped_outputs: u64,
    /// Messages that could not be encoded within their channel's limit.
    pub oversized_outputs: u64,
    /// News of members dropped because the member table was full of live members.
    pub dropped_members: u64,
    /// Relayed probes refused because too many were in flight.
    pub dropped_relays: u64,
}

impl Metrics {
    pub(crate) fn count_sent(&mut self, kind: &'static str, bytes: usize) {
        *self.sent.entry(kind).or_default() += 1;
        self.bytes_sent += bytes as u64;
    }

    pub(crate) fn count_received(&mut self, kind: &'static str) {
        *self.received.entry(kind).or_default() += 1;
    }

    pub(crate) fn count_rejected(&mut self, reason: Rejection) {
        *self.rejected.entry(reason).or_default() += 1;
    }

    /// How many messages were refused for `reason`.
    pub fn rejected(&self, reason: Rejection) -> u64 {
        self.rejected.get(&reason).copied().unwrap_or(0)
    }
}
