//! What connects the sub-machines, after every input (DESIGN §3.2–3.3).
//!
//! - committed entries reach the views; a newer view is delivered to the
//!   application; a leader reports `ClusterStable`; the log is compacted;
//! - a leader change is reported, and an unconfirmed ack goes to the new leader;
//! - a member without Raft state bootstraps by the agreement rule, or adopts
//!   the uuid of the cluster that answers it;
//! - the leader reconciles the voter set and the views with membership;
//! - a graceful leave hands over leadership and waits for its removal from the
//!   configuration to commit before the member reports `Left`.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use crate::bootstrap::{self, ClusterClaim, Decision};
use crate::config::Bootstrap;
use crate::id::{ClusterUuid, MemberId};
use crate::membership::{Message as MembershipMessage, State as MemberState};
use crate::metrics::Rejection;
use crate::node::{Command, CoreState, Event, Node, PersistState};
use crate::raft::voters::{self, Candidate};
use crate::raft::{Configuration, Directory, Payload, Role};
use crate::rebalance::{Message as ViewMessage, Proposal};
use crate::teeth::{Plant, planted};
use crate::time::Instant;
use crate::timer::Timer;
use crate::wire::{Body, Channel, Header};

/// What coordination remembers between inputs.
#[derive(Debug, Default)]
pub(super) struct State {
    /// Something the leader reconciles may have changed.
    pub(super) dirty: bool,
    /// Events reported when the leader last reconciled: membership news shows there.
    events_seen: u64,
    /// The (leader, term) last reported.
    leader: Option<(Option<MemberId>, u64)>,
    /// The bootstrap refusal last reported, so each is reported once.
    refusal: Option<String>,
    /// Members with a cluster we asked to join, so each is asked once.
    contacted: BTreeSet<MemberId>,
    /// The term in which this leaving leader asked to hand over leadership.
    transfer_term: Option<u64>,
    /// On a recovered member: the uuid of the cluster it replaced.
    pub(super) replaced_uuid: ClusterUuid,
    /// The uuid of the cluster that replaced ours, once fenced.
    pub(super) fenced_by: ClusterUuid,
    /// The leave's handoff is over; `Left` is being gossiped.
    leave_completed: bool,
}

impl State {
    /// Takes (leader, term) as already known, so only changes are reported.
    pub(super) fn observe_leader(&mut self, leader: Option<MemberId>, term: u64) {
        self.leader = Some((leader, term));
    }
}

impl Node {
    pub(super) fn on_command(&mut self, now: Instant, command: Command) {
        let leave_timeout = self.leave_timeout;
        let mut parts = self.parts(now);
        match command {
            Command::Join(addrs) => parts.membership.add_seeds(&mut parts.ctx, &addrs, false),
            Command::Leave => {
                if parts.membership.is_leaving() {
                    return;
                }
                parts.membership.begin_leave(&mut parts.ctx);
                parts.ctx.timers.set(Timer::LeaveTimeout, now + leave_timeout);
                self.coordination.dirty = true;
            }
            Command::SetTags(tags) => parts.membership.set_tags(&mut parts.ctx, tags),
            Command::Ack { epoch } => {
                if parts.rebalance.on_local_ack(epoch).is_some() {
                    self.resend_ack(now);
                }
            }
            Command::TransferLeadership(target) => {
                parts.raft.transfer_leadership(&mut parts.ctx, &*parts.membership, target)
            }
            Command::Apply { request, command } => self.on_apply(now, request, command),
            Command::Read { request, query } => self.on_read(now, request, query),
        }
    }

    pub(super) fn on_coordination_timer(&mut self, now: Instant, timer: Timer) {
        match timer {
            Timer::Reconcile => self.coordination.dirty = true,
            Timer::AckResend => self.resend_ack(now),
            Timer::LeaveTimeout if !self.coordination.leave_completed => {
                tracing::warn!("the leave's handoff did not finish in time; leaving anyway");
                self.complete_leave(now);
            }
            _ => {}
        }
    }

    /// Sends our ack of the newest view to the current leader if it has not
    /// confirmed it yet, and keeps doing so every `ack_resend`.
    fn resend_ack(&mut self, now: Instant) {
        let Some(leader) = self.raft.leader() else { return };
        if let Some(epoch) = self.rebalance.unconfirmed_ack(leader, self.raft.term()) {
            self.send_ack(now, epoch);
            let resend = self.rebalance.config().ack_resend;
            self.timers.set(Timer::AckResend, now + resend);
        }
    }

    /// Sends an ack for `epoch` to the leader (or records it, if we lead).
    fn send_ack(&mut self, now: Instant, epoch: u64) {
        let me = self.id();
        match self.raft.leader() {
            Some(leader) if leader == me => {
                let (boot_id, term) = (self.boot_id(), self.raft.term());
                if self.rebalance.on_ack(me, boot_id, epoch) {
                    self.rebalance.on_ack_received(me, term, epoch);
                }
                self.coordination.dirty = true;
            }
            Some(leader) => {
                if let Some(addr) = self.membership.addr_of(leader) {
                    let parts = self.parts(now);
                    parts.ctx.outbox.send(addr, Channel::Stream, Body::View(ViewMessage::Ack { epoch }));
                }
            }
            // No leader: the ack goes out when one is known.
            None => {}
        }
    }

    /// The cluster-uuid gate (DESIGN §3.2): messages of another cluster are
    /// refused; before bootstrap a member sends the nil uuid, accepted from
    /// it only in a join (push-pull); a member without Raft state adopts the
    /// uuid of the cluster that talks to it.
    pub(super) fn admit(
        &mut self,
        now: Instant,
        from: SocketAddr,
        channel: Channel,
        header: &Header,
        body: &Body,
    ) -> Result<(), Rejection> {
        let (mine, theirs) = (self.cluster_uuid(), header.cluster_uuid);
        if theirs.is_nil() {
            let join = matches!(body, Body::Membership(MembershipMessage::PushPull(_)));
            return if mine.is_nil() || join { Ok(()) } else { Err(Rejection::Unbootstrapped) };
        }
        if theirs == mine {
            return Ok(());
        }
        if mine.is_nil() && !self.raft.has_state() && self.coordination.fenced_by.is_nil() {
            self.adopt(now, theirs);
            return Ok(());
        }
        // An old member of the cluster this member replaced: tell it, so it
        // fences itself rather than go on with the old configuration.
        if !self.coordination.replaced_uuid.is_nil() && theirs == self.coordination.replaced_uuid {
            let addr = match (channel, body) {
                (Channel::Datagram, _) => Some(from),
                (Channel::Stream, Body::Membership(MembershipMessage::PushPull(push_pull))) => {
                    push_pull.members.iter().find(|m| m.id == header.from).map(|m| m.addr)
                }
                (Channel::Stream, _) => self.membership.addr_of(header.from),
            };
            if let Some(addr) = addr {
                self.outbox.send(addr, Channel::Stream, Body::Recovered);
            }
        }
        // A member of our own configuration now speaks for another cluster:
        // ours was recovered from it. Fence.
        if self.raft.configuration().contains(header.from) && self.coordination.fenced_by.is_nil() {
            self.fence(now, theirs);
        }
        Err(Rejection::ForeignCluster)
    }

    fn fence(&mut self, now: Instant, by: ClusterUuid) {
        tracing::error!(
            ?by,
            "a member of this member's configuration belongs to a recovered cluster: this member's cluster was \
             recovered elsewhere, so it takes no part in it any more; wipe its data dir and restart it to rejoin"
        );
        self.coordination.fenced_by = by;
        self.outbox.persist(PersistState::FencedBy(by));
        let mut parts = self.parts(now);
        parts.raft.withdraw(&mut parts.ctx);
        self.outbox.event(Event::Fenced { by });
    }

    fn adopt(&mut self, now: Instant, uuid: ClusterUuid) {
        tracing::info!(?uuid, "joining an existing cluster");
        self.set_cluster_uuid(now, uuid);
        self.outbox.event(Event::JoinedCluster { uuid });
    }

    fn set_cluster_uuid(&mut self, now: Instant, uuid: ClusterUuid) {
        self.outbox.set_cluster_uuid(uuid);
        self.outbox.persist(PersistState::ClusterUuid(uuid));
        let mut parts = self.parts(now);
        parts.membership.set_claim(&mut parts.ctx, ClusterClaim::Member(uuid));
    }

    /// Operator recovery: this member alone becomes the configuration, under
    /// a new uuid (DESIGN §3.2, like etcd's `--force-new-cluster`).
    pub(super) fn force_new_cluster(&mut self, now: Instant) {
        if !self.raft.has_state() {
            tracing::warn!("recovery asked for, but this member holds no Raft state; nothing to recover");
            return;
        }
        let me = self.id();
        let old = self.cluster_uuid();
        let uuid = bootstrap::recovered_uuid(old, me, self.raft.term(), self.raft.last_index());
        tracing::warn!(?uuid, "forcing a new cluster of this member alone; the old members will be refused");
        let mut parts = self.parts(now);
        parts.raft.force_configuration(&mut parts.ctx, Configuration::of_voters([me]));
        self.outbox.set_cluster_uuid(uuid);
        self.outbox.persist(PersistState::ClusterUuid(uuid));
        self.outbox.persist(PersistState::ReplacedUuid(old));
        self.coordination.replaced_uuid = old;
    }

    /// Runs after every input.
    pub(super) fn coordinate(&mut self, now: Instant) {
        self.apply_committed(now);
        self.serve_reads(now);
        self.track_leader(now);
        self.run_bootstrap(now);
        self.lead(now);
        self.progress_leave(now);
    }

    fn apply_committed(&mut self, now: Instant) {
        if let Some(snapshot) = self.raft.take_restored() {
            let state = postcard::from_bytes::<CoreState>(&snapshot.state).unwrap_or_else(|error| {
                tracing::error!(%error, "snapshot state unreadable; starting from no view and an empty store");
                CoreState::default()
            });
            self.rebalance.state = state.view;
            if let Err(error) = self.rsm.restore(state.rsm) {
                tracing::error!(%error, "state machine snapshot unreadable");
            }
            self.coordination.dirty = true;
        }
        let entries = self.raft.take_committed();
        if entries.is_empty() {
            return;
        }
        self.coordination.dirty = true;
        let mut view_committed = false;
        for entry in &entries {
            view_committed |= self.rebalance.state.apply(entry);
            self.apply_client_entry(now, entry.index, &entry.payload);
        }
        let leading = self.raft.role() == Role::Leader;
        if view_committed && leading {
            self.rebalance.on_view_committed(now);
        }
        if let Some(view) = self.rebalance.take_delivery() {
            self.outbox.event(Event::Rebalance(view));
            let mut views = entries.iter().filter_map(|entry| match &entry.payload {
                Payload::View(view) => Some(view),
                _ => None,
            });
            if planted(Plant::ViewOutOfOrder)
                && let Some(previous) = views.nth_back(1)
            {
                self.outbox.event(Event::Rebalance(previous.clone()));
            }
        }
        // DESIGN §3.3 item 4: on a leader whose own Stable committed, or whose
        // first own-term entry committed while the newest view was stable.
        if leading && self.raft.own_term_committed() && self.rebalance.state.is_stable() {
            let (term, epoch) = (self.raft.term(), self.rebalance.state.epoch());
            if self.rebalance.report_stable(term, epoch)
                && let Some(view) = &self.rebalance.state.view
            {
                self.outbox.event(Event::ClusterStable(view.clone()));
            }
        }
        if self.raft.wants_snapshot() {
            let state = CoreState { view: self.rebalance.state.clone(), rsm: self.rsm.snapshot() };
            let state = postcard::to_allocvec(&state).unwrap_or_default();
            let mut parts = self.parts(now);
            parts.raft.compact(&mut parts.ctx, state);
        }
    }

    fn track_leader(&mut self, now: Instant) {
        let current = (self.raft.leader(), self.raft.term());
        if self.coordination.leader == Some(current) {
            return;
        }
        self.coordination.leader = Some(current);
        self.coordination.dirty = true;
        let (leader, term) = current;
        self.outbox.event(Event::LeaderChanged { leader, term });
        self.on_leadership_changed(now);
        if leader == Some(self.id()) {
            self.rebalance.on_elected(now);
        }
        // Acks are leader-local: the new leader needs ours again.
        self.resend_ack(now);
    }

    fn run_bootstrap(&mut self, now: Instant) {
        if self.raft.has_state() || !self.cluster_uuid().is_nil() || !self.coordination.fenced_by.is_nil() {
            return;
        }
        let expect = match self.bootstrap {
            Bootstrap::Join => return,
            Bootstrap::Alone => return self.bootstrap_with(now, vec![self.id()]),
            Bootstrap::Expect(expect) => expect.get(),
        };
        // The set a bootstrap would use: live members that bootstrap too
        // (joiners neither count nor vote on it, as in `bootstrap::decide`).
        let mut ids: Vec<MemberId> = self
            .membership
            .members()
            .filter(|m| m.state.is_live() && !matches!(m.cluster, ClusterClaim::Joining))
            .map(|m| m.id)
            .collect();
        ids.sort();
        let claim = ClusterClaim::Expecting { expect, seen: bootstrap::digest(&ids) };
        let mut parts = self.parts(now);
        parts.membership.set_claim(&mut parts.ctx, claim);
        let in_sight: Vec<(MemberId, ClusterClaim)> =
            self.membership.members().filter(|m| m.state.is_live()).map(|m| (m.id, m.cluster)).collect();
        match bootstrap::decide(expect as usize, &in_sight) {
            Decision::Wait => {}
            Decision::Bootstrap(voters) => self.bootstrap_with(now, voters),
            Decision::JoinExisting(member) => {
                // Its uuid arrives with its answer to our join.
                if self.coordination.contacted.insert(member)
                    && let Some(addr) = self.membership.addr_of(member)
                {
                    let mut parts = self.parts(now);
                    parts.membership.add_seeds(&mut parts.ctx, &[addr], false);
                }
            }
            Decision::Refuse(reason) => {
                if self.coordination.refusal.as_ref() != Some(&reason) {
                    tracing::warn!(%reason, "not bootstrapping");
                    self.coordination.refusal = Some(reason.clone());
                    self.outbox.event(Event::BootstrapRefused { reason });
                }
            }
        }
    }

    fn bootstrap_with(&mut self, now: Instant, voters: Vec<MemberId>) {
        let uuid = bootstrap::cluster_uuid(&self.cluster_name, &voters);
        tracing::info!(?uuid, voters = voters.len(), "bootstrapping a new cluster");
        let mut parts = self.parts(now);
        parts.raft.bootstrap(&mut parts.ctx, Configuration::of_voters(voters.iter().copied()));
        self.set_cluster_uuid(now, uuid);
        self.outbox.event(Event::Bootstrapped { uuid, voters });
    }

    /// The leader's duties: keep the voter set and the views in step with
    /// membership, and declare views stable. Proposals wait for an entry of
    /// the leader's own term to commit (the 2015 single-server bug; §5.4.2).
    fn lead(&mut self, now: Instant) {
        if self.raft.role() != Role::Leader {
            return;
        }
        let events = self.outbox.events_reported();
        if !self.coordination.dirty && events == self.coordination.events_seen {
            return;
        }
        self.coordination.dirty = false;
        self.coordination.events_seen = events;
        if !self.raft.own_term_committed() {
            return;
        }
        let me = self.id();
        let commit = self.raft.commit_index();
        // A dead member of the configuration is replaced once dead for
        // `voter_replace_delay`: wake then, whatever else happens.
        let replace_delay = self.voters.voter_replace_delay;
        let configuration = self.raft.configuration();
        let replace_at = self
            .membership
            .members()
            .filter(|m| m.state == MemberState::Dead && configuration.contains(m.id))
            .filter_map(|m| self.membership.since(m.id).map(|since| since + replace_delay))
            .filter(|&at| at > now)
            .min();
        if let Some(at) = replace_at {
            self.reconcile_at(now, at);
        }
        let config_pending = self.raft.entries_from(commit + 1).any(|e| matches!(e.payload, Payload::Config(_)));
        if !config_pending {
            // Raft's own contact overrides a stale SWIM verdict: after a
            // partition heals, SWIM may still hold dead a member that is
            // answering our appends, and removing it would cost a live voter.
            let silence = self.raft.election_timeout();
            // A member that reported `Left` withdrew from Raft: what we last
            // heard from it no longer says it will answer.
            let has_left = |id: MemberId| self.membership.member(id).is_some_and(|m| m.state == MemberState::Left);
            let reachable = |id: MemberId| {
                id == me || (!has_left(id) && self.raft.last_heard(id).is_some_and(|heard| now < heard + silence))
            };
            let candidates: Vec<Candidate> = self
                .membership
                .members()
                .map(|m| {
                    let live = m.state.is_live() || reachable(m.id);
                    Candidate {
                        id: m.id,
                        live,
                        dead_since: (!live).then(|| self.membership.since(m.id)).flatten(),
                        leaving: m.leaving || m.state == MemberState::Left,
                        durable: m.durable,
                        caught_up: self.raft.match_index(m.id).is_some_and(|matched| matched >= commit),
                    }
                })
                .collect();
            let configuration = self.raft.configuration();
            let change = voters::next_change(configuration, &candidates, &self.voters, me, now);
            // Never move to a configuration this leader could not commit in:
            // a majority of its voters must be reachable now.
            let change = change.filter(|next| {
                let reachable_voters = next.voters.iter().filter(|&&id| reachable(id)).count();
                let keeps_quorum = reachable_voters > next.voters.len() / 2;
                if !keeps_quorum {
                    tracing::warn!(voters = ?next.voters, "not changing the configuration: too few of its voters are reachable");
                }
                keeps_quorum
            });
            if let Some(next) = change {
                tracing::info!(voters = ?next.voters, learners = next.learners.len(), "changing the configuration");
                let _ = self.raft.propose(Payload::Config(next));
                return;
            }
        }
        // The second failure signal (DESIGN §3.3 item 1): a log member SWIM
        // suspects and that has not answered our appends for an election
        // timeout is left out of the next view, before SWIM declares it dead.
        let configuration = self.raft.configuration().clone();
        let silence = self.raft.election_timeout();
        let mut recheck: Option<Instant> = None;
        let mut unreachable = BTreeSet::new();
        for member in self.membership.members().filter(|m| m.state == MemberState::Suspect) {
            let Some(heard) = self.raft.last_heard(member.id) else { continue };
            if now >= heard + silence {
                unreachable.insert(member.id);
            } else {
                recheck = Some(recheck.map_or(heard + silence, |at| at.min(heard + silence)));
            }
        }
        let (proposal, wake) = self.rebalance.decide(
            now,
            self.membership.members(),
            |m| configuration.contains(m.id) && !unreachable.contains(&m.id),
            self.raft.entries_from(commit + 1),
            true,
        );
        if let Some(wake) = [wake, recheck].into_iter().flatten().min() {
            self.reconcile_at(now, wake);
        }
        let payload = match proposal {
            Some(Proposal::View(view)) => {
                tracing::info!(epoch = view.epoch, members = view.members.len(), "appending a new view");
                Payload::View(view)
            }
            Some(Proposal::Stable(epoch)) => {
                tracing::info!(epoch, "every member acked: appending Stable");
                Payload::Stable { epoch }
            }
            None => return,
        };
        let _ = self.raft.propose(payload);
    }

    /// Arms the leader's next look at `at`, unless an earlier one is armed
    /// (a spurious early look is harmless; a missed one is not). An armed
    /// deadline already past has fired, so it does not count.
    fn reconcile_at(&mut self, now: Instant, at: Instant) {
        let keep = self.timers.deadline(Timer::Reconcile).is_some_and(|armed| armed > now && armed <= at);
        if !keep {
            self.timers.set(Timer::Reconcile, at);
        }
    }

    /// A leaving member hands over leadership, waits for the configuration
    /// without it to commit, then gossips `Left` (DESIGN §3.1–3.2).
    fn progress_leave(&mut self, now: Instant) {
        if !self.membership.is_leaving() || self.coordination.leave_completed {
            return;
        }
        let me = self.id();
        let configuration = self.raft.configuration();
        let alone = configuration.voters.len() <= 1 && configuration.learners.is_empty();
        if self.raft.role() == Role::Leader && !alone && self.coordination.transfer_term != Some(self.raft.term()) {
            self.coordination.transfer_term = Some(self.raft.term());
            let mut parts = self.parts(now);
            parts.raft.transfer_leadership(&mut parts.ctx, &*parts.membership, None);
            return;
        }
        let removed = !self.raft.configuration().contains(me) && self.raft.configuration_committed();
        if removed || alone || !self.raft.has_state() {
            self.complete_leave(now);
        }
    }

    fn complete_leave(&mut self, now: Instant) {
        self.coordination.leave_completed = true;
        self.timers.cancel(Timer::LeaveTimeout);
        let mut parts = self.parts(now);
        parts.membership.complete_leave(&mut parts.ctx);
        // Gone from the cluster: no leader may count on this member again.
        parts.raft.withdraw(&mut parts.ctx);
    }
}
