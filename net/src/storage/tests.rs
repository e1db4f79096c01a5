//! The file store against a disk that forgets: on a simulated crash it keeps
//! only fsynced bytes (and names whose directory was synced), plus a random
//! prefix of what was written since — a torn write. A `kill -9` keeps the
//! page cache and so cannot catch a missing fsync; this disk can.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};

use quorate_core::raft::{Entry, Payload, Snapshot};
use quorate_core::{ClusterUuid, MemberId, PersistState, Recovered};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;

#[derive(Debug, Default, Clone)]
struct Contents {
    synced: Vec<u8>,
    current: Vec<u8>,
}

/// An in-memory disk with crash semantics.
#[derive(Debug)]
struct CrashDisk {
    rng: ChaCha8Rng,
    files: BTreeMap<u64, Contents>,
    names: BTreeMap<PathBuf, u64>,
    durable_names: BTreeMap<PathBuf, u64>,
    dirs: BTreeSet<PathBuf>,
    next_file: u64,
    /// Drop every sync: the bug a missing fsync would be.
    skip_syncs: bool,
    /// Fail the next sync with an error (a crash in the middle of a persist).
    fail_next_sync: bool,
}

impl CrashDisk {
    fn new(seed: u64) -> Self {
        CrashDisk {
            rng: ChaCha8Rng::seed_from_u64(seed),
            files: BTreeMap::new(),
            names: BTreeMap::new(),
            durable_names: BTreeMap::new(),
            dirs: BTreeSet::new(),
            next_file: 0,
            skip_syncs: false,
            fail_next_sync: false,
        }
    }

    /// A power cut: unsynced names vanish, unsynced bytes are lost but for a
    /// random prefix of what was appended after the synced part.
    fn crash(&mut self) {
        self.names = self.durable_names.clone();
        for contents in self.files.values_mut() {
            if contents.current.starts_with(&contents.synced) {
                let extra = contents.current.len() - contents.synced.len();
                let kept = if extra == 0 { 0 } else { self.rng.random_range(0..=extra) };
                contents.current.truncate(contents.synced.len() + kept);
            } else {
                contents.current = contents.synced.clone();
            }
            contents.synced = contents.current.clone();
        }
    }

    fn contents(&mut self, path: &Path) -> Option<&mut Contents> {
        let id = *self.names.get(path)?;
        self.files.get_mut(&id)
    }

    fn new_file(&mut self, path: &Path) -> &mut Contents {
        let id = self.next_file;
        self.next_file += 1;
        self.names.insert(path.to_path_buf(), id);
        self.files.entry(id).or_default()
    }

    /// Flips one bit of the file at `path`, at byte `offset`.
    fn flip(&mut self, path: &Path, offset: usize) {
        let contents = self.contents(path).expect("file exists");
        contents.current[offset] ^= 0x10;
        contents.synced = contents.current.clone();
    }
}

impl Io for CrashDisk {
    fn create_dir(&mut self, dir: &Path) -> io::Result<()> {
        self.dirs.insert(dir.to_path_buf());
        Ok(())
    }

    fn lock(&mut self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }

    fn read(&mut self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        Ok(self.contents(path).map(|contents| contents.current.clone()))
    }

    fn append(&mut self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        match self.contents(path) {
            Some(contents) => contents.current.extend_from_slice(bytes),
            None => self.new_file(path).current.extend_from_slice(bytes),
        }
        Ok(())
    }

    fn write(&mut self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        self.new_file(path).current = bytes.to_vec();
        Ok(())
    }

    fn truncate(&mut self, path: &Path, len: u64) -> io::Result<()> {
        let contents = self.contents(path).ok_or(io::ErrorKind::NotFound)?;
        contents.current.truncate(len as usize);
        Ok(())
    }

    fn sync(&mut self, path: &Path) -> io::Result<()> {
        if std::mem::take(&mut self.fail_next_sync) {
            return Err(io::Error::other("power cut during fsync"));
        }
        if !self.skip_syncs
            && let Some(contents) = self.contents(path)
        {
            contents.synced = contents.current.clone();
        }
        Ok(())
    }

    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        let id = self.names.remove(from).ok_or(io::ErrorKind::NotFound)?;
        self.names.insert(to.to_path_buf(), id);
        Ok(())
    }

    fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
        if !self.skip_syncs {
            self.durable_names.retain(|path, _| path.parent() != Some(dir));
            for (path, id) in &self.names {
                if path.parent() == Some(dir) {
                    self.durable_names.insert(path.clone(), *id);
                }
            }
        }
        Ok(())
    }
}

fn dir() -> PathBuf {
    PathBuf::from("/data/m1")
}

fn entry(index: u64, term: u64) -> Entry {
    Entry { term, index, payload: Payload::Noop }
}

/// A plausible stream of writes, as a Raft member makes them.
fn writes(round: u64) -> Vec<PersistState> {
    let base = round * 3;
    vec![
        PersistState::BootId(round + 1),
        PersistState::HardState { term: round + 1, vote: Some(MemberId::from_u128(1)) },
        PersistState::Entries { from: base + 1, entries: (base + 1..=base + 3).map(|i| entry(i, round + 1)).collect() },
    ]
}

fn store(disk: CrashDisk) -> FileStorage<CrashDisk> {
    FileStorage::with_io(dir(), disk)
}

/// Persists many rounds, crashing at random points (sometimes inside a
/// persist), and checks after every recovery that everything acknowledged
/// survived, and that at most a prefix of the unacknowledged writes did.
fn crash_consistency(seed: u64, skip_syncs: bool) -> Result<(), String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut disk = CrashDisk::new(seed);
    disk.skip_syncs = skip_syncs;
    let mut storage = store(disk);
    let member_id = storage.load().map_err(|e| e.to_string())?.member_id;
    let mut acknowledged = Recovered::default();
    for round in 0..60 {
        let batch = writes(round);
        let torn = rng.random_bool(0.3);
        storage.io_mut().fail_next_sync = torn;
        let result = storage.persist(&batch);
        assert_eq!(result.is_err(), torn, "round {round}: a persist fails exactly when its fsync does");
        if result.is_ok() {
            for write in &batch {
                acknowledged.apply(write);
            }
        }
        if torn || rng.random_bool(0.3) {
            let mut disk = storage.into_io();
            disk.crash();
            storage = store(disk);
            let loaded = storage.load().map_err(|e| format!("round {round}: reload failed: {e}"))?;
            if loaded.member_id != member_id {
                return Err(format!("round {round}: the durable id changed"));
            }
            // What survived is the acknowledged state plus a prefix of the torn batch.
            let mut candidates = vec![acknowledged.clone()];
            if torn {
                let mut partial = acknowledged.clone();
                for write in &batch {
                    partial.apply(write);
                    candidates.push(partial.clone());
                }
            }
            if !candidates.contains(&loaded.recovered) {
                return Err(format!(
                    "round {round}: recovered {:?}, acknowledged {:?}",
                    loaded.recovered, acknowledged
                ));
            }
            acknowledged = loaded.recovered;
        }
    }
    Ok(())
}

#[test]
fn every_acknowledged_write_survives_crashes_and_torn_tails_are_cut() {
    for seed in 0..50 {
        crash_consistency(seed, false).unwrap_or_else(|failure| panic!("seed {seed}: {failure}"));
    }
}

#[test]
fn a_store_that_skips_fsync_fails_the_crash_test() {
    // The crash test has teeth: without fsync, acknowledged writes are lost.
    let caught = (0..50).filter(|&seed| crash_consistency(seed, true).is_err()).count();
    assert!(caught >= 45, "a missing fsync went unnoticed in {} of 50 seeds", 50 - caught);
}

#[test]
fn the_durable_id_and_state_survive_a_clean_restart() {
    let mut storage = store(CrashDisk::new(1));
    let first = storage.load().unwrap();
    let uuid = ClusterUuid([9; 16]);
    storage.persist(&[PersistState::ClusterUuid(uuid), PersistState::BootId(3)]).unwrap();
    let mut storage = store(storage.into_io());
    let again = storage.load().unwrap();
    assert_eq!(again.member_id, first.member_id);
    assert_eq!((again.recovered.cluster_uuid, again.recovered.boot_id), (uuid, 3));
}

#[test]
fn a_flipped_byte_in_the_middle_stops_the_member_with_a_clear_error() {
    let mut storage = store(CrashDisk::new(2));
    storage.load().unwrap();
    for round in 0..5 {
        storage.persist(&writes(round)).unwrap();
    }
    let mut disk = storage.into_io();
    let log = dir().join("quorate.wal");
    let len = disk.contents(&log).unwrap().current.len();
    disk.flip(&log, len / 2);
    let before = disk.contents(&log).unwrap().current.clone();
    let mut storage = store(disk);
    let error = storage.load().unwrap_err();
    assert!(matches!(error, StorageError::Corrupt { .. }), "{error}");
    assert!(error.to_string().contains("corrupt at byte"), "{error}");
    let mut disk = storage.into_io();
    assert_eq!(disk.contents(&log).unwrap().current, before, "a corrupt log is left exactly as found");
}

#[test]
fn a_torn_final_record_is_cut_and_the_rest_recovered() {
    let mut storage = store(CrashDisk::new(3));
    storage.load().unwrap();
    storage.persist(&writes(0)).unwrap();
    let mut expected = Recovered::default();
    writes(0).iter().for_each(|w| expected.apply(w));
    storage.persist(&writes(1)).unwrap();
    let mut disk = storage.into_io();
    let log = dir().join("quorate.wal");
    let contents = disk.contents(&log).unwrap();
    // Cut inside the last record of the second batch, then also inside its first.
    let cut = contents.current.len() - 7;
    contents.current.truncate(cut);
    contents.synced = contents.current.clone();
    let mut storage = store(disk);
    let recovered = storage.load().unwrap().recovered;
    writes(1)[..2].iter().for_each(|w| expected.apply(w));
    assert_eq!(recovered, expected, "the two complete records of the torn batch survive, the third is cut");
    let mut disk = storage.into_io();
    assert!(disk.contents(&log).unwrap().current.len() < cut, "the torn bytes are gone from the file");
}

#[test]
fn a_grown_log_is_rewritten_compactly_and_survives_a_crash_in_the_middle_of_it() {
    let mut storage = store(CrashDisk::new(4));
    storage.load().unwrap();
    // A large snapshot, replaced again and again: the log grows, the live state does not.
    let mut expected = Recovered::default();
    for round in 0..40u64 {
        let snapshot =
            Snapshot { last_index: round, last_term: 1, state: vec![round as u8; 512 * 1024], ..Snapshot::default() };
        let write = PersistState::Snapshot(snapshot);
        storage.persist(std::slice::from_ref(&write)).unwrap();
        expected.apply(&write);
    }
    let log = dir().join("quorate.wal");
    let len = storage.io_mut().contents(&log).unwrap().current.len();
    assert!(len < 8 * 1024 * 1024, "the log was rewritten: {len} bytes for 40 half-megabyte snapshots");
    let mut disk = storage.into_io();
    disk.crash();
    let mut storage = store(disk);
    assert_eq!(storage.load().unwrap().recovered, expected);
}

#[test]
fn a_log_past_the_rewrite_size_does_not_encode_its_live_state_on_every_sync() {
    // A live state of 1.5 MB in a log of 4.5 MB: past the size at which a
    // rewrite is considered, not yet four times the live state.
    let mut storage = store(CrashDisk::new(6));
    storage.load().unwrap();
    let mut expected = Recovered::default();
    for round in 0..3u64 {
        let snapshot =
            Snapshot { last_index: round, last_term: 1, state: vec![round as u8; 1536 * 1024], ..Snapshot::default() };
        let write = PersistState::Snapshot(snapshot);
        storage.persist(std::slice::from_ref(&write)).unwrap();
        expected.apply(&write);
    }
    let measured = storage.measured;
    // A thousand small persists (term changes), each synced.
    for term in 1..=1000 {
        let write = PersistState::HardState { term, vote: None };
        storage.persist(std::slice::from_ref(&write)).unwrap();
        expected.apply(&write);
    }
    assert!(
        storage.measured - measured <= 1,
        "the live state was encoded {} times for 1000 small syncs",
        storage.measured - measured
    );
    // The next large snapshot makes the log worth rewriting, and it is.
    let snapshot = Snapshot { last_index: 9, last_term: 1, state: vec![9; 1536 * 1024], ..Snapshot::default() };
    let write = PersistState::Snapshot(snapshot);
    for _ in 0..2 {
        storage.persist(std::slice::from_ref(&write)).unwrap();
    }
    expected.apply(&write);
    let len = storage.io_mut().contents(&dir().join("quorate.wal")).unwrap().current.len();
    assert!(len < 4 * 1024 * 1024, "the log was rewritten: {len} bytes");
    let mut disk = storage.into_io();
    disk.crash();
    assert_eq!(store(disk).load().unwrap().recovered, expected);
}

#[test]
fn a_log_of_another_format_is_refused() {
    let mut disk = CrashDisk::new(5);
    let header = super::file::tests_support::header_record(99);
    disk.write(&dir().join("quorate.wal"), &header).unwrap();
    let error = store(disk).load().unwrap_err();
    assert!(matches!(error, StorageError::Format { found: 99, .. }), "{error}");
}

#[test]
fn a_data_dir_held_by_another_process_or_unusable_is_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("quorate-storage-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut first = FileStorage::open(&dir);
    first.load().unwrap();
    first.persist(&[PersistState::BootId(1)]).unwrap();
    let error = FileStorage::open(&dir).load().unwrap_err();
    assert!(matches!(error, StorageError::Locked(_)), "{error}");
    drop(first);
    let reopened = FileStorage::open(&dir).load().unwrap();
    assert_eq!(reopened.recovered.boot_id, 1, "real files: the write survived and the lock was released");
    // A data dir path that is a file cannot be used.
    let file = dir.join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let error = FileStorage::open(&file).load().unwrap_err();
    assert!(matches!(&error, StorageError::NotADirectory(path) if *path == file), "{error}");
    assert_eq!(std::fs::read(&file).unwrap(), b"x", "the file is left as it was");
    std::fs::remove_dir_all(&dir).unwrap();
}
