//! Views, acks and `Stable` (DESIGN §3.3, items 1–6 and 8).
//!
//! Every member holding the log applies committed `View` and `Stable` entries
//! in log order to the same [`ViewState`], and delivers the newest committed
//! view to its application once per boot ([`crate::Event::Rebalance`]). The
//! application acks the epoch; the ack goes to the leader, which confirms it,
//! and is sent again until the current leader has (so after every leader
//! change: acks are leader-local).
//!
//! The leader, after every input:
//! 1. compares the live, non-lagging, non-leaving log members with the latest
//!    `View` in its log, committed or not, and after `view_debounce` of
//!    difference appends `View { latest.epoch + 1, .. }` — never while another
//!    `View` is uncommitted, so no epoch can ever name two member sets;
//! 2. once every member of the newest view acked it (in its current boot),
//!    having committed an entry of its own term, appends `Stable(epoch)` unless
//!    one is already in its log;
//! 3. marks a member that has not acked within `ack_timeout` *lagging*, which
//!    leaves it out of the next view; it returns once it acked the newest epoch
//!    it delivered and stayed live for `lagging_hysteresis`. Each member's
//!    deadline runs from the view's commit (or the leader's election), and
//!    again from a restart: a new boot owes a new ack. The lagging set is
//!    committed with each view, so a new leader keeps it.

use std::collections::BTreeMap;

use core::time::Duration;
use serde::{Deserialize, Serialize};

use crate::id::MemberId;
use crate::membership::MemberInfo;
use crate::raft::{Entry, Payload};
use crate::teeth::{Plant, planted};
use crate::time::Instant;
use crate::view::{View, ViewMember};

/// Timing of views, acks and lagging.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RebalanceConfig {
    /// How long the members must differ from the latest view before a new
    /// one is appended; a member restarted with its data dir within it keeps
    /// its place.
    pub view_debounce: Duration,
    /// How long a member of a committed view has to ack it before it is lagging.
    pub ack_timeout: Duration,
    /// How long a lagging member must stay live, having acked, before it
    /// returns to the views.
    pub lagging_hysteresis: Duration,
    /// How often an unconfirmed ack is sent again.
    pub ack_resend: Duration,
}

impl RebalanceConfig {
    /// LAN timing.
    pub fn lan() -> Self {
        RebalanceConfig {
            view_debounce: Duration::from_secs(2),
            ack_timeout: Duration::from_secs(30),
            lagging_hysteresis: Duration::from_secs(30),
            ack_resend: Duration::from_secs(1),
        }
    }

    /// Test timing.
    pub fn fast() -> Self {
        RebalanceConfig {
            view_debounce: Duration::from_millis(400),
            ack_timeout: Duration::from_secs(3),
            lagging_hysteresis: Duration::from_secs(3),
            ack_resend: Duration::from_millis(200),
        }
    }
}

/// Messages of the views sub-machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// The sender's application finished rebalancing to view `epoch`.
    Ack {
        /// The epoch acked.
        epoch: u64,
    },
    /// The leader recorded the receiver's ack of `epoch`.
    AckReceived {
        /// The epoch acked.
        epoch: u64,
    },
}

impl Message {
    /// A short, stable name of the message kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Ack { .. } => "view_ack",
            Message::AckReceived { .. } => "view_ack_received",
        }
    }
}

/// What every log member derives from committed entries; part of the snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewState {
    /// The newest committed view.
    pub view: Option<View>,
    /// The newest epoch with a committed `Stable`.
    pub stable: Option<u64>,
}

impl ViewState {
    /// Applies one committed entry; returns whether the view changed.
    pub(crate) fn apply(&mut self, entry: &Entry) -> bool {
        match &entry.payload {
            Payload::View(view) => {
                debug_assert!(
                    self.view.as_ref().is_none_or(|current| view.epoch == current.epoch + 1),
                    "committed epochs follow one another"
                );
                self.view = Some(view.clone());
                true
            }
            Payload::Stable { epoch } => {
                self.stable = Some(self.stable.map_or(*epoch, |stable| stable.max(*epoch)));
                false
            }
            _ => false,
        }
    }

    /// Whether the newest view has a committed `Stable`.
    pub fn is_stable(&self) -> bool {
        self.view.as_ref().is_some_and(|view| self.stable == Some(view.epoch))
    }

    /// The newest epoch, 0 before any view.
    pub fn epoch(&self) -> u64 {
        self.view.as_ref().map_or(0, |view| view.epoch)
    }
}

/// An ack the leader holds: for which epoch, from which boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Ack {
    epoch: u64,
    boot_id: u64,
}

/// A lagging member, as the leader tracks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Lagging {
    /// Since when it is live and has acked the newest epoch; `None` while not.
    healthy_since: Option<Instant>,
}

/// What the leader decided to append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Proposal {
    View(View),
    Stable(u64),
}

/// The views sub-machine of one node.
#[derive(Debug)]
pub(crate) struct Rebalance {
    config: RebalanceConfig,
    pub(crate) state: ViewState,
    /// The newest epoch delivered to the application in this boot.
    delivered: Option<u64>,
    /// The newest epoch the application acked in this boot.
    acked: Option<u64>,
    /// The (leader, term, epoch) of the last ack a leader confirmed.
    confirmed: Option<(MemberId, u64, u64)>,
    // Leader-local, reset on every leader change:
    acks: BTreeMap<MemberId, Ack>,
    /// When members started to owe an ack of the newest view: its commit, or
    /// this leader's election.
    owed_since: Instant,
    /// Per member of the newest view that has not acked: the boot that owes
    /// it and since when (a restart starts the wait again).
    owed: BTreeMap<MemberId, (u64, Instant)>,
    lagging: BTreeMap<MemberId, Lagging>,
    /// Since when the desired members differ from the latest view.
    differs_since: Option<Instant>,
    /// The (term, epoch) for which `ClusterStable` was last reported.
    stable_reported: Option<(u64, u64)>,
}

impl Rebalance {
    pub(crate) fn new(config: RebalanceConfig, state: ViewState) -> Self {
        Rebalance {
            config,
            state,
            delivered: None,
            acked: None,
            confirmed: None,
            acks: BTreeMap::new(),
            owed_since: Instant::ZERO,
            owed: BTreeMap::new(),
            lagging: BTreeMap::new(),
            differs_since: None,
            stable_reported: None,
        }
    }

    pub(crate) fn config(&self) -> &RebalanceConfig {
        &self.config
    }

    /// The view to deliver to the application, if a newer one committed.
    pub(crate) fn take_delivery(&mut self) -> Option<View> {
        let view = self.state.view.as_ref()?;
        if self.delivered.is_some_and(|delivered| delivered >= view.epoch) {
            return None;
        }
        self.delivered = Some(view.epoch);
        Some(view.clone())
    }

    /// The application acked `epoch`: returns the epoch to send to the
    /// leader, if it is the newest delivered one.
    pub(crate) fn on_local_ack(&mut self, epoch: u64) -> Option<u64> {
        if self.delivered != Some(epoch) || self.acked >= Some(epoch) {
            return None;
        }
        self.acked = Some(epoch);
        Some(epoch)
    }

    /// The ack to (re)send to `leader` of `term`: our ack of the newest
    /// view, until that leader has confirmed it.
    pub(crate) fn unconfirmed_ack(&self, leader: MemberId, term: u64) -> Option<u64> {
        let acked = self.acked.filter(|&acked| acked == self.state.epoch())?;
        (self.confirmed != Some((leader, term, acked))).then_some(acked)
    }

    /// `leader` of `term` confirmed our ack of `epoch`.
    pub(crate) fn on_ack_received(&mut self, leader: MemberId, term: u64, epoch: u64) {
        self.confirmed = Some((leader, term, epoch));
    }

    /// Whether this member is in the newest committed view.
    pub(crate) fn is_active(&self, me: MemberId) -> bool {
        self.state.view.as_ref().is_some_and(|view| view.contains(me))
    }

    // ----- leader side ----------------------------------------------------------------------

    /// This member became leader: forget the previous term's leader-local
    /// state, take the lagging set from the newest view, and give every
    /// member a full ack timeout from now (members re-send their acks to a
    /// new leader).
    pub(crate) fn on_elected(&mut self, now: Instant) {
        self.acks.clear();
        self.differs_since = None;
        self.lagging = self
            .state
            .view
            .iter()
            .flat_map(|view| view.lagging.iter())
            .map(|&id| (id, Lagging { healthy_since: None }))
            .collect();
        self.owed.clear();
        self.owed_since = now;
    }

    /// The newest view committed: every member owes an ack of it from now.
    pub(crate) fn on_view_committed(&mut self, now: Instant) {
        self.owed.clear();
        self.owed_since = now;
    }

    /// An ack for `epoch` from `from` in boot `boot_id`; whether it is for
    /// the newest view (and so to be confirmed).
    pub(crate) fn on_ack(&mut self, from: MemberId, boot_id: u64, epoch: u64) -> bool {
        if epoch != self.state.epoch() {
            return false;
        }
        self.acks.insert(from, Ack { epoch, boot_id });
        true
    }

    /// Whether `ClusterStable` is still to be reported for `epoch` in `term`;
    /// marks it reported (once per term and epoch, DESIGN §3.3 item 4).
    pub(crate) fn report_stable(&mut self, term: u64, epoch: u64) -> bool {
        if self.stable_reported == Some((term, epoch)) {
            return false;
        }
        self.stable_reported = Some((term, epoch));
        true
    }

    /// The leader's decision after an input. `log_tail` holds the entries
    /// after the commit index; `members` the membership table; `eligible`
    /// says which live members may be in a view (they receive the log and the
    /// leader can reach them); `own_term_committed` whether this leader
    /// committed an entry of its term. Returns a proposal and the earliest
    /// time a decision may change without any input.
    pub(crate) fn decide<'a>(
        &mut self,
        now: Instant,
        members: impl Iterator<Item = &'a MemberInfo> + Clone,
        eligible: impl Fn(&MemberInfo) -> bool,
        log_tail: impl Iterator<Item = &'a Entry> + Clone,
        own_term_committed: bool,
    ) -> (Option<Proposal>, Option<Instant>) {
        let mut wake = None;
        let newest = self.state.view.clone();
        let current_boot = |id: MemberId| members.clone().find(|m| m.id == id).map(|m| m.boot_id);

        // 3. Lagging: members of the newest view that did not ack in time,
        // each from when it started to owe the ack (a restart starts anew).
        if let Some(view) = &newest {
            for member in view.ids() {
                let Some(boot) = current_boot(member) else { continue };
                let previous = self.acks.get(&member).filter(|ack| ack.epoch == view.epoch);
                if previous.is_some_and(|ack| ack.boot_id == boot) {
                    self.owed.remove(&member);
                    continue;
                }
                // Acked in an older boot: it restarted since, and owes its new ack from now.
                let since = if previous.is_some() { now } else { self.owed_since };
                let owed = self.owed.entry(member).or_insert((boot, since));
                if owed.0 != boot {
                    *owed = (boot, now);
                }
                let deadline = owed.1 + self.config.ack_timeout;
                if now < deadline {
                    wake = earliest(wake, deadline);
                } else if let std::collections::btree_map::Entry::Vacant(entry) = self.lagging.entry(member) {
                    tracing::warn!(%member, epoch = view.epoch, "no ack within the ack timeout: lagging");
                    entry.insert(Lagging { healthy_since: None });
                }
            }
        }
        // A lagging member returns once it acked the newest epoch and stayed live.
        let epoch = self.state.epoch();
        let hysteresis = self.config.lagging_hysteresis;
        let mut returned = Vec::new();
        for (&member, lagging) in &mut self.lagging {
            let live = members.clone().any(|m| m.id == member && m.state.is_live());
            let acked = self.acks.get(&member).is_some_and(|ack| ack.epoch == epoch);
            if live && acked {
                let since = *lagging.healthy_since.get_or_insert(now);
                if now >= since + hysteresis {
                    returned.push(member);
                } else {
                    wake = earliest(wake, since + hysteresis);
                }
            } else {
                lagging.healthy_since = None;
            }
        }
        for member in returned {
            tracing::info!(%member, "lagging member healthy again: back in the next view");
            self.lagging.remove(&member);
        }

        // 1. A new view when the members differ from the latest view in the log.
        let uncommitted_view = log_tail.clone().filter_map(|e| match &e.payload {
            Payload::View(view) => Some(view),
            _ => None,
        });
        let latest_in_log = uncommitted_view.clone().last().or(newest.as_ref());
        let mut desired: Vec<ViewMember> = members
            .clone()
            .filter(|m| m.state.is_live() && !m.leaving && eligible(m) && !self.lagging.contains_key(&m.id))
            .map(|m| ViewMember {
                id: m.id,
                name: m.name.clone(),
                addr: m.addr,
                capacity: m.tags.get("capacity").and_then(|c| c.parse().ok()).filter(|&c| c > 0).unwrap_or(1),
            })
            .collect();
        desired.sort_by_key(|m| m.id);
        let desired_ids: Vec<MemberId> = desired.iter().map(|m| m.id).collect();
        let lagging_live: Vec<MemberId> = self
            .lagging
            .keys()
            .copied()
            .filter(|&id| members.clone().any(|m| m.id == id && m.state.is_live()))
            .collect();
        // Only a change of members makes a new view; the lagging list rides
        // along (the view that leaves a member out already lists it).
        let differs = latest_in_log.is_none_or(|view| !view.same_members(&desired_ids)) && !desired.is_empty();
        if !differs {
            self.differs_since = None;
        } else if uncommitted_view.clone().next().is_none() {
            let since = *self.differs_since.get_or_insert(now);
            if now >= since + self.config.view_debounce {
                self.differs_since = None;
                let epoch = latest_in_log.map_or(1, |view| view.epoch + 1);
                return (Some(Proposal::View(View::new(epoch, desired, lagging_live))), wake);
            }
            wake = earliest(wake, since + self.config.view_debounce);
        }

        // 2. Stable once every member of the newest view acked it.
        if let Some(view) = &newest
            && own_term_committed
            && uncommitted_view.clone().next().is_none()
            && self.state.stable != Some(view.epoch)
            && !log_tail.clone().any(|e| e.payload == Payload::Stable { epoch: view.epoch })
        {
            let acked = view
                .ids()
                .filter(|&member| {
                    self.acks.get(&member).is_some_and(|ack| {
                        ack.epoch == view.epoch && current_boot(member).is_some_and(|boot| boot == ack.boot_id)
                    })
                })
                .count();
            let members = view.ids().count();
            let needed = if planted(Plant::EarlyStable) { members - 1 } else { members };
            if acked >= needed {
                return (Some(Proposal::Stable(view.epoch)), wake);
            }
        }
        (None, wake)
    }

    /// Members the leader holds lagging.
    pub(crate) fn lagging(&self) -> impl Iterator<Item = MemberId> + '_ {
        self.lagging.keys().copied()
    }
}

fn earliest(current: Option<Instant>, candidate: Instant) -> Option<Instant> {
    Some(current.map_or(candidate, |current| current.min(candidate)))
}
