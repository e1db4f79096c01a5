//! Where a member keeps its durable state (DESIGN §4).
//!
//! A [`Storage`] recovers what the core needs at start (durable id, boot
//! counter, Raft term, vote, log and snapshot, cluster uuid) and makes the
//! core's `Persist` outputs durable before the driver confirms them. Two
//! stores ship: [`MemoryStorage`] (nothing survives the process: a new
//! durable id every start, never a voter unless `allow_ephemeral_voters`)
//! and [`FileStorage`], a checksummed append-only log that fsyncs before it
//! returns. The simulator brings its own store.

mod file;
mod io;
#[cfg(all(test, not(madsim)))]
mod tests;

use std::path::PathBuf;

use quorate_core::{MemberId, PersistState, Recovered};

pub use file::FileStorage;
pub use io::{Io, RealIo};

/// What a store recovered at start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Loaded {
    /// The member's durable id, created with the storage and never reused.
    pub member_id: MemberId,
    /// Everything else the core recovers.
    pub recovered: Recovered,
}

/// Why a store failed. A member stops on any of them rather than run with
/// state it cannot trust.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The operating system refused an operation.
    #[error("data dir: cannot {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which file or directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The data dir's path names something other than a directory.
    #[error("data dir {0} is not a directory")]
    NotADirectory(PathBuf),
    /// Another process holds the data dir.
    #[error("data dir {0} is in use by another process")]
    Locked(PathBuf),
    /// A record in the middle of the log is damaged: the log cannot be
    /// trusted, and nothing was changed.
    #[error(
        "data dir {path} is corrupt at byte {offset}: {reason}; restore it from a backup or remove it to rejoin as a new member"
    )]
    Corrupt {
        /// The log file.
        path: PathBuf,
        /// Where the damaged record starts.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The log was written by a newer, incompatible format.
    #[error("data dir {path} uses storage format {found}, this build reads {supported}")]
    Format {
        /// The log file.
        path: PathBuf,
        /// The format found.
        found: u32,
        /// The format this build reads.
        supported: u32,
    },
}

/// A member's durable state.
///
/// Calls are synchronous and may block (fsync); the adapter runs them off the
/// async runtime's threads. The adapter writes a batch, then syncs it, and
/// releases nothing that depends on the batch before the sync returned: what
/// was written but not synced may be lost in a crash, as on a real disk.
pub trait Storage: Send + 'static {
    /// Recovers the stored state, creating a fresh durable id on first use.
    /// Writes never synced need not be there.
    fn load(&mut self) -> Result<Loaded, StorageError>;

    /// Writes `writes`, in order, after everything written before. They need
    /// not be durable until [`Storage::sync`].
    fn write(&mut self, writes: &[PersistState]) -> Result<(), StorageError>;

    /// Makes everything written so far durable before returning.
    fn sync(&mut self) -> Result<(), StorageError>;

    /// Writes `writes` and syncs them.
    fn persist(&mut self, writes: &[PersistState]) -> Result<(), StorageError> {
        self.write(writes)?;
        self.sync()
    }

    /// Whether what is persisted survives a restart of the process (voters
    /// need that).
    fn is_durable(&self) -> bool;
}

/// Keeps state for the life of the process only.
#[derive(Debug, Default)]
pub struct MemoryStorage {
    loaded: Option<Loaded>,
}

impl MemoryStorage {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStorage::default()
    }
}

impl Storage for MemoryStorage {
    fn load(&mut self) -> Result<Loaded, StorageError> {
        let loaded = self.loaded.get_or_insert_with(|| Loaded { member_id: new_member_id(), ..Loaded::default() });
        Ok(loaded.clone())
    }

    fn write(&mut self, writes: &[PersistState]) -> Result<(), StorageError> {
        let loaded = self.loaded.get_or_insert_with(|| Loaded { member_id: new_member_id(), ..Loaded::default() });
        for write in writes {
            loaded.recovered.apply(write);
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        Ok(())
    }

    fn is_durable(&self) -> bool {
        false
    }
}

/// A fresh durable id.
pub(crate) fn new_member_id() -> MemberId {
    MemberId(crate::random_bytes())
}
