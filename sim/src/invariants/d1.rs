//! **D1**: one seed, run twice, gives the same trace hash.
//!
//! The trace is everything observable a run did, in order: each step's
//! events and each change of a member's term, role, leader and commit index,
//! each fault and each application ack, every line stamped with the virtual
//! time and the member's slot. Its hash is xxh3 over those lines. madsim's
//! own determinism check compares only its RNG draws and clock; this one
//! compares what the protocol did.

use xxhash_rust::xxh3::Xxh3Default;

use quorate_core::Instant;

use super::{NodeIdx, Violation};

/// A run's trace: its hash, and the lines themselves when asked to keep them.
#[derive(Default)]
pub struct Trace {
    hasher: Xxh3Default,
    lines: u64,
    kept: Option<Vec<String>>,
}

impl std::fmt::Debug for Trace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trace").field("hash", &self.hash()).field("lines", &self.lines).finish()
    }
}

impl Trace {
    /// A trace that keeps its lines (for `replay`).
    pub fn keeping() -> Self {
        Trace { kept: Some(Vec::new()), ..Trace::default() }
    }

    /// Adds one line: `what` happened at `at` on `slot` (or in the harness).
    pub fn record(&mut self, at: Instant, slot: Option<NodeIdx>, what: &str) {
        let line = match slot {
            Some(slot) => format!("{at} {slot} {what}"),
            None => format!("{at} -- {what}"),
        };
        self.hasher.update(line.as_bytes());
        self.hasher.update(b"\n");
        self.lines += 1;
        if let Some(kept) = &mut self.kept {
            kept.push(line);
        }
    }

    /// The hash of every line so far.
    pub fn hash(&self) -> u64 {
        self.hasher.digest()
    }

    /// Lines recorded.
    pub fn len(&self) -> u64 {
        self.lines
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.lines == 0
    }

    /// The lines, if kept.
    pub fn lines(&self) -> Option<&[String]> {
        self.kept.as_deref()
    }
}

/// D1 over two runs of one seed: their trace hashes and lengths.
pub fn check(first: (u64, u64), second: (u64, u64)) -> Result<(), Violation> {
    if first == second {
        return Ok(());
    }
    Err(Violation {
        invariant: "D1",
        at: Instant::ZERO,
        detail: format!(
            "one seed, two runs, two traces: hash {:016x} ({} lines) and {:016x} ({} lines)",
            first.0, first.1, second.0, second.1
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::synthetic::at;

    fn trace(lines: &[(u64, usize, &str)]) -> Trace {
        let mut trace = Trace::keeping();
        for &(millis, slot, what) in lines {
            trace.record(at(millis), Some(NodeIdx(slot)), what);
        }
        trace
    }

    #[test]
    fn equal_histories_have_equal_hashes() {
        let a = trace(&[(1, 0, "leader_changed"), (2, 1, "rebalance 1")]);
        let b = trace(&[(1, 0, "leader_changed"), (2, 1, "rebalance 1")]);
        check((a.hash(), a.len()), (b.hash(), b.len())).unwrap();
        assert_eq!(a.lines().unwrap().len(), 2);
    }

    #[test]
    fn any_difference_is_caught() {
        let base = trace(&[(1, 0, "a"), (2, 1, "b")]);
        for other in [
            trace(&[(2, 1, "b"), (1, 0, "a")]),
            trace(&[(1, 0, "a"), (3, 1, "b")]),
            trace(&[(1, 0, "a"), (2, 2, "b")]),
            trace(&[(1, 0, "a"), (2, 1, "c")]),
            trace(&[(1, 0, "a")]),
        ] {
            let violation = check((base.hash(), base.len()), (other.hash(), other.len())).unwrap_err();
            assert_eq!(violation.invariant, "D1");
        }
    }
}
