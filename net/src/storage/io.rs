//! The file operations the file store needs, behind a trait so tests can
//! replace the disk with one that forgets unsynced bytes on a simulated crash.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// File operations, each either done or failed; durability only after `sync`
/// (a file's contents) and `sync_dir` (names created or renamed in a directory).
pub trait Io: Send + 'static {
    /// Makes sure `dir` exists.
    fn create_dir(&mut self, dir: &Path) -> io::Result<()>;
    /// Locks `dir` for this process, failing with `WouldBlock` if another holds it.
    fn lock(&mut self, dir: &Path) -> io::Result<()>;
    /// The whole content of `path`, `None` if it does not exist.
    fn read(&mut self, path: &Path) -> io::Result<Option<Vec<u8>>>;
    /// Appends to `path`, creating it.
    fn append(&mut self, path: &Path, bytes: &[u8]) -> io::Result<()>;
    /// Replaces `path` with `bytes`.
    fn write(&mut self, path: &Path, bytes: &[u8]) -> io::Result<()>;
    /// Cuts `path` to `len` bytes.
    fn truncate(&mut self, path: &Path, len: u64) -> io::Result<()>;
    /// Makes the content of `path` durable.
    fn sync(&mut self, path: &Path) -> io::Result<()>;
    /// Renames `from` to `to`, replacing it.
    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes names created or renamed in `dir` durable.
    fn sync_dir(&mut self, dir: &Path) -> io::Result<()>;
}

/// The real file system.
#[derive(Debug, Default)]
pub struct RealIo {
    /// The open log, kept for appends.
    open: Option<(PathBuf, File)>,
    /// The held lock file; dropping it releases the lock.
    lock: Option<File>,
}

impl RealIo {
    fn file(&mut self, path: &Path) -> io::Result<&mut File> {
        if self.open.as_ref().is_none_or(|(open, _)| open != path) {
            let file = OpenOptions::new().create(true).append(true).open(path)?;
            self.open = Some((path.to_path_buf(), file));
        }
        Ok(&mut self.open.as_mut().expect("opened above").1)
    }

    fn forget(&mut self, path: &Path) {
        if self.open.as_ref().is_some_and(|(open, _)| open == path) {
            self.open = None;
        }
    }
}

impl Io for RealIo {
    fn create_dir(&mut self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn lock(&mut self, dir: &Path) -> io::Result<()> {
        let file = OpenOptions::new().create(true).truncate(false).write(true).open(dir.join("LOCK"))?;
        file.try_lock().map_err(|error| match error {
            fs::TryLockError::WouldBlock => io::Error::from(io::ErrorKind::WouldBlock),
            fs::TryLockError::Error(error) => error,
        })?;
        self.lock = Some(file);
        Ok(())
    }

    fn read(&mut self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        match File::open(path) {
            Ok(mut file) => {
                let mut bytes = Vec::new();
                file.read_to_end(&mut bytes)?;
                Ok(Some(bytes))
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }

    fn append(&mut self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        self.file(path)?.write_all(bytes)
    }

    fn write(&mut self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        self.forget(path);
        fs::write(path, bytes)
    }

    fn truncate(&mut self, path: &Path, len: u64) -> io::Result<()> {
        self.forget(path);
        OpenOptions::new().write(true).open(path)?.set_len(len)
    }

    fn sync(&mut self, path: &Path) -> io::Result<()> {
        match &self.open {
            Some((open, file)) if open == path => file.sync_data(),
            _ => File::open(path)?.sync_data(),
        }
    }

    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        self.forget(from);
        self.forget(to);
        fs::rename(from, to)
    }

    fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}
