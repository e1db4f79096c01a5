//! The queue of updates waiting to be piggybacked (SWIM §4.1's dissemination).
//!
//! Each update is sent a limited number of times (`retransmit_mult ·
//! ceil(log10(n + 1))`, as memberlist does); the least-sent go first, and among
//! equals the newest, so fresh news overtakes old. A newer claim about a member
//! replaces the queued one. One entry per member, so the queue is bounded by
//! the member table.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use crate::id::MemberId;
use crate::membership::message::Update;

/// Entries that did not fit, looked at per fill before giving up: bounds the
/// cost of one datagram when many large updates are queued.
const MISFITS_AT_MOST: usize = 8;

/// The smallest encoded update (a `Left` with one-byte varints: tag, 16-byte
/// id, boot, incarnation); below this budget nothing more fits.
const SMALLEST_UPDATE_BYTES: usize = 19;

/// Position in the send order: fewest transmissions first, then newest.
type Rank = (u32, Reverse<u64>);

#[derive(Debug, Default)]
pub(crate) struct BroadcastQueue {
    /// The entries in send order.
    order: BTreeMap<Rank, Entry>,
    /// Where the entry about each member sits in `order`.
    ranks: BTreeMap<MemberId, Rank>,
    next_seq: u64,
}

#[derive(Debug)]
struct Entry {
    update: Update,
    encoded_len: usize,
}

impl BroadcastQueue {
    /// Queues `update`, replacing whatever was queued about the same member.
    pub(crate) fn push(&mut self, update: Update) {
        let subject = update.subject();
        self.remove(subject);
        let encoded_len = postcard::experimental::serialized_size(&update).unwrap_or(usize::MAX);
        let rank = (0, Reverse(self.next_seq));
        self.next_seq += 1;
        self.ranks.insert(subject, rank);
        self.order.insert(rank, Entry { update, encoded_len });
    }

    /// Drops whatever is queued about `id`.
    pub(crate) fn remove(&mut self, id: MemberId) {
        if let Some(rank) = self.ranks.remove(&id) {
            self.order.remove(&rank);
        }
    }

    /// Appends to `out` the updates that fit in `budget` bytes (and in `max_count`
    /// entries in all), least-sent first, counting each as transmitted once more
    /// and retiring those sent `limit` times. Returns the bytes used.
    pub(crate) fn fill(&mut self, mut budget: usize, max_count: usize, limit: u32, out: &mut Vec<Update>) -> usize {
        let mut chosen = Vec::new();
        let mut used = 0;
        let mut misfits = 0;
        for (&rank, entry) in &self.order {
            if out.len() + chosen.len() >= max_count || budget < SMALLEST_UPDATE_BYTES || misfits == MISFITS_AT_MOST {
                break;
            }
            if entry.encoded_len <= budget {
                budget -= entry.encoded_len;
                used += entry.encoded_len;
                chosen.push(rank);
            } else {
                misfits += 1;
            }
        }
        for rank in chosen {
            let entry = self.order.remove(&rank).expect("chosen from the queue");
            out.push(entry.update.clone());
            let (transmits, seq) = rank;
            let subject = entry.update.subject();
            if transmits + 1 >= limit {
                self.ranks.remove(&subject);
            } else {
                let rank = (transmits + 1, seq);
                self.ranks.insert(subject, rank);
                self.order.insert(rank, entry);
            }
        }
        used
    }

    /// Whether anything about `id` is queued.
    pub(crate) fn contains(&self, id: MemberId) -> bool {
        self.ranks.contains_key(&id)
    }

    pub(crate) fn len(&self) -> usize {
        self.ranks.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.ranks.is_empty()
    }

    pub(crate) fn subjects(&self) -> impl Iterator<Item = MemberId> + '_ {
        self.ranks.keys().copied()
    }

    pub(crate) fn check_invariants(&self) {
        assert_eq!(self.order.len(), self.ranks.len(), "broadcast indexes differ in size");
        for (id, rank) in &self.ranks {
            let entry = self.order.get(rank);
            assert!(entry.is_some_and(|entry| entry.update.subject() == *id), "broadcast about {id} misplaced");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn left(id: u128, incarnation: u32) -> Update {
        Update::Left { id: MemberId::from_u128(id), boot_id: 1, incarnation }
    }

    #[test]
    fn the_smallest_update_is_as_small_as_the_scan_assumes() {
        let encoded = postcard::experimental::serialized_size(&left(1, 0)).unwrap();
        assert_eq!(encoded, SMALLEST_UPDATE_BYTES);
    }

    #[test]
    fn each_update_is_sent_at_most_the_retransmit_limit() {
        // memberlist's TransmitLimitedQueue: retire after `limit` transmissions.
        let mut queue = BroadcastQueue::default();
        queue.push(left(1, 0));
        let mut sent = 0;
        for _ in 0..10 {
            let mut out = Vec::new();
            queue.fill(1000, 64, 3, &mut out);
            sent += out.len();
        }
        assert_eq!(sent, 3);
        assert!(queue.is_empty());
        queue.check_invariants();
    }

    #[test]
    fn least_sent_and_newest_updates_go_first_and_the_budget_is_respected() {
        let mut queue = BroadcastQueue::default();
        queue.push(left(1, 0));
        let mut out = Vec::new();
        queue.fill(1000, 64, 10, &mut out); // member 1 now sent once
        queue.push(left(2, 0));
        queue.push(left(3, 0));
        let one = postcard::experimental::serialized_size(&left(1, 0)).unwrap();
        let mut out = Vec::new();
        let used = queue.fill(2 * one, 64, 10, &mut out);
        assert_eq!(used, 2 * one);
        let subjects: Vec<_> = out.iter().map(|update| update.subject().as_u128()).collect();
        assert_eq!(subjects, [3, 2], "unsent before sent, newest first");
        queue.check_invariants();
    }

    #[test]
    fn a_newer_claim_replaces_the_queued_one_about_the_same_member() {
        let mut queue = BroadcastQueue::default();
        queue.push(left(1, 0));
        queue.push(left(1, 7));
        assert_eq!(queue.len(), 1);
        let mut out = Vec::new();
        queue.fill(1000, 64, 10, &mut out);
        assert_eq!(out, [left(1, 7)]);
        queue.check_invariants();
    }
}
