//! Which member to probe next: round-robin over a shuffled list (SWIM §4.3).
//!
//! Round-robin bounds the time until a failed member is probed by every
//! other member to `n` periods, where uniform random choice has an unbounded
//! tail. New members are inserted at a random place in the rest of the round.

use rand::Rng;
use rand::seq::SliceRandom;

use crate::id::MemberId;

#[derive(Debug, Default)]
pub(crate) struct ProbeOrder {
    order: Vec<MemberId>,
    position: usize,
}

impl ProbeOrder {
    /// The next member for which `probeable` holds. When the round is over, a
    /// new one is shuffled from `candidates`.
    pub(crate) fn next(
        &mut self,
        rng: &mut impl Rng,
        probeable: impl Fn(MemberId) -> bool,
        candidates: impl FnOnce() -> Vec<MemberId>,
    ) -> Option<MemberId> {
        if let Some(found) = self.advance(&probeable) {
            return Some(found);
        }
        self.order = candidates();
        self.order.shuffle(rng);
        self.position = 0;
        self.advance(&probeable)
    }

    fn advance(&mut self, probeable: &impl Fn(MemberId) -> bool) -> Option<MemberId> {
        while let Some(&id) = self.order.get(self.position) {
            self.position += 1;
            if probeable(id) {
                return Some(id);
            }
        }
        None
    }

    /// Adds a member somewhere in the rest of this round.
    pub(crate) fn insert(&mut self, rng: &mut impl Rng, id: MemberId) {
        let at = rng.random_range(self.position..=self.order.len());
        self.order.insert(at, id);
    }

    /// Forgets a reaped member.
    pub(crate) fn remove(&mut self, id: MemberId) {
        if let Some(at) = self.order.iter().position(|&other| other == id) {
            self.order.remove(at);
            if at < self.position {
                self.position -= 1;
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn every_member_is_probed_once_per_round() {
        // SWIM §4.3: round-robin probing visits each member once per round.
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let members: Vec<_> = (1..=5).map(MemberId::from_u128).collect();
        let mut order = ProbeOrder::default();
        let mut round: Vec<_> = (0..5).map(|_| order.next(&mut rng, |_| true, || members.clone()).unwrap()).collect();
        round.sort();
        assert_eq!(round, members);
    }

    #[test]
    fn members_no_longer_probeable_are_skipped_and_an_empty_cluster_yields_none() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let members: Vec<_> = (1..=3).map(MemberId::from_u128).collect();
        let mut order = ProbeOrder::default();
        let only_two = |id: MemberId| id == MemberId::from_u128(2);
        for _ in 0..4 {
            assert_eq!(order.next(&mut rng, only_two, || members.clone()), Some(MemberId::from_u128(2)));
        }
        assert_eq!(order.next(&mut rng, |_| false, Vec::new), None);
    }

    #[test]
    fn an_inserted_member_is_probed_in_the_current_round() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let members: Vec<_> = (1..=4).map(MemberId::from_u128).collect();
        let mut order = ProbeOrder::default();
        order.next(&mut rng, |_| true, || members.clone());
        order.insert(&mut rng, MemberId::from_u128(9));
        let rest: Vec<_> = (0..4).map(|_| order.next(&mut rng, |_| true, Vec::new).unwrap()).collect();
        assert!(rest.contains(&MemberId::from_u128(9)), "{rest:?}");
        order.remove(MemberId::from_u128(9));
        assert_eq!(order.len(), 4);
    }
}
