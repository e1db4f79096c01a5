//! Placement: which member owns a key, by rendezvous hashing (DESIGN §3.6).
//!
//! Rendezvous, or highest-random-weight, hashing (Thaler & Ravishankar, "A
//! Name-Based Mapping Scheme for Rendezvous", 1996; "Using Name-Based Mappings
//! to Increase Hit Rates", IEEE/ACM ToN 1998): every member scores the key and
//! the highest score owns it. No member needs to ask another: each computes
//! the same owner from the same member set. When a member joins, only the keys
//! it now wins move, all to it; when one leaves, only its keys move. Capacities
//! weight the score as in Schindelhauer & Schomaker's weighted distributed
//! hash tables (2005): a member with twice the capacity owns twice the keys.
//!
//! Because members compute owners independently, the hash is part of the
//! protocol. Members built by different compilers on different architectures
//! must agree on every owner, so the hash is fixed and specified below and is
//! fed explicit bytes: never `std::hash::Hash` (which writes a `usize` in
//! native width and endianness) and never `DefaultHasher` (whose algorithm
//! std may change). Golden vectors in the tests pin it; changing anything
//! below moves keys between members of a mixed-version cluster.
//!
//! # The scheme, version 1
//!
//! Arithmetic is on wrapping 64-bit unsigned integers unless it says `u128`;
//! `xxh3_64` is XXH3-64 with seed 0 and the default secret.
//!
//! 1. **Member hash**: `hm = xxh3_64(MEMBER_DOMAIN ‖ id)`, where
//!    [`MEMBER_DOMAIN`] is the 28 bytes `quorate/placement/member/v1\0` and
//!    `id` the member id's 16 bytes in order ([`MemberId::as_u128`],
//!    big-endian). Computed once per member, when the placement is built.
//! 2. **Key hash**: `hk = xxh3_64(key)` over the key's bytes as given. A `u64`
//!    key is fed as its 8 little-endian bytes ([`Placement::owner_u64`]).
//! 3. **Score**: `s = mix(hm ^ hk)`, where `mix` is the SplitMix64 finalizer:
//!    `z = (z ^ z >> 30) * 0xbf58476d1ce4e5b9; z = (z ^ z >> 27) *
//!    0x94d049bb133111eb; z ^ z >> 31`. It is a bijection, so two members tie
//!    on a key only if their member hashes collide.
//! 4. **Unweighted ranking**: by score, highest first; equal scores rank the
//!    greater [`MemberId`] (by its bytes) first. This is the order of the
//!    `rendezvous_hash` crate given the same score, which the tests hold it to.
//! 5. **Weighted ranking**: the textbook score is `w / -ln(u)` for the unit
//!    fraction `u = s / 2^64`; dropping the constant factor `ln 2` leaves the
//!    order alone, so with `L = -log2(u)` in Q32.32 member `a` ranks above `b`
//!    when `w_a · L_b > w_b · L_a`, compared exactly in `u128`; then by
//!    higher `s`; then by greater id. `L = 64 · 2^32 - log2q(max(s, 1))`, with
//!    `log2q(x)` for `x ≥ 1`: `e = 63 - leading_zeros(x)`, `m = x << (63 - e)`,
//!    `i = (m >> 53) & 1023`, `f = (m >> 21) & (2^32 - 1)`,
//!    `log2q = (e << 32) + T[i] + ((T[i+1] - T[i]) · f >> 32)`, where
//!    `T[j] = log2_q32(1024 + j) - (10 << 32)` for `j` in `0..=1024` and
//!    `log2_q32` is [`crate::fixed::log2_q32`] (truncated Q32.32). No floating
//!    point decides an owner: libm's `ln` may round differently elsewhere.
//!    `L` never increases with `s`, so when every capacity is equal the
//!    weighted ranking is exactly the unweighted one; [`Placement`] then takes
//!    the faster unweighted scan.
//!
//! ```
//! use quorate_core::MemberId;
//! use quorate_core::placement::{Capacity, Placement};
//!
//! let (a, b, c) = (MemberId::from_u128(1), MemberId::from_u128(2), MemberId::from_u128(3));
//! let before = Placement::new([a, b]);
//! assert!(before.owner(b"session:42").is_some());
//!
//! // `c` joins, tagged `capacity=2`: it takes about half of the keys, and
//! // every key that moves, moves to it.
//! let capacity = Capacity::from_tag("2")?;
//! let after = Placement::weighted([(a, Capacity::ONE), (b, Capacity::ONE), (c, capacity)]);
//! let diff = after.diff(&before);
//! assert_eq!(diff.added(), [c]);
//! for key in 0..1000u64 {
//!     if let Some(moved) = diff.moved(&key.to_le_bytes()) {
//!         assert_eq!(moved.to, Some(c));
//!     }
//! }
//! # Ok::<(), quorate_core::placement::PlacementError>(())
//! ```
//!
//! Finding the owner is one O(n) pass over the precomputed member hashes with
//! no allocation; the weighted pass skips the logarithm of any member that
//! has both a lower score and no more capacity than the best so far, since it
//! cannot win. [`Placement::owners`] keeps the best few in a short sorted list.
//! `Placement` itself keeps the `rendezvous_hash` crate only as its test
//! oracle: the crate sorts every member per lookup, about 20 times slower at
//! 100 members.

use core::cmp::Ordering;
use core::fmt;
use core::num::NonZeroU32;

use xxhash_rust::xxh3::xxh3_64;

use crate::id::MemberId;

mod log2;

#[cfg(test)]
mod tests;

/// The bytes that precede a member id in its member hash (scheme step 1).
///
/// The version in it names the scheme: a new scheme gets a new domain.
pub const MEMBER_DOMAIN: &[u8; 28] = b"quorate/placement/member/v1\0";

/// The member tag that carries a member's [`Capacity`], as a decimal integer.
pub const CAPACITY_TAG: &str = "capacity";

/// Up to this many owners, [`Placement::owners`] keeps a sorted list while
/// scanning; past it, selecting among all candidates at once is cheaper than
/// sinking each newcomer into a long list.
const INSERTION_LIMIT: usize = 16;

/// How many characters of a rejected capacity tag an error keeps.
const ERROR_TAG_CHARS: usize = 32;

/// A member's hash (scheme step 1): computed once per member.
pub fn member_hash(id: MemberId) -> u64 {
    let mut input = [0u8; MEMBER_DOMAIN.len() + 16];
    input[..MEMBER_DOMAIN.len()].copy_from_slice(MEMBER_DOMAIN);
    input[MEMBER_DOMAIN.len()..].copy_from_slice(&id.0);
    xxh3_64(&input)
}

/// A key's hash (scheme step 2): XXH3-64 of the key's bytes.
pub fn key_hash(key: &[u8]) -> u64 {
    xxh3_64(key)
}

/// A member's score for a key (scheme step 3); the highest score owns the key.
#[inline]
pub const fn score(member_hash: u64, key_hash: u64) -> u64 {
    let mut z = member_hash ^ key_hash;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Why a capacity was refused. Parsing is pure: nothing else changes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// The capacity was zero. A member that should own no keys belongs
    /// outside the placement: with weight zero it would still own every key
    /// whenever it was the only member.
    #[error("capacity must be at least 1; leave a member that should own no keys out of the placement")]
    ZeroCapacity,
    /// The capacity tag was not a plain decimal integer (ASCII digits only:
    /// no sign, space or point).
    #[error("capacity tag {tag:?} is not a decimal integer")]
    NotAnInteger {
        /// The tag's value, cut to its first 32 characters.
        tag: String,
    },
    /// The capacity tag was a decimal integer above `u32::MAX`.
    #[error("capacity tag {tag:?} is above the maximum of {}", u32::MAX)]
    TooLarge {
        /// The tag's value, cut to its first 32 characters.
        tag: String,
    },
}

/// A member's relative share of the keys: a positive integer weight.
///
/// Members with capacities 1, 2 and 4 own about 1/7, 2/7 and 4/7 of the keys.
/// A member without a [`CAPACITY_TAG`] has [`Capacity::ONE`] (the default).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Capacity(NonZeroU32);

impl Capacity {
    /// The capacity of a member that says nothing about its capacity.
    pub const ONE: Capacity = Capacity(NonZeroU32::MIN);

    /// The capacity `value`, or `None` for zero.
    pub const fn new(value: u32) -> Option<Capacity> {
        match NonZeroU32::new(value) {
            Some(value) => Some(Capacity(value)),
            None => None,
        }
    }

    /// The weight as an integer, at least 1.
    pub const fn get(self) -> u32 {
        self.0.get()
    }

    /// Parses the value of a member's [`CAPACITY_TAG`]: ASCII decimal digits
    /// making a number from 1 to `u32::MAX`.
    ///
    /// Stricter than `u32::from_str` (which takes a leading `+`) so that a tag
    /// means one thing to every reader, and the error says what was wrong.
    pub fn from_tag(tag: &str) -> Result<Capacity, PlacementError> {
        let kept = || tag.chars().take(ERROR_TAG_CHARS).collect::<String>();
        if tag.is_empty() || !tag.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(PlacementError::NotAnInteger { tag: kept() });
        }
        // Only digits remain, so overflow is the one way parsing can fail.
        let value = tag.parse::<u32>().map_err(|_| PlacementError::TooLarge { tag: kept() })?;
        Capacity::new(value).ok_or(PlacementError::ZeroCapacity)
    }
}

impl Default for Capacity {
    fn default() -> Self {
        Capacity::ONE
    }
}

impl From<NonZeroU32> for Capacity {
    fn from(value: NonZeroU32) -> Self {
        Capacity(value)
    }
}

impl fmt::Debug for Capacity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.get())
    }
}

impl fmt::Display for Capacity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.get())
    }
}

/// A set of members with their capacities, answering which of them owns a key.
///
/// Immutable: build a new one when the membership changes, and [`diff`] it
/// against the old one to learn which keys moved. Cheap to query from many
/// threads; building hashes every member once.
///
/// [`diff`]: Placement::diff
#[derive(Clone, PartialEq, Eq)]
pub struct Placement {
    /// Strictly ascending, so a scan that prefers later members on equal
    /// scores prefers the greater id.
    ids: Vec<MemberId>,
    /// `member_hash(ids[i])`.
    hashes: Vec<u64>,
    /// The capacity of `ids[i]`.
    capacities: Vec<Capacity>,
    /// Every capacity is the same, so the unweighted scan ranks identically.
    uniform: bool,
}

impl Placement {
    /// An unweighted placement: every member has [`Capacity::ONE`].
    ///
    /// Duplicates collapse and the input order does not matter.
    pub fn new(members: impl IntoIterator<Item = MemberId>) -> Placement {
        Placement::weighted(members.into_iter().map(|id| (id, Capacity::ONE)))
    }

    /// A weighted placement: each member owns a share of the keys in
    /// proportion to its capacity.
    ///
    /// The input order does not matter. An id listed twice keeps its largest
    /// capacity, so the result does not depend on which copy came first.
    pub fn weighted(members: impl IntoIterator<Item = (MemberId, Capacity)>) -> Placement {
        let mut members: Vec<(MemberId, Capacity)> = members.into_iter().collect();
        // Largest capacity first within an id, so `dedup` keeps it.
        members.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        members.dedup_by_key(|member| member.0);
        let ids: Vec<MemberId> = members.iter().map(|member| member.0).collect();
        let hashes = ids.iter().map(|&id| member_hash(id)).collect();
        let capacities: Vec<Capacity> = members.iter().map(|member| member.1).collect();
        let uniform = capacities.windows(2).all(|pair| pair[0] == pair[1]);
        let placement = Placement { ids, hashes, capacities, uniform };
        debug_assert!(placement.ids.windows(2).all(|pair| pair[0] < pair[1]), "placement ids are strictly ascending");
        placement
    }

    /// The member that owns `key`, or `None` when the placement is empty.
    ///
    /// One pass over the members, no allocation.
    pub fn owner(&self, key: &[u8]) -> Option<MemberId> {
        self.owner_of_key_hash(key_hash(key))
    }

    /// The owner of a `u64` key, hashed as its 8 little-endian bytes: the same
    /// as `owner(&key.to_le_bytes())` on every platform.
    pub fn owner_u64(&self, key: u64) -> Option<MemberId> {
        self.owner(&key.to_le_bytes())
    }

    /// The `n` members that rank highest for `key`, best first: the owner,
    /// then who would own it if the owner left, and so on.
    ///
    /// Fewer when the placement has fewer members; empty when it has none or
    /// `n` is zero. The first is always [`owner`](Placement::owner).
    pub fn owners(&self, key: &[u8], n: usize) -> Vec<MemberId> {
        let wanted = n.min(self.ids.len());
        if wanted == 0 {
            return Vec::new();
        }
        let key_hash = key_hash(key);
        if self.uniform {
            // Score above index in one integer, so one comparison is step 4.
            let ranks = self
                .hashes
                .iter()
                .enumerate()
                .map(|(index, &member_hash)| (u128::from(score(member_hash, key_hash)) << 64) | index as u128);
            let top = select_top(ranks, wanted, Ord::cmp);
            top.iter().map(|&rank| self.ids[rank as u64 as usize]).collect()
        } else {
            let table = log2::table();
            let members = self.hashes.iter().zip(&self.capacities).enumerate();
            let candidates = members.map(|(index, (&member_hash, capacity))| {
                let score = score(member_hash, key_hash);
                let neg_log2 = log2::neg_log2_unit_q32(table, score);
                Candidate { weight: capacity.get(), neg_log2, score, index }
            });
            let top = select_top(candidates, wanted, Candidate::rank);
            top.iter().map(|candidate| self.ids[candidate.index]).collect()
        }
    }

    /// The members, in ascending id order.
    pub fn members(&self) -> &[MemberId] {
        &self.ids
    }

    /// The capacity of member `id`, or `None` if it is not in the placement.
    pub fn capacity(&self, id: MemberId) -> Option<Capacity> {
        self.ids.binary_search(&id).ok().map(|index| self.capacities[index])
    }

    /// How many members there are.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are no members, so no key has an owner.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Whether member `id` is in the placement.
    pub fn contains(&self, id: MemberId) -> bool {
        self.ids.binary_search(&id).is_ok()
    }

    /// What changed from `previous` to `self`, for a rebalance: members added,
    /// removed and reweighted, and through [`Diff::moved`] where a key went.
    pub fn diff(&self, previous: &Placement) -> Diff {
        let mut added = Vec::new();
        let mut removed = Vec::new();
        let mut reweighted = Vec::new();
        let (mut old, mut new) = (0, 0);
        while old < previous.ids.len() || new < self.ids.len() {
            let order = match (previous.ids.get(old), self.ids.get(new)) {
                (Some(before), Some(after)) => before.cmp(after),
                (Some(_), None) => Ordering::Less,
                (None, _) => Ordering::Greater,
            };
            match order {
                Ordering::Less => {
                    removed.push(previous.ids[old]);
                    old += 1;
                }
                Ordering::Greater => {
                    added.push(self.ids[new]);
                    new += 1;
                }
                Ordering::Equal => {
                    let (before, after) = (previous.capacities[old], self.capacities[new]);
                    if before != after {
                        reweighted.push(CapacityChange { id: self.ids[new], before, after });
                    }
                    old += 1;
                    new += 1;
                }
            }
        }
        Diff { previous: previous.clone(), current: self.clone(), added, removed, reweighted }
    }

    fn owner_of_key_hash(&self, key_hash: u64) -> Option<MemberId> {
        let index = if self.uniform { self.best_unweighted(key_hash) } else { self.best_weighted(key_hash) }?;
        Some(self.ids[index])
    }

    /// The index of the highest-ranked member when all capacities are equal.
    #[inline]
    fn best_unweighted(&self, key_hash: u64) -> Option<usize> {
        if self.hashes.is_empty() {
            return None;
        }
        let (mut best, mut best_score) = (0, 0);
        for (index, &member_hash) in self.hashes.iter().enumerate() {
            let score = score(member_hash, key_hash);
            // `>=`: ids ascend, so on equal scores the greater id wins.
            if score >= best_score {
                best = index;
                best_score = score;
            }
        }
        Some(best)
    }

    /// The index of the highest-ranked member by weighted score (step 5).
    #[inline]
    fn best_weighted(&self, key_hash: u64) -> Option<usize> {
        let table = log2::table();
        let (&first_hash, first_capacity) = (self.hashes.first()?, self.capacities.first()?);
        let mut best = 0;
        let mut best_score = score(first_hash, key_hash);
        let mut best_neg_log2 = log2::neg_log2_unit_q32(table, best_score);
        let mut best_weight = u128::from(first_capacity.get());
        let members = self.hashes.iter().zip(&self.capacities).enumerate().skip(1);
        for (index, (&member_hash, capacity)) in members {
            let score = score(member_hash, key_hash);
            let weight = u128::from(capacity.get());
            // Lower score and no more weight cannot win (L never falls as the
            // score falls): skip the logarithm, the costly part.
            if score < best_score && weight <= best_weight {
                continue;
            }
            let neg_log2 = log2::neg_log2_unit_q32(table, score);
            // w / L > w_best / L_best, cross-multiplied: L is never zero.
            let this = weight * u128::from(best_neg_log2);
            let that = best_weight * u128::from(neg_log2);
            if this > that || (this == that && score >= best_score) {
                best = index;
                best_score = score;
                best_neg_log2 = neg_log2;
                best_weight = weight;
            }
        }
        Some(best)
    }
}

impl Default for Placement {
    /// The empty placement, equal to `Placement::new([])`.
    fn default() -> Self {
        Placement { ids: Vec::new(), hashes: Vec::new(), capacities: Vec::new(), uniform: true }
    }
}

impl fmt::Debug for Placement {
    /// Members with their capacities; the hashes follow from the ids.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.ids.iter().zip(&self.capacities)).finish()
    }
}

/// The `wanted` highest of `candidates` under `rank` (`Greater` ranks
/// higher), best first; `wanted` must be at least 1.
fn select_top<T: Copy>(
    candidates: impl Iterator<Item = T>,
    wanted: usize,
    rank: impl Fn(&T, &T) -> Ordering,
) -> Vec<T> {
    debug_assert!(wanted > 0, "select_top wants at least one candidate");
    if wanted > INSERTION_LIMIT {
        let mut all: Vec<T> = candidates.collect();
        all.select_nth_unstable_by(wanted - 1, |a, b| rank(b, a));
        all.truncate(wanted);
        all.sort_unstable_by(|a, b| rank(b, a));
        return all;
    }
    let mut top: Vec<T> = Vec::with_capacity(wanted);
    for candidate in candidates {
        if top.len() < wanted {
            top.push(candidate);
        } else if rank(&candidate, &top[wanted - 1]) == Ordering::Greater {
            // Most candidates lose to the last kept one and end here.
            top[wanted - 1] = candidate;
        } else {
            continue;
        }
        // Sink the newcomer into place: a few swaps beat a memmove at this size.
        let mut position = top.len() - 1;
        while position > 0 && rank(&top[position], &top[position - 1]) == Ordering::Greater {
            top.swap(position, position - 1);
            position -= 1;
        }
    }
    top
}

/// One member's weighted standing for one key (step 5).
#[derive(Clone, Copy)]
struct Candidate {
    weight: u32,
    /// `L` of step 5, never zero.
    neg_log2: u64,
    score: u64,
    /// Into the placement's ascending ids, so a greater index is a greater id.
    index: usize,
}

impl Candidate {
    /// `Greater` when `self` ranks above `other`. A total order: the indices
    /// of two candidates differ.
    fn rank(&self, other: &Candidate) -> Ordering {
        let this = u128::from(self.weight) * u128::from(other.neg_log2);
        let that = u128::from(other.weight) * u128::from(self.neg_log2);
        this.cmp(&that).then(self.score.cmp(&other.score)).then(self.index.cmp(&other.index))
    }
}

/// A member whose capacity changed between two placements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapacityChange {
    /// The member.
    pub id: MemberId,
    /// Its capacity in the previous placement.
    pub before: Capacity,
    /// Its capacity in the current placement.
    pub after: Capacity,
}

/// Where a key's owner went between two placements; `from != to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Move {
    /// The previous owner; `None` if the previous placement was empty.
    pub from: Option<MemberId>,
    /// The current owner; `None` if the current placement is empty.
    pub to: Option<MemberId>,
}

/// The change from one placement to the next, as a rebalance handler sees it.
///
/// A member learns which of its keys it loses with
/// `diff.moved(key).is_some_and(|m| m.from == Some(me))` and which it gains
/// with `m.to == Some(me)`. Unweighted, a key moves only to an added member or
/// away from a removed one; with capacities, also towards a member whose
/// capacity rose or away from one whose capacity fell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diff {
    previous: Placement,
    current: Placement,
    added: Vec<MemberId>,
    removed: Vec<MemberId>,
    reweighted: Vec<CapacityChange>,
}

impl Diff {
    /// Members in the current placement but not the previous, ascending.
    pub fn added(&self) -> &[MemberId] {
        &self.added
    }

    /// Members in the previous placement but not the current, ascending.
    pub fn removed(&self) -> &[MemberId] {
        &self.removed
    }

    /// Members in both whose capacity changed, ascending by id.
    pub fn reweighted(&self) -> &[CapacityChange] {
        &self.reweighted
    }

    /// Whether no member was added, removed or reweighted, so no key moved.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.reweighted.is_empty()
    }

    /// The placement before the change.
    pub fn previous(&self) -> &Placement {
        &self.previous
    }

    /// The placement after the change.
    pub fn current(&self) -> &Placement {
        &self.current
    }

    /// Where `key`'s owner went, or `None` if it has the same owner as before.
    ///
    /// Two passes over the members, no allocation; free when nothing changed.
    pub fn moved(&self, key: &[u8]) -> Option<Move> {
        if self.is_empty() {
            return None;
        }
        let key_hash = key_hash(key);
        let from = self.previous.owner_of_key_hash(key_hash);
        let to = self.current.owner_of_key_hash(key_hash);
        (from != to).then_some(Move { from, to })
    }
}
