//! Bootstrap agreement and cluster identity (DESIGN §3.2).
//!
//! With `bootstrap_expect = N`, a member bootstraps when it sees exactly N
//! live members (itself included), none holding Raft state, all claiming the
//! same sorted set of N durable ids; the initial configuration is that set.
//! Members that can see each other therefore never form two clusters. Two
//! groups that never see each other can, exactly as with Consul's
//! `bootstrap_expect`. With more than N unbootstrapped members in sight it
//! refuses and says why.
//!
//! The cluster uuid is derived from the cluster name and the sorted initial
//! ids, so every bootstrapping member computes the same one; an operator's
//! recovery mints a new one from the old.

use serde::{Deserialize, Serialize};

use crate::id::{ClusterUuid, MemberId};

/// What a member gossips about its cluster membership.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
pub enum ClusterClaim {
    /// Not bootstrapped, not waiting to bootstrap: it will join a cluster.
    #[default]
    Joining,
    /// Not bootstrapped; waiting for `expect` members that all see the set
    /// whose digest is `seen` (0 while it sees no candidate set).
    Expecting {
        /// The `bootstrap_expect` it was configured with.
        expect: u32,
        /// [`digest`] of the sorted ids it currently sees.
        seen: u64,
    },
    /// A member of the cluster with this uuid (it holds Raft state).
    Member(ClusterUuid),
}

/// The outcome of one look at the members in sight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Not yet: too few members, or they do not all see the same set.
    Wait,
    /// A member of a bootstrapped cluster is in sight: join it, never start another.
    JoinExisting(MemberId),
    /// Never with these members in sight; the reason, for the operator.
    Refuse(String),
    /// Bootstrap with these voters.
    Bootstrap(Vec<MemberId>),
}

/// A digest of a sorted id set, for comparing claims in gossip.
pub fn digest(ids: &[MemberId]) -> u64 {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(b"quorate/bootstrap-set/v1\0");
    for id in ids {
        hasher.update(&id.0);
    }
    // 0 means "no set": never produce it.
    hasher.digest().max(1)
}

/// The uuid of a cluster bootstrapped as `name` with the initial voters `ids` (sorted).
pub fn cluster_uuid(name: &str, ids: &[MemberId]) -> ClusterUuid {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(b"quorate/cluster-uuid/v1\0");
    hasher.update(&(name.len() as u64).to_le_bytes());
    hasher.update(name.as_bytes());
    for id in ids {
        hasher.update(&id.0);
    }
    never_nil(hasher.digest128())
}

/// The uuid an operator's recovery mints on member `by`, so the old members
/// are refused until they are wiped and rejoin.
pub fn recovered_uuid(old: ClusterUuid, by: MemberId, term: u64, index: u64) -> ClusterUuid {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(b"quorate/recovered-uuid/v1\0");
    hasher.update(&old.0);
    hasher.update(&by.0);
    hasher.update(&term.to_le_bytes());
    hasher.update(&index.to_le_bytes());
    never_nil(hasher.digest128())
}

fn never_nil(hash: u128) -> ClusterUuid {
    ClusterUuid(hash.max(1).to_le_bytes())
}

/// Decides, for a member configured with `expect`, given the live members in
/// sight (itself included) and their claims.
pub fn decide(expect: usize, in_sight: &[(MemberId, ClusterClaim)]) -> Decision {
    if let Some((id, _)) = in_sight.iter().find(|(_, claim)| matches!(claim, ClusterClaim::Member(_))) {
        return Decision::JoinExisting(*id);
    }
    // Members that will only join never bootstrap: they neither count nor
    // need to agree; they join once the cluster exists.
    let in_sight: Vec<(MemberId, ClusterClaim)> =
        in_sight.iter().copied().filter(|(_, claim)| !matches!(claim, ClusterClaim::Joining)).collect();
    let in_sight = in_sight.as_slice();
    let mut ids: Vec<MemberId> = in_sight.iter().map(|(id, _)| *id).collect();
    ids.sort();
    ids.dedup();
    if ids.len() > expect {
        return Decision::Refuse(format!(
            "{} unbootstrapped members in sight but bootstrap_expect is {expect}: refusing to bootstrap; \
             check every member's bootstrap_expect",
            ids.len()
        ));
    }
    if ids.len() < expect {
        return Decision::Wait;
    }
    let ours = digest(&ids);
    let agreed = in_sight.iter().all(|(_, claim)| match claim {
        ClusterClaim::Expecting { expect: theirs, seen } => *theirs as usize == expect && *seen == ours,
        ClusterClaim::Joining | ClusterClaim::Member(_) => false,
    });
    if agreed { Decision::Bootstrap(ids) } else { Decision::Wait }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[u128]) -> Vec<MemberId> {
        list.iter().copied().map(MemberId::from_u128).collect()
    }

    fn expecting(list: &[u128], expect: u32, seen: &[u128]) -> Vec<(MemberId, ClusterClaim)> {
        let seen = digest(&ids(seen));
        ids(list).into_iter().map(|id| (id, ClusterClaim::Expecting { expect, seen })).collect()
    }

    #[test]
    fn bootstrap_needs_exactly_n_members_all_seeing_the_same_set() {
        // DESIGN §3.2's agreement rule.
        assert_eq!(decide(3, &expecting(&[1, 2], 3, &[1, 2])), Decision::Wait);
        assert_eq!(decide(3, &expecting(&[1, 2, 3], 3, &[1, 2, 3])), Decision::Bootstrap(ids(&[1, 2, 3])));
        let mut disagreeing = expecting(&[1, 2, 3], 3, &[1, 2, 3]);
        disagreeing[2].1 = ClusterClaim::Expecting { expect: 3, seen: digest(&ids(&[1, 2, 4])) };
        assert_eq!(decide(3, &disagreeing), Decision::Wait, "one member sees another set");
        let mut other_expect = expecting(&[1, 2, 3], 3, &[1, 2, 3]);
        other_expect[0].1 = ClusterClaim::Expecting { expect: 5, seen: digest(&ids(&[1, 2, 3])) };
        assert_eq!(decide(3, &other_expect), Decision::Wait, "a different bootstrap_expect never agrees");
    }

    #[test]
    fn members_that_only_join_neither_count_nor_block_agreement() {
        let mut in_sight = expecting(&[1, 2, 3], 3, &[1, 2, 3]);
        in_sight.push((MemberId::from_u128(8), ClusterClaim::Joining));
        in_sight.push((MemberId::from_u128(9), ClusterClaim::Joining));
        assert_eq!(decide(3, &in_sight), Decision::Bootstrap(ids(&[1, 2, 3])));
    }

    #[test]
    fn more_members_than_expected_or_a_bootstrapped_one_in_sight_refuses() {
        assert!(
            matches!(decide(3, &expecting(&[1, 2, 3, 4], 3, &[1, 2, 3, 4])), Decision::Refuse(reason) if reason.contains("4 unbootstrapped"))
        );
        let mut with_member = expecting(&[1, 2], 3, &[1, 2]);
        with_member.push((MemberId::from_u128(9), ClusterClaim::Member(ClusterUuid([7; 16]))));
        assert_eq!(decide(3, &with_member), Decision::JoinExisting(MemberId::from_u128(9)));
    }

    #[test]
    fn every_member_derives_the_same_uuid_and_recovery_mints_another() {
        let set = ids(&[1, 2, 3]);
        assert_eq!(cluster_uuid("prod", &set), cluster_uuid("prod", &set));
        assert_ne!(cluster_uuid("prod", &set), cluster_uuid("staging", &set));
        assert_ne!(cluster_uuid("prod", &set), cluster_uuid("prod", &ids(&[1, 2, 4])));
        let uuid = cluster_uuid("prod", &set);
        assert!(!uuid.is_nil());
        let recovered = recovered_uuid(uuid, MemberId::from_u128(1), 7, 42);
        assert_ne!(recovered, uuid);
        assert!(!recovered.is_nil());
    }
}
