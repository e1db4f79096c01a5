//! The built-in replicated KV store as a member's application sees it
//! (DESIGN §3.4–3.5): writes through `apply`, reads and listings through
//! linearizable reads, and watches of a prefix that deliver every change in
//! revision order.

use std::time::Duration;

use quorate_core::rsm::kv::{KvChange, KvCommand, KvEntry, KvResponse, MAX_LIST};
use tokio::sync::mpsc;

use crate::cluster::{Error, Handle};

/// How often a watch asks again when the member saw no commit: members
/// outside the log never do, and the leader's commits still reach a
/// watcher within this.
const WATCH_POLL: Duration = Duration::from_secs(1);
/// Changes buffered for a watcher that does not keep up; the watch waits.
const WATCH_BUFFER: usize = 256;

/// The built-in KV store of a cluster ([`Cluster::kv`](crate::Cluster::kv)):
/// writes go through the log and apply once; reads are linearizable
/// (ReadIndex on the leader); it can be cloned into tasks.
#[derive(Clone)]
pub struct KvClient {
    handle: Handle,
}

impl KvClient {
    pub(crate) fn new(handle: Handle) -> Self {
        KvClient { handle }
    }

    async fn run(&self, command: KvCommand) -> Result<KvResponse, Error> {
        let bytes = match command {
            KvCommand::Get { .. } | KvCommand::List { .. } | KvCommand::Changes { .. } => {
                self.handle.read(command.encode()).await?
            }
            _ => self.handle.apply(command.encode()).await?,
        };
        match KvResponse::decode(&bytes) {
            Ok(KvResponse::Invalid(reason)) => Err(Error::Unexpected(reason)),
            Ok(response) => Ok(response),
            Err(error) => Err(Error::Unexpected(error.to_string())),
        }
    }

    /// Sets `key` to `value`; returns the store's revision after the write.
    pub async fn put(&self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> Result<u64, Error> {
        match self.run(KvCommand::Put { key: key.into(), value: value.into() }).await? {
            KvResponse::Written { revision } => Ok(revision),
            other => Err(Error::Unexpected(format!("{other:?}"))),
        }
    }

    /// The entry at `key`, if any (a linearizable read).
    pub async fn get(&self, key: impl Into<String>) -> Result<Option<KvEntry>, Error> {
        match self.run(KvCommand::Get { key: key.into() }).await? {
            KvResponse::Value { entry, .. } => Ok(entry),
            other => Err(Error::Unexpected(format!("{other:?}"))),
        }
    }

    /// Removes `key`; returns whether it existed.
    pub async fn delete(&self, key: impl Into<String>) -> Result<bool, Error> {
        match self.run(KvCommand::Delete { key: key.into() }).await? {
            KvResponse::Deleted { existed, .. } => Ok(existed),
            other => Err(Error::Unexpected(format!("{other:?}"))),
        }
    }

    /// Sets `key` to `value` only if its modification revision is
    /// `expected` (`None`: only if it does not exist). `Ok(Ok(revision))`
    /// when written, `Ok(Err(current))` with the key's current revision when
    /// the expectation failed.
    pub async fn compare_and_set(
        &self,
        key: impl Into<String>,
        expected: Option<u64>,
        value: impl Into<Vec<u8>>,
    ) -> Result<Result<u64, Option<u64>>, Error> {
        match self.run(KvCommand::Cas { key: key.into(), expected, value: value.into() }).await? {
            KvResponse::Written { revision } => Ok(Ok(revision)),
            KvResponse::CasFailed { current } => Ok(Err(current)),
            other => Err(Error::Unexpected(format!("{other:?}"))),
        }
    }

    /// The entries whose keys start with `prefix`, in key order, at most
    /// `limit` (capped at 10,000).
    pub async fn list(&self, prefix: impl Into<String>, limit: u32) -> Result<Vec<(String, KvEntry)>, Error> {
        match self.run(KvCommand::List { prefix: prefix.into(), limit }).await? {
            KvResponse::Entries { entries, .. } => Ok(entries),
            other => Err(Error::Unexpected(format!("{other:?}"))),
        }
    }

    /// The changes to keys starting with `prefix` after revision `after`,
    /// oldest first, at most `limit`, and the store's revision; or
    /// [`Error::Compacted`] if the store no longer remembers them all.
    pub async fn changes(
        &self,
        prefix: impl Into<String>,
        after: u64,
        limit: u32,
    ) -> Result<(Vec<KvChange>, u64), Error> {
        match self.run(KvCommand::Changes { prefix: prefix.into(), after, limit }).await? {
            KvResponse::Changes { changes, revision } => Ok((changes, revision)),
            KvResponse::Compacted { floor } => Err(Error::Compacted { floor }),
            other => Err(Error::Unexpected(format!("{other:?}"))),
        }
    }

    /// Watches the keys starting with `prefix`: every change after revision
    /// `after` (0: from the oldest the store remembers; use the revision of
    /// a listing to watch from there), in order, none twice. The watch ends
    /// with [`Error::Compacted`] if it falls behind the history the store
    /// keeps (list again and watch from the listing's revision), or
    /// [`Error::Stopped`] when the member stops; other errors (no leader in
    /// time) are retried. Dropping the [`Watch`] ends it.
    pub fn watch(&self, prefix: impl Into<String>, after: u64) -> Watch {
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        let (kv, prefix) = (self.clone(), prefix.into());
        tokio::spawn(async move { kv.run_watch(prefix, after, tx).await });
        Watch { changes: rx }
    }

    async fn run_watch(self, prefix: String, mut after: u64, tx: mpsc::Sender<Result<KvChange, Error>>) {
        let mut published = self.handle.snapshot.clone();
        loop {
            match self.changes(prefix.clone(), after, MAX_LIST as u32).await {
                Ok((changes, revision)) => {
                    let caught_up = changes.is_empty();
                    for change in changes {
                        after = change.revision;
                        if tx.send(Ok(change)).await.is_err() {
                            return;
                        }
                    }
                    if !caught_up {
                        continue;
                    }
                    // Nothing under the prefix up to `revision`: resume there.
                    after = after.max(revision);
                }
                Err(error @ (Error::Compacted { .. } | Error::Stopped)) => {
                    let _ = tx.send(Err(error)).await;
                    return;
                }
                Err(error) => tracing::debug!(%error, %prefix, "watch read failed; retrying"),
            }
            // Wait for a commit here (the published state changes), the
            // poll interval, or the watcher to go away.
            tokio::select! {
                changed = published.changed() => if changed.is_err() { return },
                () = tokio::time::sleep(WATCH_POLL) => {}
                () = tx.closed() => return,
            }
        }
    }
}

/// A watch of a key prefix ([`KvClient::watch`]).
#[derive(Debug)]
pub struct Watch {
    changes: mpsc::Receiver<Result<KvChange, Error>>,
}

impl Watch {
    /// The next change; `None` after the watch ended (its last item was
    /// the error that ended it).
    pub async fn next(&mut self) -> Option<Result<KvChange, Error>> {
        self.changes.recv().await
    }

    /// [`Watch::next`] for hand-written futures and streams.
    pub fn poll_next(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<Result<KvChange, Error>>> {
        self.changes.poll_recv(cx)
    }
}
