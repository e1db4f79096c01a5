//! Rendezvous placement: the O(n) owner scan against the `rendezvous_hash`
//! crate's sort, unweighted and weighted (DESIGN §3.6).
//!
//! Targets: `owner` at 100 members within 1 µs unweighted and 2 µs weighted.
//! Keys change on every iteration so neither the branch predictor nor the
//! cache learns one answer.

use std::hash::{Hash, Hasher};
use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use quorate_core::MemberId;
use quorate_core::placement::{Capacity, Placement, key_hash, member_hash, score};
use rendezvous_hash::{IdNode, NodeHasher, RendezvousNodes};

/// Distinct, random-looking ids, the same on every run.
fn members(count: usize) -> Vec<MemberId> {
    (0..count as u64)
        .map(|index| {
            let high = score(index, 0x9e37_79b9_7f4a_7c15);
            let low = score(index, 0x632b_e59b_d9b4_e019);
            MemberId::from_u128((u128::from(high) << 64) | u128::from(low))
        })
        .collect()
}

/// Capacities 1 to 16, so no two neighbours weigh the same.
fn weighted(count: usize) -> Placement {
    let capacities = (0..count).map(|index| Capacity::new(index as u32 % 16 + 1).expect("positive"));
    Placement::weighted(members(count).into_iter().zip(capacities))
}

/// A 16-byte key that differs on every call.
fn next_key(counter: &mut u64) -> [u8; 16] {
    *counter = counter.wrapping_add(1);
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(b"session:");
    key[8..].copy_from_slice(&counter.to_le_bytes());
    key
}

/// The key as the crate's `Hash` bound wants it: raw bytes only.
struct KeyBytes<'a>(&'a [u8]);

impl Hash for KeyBytes<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(self.0);
    }
}

/// Hashes what it is written in one call, as `KeyBytes` writes it.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0 = key_hash(bytes);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// The crate scoring with the placement's own scheme, for a like-for-like comparison.
struct SchemeHasher;

impl NodeHasher<MemberId> for SchemeHasher {
    fn hash<T: Hash>(&self, node: &MemberId, item: &T) -> u64 {
        let mut hasher = KeyHasher::default();
        item.hash(&mut hasher);
        score(member_hash(*node), hasher.finish())
    }
}

fn bench_owner(c: &mut Criterion) {
    let mut group = c.benchmark_group("placement/owner");
    for count in [100, 1000] {
        let unweighted = Placement::new(members(count));
        let mut counter = 0;
        group.bench_function(BenchmarkId::new("unweighted", count), |b| {
            b.iter(|| unweighted.owner(black_box(&next_key(&mut counter))))
        });
        let weighted = weighted(count);
        group.bench_function(BenchmarkId::new("weighted", count), |b| {
            b.iter(|| weighted.owner(black_box(&next_key(&mut counter))))
        });
    }
    group.finish();
}

fn bench_owners(c: &mut Criterion) {
    let mut group = c.benchmark_group("placement/owners3");
    let unweighted = Placement::new(members(100));
    let weighted = weighted(100);
    let mut counter = 0;
    group.bench_function(BenchmarkId::new("unweighted", 100), |b| {
        b.iter(|| unweighted.owners(black_box(&next_key(&mut counter)), 3))
    });
    group.bench_function(BenchmarkId::new("weighted", 100), |b| {
        b.iter(|| weighted.owners(black_box(&next_key(&mut counter)), 3))
    });
    group.finish();
}

fn bench_crate(c: &mut Criterion) {
    let mut group = c.benchmark_group("placement/rendezvous_hash_crate");
    for count in [15, 100] {
        let mut nodes = RendezvousNodes::new(SchemeHasher);
        nodes.extend(members(count).into_iter().map(IdNode::new));
        let ours = Placement::new(members(count));
        let mut counter = 0;
        group.bench_function(BenchmarkId::new("calc_candidates_next", count), |b| {
            b.iter(|| {
                let key = next_key(&mut counter);
                nodes.calc_candidates(&KeyBytes(black_box(&key))).next().map(|node| **node)
            })
        });
        // The same member count through the scan, for the ratio.
        group.bench_function(BenchmarkId::new("placement_owner", count), |b| {
            b.iter(|| ours.owner(black_box(&next_key(&mut counter))))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_owner, bench_owners, bench_crate);
criterion_main!(benches);
