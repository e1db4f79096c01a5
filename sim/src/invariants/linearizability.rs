//! **Linearizability** of the clients' KV histories (DESIGN §3.4, the
//! replicated state machine issue): a Wing & Gong search with memoisation
//! (as porcupine does), one key at a time (a KV store is linearizable if
//! every key's history is, P-compositionality).
//!
//! A history is each client's operations with the virtual times they were
//! called and answered. An operation that never got an answer (its member
//! was killed, or it timed out) may have taken effect at any time after its
//! call, or never: it is checked as open-ended, and its result is unknown.
//! The model is one register per key: absent, or a value with the store
//! revision that wrote it; revisions only grow. The search is bounded; a
//! history it cannot decide within its budget is reported as unchecked,
//! apart from violations, never passed silently.

use std::collections::{BTreeMap, HashSet};

use super::Violation;
use quorate_core::Instant;

/// What a client did to a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    /// Put `value`.
    Put(u64),
    /// Read.
    Get,
    /// Put `value` if the key's modification revision is `expected`.
    Cas {
        /// The revision asked for (`None`: absent).
        expected: Option<u64>,
        /// The value.
        value: u64,
    },
}

/// What it got back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Return {
    /// A write took effect at this revision.
    Written(u64),
    /// A read saw this (value, revision), or nothing.
    Value(Option<(u64, u64)>),
    /// A compare-and-set found this revision instead.
    CasFailed(Option<u64>),
    /// No answer, or an error that does not say whether it applied.
    Unknown,
}

/// One operation of one client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    /// The client (one per member boot).
    pub client: u64,
    /// The key.
    pub key: String,
    /// What it asked.
    pub call: Call,
    /// When it asked.
    pub called: Instant,
    /// When it was answered (`None`: never).
    pub returned: Option<Instant>,
    /// The answer.
    pub result: Return,
}

/// The register a key is, in the model: absent, or a value and the
/// revision that wrote it (`None` while only an unanswered write explains
/// the value, so the revision is not known yet).
type State = Option<(u64, Option<u64>)>;

/// Applies `op` to `state` in the model: the next state if the answer fits.
fn step(state: State, op: &Op) -> Option<State> {
    let revision = state.and_then(|(_, revision)| revision);
    let known = state.is_none_or(|(_, revision)| revision.is_some());
    // Whether the key's revision may be `expected` (`None`: absent).
    let may_be = |expected: Option<u64>| match state {
        None => expected.is_none(),
        Some((_, Some(revision))) => expected == Some(revision),
        Some((_, None)) => expected.is_some(),
    };
    match (&op.call, &op.result) {
        (Call::Put(value), Return::Written(written)) => {
            (!known || revision < Some(*written)).then_some(Some((*value, Some(*written))))
        }
        (Call::Cas { expected, value }, Return::Written(written)) => {
            (may_be(*expected) && (!known || revision < Some(*written))).then_some(Some((*value, Some(*written))))
        }
        (Call::Cas { expected, .. }, Return::CasFailed(current)) => {
            (*current != *expected && may_be(*current)).then(|| state.map(|(value, _)| (value, *current)))
        }
        (Call::Get, Return::Value(None)) => state.is_none().then_some(None),
        (Call::Get, Return::Value(Some((seen, at)))) => match state {
            Some((value, revision)) if value == *seen && revision.is_none_or(|r| r == *at) => {
                Some(Some((value, Some(*at))))
            }
            _ => None,
        },
        // An unanswered write may have happened, at a revision only later
        // answers can tell; an unanswered read changes nothing.
        (Call::Put(value), Return::Unknown) => Some(Some((*value, None))),
        (Call::Cas { expected, value }, Return::Unknown) => may_be(*expected).then_some(Some((*value, None))),
        (Call::Get, Return::Unknown) => Some(state),
        _ => None,
    }
}

/// How one key's search ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Some order of the operations explains every answer.
    Linearizable,
    /// No order does; the operations involved.
    Violated(String),
    /// The search ran out of its budget.
    Unchecked,
}

/// Checks one key's operations within `budget` search steps.
pub fn check_key(ops: &[Op], budget: u64) -> Verdict {
    match search(ops, budget) {
        Verdict::Violated(detail) => Verdict::Violated(detail + &shortest_violating_prefix(ops, budget)),
        other => other,
    }
}

fn search(ops: &[Op], budget: u64) -> Verdict {
    // Unanswered operations are open-ended; unknown writes may also never
    // have happened, so each may be left out entirely. An unanswered read
    // changes nothing and constrains nothing: it is left out at once.
    //
    // An unanswered write whose value no answered read returned is left out
    // too: each one kept doubles the states to search (it may or may not
    // have happened, anywhere after its call). Leaving it out narrows the
    // search, so it could only make the checker report a violation, never
    // hide one.
    let seen_values: HashSet<u64> = ops
        .iter()
        .filter_map(|op| match op.result {
            Return::Value(Some((value, _))) => Some(value),
            _ => None,
        })
        .collect();
    // Unless an answer names a revision no answered write made: then some
    // unanswered write made it, and all of them stay.
    let written: HashSet<u64> = ops
        .iter()
        .filter_map(|op| match op.result {
            Return::Written(revision) => Some(revision),
            _ => None,
        })
        .collect();
    let unexplained = ops.iter().any(|op| match op.result {
        Return::Value(Some((_, revision))) | Return::CasFailed(Some(revision)) => !written.contains(&revision),
        _ => false,
    });
    let observed = |op: &Op| match op.call {
        Call::Put(value) | Call::Cas { value, .. } => unexplained || seen_values.contains(&value),
        Call::Get => false,
    };
    let mut ops: Vec<&Op> = ops.iter().filter(|op| op.returned.is_some() || observed(op)).collect();
    ops.sort_by_key(|op| op.called);
    let n = ops.len();
    if n > 1024 {
        return Verdict::Unchecked;
    }
    let end = |op: &&Op| op.returned.map_or(u64::MAX, Instant::as_nanos);
    // Only ever asked whether it holds a state: its order never matters.
    let mut seen: HashSet<(Vec<u64>, State)> = HashSet::new();
    let words = n.div_ceil(64);
    // Depth-first over (linearized set, state).
    let mut stack: Vec<(Vec<u64>, State)> = vec![(vec![0; words], None)];
    let mut steps = 0u64;
    while let Some((done, state)) = stack.pop() {
        steps += 1;
        if steps > budget {
            return Verdict::Unchecked;
        }
        let is_done = |i: usize| done[i / 64] & (1 << (i % 64)) != 0;
        // Every answered operation linearized: the rest are unanswered ones
        // that may never have happened.
        if (0..n).all(|i| is_done(i) || ops[i].returned.is_none()) {
            return Verdict::Linearizable;
        }
        // The earliest end among the pending operations bounds which may go next.
        let horizon = (0..n).filter(|&i| !is_done(i)).map(|i| end(&ops[i])).min().unwrap_or(u64::MAX);
        for i in (0..n).filter(|&i| !is_done(i) && ops[i].called.as_nanos() <= horizon) {
            if let Some(next) = step(state, ops[i]) {
                let mut done = done.clone();
                done[i / 64] |= 1 << (i % 64);
                if seen.insert((done.clone(), next)) {
                    stack.push((done, next));
                }
            }
        }
    }
    Verdict::Violated(format!("{n} operations, no order explains them"))
}

/// For a violation's evidence: the shortest prefix (in call order) that no
/// order explains, and its last operations.
fn shortest_violating_prefix(ops: &[Op], budget: u64) -> String {
    let mut sorted = ops.to_vec();
    sorted.sort_by_key(|op| op.called);
    // A prefix's answered reads and writes are all in; later calls are not.
    let fails = |len: usize| matches!(search(&sorted[..len], budget), Verdict::Violated(_));
    let (mut good, mut bad) = (0, sorted.len());
    if !fails(bad) {
        return String::new();
    }
    while bad - good > 1 {
        let mid = (good + bad) / 2;
        if fails(mid) { bad = mid } else { good = mid }
    }
    let tail: Vec<String> = sorted[bad.saturating_sub(4)..bad].iter().map(|op| format!("{op:?}")).collect();
    format!("; the first {bad} calls already fail, ending with:\n    {}", tail.join("\n    "))
}

/// Checks every key of a history. Returns the first violation, and how many
/// keys were left unchecked for lack of budget.
pub fn check(ops: &[Op], budget_per_key: u64) -> (Result<(), Violation>, usize) {
    let mut by_key: BTreeMap<&str, Vec<Op>> = BTreeMap::new();
    for op in ops {
        by_key.entry(op.key.as_str()).or_default().push(op.clone());
    }
    let mut unchecked = 0;
    for (key, ops) in by_key {
        match check_key(&ops, budget_per_key) {
            Verdict::Linearizable => {}
            Verdict::Unchecked => unchecked += 1,
            Verdict::Violated(detail) => {
                let at = ops.iter().filter_map(|op| op.returned).max().unwrap_or(Instant::ZERO);
                let detail = format!("key {key:?}: {detail}");
                return (Err(Violation { invariant: "LIN", at, detail }), unchecked);
            }
        }
    }
    (Ok(()), unchecked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::synthetic::at;

    fn op(client: u64, call: Call, called: u64, returned: Option<u64>, result: Return) -> Op {
        Op { client, key: "k".into(), call, called: at(called), returned: returned.map(at), result }
    }

    #[test]
    fn a_sequential_history_is_linearizable() {
        let history = [
            op(1, Call::Put(7), 0, Some(10), Return::Written(1)),
            op(2, Call::Get, 20, Some(30), Return::Value(Some((7, 1)))),
            op(1, Call::Cas { expected: Some(1), value: 8 }, 40, Some(50), Return::Written(2)),
            op(2, Call::Cas { expected: Some(1), value: 9 }, 60, Some(70), Return::CasFailed(Some(2))),
        ];
        assert_eq!(check_key(&history, 10_000), Verdict::Linearizable);
    }

    #[test]
    fn overlapping_operations_may_take_effect_in_either_order() {
        // The read overlaps the write: it may see the old state or the new.
        let before = [
            op(1, Call::Put(7), 0, Some(100), Return::Written(1)),
            op(2, Call::Get, 10, Some(20), Return::Value(None)),
        ];
        assert_eq!(check_key(&before, 10_000), Verdict::Linearizable);
        let after = [
            op(1, Call::Put(7), 0, Some(100), Return::Written(1)),
            op(2, Call::Get, 10, Some(20), Return::Value(Some((7, 1)))),
        ];
        assert_eq!(check_key(&after, 10_000), Verdict::Linearizable);
    }

    #[test]
    fn a_stale_read_after_an_answered_write_is_caught() {
        let history =
            [op(1, Call::Put(7), 0, Some(10), Return::Written(1)), op(2, Call::Get, 20, Some(30), Return::Value(None))];
        assert!(matches!(check_key(&history, 10_000), Verdict::Violated(_)));
        // A lost acknowledged write, seen by a later read of an older value.
        let lost = [
            op(1, Call::Put(1), 0, Some(10), Return::Written(1)),
            op(1, Call::Put(2), 20, Some(30), Return::Written(2)),
            op(2, Call::Get, 40, Some(50), Return::Value(Some((1, 1)))),
        ];
        assert!(matches!(check_key(&lost, 10_000), Verdict::Violated(_)));
    }

    #[test]
    fn an_unanswered_write_may_or_may_not_have_happened() {
        let happened = [
            op(1, Call::Put(7), 0, None, Return::Unknown),
            op(2, Call::Get, 50, Some(60), Return::Value(Some((7, 1)))),
        ];
        assert_eq!(check_key(&happened, 10_000), Verdict::Linearizable);
        let not_yet =
            [op(1, Call::Put(7), 0, None, Return::Unknown), op(2, Call::Get, 50, Some(60), Return::Value(None))];
        assert_eq!(check_key(&not_yet, 10_000), Verdict::Linearizable);
        // But nothing unwritten is ever read.
        let invented = [op(2, Call::Get, 50, Some(60), Return::Value(Some((9, 1))))];
        assert!(matches!(check_key(&invented, 10_000), Verdict::Violated(_)));
    }

    #[test]
    fn a_search_over_its_budget_is_unchecked_not_passed() {
        let history: Vec<Op> = (0..40).map(|i| op(i, Call::Put(i), 0, Some(1000), Return::Written(i + 1))).collect();
        assert_eq!(check_key(&history, 10), Verdict::Unchecked);
        let (result, unchecked) = check(&history, 10);
        assert!(result.is_ok());
        assert_eq!(unchecked, 1);
    }
}
