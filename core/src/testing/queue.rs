//! The simulator's one event queue: everything that will happen, in time order.
//!
//! Ties at one instant go in the order they were scheduled (a sequence number
//! breaks them), so a run never depends on the heap's internal layout.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::net::SocketAddr;

use super::NodeIdx;
use crate::time::Instant;
use crate::wire::Channel;

/// Bytes on their way from one node to another.
#[derive(Debug)]
pub(crate) struct Packet {
    pub(crate) src: NodeIdx,
    pub(crate) dst: NodeIdx,
    /// The source address the receiver will see.
    pub(crate) from: SocketAddr,
    pub(crate) channel: Channel,
    pub(crate) bytes: Vec<u8>,
    pub(crate) sent_at: Instant,
    /// The sender's generation at send time: a stream breaks if it changes.
    pub(crate) src_generation: u64,
    /// The receiver's generation at send time: a crash or restart since drops the packet.
    pub(crate) dst_generation: u64,
}

/// What happens when an entry comes due.
#[derive(Debug)]
pub(crate) enum Action {
    /// Hand a packet to its destination.
    Deliver(Packet),
    /// A node's deadline: tick it, unless the entry is stale (the node's
    /// deadline moved or the node restarted since).
    Timer { node: NodeIdx, generation: u64, deadline: Instant },
    /// A write reached the disk: sync it and confirm it to the node.
    Synced { node: NodeIdx, generation: u64, seq: u64 },
    /// The node's application finished rebalancing to view `epoch`.
    AppAck { node: NodeIdx, generation: u64, epoch: u64 },
}

#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) at: Instant,
    order: u64,
    pub(crate) action: Action,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.order).cmp(&(other.at, other.order))
    }
}

/// A min-queue of entries by `(at, order of scheduling)`.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    heap: BinaryHeap<Reverse<Entry>>,
    next_order: u64,
}

impl Queue {
    pub(crate) fn push(&mut self, at: Instant, action: Action) {
        let order = self.next_order;
        self.next_order += 1;
        self.heap.push(Reverse(Entry { at, order, action }));
    }

    /// When the next entry is due.
    pub(crate) fn peek_at(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(entry)| entry.at)
    }

    pub(crate) fn pop(&mut self) -> Option<Entry> {
        self.heap.pop().map(|Reverse(entry)| entry)
    }

    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timer(node: usize) -> Action {
        Action::Timer { node: NodeIdx(node), generation: 0, deadline: Instant::ZERO }
    }

    fn node_of(entry: Entry) -> usize {
        match entry.action {
            Action::Timer { node, .. } => node.0,
            _ => unreachable!("only timers are queued here"),
        }
    }

    #[test]
    fn entries_come_out_by_time_then_in_scheduling_order() {
        let mut queue = Queue::default();
        queue.push(Instant::from_nanos(20), timer(0));
        queue.push(Instant::from_nanos(10), timer(1));
        queue.push(Instant::from_nanos(20), timer(2));
        queue.push(Instant::from_nanos(10), timer(3));
        assert_eq!(queue.peek_at(), Some(Instant::from_nanos(10)));
        let order: Vec<usize> = std::iter::from_fn(|| queue.pop()).map(node_of).collect();
        assert_eq!(order, [1, 3, 0, 2]);
    }
}
