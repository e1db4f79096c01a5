//! What the madsim simulation (`quorate-sim`) needs from the adapter, built
//! only with `--cfg madsim`.
//!
//! The simulator runs this crate's real code; these hooks let it see and
//! disturb what it cannot reach from outside: every step of each member's
//! core (for the invariant checkers), the time a disk takes to sync (so a
//! kill can land between a write and its sync), the datagram faults madsim's
//! network never makes (duplication, replay, corruption), and two-tier
//! BUGGIFY in the adapter's error paths.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Duration;

use madsim::rand::Rng;
use quorate_core::{Event, Node};

/// Called by a member's driver after each step: its core as the step left
/// it, and the events the step raised, in order.
pub type Observer = Box<dyn FnMut(&Node, &[Event]) + Send>;

/// How a member's receive path mangles datagrams, each drawn per datagram
/// from the simulator's seeded RNG. madsim delivers every datagram intact and
/// at most once; real networks do not.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DatagramFaults {
    /// Probability that a datagram is delivered twice.
    pub duplicate: f64,
    /// Probability that, after a datagram, an older one (one of the last
    /// [`REPLAY_WINDOW`]) is delivered again.
    pub replay: f64,
    /// Probability that one byte of a datagram is flipped.
    pub corrupt: f64,
}

/// How many recent datagrams a member keeps to replay.
pub const REPLAY_WINDOW: usize = 16;

/// The simulation's settings for one member.
#[derive(Default)]
pub(crate) struct Hooks {
    pub(crate) observer: Option<Observer>,
    pub(crate) sync_latency: Duration,
    pub(crate) datagram_faults: DatagramFaults,
}

/// The datagrams a member's receive path delivers for one that arrived.
pub(crate) struct Mangler {
    faults: DatagramFaults,
    recent: Vec<Vec<u8>>,
}

impl Mangler {
    pub(crate) fn new(faults: DatagramFaults) -> Self {
        Mangler { faults, recent: Vec::new() }
    }

    /// `datagram`, possibly corrupted, possibly twice, possibly followed by
    /// an older one.
    pub(crate) fn mangle(&mut self, mut datagram: Vec<u8>) -> Vec<Vec<u8>> {
        if self.faults == DatagramFaults::default() {
            return vec![datagram];
        }
        let mut rng = madsim::rand::thread_rng();
        if !datagram.is_empty() && rng.gen_bool(self.faults.corrupt) {
            let at = rng.gen_range(0..datagram.len());
            datagram[at] ^= 1 << rng.gen_range(0..8);
        }
        let mut out = vec![datagram.clone()];
        if rng.gen_bool(self.faults.duplicate) {
            out.push(datagram.clone());
        }
        if !self.recent.is_empty() && rng.gen_bool(self.faults.replay) {
            out.push(self.recent[rng.gen_range(0..self.recent.len())].clone());
        }
        if self.recent.len() == REPLAY_WINDOW {
            self.recent.remove(0);
        }
        self.recent.push(datagram);
        out
    }
}

thread_local! {
    /// Per BUGGIFY site: whether it is active in this run. madsim runs one
    /// simulation per thread at a time; [`reset_buggify`] starts a run afresh.
    static SITES: RefCell<BTreeMap<&'static str, bool>> = const { RefCell::new(BTreeMap::new()) };
}

/// Two-tier BUGGIFY (FoundationDB's): the first time a run reaches `site`,
/// the site is activated with madsim's 25 %; an active site then fires 25 %
/// of the times it is reached. Always false unless the run enabled
/// `madsim::buggify`.
pub fn buggify(site: &'static str) -> bool {
    if !madsim::buggify::is_enabled() {
        return false;
    }
    let active = SITES.with(|sites| *sites.borrow_mut().entry(site).or_insert_with(madsim::buggify::buggify));
    active && madsim::buggify::buggify()
}

/// Forgets which BUGGIFY sites were active: call before each run.
pub fn reset_buggify() {
    SITES.with(|sites| sites.borrow_mut().clear());
}

/// The BUGGIFY sites reached in this run, and whether each is active.
pub fn buggify_sites() -> Vec<(&'static str, bool)> {
    SITES.with(|sites| sites.borrow().iter().map(|(&site, &active)| (site, active)).collect())
}
