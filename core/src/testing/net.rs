//! The simulated network: its settings, which links are blocked, and what it counted.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};

use core::time::Duration;

use super::NodeIdx;
use crate::wire::Channel;

/// The port every simulated node listens on, datagrams and streams alike.
pub const PORT: u16 = 7946;

/// How the simulated network behaves. Settable at any time through
/// [`super::Sim::net_mut`]; a change applies to packets sent afterwards.
#[derive(Clone, Debug, PartialEq)]
pub struct NetConfig {
    /// Shortest one-way latency. Each packet's latency is drawn uniformly from
    /// `latency_min..=latency_max`, so a wide range reorders datagrams.
    pub latency_min: Duration,
    /// Longest one-way latency.
    pub latency_max: Duration,
    /// Probability that a datagram is lost, in `0.0..=1.0`. Streams never lose
    /// frames to it, but pay what TCP pays to retransmit: each loss of a frame
    /// delays it by a retransmission timeout (200 ms, doubling on each further
    /// loss; 1 s for a lost handshake on a new connection), as Linux does.
    pub loss: f64,
    /// Probability that a datagram arrives twice (each copy with its own
    /// latency), in `0.0..=1.0`. Streams never duplicate.
    pub duplicate: f64,
    /// Datagrams a paused node's socket buffer holds. When it is full the
    /// oldest buffered datagram is dropped (counted as `overflowed`), as a
    /// kernel drops what no reader takes. Stream frames wait without bound, as
    /// TCP's flow control would hold them at the sender.
    pub socket_buffer_datagrams: usize,
}

impl Default for NetConfig {
    /// 1–5 ms latency, no loss, no duplication, a 256-datagram socket buffer.
    fn default() -> Self {
        NetConfig {
            latency_min: Duration::from_millis(1),
            latency_max: Duration::from_millis(5),
            loss: 0.0,
            duplicate: 0.0,
            socket_buffer_datagrams: 256,
        }
    }
}

impl NetConfig {
    /// Why these settings cannot be simulated, if they cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.latency_min > self.latency_max {
            return Err(format!(
                "latency_min ({:?}) is greater than latency_max ({:?})",
                self.latency_min, self.latency_max
            ));
        }
        if u64::try_from(self.latency_max.as_nanos()).is_err() {
            return Err(format!("latency_max ({:?}) does not fit in u64 nanoseconds", self.latency_max));
        }
        for (name, probability) in [("loss", self.loss), ("duplicate", self.duplicate)] {
            if !(0.0..=1.0).contains(&probability) {
                return Err(format!("{name} ({probability}) is not a probability in 0.0..=1.0"));
            }
        }
        Ok(())
    }
}

/// The default address of slot `idx`: `10.a.b.c:7946`, with `a.b.c` the
/// big-endian bytes of `idx + 1`, so slot 0 is `10.0.0.1`.
pub fn default_addr(idx: NodeIdx) -> SocketAddr {
    let number = u32::try_from(idx.0 + 1).ok().filter(|&n| n < 1 << 24).expect("at most 2^24 - 1 simulated nodes");
    let [_, a, b, c] = number.to_be_bytes();
    SocketAddr::new(Ipv4Addr::new(10, a, b, c).into(), PORT)
}

/// Which directed links are blocked: a partition, isolated nodes and one-way cuts,
/// which compose (a packet passes only if none of them blocks it).
#[derive(Clone, Debug, Default)]
pub(crate) struct Links {
    /// Group of each node named in the current partition; unnamed nodes are group 0.
    groups: BTreeMap<NodeIdx, u32>,
    isolated: BTreeSet<NodeIdx>,
    /// Blocked `(from, to)` pairs.
    cuts: BTreeSet<(NodeIdx, NodeIdx)>,
}

impl Links {
    /// Replaces the partition: nodes in different groups cannot talk; nodes
    /// named in no group form one more group together.
    pub(crate) fn partition(&mut self, groups: &[&[NodeIdx]]) {
        self.groups.clear();
        for (group, members) in (1u32..).zip(groups) {
            for &node in members.iter() {
                let previous = self.groups.insert(node, group);
                assert!(previous.is_none(), "partition: {node} is named in more than one group");
            }
        }
    }

    pub(crate) fn isolate(&mut self, node: NodeIdx) {
        self.isolated.insert(node);
    }

    pub(crate) fn cut(&mut self, from: NodeIdx, to: NodeIdx) {
        self.cuts.insert((from, to));
    }

    pub(crate) fn heal(&mut self) {
        *self = Links::default();
    }

    /// Whether nothing is blocked at all: the common case, checked first.
    fn is_clear(&self) -> bool {
        self.groups.is_empty() && self.isolated.is_empty() && self.cuts.is_empty()
    }

    /// Whether packets from `from` to `to` are dropped. A node always reaches itself.
    pub(crate) fn blocked(&self, from: NodeIdx, to: NodeIdx) -> bool {
        if from == to || self.is_clear() {
            return false;
        }
        let group = |node: NodeIdx| self.groups.get(&node).copied().unwrap_or(0);
        group(from) != group(to)
            || self.isolated.contains(&from)
            || self.isolated.contains(&to)
            || self.cuts.contains(&(from, to))
    }
}

/// What happened to the packets of one channel.
///
/// In [`super::Sim::counters`] these are network-wide. In
/// [`super::Sim::node_counters`] a packet counts as sent, duplicated and
/// dropped for its sender and as delivered for its receiver.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChannelCounters {
    /// Packets nodes handed to the network (a duplicated datagram counts once).
    pub sent: u64,
    /// Bytes of those packets.
    pub bytes_sent: u64,
    /// Packets handed to a node, duplicates included.
    pub delivered: u64,
    /// Bytes of those packets.
    pub bytes_delivered: u64,
    /// Extra copies the network made ([`NetConfig::duplicate`]).
    pub duplicated: u64,
    /// Datagrams lost at random ([`NetConfig::loss`]).
    pub lost: u64,
    /// Packets dropped by a partition, cut or isolation, at send or at delivery.
    pub blocked: u64,
    /// Packets whose destination address belongs to no node, or whose
    /// destination was down or restarted before delivery; stream frames also
    /// when their sender crashed or restarted (the connection broke).
    pub unreachable: u64,
    /// Datagrams dropped from a paused node's full socket buffer.
    pub overflowed: u64,
}

impl ChannelCounters {
    /// Packets dropped for any reason.
    pub fn dropped(&self) -> u64 {
        self.lost + self.blocked + self.unreachable + self.overflowed
    }
}

/// Packet counters for both channels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Datagrams.
    pub datagrams: ChannelCounters,
    /// Stream frames.
    pub streams: ChannelCounters,
}

impl Counters {
    /// The counters of `channel`.
    pub fn channel(&self, channel: Channel) -> &ChannelCounters {
        match channel {
            Channel::Datagram => &self.datagrams,
            Channel::Stream => &self.streams,
        }
    }

    pub(crate) fn channel_mut(&mut self, channel: Channel) -> &mut ChannelCounters {
        match channel {
            Channel::Datagram => &mut self.datagrams,
            Channel::Stream => &mut self.streams,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: NodeIdx = NodeIdx(0);
    const B: NodeIdx = NodeIdx(1);
    const C: NodeIdx = NodeIdx(2);
    const D: NodeIdx = NodeIdx(3);

    #[test]
    fn a_partition_blocks_across_groups_both_ways_and_unnamed_nodes_form_a_group() {
        let mut links = Links::default();
        links.partition(&[&[A, B]]);
        assert!(links.blocked(A, C) && links.blocked(C, A));
        assert!(!links.blocked(A, B) && !links.blocked(C, D), "same side talks");
        links.heal();
        assert!(!links.blocked(A, C));
    }

    #[test]
    fn a_cut_blocks_one_direction_and_isolation_blocks_both() {
        let mut links = Links::default();
        links.cut(A, B);
        assert!(links.blocked(A, B));
        assert!(!links.blocked(B, A));
        links.isolate(C);
        assert!(links.blocked(C, D) && links.blocked(D, C));
        assert!(!links.blocked(C, C), "a node always reaches itself");
    }

    #[test]
    #[should_panic(expected = "more than one group")]
    fn a_node_in_two_groups_is_refused() {
        Links::default().partition(&[&[A, B], &[B, C]]);
    }

    #[test]
    fn default_addresses_are_distinct_and_readable() {
        assert_eq!(default_addr(NodeIdx(0)).to_string(), "10.0.0.1:7946");
        assert_eq!(default_addr(NodeIdx(255)).to_string(), "10.0.1.0:7946");
        assert_eq!(default_addr(NodeIdx(70_000)).to_string(), "10.1.17.113:7946");
    }

    #[test]
    fn invalid_settings_are_named() {
        let config = NetConfig { latency_min: Duration::from_millis(9), ..NetConfig::default() };
        assert!(config.validate().unwrap_err().contains("latency_min"));
        let config = NetConfig { loss: 1.5, ..NetConfig::default() };
        assert!(config.validate().unwrap_err().contains("loss"));
        assert_eq!(NetConfig::default().validate(), Ok(()));
    }
}
