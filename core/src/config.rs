//! Configuration of a node, validated once, up front.
//!
//! Two timing profiles ship: [`Config::lan`] (the default, for a data-centre
//! network) and [`Config::fast`] (tests, demos and the simulator). Both are
//! derived from memberlist's LAN defaults, tightened where a LAN allows it;
//! the README sets them side by side and says why each value differs.

use core::num::NonZeroU32;
use core::time::Duration;

use crate::raft::RaftConfig;
use crate::raft::voters::VoterPolicy;
use crate::rebalance::RebalanceConfig;
use crate::wire::{Name, limits};

/// Everything a [`crate::Node`] needs besides its identity and seed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The cluster's name. Members of another name are refused and counted.
    pub cluster_name: String,
    /// SWIM and Lifeguard timing (DESIGN §3.1).
    pub membership: MembershipConfig,
    /// Raft timing (DESIGN §3.2).
    pub raft: RaftConfig,
    /// Views, acks and lagging (DESIGN §3.3).
    pub rebalance: RebalanceConfig,
    /// How this member comes to belong to a cluster.
    pub bootstrap: Bootstrap,
    /// The leader's policy for the voter set.
    pub voters: VoterPolicy,
    /// How long a graceful leave waits for its handoff (leadership, voter
    /// seat) before it finishes anyway.
    pub leave_timeout: Duration,
    /// How long an `apply` waits for its answer (resent meanwhile) before it
    /// fails with the leader it last knew.
    pub apply_timeout: Duration,
    /// A client session idle this long in log time expires (DESIGN §3.4).
    pub session_ttl: Duration,
}

/// How a member without Raft state comes to belong to a cluster.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Bootstrap {
    /// Join an existing cluster through the seeds (the default).
    #[default]
    Join,
    /// Bootstrap together with exactly this many members, all configured
    /// alike (Consul's `bootstrap_expect`).
    Expect(NonZeroU32),
    /// Bootstrap a cluster of this member alone, at once.
    Alone,
}

/// SWIM + Lifeguard parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MembershipConfig {
    /// Length of one protocol period: each period a member probes one peer.
    pub probe_interval: Duration,
    /// How long to wait for a direct ack before asking others to probe.
    pub probe_timeout: Duration,
    /// `k`: how many members are asked to probe indirectly.
    pub indirect_checks: u32,
    /// The suspicion floor is `suspicion_mult · max(1, log10 n) · probe_interval`.
    pub suspicion_mult: NonZeroU32,
    /// The suspicion timer starts at `suspicion_max_mult ×` the floor and
    /// decays towards the floor as independent confirmations arrive.
    pub suspicion_max_mult: NonZeroU32,
    /// Highest Lifeguard local health multiplier; probe interval and timeout
    /// are scaled by `(health + 1)`.
    pub awareness_max: u32,
    /// How often pending updates are gossiped, beyond piggybacking on probes.
    pub gossip_interval: Duration,
    /// How many members each gossip round goes to.
    pub gossip_nodes: NonZeroU32,
    /// How long a dead member still receives gossip, so it learns of its
    /// death and can refute.
    pub gossip_to_the_dead: Duration,
    /// Each update is retransmitted `retransmit_mult · ceil(log10(n + 1))` times.
    pub retransmit_mult: NonZeroU32,
    /// How often full state is exchanged with one random member.
    pub push_pull_interval: Duration,
    /// How often a dead member or a seed is tried again, so halves that
    /// declared each other dead merge after a partition heals.
    pub reconnect_interval: Duration,
    /// How long a dead or left member is remembered (and retried) before it is
    /// forgotten.
    pub dead_reap_after: Duration,
    /// First retry delay for an unreachable seed; doubles up to `seed_backoff_max`.
    pub seed_backoff_initial: Duration,
    /// Longest retry delay for an unreachable seed.
    pub seed_backoff_max: Duration,
    /// How long a leaving member keeps gossiping its `Left` before it reports
    /// the leave complete.
    pub leave_propagate: Duration,
}

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A duration that must be positive is zero.
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
    /// The probe timeout must leave room for indirect probes in the period.
    #[error("probe_timeout ({timeout:?}) must be shorter than probe_interval ({interval:?})")]
    ProbeTimeoutTooLong {
        /// The configured timeout.
        timeout: Duration,
        /// The configured interval.
        interval: Duration,
    },
    /// The seed backoff would shrink instead of grow.
    #[error("seed_backoff_max ({max:?}) must be at least seed_backoff_initial ({initial:?})")]
    BackoffInverted {
        /// The configured first delay.
        initial: Duration,
        /// The configured longest delay.
        max: Duration,
    },
    /// The cluster name is empty or longer than a name may be.
    #[error("cluster name must be 1 to {} bytes", limits::MAX_NAME_BYTES)]
    ClusterName,
    /// Heartbeats must come well within an election timeout.
    #[error("raft heartbeat_interval ({heartbeat:?}) must be at most half the election_timeout ({election:?})")]
    HeartbeatTooSlow {
        /// The configured heartbeat interval.
        heartbeat: Duration,
        /// The configured election timeout.
        election: Duration,
    },
    /// The election timeout range is empty.
    #[error("raft election_timeout_max ({max:?}) must be at least election_timeout ({min:?})")]
    ElectionTimeoutInverted {
        /// The configured shortest timeout.
        min: Duration,
        /// The configured longest timeout.
        max: Duration,
    },
    /// A cluster needs at least one voter.
    #[error("max_voters must be at least 1")]
    NoVoters,
}

impl Config {
    /// The default profile, for a LAN.
    pub fn lan(cluster_name: impl Into<String>) -> Self {
        Config {
            cluster_name: cluster_name.into(),
            membership: MembershipConfig::lan(),
            raft: RaftConfig::lan(),
            rebalance: RebalanceConfig::lan(),
            bootstrap: Bootstrap::Join,
            voters: VoterPolicy {
                max_voters: 5,
                max_learners: 256,
                voter_replace_delay: Duration::from_secs(30),
                allow_ephemeral_voters: false,
            },
            leave_timeout: Duration::from_secs(15),
            apply_timeout: Duration::from_secs(10),
            session_ttl: Duration::from_secs(3600),
        }
    }

    /// A fast profile for tests, demos and simulation: the same protocol with
    /// periods about five times shorter.
    pub fn fast(cluster_name: impl Into<String>) -> Self {
        let lan = Self::lan(cluster_name);
        Config {
            membership: MembershipConfig::fast(),
            raft: RaftConfig::fast(),
            rebalance: RebalanceConfig::fast(),
            voters: VoterPolicy { voter_replace_delay: Duration::from_secs(3), ..lan.voters.clone() },
            leave_timeout: Duration::from_secs(3),
            apply_timeout: Duration::from_secs(3),
            session_ttl: Duration::from_secs(600),
            ..lan
        }
    }

    /// Checks the configuration; a node refuses to start on an error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.cluster_name.is_empty() || Name::try_new(self.cluster_name.as_str()).is_err() {
            return Err(ConfigError::ClusterName);
        }
        let (heartbeat, election) = (self.raft.heartbeat_interval, self.raft.election_timeout);
        if heartbeat.is_zero() || heartbeat * 2 > election {
            return Err(ConfigError::HeartbeatTooSlow { heartbeat, election });
        }
        if self.raft.election_timeout_max < election {
            return Err(ConfigError::ElectionTimeoutInverted { min: election, max: self.raft.election_timeout_max });
        }
        if self.voters.max_voters == 0 {
            return Err(ConfigError::NoVoters);
        }
        self.membership.validate()
    }
}

impl MembershipConfig {
    /// LAN timing. memberlist's LAN profile probes every 1 s with a 500 ms
    /// timeout and a suspicion multiplier of 4; a LAN's sub-millisecond round
    /// trips allow a period of 500 ms, a 200 ms timeout and a multiplier of 3,
    /// which halves detection time without more false positives (see README).
    pub fn lan() -> Self {
        MembershipConfig {
            probe_interval: Duration::from_millis(500),
            probe_timeout: Duration::from_millis(200),
            indirect_checks: 3,
            suspicion_mult: NonZeroU32::new(3).unwrap(),
            suspicion_max_mult: NonZeroU32::new(6).unwrap(),
            awareness_max: 8,
            gossip_interval: Duration::from_millis(200),
            gossip_nodes: NonZeroU32::new(3).unwrap(),
            gossip_to_the_dead: Duration::from_secs(30),
            retransmit_mult: NonZeroU32::new(4).unwrap(),
            push_pull_interval: Duration::from_secs(30),
            reconnect_interval: Duration::from_secs(10),
            dead_reap_after: Duration::from_secs(24 * 3600),
            seed_backoff_initial: Duration::from_millis(200),
            seed_backoff_max: Duration::from_secs(30),
            leave_propagate: Duration::from_secs(1),
        }
    }

    /// Test timing: [`MembershipConfig::lan`] about five times faster.
    pub fn fast() -> Self {
        MembershipConfig {
            probe_interval: Duration::from_millis(100),
            probe_timeout: Duration::from_millis(40),
            gossip_interval: Duration::from_millis(40),
            gossip_to_the_dead: Duration::from_secs(6),
            push_pull_interval: Duration::from_secs(6),
            reconnect_interval: Duration::from_secs(2),
            dead_reap_after: Duration::from_secs(3600),
            seed_backoff_initial: Duration::from_millis(50),
            seed_backoff_max: Duration::from_secs(5),
            leave_propagate: Duration::from_millis(200),
            ..Self::lan()
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("probe_interval", self.probe_interval),
            ("probe_timeout", self.probe_timeout),
            ("gossip_interval", self.gossip_interval),
            ("push_pull_interval", self.push_pull_interval),
            ("reconnect_interval", self.reconnect_interval),
            ("dead_reap_after", self.dead_reap_after),
            ("seed_backoff_initial", self.seed_backoff_initial),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, duration)| duration.is_zero()) {
            return Err(ConfigError::Zero(name));
        }
        if self.probe_timeout >= self.probe_interval {
            return Err(ConfigError::ProbeTimeoutTooLong {
                timeout: self.probe_timeout,
                interval: self.probe_interval,
            });
        }
        if self.seed_backoff_max < self.seed_backoff_initial {
            return Err(ConfigError::BackoffInverted {
                initial: self.seed_backoff_initial,
                max: self.seed_backoff_max,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_profiles_are_valid() {
        assert_eq!(Config::lan("c").validate(), Ok(()));
        assert_eq!(Config::fast("c").validate(), Ok(()));
    }

    #[test]
    fn invalid_settings_are_named_in_the_error() {
        let mut config = Config::fast("c");
        config.membership.gossip_interval = Duration::ZERO;
        assert_eq!(config.validate(), Err(ConfigError::Zero("gossip_interval")));

        let mut config = Config::fast("c");
        config.membership.probe_timeout = config.membership.probe_interval;
        assert!(matches!(config.validate(), Err(ConfigError::ProbeTimeoutTooLong { .. })));

        assert_eq!(Config::fast("").validate(), Err(ConfigError::ClusterName));
        assert_eq!(Config::fast("x".repeat(200)).validate(), Err(ConfigError::ClusterName));
    }
}
