//! The in-memory Raft log, compacted behind a snapshot (Raft §5.3, §7).
//!
//! Holds every entry after the snapshot point. The node persists what this
//! log holds through `Persist` outputs; the log itself never does I/O.

use std::collections::VecDeque;

use crate::raft::entry::Entry;

/// Why a follower refused an append: where the leader should try next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Conflict {
    /// The index to retry from (the leader's next index for us).
    pub(crate) next_index: u64,
}

#[derive(Debug)]
pub(crate) struct Log {
    snapshot_index: u64,
    snapshot_term: u64,
    entries: VecDeque<(Entry, usize)>,
    /// Bytes the entries take encoded, for batching and the compaction threshold.
    bytes: usize,
}

impl Log {
    /// An empty log whose snapshot covers everything up to `index` (of `term`).
    pub(crate) fn new(snapshot_index: u64, snapshot_term: u64) -> Self {
        Log { snapshot_index, snapshot_term, entries: VecDeque::new(), bytes: 0 }
    }

    pub(crate) fn snapshot_index(&self) -> u64 {
        self.snapshot_index
    }

    #[cfg(test)]
    pub(crate) fn snapshot_term(&self) -> u64 {
        self.snapshot_term
    }

    pub(crate) fn first_index(&self) -> u64 {
        self.snapshot_index + 1
    }

    pub(crate) fn last_index(&self) -> u64 {
        self.snapshot_index + self.entries.len() as u64
    }

    pub(crate) fn last_term(&self) -> u64 {
        self.entries.back().map_or(self.snapshot_term, |(entry, _)| entry.term)
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The term of the entry at `index`: known for the snapshot point and
    /// every entry after it, `None` before (compacted) or past the end.
    pub(crate) fn term(&self, index: u64) -> Option<u64> {
        if index == self.snapshot_index {
            return Some(self.snapshot_term);
        }
        self.entry(index).map(|entry| entry.term)
    }

    pub(crate) fn entry(&self, index: u64) -> Option<&Entry> {
        let offset = index.checked_sub(self.first_index())?;
        self.entries.get(usize::try_from(offset).ok()?).map(|(entry, _)| entry)
    }

    /// Entries from `from` on, at most `max_count` of them and at most
    /// `max_bytes` (but always at least one, if any, so progress is possible).
    pub(crate) fn slice(&self, from: u64, max_count: usize, max_bytes: usize) -> Vec<Entry> {
        let Some(offset) = from.checked_sub(self.first_index()).and_then(|o| usize::try_from(o).ok()) else {
            return Vec::new();
        };
        let mut bytes = 0;
        let mut out = Vec::new();
        for (entry, len) in self.entries.iter().skip(offset).take(max_count) {
            if !out.is_empty() && bytes + len > max_bytes {
                break;
            }
            bytes += len;
            out.push(entry.clone());
        }
        out
    }

    /// Appends one entry at the end (the leader's path).
    pub(crate) fn push(&mut self, entry: Entry) {
        debug_assert_eq!(entry.index, self.last_index() + 1, "log indexes are contiguous");
        debug_assert!(entry.term >= self.last_term(), "terms never decrease along the log");
        let len = postcard::experimental::serialized_size(&entry).unwrap_or(0);
        self.bytes += len;
        self.entries.push_back((entry, len));
    }

    /// The follower's side of AppendEntries (Raft §5.3): checks that the entry
    /// at `prev_index` has `prev_term`, drops any conflicting suffix, appends
    /// what is new. Returns the index the log was truncated from, if it was,
    /// or where the leader should retry.
    pub(crate) fn append_after(
        &mut self,
        prev_index: u64,
        prev_term: u64,
        entries: Vec<Entry>,
    ) -> Result<Option<u64>, Conflict> {
        if prev_index < self.snapshot_index {
            // Entries up to our snapshot are committed and identical everywhere;
            // skip the part of the batch the snapshot already covers.
            let skip = self.snapshot_index - prev_index;
            let entries: Vec<Entry> = entries.into_iter().skip(usize::try_from(skip).unwrap_or(usize::MAX)).collect();
            return self.append_after(self.snapshot_index, self.snapshot_term, entries);
        }
        match self.term(prev_index) {
            None => return Err(Conflict { next_index: self.last_index() + 1 }),
            Some(term) if term != prev_term => {
                // Skip back over the whole conflicting term at once (§5.3's optimisation).
                let mut index = prev_index;
                while index > self.first_index() && self.term(index - 1) == Some(term) {
                    index -= 1;
                }
                return Err(Conflict { next_index: index.max(self.first_index()) });
            }
            Some(_) => {}
        }
        let mut truncated_from = None;
        for entry in entries {
            match self.term(entry.index) {
                Some(term) if term == entry.term => continue,
                Some(_) => {
                    // §5.3: delete the conflicting entry and all that follow it.
                    self.truncate_from(entry.index);
                    truncated_from.get_or_insert(entry.index);
                    self.push(entry);
                }
                None => {
                    truncated_from.get_or_insert(entry.index);
                    self.push(entry);
                }
            }
        }
        Ok(truncated_from)
    }

    /// Removes entries from `index` on.
    pub(crate) fn truncate_from(&mut self, index: u64) {
        debug_assert!(index > self.snapshot_index, "never truncate into the snapshot");
        while self.last_index() >= index {
            let (_, len) = self.entries.pop_back().expect("last_index counts entries");
            self.bytes -= len;
        }
    }

    /// Drops entries up to `index` (included), which a snapshot now covers.
    pub(crate) fn compact(&mut self, index: u64) {
        let Some(term) = self.term(index) else { return };
        while self.snapshot_index < index {
            let (_, len) = self.entries.pop_front().expect("index within the log");
            self.bytes -= len;
            self.snapshot_index += 1;
        }
        self.snapshot_term = term;
    }

    /// Resets the log to start after a snapshot received from the leader
    /// (§7): entries that agree with it are kept, everything else goes.
    pub(crate) fn restore(&mut self, index: u64, term: u64) {
        if self.term(index) == Some(term) && index >= self.snapshot_index {
            self.compact(index);
        } else {
            self.entries.clear();
            self.bytes = 0;
            self.snapshot_index = index;
            self.snapshot_term = term;
        }
    }

    /// Whether a log ending at (`last_index`, `last_term`) is at least as up
    /// to date as ours (§5.4.1): later last term, or same term and no shorter.
    pub(crate) fn is_up_to_date(&self, last_index: u64, last_term: u64) -> bool {
        (last_term, last_index) >= (self.last_term(), self.last_index())
    }

    pub(crate) fn check_invariants(&self) {
        let mut previous_term = self.snapshot_term;
        for (offset, (entry, _)) in self.entries.iter().enumerate() {
            assert_eq!(entry.index, self.snapshot_index + 1 + offset as u64, "log indexes are contiguous");
            assert!(entry.term >= previous_term, "log terms never decrease");
            previous_term = entry.term;
        }
        assert_eq!(self.bytes, self.entries.iter().map(|(_, len)| len).sum::<usize>(), "byte count in step");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::entry::Payload;

    fn entry(index: u64, term: u64) -> Entry {
        Entry { term, index, payload: Payload::Noop }
    }

    fn log_of(terms: &[u64]) -> Log {
        let mut log = Log::new(0, 0);
        for (offset, &term) in terms.iter().enumerate() {
            log.push(entry(offset as u64 + 1, term));
        }
        log
    }

    fn terms(log: &Log) -> Vec<u64> {
        (log.first_index()..=log.last_index()).map(|index| log.term(index).unwrap()).collect()
    }

    #[test]
    fn an_append_that_matches_extends_and_a_conflict_truncates_the_suffix() {
        // Raft §5.3, Figure 7: a follower drops conflicting entries and takes the leader's.
        let mut log = log_of(&[1, 1, 2, 2]);
        assert_eq!(log.append_after(2, 1, vec![entry(3, 3), entry(4, 3), entry(5, 3)]), Ok(Some(3)));
        assert_eq!(terms(&log), [1, 1, 3, 3, 3]);
        // A replayed, already-present batch changes nothing.
        assert_eq!(log.append_after(2, 1, vec![entry(3, 3)]), Ok(None));
        assert_eq!(terms(&log), [1, 1, 3, 3, 3], "a stale shorter append never truncates");
        log.check_invariants();
    }

    #[test]
    fn a_missing_or_mismatched_previous_entry_is_refused_with_a_retry_hint() {
        let mut log = log_of(&[1, 1, 2, 2, 2]);
        assert_eq!(log.append_after(7, 2, vec![]), Err(Conflict { next_index: 6 }), "gap: retry after our end");
        // The entry at 5 has term 2, the leader says 4: skip back over all of term 2.
        assert_eq!(log.append_after(5, 4, vec![]), Err(Conflict { next_index: 3 }));
        assert_eq!(terms(&log), [1, 1, 2, 2, 2], "a refused append changes nothing");
    }

    #[test]
    fn compaction_keeps_terms_at_the_snapshot_point_and_appends_behind_it_still_work() {
        // Raft §7: the snapshot replaces the prefix; its last index and term remain known.
        let mut log = log_of(&[1, 1, 2, 3]);
        log.compact(2);
        assert_eq!((log.first_index(), log.snapshot_term()), (3, 1));
        assert_eq!(log.term(2), Some(1));
        assert_eq!(log.term(1), None);
        // An append whose prev is before our snapshot skips what the snapshot covers.
        assert_eq!(log.append_after(1, 1, vec![entry(2, 1), entry(3, 2), entry(4, 3), entry(5, 3)]), Ok(Some(5)));
        assert_eq!(terms(&log), [2, 3, 3]);
        log.check_invariants();
    }

    #[test]
    fn restoring_a_snapshot_keeps_a_matching_suffix_and_drops_a_divergent_log() {
        let mut log = log_of(&[1, 1, 2, 3]);
        log.restore(3, 2);
        assert_eq!(terms(&log), [3], "entry 4 follows the snapshot point and agrees with it");
        let mut log = log_of(&[1, 1, 2, 3]);
        log.restore(6, 5);
        assert_eq!((log.first_index(), log.last_index(), log.last_term()), (7, 6, 5));
        log.check_invariants();
    }

    #[test]
    fn up_to_date_compares_last_term_then_length() {
        // Raft §5.4.1, the election restriction.
        let log = log_of(&[1, 2, 2]);
        let table = [((3, 2), true), ((2, 2), false), ((1, 3), true), ((9, 1), false), ((4, 2), true)];
        for (index, ((last_index, last_term), expected)) in table.into_iter().enumerate() {
            assert_eq!(log.is_up_to_date(last_index, last_term), expected, "row {index}");
        }
    }

    #[test]
    fn slices_are_bounded_by_count_and_bytes_but_never_empty() {
        let log = log_of(&[1, 1, 1, 1, 1]);
        assert_eq!(log.slice(2, 2, usize::MAX).len(), 2);
        assert_eq!(log.slice(1, 10, 1).len(), 1, "one entry even past the byte budget");
        assert!(log.slice(6, 10, usize::MAX).is_empty());
        assert!(log.slice(0, 10, usize::MAX).is_empty(), "nothing before the first index");
    }
}
