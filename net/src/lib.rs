//! quorate: make any tokio service a cluster.
//!
//! Each process runs one member. Members find each other (a seed address or a
//! [`discovery`] source), detect failures (SWIM with Lifeguard), elect one
//! leader (Raft), and agree on numbered views of the live members. On every
//! new view each member moves its work to the view's rendezvous owners and
//! acks; when every member acked, the leader learns that the cluster is
//! stable. The view's epoch is a fencing token for the systems you write to.
//!
//! This crate runs the sans-IO protocol core ([`quorate_core`]) under tokio:
//! one UDP socket for membership datagrams, TCP for Raft, push-pull and
//! snapshots, one task per member. Built with `--cfg madsim`, the same code
//! runs in the madsim simulator.
//!
//! Three members on loopback, keyed work moved on each view, housekeeping on
//! the leader once the cluster is stable:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use quorate::{Cluster, Profile};
//!
//! let (stable_tx, mut stable_rx) = tokio::sync::mpsc::unbounded_channel();
//! let mut members: Vec<Cluster> = Vec::new();
//! for name in ["a", "b", "c"] {
//!     let seed = members.first().map(Cluster::addr);
//!     let member = Cluster::builder()
//!         .cluster("example")
//!         .node(name)
//!         .bind("127.0.0.1:0".parse()?)
//!         .join(seed)
//!         .profile(Profile::Fast)
//!         // The three form the cluster together once they see each other.
//!         .bootstrap_expect(3)
//!         // In-memory state may vote only in tests and demos; production
//!         // members use `.data_dir(..)`.
//!         .allow_ephemeral_voters(true)
//!         .start()
//!         .await?;
//!     let me = member.id();
//!     member.on_rebalance(move |view, done| {
//!         // Serve the keys this member owns in `view`, drop the others...
//!         let _mine = view.owner(b"customer-42") == Some(me);
//!         // ...then say so.
//!         done.ack();
//!     });
//!     let stable = stable_tx.clone();
//!     member.on_cluster_stable(move |view| {
//!         let _ = stable.send(view);
//!     });
//!     members.push(member);
//! }
//! // Only the leader reports; the first stable view may predate a member.
//! let view = loop {
//!     let view = stable_rx.recv().await.expect("a stable view");
//!     if view.members.len() == 3 {
//!         break view;
//!     }
//! };
//! println!("stable at epoch {}", view.epoch);
//! assert!(members.iter().any(|member| member.is_leader()));
//! for member in members {
//!     member.shutdown().await;
//! }
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

/// Whether a simulation run injects a fault at this site (two-tier BUGGIFY,
/// [`sim::buggify`]); always false outside the simulator.
macro_rules! buggify {
    () => {{
        #[cfg(madsim)]
        let fire = $crate::sim::buggify(concat!(file!(), ":", line!()));
        #[cfg(not(madsim))]
        let fire = false;
        fire
    }};
}
pub(crate) use buggify;

#[cfg(not(madsim))]
pub mod admin;
mod blocking;
mod cluster;
pub mod discovery;
mod driver;
pub mod framing;
mod kv;
pub mod routes;
#[cfg(madsim)]
pub mod sim;
pub mod stats;
pub mod storage;
mod transport;

/// Random bytes for seeds and durable ids. Under madsim they come from the
/// simulator's seeded RNG: `rand`'s thread-local generator would carry its
/// state from one simulation run to the next in the same thread.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0; N];
    #[cfg(madsim)]
    madsim::rand::RngCore::fill_bytes(&mut madsim::rand::thread_rng(), &mut bytes);
    #[cfg(not(madsim))]
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    bytes
}

pub use cluster::{Builder, Cluster, Done, Error, Profile};
pub use kv::{KvClient, Watch};
pub use quorate_core::rsm::kv::{KvChange, KvEntry};
pub use quorate_core::rsm::{ApplyError, StateMachine};
pub use quorate_core::{Event, MemberId, MemberInfo, State, Tags, View};
pub use transport::TransportCounters;
