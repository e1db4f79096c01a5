//! The simulated disk: real file I/O cannot run under madsim, so each slot's
//! durable state lives in memory the harness owns, with what was synced kept
//! apart from what was only written.
//!
//! The adapter writes a batch, waits the plan's sync latency (virtual time,
//! during which a kill can land), then syncs. A kill drops the member's
//! tasks wherever they are; what it wrote and did not sync is lost when it
//! loads again, as after a power cut. A restart with its disk lost gets a new
//! empty [`Disk`]: a new durable id under the same name.

use std::sync::{Arc, Mutex};

use quorate::storage::{Loaded, Storage, StorageError};
use quorate_core::{MemberId, PersistState, Recovered};

/// One slot's disk, shared by the harness and the member's store.
#[derive(Clone, Debug)]
pub struct Disk(Arc<Mutex<DiskState>>);

#[derive(Debug)]
struct DiskState {
    member_id: MemberId,
    synced: Recovered,
    /// Written since the last sync, in order.
    pending: Vec<PersistState>,
    /// Writes lost to kills, for the trace.
    lost: u64,
}

impl Disk {
    /// An empty disk; `member_id` is the durable id a store on it gets.
    pub fn new(member_id: MemberId) -> Disk {
        Disk(Arc::new(Mutex::new(DiskState { member_id, synced: Recovered::default(), pending: Vec::new(), lost: 0 })))
    }

    /// A store on this disk for one boot of its member.
    pub fn store(&self) -> SimStorage {
        SimStorage { disk: self.clone() }
    }

    /// Writes lost so far because they were never synced.
    pub fn lost_writes(&self) -> u64 {
        self.0.lock().expect("disk lock").lost
    }

    /// Writes waiting for a sync.
    pub fn pending_writes(&self) -> usize {
        self.0.lock().expect("disk lock").pending.len()
    }
}

/// The [`Storage`] a simulated member runs with.
#[derive(Debug)]
pub struct SimStorage {
    disk: Disk,
}

impl Storage for SimStorage {
    fn load(&mut self) -> Result<Loaded, StorageError> {
        let mut disk = self.disk.0.lock().expect("disk lock");
        // A boot starts from what was synced: the rest died with the last one.
        disk.lost += disk.pending.len() as u64;
        disk.pending.clear();
        Ok(Loaded { member_id: disk.member_id, recovered: disk.synced.clone() })
    }

    fn write(&mut self, writes: &[PersistState]) -> Result<(), StorageError> {
        self.disk.0.lock().expect("disk lock").pending.extend_from_slice(writes);
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        let mut disk = self.disk.0.lock().expect("disk lock");
        let pending = std::mem::take(&mut disk.pending);
        for write in &pending {
            disk.synced.apply(write);
        }
        Ok(())
    }

    fn is_durable(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_synced_writes_survive_a_new_boot() {
        let disk = Disk::new(MemberId::from_u128(7));
        let mut store = disk.store();
        assert_eq!(store.load().unwrap().member_id, MemberId::from_u128(7));
        store.write(&[PersistState::BootId(1)]).unwrap();
        store.sync().unwrap();
        store.write(&[PersistState::BootId(2)]).unwrap();
        assert_eq!(disk.pending_writes(), 1);
        // The member was killed between the write and its sync.
        let loaded = disk.store().load().unwrap();
        assert_eq!(loaded.recovered.boot_id, 1);
        assert_eq!(disk.lost_writes(), 1);
        assert_eq!(disk.pending_writes(), 0);
    }

    #[test]
    fn a_new_disk_is_a_new_member() {
        let old = Disk::new(MemberId::from_u128(1));
        old.store().persist(&[PersistState::BootId(3)]).unwrap();
        let new = Disk::new(MemberId::from_u128(2));
        let loaded = new.store().load().unwrap();
        assert_eq!((loaded.member_id, loaded.recovered.boot_id), (MemberId::from_u128(2), 0));
    }
}
