//! quorate: make any tokio service a cluster.
//!
//! This crate runs the sans-IO protocol core ([`quorate_core`]) under tokio:
//! one UDP socket for membership datagrams, TCP for stream frames, one task
//! per member. Built with `--cfg madsim`, the same code runs in the madsim
//! simulator.
//!
//! ```no_run
//! # async fn example() -> Result<(), quorate::Error> {
//! use quorate::{Cluster, Event, Profile};
//!
//! let member = Cluster::builder()
//!     .cluster("billing")
//!     .node("billing-1")
//!     .bind("10.0.0.1:7946".parse().unwrap())
//!     .join(["10.0.0.2:7946".parse().unwrap()])
//!     .tag("service", "billing")?
//!     .profile(Profile::Lan)
//!     .start()
//!     .await?;
//! let mut events = member.events();
//! while let Ok(event) = events.recv().await {
//!     if let Event::MemberFailed(info) = event {
//!         println!("{} failed", info.name);
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! What this crate offers today is membership: failure detection, tags,
//! graceful leave and joins. Leader election, agreed views, rebalancing and
//! the replicated state machine come with the rest of the protocol core.

#![deny(missing_docs)]

#[cfg(not(madsim))]
pub mod admin;
mod blocking;
mod cluster;
pub mod discovery;
mod driver;
pub mod framing;
pub mod stats;
pub mod storage;
mod transport;

pub use cluster::{Builder, Cluster, Done, Error, Profile};
pub use quorate_core::{Event, MemberId, MemberInfo, State, Tags, View};
pub use transport::TransportCounters;
