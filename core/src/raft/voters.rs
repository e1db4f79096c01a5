//! The leader's policy for the voter set: one single-server change at a time
//! (dissertation §4.1–4.3, DESIGN §3.2).
//!
//! The caller checks the timing rules (the leader committed an entry of its
//! own term; no configuration change is uncommitted); this module decides the
//! next change from the members' state:
//!
//! 1. a voter in its leaving phase is replaced (a caught-up learner promoted
//!    first) or removed, so its removal commits before it reports `Left`;
//! 2. a voter dead for `voter_replace_delay` is replaced the same way (with
//!    several departing, a dead one goes first while a leaver can still ack);
//! 3. learners that left or have been dead that long are dropped;
//! 4. live members outside the configuration become learners, up to `max_learners`;
//! 5. caught-up, eligible learners are promoted until the voters reach the
//!    largest odd number within `max_voters` and the eligible members;
//! 6. voters beyond `max_voters` are demoted to learners.
//!
//! Voters need durable storage unless `allow_ephemeral_voters` is set, and a
//! learner is promoted only once it holds every committed entry.

use core::time::Duration;

use crate::id::MemberId;
use crate::raft::entry::Configuration;
use crate::time::Instant;

/// The policy's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoterPolicy {
    /// Most voters (default 5); the voter count is kept odd when it can be.
    pub max_voters: usize,
    /// Most learners that receive the log.
    pub max_learners: usize,
    /// How long a voter must be dead before it is replaced.
    pub voter_replace_delay: Duration,
    /// Let members without durable storage vote (tests, demos). Such a
    /// cluster loses quorum, and its log, if a majority restarts at once.
    pub allow_ephemeral_voters: bool,
}

/// What the leader knows of one member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Durable id.
    pub id: MemberId,
    /// Alive or suspect in the membership (not dead, not left).
    pub live: bool,
    /// Since when it is dead, if it is.
    pub dead_since: Option<Instant>,
    /// Left gracefully, or in its leaving phase.
    pub leaving: bool,
    /// Its storage survives a restart.
    pub durable: bool,
    /// Holds every committed entry (its match index reached the commit index).
    pub caught_up: bool,
}

impl Candidate {
    fn gone(&self, policy: &VoterPolicy, now: Instant) -> bool {
        self.leaving || self.dead_since.is_some_and(|since| now >= since + policy.voter_replace_delay)
    }

    fn can_vote(&self, policy: &VoterPolicy) -> bool {
        self.live && !self.leaving && (self.durable || policy.allow_ephemeral_voters)
    }
}

/// The next configuration, if any change is due. `leader` is never removed or
/// demoted here: a leaving leader hands over leadership first.
pub fn next_change(
    configuration: &Configuration,
    members: &[Candidate],
    policy: &VoterPolicy,
    leader: MemberId,
    now: Instant,
) -> Option<Configuration> {
    let find = |id: MemberId| members.iter().find(|member| member.id == id);
    let promotable = |member: &&Candidate| {
        configuration.learners.contains(&member.id) && member.caught_up && member.can_vote(policy)
    };
    let mut next = configuration.clone();

    // 1–2. Replace or remove a departing voter. With several, take one whose
    // removal leaves live voters a majority, and among those one that is not
    // live: a voter still in its leaving phase can ack the removal of a dead
    // one, while removing it first would need the dead one's ack.
    let live = |id: MemberId| id == leader || find(id).is_some_and(|member| member.live);
    let keeps_majority = |removed: MemberId| {
        let remaining = configuration.voters.len() - 1;
        configuration.voters.iter().filter(|&&id| id != removed && live(id)).count() > remaining / 2
    };
    let departing = configuration
        .voters
        .iter()
        .copied()
        .filter(|&id| id != leader && find(id).is_none_or(|member| member.gone(policy, now)))
        .min_by_key(|&id| (!keeps_majority(id), live(id)));
    if let Some(departing) = departing {
        // Promote a learner first only while that does not exceed max_voters
        // by more than the one voter about to go.
        if configuration.voters.len() <= policy.max_voters
            && let Some(learner) = members.iter().filter(promotable).min_by_key(|m| m.id)
        {
            next.learners.remove(&learner.id);
            next.voters.insert(learner.id);
            return Some(next);
        }
        next.voters.remove(&departing);
        return Some(next);
    }

    // 3. Drop learners that left or have been dead long enough.
    if let Some(gone) = configuration.learners.iter().copied().find(|&id| find(id).is_none_or(|m| m.gone(policy, now)))
    {
        next.learners.remove(&gone);
        return Some(next);
    }

    // 4. Live members outside the configuration receive the log as learners.
    if configuration.learners.len() < policy.max_learners
        && let Some(newcomer) =
            members.iter().filter(|m| m.live && !m.leaving && !configuration.contains(m.id)).min_by_key(|m| m.id)
    {
        next.learners.insert(newcomer.id);
        return Some(next);
    }

    // 5. Grow towards the largest odd voter count the eligible members allow.
    let eligible = members.iter().filter(|m| m.can_vote(policy)).count().max(configuration.voters.len());
    let mut target = policy.max_voters.min(eligible).max(1);
    if target % 2 == 0 {
        target -= 1;
    }
    if configuration.voters.len() < target
        && let Some(learner) = members.iter().filter(promotable).min_by_key(|m| m.id)
    {
        next.learners.remove(&learner.id);
        next.voters.insert(learner.id);
        return Some(next);
    }

    // 6. Too many voters (max_voters lowered): demote one, never the leader.
    if configuration.voters.len() > policy.max_voters
        && let Some(&extra) = configuration.voters.iter().rev().find(|&&id| id != leader)
    {
        next.voters.remove(&extra);
        next.learners.insert(extra);
        return Some(next);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn policy() -> VoterPolicy {
        VoterPolicy { max_voters: 5, max_learners: 64, voter_replace_delay: 10 * SECOND, allow_ephemeral_voters: false }
    }

    fn id(n: u128) -> MemberId {
        MemberId::from_u128(n)
    }

    fn live(n: u128) -> Candidate {
        Candidate { id: id(n), live: true, dead_since: None, leaving: false, durable: true, caught_up: true }
    }

    fn config(voters: &[u128], learners: &[u128]) -> Configuration {
        Configuration {
            voters: voters.iter().copied().map(id).collect(),
            learners: learners.iter().copied().map(id).collect(),
        }
    }

    fn at(seconds: u64) -> Instant {
        Instant::from_nanos(seconds * 1_000_000_000)
    }

    #[test]
    fn the_voter_set_grows_one_server_at_a_time_to_an_odd_size() {
        // Dissertation §4.1: single-server changes; DESIGN §3.2: odd voter counts.
        let mut configuration = config(&[1], &[]);
        let members: Vec<_> = (1..=7).map(live).collect();
        let mut steps = Vec::new();
        while let Some(next) = next_change(&configuration, &members, &policy(), id(1), at(0)) {
            let changed = next.voters.symmetric_difference(&configuration.voters).count()
                + next.learners.symmetric_difference(&configuration.learners).count();
            assert!(changed <= 2, "one server per change: {configuration:?} -> {next:?}");
            configuration = next;
            steps.push(configuration.voters.len());
            assert!(steps.len() < 50, "the policy converges");
        }
        assert_eq!(configuration, config(&[1, 2, 3, 4, 5], &[6, 7]));
    }

    #[test]
    fn a_dead_voter_goes_before_a_leaving_one_that_can_still_ack() {
        // Removing the leaver first ({1, 2}) would need the dead voter's ack;
        // removing the dead one first ({1, 3}) needs the leaver's, which it gives.
        let configuration = config(&[1, 2, 3], &[]);
        let mut dead = live(2);
        dead.live = false;
        dead.dead_since = Some(at(0));
        let mut leaving = live(3);
        leaving.leaving = true;
        let members = [live(1), dead, leaving];
        assert_eq!(next_change(&configuration, &members, &policy(), id(1), at(10)), Some(config(&[1, 3], &[])));
        // Once the leaver reported `Left` it answers no more; when the dead
        // voter comes back with its log, the leaver is the one removed.
        leaving.live = false;
        let members = [live(1), live(2), leaving];
        assert_eq!(next_change(&configuration, &members, &policy(), id(1), at(10)), Some(config(&[1, 2], &[])));
    }

    #[test]
    fn a_learner_is_promoted_only_once_caught_up_and_durable() {
        let configuration = config(&[1], &[2, 3]);
        let mut behind = live(2);
        behind.caught_up = false;
        let mut ephemeral = live(3);
        ephemeral.durable = false;
        let members = [live(1), behind, ephemeral];
        assert_eq!(next_change(&configuration, &members, &policy(), id(1), at(0)), None);
        let lenient = VoterPolicy { allow_ephemeral_voters: true, ..policy() };
        // With ephemeral voters allowed, 3 is promoted; 2 still waits to catch up.
        assert_eq!(next_change(&configuration, &members, &lenient, id(1), at(0)), Some(config(&[1, 3], &[2])));

        let members = [live(1), live(2), ephemeral];
        assert_eq!(next_change(&configuration, &members, &lenient, id(1), at(0)), Some(config(&[1, 2], &[3])));
    }

    #[test]
    fn a_dead_voter_is_replaced_only_after_the_delay_by_promoting_first() {
        // DESIGN §3.2: promote a caught-up learner, then remove the dead voter.
        let configuration = config(&[1, 2, 3], &[4]);
        let mut dead = live(3);
        dead.live = false;
        dead.dead_since = Some(at(0));
        let members = [live(1), live(2), dead, live(4)];
        assert_eq!(next_change(&configuration, &members, &policy(), id(1), at(5)), None, "within the delay");
        let promoted = next_change(&configuration, &members, &policy(), id(1), at(10)).unwrap();
        assert_eq!(promoted, config(&[1, 2, 3, 4], &[]));
        let removed = next_change(&promoted, &members, &policy(), id(1), at(10)).unwrap();
        assert_eq!(removed, config(&[1, 2, 4], &[]));
        assert_eq!(next_change(&removed, &members, &policy(), id(1), at(10)), None);
    }

    #[test]
    fn a_leaving_voter_is_removed_and_the_leader_never_removes_itself() {
        let configuration = config(&[1, 2, 3], &[]);
        let mut leaving = live(2);
        leaving.leaving = true;
        let members = [live(1), leaving, live(3)];
        assert_eq!(next_change(&configuration, &members, &policy(), id(1), at(0)), Some(config(&[1, 3], &[])));
        let mut leader_leaving = live(1);
        leader_leaving.leaving = true;
        let members = [leader_leaving, live(2), live(3)];
        assert_eq!(next_change(&configuration, &members, &policy(), id(1), at(0)), None);
    }

    #[test]
    fn three_voters_drained_one_after_another_keep_a_majority_alive() {
        // The drain scenario: every configuration on the way keeps a
        // live majority, since departing voters are alive until removed.
        let mut configuration = config(&[1, 2, 3], &[4, 5, 6]);
        let mut members: Vec<_> = (1..=6).map(live).collect();
        for drained in [1u128, 2, 3] {
            members[drained as usize - 1].leaving = true;
            // The leader is always a voter that is not leaving.
            loop {
                let leader = *configuration
                    .voters
                    .iter()
                    .find(|v| !members.iter().any(|m| m.id == **v && m.leaving))
                    .expect("a non-leaving voter remains");
                let Some(next) = next_change(&configuration, &members, &policy(), leader, at(0)) else { break };
                let live_voters = next.voters.iter().filter(|v| members.iter().any(|m| m.id == **v && m.live)).count();
                assert!(live_voters > next.voters.len() / 2, "quorum alive in {next:?}");
                configuration = next;
            }
            assert!(!configuration.contains(id(drained)), "{drained} removed: {configuration:?}");
            members[drained as usize - 1].live = false;
        }
        assert_eq!(configuration.voters.len(), 3, "{configuration:?}");
    }

    #[test]
    fn newcomers_become_learners_and_departed_learners_are_dropped() {
        let configuration = config(&[1], &[2]);
        let mut gone = live(2);
        gone.live = false;
        gone.dead_since = Some(at(0));
        let members = [live(1), gone, live(3)];
        assert_eq!(next_change(&configuration, &members, &policy(), id(1), at(0)), Some(config(&[1], &[2, 3])));
        assert_eq!(next_change(&configuration, &members, &policy(), id(1), at(20)), Some(config(&[1], &[])));
    }
}
