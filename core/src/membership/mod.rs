//! SWIM membership with Lifeguard (DESIGN §3.1).
//!
//! Failure detection follows SWIM (Das, Gupta & Motivala 2002): each protocol
//! period a member probes one peer, round-robin; on a missed ack it asks `k`
//! others to probe indirectly (`ping_req`), and if none answers it *suspects*
//! the peer, which has until the suspicion timeout to refute by raising its
//! incarnation. Lifeguard (Dadgar, Phillips & Currey 2018) adds the local
//! health multiplier ([`awareness`]), nacks from relays, dynamic suspicion
//! timeouts ([`suspicion`]) and the buddy system (a probe of a suspect carries
//! the suspicion, so it refutes at once). Updates spread by piggybacking and
//! gossip ([`broadcast`]); a periodic push-pull of full state, also used to
//! join, heals what gossip missed, and dead members and seeds are retried
//! slowly so the halves of a healed partition merge. In a join storm gossip
//! is slow to finish: every member's backlog holds hundreds of updates, each
//! to be sent many times. A member that learns of a new member by gossip while
//! its own backlog is that long asks one peer for full state at once, at most
//! once per [`CATCH_UP_PERIODS`] protocol periods; a lone join never does.
//!
//! Members are keyed by durable id; claims are ordered by `(boot_id,
//! incarnation, state)` ([`member::Version`]).

mod awareness;
mod broadcast;
pub(crate) mod member;
mod message;
mod probe_order;
mod seeds;
mod suspicion;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use core::time::Duration;
use rand::Rng;
use rand::seq::IteratorRandom as _;

pub use member::{MemberInfo, State, Version};
pub use message::{Message, PushPull, Update, Updates};

use crate::bootstrap::ClusterClaim;
use crate::config::MembershipConfig;
use crate::fixed;
use crate::id::MemberId;
use crate::metrics::Rejection;
use crate::node::{Ctx, Event, Identity};
use crate::time::Instant;
use crate::timer::{Timer, TimerTable};
use crate::wire::{Body, BoundedVec, Channel, Header, Tags, limits};

use awareness::Awareness;
use broadcast::BroadcastQueue;
use probe_order::ProbeOrder;
use seeds::Seeds;
use suspicion::Suspicion;

/// Pending updates that mark a storm: with this backlog, a member that learns
/// of a new member by gossip asks a peer for full state.
const CATCH_UP_BACKLOG: usize = 32;

/// Protocol periods between two catch-up push-pulls at the least.
const CATCH_UP_PERIODS: u32 = 4;

/// Where this member is in a graceful leave.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum LeavePhase {
    /// A normal member.
    Active,
    /// Leaving: still probing and answering, handing off.
    Leaving,
    /// `Left` is being gossiped; no more probing.
    Left,
    /// [`Event::LeaveComplete`] was reported; the member is silent.
    Done,
}

#[derive(Debug)]
struct Member {
    info: MemberInfo,
    /// When `info.state` last changed.
    since: Instant,
}

/// The probe of the current protocol period.
#[derive(Debug)]
struct Probe {
    seq: u32,
    target: MemberId,
    /// The claim the target was probed at; only that one is suspected on failure.
    version: Version,
    acked: bool,
    nacks: u32,
    expected_nacks: u32,
}

/// A `ping_req` this member relays: its own ping's seq maps back to the requester.
#[derive(Debug, Clone, Copy)]
struct Relay {
    origin: SocketAddr,
    origin_seq: u32,
}

/// The membership sub-machine of one node.
#[derive(Debug)]
pub struct Membership {
    config: MembershipConfig,
    local: MemberId,
    members: BTreeMap<MemberId, Member>,
    /// The keys of `members` in a vector, for O(1) random picks.
    ids: Vec<MemberId>,
    /// Members in `Alive` or `Suspect`, this one included.
    live: usize,
    suspicions: BTreeMap<MemberId, Suspicion>,
    broadcasts: BroadcastQueue,
    awareness: Awareness,
    probe_order: ProbeOrder,
    probe: Option<Probe>,
    relays: BTreeMap<u32, Relay>,
    next_seq: u32,
    seeds: Seeds,
    joined: bool,
    leave: LeavePhase,
    /// Members inserted since the last full-state exchange.
    learned_since_sync: u32,
    /// When full state was last received.
    last_sync: Instant,
    /// Members we declared dead because they held our name under another id.
    superseded: BTreeSet<MemberId>,
    /// Name conflicts already reported, so each is reported once.
    conflicts: BTreeSet<MemberId>,
}

impl Membership {
    pub(crate) fn new(config: MembershipConfig, identity: Identity, boot_id: u64) -> Self {
        let local = identity.id;
        let info = MemberInfo {
            id: local,
            name: identity.name,
            addr: identity.addr,
            boot_id,
            incarnation: 0,
            state: State::Alive,
            leaving: false,
            tags: identity.tags,
            durable: identity.durable,
            cluster: ClusterClaim::default(),
        };
        let awareness = Awareness::new(config.awareness_max);
        Membership {
            config,
            local,
            members: BTreeMap::from([(local, Member { info, since: Instant::ZERO })]),
            ids: vec![local],
            learned_since_sync: 0,
            last_sync: Instant::ZERO,
            live: 1,
            suspicions: BTreeMap::new(),
            broadcasts: BroadcastQueue::default(),
            awareness,
            probe_order: ProbeOrder::default(),
            probe: None,
            relays: BTreeMap::new(),
            next_seq: 0,
            seeds: Seeds::default(),
            joined: false,
            leave: LeavePhase::Active,
            superseded: BTreeSet::new(),
            conflicts: BTreeSet::new(),
        }
    }

    /// Arms the periodic timers, staggered so members started together do not
    /// probe and exchange state in lockstep.
    pub(crate) fn start(&mut self, ctx: &mut Ctx<'_>) {
        self.members.get_mut(&self.local).expect("local member").since = ctx.now;
        let now = ctx.now;
        let probe = jitter(ctx.rng, self.config.probe_interval);
        let push_pull = jitter(ctx.rng, self.push_pull_interval());
        let reconnect = jitter(ctx.rng, self.config.reconnect_interval);
        ctx.timers.set(Timer::Probe, now + probe);
        ctx.timers.set(Timer::Gossip, now + self.config.gossip_interval);
        ctx.timers.set(Timer::PushPull, now + push_pull);
        ctx.timers.set(Timer::Reconnect, now + reconnect);
        self.broadcasts.push(Update::Alive(self.local_info().clone()));
    }

    pub(crate) fn local_id(&self) -> MemberId {
        self.local
    }

    fn local_info(&self) -> &MemberInfo {
        &self.members[&self.local].info
    }

    pub(crate) fn members(&self) -> impl Iterator<Item = &MemberInfo> + Clone {
        self.members.values().map(|member| &member.info)
    }

    pub(crate) fn member(&self, id: MemberId) -> Option<&MemberInfo> {
        self.members.get(&id).map(|member| &member.info)
    }

    pub(crate) fn is_joined(&self) -> bool {
        self.joined
    }

    pub(crate) fn local_health(&self) -> u32 {
        self.awareness.score()
    }

    /// Whether a message from `id` at `boot_id` comes from a boot older than one we know.
    pub(crate) fn is_stale_boot(&self, id: MemberId, boot_id: u64) -> bool {
        self.members.get(&id).is_some_and(|member| boot_id < member.info.boot_id)
    }

    // ----- inputs -------------------------------------------------------------------------

    pub(crate) fn on_timer(&mut self, ctx: &mut Ctx<'_>, timer: Timer) {
        if self.leave == LeavePhase::Done {
            return;
        }
        match timer {
            Timer::Probe => self.on_probe_timer(ctx),
            Timer::ProbeTimeout => self.on_probe_timeout(ctx),
            Timer::RelayedProbe(seq) => self.on_relay_timeout(ctx, seq),
            Timer::Suspicion(id) => self.on_suspicion_timeout(ctx, id),
            Timer::Gossip => self.on_gossip_timer(ctx),
            Timer::PushPull => self.on_push_pull_timer(ctx),
            Timer::Reconnect => self.on_reconnect_timer(ctx),
            Timer::SeedRetry => self.on_seed_retry(ctx),
            Timer::LeavePropagated => {
                self.leave = LeavePhase::Done;
                ctx.outbox.event(Event::LeaveComplete);
            }
            // The node routes the other timers to their own sub-machines.
            Timer::Election
            | Timer::Heartbeat
            | Timer::CheckQuorum
            | Timer::Reconcile
            | Timer::AckResend
            | Timer::LeaveTimeout
            | Timer::ClientRetry => debug_assert!(false, "{timer:?} is not a membership timer"),
        }
    }

    pub(crate) fn on_message(
        &mut self,
        ctx: &mut Ctx<'_>,
        from: SocketAddr,
        channel: Channel,
        header: &Header,
        message: Message,
    ) {
        if self.leave == LeavePhase::Done {
            return;
        }
        match message {
            Message::Ping { seq, target, updates } => {
                self.apply_updates(ctx, updates);
                if target != self.local {
                    ctx.outbox.metrics.count_rejected(Rejection::Misdirected);
                    return;
                }
                match channel {
                    Channel::Datagram => {
                        self.send_with_updates(ctx, from, None, |updates| Message::Ack { seq, updates })
                    }
                    // The fallback probe over a stream: answer the same way, at the
                    // prober's advertised address (the stream came from an ephemeral port).
                    Channel::Stream => {
                        if let Some(addr) = self.members.get(&header.from).map(|m| m.info.addr) {
                            let ack = Message::Ack { seq, updates: Updates::new() };
                            ctx.outbox.send(addr, Channel::Stream, Body::Membership(ack));
                        }
                    }
                }
            }
            Message::Ack { seq, updates } => {
                self.on_ack(ctx, seq);
                self.apply_updates(ctx, updates);
            }
            Message::PingReq { seq, target, target_addr, updates } => {
                self.apply_updates(ctx, updates);
                self.on_ping_req(ctx, from, seq, target, target_addr);
            }
            Message::Nack { seq } => {
                if let Some(probe) = self.probe.as_mut().filter(|probe| probe.seq == seq) {
                    probe.nacks += 1;
                }
            }
            Message::Gossip { updates } => self.apply_updates(ctx, updates),
            Message::PushPull(push_pull) => self.on_push_pull(ctx, header, push_pull),
        }
    }

    /// Adds seeds. An explicit join contacts its addresses at once, as
    /// memberlist's `Join` does (it may merge two clusters); discovered
    /// addresses are tried at once only while this member is alone.
    pub(crate) fn add_seeds(&mut self, ctx: &mut Ctx<'_>, addrs: &[SocketAddr], from_discovery: bool) {
        let own = self.local_info().addr;
        let addrs: Vec<_> = addrs.iter().copied().filter(|&addr| addr != own).collect();
        let ignored = self.seeds.add(&addrs, from_discovery, ctx.now);
        if ignored > 0 {
            tracing::warn!(ignored, limit = limits::MAX_SEEDS, "too many seeds; extra addresses ignored");
        }
        if !from_discovery && self.live > 1 {
            for &addr in &addrs {
                self.contact_seed(ctx, addr);
            }
        }
        if self.live == 1 {
            self.on_seed_retry(ctx);
        }
    }

    fn contact_seed(&mut self, ctx: &mut Ctx<'_>, addr: SocketAddr) {
        let body = self.push_pull(true, false);
        ctx.outbox.send(addr, Channel::Stream, body);
        let (initial, max) = (self.config.seed_backoff_initial, self.config.seed_backoff_max);
        self.seeds.attempted(addr, ctx.now, ctx.rng, initial, max);
    }

    /// Starts a graceful leave: announce `leaving`, so others stop giving this
    /// member work. Membership itself has nothing to hand off; the node calls
    /// [`Membership::complete_leave`] when every other sub-machine has.
    pub(crate) fn begin_leave(&mut self, ctx: &mut Ctx<'_>) {
        if self.leave != LeavePhase::Active {
            return;
        }
        self.leave = LeavePhase::Leaving;
        self.update_local(ctx, |info| info.leaving = true);
    }

    /// Ends a graceful leave: gossip `Left` for `leave_propagate`, then report
    /// [`Event::LeaveComplete`].
    pub(crate) fn complete_leave(&mut self, ctx: &mut Ctx<'_>) {
        if self.leave != LeavePhase::Leaving {
            return;
        }
        self.leave = LeavePhase::Left;
        let info = self.local_info().clone();
        let update = Update::Left { id: info.id, boot_id: info.boot_id, incarnation: info.incarnation };
        self.set_state(ctx, self.local, State::Left, info.version().with_state(State::Left));
        self.broadcasts.push(update);
        ctx.timers.cancel(Timer::Probe);
        ctx.timers.cancel(Timer::ProbeTimeout);
        self.probe = None;
        // Spread it now rather than at the next gossip tick.
        self.gossip(ctx);

        ctx.timers.set(Timer::LeavePropagated, ctx.now + self.config.leave_propagate);
    }

    /// Replaces this member's tags and announces them with a new incarnation.
    pub(crate) fn set_tags(&mut self, ctx: &mut Ctx<'_>, tags: Tags) {
        if self.local_info().tags != tags {
            self.update_local(ctx, |info| info.tags = tags);
        }
    }

    /// Announces this member's cluster claim (bootstrap progress or uuid).
    pub(crate) fn set_claim(&mut self, ctx: &mut Ctx<'_>, claim: ClusterClaim) {
        if self.local_info().cluster != claim {
            self.update_local(ctx, |info| info.cluster = claim);
        }
    }

    /// Whether this member is leaving (or has left) gracefully.
    pub(crate) fn is_leaving(&self) -> bool {
        self.leave != LeavePhase::Active
    }

    /// Since when member `id` has been in its current state.
    pub(crate) fn since(&self, id: MemberId) -> Option<Instant> {
        self.members.get(&id).map(|member| member.since)
    }

    fn update_local(&mut self, ctx: &mut Ctx<'_>, change: impl FnOnce(&mut MemberInfo)) {
        let member = self.members.get_mut(&self.local).expect("local member");
        change(&mut member.info);
        member.info.incarnation += 1;
        let info = member.info.clone();
        self.broadcasts.push(Update::Alive(info.clone()));
        ctx.outbox.event(Event::MemberUpdated(info));
    }

    // ----- probing (SWIM §4, Lifeguard §4) ----------------------------------------------------

    fn on_probe_timer(&mut self, ctx: &mut Ctx<'_>) {
        self.finish_probe(ctx);
        ctx.timers.set(Timer::Probe, ctx.now + self.awareness.scale(self.config.probe_interval));
        let members = &self.members;
        let local = self.local;
        let probeable = |id: MemberId| id != local && members.get(&id).is_some_and(|m| m.info.state.is_live());
        let candidates = || members.keys().copied().filter(|&id| probeable(id)).collect();
        let Some(target) = self.probe_order.next(ctx.rng, probeable, candidates) else {
            return;
        };
        let info = &self.members[&target].info;
        let (addr, version) = (info.addr, info.version());
        // Buddy system (Lifeguard §4.4): a suspect learns of its suspicion from the
        // probe itself, so it can refute at once.
        let buddy = (info.state == State::Suspect).then_some(Update::Suspect {
            id: target,
            boot_id: info.boot_id,
            incarnation: info.incarnation,
            from: self.local,
        });
        let seq = self.next_seq();
        self.send_with_updates(ctx, addr, buddy, |updates| Message::Ping { seq, target, updates });
        self.probe = Some(Probe { seq, target, version, acked: false, nacks: 0, expected_nacks: 0 });
        ctx.timers.set(Timer::ProbeTimeout, ctx.now + self.awareness.scale(self.config.probe_timeout));
    }

    /// The direct ack is late: ask `k` alive members to probe the target, and
    /// probe it once more over a stream (memberlist's TCP fallback ping). A
    /// stream retransmits what the network drops, so datagram loss alone
    /// cannot make a live member suspect.
    fn on_probe_timeout(&mut self, ctx: &mut Ctx<'_>) {
        let Some(probe) = self.probe.as_ref().filter(|probe| !probe.acked) else {
            return;
        };
        let (seq, target) = (probe.seq, probe.target);
        let Some(target_addr) = self.members.get(&target).map(|member| member.info.addr) else {
            return;
        };
        let count = self.config.indirect_checks as usize;
        let helpers = self.random_members(ctx.rng, count, |m| m.info.id != target && m.info.state == State::Alive);
        for &helper in &helpers {
            self.send_with_updates(ctx, helper, None, |updates| Message::PingReq { seq, target, target_addr, updates });
        }
        if let Some(probe) = self.probe.as_mut() {
            probe.expected_nacks = helpers.len() as u32;
        }
        let ping = Message::Ping { seq, target, updates: Updates::new() };
        ctx.outbox.send(target_addr, Channel::Stream, Body::Membership(ping));
    }

    /// Concludes the previous period's probe: an unanswered one makes the
    /// target suspect and counts against our own health.
    fn finish_probe(&mut self, ctx: &mut Ctx<'_>) {
        let Some(probe) = self.probe.take() else {
            return;
        };
        ctx.timers.cancel(Timer::ProbeTimeout);
        if probe.acked {
            return;
        }
        // Lifeguard §4.3: missing nacks mean our own network is the problem;
        // with nobody to ask, the failed probe itself counts once.
        let missed_nacks = probe.expected_nacks.saturating_sub(probe.nacks);
        let delta = if probe.expected_nacks > 0 { missed_nacks } else { 1 };
        self.awareness.apply_delta(delta as i32);
        let version = probe.version.with_state(State::Suspect);
        let still_same = self
            .members
            .get(&probe.target)
            .is_some_and(|m| m.info.state.is_live() && m.info.version().with_state(State::Suspect) == version);
        if still_same {
            tracing::debug!(target = %probe.target, "probe failed; suspecting");
            self.on_suspect(ctx, probe.target, version, self.local);
        }
    }

    fn on_ack(&mut self, ctx: &mut Ctx<'_>, seq: u32) {
        if let Some(probe) = self.probe.as_mut().filter(|probe| probe.seq == seq && !probe.acked) {
            probe.acked = true;
            ctx.timers.cancel(Timer::ProbeTimeout);
            self.awareness.apply_delta(-1);
        } else if let Some(relay) = self.relays.remove(&seq) {
            ctx.timers.cancel(Timer::RelayedProbe(seq));
            let origin_seq = relay.origin_seq;
            self.send_with_updates(ctx, relay.origin, None, |updates| Message::Ack { seq: origin_seq, updates });
        }
    }

    fn on_ping_req(
        &mut self,
        ctx: &mut Ctx<'_>,
        from: SocketAddr,
        seq: u32,
        target: MemberId,
        target_addr: SocketAddr,
    ) {
        if self.relays.len() >= limits::MAX_RELAYED_PROBES {
            ctx.outbox.metrics.dropped_relays += 1;
            return;
        }
        let relay_seq = self.next_seq();
        self.relays.insert(relay_seq, Relay { origin: from, origin_seq: seq });
        self.send_with_updates(ctx, target_addr, None, |updates| Message::Ping { seq: relay_seq, target, updates });
        // memberlist sends the nack at 80 % of the probe timeout, so it arrives
        // before the requester gives up.
        ctx.timers.set(Timer::RelayedProbe(relay_seq), ctx.now + self.config.probe_timeout * 4 / 5);
    }

    fn on_relay_timeout(&mut self, ctx: &mut Ctx<'_>, seq: u32) {
        if let Some(relay) = self.relays.remove(&seq) {
            let body = Body::Membership(Message::Nack { seq: relay.origin_seq });
            ctx.outbox.send(relay.origin, Channel::Datagram, body);
        }
    }

    fn next_seq(&mut self) -> u32 {
        self.next_seq = self.next_seq.wrapping_add(1);
        self.next_seq
    }

    // ----- suspicion (Lifeguard §4.2) -------------------------------------------------------

    fn on_suspicion_timeout(&mut self, ctx: &mut Ctx<'_>, id: MemberId) {
        let Some(suspicion) = self.suspicions.remove(&id) else {
            return;
        };
        let still_suspect = self.members.get(&id).is_some_and(|m| m.info.version() == suspicion.version);
        if still_suspect {
            let version = suspicion.version.with_state(State::Dead);
            tracing::info!(member = %id, "suspicion timed out; declaring dead");
            self.on_dead(ctx, id, version, self.local);
        }
    }

    fn start_suspicion(&mut self, ctx: &mut Ctx<'_>, id: MemberId, version: Version, from: MemberId) {
        let floor = suspicion::floor(self.config.suspicion_mult.get(), self.live, self.config.probe_interval);
        let max = floor * self.config.suspicion_max_mult.get();
        // memberlist expects `suspicion_mult − 2` independent confirmations, and
        // no more than there are members to give them (all but us and the suspect).
        let others = u32::try_from(self.live.saturating_sub(2)).unwrap_or(u32::MAX);
        let expected = self.config.suspicion_mult.get().saturating_sub(2).min(others);

        let suspicion = Suspicion::new(version, ctx.now, from, expected, floor, max);
        ctx.timers.set(Timer::Suspicion(id), suspicion.deadline());
        self.suspicions.insert(id, suspicion);
    }

    // ----- applying claims ------------------------------------------------------------------

    fn apply_updates(&mut self, ctx: &mut Ctx<'_>, updates: Updates) {
        for update in updates.into_vec() {
            self.apply_update(ctx, update);
        }
        let catch_up_due = ctx.now >= self.last_sync + self.config.probe_interval * CATCH_UP_PERIODS;
        if self.learned_since_sync > 0 && self.broadcasts.len() >= CATCH_UP_BACKLOG && catch_up_due {
            self.learned_since_sync = 0;
            self.last_sync = ctx.now;
            self.push_pull_with_random_member(ctx);
        }
    }

    fn apply_update(&mut self, ctx: &mut Ctx<'_>, update: Update) {
        let version = update.version();
        match update {
            Update::Alive(info) => self.on_alive(ctx, info),
            Update::Suspect { id, from, .. } => self.on_suspect(ctx, id, version, from),
            Update::Dead { id, from, .. } => self.on_dead(ctx, id, version, from),
            Update::Left { id, .. } => self.on_left(ctx, id, version),
        }
    }

    /// A claim about this very member that it must refute, or a sign that
    /// another process uses its durable id.
    fn on_claim_about_self(&mut self, ctx: &mut Ctx<'_>, version: Version) {
        let local = self.local_info();
        if version.boot_id > local.boot_id {
            tracing::error!(
                boot_id = version.boot_id,
                own_boot_id = local.boot_id,
                "another process claims this member's durable id with a newer boot; is a data dir copied?"
            );
            return;
        }
        let ours = local.version();
        if version.boot_id < local.boot_id || self.leave >= LeavePhase::Left || version.state() == State::Alive {
            return;
        }
        if version < ours {
            // Someone still suspects an incarnation we already refuted: our
            // refutation did not reach them (its retransmits may all have been
            // lost), so queue it again. Bounded by the rate of such claims.
            if !self.broadcasts.contains(self.local) {
                self.broadcasts.push(Update::Alive(local.clone()));
            }
            return;
        }
        // SWIM §4.2: refute with a higher incarnation. Lifeguard §4.3: having to
        // refute means our own messages are late, so our health drops.
        let Some(incarnation) = version.incarnation.max(local.incarnation).checked_add(1) else {
            // Four billion refutations in one boot cannot happen; such a claim
            // is forged or corrupt. Nothing outranks it within this boot, so
            // say so: a restart (a new boot id) is the way back.
            tracing::error!(
                incarnation = version.incarnation,
                "a claim about this member carries the highest incarnation and cannot be refuted until it restarts"
            );
            return;
        };
        self.awareness.apply_delta(1);
        tracing::debug!(incarnation, "refuting a claim about this member");
        let member = self.members.get_mut(&self.local).expect("local member");
        member.info.incarnation = incarnation;
        let info = member.info.clone();
        self.broadcasts.push(Update::Alive(info));
        // Every gossip tick of delay eats into the suspicion timeout.
        self.gossip(ctx);
    }

    fn on_alive(&mut self, ctx: &mut Ctx<'_>, mut info: MemberInfo) {
        info.state = State::Alive;
        if info.id == self.local {
            return self.on_claim_about_self(ctx, info.version());
        }
        let known = self.members.get(&info.id).map(|m| m.info.version());
        if known.is_some_and(|known| info.version() <= known) {
            return;
        }
        if info.name == self.local_info().name {
            if self.superseded.insert(info.id) {
                return self.supersede(ctx, info);
            }
            if self.conflicts.insert(info.id) {
                // We declared it dead and it refuted: two live processes share a name.
                tracing::error!(member = %info.id, name = %info.name, "another live member uses this member's name");
                ctx.outbox.event(Event::NameConflict { name: info.name.clone(), other: info.id });
            }
        }
        if known.is_none() {
            return self.insert_member(ctx, info);
        }
        let id = info.id;
        let previous = self.members[&id].info.clone();
        let restarted = info.boot_id > previous.boot_id;
        if self.suspicions.remove(&id).is_some() {
            ctx.timers.cancel(Timer::Suspicion(id));
        }
        if !previous.state.is_live() {
            self.live += 1;
        }
        let member = self.members.get_mut(&id).expect("known above");
        if previous.state != State::Alive {
            member.since = ctx.now;
        }
        member.info = info.clone();
        self.broadcasts.push(Update::Alive(info.clone()));
        let event = match previous.state {
            State::Dead | State::Left => Some(Event::MemberJoined(info)),
            _ if restarted => Some(Event::MemberRestarted(info)),
            State::Suspect => Some(Event::MemberRecovered(info)),
            State::Alive => {
                let changed = previous.addr != info.addr
                    || previous.tags != info.tags
                    || previous.leaving != info.leaving
                    || previous.name != info.name
                    || previous.durable != info.durable
                    || previous.cluster != info.cluster;
                changed.then_some(Event::MemberUpdated(info))
            }
        };
        if let Some(event) = event {
            ctx.outbox.event(event);
        }
        self.note_joined(ctx);
    }

    fn insert_member(&mut self, ctx: &mut Ctx<'_>, info: MemberInfo) {
        if !self.make_room(ctx) {
            return;
        }
        let id = info.id;
        self.members.insert(id, Member { info: info.clone(), since: ctx.now });
        self.ids.push(id);
        self.learned_since_sync = self.learned_since_sync.saturating_add(1);
        self.live += 1;
        self.probe_order.insert(ctx.rng, id);
        self.broadcasts.push(Update::Alive(info.clone()));
        ctx.outbox.event(Event::MemberJoined(info));
        self.note_joined(ctx);
    }

    /// DESIGN §3.1: a new durable id under a known name supersedes the old one.
    /// A member holding our name under another id is an earlier life of this
    /// member (restarted without its data dir), so we declare it dead at once,
    /// at the version we heard; everyone applies that like any other death.
    fn supersede(&mut self, ctx: &mut Ctx<'_>, info: MemberInfo) {
        let (id, version) = (info.id, info.version().with_state(State::Dead));
        tracing::info!(member = %id, name = %info.name, "superseding an earlier life of this member");
        if self.members.contains_key(&id) {
            return self.on_dead(ctx, id, version, self.local);
        }
        // Never a member to us: record the death without reporting a join.
        if !self.make_room(ctx) {
            return;
        }
        let info = MemberInfo { state: State::Dead, ..info };
        self.members.insert(id, Member { info, since: ctx.now });
        self.ids.push(id);
        let update = Update::Dead { id, boot_id: version.boot_id, incarnation: version.incarnation, from: self.local };
        self.broadcasts.push(update);
    }

    /// Whether the table has room for one more member, reaping the member dead
    /// or left longest if it is full. Counts the news as dropped if not.
    fn make_room(&mut self, ctx: &mut Ctx<'_>) -> bool {
        if self.members.len() < limits::MAX_MEMBERS || self.reap_oldest(ctx) {
            return true;
        }
        ctx.outbox.metrics.dropped_members += 1;
        false
    }

    fn on_suspect(&mut self, ctx: &mut Ctx<'_>, id: MemberId, version: Version, from: MemberId) {
        if id == self.local {
            return self.on_claim_about_self(ctx, version);
        }
        let Some(member) = self.members.get(&id) else {
            return;
        };
        // SWIM: suspicion is about live members. A member held dead or left
        // comes back only by announcing itself alive (a refutation or a new
        // boot), never by someone else's suspicion.
        if !member.info.state.is_live() {
            return;
        }
        let current = member.info.version();
        if version == current && member.info.state == State::Suspect {
            // Lifeguard §4.2: an independent confirmation shortens the timeout.
            if let Some(suspicion) = self.suspicions.get_mut(&id).filter(|s| s.version == version)
                && suspicion.confirm(from)
            {
                ctx.timers.set(Timer::Suspicion(id), suspicion.deadline().max(ctx.now));
                let info = &member.info;
                self.broadcasts.push(Update::Suspect {
                    id,
                    boot_id: info.boot_id,
                    incarnation: info.incarnation,
                    from,
                });
            }
            return;
        }
        if version <= current {
            return;
        }
        self.set_state(ctx, id, State::Suspect, version);
        self.start_suspicion(ctx, id, version, from);
        self.broadcasts.push(Update::Suspect { id, boot_id: version.boot_id, incarnation: version.incarnation, from });
        let info = self.members[&id].info.clone();
        ctx.outbox.event(Event::MemberSuspected(info));
    }

    fn on_dead(&mut self, ctx: &mut Ctx<'_>, id: MemberId, version: Version, from: MemberId) {
        if id == self.local {
            return self.on_claim_about_self(ctx, version);
        }
        let update = Update::Dead { id, boot_id: version.boot_id, incarnation: version.incarnation, from };
        self.record_departure(ctx, id, version, update);
    }

    fn on_left(&mut self, ctx: &mut Ctx<'_>, id: MemberId, version: Version) {
        if id == self.local {
            if self.leave == LeavePhase::Active {
                self.on_claim_about_self(ctx, version);
            }
            return;
        }
        let update = Update::Left { id, boot_id: version.boot_id, incarnation: version.incarnation };
        self.record_departure(ctx, id, version, update);
    }

    /// Applies a claim that another member died or left, if it is news: a
    /// death is reported as a failure, a leave never is.
    fn record_departure(&mut self, ctx: &mut Ctx<'_>, id: MemberId, version: Version, update: Update) {
        if self.members.get(&id).is_none_or(|m| version <= m.info.version()) {
            return;
        }
        let state = version.state();
        debug_assert!(matches!(state, State::Dead | State::Left), "a departure is a death or a leave");
        let was = self.members[&id].info.state;
        self.set_state(ctx, id, state, version);
        self.broadcasts.push(update);
        // A newer claim of the same departure is no news to the application.
        if was != state {
            let info = self.members[&id].info.clone();
            let event = if state == State::Left { Event::MemberLeft(info) } else { Event::MemberFailed(info) };
            ctx.outbox.event(event);
        }
    }

    /// Moves a known member to `state` at `version`, keeping the live count,
    /// the suspicion table and its timers in step.
    fn set_state(&mut self, ctx: &mut Ctx<'_>, id: MemberId, state: State, version: Version) {
        let member = self.members.get_mut(&id).expect("caller checked the member exists");
        let was_live = member.info.state.is_live();
        // A newer claim of the same departure keeps the time it departed:
        // reaping and voter replacement count from then.
        if was_live || member.info.state != state {
            member.since = ctx.now;
        }
        member.info.state = state;
        member.info.boot_id = version.boot_id;
        member.info.incarnation = version.incarnation;
        if state != State::Suspect && self.suspicions.remove(&id).is_some() {
            ctx.timers.cancel(Timer::Suspicion(id));
        }
        match (was_live, state.is_live()) {
            (true, false) => self.live -= 1,
            (false, true) => self.live += 1,
            _ => {}
        }
        if self.live == 1 && id != self.local {
            // Alone again: fall back to the seeds until someone answers.
            self.joined = false;
            self.on_seed_retry(ctx);
        }
    }

    fn note_joined(&mut self, ctx: &mut Ctx<'_>) {
        if !self.joined && self.live > 1 {
            self.joined = true;
            ctx.timers.cancel(Timer::SeedRetry);
            ctx.outbox.event(Event::Joined);
        }
    }

    // ----- dissemination --------------------------------------------------------------------

    /// Addresses of up to `count` distinct other members that `wanted` accepts,
    /// drawn uniformly by random index (memberlist's `kRandomNodes`): O(count)
    /// while most members qualify, never more than `3 n` draws.
    fn random_members(&self, rng: &mut impl Rng, count: usize, wanted: impl Fn(&Member) -> bool) -> Vec<SocketAddr> {
        let mut chosen: Vec<MemberId> = Vec::with_capacity(count);
        for _ in 0..3 * self.ids.len() {
            if chosen.len() == count {
                break;
            }
            let id = self.ids[rng.random_range(0..self.ids.len())];
            if id != self.local && !chosen.contains(&id) && wanted(&self.members[&id]) {
                chosen.push(id);
            }
        }
        chosen.iter().map(|id| self.members[id].info.addr).collect()
    }

    /// How many times each update is sent: `retransmit_mult · ceil(log10(n + 1))`.
    fn retransmit_limit(&self) -> u32 {
        self.config.retransmit_mult.get() * fixed::ceil_log10(self.live as u64 + 1).max(1)
    }

    /// Sends a datagram built by `message` around as many pending updates as
    /// fit, `first` ahead of them.
    fn send_with_updates(
        &mut self,
        ctx: &mut Ctx<'_>,
        to: SocketAddr,
        first: Option<Update>,
        message: impl Fn(Updates) -> Message,
    ) {
        let base = postcard::experimental::serialized_size(&message(Updates::new())).unwrap_or(usize::MAX);
        let mut budget =
            limits::MAX_DATAGRAM_BYTES.saturating_sub(ctx.outbox.header_len() + base + Body::VARIANT_BYTES);
        let mut updates = Vec::new();
        if let Some(first) = first {
            budget = budget.saturating_sub(postcard::experimental::serialized_size(&first).unwrap_or(usize::MAX));
            updates.push(first);
        }
        let limit = self.retransmit_limit();
        self.broadcasts.fill(budget, limits::MAX_PIGGYBACK, limit, &mut updates);
        let updates = BoundedVec::try_from_vec(updates).expect("fill respects MAX_PIGGYBACK");
        ctx.outbox.send(to, Channel::Datagram, Body::Membership(message(updates)));
    }

    fn on_gossip_timer(&mut self, ctx: &mut Ctx<'_>) {
        ctx.timers.set(Timer::Gossip, ctx.now + self.config.gossip_interval);
        self.gossip(ctx);
    }

    /// Sends pending updates to `gossip_nodes` random members.
    fn gossip(&mut self, ctx: &mut Ctx<'_>) {
        if self.broadcasts.is_empty() {
            return;
        }
        // Gossip also goes to the recently dead, so a member wrongly declared
        // dead learns it and refutes (memberlist's gossip-to-the-dead).
        let now = ctx.now;
        let recent = self.config.gossip_to_the_dead;
        let count = self.config.gossip_nodes.get() as usize;
        let targets = self.random_members(ctx.rng, count, |m| {
            m.info.state.is_live() || (m.info.state == State::Dead && now < m.since + recent)
        });

        for target in targets {
            if self.broadcasts.is_empty() {
                break;
            }
            self.send_with_updates(ctx, target, None, |updates| Message::Gossip { updates });
        }
    }

    // ----- push-pull, joining, healing ------------------------------------------------------

    /// memberlist's scaling: past 32 members the interval grows with log2(n),
    /// so the cluster's total push-pull traffic does not grow quadratically.
    fn push_pull_interval(&self) -> Duration {
        let doublings = (usize::BITS - self.live.saturating_sub(1).leading_zeros()).saturating_sub(5);
        self.config.push_pull_interval * (1 + doublings)
    }

    fn push_pull(&self, join: bool, reply: bool) -> Body {
        let members: Vec<MemberInfo> = self.members.values().map(|m| m.info.clone()).collect();
        let members = BoundedVec::try_from_vec(members).expect("member table bounded by MAX_MEMBERS");
        Body::Membership(Message::PushPull(PushPull { join, reply, members }))
    }

    fn on_push_pull_timer(&mut self, ctx: &mut Ctx<'_>) {
        let interval = self.push_pull_interval();
        ctx.timers.set(Timer::PushPull, ctx.now + interval);
        self.push_pull_with_random_member(ctx);
    }

    fn push_pull_with_random_member(&mut self, ctx: &mut Ctx<'_>) {
        let partner = self.random_members(ctx.rng, 1, |m| m.info.state == State::Alive);
        if let Some(&partner) = partner.first() {
            let body = self.push_pull(false, false);
            ctx.outbox.send(partner, Channel::Stream, body);
        }
    }

    fn on_push_pull(&mut self, ctx: &mut Ctx<'_>, header: &Header, push_pull: PushPull) {
        let reply_to = push_pull.members.iter().find(|m| m.id == header.from).map(|m| m.addr);
        for info in push_pull.members.into_vec() {
            let version = info.version();
            match info.state {
                State::Alive => self.on_alive(ctx, info),
                // memberlist: a remote "dead" about a member live here only
                // makes us suspect, so a member wrongly dead elsewhere gets its
                // chance to refute; about one departed here it is just news.
                State::Dead if !self.members.get(&info.id).is_some_and(|m| m.info.state.is_live()) => {
                    self.on_dead(ctx, info.id, version, header.from)
                }
                State::Suspect | State::Dead => {
                    self.on_suspect(ctx, info.id, version.with_state(State::Suspect), header.from)
                }
                State::Left => self.on_left(ctx, info.id, version),
            }
        }
        self.learned_since_sync = 0;
        self.last_sync = ctx.now;
        let Some(reply_to) = reply_to else {
            return;
        };
        if push_pull.reply {
            self.seeds.answered(reply_to);
        } else {
            // Merged first, so a refutation of a claim about us rides in the reply.
            let body = self.push_pull(false, true);
            ctx.outbox.send(reply_to, Channel::Stream, body);
        }
    }

    fn on_seed_retry(&mut self, ctx: &mut Ctx<'_>) {
        if self.live > 1 || self.leave >= LeavePhase::Left {
            return;
        }
        for addr in self.seeds.due(ctx.now) {
            self.contact_seed(ctx, addr);
        }
        match self.seeds.next_attempt() {
            Some(next) => ctx.timers.set(Timer::SeedRetry, next),
            None => ctx.timers.cancel(Timer::SeedRetry),
        }
    }

    /// Slow retries that re-merge the halves of a healed partition: one dead
    /// member, and one seed that no live member answers at.
    fn on_reconnect_timer(&mut self, ctx: &mut Ctx<'_>) {
        let interval = self.config.reconnect_interval;
        ctx.timers.set(Timer::Reconnect, ctx.now + jitter(ctx.rng, interval) / 2 + interval / 2);
        self.reap(ctx);
        if self.leave >= LeavePhase::Left {
            return;
        }
        let dead = self.members.values().filter(|m| m.info.state == State::Dead).map(|m| m.info.addr).choose(ctx.rng);
        let live_addrs: BTreeSet<SocketAddr> =
            self.members.values().filter(|m| m.info.state.is_live()).map(|m| m.info.addr).collect();
        let seed = self.seeds.addrs().filter(|addr| !live_addrs.contains(addr)).choose(ctx.rng);
        for addr in dead.into_iter().chain(seed) {
            let body = self.push_pull(false, false);
            ctx.outbox.send(addr, Channel::Stream, body);
        }
    }

    /// Forgets members dead or left for `dead_reap_after`.
    fn reap(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now;
        let expired: Vec<MemberId> = self
            .members
            .values()
            .filter(|m| !m.info.state.is_live() && m.info.id != self.local)
            .filter(|m| now >= m.since + self.config.dead_reap_after)
            .map(|m| m.info.id)
            .collect();
        for id in expired {
            self.remove_member(ctx, id);
        }
    }

    /// Makes room in a full table by forgetting the member dead or left longest.
    fn reap_oldest(&mut self, ctx: &mut Ctx<'_>) -> bool {
        let oldest = self
            .members
            .values()
            .filter(|m| !m.info.state.is_live() && m.info.id != self.local)
            .min_by_key(|m| (m.since, m.info.id))
            .map(|m| m.info.id);
        oldest.inspect(|&id| self.remove_member(ctx, id)).is_some()
    }

    fn remove_member(&mut self, ctx: &mut Ctx<'_>, id: MemberId) {
        debug_assert!(!self.members[&id].info.state.is_live(), "only dead or left members are reaped");
        self.members.remove(&id);
        if let Some(at) = self.ids.iter().position(|&other| other == id) {
            self.ids.swap_remove(at);
        }
        self.broadcasts.remove(id);
        self.probe_order.remove(id);
        self.superseded.remove(&id);
        self.conflicts.remove(&id);
        ctx.outbox.event(Event::MemberReaped(id));
    }

    // ----- checks ---------------------------------------------------------------------------

    pub(crate) fn check_invariants(&self, timers: &TimerTable) {
        let local = self.local_info();
        assert_eq!(local.id, self.local, "local record keyed by its id");
        if self.leave < LeavePhase::Left {
            assert_eq!(local.state, State::Alive, "a member never holds itself suspect or dead");
        }
        let live = self.members.values().filter(|m| m.info.state.is_live()).count();
        assert_eq!(self.live, live, "live count in step with the table");
        assert!(self.members.len() <= limits::MAX_MEMBERS, "member table within its bound");
        // A member whose leave completed is silent: its timers no longer run.
        let silent = self.leave == LeavePhase::Done;
        for (id, member) in &self.members {
            assert_eq!(*id, member.info.id, "member keyed by its id");
            let suspicion = self.suspicions.get(id);
            assert_eq!(member.info.state == State::Suspect, suspicion.is_some(), "suspicion for every suspect, {id}");
            if let Some(suspicion) = suspicion {
                assert_eq!(suspicion.version, member.info.version(), "suspicion tracks the current claim");
                assert!(silent || timers.deadline(Timer::Suspicion(*id)).is_some(), "suspicion timer armed for {id}");
            }
        }
        assert!(self.relays.len() <= limits::MAX_RELAYED_PROBES, "relays within their bound");
        for seq in self.relays.keys() {
            assert!(silent || timers.deadline(Timer::RelayedProbe(*seq)).is_some(), "relay {seq} has a nack timer");
        }
        self.broadcasts.check_invariants();
        assert!(self.broadcasts.len() <= self.members.len(), "one broadcast per member at most");
        for subject in self.broadcasts.subjects() {
            assert!(self.members.contains_key(&subject), "broadcast about a reaped member {subject}");
        }
        if self.leave < LeavePhase::Left {
            assert!(!self.joined || self.live > 1, "joined only while another member is live");
            assert!(timers.deadline(Timer::Probe).is_some(), "probe timer armed");
        }
    }
}

/// A random duration in `[0, span)`, to stagger periodic timers.
fn jitter(rng: &mut impl Rng, span: Duration) -> Duration {
    let nanos = u64::try_from(span.as_nanos()).unwrap_or(u64::MAX).max(1);
    Duration::from_nanos(rng.random_range(0..nanos))
}

impl crate::raft::Directory for Membership {
    fn addr_of(&self, id: MemberId) -> Option<SocketAddr> {
        self.members.get(&id).map(|member| member.info.addr)
    }
}
