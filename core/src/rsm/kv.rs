//! The built-in replicated key-value store (DESIGN §3.4–3.5), the default
//! state machine: put, get, delete, compare-and-set on a key's revision, and
//! prefix listing, with one revision counter for the whole store as etcd
//! has. Commands and responses are postcard-encoded [`KvCommand`] and
//! [`KvResponse`]; a command the store cannot decode gets
//! [`KvResponse::Invalid`], so a bad client never stops the log.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::{RestoreError, StateMachine};

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Most entries one `List` returns.
pub const MAX_LIST: usize = 10_000;

/// One stored value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvEntry {
    /// The value.
    pub value: Vec<u8>,
    /// The store revision that created the key.
    pub created: u64,
    /// The store revision that last wrote it.
    pub modified: u64,
}

/// What a client asks the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvCommand {
    /// Sets `key` to `value`.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: Vec<u8>,
    },
    /// Removes `key`.
    Delete {
        /// The key.
        key: String,
    },
    /// Sets `key` to `value` only if its modification revision is
    /// `expected` (`None`: only if the key does not exist).
    Cas {
        /// The key.
        key: String,
        /// The revision the key must have.
        expected: Option<u64>,
        /// The new value.
        value: Vec<u8>,
    },
    /// Reads `key` through the log (linearizable).
    Get {
        /// The key.
        key: String,
    },
    /// Reads the keys starting with `prefix`, in order, at most `limit`.
    List {
        /// The prefix.
        prefix: String,
        /// Most entries returned (capped at [`MAX_LIST`]).
        limit: u32,
    },
    /// Reads the changes to keys starting with `prefix` after revision
    /// `after`, oldest first, at most `limit` (a query: what watches poll).
    Changes {
        /// The prefix.
        prefix: String,
        /// Changes at revisions above this.
        after: u64,
        /// Most changes returned (capped at [`MAX_LIST`]).
        limit: u32,
    },
}

/// One change to a key, as watches see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvChange {
    /// The store revision the change made.
    pub revision: u64,
    /// The key.
    pub key: String,
    /// The new value; `None`: the key was deleted.
    pub value: Option<Vec<u8>>,
}

/// What the store answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvResponse {
    /// A write took effect at this store revision.
    Written {
        /// The store's revision after the write.
        revision: u64,
    },
    /// A delete: whether the key existed, and the store's revision after.
    Deleted {
        /// Whether there was a key to delete.
        existed: bool,
        /// The store's revision after.
        revision: u64,
    },
    /// A compare-and-set whose expectation did not hold; nothing changed.
    CasFailed {
        /// The key's current modification revision (`None`: absent).
        current: Option<u64>,
    },
    /// A read.
    Value {
        /// The entry, if the key exists.
        entry: Option<KvEntry>,
        /// The store's revision at the read.
        revision: u64,
    },
    /// A listing.
    Entries {
        /// The entries, in key order.
        entries: Vec<(String, KvEntry)>,
        /// The store's revision at the read.
        revision: u64,
    },
    /// The command could not be decoded or broke a limit; nothing changed.
    Invalid(String),
    /// Changes after a revision (for `Changes`); `revision` is the store's,
    /// so a watcher with nothing new resumes from there.
    Changes {
        /// The changes, oldest first.
        changes: Vec<KvChange>,
        /// The store's revision at the read.
        revision: u64,
    },
    /// The changes asked for are older than the history the store keeps
    /// (etcd's "compacted"): read the keys afresh and watch from there.
    Compacted {
        /// The oldest revision whose change is still kept, minus one: a
        /// `Changes` after it is answered.
        floor: u64,
    },
}

/// Changes the store remembers for watches, at most.
pub const MAX_HISTORY: usize = 4096;
/// Bytes of values the remembered changes hold, at most.
pub const MAX_HISTORY_BYTES: usize = 4 * 1024 * 1024;

impl KvCommand {
    /// The bytes to `apply`.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("commands encode")
    }
}

impl KvResponse {
    /// Decodes an `apply` response from the KV store.
    pub fn decode(bytes: &[u8]) -> Result<KvResponse, postcard::Error> {
        postcard::from_bytes(bytes)
    }
}

/// The store. See the module doc.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kv {
    entries: BTreeMap<String, KvEntry>,
    revision: u64,
    /// Recent changes, oldest first, bounded by count and bytes.
    history: VecDeque<KvChange>,
    /// Bytes of values in `history`.
    history_bytes: usize,
    /// Changes at revisions up to here are forgotten.
    floor: u64,
}

impl Kv {
    /// An empty store.
    pub fn new() -> Self {
        Kv::default()
    }

    /// The store's revision: how many writes it has taken.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The entry at `key`, read locally (not linearizable by itself).
    pub fn get(&self, key: &str) -> Option<&KvEntry> {
        self.entries.get(key)
    }

    fn run(&mut self, command: KvCommand) -> KvResponse {
        if let Some(invalid) = Self::invalid(&command) {
            return invalid;
        }
        match command {
            KvCommand::Put { key, value } => self.write(key, value),
            KvCommand::Delete { key } => {
                let existed = self.entries.remove(&key).is_some();
                if existed {
                    self.revision += 1;
                    self.remember(KvChange { revision: self.revision, key, value: None });
                }
                KvResponse::Deleted { existed, revision: self.revision }
            }
            KvCommand::Cas { key, expected, value } => {
                let current = self.entries.get(&key).map(|entry| entry.modified);
                if current != expected {
                    return KvResponse::CasFailed { current };
                }
                self.write(key, value)
            }
            KvCommand::Get { .. } | KvCommand::List { .. } | KvCommand::Changes { .. } => self.read(command),
        }
    }

    fn invalid(command: &KvCommand) -> Option<KvResponse> {
        let len = match command {
            KvCommand::Put { key, .. }
            | KvCommand::Delete { key }
            | KvCommand::Cas { key, .. }
            | KvCommand::Get { key } => key.len(),
            KvCommand::List { prefix, .. } | KvCommand::Changes { prefix, .. } => prefix.len(),
        };
        (len > MAX_KEY_BYTES).then(|| KvResponse::Invalid(format!("key over {MAX_KEY_BYTES} bytes")))
    }

    /// A `Get` or `List`; a write asked as a query is refused.
    fn read(&self, command: KvCommand) -> KvResponse {
        if let Some(invalid) = Self::invalid(&command) {
            return invalid;
        }
        match command {
            KvCommand::Get { key } => {
                KvResponse::Value { entry: self.entries.get(&key).cloned(), revision: self.revision }
            }
            KvCommand::List { prefix, limit } => {
                let limit = (limit as usize).min(MAX_LIST);
                let entries = self
                    .entries
                    .range(prefix.clone()..)
                    .take_while(|(key, _)| key.starts_with(&prefix))
                    .take(limit)
                    .map(|(key, entry)| (key.clone(), entry.clone()))
                    .collect();
                KvResponse::Entries { entries, revision: self.revision }
            }
            KvCommand::Changes { after, .. } if after < self.floor => KvResponse::Compacted { floor: self.floor },
            KvCommand::Changes { prefix, after, limit } => {
                let limit = (limit as usize).min(MAX_LIST);
                // Revisions in the history ascend: skip to the first one after `after`.
                let start = self.history.partition_point(|change| change.revision <= after);
                let changes = self
                    .history
                    .range(start..)
                    .filter(|change| change.key.starts_with(&prefix))
                    .take(limit)
                    .cloned()
                    .collect();
                KvResponse::Changes { changes, revision: self.revision }
            }
            _ => KvResponse::Invalid("a write cannot be a read-only query".into()),
        }
    }

    fn write(&mut self, key: String, value: Vec<u8>) -> KvResponse {
        self.revision += 1;
        let revision = self.revision;
        let created = self.entries.get(&key).map_or(revision, |entry| entry.created);
        self.remember(KvChange { revision, key: key.clone(), value: Some(value.clone()) });
        self.entries.insert(key, KvEntry { value, created, modified: revision });
        KvResponse::Written { revision }
    }

    /// Keeps `change` for watches, forgetting the oldest beyond the bounds.
    fn remember(&mut self, change: KvChange) {
        self.history_bytes += change_bytes(&change);
        self.history.push_back(change);
        while self.history.len() > MAX_HISTORY || self.history_bytes > MAX_HISTORY_BYTES {
            let Some(oldest) = self.history.pop_front() else { break };
            self.history_bytes -= change_bytes(&oldest);
            self.floor = oldest.revision;
        }
    }
}

fn change_bytes(change: &KvChange) -> usize {
    change.key.len() + change.value.as_ref().map_or(0, Vec::len)
}

impl StateMachine for Kv {
    fn apply(&mut self, command: &[u8]) -> Vec<u8> {
        let response = match postcard::from_bytes::<KvCommand>(command) {
            Ok(command) => self.run(command),
            Err(error) => KvResponse::Invalid(format!("undecodable command: {error}")),
        };
        postcard::to_allocvec(&response).expect("responses encode")
    }

    fn query(&self, query: &[u8]) -> Vec<u8> {
        let response = match postcard::from_bytes::<KvCommand>(query) {
            Ok(query) => self.read(query),
            Err(error) => KvResponse::Invalid(format!("undecodable query: {error}")),
        };
        postcard::to_allocvec(&response).expect("responses encode")
    }

    fn snapshot(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("the store encodes")
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
        *self = if snapshot.is_empty() {
            Kv::default()
        } else {
            postcard::from_bytes(snapshot).map_err(|error| RestoreError(error.to_string()))?
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(kv: &mut Kv, command: KvCommand) -> KvResponse {
        KvResponse::decode(&kv.apply(&command.encode())).unwrap()
    }

    fn put(key: &str, value: &str) -> KvCommand {
        KvCommand::Put { key: key.into(), value: value.into() }
    }

    #[test]
    fn writes_count_revisions_and_reads_see_them() {
        let mut kv = Kv::new();
        assert_eq!(run(&mut kv, put("a", "1")), KvResponse::Written { revision: 1 });
        assert_eq!(run(&mut kv, put("a", "2")), KvResponse::Written { revision: 2 });
        let entry = KvEntry { value: b"2".to_vec(), created: 1, modified: 2 };
        assert_eq!(
            run(&mut kv, KvCommand::Get { key: "a".into() }),
            KvResponse::Value { entry: Some(entry), revision: 2 }
        );
        assert_eq!(
            run(&mut kv, KvCommand::Delete { key: "a".into() }),
            KvResponse::Deleted { existed: true, revision: 3 }
        );
        assert_eq!(
            run(&mut kv, KvCommand::Delete { key: "a".into() }),
            KvResponse::Deleted { existed: false, revision: 3 }
        );
    }

    #[test]
    fn compare_and_set_writes_only_at_the_expected_revision() {
        let mut kv = Kv::new();
        let create = KvCommand::Cas { key: "k".into(), expected: None, value: b"x".to_vec() };
        assert_eq!(run(&mut kv, create.clone()), KvResponse::Written { revision: 1 });
        assert_eq!(run(&mut kv, create), KvResponse::CasFailed { current: Some(1) });
        let stale = KvCommand::Cas { key: "k".into(), expected: Some(0), value: b"y".to_vec() };
        assert_eq!(run(&mut kv, stale), KvResponse::CasFailed { current: Some(1) });
        let fresh = KvCommand::Cas { key: "k".into(), expected: Some(1), value: b"y".to_vec() };
        assert_eq!(run(&mut kv, fresh), KvResponse::Written { revision: 2 });
    }

    #[test]
    fn a_listing_stays_within_its_prefix_and_limit() {
        let mut kv = Kv::new();
        for key in ["app/a", "app/b", "app/c", "apq", "ap"] {
            run(&mut kv, put(key, key));
        }
        let KvResponse::Entries { entries, .. } = run(&mut kv, KvCommand::List { prefix: "app/".into(), limit: 2 })
        else {
            panic!("a listing")
        };
        let keys: Vec<&str> = entries.iter().map(|(key, _)| key.as_str()).collect();
        assert_eq!(keys, ["app/a", "app/b"]);
    }

    fn changes(kv: &Kv, prefix: &str, after: u64) -> KvResponse {
        let query = KvCommand::Changes { prefix: prefix.into(), after, limit: 100 };
        KvResponse::decode(&kv.query(&query.encode())).unwrap()
    }

    #[test]
    fn changes_list_every_write_and_delete_after_a_revision_until_they_are_forgotten() {
        let mut kv = Kv::new();
        run(&mut kv, put("cfg/a", "1"));
        run(&mut kv, put("other", "x"));
        run(&mut kv, KvCommand::Delete { key: "cfg/a".into() });
        let KvResponse::Changes { changes: seen, revision: 3 } = changes(&kv, "cfg/", 0) else { panic!() };
        let seen: Vec<(u64, Option<&[u8]>)> = seen.iter().map(|c| (c.revision, c.value.as_deref())).collect();
        assert_eq!(seen, [(1, Some(&b"1"[..])), (3, None)]);
        assert_eq!(changes(&kv, "cfg/", 3), KvResponse::Changes { changes: vec![], revision: 3 });
        // A query never writes.
        let refused = KvResponse::decode(&kv.query(&put("cfg/b", "2").encode())).unwrap();
        assert!(matches!(refused, KvResponse::Invalid(_)));
        // The history is bounded; a watcher that fell behind is told so.
        for i in 0..MAX_HISTORY {
            run(&mut kv, put("k", &i.to_string()));
        }
        assert_eq!(changes(&kv, "cfg/", 0), KvResponse::Compacted { floor: 3 });
        let KvResponse::Changes { changes: kept, .. } = changes(&kv, "", 3) else { panic!() };
        assert_eq!(kept.len(), 100, "at most the limit");
        assert_eq!(kept[0].revision, 4, "from the oldest kept");
        let big = vec![0; MAX_HISTORY_BYTES / 2 + 1];
        kv.apply(&KvCommand::Put { key: "b".into(), value: big.clone() }.encode());
        kv.apply(&KvCommand::Put { key: "b".into(), value: big }.encode());
        assert!(kv.history_bytes <= MAX_HISTORY_BYTES);
        let mut restored = Kv::new();
        restored.restore(&kv.snapshot()).unwrap();
        assert_eq!(restored, kv, "the history is part of the snapshot");
    }

    #[test]
    fn bad_commands_change_nothing_and_say_why() {
        let mut kv = Kv::new();
        assert!(matches!(KvResponse::decode(&kv.apply(&[0xff, 0xff])).unwrap(), KvResponse::Invalid(_)));
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        assert!(matches!(run(&mut kv, put(&long, "v")), KvResponse::Invalid(_)));
        assert_eq!(kv.revision(), 0);
    }

    #[test]
    fn a_snapshot_restores_the_same_store() {
        let mut kv = Kv::new();
        run(&mut kv, put("a", "1"));
        run(&mut kv, put("b", "2"));
        let mut other = Kv::new();
        other.restore(&kv.snapshot()).unwrap();
        assert_eq!(other, kv);
        assert!(other.restore(b"\xff\xff\xff").is_err());
    }
}
