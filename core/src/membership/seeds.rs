//! Addresses to join through, each retried with its own exponential backoff.
//!
//! Seeds come from `--join` and from discovery; a discovery result replaces
//! the previous one. An unreachable seed is retried at `initial · 2^failures`,
//! capped, with up to 25 % random jitter so restarted fleets do not retry in
//! lockstep.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use core::time::Duration;
use rand::Rng;

use crate::time::Instant;
use crate::wire::limits;

#[derive(Debug, Default)]
pub(crate) struct Seeds {
    entries: BTreeMap<SocketAddr, Seed>,
}

#[derive(Debug, Clone, Copy)]
struct Seed {
    from_discovery: bool,
    from_join: bool,
    failures: u32,
    next_attempt: Instant,
}

impl Seeds {
    /// Adds `addrs`, due at once. With `from_discovery`, discovery seeds not
    /// in `addrs` are dropped. Past [`limits::MAX_SEEDS`] further addresses
    /// are ignored; returns how many were.
    pub(crate) fn add(&mut self, addrs: &[SocketAddr], from_discovery: bool, now: Instant) -> usize {
        if from_discovery {
            self.entries.retain(|addr, seed| {
                seed.from_discovery = seed.from_discovery && addrs.contains(addr);
                seed.from_discovery || seed.from_join
            });
        }
        let mut ignored = 0;
        for &addr in addrs {
            if !self.entries.contains_key(&addr) && self.entries.len() >= limits::MAX_SEEDS {
                ignored += 1;
                continue;
            }
            let seed = self.entries.entry(addr).or_insert(Seed {
                from_discovery: false,
                from_join: false,
                failures: 0,
                next_attempt: now,
            });
            seed.from_discovery |= from_discovery;
            seed.from_join |= !from_discovery;
        }
        ignored
    }

    /// Seeds due at `now`.
    pub(crate) fn due(&self, now: Instant) -> Vec<SocketAddr> {
        self.entries.iter().filter(|(_, seed)| seed.next_attempt <= now).map(|(&addr, _)| addr).collect()
    }

    /// Records an attempt at `addr` and schedules the next one after the backoff.
    pub(crate) fn attempted(
        &mut self,
        addr: SocketAddr,
        now: Instant,
        rng: &mut impl Rng,
        initial: Duration,
        max: Duration,
    ) {
        if let Some(seed) = self.entries.get_mut(&addr) {
            let backoff = initial.saturating_mul(1 << seed.failures.min(20)).min(max);
            let jitter = backoff / 4 * rng.random_range(0..=100u32) / 100;
            seed.next_attempt = now + backoff + jitter;
            seed.failures = seed.failures.saturating_add(1);
        }
    }

    /// `addr` answered: its backoff starts over.
    pub(crate) fn answered(&mut self, addr: SocketAddr) {
        if let Some(seed) = self.entries.get_mut(&addr) {
            seed.failures = 0;
        }
    }

    /// When the earliest seed is due.
    pub(crate) fn next_attempt(&self) -> Option<Instant> {
        self.entries.values().map(|seed| seed.next_attempt).min()
    }

    pub(crate) fn addrs(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.entries.keys().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], port))
    }

    #[test]
    fn backoff_doubles_per_failure_up_to_the_cap_and_resets_on_answer() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut seeds = Seeds::default();
        let (initial, max) = (Duration::from_millis(100), Duration::from_secs(1));
        seeds.add(&[addr(1)], false, Instant::ZERO);
        let mut now = Instant::ZERO;
        let mut gaps = Vec::new();
        for _ in 0..6 {
            assert_eq!(seeds.due(now), [addr(1)]);
            seeds.attempted(addr(1), now, &mut rng, initial, max);
            let next = seeds.next_attempt().unwrap();
            gaps.push(next.saturating_duration_since(now).as_millis());
            now = next;
        }
        let bases = [100, 200, 400, 800, 1000, 1000];
        for (index, (gap, base)) in gaps.iter().zip(bases).enumerate() {
            assert!((base..=base * 5 / 4).contains(gap), "attempt {index}: gap {gap} ms, base {base} ms");
        }
        seeds.answered(addr(1));
        seeds.attempted(addr(1), now, &mut rng, initial, max);
        assert!(seeds.next_attempt().unwrap().saturating_duration_since(now) <= Duration::from_millis(125));
    }

    #[test]
    fn a_discovery_result_replaces_earlier_discovery_seeds_but_keeps_join_seeds() {
        let mut seeds = Seeds::default();
        seeds.add(&[addr(1)], false, Instant::ZERO);
        seeds.add(&[addr(2), addr(3)], true, Instant::ZERO);
        seeds.add(&[addr(3), addr(4)], true, Instant::ZERO);
        assert_eq!(seeds.addrs().collect::<Vec<_>>(), [addr(1), addr(3), addr(4)]);
    }

    #[test]
    fn seeds_past_the_limit_are_ignored_and_counted() {
        let mut seeds = Seeds::default();
        let many: Vec<_> = (0..limits::MAX_SEEDS as u16 + 10).map(addr).collect();
        assert_eq!(seeds.add(&many, false, Instant::ZERO), 10);
    }
}
