//! Majority decisions, kept pure so they can be table-tested (Raft §5.2, §5.3).

use std::collections::{BTreeMap, BTreeSet};

use crate::id::MemberId;

/// The outcome of an election so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VoteResult {
    /// A majority granted.
    Won,
    /// A majority refused (or cannot grant any more).
    Lost,
    /// Neither yet.
    Pending,
}

/// Tallies `votes` (granted or refused) cast by members of `voters`; votes of
/// non-voters are ignored.
pub(crate) fn tally(voters: &BTreeSet<MemberId>, votes: &BTreeMap<MemberId, bool>) -> VoteResult {
    if voters.is_empty() {
        // No configuration to win: never a leader of nothing.
        return VoteResult::Lost;
    }
    let majority = voters.len() / 2 + 1;
    let (mut granted, mut refused) = (0, 0);
    for voter in voters {
        match votes.get(voter) {
            Some(true) => granted += 1,
            Some(false) => refused += 1,
            None => {}
        }
    }
    if granted >= majority {
        VoteResult::Won
    } else if voters.len() - refused < majority {
        VoteResult::Lost
    } else {
        VoteResult::Pending
    }
}

/// The highest value a majority of `voters` holds at least, given each
/// voter's (absent voters count as 0). With match indexes, Raft §5.3: the
/// leader may commit up to here, if the entry there is of its own term
/// (§5.4.2, checked by the caller); with contact times, CheckQuorum.
pub(crate) fn majority_match(voters: &BTreeSet<MemberId>, matched: impl Fn(MemberId) -> u64) -> u64 {
    if voters.is_empty() {
        return 0;
    }
    let mut indexes: Vec<u64> = voters.iter().map(|&voter| matched(voter)).collect();
    indexes.sort_unstable_by(|a, b| b.cmp(a));
    // With n voters, the (n/2 + 1)-th highest is held by a majority.
    indexes[voters.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[u128]) -> BTreeSet<MemberId> {
        list.iter().copied().map(MemberId::from_u128).collect()
    }

    #[test]
    fn elections_are_won_by_a_majority_and_lost_once_it_is_out_of_reach() {
        // Raft §5.2: a candidate wins with votes from a majority of the voters.
        /// (voters, granted, refused, result)
        type Row = (&'static [u128], &'static [u128], &'static [u128], VoteResult);
        let table: [Row; 9] = [
            (&[1], &[1], &[], VoteResult::Won),
            (&[1, 2, 3], &[1], &[], VoteResult::Pending),
            (&[1, 2, 3], &[1, 2], &[], VoteResult::Won),
            (&[1, 2, 3], &[1], &[2, 3], VoteResult::Lost),
            (&[1, 2, 3, 4], &[1, 2], &[3], VoteResult::Pending),
            (&[1, 2, 3, 4], &[1, 2], &[3, 4], VoteResult::Lost),
            (&[1, 2, 3, 4, 5], &[1, 2, 3], &[4, 5], VoteResult::Won),
            (&[1, 2, 3], &[1, 7, 8], &[], VoteResult::Pending), // non-voters do not count
            (&[], &[1], &[], VoteResult::Lost),
        ];
        for (index, (voters, granted, refused, expected)) in table.into_iter().enumerate() {
            let mut votes = BTreeMap::new();
            votes.extend(granted.iter().map(|&id| (MemberId::from_u128(id), true)));
            votes.extend(refused.iter().map(|&id| (MemberId::from_u128(id), false)));
            assert_eq!(tally(&ids(voters), &votes), expected, "row {index}");
        }
    }

    #[test]
    fn the_majority_match_is_the_index_a_majority_holds() {
        // Raft §5.3: an entry is replicated once a majority stores it.
        // (voters' match indexes in voter order, expected)
        let table: [(&[u64], u64); 6] = [
            (&[5], 5),
            (&[5, 3, 9], 5),
            (&[1, 1, 9], 1),
            (&[4, 6, 6, 8], 6),
            (&[2, 7, 7, 1, 9], 7),
            (&[0, 0, 10, 10, 10], 10),
        ];
        for (index, (matches, expected)) in table.into_iter().enumerate() {
            let voters: BTreeSet<_> = (1..=matches.len() as u128).map(MemberId::from_u128).collect();
            let matched = |id: MemberId| matches[id.as_u128() as usize - 1];
            assert_eq!(majority_match(&voters, matched), expected, "row {index}");
        }
    }
}
