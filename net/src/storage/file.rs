//! The durable file store: one checksummed append-only log per data dir.
//!
//! Each record is `[length u32 LE][crc32c u32 LE][postcard payload]`; the
//! first is a header naming the format and the member's durable id, each
//! later one a core `PersistState`. `write` appends, `sync` fsyncs; the
//! adapter acknowledges nothing before the sync, so nothing is acknowledged
//! that a power cut could take back.
//!
//! On load, the records are replayed. A damaged record with nothing valid
//! after it is a write torn by a crash: it is cut, and the member goes on
//! with what was synced. A damaged record followed by valid ones means the
//! middle of the log changed under us: the member refuses to start. When the
//! log has grown to several times its live state, it is rewritten compactly
//! to a temporary file that is synced and renamed over it.

use std::path::{Path, PathBuf};

use quorate_core::wire::limits;
use quorate_core::{MemberId, PersistState, Recovered};
use serde::{Deserialize, Serialize};

use super::io::{Io, RealIo};
use super::{Loaded, Storage, StorageError, new_member_id};

const LOG_FILE: &str = "quorate.wal";
const REWRITE_FILE: &str = "quorate.wal.tmp";
/// The format this build writes and reads.
const FORMAT: u32 = 1;
const RECORD_HEADER_BYTES: usize = 8;
/// The largest record: a snapshot of the largest size plus room for its fields.
const MAX_RECORD_BYTES: usize = limits::MAX_SNAPSHOT_BYTES + 1024 * 1024;
/// Below this size the log is never rewritten.
const REWRITE_AT_LEAST: u64 = 4 * 1024 * 1024;
/// The log is rewritten once it is this many times its live state.
const REWRITE_FACTOR: u64 = 4;

#[derive(Debug, Serialize, Deserialize)]
enum Record {
    Header { format: u32, member_id: MemberId },
    Write(PersistState),
}

/// A data dir holding one member's state. See the module doc.
#[derive(Debug)]
pub struct FileStorage<I: Io = RealIo> {
    dir: PathBuf,
    io: I,
    member_id: MemberId,
    /// What the log holds, replayed: the content of a rewrite.
    state: Recovered,
    /// Bytes in the log file.
    len: u64,
    /// The log length at which to measure the live state again (see
    /// `maybe_rewrite`).
    measure_at: u64,
    /// How often the live state was measured (encoded whole).
    #[cfg(all(test, not(madsim)))]
    pub(in crate::storage) measured: u64,
    loaded: bool,
}

impl FileStorage<RealIo> {
    /// A store in `dir`, created on first use.
    pub fn open(dir: impl Into<PathBuf>) -> Self {
        FileStorage::with_io(dir, RealIo::default())
    }
}

impl<I: Io> FileStorage<I> {
    /// A store in `dir` doing its I/O through `io`.
    pub fn with_io(dir: impl Into<PathBuf>, io: I) -> Self {
        FileStorage {
            dir: dir.into(),
            io,
            member_id: MemberId::default(),
            state: Recovered::default(),
            len: 0,
            measure_at: 0,
            #[cfg(all(test, not(madsim)))]
            measured: 0,
            loaded: false,
        }
    }

    /// The data dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The I/O layer (tests inspect it).
    pub fn io_mut(&mut self) -> &mut I {
        &mut self.io
    }

    /// Gives back the I/O layer (tests crash it and reopen).
    pub fn into_io(self) -> I {
        self.io
    }

    fn log(&self) -> PathBuf {
        self.dir.join(LOG_FILE)
    }

    fn io_error(&self, op: &'static str, path: &Path, source: std::io::Error) -> StorageError {
        StorageError::Io { op, path: path.to_path_buf(), source }
    }

    fn create(&mut self) -> Result<(), StorageError> {
        self.member_id = new_member_id();
        self.state = Recovered::default();
        let bytes = encode(&Record::Header { format: FORMAT, member_id: self.member_id });
        let (log, tmp) = (self.log(), self.dir.join(REWRITE_FILE));
        // Created whole under a temporary name, so a crash never leaves a log without its header.
        self.io.write(&tmp, &bytes).map_err(|e| self.io_error("write", &tmp, e))?;
        self.io.sync(&tmp).map_err(|e| self.io_error("fsync", &tmp, e))?;
        self.io.rename(&tmp, &log).map_err(|e| self.io_error("rename", &tmp, e))?;
        let dir = self.dir.clone();
        self.io.sync_dir(&dir).map_err(|e| self.io_error("fsync", &dir, e))?;
        self.len = bytes.len() as u64;
        tracing::info!(dir = %self.dir.display(), member = %self.member_id, "created a new data dir");
        Ok(())
    }

    fn replay(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        let log = self.log();
        let corrupt =
            |offset: usize, reason: String| StorageError::Corrupt { path: log.clone(), offset: offset as u64, reason };
        let mut offset = 0;
        let mut state = Recovered::default();
        let mut member_id = None;
        while offset < bytes.len() {
            let (record, next) = match record_at(bytes, offset) {
                Ok(found) => found,
                Err(reason) if valid_record_after(bytes, offset + 1) => return Err(corrupt(offset, reason)),
                Err(reason) => {
                    tracing::warn!(
                        dir = %self.dir.display(),
                        offset,
                        cut = bytes.len() - offset,
                        %reason,
                        "cutting a torn write at the end of the log"
                    );
                    break;
                }
            };
            match (record, member_id) {
                (Record::Header { format, member_id: id }, None) => {
                    if format != FORMAT {
                        return Err(StorageError::Format { path: log, found: format, supported: FORMAT });
                    }
                    member_id = Some(id);
                }
                (Record::Write(write), Some(_)) => state.apply(&write),
                (Record::Header { .. }, Some(_)) => return Err(corrupt(offset, "a second header".to_owned())),
                (Record::Write(_), None) => return Err(corrupt(offset, "no header before the first write".to_owned())),
            }
            offset = next;
        }
        let Some(member_id) = member_id else {
            return Err(corrupt(0, "no valid header".to_owned()));
        };
        if offset < bytes.len() {
            self.io.truncate(&log, offset as u64).map_err(|e| self.io_error("truncate", &log, e))?;
            self.io.sync(&log).map_err(|e| self.io_error("fsync", &log, e))?;
        }
        self.member_id = member_id;
        self.state = state;
        self.len = offset as u64;
        Ok(())
    }

    /// Rewrites the log as its live state alone, if it has grown enough.
    ///
    /// Measuring the live state means encoding it whole, as large as the
    /// snapshot and the log together: done on every sync, a member whose log
    /// was past `REWRITE_AT_LEAST` but not yet `REWRITE_FACTOR` times its
    /// live state spent each persist encoding megabytes, and under a write
    /// storm answered so late that its cluster kept electing leaders that
    /// stepped down at once. So it is measured again only once a rewrite can
    /// be due and the log has grown by at least the live state's size since:
    /// at most one byte encoded per byte appended, for a log that may reach
    /// one live state's size past the factor before it is rewritten.
    fn maybe_rewrite(&mut self) -> Result<(), StorageError> {
        if self.len < REWRITE_AT_LEAST.max(self.measure_at) {
            return Ok(());
        }
        let bytes = self.compact_log();
        #[cfg(all(test, not(madsim)))]
        {
            self.measured += 1;
        }
        let live = bytes.len() as u64;
        if self.len < REWRITE_FACTOR * live {
            self.measure_at = (REWRITE_FACTOR * live).max(self.len + live);
            return Ok(());
        }
        let (log, tmp, dir) = (self.log(), self.dir.join(REWRITE_FILE), self.dir.clone());
        self.io.write(&tmp, &bytes).map_err(|e| self.io_error("write", &tmp, e))?;
        self.io.sync(&tmp).map_err(|e| self.io_error("fsync", &tmp, e))?;
        self.io.rename(&tmp, &log).map_err(|e| self.io_error("rename", &tmp, e))?;
        self.io.sync_dir(&dir).map_err(|e| self.io_error("fsync", &dir, e))?;
        tracing::debug!(from = self.len, to = bytes.len(), "rewrote the log");
        self.len = live;
        self.measure_at = REWRITE_FACTOR * live;
        Ok(())
    }

    /// The live state as a log of its own.
    fn compact_log(&self) -> Vec<u8> {
        let state = &self.state;
        let mut records = vec![
            Record::Header { format: FORMAT, member_id: self.member_id },
            Record::Write(PersistState::BootId(state.boot_id)),
            Record::Write(PersistState::ClusterUuid(state.cluster_uuid)),
            Record::Write(PersistState::HardState { term: state.raft.term, vote: state.raft.vote }),
            Record::Write(PersistState::ReplacedUuid(state.replaced_uuid)),
            Record::Write(PersistState::FencedBy(state.fenced_by)),
        ];
        if let Some(snapshot) = &state.raft.snapshot {
            records.push(Record::Write(PersistState::Snapshot(snapshot.clone())));
        }
        if let Some(first) = state.raft.entries.first() {
            records
                .push(Record::Write(PersistState::Entries { from: first.index, entries: state.raft.entries.clone() }));
        }
        records.iter().flat_map(encode).collect()
    }
}

impl<I: Io> Storage for FileStorage<I> {
    fn load(&mut self) -> Result<Loaded, StorageError> {
        let dir = self.dir.clone();
        self.io.create_dir(&dir).map_err(|e| match e.kind() {
            // `create_dir_all` on a file, or on a path through one.
            std::io::ErrorKind::AlreadyExists | std::io::ErrorKind::NotADirectory => {
                StorageError::NotADirectory(dir.clone())
            }
            _ => self.io_error("create", &dir, e),
        })?;
        self.io.lock(&dir).map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock => StorageError::Locked(dir.clone()),
            _ => self.io_error("lock", &dir, e),
        })?;
        let log = self.log();
        match self.io.read(&log).map_err(|e| self.io_error("read", &log, e))? {
            Some(bytes) => self.replay(&bytes)?,
            None => self.create()?,
        }
        self.loaded = true;
        Ok(Loaded { member_id: self.member_id, recovered: self.state.clone() })
    }

    fn write(&mut self, writes: &[PersistState]) -> Result<(), StorageError> {
        assert!(self.loaded, "load the store before writing to it");
        if writes.is_empty() {
            return Ok(());
        }
        let bytes: Vec<u8> = writes.iter().flat_map(|write| encode(&Record::Write(write.clone()))).collect();
        let log = self.log();
        self.io.append(&log, &bytes).map_err(|e| self.io_error("append", &log, e))?;
        self.len += bytes.len() as u64;
        for write in writes {
            self.state.apply(write);
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        assert!(self.loaded, "load the store before syncing it");
        let log = self.log();
        self.io.sync(&log).map_err(|e| self.io_error("fsync", &log, e))?;
        self.maybe_rewrite()
    }

    fn is_durable(&self) -> bool {
        true
    }
}

fn encode(record: &Record) -> Vec<u8> {
    let payload = postcard::to_allocvec(record).expect("records encode");
    let mut bytes = Vec::with_capacity(RECORD_HEADER_BYTES + payload.len());
    bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    bytes.extend_from_slice(&payload);
    bytes
}

/// The record at `offset` and where the next one starts, or what is wrong.
fn record_at(bytes: &[u8], offset: usize) -> Result<(Record, usize), String> {
    let rest = &bytes[offset..];
    if rest.len() < RECORD_HEADER_BYTES {
        return Err(format!("{} bytes, short of a record header", rest.len()));
    }
    let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
    if len > MAX_RECORD_BYTES {
        return Err(format!("record length {len} over the limit"));
    }
    if rest.len() < RECORD_HEADER_BYTES + len {
        return Err(format!("record of {len} bytes runs past the end"));
    }
    let payload = &rest[RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + len];
    if crc32c::crc32c(payload) != crc {
        return Err("checksum mismatch".to_owned());
    }
    let record = postcard::from_bytes(payload).map_err(|e| format!("undecodable record: {e}"))?;
    Ok((record, offset + RECORD_HEADER_BYTES + len))
}

/// Whether any valid record starts at or after `from`: a damaged record
/// with valid ones after it is corruption, not a torn tail.
fn valid_record_after(bytes: &[u8], from: usize) -> bool {
    (from..bytes.len()).any(|offset| record_at(bytes, offset).is_ok())
}

#[cfg(all(test, not(madsim)))]
pub(super) mod tests_support {
    /// A header record claiming `format`, for the format test.
    pub(in crate::storage) fn header_record(format: u32) -> Vec<u8> {
        super::encode(&super::Record::Header { format, member_id: quorate_core::MemberId::from_u128(1) })
    }
}
