//! The sans-IO protocol core of quorate.
//!
//! One deterministic state machine per member: SWIM membership with Lifeguard
//! ([`membership`]), Raft leader election and log ([`raft`]), agreed views,
//! acks and `Stable` ([`rebalance`], [`view`]), bootstrap agreement
//! ([`bootstrap`]), the wire format ([`wire`]) and rendezvous placement
//! ([`placement`]). It performs no I/O, reads no clock and draws randomness
//! only from the seed it was built with, so the same inputs always produce the
//! same outputs, byte for byte. The `quorate` crate runs it under tokio; tests
//! run it in the deterministic driver of [`testing`] and under madsim.
//!
//! ```
//! use quorate_core::{Config, Identity, Input, Instant, MemberId, Node, Output, Recovered};
//!
//! let identity = Identity {
//!     id: MemberId::from_u128(1),
//!     name: "a".parse().unwrap(),
//!     addr: "127.0.0.1:7946".parse().unwrap(),
//!     tags: Default::default(),
//!     durable: true,
//! };
//! let mut node = Node::new(Config::fast("demo"), identity, 42, Recovered::default(), Instant::ZERO).unwrap();
//! // The first output asks to persist the raised boot id; nothing is sent before it is confirmed.
//! let Some(Output::Persist(persist)) = node.poll() else { panic!() };
//! node.handle(Instant::ZERO, Input::Persisted(persist.seq));
//! assert!(node.next_deadline().is_some());
//! ```

#![deny(missing_docs)]

pub mod bootstrap;
pub mod config;
pub mod fixed;
pub mod id;
pub mod membership;
pub mod metrics;
pub mod node;
pub mod placement;
pub mod raft;
pub mod rebalance;
pub mod rsm;
pub mod teeth;
pub mod time;
pub mod view;
pub mod wire;

mod timer;

#[cfg(feature = "testing")]
pub mod testing;

#[cfg(feature = "fuzzing")]
pub mod fuzzing;

pub use bootstrap::ClusterClaim;
pub use config::{Bootstrap, Config, ConfigError, MembershipConfig};
pub use id::{ClusterUuid, MemberId};
pub use membership::{MemberInfo, State};
pub use metrics::{Metrics, Rejection};
pub use node::{Command, Event, Identity, Input, Node, Output, Persist, PersistState, Recovered, Transmit};
pub use raft::{Configuration, RaftConfig, RaftState, Role};
pub use rebalance::RebalanceConfig;
pub use time::Instant;
pub use view::View;
pub use wire::{Channel, Tags};
