//! Checkers for the invariants of DESIGN §5, one per invariant, fed after
//! every step of a [`Sim`] (STYLE "Tests": openraft's `invariants/`,
//! TigerBeetle's state checker outside the replica).
//!
//! | checker | id | what it reads each step |
//! |---|---|---|
//! | [`OneLeaderPerTerm`] | S1 | every up node's `role()`, `term()` and `leader()`; the step's `LeaderChanged` events |
//! | [`ViewAgreement`] | S3 | the step's `Rebalance` events; the newly committed `View` entries of every log |
//! | [`StableOnce`] | S4 | the newly committed entries and the uncommitted tail of every log; `LeaderChanged` and `ClusterStable` events |
//! | [`NoLiveMemberFailed`] | S6 | [`live_members_declared_failed`], only while no fault has struck and loss ≤ 10 % |
//! | [`Liveness`] | L1 | once, after the faults stop: leaders, views, lagging sets and `is_stable()` of the live members |
//!
//! Each checker has two faces. `observe_*` methods take hand-made
//! observations and return a [`Violation`], so a test can feed it a synthetic
//! history and assert that it catches a violation and accepts a good history.
//! `check(&mut self, sim)` reads the simulation incrementally (each log from
//! where the last step left it, only the step's events) and panics on a
//! violation with the evidence: the nodes, entries or events involved, the
//! virtual time and the seed to replay. [`Invariants`] bundles the safety
//! checkers into one step hook:
//!
//! ```
//! use core::num::NonZeroU32;
//! use core::time::Duration;
//! use quorate_core::testing::{Invariants, Liveness, Sim};
//! use quorate_core::{Bootstrap, Config};
//!
//! let mut config = Config::fast("demo");
//! config.bootstrap = Bootstrap::Expect(NonZeroU32::new(3).unwrap());
//! let mut sim = Sim::new(7);
//! let nodes = sim.add_nodes(3, &config);
//! sim.join_all(&nodes, nodes[0]);
//! let invariants = Invariants::new().install(&mut sim);
//! // L1: a leader, one view of the three, and its Stable, within 10 s.
//! Liveness::new(&nodes).run(&mut sim, Duration::from_secs(10));
//! assert!(invariants.borrow().s1.terms() >= 1);
//! ```

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use core::time::Duration;

use super::{NodeIdx, Sim, live_members_declared_failed};
use crate::id::{ClusterUuid, MemberId};
use crate::node::Event;
use crate::raft::{Entry, Payload, Role};
use crate::time::Instant;
use crate::view::View;

/// An invariant that did not hold, with its evidence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The invariant's id in DESIGN §5, e.g. `"S1"`.
    pub invariant: &'static str,
    /// Virtual time of the observation that broke it.
    pub at: Instant,
    /// What broke it: the nodes, entries and events involved.
    pub detail: String,
}

impl core::fmt::Display for Violation {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} violated at {}: {}", self.invariant, self.at, self.detail)
    }
}

impl std::error::Error for Violation {}

/// Panics with a violation found in `sim`, naming the seed to replay.
fn fail(sim: &Sim, violation: Violation) -> ! {
    panic!("{violation} (replay: Sim::new({}))", sim.seed())
}

/// A short description of an entry for evidence: `#12 t3 stable(4)`.
fn describe(entry: &Entry) -> String {
    let what = match &entry.payload {
        Payload::View(view) => format!("view({}: {:?})", view.epoch, view.ids().collect::<Vec<_>>()),
        Payload::Stable { epoch } => format!("stable({epoch})"),
        Payload::Config(configuration) => {
            format!("config(voters {:?}, learners {:?})", configuration.voters, configuration.learners)
        }
        other => other.kind().to_string(),
    };
    format!("#{} t{} {what}", entry.index, entry.term)
}

/// What a log checker needs to know changed since the last step: the same
/// member, term, role and commit index, and the same last entry (index and
/// term: by Raft's log matching, the same log).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LogSignature {
    member: MemberId,
    term: u64,
    leading: bool,
    commit_index: u64,
    last: (u64, u64),
}

impl LogSignature {
    fn of(node: &crate::Node) -> LogSignature {
        let commit_index = node.commit_index();
        let last =
            node.log_entries(commit_index + 1).last().map_or((commit_index, 0), |entry| (entry.index, entry.term));
        LogSignature { member: node.id(), term: node.term(), leading: node.role() == Role::Leader, commit_index, last }
    }
}

/// Per slot, the signature of the log last checked: a step that changed
/// nothing on a node costs one signature.
#[derive(Clone, Debug, Default)]
struct Unchanged(Vec<Option<LogSignature>>);

impl Unchanged {
    /// Whether `node` in slot `idx` is as last seen; remembers it as seen now.
    fn check(&mut self, idx: NodeIdx, node: &crate::Node) -> bool {
        if self.0.len() <= idx.0 {
            self.0.resize(idx.0 + 1, None);
        }
        let signature = Some(LogSignature::of(node));
        let same = self.0[idx.0] == signature;
        self.0[idx.0] = signature;
        same
    }

    /// Forgets `idx`, so it is checked at the next step (after a violation).
    fn forget(&mut self, idx: NodeIdx) {
        if let Some(signature) = self.0.get_mut(idx.0) {
            *signature = None;
        }
    }
}

// ----- S1 ---------------------------------------------------------------------------------------

/// How a checker learned that a member leads a term.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaderSource {
    /// The member's own `role()` is `Leader` in that term.
    Role,
    /// A node's `leader()` names it for the node's current term.
    Known,
    /// A node reported `Event::LeaderChanged` naming it.
    Reported,
}

/// What [`OneLeaderPerTerm`] last saw of a slot: member, term, whether it
/// led, and the leader it knew.
type RoleSeen = (MemberId, u64, bool, Option<MemberId>);

#[derive(Clone, Debug)]
struct LeaderWitness {
    leader: MemberId,
    node: NodeIdx,
    at: Instant,
    source: LeaderSource,
}

/// **S1**: at most one leader per term.
///
/// Remembers, for every term, the first member seen leading it: from every
/// node whose `role()` is `Leader` (its own claim), from every node's
/// `leader()` (a follower accepts a leader only from its appends of that
/// term) and from every `LeaderChanged` event (which also catches a
/// leadership that begins and ends within one step). Any other member seen
/// leading the same term is a violation. Terms are compared across the whole
/// run: the simulations that use it never mint a second cluster uuid.
#[derive(Clone, Debug, Default)]
pub struct OneLeaderPerTerm {
    leaders: BTreeMap<u64, LeaderWitness>,
    /// Per slot, what was last checked.
    seen: Vec<Option<RoleSeen>>,
}

impl OneLeaderPerTerm {
    /// A checker that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Terms with a known leader so far.
    pub fn terms(&self) -> usize {
        self.leaders.len()
    }

    /// The leader seen for `term`, if any.
    pub fn leader_of(&self, term: u64) -> Option<MemberId> {
        self.leaders.get(&term).map(|witness| witness.leader)
    }

    /// `node` saw (through `source`) that `leader` leads `term`.
    pub fn observe(
        &mut self,
        at: Instant,
        node: NodeIdx,
        term: u64,
        leader: MemberId,
        source: LeaderSource,
    ) -> Result<(), Violation> {
        let witness = self.leaders.entry(term).or_insert(LeaderWitness { leader, node, at, source });
        if witness.leader == leader {
            return Ok(());
        }
        Err(Violation {
            invariant: "S1",
            at,
            detail: format!(
                "term {term} has two leaders: {} (per {}'s {:?}, first at {}) and {leader} (per {node}'s {source:?})",
                witness.leader, witness.node, witness.source, witness.at
            ),
        })
    }

    /// Checks the latest step of `sim`; returns the first violation.
    pub fn try_check(&mut self, sim: &Sim) -> Result<(), Violation> {
        for record in sim.step_events() {
            if let Event::LeaderChanged { leader: Some(leader), term } = record.event {
                self.observe(record.at, record.node, term, leader, LeaderSource::Reported)?;
            }
        }
        let now = sim.now();
        self.seen.resize(sim.len(), None);
        for idx in sim.up_nodes() {
            let node = sim.node(idx).expect("up");
            let (term, leading, leader) = (node.term(), node.role() == Role::Leader, node.leader());
            let state = Some((node.id(), term, leading, leader));
            if self.seen[idx.0] == state {
                continue;
            }
            self.seen[idx.0] = state;
            if leading {
                self.observe(now, idx, term, node.id(), LeaderSource::Role)?;
            }
            if let Some(leader) = leader {
                self.observe(now, idx, term, leader, LeaderSource::Known)?;
            }
        }
        Ok(())
    }

    /// Checks the latest step of `sim`; panics with the evidence on a violation.
    pub fn check(&mut self, sim: &Sim) {
        if let Err(violation) = self.try_check(sim) {
            fail(sim, violation);
        }
    }
}

// ----- S3 ---------------------------------------------------------------------------------------

/// Where a checker saw an epoch's members.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViewSource {
    /// An `Event::Rebalance` of the node in this boot.
    Delivered {
        /// The node's boot id.
        boot_id: u64,
    },
    /// A committed `View` entry at this index of the node's log.
    Committed {
        /// The entry's index.
        index: u64,
    },
}

#[derive(Clone, Debug)]
struct ViewWitness {
    members: Vec<MemberId>,
    node: NodeIdx,
    at: Instant,
    source: ViewSource,
}

/// **S3**: for each epoch, every member that delivers it delivers the same
/// members; within one boot of a member, delivered epochs strictly increase.
///
/// Fed by the `Rebalance` events and by every `View` entry each log holds
/// at or below its commit index (scanned once per log, from where the
/// last step left it). Epochs are told apart per cluster uuid.
///
/// Uncommitted `View` entries are not held to S3: Raft may truncate them.
/// The checker still counts an uncommitted `View(e)` whose members differ
/// from another one seen for `e` ([`ViewAgreement::epochs_named_twice`]):
/// a leader that appended `View(e)` and lost its leadership before
/// replicating it leaves it behind for its successor to append another.
#[derive(Clone, Debug, Default)]
pub struct ViewAgreement {
    epochs: BTreeMap<(ClusterUuid, u64), ViewWitness>,
    /// Newest epoch delivered per (slot, member, boot).
    delivered: BTreeMap<(NodeIdx, MemberId, u64), (u64, Instant)>,
    /// Per log (durable id): committed entries checked up to here.
    scanned: BTreeMap<MemberId, u64>,
    /// First member set seen for an epoch in any log, committed or not.
    named: BTreeMap<(ClusterUuid, u64), Vec<MemberId>>,
    named_twice: u64,
    named_twice_example: Option<String>,
    unchanged: Unchanged,
}

impl ViewAgreement {
    /// A checker that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Epochs whose committed members are known so far.
    pub fn epochs(&self) -> usize {
        self.epochs.len()
    }

    /// How often a log held an uncommitted `View(e)` naming other members
    /// than another `View(e)` seen before, and the first such case.
    pub fn epochs_named_twice(&self) -> (u64, Option<&str>) {
        (self.named_twice, self.named_twice_example.as_deref())
    }

    /// `node` committed or delivered `view` in cluster `uuid`.
    pub fn observe_view(
        &mut self,
        at: Instant,
        node: NodeIdx,
        uuid: ClusterUuid,
        view: &View,
        source: ViewSource,
    ) -> Result<(), Violation> {
        let members: Vec<MemberId> = view.ids().collect();
        self.named.entry((uuid, view.epoch)).or_insert_with(|| members.clone());
        let witness = self.epochs.entry((uuid, view.epoch)).or_insert_with(|| ViewWitness {
            members: members.clone(),
            node,
            at,
            source,
        });
        if witness.members == members {
            return Ok(());
        }
        Err(Violation {
            invariant: "S3",
            at,
            detail: format!(
                "epoch {} names two member sets: {:?} ({} {:?} at {}) and {members:?} ({node} {source:?})",
                view.epoch, witness.members, witness.node, witness.source, witness.at
            ),
        })
    }

    /// `node`, running member `member` in boot `boot_id`, delivered `view`
    /// to its application (`Event::Rebalance`).
    pub fn observe_delivery(
        &mut self,
        at: Instant,
        node: NodeIdx,
        member: MemberId,
        boot_id: u64,
        uuid: ClusterUuid,
        view: &View,
    ) -> Result<(), Violation> {
        if let Some(&(previous, when)) = self.delivered.get(&(node, member, boot_id))
            && view.epoch <= previous
        {
            return Err(Violation {
                invariant: "S3",
                at,
                detail: format!(
                    "{node} ({member}, boot {boot_id}) delivered epoch {} after epoch {previous} (at {when}): \
                     delivered epochs must strictly increase within a boot",
                    view.epoch
                ),
            });
        }
        self.delivered.insert((node, member, boot_id), (view.epoch, at));
        self.observe_view(at, node, uuid, view, ViewSource::Delivered { boot_id })
    }

    /// `node`'s log (member `member`, cluster `uuid`) holds `entries`, whose
    /// first `commit_index` are committed. Entries at or below the index this
    /// log was checked up to before are skipped, so a caller may pass the
    /// whole log or only what follows [`ViewAgreement::scanned_up_to`].
    pub fn observe_log<'a>(
        &mut self,
        at: Instant,
        node: NodeIdx,
        member: MemberId,
        uuid: ClusterUuid,
        commit_index: u64,
        entries: impl IntoIterator<Item = &'a Entry>,
    ) -> Result<(), Violation> {
        let scanned = self.scanned_up_to(member);
        let mut checked = scanned;
        for entry in entries.into_iter().filter(|entry| entry.index > scanned) {
            if entry.index <= commit_index {
                checked = entry.index;
            }
            let Payload::View(view) = &entry.payload else { continue };
            if entry.index <= commit_index {
                self.observe_view(at, node, uuid, view, ViewSource::Committed { index: entry.index })?;
            } else {
                self.note_uncommitted(at, node, uuid, entry, view);
            }
        }
        self.scanned.insert(member, checked);
        Ok(())
    }

    /// The index up to which `member`'s committed log was checked.
    pub fn scanned_up_to(&self, member: MemberId) -> u64 {
        self.scanned.get(&member).copied().unwrap_or(0)
    }

    fn note_uncommitted(&mut self, at: Instant, node: NodeIdx, uuid: ClusterUuid, entry: &Entry, view: &View) {
        let first = self.named.entry((uuid, view.epoch)).or_insert_with(|| view.ids().collect());
        if !view.same_members(first) {
            self.named_twice += 1;
            if self.named_twice_example.is_none() {
                self.named_twice_example = Some(format!(
                    "at {at}, {node}'s uncommitted {} names other members than {first:?}",
                    describe(entry)
                ));
            }
        }
    }

    /// Checks the latest step of `sim`; returns the first violation.
    pub fn try_check(&mut self, sim: &Sim) -> Result<(), Violation> {
        for record in sim.step_events() {
            if let Event::Rebalance(view) = &record.event {
                let uuid = sim.node(record.node).map_or(ClusterUuid::NIL, |node| node.cluster_uuid());
                let member = sim.member_id(record.node);
                self.observe_delivery(record.at, record.node, member, record.boot_id, uuid, view)?;
            }
        }
        let now = sim.now();
        for idx in sim.up_nodes() {
            let node = sim.node(idx).expect("up");
            if self.unchanged.check(idx, node) {
                continue;
            }
            let from = self.scanned_up_to(node.id()) + 1;
            self.observe_log(now, idx, node.id(), node.cluster_uuid(), node.commit_index(), node.log_entries(from))
                .inspect_err(|_| self.unchanged.forget(idx))?;
        }
        Ok(())
    }

    /// Checks the latest step of `sim`; panics with the evidence on a violation.
    pub fn check(&mut self, sim: &Sim) {
        if let Err(violation) = self.try_check(sim) {
            fail(sim, violation);
        }
    }
}

// ----- S4 ---------------------------------------------------------------------------------------

/// What [`StableOnce`] remembers of one log (one durable id).
#[derive(Clone, Debug, Default)]
struct LogScan {
    /// Committed entries are checked up to here.
    committed_up_to: u64,
    /// Committed `Stable` entries: epoch ⇒ (index, term).
    stable: BTreeMap<u64, (u64, u64)>,
    /// The epoch of the newest committed `View` scanned (`Some(None)`: none
    /// before it), while known: `None` until the scan has seen index 1 or a
    /// `View`, and again after a gap left by compaction until the next `View`.
    newest_view: Option<Option<u64>>,
    /// First index of each term among the committed entries scanned.
    term_starts: BTreeMap<u64, u64>,
}

/// **S4**: at most one `Stable(e)` per epoch in any log, appended by a
/// leader only after an own-term commit and while `e` was its newest view;
/// `ClusterStable` reported only by a leader, at most once per term and epoch.
///
/// What it checks, where checkable:
/// - no log ever holds two `Stable(e)` entries for one epoch, committed or
///   not, and the committed sequence holds at most one (across all logs);
/// - the newest `View` before a `Stable(e)` in a log is `View(e)` (unknown
///   after compaction until the next `View`);
/// - when a leader's log first shows a `Stable` of its own term, its commit
///   index has reached the first entry of that term (seen at the end of the
///   step, so a commit in the same step satisfies it);
/// - `ClusterStable { epoch }` comes from a node whose own latest
///   `LeaderChanged` names itself, at most once per (cluster, term, epoch),
///   and only once a `Stable(epoch)` is committed in its log.
///
/// Not checkable from outside: that every member of view `e` acked `e`
/// (acks are inputs, not events).
#[derive(Clone, Debug, Default)]
pub struct StableOnce {
    logs: BTreeMap<MemberId, LogScan>,
    /// The committed `Stable` of each epoch: (index, term, first seen on, at).
    committed: BTreeMap<(ClusterUuid, u64), (u64, u64, NodeIdx, Instant)>,
    /// `Stable` entries already seen in their own leader's log: (term, index).
    appended: BTreeSet<(u64, u64)>,
    /// `ClusterStable` reports: (cluster, term, epoch) ⇒ (reporter, at).
    reported: BTreeMap<(ClusterUuid, u64, u64), (NodeIdx, Instant)>,
    /// The leader each (slot, boot) last reported with `LeaderChanged`.
    known_leader: BTreeMap<(NodeIdx, u64), (Option<MemberId>, u64)>,
    unchanged: Unchanged,
}

impl StableOnce {
    /// A checker that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Epochs with a committed `Stable` so far.
    pub fn stable_epochs(&self) -> usize {
        self.committed.len()
    }

    /// `ClusterStable` reports so far.
    pub fn reports(&self) -> usize {
        self.reported.len()
    }

    /// The index up to which `member`'s committed log was checked.
    pub fn scanned_up_to(&self, member: MemberId) -> u64 {
        self.logs.get(&member).map_or(0, |scan| scan.committed_up_to)
    }

    /// `node`'s log (member `member`, cluster `uuid`) holds `entries`, whose
    /// first `commit_index` are committed; `leading` is the term the node
    /// leads, if it does. Committed entries checked before are skipped, so a
    /// caller may pass the whole log or only what follows
    /// [`StableOnce::scanned_up_to`]; the uncommitted tail is checked whole
    /// each time (it may have been truncated and rewritten).
    #[allow(clippy::too_many_arguments, reason = "one observation of one log")]
    pub fn observe_log<'a>(
        &mut self,
        at: Instant,
        node: NodeIdx,
        member: MemberId,
        uuid: ClusterUuid,
        commit_index: u64,
        leading: Option<u64>,
        entries: impl IntoIterator<Item = &'a Entry>,
    ) -> Result<(), Violation> {
        let violation = |detail: String| Violation { invariant: "S4", at, detail };
        let scan = self.logs.entry(member).or_default();
        // The tail's Stable entries and term starts, on top of the committed scan.
        let mut tail_stable: BTreeMap<u64, u64> = BTreeMap::new();
        let mut tail_term_starts: BTreeMap<u64, u64> = BTreeMap::new();
        // The newest View so far in log order, if known.
        let mut newest = scan.newest_view;
        let mut expected_next = scan.committed_up_to + 1;
        for entry in entries {
            if entry.index <= scan.committed_up_to {
                continue;
            }
            let committed = entry.index <= commit_index;
            if entry.index == 1 {
                newest = Some(None);
            } else if entry.index != expected_next {
                // A gap: compaction (or an installed snapshot) hid entries.
                newest = None;
            }
            expected_next = entry.index + 1;
            if committed {
                scan.term_starts.entry(entry.term).or_insert(entry.index);
            } else if !scan.term_starts.contains_key(&entry.term) {
                tail_term_starts.entry(entry.term).or_insert(entry.index);
            }
            match &entry.payload {
                Payload::View(view) => newest = Some(Some(view.epoch)),
                &Payload::Stable { epoch } => {
                    let earlier = scan.stable.get(&epoch).map(|&(index, _)| index).or(tail_stable.get(&epoch).copied());
                    if let Some(earlier) = earlier {
                        return Err(violation(format!(
                            "{node}'s log ({member}) holds two Stable({epoch}): #{earlier} and {}",
                            describe(entry)
                        )));
                    }
                    if let Some(newest) = newest
                        && newest != Some(epoch)
                    {
                        return Err(violation(format!(
                            "{node}'s log ({member}) holds {} after view {newest:?} instead of View({epoch}): \
                             Stable(e) must follow View(e) while it is the newest view",
                            describe(entry)
                        )));
                    }
                    if leading == Some(entry.term) && self.appended.insert((entry.term, entry.index)) {
                        let start = scan.term_starts.get(&entry.term).or(tail_term_starts.get(&entry.term));
                        if let Some(&start) = start
                            && commit_index < start
                        {
                            return Err(violation(format!(
                                "leader {node} ({member}) appended {} with commit index {commit_index}, before \
                                 committing #{start}, the first entry of its term",
                                describe(entry)
                            )));
                        }
                    }
                    if committed {
                        scan.stable.insert(epoch, (entry.index, entry.term));
                        let first = self.committed.entry((uuid, epoch)).or_insert((entry.index, entry.term, node, at));
                        if (first.0, first.1) != (entry.index, entry.term) {
                            return Err(violation(format!(
                                "two committed Stable({epoch}): #{} t{} (in {}'s log, at {}) and {} in {node}'s",
                                first.0,
                                first.1,
                                first.2,
                                first.3,
                                describe(entry)
                            )));
                        }
                    } else {
                        tail_stable.insert(epoch, entry.index);
                    }
                }
                _ => {}
            }
            if committed {
                scan.committed_up_to = entry.index;
                scan.newest_view = newest;
            }
        }
        Ok(())
    }

    /// `node`, in boot `boot_id`, reported `Event::LeaderChanged`.
    pub fn observe_leader_changed(&mut self, node: NodeIdx, boot_id: u64, leader: Option<MemberId>, term: u64) {
        self.known_leader.insert((node, boot_id), (leader, term));
    }

    /// `node`, running member `member` in boot `boot_id` of cluster `uuid`,
    /// reported `Event::ClusterStable { epoch }`.
    pub fn observe_cluster_stable(
        &mut self,
        at: Instant,
        node: NodeIdx,
        member: MemberId,
        boot_id: u64,
        uuid: ClusterUuid,
        epoch: u64,
    ) -> Result<(), Violation> {
        let violation = |detail: String| Violation { invariant: "S4", at, detail };
        let (leader, term) = self.known_leader.get(&(node, boot_id)).copied().unwrap_or((None, 0));
        if leader != Some(member) {
            return Err(violation(format!(
                "{node} ({member}, boot {boot_id}) reported ClusterStable {{ epoch: {epoch} }} while not leading: \
                 its latest LeaderChanged names {leader:?} in term {term}"
            )));
        }
        if let Some((first, when)) = self.reported.insert((uuid, term, epoch), (node, at)) {
            return Err(violation(format!(
                "ClusterStable {{ epoch: {epoch} }} reported twice in term {term}: by {first} at {when} and by {node}"
            )));
        }
        let scan = self.logs.get(&member);
        let committed = scan.is_some_and(|scan| scan.stable.contains_key(&epoch));
        let checkable = scan.is_some_and(|scan| scan.newest_view.is_some());
        if checkable && !committed {
            return Err(violation(format!(
                "{node} ({member}) reported ClusterStable {{ epoch: {epoch} }} with no Stable({epoch}) committed in its log"
            )));
        }
        Ok(())
    }

    /// Checks the latest step of `sim`; returns the first violation.
    pub fn try_check(&mut self, sim: &Sim) -> Result<(), Violation> {
        let now = sim.now();
        for idx in sim.up_nodes() {
            let node = sim.node(idx).expect("up");
            if self.unchanged.check(idx, node) {
                continue;
            }
            let leading = (node.role() == Role::Leader).then(|| node.term());
            let from = self.scanned_up_to(node.id()) + 1;
            self.observe_log(
                now,
                idx,
                node.id(),
                node.cluster_uuid(),
                node.commit_index(),
                leading,
                node.log_entries(from),
            )
            .inspect_err(|_| self.unchanged.forget(idx))?;
        }
        for record in sim.step_events() {
            match &record.event {
                Event::LeaderChanged { leader, term } => {
                    self.observe_leader_changed(record.node, record.boot_id, *leader, *term)
                }
                Event::ClusterStable(view) => {
                    let epoch = view.epoch;
                    let uuid = sim.node(record.node).map_or(ClusterUuid::NIL, |node| node.cluster_uuid());
                    let member = sim.member_id(record.node);
                    self.observe_cluster_stable(record.at, record.node, member, record.boot_id, uuid, epoch)?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Checks the latest step of `sim`; panics with the evidence on a violation.
    pub fn check(&mut self, sim: &Sim) {
        if let Err(violation) = self.try_check(sim) {
            fail(sim, violation);
        }
    }
}

// ----- S6 ---------------------------------------------------------------------------------------

/// **S6**, gated: no live member is ever declared dead, checked only while
/// it applies. It switches itself off for good at the first step that finds
/// a fault in [`Sim::faults`] (crash, restart, pause, partition, cut,
/// isolation) or datagram loss above 10 %, since a suspicion begun then may
/// still end in a declaration afterwards. Latency spikes are not faults the
/// driver records: a test that raises latency must not rely on it.
#[derive(Clone, Debug, Default)]
pub struct NoLiveMemberFailed {
    off_since: Option<Instant>,
}

impl NoLiveMemberFailed {
    /// Highest loss under which S6 must hold.
    pub const MAX_LOSS: f64 = 0.10;

    /// A checker that is on.
    pub fn new() -> Self {
        Self::default()
    }

    /// Since when it is off, if it is.
    pub fn off_since(&self) -> Option<Instant> {
        self.off_since
    }

    /// Checks the latest step of `sim`; returns the first violation.
    pub fn try_check(&mut self, sim: &Sim) -> Result<(), Violation> {
        if self.off_since.is_some() {
            return Ok(());
        }
        if !sim.faults().is_empty() || sim.net().loss > Self::MAX_LOSS {
            self.off_since = Some(sim.now());
            return Ok(());
        }
        match live_members_declared_failed(sim).next() {
            None => Ok(()),
            Some(record) => {
                let subject = record.subject().and_then(|id| sim.node_of(id));
                Err(Violation {
                    invariant: "S6",
                    at: record.at,
                    detail: format!(
                        "{} declared {subject:?} dead while it is up, with no fault and loss {}: {:?}",
                        record.node,
                        sim.net().loss,
                        record.event
                    ),
                })
            }
        }
    }

    /// Checks the latest step of `sim`; panics with the evidence on a violation.
    pub fn check(&mut self, sim: &Sim) {
        if let Err(violation) = self.try_check(sim) {
            fail(sim, violation);
        }
    }
}

// ----- L1 ---------------------------------------------------------------------------------------

/// What [`Liveness`] reads of one live member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberState {
    /// Its slot.
    pub node: NodeIdx,
    /// Its durable id; `None` while it is down.
    pub id: Option<MemberId>,
    /// Up and not paused.
    pub running: bool,
    /// Its `role()` is `Leader`.
    pub leading: bool,
    /// Its `leader()`.
    pub leader: Option<MemberId>,
    /// Epoch and members of its newest committed view.
    pub view: Option<(u64, Vec<MemberId>)>,
    /// Its `is_stable()`.
    pub stable: bool,
    /// Its `lagging()` (non-empty only on a leader).
    pub lagging: Vec<MemberId>,
}

impl MemberState {
    /// Reads slot `idx` of `sim`.
    pub fn of(sim: &Sim, idx: NodeIdx) -> MemberState {
        match sim.node(idx) {
            None => MemberState {
                node: idx,
                id: None,
                running: false,
                leading: false,
                leader: None,
                view: None,
                stable: false,
                lagging: Vec::new(),
            },
            Some(node) => MemberState {
                node: idx,
                id: Some(node.id()),
                running: sim.is_running(idx),
                leading: node.role() == Role::Leader,
                leader: node.leader(),
                view: node.view().map(|view| (view.epoch, view.ids().collect())),
                stable: node.is_stable(),
                lagging: node.lagging().collect(),
            },
        }
    }
}

/// **L1**: after the faults stop, within a bound the scenario states, one
/// leader known to all live members, one view of exactly the live
/// non-lagging members on all of them, and `Stable` committed for it.
///
/// "Live" is what the test says: the slots it expects up and running once
/// the faults stopped (members that left gracefully excluded). "Lagging" is
/// what that leader holds lagging.
#[derive(Clone, Debug)]
pub struct Liveness {
    live: Vec<NodeIdx>,
}

impl Liveness {
    /// L1 over these live members.
    pub fn new(live: &[NodeIdx]) -> Self {
        Liveness { live: live.to_vec() }
    }

    /// Whether L1 holds over these member states; if not, the first reason.
    pub fn check_states(states: &[MemberState]) -> Result<(), String> {
        let Some(first) = states.first() else {
            return Err("no live members".into());
        };
        if let Some(down) = states.iter().find(|state| !state.running) {
            return Err(format!("{} is not running", down.node));
        }
        let leader = first.leader.ok_or_else(|| format!("{} knows no leader", first.node))?;
        if let Some(other) = states.iter().find(|state| state.leader != Some(leader)) {
            return Err(format!("{} knows leader {leader}, {} knows {:?}", first.node, other.node, other.leader));
        }
        let Some(leading) = states.iter().find(|state| state.id == Some(leader)) else {
            return Err(format!("the leader everyone knows, {leader}, is not a live member"));
        };
        if !leading.leading {
            return Err(format!("{} ({leader}) is known as leader but does not lead", leading.node));
        }
        let mut expected: Vec<MemberId> =
            states.iter().filter_map(|state| state.id).filter(|id| !leading.lagging.contains(id)).collect();
        expected.sort();
        let view = leading.view.as_ref().ok_or_else(|| format!("the leader {} has no view", leading.node))?;
        if view.1 != expected {
            return Err(format!(
                "the leader {}'s view {} holds {:?}, the live non-lagging members are {expected:?} (lagging: {:?})",
                leading.node, view.0, view.1, leading.lagging
            ));
        }
        if let Some(other) = states.iter().find(|state| state.view.as_ref() != Some(view)) {
            return Err(format!(
                "{} holds view {:?}, the leader {} holds epoch {}",
                other.node,
                other.view.as_ref().map(|view| view.0),
                leading.node,
                view.0
            ));
        }
        if let Some(unstable) = states.iter().find(|state| !state.stable) {
            return Err(format!("{} has no Stable({}) committed", unstable.node, view.0));
        }
        Ok(())
    }

    /// Whether L1 holds in `sim` now; if not, the first reason.
    pub fn check(&self, sim: &Sim) -> Result<(), String> {
        let states: Vec<MemberState> = self.live.iter().map(|&idx| MemberState::of(sim, idx)).collect();
        Self::check_states(&states)
    }

    /// Runs `sim` until L1 holds and returns how long that took; panics with
    /// the last reason, the time and the seed if it does not within `bound`.
    pub fn run(&self, sim: &mut Sim, bound: Duration) -> Duration {
        let start = sim.now();
        if sim.run_until(bound, |sim| self.check(sim).is_ok()) {
            return sim.now().saturating_duration_since(start);
        }
        let reason = self.check(sim).expect_err("run_until said it does not hold");
        panic!(
            "L1 violated: not reached within {bound:?} from {start}: at {}, {reason} \
             (replay: Sim::new({}))\n{}",
            sim.now(),
            sim.seed(),
            describe_cluster(sim)
        );
    }
}

/// One line per slot of `sim` (role, term, leader, commit, voters, learners
/// and newest view, by slot name where a slot holds the id), for the evidence
/// of a liveness failure.
pub fn describe_cluster(sim: &Sim) -> String {
    let name = |id: MemberId| sim.node_of(id).map_or_else(|| format!("{id}(gone)"), |idx| idx.to_string());
    let names = |ids: &mut dyn Iterator<Item = MemberId>| ids.map(name).collect::<Vec<_>>().join(" ");
    let mut lines = Vec::new();
    for idx in sim.nodes() {
        let Some(node) = sim.node(idx) else {
            lines.push(format!("  {idx}: down"));
            continue;
        };
        let configuration = node.configuration();
        lines.push(format!(
            "  {idx} ({}, boot {}{}): {:?} term {} leader {} commit {} voters [{}] learners [{}] view {} stable {}",
            node.id(),
            node.boot_id(),
            if sim.is_paused(idx) { ", paused" } else { "" },
            node.role(),
            node.term(),
            node.leader().map_or_else(|| "none".into(), name),
            node.commit_index(),
            names(&mut configuration.voters.iter().copied()),
            names(&mut configuration.learners.iter().copied()),
            node.view().map_or_else(|| "none".into(), |view| format!("{} [{}]", view.epoch, names(&mut view.ids()))),
            node.is_stable(),
        ));
    }
    lines.join("\n")
}

// ----- all of them ------------------------------------------------------------------------------

/// The safety checkers together, as one step hook.
#[derive(Clone, Debug, Default)]
pub struct Invariants {
    /// S1.
    pub s1: OneLeaderPerTerm,
    /// S3.
    pub s3: ViewAgreement,
    /// S4.
    pub s4: StableOnce,
    /// S6, gated.
    pub s6: NoLiveMemberFailed,
}

impl Invariants {
    /// Checkers that have seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks the latest step of `sim` against every invariant; panics with
    /// the evidence on the first violation.
    pub fn check(&mut self, sim: &Sim) {
        self.s1.check(sim);
        self.s3.check(sim);
        self.s4.check(sim);
        self.s6.check(sim);
    }

    /// Installs the checkers as `sim`'s step hook (replacing any other) and
    /// checks the current state once; the handle lets the test read them.
    pub fn install(self, sim: &mut Sim) -> Rc<RefCell<Invariants>> {
        let shared = Rc::new(RefCell::new(self));
        shared.borrow_mut().check(sim);
        let hook = Rc::clone(&shared);
        sim.set_step_hook(move |sim| hook.borrow_mut().check(sim));
        shared
    }
}

#[cfg(test)]
mod tests {
    //! Each checker on synthetic histories: it catches a violation and
    //! accepts a good history.

    use super::*;
    use crate::raft::Configuration;
    use crate::view::ViewMember;

    const A: NodeIdx = NodeIdx(0);
    const B: NodeIdx = NodeIdx(1);
    const C: NodeIdx = NodeIdx(2);
    const UUID: ClusterUuid = ClusterUuid([9; 16]);

    fn id(n: u128) -> MemberId {
        MemberId::from_u128(n)
    }

    fn at(millis: u64) -> Instant {
        Instant::from_nanos(millis * 1_000_000)
    }

    fn view(epoch: u64, members: &[u128]) -> View {
        let members = members
            .iter()
            .map(|&n| ViewMember {
                id: id(n),
                name: format!("m{n}").parse().unwrap(),
                addr: crate::testing::default_addr(NodeIdx(n as usize)),
                capacity: 1,
            })
            .collect();
        View::new(epoch, members, Vec::new())
    }

    /// A log from index 1: `(term, payload)` per entry.
    fn log(entries: &[(u64, Payload)]) -> Vec<Entry> {
        (1u64..)
            .zip(entries)
            .map(|(index, (term, payload))| Entry { term: *term, index, payload: payload.clone() })
            .collect()
    }

    fn config() -> Payload {
        Payload::Config(Configuration::of_voters([id(1), id(2), id(3)]))
    }

    fn stable(epoch: u64) -> Payload {
        Payload::Stable { epoch }
    }

    #[test]
    fn s1_accepts_one_leader_per_term_from_every_source() {
        let mut s1 = OneLeaderPerTerm::new();
        assert_eq!(s1.observe(at(1), A, 1, id(1), LeaderSource::Role), Ok(()));
        assert_eq!(s1.observe(at(2), B, 1, id(1), LeaderSource::Known), Ok(()));
        assert_eq!(s1.observe(at(3), C, 1, id(1), LeaderSource::Reported), Ok(()));
        // A later term may have another leader.
        assert_eq!(s1.observe(at(4), B, 2, id(2), LeaderSource::Role), Ok(()));
        assert_eq!(s1.terms(), 2);
        assert_eq!(s1.leader_of(2), Some(id(2)));
    }

    #[test]
    fn s1_catches_two_leaders_in_one_term() {
        let mut s1 = OneLeaderPerTerm::new();
        s1.observe(at(1), A, 3, id(1), LeaderSource::Role).unwrap();
        let violation = s1.observe(at(5), C, 3, id(2), LeaderSource::Reported).unwrap_err();
        assert_eq!(violation.invariant, "S1");
        assert_eq!(violation.at, at(5));
        assert!(violation.detail.contains("term 3 has two leaders"), "{violation}");
        assert!(violation.detail.contains("n0") && violation.detail.contains("n2"), "names the witnesses: {violation}");
        // A follower naming another leader for the term is caught the same way.
        let violation = s1.observe(at(6), B, 3, id(3), LeaderSource::Known).unwrap_err();
        assert!(violation.to_string().starts_with("S1 violated at 0.006s"), "{violation}");
    }

    #[test]
    fn s3_accepts_the_same_members_everywhere_and_increasing_deliveries() {
        let mut s3 = ViewAgreement::new();
        let entries = log(&[(0, config()), (1, Payload::Noop), (1, Payload::View(view(1, &[1, 2, 3])))]);
        s3.observe_log(at(1), A, id(1), UUID, 3, &entries).unwrap();
        s3.observe_log(at(1), B, id(2), UUID, 2, &entries).unwrap();
        assert_eq!(s3.scanned_up_to(id(2)), 2, "only the committed part is checked");
        s3.observe_delivery(at(2), A, id(1), 1, UUID, &view(1, &[1, 2, 3])).unwrap();
        s3.observe_delivery(at(3), A, id(1), 1, UUID, &view(2, &[1, 2])).unwrap();
        // A new boot delivers the current view again.
        s3.observe_delivery(at(4), A, id(1), 2, UUID, &view(2, &[1, 2])).unwrap();
        // Another cluster may number its views alike.
        s3.observe_delivery(at(4), C, id(3), 1, ClusterUuid([1; 16]), &view(1, &[3])).unwrap();
        assert_eq!(s3.epochs(), 3);
    }

    #[test]
    fn s3_catches_an_epoch_delivered_with_other_members() {
        let mut s3 = ViewAgreement::new();
        s3.observe_delivery(at(1), A, id(1), 1, UUID, &view(4, &[1, 2, 3])).unwrap();
        let violation = s3.observe_delivery(at(2), B, id(2), 1, UUID, &view(4, &[1, 2])).unwrap_err();
        assert_eq!(violation.invariant, "S3");
        assert!(violation.detail.contains("epoch 4 names two member sets"), "{violation}");
    }

    #[test]
    fn s3_catches_a_committed_view_entry_that_disagrees_with_a_delivery() {
        let mut s3 = ViewAgreement::new();
        s3.observe_delivery(at(1), A, id(1), 1, UUID, &view(1, &[1, 2, 3])).unwrap();
        let entries = log(&[(0, config()), (2, Payload::View(view(1, &[1, 3])))]);
        // Uncommitted, it may still be truncated: counted, not a violation.
        s3.observe_log(at(2), C, id(3), UUID, 1, &entries).unwrap();
        assert_eq!(s3.epochs_named_twice().0, 1);
        assert!(s3.epochs_named_twice().1.unwrap().contains("#2 t2 view(1"));
        // Committed, it is.
        let violation = s3.observe_log(at(3), C, id(3), UUID, 2, &entries).unwrap_err();
        assert!(violation.detail.contains("Committed { index: 2 }"), "{violation}");
    }

    #[test]
    fn s3_catches_epochs_going_backwards_within_one_boot() {
        let mut s3 = ViewAgreement::new();
        s3.observe_delivery(at(1), A, id(1), 7, UUID, &view(5, &[1, 2])).unwrap();
        let violation = s3.observe_delivery(at(2), A, id(1), 7, UUID, &view(5, &[1, 2])).unwrap_err();
        assert!(violation.detail.contains("strictly increase"), "{violation}");
        let violation = s3.observe_delivery(at(2), A, id(1), 7, UUID, &view(4, &[1, 2])).unwrap_err();
        assert!(violation.detail.contains("epoch 4 after epoch 5"), "{violation}");
    }

    /// A good history: bootstrap, a noop, a view, its Stable; then a new
    /// leader, a new view and its Stable.
    fn good_log() -> Vec<Entry> {
        log(&[
            (0, config()),
            (1, Payload::Noop),
            (1, Payload::View(view(1, &[1, 2, 3]))),
            (1, stable(1)),
            (2, Payload::Noop),
            (2, Payload::View(view(2, &[1, 2]))),
            (2, stable(2)),
        ])
    }

    #[test]
    fn s4_accepts_one_stable_per_epoch_after_its_view() {
        let mut s4 = StableOnce::new();
        let entries = good_log();
        // Seen growing on the leader of term 2, committed bit by bit.
        s4.observe_log(at(1), A, id(1), UUID, 4, Some(1), &entries[..4]).unwrap();
        s4.observe_log(at(2), A, id(1), UUID, 5, Some(2), &entries[..6]).unwrap();
        s4.observe_log(at(3), A, id(1), UUID, 6, Some(2), &entries).unwrap();
        s4.observe_log(at(4), A, id(1), UUID, 7, Some(2), &entries).unwrap();
        // And on a follower in one go.
        s4.observe_log(at(5), B, id(2), UUID, 7, None, &entries).unwrap();
        assert_eq!(s4.stable_epochs(), 2);
        s4.observe_leader_changed(A, 1, Some(id(1)), 2);
        s4.observe_cluster_stable(at(6), A, id(1), 1, UUID, 2).unwrap();
        // A later term may report the same epoch again (at least once across leader changes).
        s4.observe_leader_changed(A, 1, Some(id(1)), 3);
        s4.observe_cluster_stable(at(7), A, id(1), 1, UUID, 2).unwrap();
        assert_eq!(s4.reports(), 2);
    }

    #[test]
    fn s4_catches_two_stables_for_one_epoch_in_one_log() {
        let mut s4 = StableOnce::new();
        let mut entries = good_log();
        entries.push(Entry { term: 3, index: 8, payload: stable(2) });
        // Even uncommitted, a second Stable(2) in the log is a violation.
        let violation = s4.observe_log(at(1), B, id(2), UUID, 7, None, &entries).unwrap_err();
        assert_eq!(violation.invariant, "S4");
        assert!(violation.detail.contains("two Stable(2): #7 and #8 t3 stable(2)"), "{violation}");
    }

    #[test]
    fn s4_catches_two_committed_stables_for_one_epoch_across_logs() {
        let mut s4 = StableOnce::new();
        let entries = good_log();
        s4.observe_log(at(1), A, id(1), UUID, 7, None, &entries).unwrap();
        // Another log committed Stable(2) at another index: the committed sequences diverged.
        let mut other = entries[..6].to_vec();
        other.push(Entry { term: 2, index: 7, payload: Payload::Noop });
        other.push(Entry { term: 2, index: 8, payload: stable(2) });
        let violation = s4.observe_log(at(2), B, id(2), UUID, 8, None, &other).unwrap_err();
        assert!(violation.detail.contains("two committed Stable(2): #7 t2"), "{violation}");
    }

    #[test]
    fn s4_catches_a_stable_without_its_view_as_the_newest() {
        let mut s4 = StableOnce::new();
        let entries = log(&[(0, config()), (1, Payload::Noop), (1, stable(1))]);
        let violation = s4.observe_log(at(1), A, id(1), UUID, 1, Some(1), &entries).unwrap_err();
        assert!(violation.detail.contains("after view None instead of View(1)"), "{violation}");
        let mut s4 = StableOnce::new();
        let entries = log(&[
            (0, config()),
            (1, Payload::View(view(1, &[1, 2]))),
            (1, Payload::View(view(2, &[1]))),
            (1, stable(1)),
        ]);
        let violation = s4.observe_log(at(1), A, id(1), UUID, 3, None, &entries).unwrap_err();
        assert!(violation.detail.contains("after view Some(2)"), "{violation}");
    }

    #[test]
    fn s4_does_not_judge_view_order_across_a_compaction_gap() {
        let mut s4 = StableOnce::new();
        // The log starts after a snapshot: the view before #11 is unknown.
        let entries = vec![Entry { term: 4, index: 11, payload: stable(6) }];
        s4.observe_log(at(1), A, id(1), UUID, 11, None, &entries).unwrap();
    }

    #[test]
    fn s4_catches_a_stable_appended_before_an_own_term_commit() {
        let mut s4 = StableOnce::new();
        let entries = log(&[
            (0, config()),
            (1, Payload::Noop),
            (1, Payload::View(view(1, &[1, 2, 3]))),
            (2, Payload::Noop),
            (2, stable(1)),
        ]);
        // The leader of term 2 holds its Stable(1) while only #3 is committed: #4, its term's first, is not.
        let violation = s4.observe_log(at(1), A, id(1), UUID, 3, Some(2), &entries).unwrap_err();
        assert!(violation.detail.contains("before committing #4"), "{violation}");
        // With #4 committed it is fine.
        let mut s4 = StableOnce::new();
        s4.observe_log(at(1), A, id(1), UUID, 4, Some(2), &entries).unwrap();
    }

    #[test]
    fn s4_catches_cluster_stable_from_a_non_leader_or_twice_in_a_term() {
        let mut s4 = StableOnce::new();
        s4.observe_log(at(1), A, id(1), UUID, 7, Some(2), &good_log()).unwrap();
        // n0 never reported itself as leader in this boot.
        let violation = s4.observe_cluster_stable(at(2), A, id(1), 1, UUID, 2).unwrap_err();
        assert!(violation.detail.contains("while not leading"), "{violation}");
        // It followed n1 in term 2.
        s4.observe_leader_changed(A, 1, Some(id(2)), 2);
        assert!(s4.observe_cluster_stable(at(2), A, id(1), 1, UUID, 2).is_err());
        // Leading in term 2: once is fine, twice is not.
        s4.observe_leader_changed(A, 1, Some(id(1)), 2);
        s4.observe_cluster_stable(at(3), A, id(1), 1, UUID, 2).unwrap();
        let violation = s4.observe_cluster_stable(at(4), A, id(1), 1, UUID, 2).unwrap_err();
        assert!(violation.detail.contains("reported twice in term 2"), "{violation}");
        // A restart (new boot) starts without a leader.
        assert!(s4.observe_cluster_stable(at(5), A, id(1), 2, UUID, 2).is_err());
    }

    #[test]
    fn s4_catches_cluster_stable_before_its_stable_committed() {
        let mut s4 = StableOnce::new();
        s4.observe_log(at(1), A, id(1), UUID, 6, Some(2), &good_log()).unwrap();
        s4.observe_leader_changed(A, 1, Some(id(1)), 2);
        let violation = s4.observe_cluster_stable(at(2), A, id(1), 1, UUID, 2).unwrap_err();
        assert!(violation.detail.contains("no Stable(2) committed"), "{violation}");
    }

    fn member(node: usize, leader: u128, view_members: &[u128]) -> MemberState {
        MemberState {
            node: NodeIdx(node),
            id: Some(id(node as u128 + 1)),
            running: true,
            leading: node as u128 + 1 == leader,
            leader: Some(id(leader)),
            view: Some((3, view_members.iter().map(|&n| id(n)).collect())),
            stable: true,
            lagging: Vec::new(),
        }
    }

    #[test]
    fn l1_accepts_one_leader_one_view_of_the_live_members_and_stable() {
        let states: Vec<MemberState> = (0..3).map(|n| member(n, 2, &[1, 2, 3])).collect();
        assert_eq!(Liveness::check_states(&states), Ok(()));
        // A member the leader holds lagging is rightly out of the view.
        let mut states: Vec<MemberState> = (0..3).map(|n| member(n, 2, &[1, 2])).collect();
        states[1].lagging = vec![id(3)];
        assert_eq!(Liveness::check_states(&states), Ok(()));
    }

    #[test]
    fn l1_catches_each_way_of_not_having_converged() {
        let good: Vec<MemberState> = (0..3).map(|n| member(n, 2, &[1, 2, 3])).collect();
        let broken = |change: &dyn Fn(&mut Vec<MemberState>)| {
            let mut states = good.clone();
            change(&mut states);
            Liveness::check_states(&states).unwrap_err()
        };
        assert!(broken(&|s| s[0].leader = None).contains("knows no leader"));
        assert!(broken(&|s| s[2].leader = Some(id(3))).contains("n2 knows Some"));
        assert!(broken(&|s| s[1].leading = false).contains("does not lead"));
        assert!(broken(&|s| s[1].view = Some((3, vec![id(1), id(2)]))).contains("live non-lagging members are"));
        assert!(broken(&|s| s[0].view = Some((2, vec![id(1), id(2), id(3)]))).contains("n0 holds view Some(2)"));
        assert!(broken(&|s| s[2].stable = false).contains("n2 has no Stable(3)"));
        assert!(broken(&|s| s[2].running = false).contains("n2 is not running"));
        assert!(broken(&|s| s.iter_mut().for_each(|s| s.leader = Some(id(9)))).contains("not a live member"));
        assert!(Liveness::check_states(&[]).is_err());
    }

    #[test]
    fn the_checkers_accept_a_real_cluster_forming_and_panic_with_the_seed_on_a_violation() {
        use core::num::NonZeroU32;
        let mut config = crate::Config::fast("invariants");
        config.bootstrap = crate::Bootstrap::Expect(NonZeroU32::new(3).unwrap());
        let mut sim = Sim::new(5);
        let nodes = sim.add_nodes(3, &config);
        sim.join_all(&nodes, nodes[0]);
        let invariants = Invariants::new().install(&mut sim);
        Liveness::new(&nodes).run(&mut sim, Duration::from_secs(10));
        sim.run_for(Duration::from_secs(1));
        {
            let invariants = invariants.borrow();
            assert!(invariants.s1.terms() >= 1 && invariants.s3.epochs() >= 1, "{invariants:?}");
            assert!(invariants.s4.stable_epochs() >= 1 && invariants.s4.reports() >= 1, "{invariants:?}");
            assert!(invariants.s6.off_since().is_none(), "no fault struck");
        }
        // A planted history: another member claimed the current term.
        let term = sim.node(nodes[0]).unwrap().term();
        let mut s1 = invariants.borrow().s1.clone();
        s1.observe(sim.now(), nodes[1], term, id(77), LeaderSource::Known).unwrap_err();
        let mut planted = invariants.borrow().s1.clone();
        planted
            .leaders
            .insert(term, LeaderWitness { leader: id(77), node: B, at: sim.now(), source: LeaderSource::Role });
        planted.seen.clear(); // make it look at every node again
        let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| planted.check(&sim))).unwrap_err();
        let message = panic.downcast_ref::<String>().unwrap();
        assert!(message.contains("S1 violated") && message.contains("replay: Sim::new(5)"), "{message}");
    }
}
