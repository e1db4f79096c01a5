//! A deterministic multi-node driver: many [`Node`](crate::Node)s on one
//! virtual clock, carrying each other's bytes over a simulated network with
//! faults (STYLE "Tests": quinn's `Pair::drive`, raft-rs's `Network`).
//!
//! [`Sim`] is a discrete-event simulator. One queue orders everything that
//! will happen (packet deliveries, node deadlines, disk syncs) by virtual time,
//! and the simulator jumps from one to the next, so idle time costs nothing
//! and a thousand members run in seconds. Every random choice (node seeds,
//! durable ids, latency, loss, duplication) comes from one ChaCha8 RNG seeded
//! with the simulation's `u64` seed, and every table is ordered, so one seed
//! always gives the same run; [`Sim::trace_hash`] proves it (DESIGN §5, D1).
//!
//! - **Network** ([`NetConfig`]): datagrams with uniform latency jitter (which
//!   reorders them), loss and duplication; streams modelled on TCP: reliable,
//!   FIFO per pair of nodes, broken when either end crashes or restarts.
//! - **Storage** ([`Storage`]): each persist is synced after
//!   [`DiskConfig::fsync_delay`] and then confirmed to the node; a crash loses
//!   what is still pending.
//! - **Faults**: [`Sim::crash`], [`Sim::restart`] with or without its
//!   [`Disk`], [`Sim::restart_at`] a new address, [`Sim::pause`] /
//!   [`Sim::resume`], [`Sim::partition`], one-way [`Sim::cut`],
//!   [`Sim::isolate`], [`Sim::heal`]; and [`Sim::inject`] for raw bytes.
//! - **Observation**: the event log ([`Sim::events`]), packet counters
//!   ([`Sim::counters`]), recorded deliveries, convergence checks
//!   ([`Sim::check_converged`]) and a per-step hook for invariants such as S6
//!   ([`assert_no_live_member_failed`]).
//!
//! After every input the driver drains the node's outputs and, unless turned
//! off, calls [`Node::check_invariants`](crate::Node::check_invariants); a
//! panic inside a node prints the node, the virtual time and the seed.
//!
//! ```
//! use core::time::Duration;
//! use quorate_core::Config;
//! use quorate_core::testing::{Sim, assert_no_live_member_failed};
//!
//! let mut sim = Sim::new(7);
//! let nodes = sim.add_nodes(5, &Config::fast("demo"));
//! sim.join_all(&nodes, nodes[0]);
//! // S6: with no faults, nobody who is up is ever declared dead.
//! sim.set_step_hook(assert_no_live_member_failed);
//! assert!(sim.run_until(Duration::from_secs(5), Sim::converged), "{:?}", sim.check_converged());
//!
//! // Crash one; the others notice and agree without it.
//! sim.clear_step_hook();
//! sim.crash(nodes[4]);
//! assert!(!sim.converged(), "the others still believe it alive");
//! assert!(sim.run_until(Duration::from_secs(10), Sim::converged), "{:?}", sim.check_converged());
//! assert!(sim.events().iter().any(|record| record.kind() == "member_failed"));
//! ```

mod checks;
mod invariants;
mod net;
mod queue;
mod sim;
mod storage;
mod trace;

pub use checks::{NotConverged, assert_no_live_member_failed, live_members_declared_failed};
pub use invariants::{
    Invariants, LeaderSource, Liveness, MemberState, NoLiveMemberFailed, OneLeaderPerTerm, StableOnce, ViewAgreement,
    ViewSource, Violation, describe_cluster,
};
pub use net::{ChannelCounters, Counters, NetConfig, PORT, default_addr};
pub use sim::Sim;
pub use storage::{Disk, DiskConfig, Storage};
pub use trace::{Delivery, EventRecord, Fault, FaultRecord};

/// A node slot in a [`Sim`]. It stays the same across crashes and restarts,
/// whatever the durable id or address of the node running in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeIdx(pub usize);

impl core::fmt::Display for NodeIdx {
    /// `n3`, matching the names [`Sim::add_nodes`] gives.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "n{}", self.0)
    }
}
