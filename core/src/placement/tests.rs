//! Placement tests: golden vectors that pin the scheme, the `rendezvous_hash`
//! crate as the oracle of the unweighted scan, and the properties rendezvous
//! hashing promises (minimal movement, shares proportional to capacity).

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use proptest::prelude::*;
use rendezvous_hash::{IdNode, Node, NodeHasher, RendezvousNodes, WeightedNode};
use xxhash_rust::xxh3::xxh3_64;

use super::log2::{self, TABLE_BITS, TABLE_ROWS};
use super::*;
use crate::fixed::log2_q32;

// Ids differ in their first bytes so the six-byte `Display` tells them apart.
const M1: MemberId = MemberId::from_u128(0x0100_0000_0000_0000_0000_0000_0000_0001);
const M2: MemberId = MemberId::from_u128(0x0200_0000_0000_0000_0000_0000_0000_0002);
const M3: MemberId = MemberId::from_u128(0x0300_0000_0000_0000_0000_0000_0000_0003);
const M4: MemberId = MemberId::from_u128(0x0400_0000_0000_0000_0000_0000_0000_0004);
const M5: MemberId = MemberId::from_u128(0x9f3a_5c21_7e4b_4d0e_a6b8_12c4_f0d9_3e57);
const M6: MemberId = MemberId::from_u128(u128::MAX);

const GOLDEN_MEMBERS: [MemberId; 6] = [M1, M2, M3, M4, M5, M6];

/// Capacities of the weighted golden set, in `GOLDEN_MEMBERS` order.
const GOLDEN_CAPACITIES: [u32; 6] = [1, 2, 3, 5, 8, 13];

/// Bytes `0, 1, 2, …` for keys long enough to reach every XXH3 length class.
static RAMP: [u8; 1000] = {
    let mut ramp = [0u8; 1000];
    let mut index = 0;
    while index < ramp.len() {
        ramp[index] = index as u8;
        index += 1;
    }
    ramp
};

/// One key per XXH3 input-length class (0, 1–3, 4–8, 9–16, 17–128, 129–240,
/// over 240) and the `u64` keys users feed most.
fn golden_keys() -> [&'static [u8]; 15] {
    [
        b"",
        b"a",
        b"abc",
        b"user:42",
        b"12345678",
        b"0123456789abcdef",
        &[0, 0, 0, 0, 0, 0, 0, 0],
        &[1, 0, 0, 0, 0, 0, 0, 0],
        &[0xff; 8],
        &RAMP[..17],
        &RAMP[..100],
        &RAMP[..129],
        &RAMP[..240],
        &RAMP[..241],
        &RAMP[..1000],
    ]
}

fn golden_weighted() -> Placement {
    let capacities = GOLDEN_CAPACITIES.map(|capacity| Capacity::new(capacity).expect("golden capacities are positive"));
    Placement::weighted(GOLDEN_MEMBERS.into_iter().zip(capacities))
}

fn ids(values: &[u128]) -> Vec<MemberId> {
    values.iter().map(|&value| MemberId::from_u128(value)).collect()
}

fn capacity(value: u32) -> Capacity {
    Capacity::new(value).expect("test capacities are positive")
}

// ---------------------------------------------------------------------------
// The oracle: the `rendezvous_hash` crate, fed our score through its traits.

/// A key that reaches a `Hasher` only as raw bytes.
struct KeyBytes<'a>(&'a [u8]);

impl Hash for KeyBytes<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(self.0);
    }
}

/// Collects what it is fed and hashes it with XXH3 at the end. Any
/// integer write would mean a key went through `Hash` of a number, whose
/// bytes depend on the platform: refuse it loudly.
#[derive(Default)]
struct RawBytesHasher(Vec<u8>);

impl Hasher for RawBytesHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }

    fn finish(&self) -> u64 {
        xxh3_64(&self.0)
    }

    fn write_u8(&mut self, _: u8) {
        panic!("placement keys are hashed as raw bytes, never as integers");
    }

    fn write_u64(&mut self, _: u64) {
        panic!("placement keys are hashed as raw bytes, never as integers");
    }

    fn write_usize(&mut self, _: usize) {
        panic!("placement keys are hashed as raw bytes, never as a usize");
    }
}

/// The crate's `NodeHasher`, scoring with scheme steps 1–3.
struct SchemeHasher;

impl NodeHasher<MemberId> for SchemeHasher {
    fn hash<T: Hash>(&self, node: &MemberId, item: &T) -> u64 {
        let mut hasher = RawBytesHasher::default();
        item.hash(&mut hasher);
        score(member_hash(*node), hasher.finish())
    }
}

fn oracle(members: &[MemberId]) -> RendezvousNodes<IdNode<MemberId>, SchemeHasher> {
    let mut nodes = RendezvousNodes::new(SchemeHasher);
    nodes.extend(members.iter().map(|&id| IdNode::new(id)));
    nodes
}

fn oracle_owners(members: &[MemberId], key: &[u8], n: usize) -> Vec<MemberId> {
    oracle(members).calc_candidates(&KeyBytes(key)).take(n).map(|node| **node).collect()
}

fn weighted_oracle(members: &[(MemberId, u32)]) -> RendezvousNodes<WeightedNode<IdNode<MemberId>>, SchemeHasher> {
    let mut nodes = RendezvousNodes::new(SchemeHasher);
    nodes.extend(members.iter().map(|&(id, weight)| {
        let weight = rendezvous_hash::Capacity::new(f64::from(weight)).expect("positive weights are normal floats");
        WeightedNode::new(IdNode::new(id), weight)
    }));
    nodes
}

// ---------------------------------------------------------------------------
// Golden vectors.

#[test]
fn xxh3_matches_its_published_test_vector() {
    // The hash library computes XXH3-64 as specified (reference value for empty input).
    assert_eq!(xxh3_64(b""), 0x2d06_8005_38d3_94c2);
}

#[test]
fn member_hash_key_hash_and_score_are_pinned() {
    // Scheme steps 1–3 and 5 for one pair, as literals: any change to the scheme fails here first.
    assert_eq!(member_hash(M1), GOLDEN_MEMBER_HASH);
    assert_eq!(key_hash(b"user:42"), GOLDEN_KEY_HASH);
    assert_eq!(score(GOLDEN_MEMBER_HASH, GOLDEN_KEY_HASH), GOLDEN_SCORE);
    assert_eq!(log2::neg_log2_unit_q32(log2::table(), GOLDEN_SCORE), GOLDEN_NEG_LOG2);
    assert_eq!(score(0, 0), 0, "the finalizer fixes zero");
}

const GOLDEN_MEMBER_HASH: u64 = 0x3559_9a1d_ffcf_63ac;
const GOLDEN_KEY_HASH: u64 = 0x9fc1_e605_fa71_74aa;
const GOLDEN_SCORE: u64 = 0x7c49_8273_dd2b_eaf0;
/// 1.042466747 in Q32.32; exactly, -log2(score / 2^64) = 1.042466703.
const GOLDEN_NEG_LOG2: u64 = 0x1_0adf_19cb;

#[test]
fn unweighted_owners_of_golden_keys_are_pinned() {
    // Scheme steps 1–4: the owner and top three of fixed keys over a fixed member set.
    let expected: [[MemberId; 3]; 15] = [
        [M2, M1, M5],
        [M4, M5, M2],
        [M4, M5, M6],
        [M4, M6, M1],
        [M4, M1, M2],
        [M6, M2, M4],
        [M5, M4, M1],
        [M6, M1, M3],
        [M6, M2, M3],
        [M3, M6, M2],
        [M6, M4, M3],
        [M4, M3, M1],
        [M6, M1, M3],
        [M1, M5, M6],
        [M5, M4, M1],
    ];
    let placement = Placement::new(GOLDEN_MEMBERS);
    for (index, (key, top)) in golden_keys().into_iter().zip(expected).enumerate() {
        assert_eq!(placement.owners(key, 3), top, "row {index}: key of {} bytes", key.len());
        assert_eq!(placement.owner(key), Some(top[0]), "row {index}");
    }
}

#[test]
fn weighted_owners_of_golden_keys_are_pinned() {
    // Scheme step 5: the owner and top three of fixed keys over fixed capacities 1, 2, 3, 5, 8, 13.
    let expected: [[MemberId; 3]; 15] = [
        [M5, M6, M2],
        [M4, M5, M6],
        [M4, M5, M6],
        [M4, M6, M5],
        [M4, M6, M2],
        [M6, M5, M4],
        [M5, M4, M6],
        [M6, M3, M5],
        [M6, M5, M3],
        [M6, M3, M2],
        [M6, M4, M5],
        [M4, M6, M3],
        [M6, M5, M3],
        [M6, M5, M1],
        [M5, M4, M6],
    ];
    let placement = golden_weighted();
    for (index, (key, top)) in golden_keys().into_iter().zip(expected).enumerate() {
        assert_eq!(placement.owners(key, 3), top, "row {index}: key of {} bytes", key.len());
        assert_eq!(placement.owner(key), Some(top[0]), "row {index}");
    }
}

#[test]
fn u64_keys_are_hashed_as_their_little_endian_bytes() {
    // `owner_u64` is defined by explicit bytes, so it cannot vary with the platform's endianness.
    let placement = golden_weighted();
    for key in [0u64, 1, 0x0102_0304_0506_0708, u64::MAX] {
        assert_eq!(placement.owner_u64(key), placement.owner(&key.to_le_bytes()), "key {key:#x}");
    }
    assert_eq!(Placement::new(GOLDEN_MEMBERS).owner_u64(1), Some(GOLDEN_OWNER_OF_U64_ONE));
}

const GOLDEN_OWNER_OF_U64_ONE: MemberId = M6;

// ---------------------------------------------------------------------------
// The fixed-point logarithm.

#[test]
fn log2_table_rows_equal_the_exact_function() {
    // One source of truth: every row is `fixed::log2_q32` at the row's mantissa.
    let table = log2::table();
    assert_eq!(table.len(), TABLE_ROWS);
    for (row, &value) in table.iter().enumerate() {
        let exact = log2_q32((1 << TABLE_BITS) + row as u64) - (u64::from(TABLE_BITS) << 32);
        assert_eq!(value, exact, "row {row}");
    }
    assert_eq!(table[0], 0);
    assert_eq!(table[TABLE_ROWS - 1], 1 << 32, "log2(2) closes the table");
}

#[test]
fn fast_log2_stays_within_interpolation_error_of_the_exact_function() {
    // Chords under a concave curve: the fast value is never above the exact one and at most 2^-22 below.
    let table = log2::table();
    let mut inputs = vec![1u64, 2, 3, 5, 7, 1000, 1023, 1024, 1025, 1 << 32, (1 << 32) - 1, u64::MAX, u64::MAX - 1];
    inputs.extend((0..64).map(|shift| 1u64 << shift));
    let mut state = 0x1234_5678_9abc_def0u64;
    for _ in 0..20_000 {
        state = score(state, 0x9e37_79b9_7f4a_7c15);
        // Vary the magnitude too, not only the mantissa.
        inputs.push((state >> (state % 64)).max(1));
    }
    for (index, &x) in inputs.iter().enumerate() {
        let (fast, exact) = (log2::log2_q32_fast(table, x), log2_q32(x));
        assert!(fast <= exact + 1, "input {index}: log2({x}) fast {fast} above exact {exact}");
        assert!(exact - fast.min(exact) <= 1 << 10, "input {index}: log2({x}) fast {fast}, exact {exact}");
    }
    for shift in 0..64u64 {
        assert_eq!(log2::log2_q32_fast(table, 1 << shift), shift << 32, "2^{shift} is exact");
    }
}

#[test]
fn fast_log2_never_decreases() {
    // Equal capacities rank as unweighted only if L never rises with the score.
    let table = log2::table();
    let mut inputs: Vec<u64> = (1..5000).collect();
    let mut state = 7u64;
    for _ in 0..20_000 {
        state = score(state, 0x9e37_79b9_7f4a_7c15);
        inputs.push((state >> (state % 64)).max(1));
        inputs.push(state | (1 << 63));
    }
    inputs.sort_unstable();
    for pair in inputs.windows(2) {
        let (low, high) = (log2::log2_q32_fast(table, pair[0]), log2::log2_q32_fast(table, pair[1]));
        assert!(low <= high, "log2({}) = {low} > log2({}) = {high}", pair[0], pair[1]);
    }
}

#[test]
fn neg_log2_of_extreme_scores_is_finite_positive_and_ordered() {
    // Score 0 (u = 0) must not panic or divide by zero; it scores as 1 does, below every larger score.
    let table = log2::table();
    let rows = [(0u64, 64u64 << 32), (1, 64 << 32), (2, 63 << 32), (1 << 63, 1 << 32)];
    for (index, (score, expected)) in rows.into_iter().enumerate() {
        assert_eq!(log2::neg_log2_unit_q32(table, score), expected, "row {index}: score {score:#x}");
    }
    let top = log2::neg_log2_unit_q32(table, u64::MAX);
    assert!((1..1 << 12).contains(&top), "u just below 1 gives L just above 0, got {top}");
}

// ---------------------------------------------------------------------------
// Against the oracle.

fn member_set() -> impl Strategy<Value = Vec<MemberId>> {
    // Small numbers too, so ids that share long prefixes show up.
    let id = prop_oneof![any::<u128>(), 0..64u128];
    prop::collection::vec(id, 0..40).prop_map(|values| ids(&values))
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..300)
}

fn weighted_members() -> impl Strategy<Value = Vec<(MemberId, u32)>> {
    let weight = prop_oneof![1..=4u32, 1..=1000u32, Just(u32::MAX)];
    prop::collection::btree_map(any::<u128>(), weight, 1..30)
        .prop_map(|members| members.into_iter().map(|(id, weight)| (MemberId::from_u128(id), weight)).collect())
}

fn weighted_placement(members: &[(MemberId, u32)]) -> Placement {
    Placement::weighted(members.iter().map(|&(id, weight)| (id, capacity(weight))))
}

proptest! {
    #[test]
    fn owner_agrees_with_the_rendezvous_hash_crate(members in member_set(), key in key()) {
        // The O(n) scan finds the same owner as the crate's full sort under the same score.
        let placement = Placement::new(members.iter().copied());
        let expected = oracle_owners(&members, &key, 1).first().copied();
        prop_assert_eq!(placement.owner(&key), expected);
    }

    #[test]
    fn owners_list_agrees_with_the_rendezvous_hash_crate(
        members in member_set(),
        key in key(),
        n in 0..45usize,
    ) {
        // Top-n order, both the insertion path (n ≤ 16) and the sort path, equals the crate's candidates.
        let placement = Placement::new(members.iter().copied());
        let mut unique = members.clone();
        unique.sort_unstable();
        unique.dedup();
        prop_assert_eq!(placement.owners(&key, n), oracle_owners(&unique, &key, n));
    }

    #[test]
    fn weighted_scorer_with_equal_capacities_ranks_like_the_unweighted_one(
        members in member_set(),
        key in key(),
        weight in prop_oneof![Just(1u32), any::<u32>().prop_map(|w| w.max(1))],
        n in 0..45usize,
    ) {
        // L never rises with the score, so equal weights reduce step 5 to step 4 exactly.
        let unweighted = Placement::new(members.iter().copied());
        let mut forced = Placement::weighted(members.iter().map(|&id| (id, capacity(weight))));
        forced.uniform = false;
        prop_assert_eq!(forced.owner(&key), unweighted.owner(&key));
        prop_assert_eq!(forced.owners(&key, n), unweighted.owners(&key, n));
    }

    #[test]
    fn weighted_owner_heads_the_weighted_owners_list(
        members in weighted_members(),
        key in key(),
        n in 1..40usize,
    ) {
        // The allocation-free scan and the ranked list use one order.
        let placement = weighted_placement(&members);
        let owners = placement.owners(&key, n);
        prop_assert_eq!(owners.len(), n.min(members.len()));
        prop_assert_eq!(placement.owner(&key), owners.first().copied());
        prop_assert_eq!(placement.owners(&key, 1), owners[..1].to_vec());
    }

    #[test]
    fn weighted_owner_agrees_with_the_crates_float_scorer_up_to_rounding(
        members in weighted_members(),
        key in key(),
    ) {
        // Fixed point changes an owner only when two weighted scores are within its error of each other.
        let placement = weighted_placement(&members);
        let ours = placement.owner(&key).expect("non-empty");
        let theirs = weighted_oracle(&members)
            .calc_candidates(&KeyBytes(&key))
            .next()
            .map(|node| *node.node_id())
            .expect("non-empty");
        if ours != theirs {
            // L / w, the inverse of the weighted score, in log2 units.
            let inverse_score = |id: MemberId| {
                let weight = members.iter().find(|member| member.0 == id).map_or(1, |member| member.1);
                let score = score(member_hash(id), key_hash(&key));
                (64.0 - (score.max(1) as f64).log2()) / f64::from(weight)
            };
            let gap = (inverse_score(ours) - inverse_score(theirs)).abs();
            prop_assert!(gap < 1e-6, "owners {} vs {} differ by {} in L / w", ours, theirs, gap);
        }
    }

    #[test]
    fn input_order_and_duplicates_do_not_change_the_placement(
        members in weighted_members(),
        key in key(),
        seed in any::<u64>(),
    ) {
        // Every member builds the same placement from the same set, however its list was ordered.
        let placement = weighted_placement(&members);
        let mut shuffled: Vec<(MemberId, u32)> = members.iter().chain(&members).copied().collect();
        let mut state = seed;
        for index in (1..shuffled.len()).rev() {
            state = score(state, 0x9e37_79b9_7f4a_7c15);
            shuffled.swap(index, (state % (index as u64 + 1)) as usize);
        }
        let rebuilt = weighted_placement(&shuffled);
        prop_assert_eq!(&rebuilt, &placement);
        prop_assert_eq!(rebuilt.owners(&key, 5), placement.owners(&key, 5));
    }

    #[test]
    fn adding_a_member_moves_keys_only_to_it(
        members in weighted_members(),
        weighted in any::<bool>(),
        seed in any::<u64>(),
    ) {
        // Rendezvous minimal movement: a joiner takes keys, and no key moves between the others.
        let (joiner, others) = members.split_first().expect("at least one member");
        let weight = |member: &(MemberId, u32)| if weighted { capacity(member.1) } else { Capacity::ONE };
        let before = Placement::weighted(others.iter().map(|member| (member.0, weight(member))));
        let after = Placement::weighted(members.iter().map(|member| (member.0, weight(member))));
        let diff = after.diff(&before);
        prop_assert_eq!(diff.added(), &[joiner.0][..]);
        for key in (0..200u64).map(|index| seed.wrapping_add(index)) {
            let key = key.to_le_bytes();
            let (old, new) = (before.owner(&key), after.owner(&key));
            prop_assert!(old == new || new == Some(joiner.0), "key moved from {:?} to {:?}", old, new);
            prop_assert_eq!(diff.moved(&key), (old != new).then_some(Move { from: old, to: new }));
        }
    }

    #[test]
    fn removing_a_member_moves_only_its_keys(
        members in weighted_members(),
        weighted in any::<bool>(),
        seed in any::<u64>(),
    ) {
        // Rendezvous minimal movement: a leaver's keys go elsewhere, and nobody else's keys move.
        let (leaver, others) = members.split_first().expect("at least one member");
        let weight = |member: &(MemberId, u32)| if weighted { capacity(member.1) } else { Capacity::ONE };
        let before = Placement::weighted(members.iter().map(|member| (member.0, weight(member))));
        let after = Placement::weighted(others.iter().map(|member| (member.0, weight(member))));
        let diff = after.diff(&before);
        prop_assert_eq!(diff.removed(), &[leaver.0][..]);
        for key in (0..200u64).map(|index| seed.wrapping_add(index)) {
            let key = key.to_le_bytes();
            let (old, new) = (before.owner(&key), after.owner(&key));
            prop_assert!(old == new || old == Some(leaver.0), "key moved from {:?} to {:?}", old, new);
            prop_assert_eq!(diff.moved(&key), (old != new).then_some(Move { from: old, to: new }));
        }
    }

    #[test]
    fn changing_a_capacity_moves_keys_only_to_or_from_that_member(
        members in weighted_members(),
        new_weight in 1..=2000u32,
        seed in any::<u64>(),
    ) {
        // Only the reweighted member's score changes: a rise only gains it keys, a fall only loses them.
        let (changed, _) = members.split_first().expect("at least one member");
        let before = weighted_placement(&members);
        let after = Placement::weighted(members.iter().map(|&(id, weight)| {
            (id, capacity(if id == changed.0 { new_weight } else { weight }))
        }));
        let diff = after.diff(&before);
        prop_assert!(diff.added().is_empty() && diff.removed().is_empty());
        let expected_change = (new_weight != changed.1).then_some(CapacityChange {
            id: changed.0,
            before: capacity(changed.1),
            after: capacity(new_weight),
        });
        prop_assert_eq!(diff.reweighted(), expected_change.as_slice());
        for key in (0..200u64).map(|index| seed.wrapping_add(index)) {
            let key = key.to_le_bytes();
            let (old, new) = (before.owner(&key), after.owner(&key));
            if old != new {
                let expected = if new_weight > changed.1 { new } else { old };
                prop_assert_eq!(expected, Some(changed.0), "key moved from {:?} to {:?}", old, new);
            }
        }
    }
}

#[test]
fn weighting_one_member_of_an_unweighted_placement_moves_keys_only_to_it() {
    // Equal capacities rank exactly as unweighted, so leaving the unweighted scan moves no other key.
    let before = Placement::new(GOLDEN_MEMBERS);
    for (row, raised) in GOLDEN_MEMBERS.into_iter().enumerate() {
        let after =
            Placement::weighted(GOLDEN_MEMBERS.map(|id| (id, if id == raised { capacity(2) } else { Capacity::ONE })));
        assert!(!after.uniform, "row {row}: the weighted scan runs");
        let diff = after.diff(&before);
        let mut gained = 0;
        for key in 0..5_000u64 {
            if let Some(change) = diff.moved(&key.to_le_bytes()) {
                assert_eq!(change.to, Some(raised), "row {row}: key {key} moved {change:?}");
                gained += 1;
            }
        }
        // From 1/6 to 2/7 of the keys: about 595 of 5,000 move.
        assert!((450..750).contains(&gained), "row {row}: {gained} keys moved");
    }
}

// ---------------------------------------------------------------------------
// Ties, edges and the API around the scan.

#[test]
fn equal_scores_rank_the_greater_member_id_first() {
    // Step 4's tie-break, reachable only through colliding member hashes: forge the collision.
    let members = ids(&(1..=24).map(|value| value << 120).collect::<Vec<_>>());
    let descending: Vec<MemberId> = members.iter().rev().copied().collect();
    for (index, weighted) in [false, true].into_iter().enumerate() {
        let mut placement = Placement::new(members.iter().copied());
        placement.uniform = !weighted;
        let shared = placement.hashes[5];
        placement.hashes.fill(shared);
        assert_eq!(placement.owner(b"any"), Some(descending[0]), "row {index}");
        assert_eq!(placement.owners(b"any", 3), descending[..3], "row {index}: insertion path");
        assert_eq!(placement.owners(b"any", 24), descending, "row {index}: sort path");
        assert_eq!(placement.owners(b"any", 20), descending[..20], "row {index}: selection path");
    }
}

#[test]
fn an_empty_placement_owns_nothing_and_never_panics() {
    // No members: every query answers "nobody" rather than failing.
    let empty = Placement::new([]);
    assert!(empty.is_empty());
    assert_eq!(empty.len(), 0);
    assert_eq!(empty.owner(b"key"), None);
    assert_eq!(empty.owner_u64(7), None);
    assert_eq!(empty.owners(b"key", 3), []);
    assert_eq!(empty, Placement::default());
    let weighted_empty = Placement::weighted([]);
    assert_eq!(weighted_empty.owner(b"key"), None);
    let diff = Placement::new([M1]).diff(&empty);
    assert_eq!(diff.moved(b"key"), Some(Move { from: None, to: Some(M1) }));
    assert_eq!(empty.diff(&Placement::new([M1])).moved(b"key"), Some(Move { from: Some(M1), to: None }));
}

#[test]
fn owners_is_capped_at_the_member_count() {
    // Asking for more owners than members returns every member once, ranked.
    let rows = [(0, 0), (1, 1), (3, 3), (6, 6), (7, 6), (usize::MAX, 6)];
    for weighted in [false, true] {
        let placement = if weighted { golden_weighted() } else { Placement::new(GOLDEN_MEMBERS) };
        for (index, (n, expected)) in rows.into_iter().enumerate() {
            let owners = placement.owners(b"key", n);
            assert_eq!(owners.len(), expected, "row {index}: weighted {weighted}");
            let mut sorted = owners.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), owners.len(), "row {index}: no member twice");
        }
    }
}

#[test]
fn duplicate_ids_keep_their_largest_capacity() {
    // Collapsing duplicates must not depend on which copy came first.
    let rows =
        [vec![(M1, 3), (M1, 5), (M2, 1)], vec![(M1, 5), (M1, 3), (M2, 1)], vec![(M2, 1), (M1, 3), (M2, 1), (M1, 5)]];
    for (index, row) in rows.iter().enumerate() {
        let placement = weighted_placement(row);
        assert_eq!(placement.members(), [M1, M2], "row {index}");
        assert_eq!(placement.capacity(M1), Some(capacity(5)), "row {index}");
        assert_eq!(placement.capacity(M2), Some(Capacity::ONE), "row {index}");
        assert_eq!(placement.capacity(M3), None, "row {index}");
        assert!(placement.contains(M2) && !placement.contains(M3), "row {index}");
    }
    assert_eq!(Placement::new([M3, M1, M3, M2, M1]).members(), [M1, M2, M3]);
}

#[test]
fn capacity_tags_parse_strictly() {
    // A tag means one number to every reader; anything else is a clear error, never a panic.
    let not_an_integer = |tag: &str| Err(PlacementError::NotAnInteger { tag: tag.to_string() });
    let too_large = |tag: &str| Err(PlacementError::TooLarge { tag: tag.to_string() });
    let rows: [(&str, Result<Capacity, PlacementError>); 16] = [
        ("1", Ok(Capacity::ONE)),
        ("42", Ok(capacity(42))),
        ("007", Ok(capacity(7))),
        ("4294967295", Ok(capacity(u32::MAX))),
        ("0", Err(PlacementError::ZeroCapacity)),
        ("000", Err(PlacementError::ZeroCapacity)),
        ("", not_an_integer("")),
        ("+5", not_an_integer("+5")),
        ("-1", not_an_integer("-1")),
        (" 5", not_an_integer(" 5")),
        ("5\n", not_an_integer("5\n")),
        ("1.5", not_an_integer("1.5")),
        ("１", not_an_integer("１")),
        ("4294967296", too_large("4294967296")),
        ("99999999999999999999", too_large("99999999999999999999")),
        ("ten", not_an_integer("ten")),
    ];
    for (index, (tag, expected)) in rows.into_iter().enumerate() {
        assert_eq!(Capacity::from_tag(tag), expected, "row {index}: {tag:?}");
    }
    let long = "x".repeat(10_000);
    assert_eq!(Capacity::from_tag(&long), not_an_integer(&long[..32]), "errors keep a bounded prefix");
    assert_eq!(Capacity::new(0), None);
    assert_eq!(Capacity::default(), Capacity::ONE);
}

/// One row of `diff_lists_added_removed_and_reweighted_members`.
struct DiffRow {
    previous: Placement,
    current: Placement,
    added: Vec<MemberId>,
    removed: Vec<MemberId>,
    reweighted: Vec<CapacityChange>,
}

#[test]
fn diff_lists_added_removed_and_reweighted_members() {
    // A rebalance handler learns exactly which members changed, in id order.
    let change = |id, before, after| CapacityChange { id, before: capacity(before), after: capacity(after) };
    let rows = [
        DiffRow {
            previous: weighted_placement(&[(M1, 1)]),
            current: weighted_placement(&[(M1, 1)]),
            added: vec![],
            removed: vec![],
            reweighted: vec![],
        },
        DiffRow {
            previous: Placement::new([]),
            current: Placement::new([M2, M1]),
            added: vec![M1, M2],
            removed: vec![],
            reweighted: vec![],
        },
        DiffRow {
            previous: Placement::new([M1, M2, M3]),
            current: Placement::new([M2]),
            added: vec![],
            removed: vec![M1, M3],
            reweighted: vec![],
        },
        DiffRow {
            previous: weighted_placement(&[(M1, 1), (M2, 2)]),
            current: weighted_placement(&[(M2, 4), (M3, 1)]),
            added: vec![M3],
            removed: vec![M1],
            reweighted: vec![change(M2, 2, 4)],
        },
        DiffRow {
            previous: Placement::new([M1, M6]),
            current: weighted_placement(&[(M1, 2), (M6, 2)]),
            added: vec![],
            removed: vec![],
            reweighted: vec![change(M1, 1, 2), change(M6, 1, 2)],
        },
    ];
    for (index, row) in rows.into_iter().enumerate() {
        let diff = row.current.diff(&row.previous);
        assert_eq!(diff.added(), row.added, "row {index}");
        assert_eq!(diff.removed(), row.removed, "row {index}");
        assert_eq!(diff.reweighted(), row.reweighted, "row {index}");
        let unchanged = row.added.is_empty() && row.removed.is_empty() && row.reweighted.is_empty();
        assert_eq!(diff.is_empty(), unchanged, "row {index}");
        assert_eq!((diff.previous(), diff.current()), (&row.previous, &row.current), "row {index}");
    }
}

#[test]
fn diff_moved_names_exactly_the_keys_whose_owner_changed() {
    // `moved` is the difference of the two owners, so a member can list what it loses and gains.
    // M2's capacity rises tenfold, M4 leaves, M7 joins.
    const M7: MemberId = MemberId::from_u128(0x0700_0000_0000_0000_0000_0000_0000_0007);
    let previous = golden_weighted();
    let current = weighted_placement(&[(M1, 1), (M2, 20), (M3, 3), (M5, 8), (M6, 13), (M7, 4)]);
    let diff = current.diff(&previous);
    let (mut lost_by_m2, mut gained_by_m2) = (0, 0);
    for key in 0..10_000u64 {
        let key = key.to_le_bytes();
        let (old, new) = (previous.owner(&key), current.owner(&key));
        let moved = diff.moved(&key);
        assert_eq!(moved, (old != new).then_some(Move { from: old, to: new }), "key {key:?}");
        if let Some(change) = moved {
            // Every move has a cause in the diff: a joiner, a leaver or a risen capacity.
            assert!(change.to == Some(M7) || change.from == Some(M4) || change.to == Some(M2), "{change:?}");
            lost_by_m2 += usize::from(change.from == Some(M2));
            gained_by_m2 += usize::from(change.to == Some(M2));
        }
    }
    assert!(lost_by_m2 > 0, "M2 loses some keys to the joiner");
    assert!(gained_by_m2 > 1000, "M2 gains from its tenfold capacity, got {gained_by_m2}");
    let unchanged = previous.diff(&previous);
    assert!(unchanged.is_empty());
    assert_eq!(unchanged.moved(b"key"), None);
}

// ---------------------------------------------------------------------------
// Distribution.

/// How many of `keys` little-endian `u64` keys each member owns.
fn shares(placement: &Placement, keys: u64) -> BTreeMap<MemberId, u64> {
    let mut counts = BTreeMap::new();
    for key in 0..keys {
        let owner = placement.owner_u64(key).expect("non-empty");
        *counts.entry(owner).or_insert(0) += 1;
    }
    counts
}

/// Checks every member's count against its expected share `weight / total`,
/// allowing 4.5 standard deviations of a binomial count.
fn assert_shares_proportional(row: usize, placement: &Placement, keys: u64) {
    let counts = shares(placement, keys);
    let total: u64 =
        placement.members().iter().map(|&id| u64::from(placement.capacity(id).map_or(0, Capacity::get))).sum();
    for &id in placement.members() {
        let weight = u64::from(placement.capacity(id).map_or(0, Capacity::get));
        let share = weight as f64 / total as f64;
        let expected = keys as f64 * share;
        let deviation = (keys as f64 * share * (1.0 - share)).sqrt();
        let count = counts.get(&id).copied().unwrap_or(0) as f64;
        assert!(
            (count - expected).abs() <= 4.5 * deviation,
            "row {row}: member {id} weight {weight} owns {count} keys, expected {expected:.0} ± {:.0}",
            4.5 * deviation
        );
    }
}

#[test]
fn weighted_shares_are_proportional_to_capacity() {
    // Weighted rendezvous: a member's share of keys is its capacity over the total.
    let rows: [&[u32]; 5] = [&[1, 2, 4], &[1, 1, 1, 1], &[1, 100], &[3, 5, 7, 11, 13], &[1000, 1, 1000, 1]];
    for (row, weights) in rows.into_iter().enumerate() {
        let members: Vec<(MemberId, u32)> = weights
            .iter()
            .enumerate()
            .map(|(index, &weight)| (MemberId::from_u128(0xabc0 + index as u128), weight))
            .collect();
        assert_shares_proportional(row, &weighted_placement(&members), 100_000);
    }
    // The brief's figure, as a plain ratio: 1 : 2 : 4 within 3%.
    let placement = weighted_placement(&[(M1, 1), (M2, 2), (M3, 4)]);
    let counts = shares(&placement, 100_000);
    for (id, weight) in [(M1, 1.0), (M2, 2.0), (M3, 4.0)] {
        let ratio = counts[&id] as f64 / (100_000.0 * weight / 7.0);
        assert!((ratio - 1.0).abs() < 0.03, "member {id}: {ratio:.3} of its share");
    }
}

#[test]
fn keys_spread_uniformly_over_unweighted_members() {
    // Each of n equal members owns about 1/n of the keys, on both the unweighted and the weighted scan.
    let members = ids(&(1..=10).map(|value| value << 100).collect::<Vec<_>>());
    for (row, forced_weighted) in [false, true].into_iter().enumerate() {
        let mut placement = Placement::new(members.iter().copied());
        placement.uniform = !forced_weighted;
        assert_shares_proportional(row, &placement, 100_000);
    }
    let equal = Placement::weighted(members.iter().map(|&id| (id, capacity(7))));
    assert!(equal.uniform, "equal capacities take the unweighted scan");
    assert_shares_proportional(2, &equal, 100_000);
}
