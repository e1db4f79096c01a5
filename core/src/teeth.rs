//! Known bugs, planted on purpose to prove that the simulator's checkers
//! catch them (DESIGN §5; FoundationDB and TigerBeetle keep such switches).
//!
//! Only the `teeth` cargo feature (never on by default) can switch one on,
//! per thread, for the runs that follow; without it [`planted`] is a
//! constant `false` and the bugs compile away.

use core::fmt;
use core::str::FromStr;

/// A planted bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Plant {
    /// A follower grants its vote to every candidate of a term that asks,
    /// not only the first (breaks S1: two leaders in one term).
    DoubleVote,
    /// A leader appends `Stable(e)` once all but one member of view `e`
    /// acked (breaks S4).
    EarlyStable,
    /// A member that commits several views in one batch delivers the newest
    /// and then the one before it (breaks S3: delivered epochs must increase).
    ViewOutOfOrder,
    /// A member that holds the log answers reads from its own state at once,
    /// and a leader without a ReadIndex round: a deposed leader or a lagging
    /// follower serves stale values (breaks linearizability).
    StaleRead,
}

impl Plant {
    /// Every planted bug.
    pub const ALL: [Plant; 4] = [Plant::DoubleVote, Plant::EarlyStable, Plant::ViewOutOfOrder, Plant::StaleRead];

    /// Its name on command lines: `double-vote`, `early-stable`,
    /// `view-out-of-order`, `stale-read`.
    pub fn name(self) -> &'static str {
        match self {
            Plant::DoubleVote => "double-vote",
            Plant::EarlyStable => "early-stable",
            Plant::ViewOutOfOrder => "view-out-of-order",
            Plant::StaleRead => "stale-read",
        }
    }
}

impl fmt::Display for Plant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is no planted bug.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no planted bug is called {0:?} (one of double-vote, early-stable, view-out-of-order, stale-read)")]
pub struct UnknownPlant(pub String);

impl FromStr for Plant {
    type Err = UnknownPlant;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Plant::ALL.into_iter().find(|plant| plant.name() == name).ok_or_else(|| UnknownPlant(name.to_owned()))
    }
}

#[cfg(feature = "teeth")]
std::thread_local! {
    static PLANTED: core::cell::Cell<Option<Plant>> = const { core::cell::Cell::new(None) };
}

/// Plants `plant` (or none) in every node this thread runs from now on.
#[cfg(feature = "teeth")]
pub fn plant(plant: Option<Plant>) {
    PLANTED.with(|planted| planted.set(plant));
}

/// Whether `plant` is planted in this thread.
#[cfg(feature = "teeth")]
pub(crate) fn planted(plant: Plant) -> bool {
    PLANTED.with(|planted| planted.get() == Some(plant))
}

/// Whether `plant` is planted: never, without the `teeth` feature.
#[cfg(not(feature = "teeth"))]
#[inline(always)]
pub(crate) fn planted(_plant: Plant) -> bool {
    false
}
