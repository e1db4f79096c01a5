//! Simulated storage: what a node made durable, and what is still in flight.
//!
//! Like the simulated store of DESIGN §4, it keeps *synced* and *pending*
//! writes apart: a [`Persist`] becomes synced only after the disk's fsync
//! delay, and a crash drops whatever is still pending. What a restart with its
//! disk recovers is exactly the synced state.

use std::collections::VecDeque;

use core::time::Duration;

use crate::id::MemberId;
use crate::node::{Persist, Recovered};

/// What a restarted node finds on its disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disk {
    /// The data dir survived: same durable id, the synced state is recovered.
    Keep,
    /// The data dir is gone: a fresh durable id and empty state, as for a new member.
    Lost,
}

/// How the simulated disks behave. Settable at any time through
/// [`super::Sim::disk_mut`]; a change applies to writes issued afterwards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskConfig {
    /// Time from a [`Persist`] output to the write being synced and confirmed
    /// with [`crate::Input::Persisted`]. Writes of one node complete in order.
    pub fsync_delay: Duration,
}

impl Default for DiskConfig {
    /// A 1 ms fsync.
    fn default() -> Self {
        DiskConfig { fsync_delay: Duration::from_millis(1) }
    }
}

/// One node slot's storage: its durable id, synced state and pending writes.
#[derive(Clone, Debug)]
pub struct Storage {
    member_id: MemberId,
    synced: Recovered,
    pending: VecDeque<Persist>,
    writes: u64,
}

impl Storage {
    /// Fresh, empty storage for a member with this durable id.
    pub(crate) fn new(member_id: MemberId) -> Self {
        Storage { member_id, synced: Recovered::default(), pending: VecDeque::new(), writes: 0 }
    }

    /// The durable id created with this storage.
    pub fn member_id(&self) -> MemberId {
        self.member_id
    }

    /// The state a restart with [`Disk::Keep`] recovers.
    pub fn synced(&self) -> &Recovered {
        &self.synced
    }

    /// Writes issued but not yet synced, oldest first; a crash loses them.
    pub fn pending(&self) -> impl Iterator<Item = &Persist> {
        self.pending.iter()
    }

    /// Writes issued over this slot's life (each a write and an fsync).
    pub fn writes(&self) -> u64 {
        self.writes
    }

    /// Queues a write; it becomes durable at [`Storage::sync`].
    pub(crate) fn write(&mut self, persist: Persist) {
        self.writes += 1;
        debug_assert!(
            self.pending.back().is_none_or(|last| last.seq < persist.seq),
            "persist sequence numbers increase"
        );
        self.pending.push_back(persist);
    }

    /// Makes every pending write up to `seq` durable. Returns whether `seq`
    /// was pending (it is not after a crash dropped it).
    pub(crate) fn sync(&mut self, seq: u64) -> bool {
        let mut found = false;
        while let Some(persist) = self.pending.front().filter(|persist| persist.seq <= seq) {
            found |= persist.seq == seq;
            self.synced.apply(&persist.state);
            self.pending.pop_front();
        }
        found
    }

    /// A crash: the pending writes never reach the disk.
    pub(crate) fn crash(&mut self) {
        self.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::PersistState;

    fn boot(seq: u64, boot_id: u64) -> Persist {
        Persist { seq, state: PersistState::BootId(boot_id) }
    }

    #[test]
    fn a_write_is_recovered_only_once_synced() {
        let mut storage = Storage::new(MemberId::from_u128(1));
        storage.write(boot(1, 1));
        assert_eq!(storage.synced().boot_id, 0);
        assert_eq!(storage.pending().count(), 1);
        assert!(storage.sync(1));
        assert_eq!(storage.synced().boot_id, 1);
        assert_eq!(storage.pending().count(), 0);
    }

    #[test]
    fn a_crash_drops_pending_writes_and_keeps_synced_ones() {
        let mut storage = Storage::new(MemberId::from_u128(1));
        storage.write(boot(1, 1));
        storage.sync(1);
        storage.write(boot(2, 2));
        storage.crash();
        assert!(!storage.sync(2), "the dropped write is gone");
        assert_eq!(storage.synced().boot_id, 1);
    }

    #[test]
    fn syncing_a_later_write_syncs_the_earlier_ones_in_order() {
        let mut storage = Storage::new(MemberId::from_u128(1));
        storage.write(boot(1, 5));
        storage.write(boot(2, 6));
        assert!(storage.sync(2));
        assert_eq!(storage.synced().boot_id, 6);
    }
}
