//! The replicated KV store under faults, tested the way MIT 6.824's lab 3
//! tests a key-value service on Raft: concurrent clerks append to keys while
//! the network loses, delays and reorders messages, partitions put the leader
//! in the minority, members crash and restart from their disks (losing the
//! writes not yet synced), and logs compact into snapshots. Afterwards every
//! acknowledged append is in its key exactly once and in its clerk's order,
//! nothing was applied twice, every member holds the same store, and the
//! cluster made progress once healed.
//!
//! The store has no append, so a clerk appends its marker `x C I y` (clerk
//! `C`, its `I`th operation) by read-modify-write: a `Get` through the log,
//! then a `Put` of the value plus the marker on its own key (it is the key's
//! only writer), or a `Cas` at the revision read on a key shared with other
//! clerks. Every write applied adds exactly one marker and one store
//! revision, so the store's revision must equal the number of markers in it:
//! a `Put` applied twice (the session table failing to dedupe a resend) is a
//! revision without a marker. A `Cas` resent and applied twice fails the
//! second time and changes nothing: shared keys test order and exactly-once
//! under contention, own keys test dedupe.
//!
//! A clerk whose answer is uncertain (a timeout, a session that expired, its
//! member crashed) reads its key again before it writes again, and takes its
//! marker there as the acknowledgement. The read is a log entry after
//! anything the lost attempt can still commit as: Raft keeps a proposed
//! entry at its index, a crashed member's frames in flight are dropped with
//! it, and the session's `confirmed_below` makes a resend of the same session
//! that arrives after the read a no-op. So the marker is there or never will
//! be, and the clerk's own key is always exactly its acknowledged markers.
//!
//! The simulated streams (Raft and client traffic) never drop or reorder
//! frames by themselves: loss delays them as TCP's retransmissions would.
//! Messages are dropped here as 6.824 drops RPCs, by cutting links for a few
//! milliseconds at a time (a frame arriving across a cut is lost); datagrams
//! (SWIM) are also lost, duplicated and reordered by the simulated network.
//! Duplicate client commands come from the members themselves, which resend
//! an unanswered command every election timeout with the same number.
//!
//! Partitions of the leader and its crashes are timed, event by event, to
//! come while a `Put` is in flight from the leader to the members that go
//! on: they commit it, the leader never answers it, and the member that
//! asked resends it to a leader that has applied it. With the session
//! table's lookups taken out (in `Replicated::command` and the leader's
//! `lead_client_message`), every test here but the one-key test fails on the
//! revision count; the one-key test uses `Cas` only and fails instead when
//! `Cas` ignores its expected revision.
//!
//! Unlike 6.824's clerks, which try every server, a clerk here asks one
//! member (the API a member offers its own application) and waits while
//! that member is down.

mod support_raft;

use std::collections::{BTreeMap, BTreeSet};

use core::time::Duration;

use quorate_core::raft::Payload;
use quorate_core::rsm::kv::{Kv, KvCommand, KvResponse};
use quorate_core::rsm::{ApplyError, StateMachine};
use quorate_core::testing::{Disk, NetConfig, NodeIdx, Sim};
use quorate_core::{Command, Config, Event, Instant};
use support_raft::{MS, SECOND, agreed_leader, await_leader, describe, expect};

/// A small deterministic generator (splitmix64) for the fault schedules and
/// the clerks' choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// A duration in `[low, high)` milliseconds.
    fn millis(&mut self, low: u64, high: u64) -> Duration {
        Duration::from_millis(low + self.below(high - low))
    }
}

/// The marker clerk `clerk` appends in its operation `i`.
fn marker(clerk: usize, i: u64) -> String {
    format!("x {clerk} {i} y")
}

/// The markers of a value, in order; panics on anything else in it.
fn markers(key: &str, value: &[u8]) -> Vec<(usize, u64)> {
    let text = std::str::from_utf8(value).unwrap_or_else(|_| panic!("{key}: not UTF-8: {value:?}"));
    let mut found = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let end = rest.find(" y").unwrap_or_else(|| panic!("{key}: a torn marker in {text:?}"));
        let parsed = rest[..end].strip_prefix("x ").and_then(|body| {
            let (clerk, i) = body.split_once(' ')?;
            Some((clerk.parse().ok()?, i.parse().ok()?))
        });
        found.push(parsed.unwrap_or_else(|| panic!("{key}: not a marker: {:?} in {text:?}", &rest[..end])));
        rest = &rest[end + 2..];
    }
    found
}

/// What a clerk sends next for its current operation.
#[derive(Clone, Debug)]
enum Next {
    Read,
    Write(KvCommand),
}

/// A clerk's current operation: append its marker `i` to `key`.
#[derive(Clone, Debug)]
struct Op {
    i: u64,
    key: String,
    /// The key is shared: written by `Cas`, not `Put`.
    shared: bool,
    /// A write of it was sent: its marker may be in the key.
    written: bool,
    /// Compare-and-sets of it that failed.
    conflicts: u32,
    next: Next,
}

/// A command in flight: its request number and the member's boot it went to
/// (a member that crashed or restarted since never answers it).
#[derive(Clone, Copy, Debug)]
struct InFlight {
    request: u64,
    boot: u64,
    write: bool,
}

/// One client, as 6.824's clerk: one operation at a time, through one member.
#[derive(Debug)]
struct Clerk {
    member: NodeIdx,
    op: Option<Op>,
    /// Sends nothing before this (a back-off after a failed compare-and-set).
    not_before: Instant,
    in_flight: Option<InFlight>,
    next_i: u64,
    /// Acknowledged operations, in order: (i, key).
    acked: Vec<(u64, String)>,
}

/// What happened to the clerks' commands.
#[derive(Debug, Default)]
struct Counts {
    acked: u64,
    reads: u64,
    writes: u64,
    /// Writes whose answer was a timeout, an expired session or a crash.
    uncertain: u64,
    /// Uncertain writes the clerk found applied when it read again.
    found_applied: u64,
    cas_failed: u64,
    /// Commands lost with a member that crashed.
    lost_in_crash: u64,
    /// Snapshots installed by boots of members that crashed since.
    snapshots_installed_before_crashes: u64,
}

/// Snapshots a member's current boot took from a leader.
fn installed(node: &quorate_core::Node) -> u64 {
    node.metrics().received.get("install_snapshot").copied().unwrap_or(0)
}

/// How a lab is set up.
struct Setup {
    seed: u64,
    members: usize,
    clerks_per_member: usize,
    /// Keys every clerk may append to (by `Cas`).
    shared_keys: u64,
    /// How often an operation goes to a shared key rather than the clerk's own.
    shared_percent: u64,
    config: Config,
}

impl Setup {
    fn new(seed: u64) -> Setup {
        let mut config = expect(5);
        config.raft.snapshot_threshold = 200;
        Setup { seed, members: 5, clerks_per_member: 1, shared_keys: 2, shared_percent: 30, config }
    }
}

/// A cluster, its clerks and the faults done to it.
struct Lab {
    sim: Sim,
    nodes: Vec<NodeIdx>,
    clerks: Vec<Clerk>,
    shared_keys: u64,
    shared_percent: u64,
    /// Every key a clerk appended to.
    keys: BTreeSet<String>,
    /// Requests in flight: which clerk is waiting for each.
    requests: BTreeMap<u64, usize>,
    next_request: u64,
    rng: Rng,
    /// Whether clerks start new operations.
    issuing: bool,
    /// Percent of directed links cut in each 10 ms period (messages dropped).
    drop_percent: u64,
    /// The current partition's smaller side, kept across link reshuffles.
    minority: Option<Vec<NodeIdx>>,
    down: Vec<NodeIdx>,
    paused: Vec<NodeIdx>,
    counts: Counts,
}

/// How often the lab collects answers and issues commands.
const SLICE: Duration = Duration::from_millis(2);
/// How long a link-drop pattern lasts.
const DROP_PERIOD: Duration = Duration::from_millis(10);

impl Lab {
    fn new(setup: Setup) -> Lab {
        // An own key takes `Put`s only with one clerk per member: two clerks
        // sharing a session could hold `confirmed_below` back for each other.
        assert!(setup.clerks_per_member == 1 || setup.shared_percent == 100, "own keys need a member each");
        let mut sim = Sim::new(setup.seed);
        let nodes = sim.add_nodes(setup.members, &setup.config);
        sim.join_all(&nodes, nodes[0]);
        await_leader(&mut sim, &nodes, 10 * SECOND);
        let clerks = (0..setup.members * setup.clerks_per_member)
            .map(|c| Clerk {
                member: nodes[c % setup.members],
                op: None,
                not_before: Instant::ZERO,
                in_flight: None,
                next_i: 0,
                acked: Vec::new(),
            })
            .collect();
        Lab {
            sim,
            nodes,
            clerks,
            shared_keys: setup.shared_keys,
            keys: BTreeSet::new(),
            shared_percent: setup.shared_percent,
            requests: BTreeMap::new(),
            next_request: 1,
            rng: Rng(setup.seed ^ 0x6c61_6233),
            issuing: true,
            drop_percent: 0,
            minority: None,
            down: Vec::new(),
            paused: Vec::new(),
            counts: Counts::default(),
        }
    }

    fn seed(&self) -> u64 {
        self.sim.seed()
    }

    /// Runs the cluster and the clerks for `duration` of virtual time.
    fn run_for(&mut self, duration: Duration) {
        let end = self.sim.now() + duration;
        let mut next_drops = self.sim.now();
        while self.sim.now() < end {
            if self.drop_percent > 0 && self.sim.now() >= next_drops {
                self.reshuffle_links();
                next_drops = self.sim.now() + DROP_PERIOD;
            }
            self.pump();
            let slice = SLICE.min(end.saturating_duration_since(self.sim.now()));
            self.sim.run_for(slice);
        }
        self.pump();
    }

    /// Runs one event at a time until `done` holds, for at most `limit`;
    /// whether it came to hold. For faults timed between two events.
    fn step_until(&mut self, limit: Duration, mut done: impl FnMut(&Sim) -> bool) -> bool {
        let end = self.sim.now() + limit;
        while !done(&self.sim) {
            if self.sim.now() >= end || !self.sim.step() {
                return false;
            }
            self.pump();
        }
        true
    }

    /// Runs until `done` holds, for at most `limit`; whether it came to hold.
    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Lab) -> bool) -> bool {
        let end = self.sim.now() + limit;
        while !done(self) {
            if self.sim.now() >= end {
                return false;
            }
            self.run_for(10 * MS);
        }
        true
    }

    /// New random link cuts (messages crossing them are dropped), keeping
    /// the current partition.
    fn reshuffle_links(&mut self) {
        self.sim.heal();
        if let Some(minority) = &self.minority {
            self.sim.partition(&[minority]);
        }
        for &from in &self.nodes {
            for &to in &self.nodes {
                if from != to && self.rng.chance(self.drop_percent) {
                    self.sim.cut(from, to);
                }
            }
        }
    }

    /// Collects the answers, notices commands lost with a crashed member,
    /// and sends what the clerks have to send.
    fn pump(&mut self) {
        for record in self.sim.take_events() {
            if let Event::Applied { request, result } = record.event
                && let Some(clerk) = self.requests.remove(&request)
            {
                let result = result.map(|bytes| KvResponse::decode(&bytes).expect("a KV response"));
                self.on_answer(clerk, result);
            }
        }
        for c in 0..self.clerks.len() {
            let clerk = &self.clerks[c];
            if let Some(in_flight) = clerk.in_flight
                && self.sim.node(clerk.member).map(|node| node.boot_id()) != Some(in_flight.boot)
            {
                self.requests.remove(&in_flight.request);
                self.counts.lost_in_crash += 1;
                self.lost(c, in_flight.write);
            }
            self.issue(c);
        }
    }

    /// The clerk's write (or read) will never be answered, or was answered
    /// with an error: the outcome of a write is unknown, so read again.
    fn lost(&mut self, c: usize, write: bool) {
        let clerk = &mut self.clerks[c];
        clerk.in_flight = None;
        let op = clerk.op.as_mut().expect("a command in flight belongs to an operation");
        if write {
            self.counts.uncertain += 1;
        }
        op.next = Next::Read;
    }

    fn on_answer(&mut self, c: usize, result: Result<KvResponse, ApplyError>) {
        let seed = self.seed();
        let clerk = &mut self.clerks[c];
        let in_flight = clerk.in_flight.take().expect("an answer to a command in flight");
        let op = clerk.op.as_mut().expect("a command in flight belongs to an operation");
        let mine = marker(c, op.i);
        match (in_flight.write, result) {
            (false, Ok(KvResponse::Value { entry, .. })) => {
                let value = entry.as_ref().map_or(&[][..], |entry| entry.value.as_slice());
                let found = markers(&op.key, value);
                // Read-your-writes: what this clerk had acknowledged on the key is all there, in order.
                let expected: Vec<(usize, u64)> =
                    clerk.acked.iter().filter(|(_, key)| *key == op.key).map(|&(i, _)| (c, i)).collect();
                let own_seen: Vec<(usize, u64)> =
                    found.iter().copied().filter(|&(clerk, i)| clerk == c && i != op.i).collect();
                assert_eq!(
                    own_seen, expected,
                    "seed {seed}: clerk {c} read {} and missed or reordered its acknowledged appends",
                    op.key
                );
                if found.contains(&(c, op.i)) {
                    assert!(op.written, "seed {seed}: {mine} is in {} before clerk {c} wrote it", op.key);
                    self.counts.found_applied += 1;
                    self.ack(c);
                    return;
                }
                let mut value = value.to_vec();
                value.extend_from_slice(mine.as_bytes());
                let key = op.key.clone();
                op.next = Next::Write(if op.shared {
                    KvCommand::Cas { key, expected: entry.map(|entry| entry.modified), value }
                } else {
                    KvCommand::Put { key, value }
                });
            }
            (true, Ok(KvResponse::Written { .. })) => self.ack(c),
            (true, Ok(KvResponse::CasFailed { .. })) => {
                // Another clerk wrote first (or this one did, on an earlier
                // try whose answer was lost): read again, after a random
                // back-off that grows with each conflict, or the clerks of
                // the leader, whose round trips are shortest, starve the rest.
                self.counts.cas_failed += 1;
                op.conflicts += 1;
                op.next = Next::Read;
                let ceiling = 5 << op.conflicts.min(5);
                let backoff = self.rng.millis(0, ceiling);
                self.clerks[c].not_before = self.sim.now() + backoff;
            }
            (write, Err(ApplyError::Timeout { .. } | ApplyError::SessionExpired)) => self.lost(c, write),
            (write, other) => {
                panic!("seed {seed}: clerk {c} got {other:?} for a {}", if write { "write" } else { "read" })
            }
        }
    }

    fn ack(&mut self, c: usize) {
        let clerk = &mut self.clerks[c];
        let op = clerk.op.take().expect("an operation to acknowledge");
        clerk.acked.push((op.i, op.key));
        clerk.next_i = op.i + 1;
        self.counts.acked += 1;
    }

    /// Sends the clerk's next command if it has one and its member runs.
    fn issue(&mut self, c: usize) {
        let clerk = &self.clerks[c];
        if clerk.in_flight.is_some() || !self.sim.is_running(clerk.member) || self.sim.now() < clerk.not_before {
            return;
        }
        if self.clerks[c].op.is_none() {
            if !self.issuing {
                return;
            }
            // Keys are replaced by fresh ones as the run goes on (every 20
            // appends of a clerk's own, every 2 s of the shared), so values
            // stay short: every read and write carries the whole value.
            let i = self.clerks[c].next_i;
            let shared = self.shared_keys > 0 && self.rng.chance(self.shared_percent);
            let key = if shared {
                let k = self.rng.below(self.shared_keys);
                format!("shared/{k}/{}", self.sim.now().as_nanos() / (2 * SECOND).as_nanos() as u64)
            } else {
                format!("own/{c}/{}", i / 20)
            };
            self.keys.insert(key.clone());
            self.clerks[c].op = Some(Op { i, key, shared, written: false, conflicts: 0, next: Next::Read });
        }
        let request = self.next_request;
        self.next_request += 1;
        let clerk = &mut self.clerks[c];
        let op = clerk.op.as_mut().expect("set above");
        let (command, write) = match &op.next {
            Next::Read => (KvCommand::Get { key: op.key.clone() }, false),
            Next::Write(command) => (command.clone(), true),
        };
        if write {
            op.written = true;
            self.counts.writes += 1;
        } else {
            self.counts.reads += 1;
        }
        let member = clerk.member;
        let boot = self.sim.node(member).expect("running").boot_id();
        clerk.in_flight = Some(InFlight { request, boot, write });
        self.requests.insert(request, c);
        self.sim.command(member, Command::Apply { request, command: command.encode() });
    }

    /// The leader every running member agrees on, if any.
    fn leader(&self) -> Option<NodeIdx> {
        let up: Vec<NodeIdx> = self.nodes.iter().copied().filter(|&idx| self.sim.is_running(idx)).collect();
        agreed_leader(&self.sim, &up)
    }

    /// Snapshots the members took from a leader over the run.
    fn snapshots_installed(&self) -> u64 {
        let running: u64 = self.nodes.iter().filter_map(|&idx| self.sim.node(idx)).map(installed).sum();
        self.counts.snapshots_installed_before_crashes + running
    }

    fn crash(&mut self, idx: NodeIdx) {
        self.pump();
        self.counts.snapshots_installed_before_crashes += self.sim.node(idx).map_or(0, installed);
        self.sim.crash(idx);
        self.down.push(idx);
    }

    /// Restarts every crashed member from its disk and has it rejoin.
    fn restart_down(&mut self) {
        for idx in std::mem::take(&mut self.down) {
            self.sim.restart(idx, Disk::Keep);
            let seeds: Vec<NodeIdx> = self.nodes.iter().copied().filter(|&other| other != idx).collect();
            self.sim.join(idx, &seeds);
        }
    }

    fn pause(&mut self, idx: NodeIdx) {
        self.sim.pause(idx);
        self.paused.push(idx);
    }

    /// Cuts `minority` off from the rest (kept across message drops).
    fn partition(&mut self, minority: Vec<NodeIdx>) {
        self.sim.partition(&[&minority]);
        self.minority = Some(minority);
    }

    fn heal_partition(&mut self) {
        self.minority = None;
        self.sim.heal();
    }

    fn resume_paused(&mut self) {
        for idx in std::mem::take(&mut self.paused) {
            self.sim.resume(idx);
        }
    }

    /// Ends every fault: a reliable network again, no partition or cut, no
    /// member paused or down.
    fn heal_all(&mut self) {
        self.drop_percent = 0;
        *self.sim.net_mut() = NetConfig::default();
        self.heal_partition();
        self.resume_paused();
        self.restart_down();
    }

    /// After healing: every clerk completes `ops` more operations within `limit`.
    fn expect_progress(&mut self, ops: usize, limit: Duration) {
        let before: Vec<usize> = self.clerks.iter().map(|clerk| clerk.acked.len()).collect();
        let progressed = self.run_until(limit, |lab| {
            lab.clerks.iter().zip(&before).all(|(clerk, &before)| clerk.acked.len() >= before + ops)
        });
        let done: Vec<usize> =
            self.clerks.iter().zip(&before).map(|(clerk, before)| clerk.acked.len() - before).collect();
        assert!(
            progressed,
            "seed {}: no progress after healing: operations done per clerk {done:?}\n{}",
            self.seed(),
            describe(&self.sim)
        );
    }

    /// Stops new operations, lets every clerk finish its current one, and
    /// checks the store: every member holds the same one, each
    /// acknowledged append is in its key exactly once and in its clerk's
    /// order, nothing else is, and no write was applied twice.
    fn finish_and_check(&mut self) {
        let seed = self.seed();
        self.issuing = false;
        let finished = self.run_until(20 * SECOND, |lab| lab.clerks.iter().all(|clerk| clerk.op.is_none()));
        let stuck: Vec<usize> = (0..self.clerks.len()).filter(|&c| self.clerks[c].op.is_some()).collect();
        assert!(finished, "seed {seed}: clerks {stuck:?} never finished\n{}", describe(&self.sim));
        // Every member applies the same log: wait until they all hold the same store.
        let same = self.run_until(10 * SECOND, |lab| {
            let states: Vec<Vec<u8>> =
                lab.nodes.iter().map(|&idx| lab.sim.node(idx).unwrap().state_machine_snapshot()).collect();
            states.windows(2).all(|pair| pair[0] == pair[1])
        });
        assert!(same, "seed {seed}: the members' stores differ\n{}", describe(&self.sim));
        let mut kv = Kv::new();
        kv.restore(&self.sim.node(self.nodes[0]).unwrap().state_machine_snapshot()).unwrap();

        let keys = self.keys.clone();
        let mut applied: BTreeMap<(usize, u64), String> = BTreeMap::new();
        for key in &keys {
            let Some(entry) = kv.get(key) else { continue };
            let mut last: BTreeMap<usize, u64> = BTreeMap::new();
            for (c, i) in markers(key, &entry.value) {
                if let Some(other) = applied.insert((c, i), key.clone()) {
                    panic!("seed {seed}: {} applied twice, in {other} and {key}", marker(c, i));
                }
                if let Some(&before) = last.get(&c) {
                    assert!(before < i, "seed {seed}: {key} has clerk {c}'s {i} after its {before}");
                }
                last.insert(c, i);
            }
        }
        let acked: BTreeMap<(usize, u64), String> = self
            .clerks
            .iter()
            .enumerate()
            .flat_map(|(c, clerk)| clerk.acked.iter().map(move |(i, key)| ((c, *i), key.clone())))
            .collect();
        for ((c, i), key) in &acked {
            assert_eq!(
                applied.get(&(*c, *i)),
                Some(key),
                "seed {seed}: acknowledged {} lost from {key}",
                marker(*c, *i)
            );
        }
        let extra: Vec<_> = applied.keys().filter(|op| !acked.contains_key(op)).collect();
        assert!(extra.is_empty(), "seed {seed}: applied but never acknowledged: {extra:?}");
        assert_eq!(
            kv.revision(),
            applied.len() as u64,
            "seed {seed}: {} writes applied for {} appends: a write was applied twice",
            kv.revision(),
            applied.len()
        );
        let KvResponse::Entries { entries, .. } =
            KvResponse::decode(&kv.apply(&KvCommand::List { prefix: String::new(), limit: u32::MAX }.encode()))
                .unwrap()
        else {
            panic!("a listing")
        };
        assert!(entries.iter().all(|(key, _)| keys.contains(key)), "seed {seed}: keys nobody wrote");
        self.check_reads_through_every_member(&kv, &keys);
    }

    /// A `Get` of every key through every member's log agrees with `kv`.
    fn check_reads_through_every_member(&mut self, kv: &Kv, keys: &BTreeSet<String>) {
        let seed = self.seed();
        for &idx in &self.nodes.clone() {
            for key in keys {
                let request = self.next_request;
                self.next_request += 1;
                let command = KvCommand::Get { key: key.clone() };
                self.sim.take_events();
                self.sim.command(idx, Command::Apply { request, command: command.encode() });
                let mut answer = None;
                let answered = self.sim.run_until(10 * SECOND, |sim| {
                    answer = sim.events().iter().find_map(|record| match &record.event {
                        Event::Applied { request: r, result } if *r == request => Some(result.clone()),
                        _ => None,
                    });
                    answer.is_some()
                });
                assert!(answered, "seed {seed}: {idx} never answered a read of {key}\n{}", describe(&self.sim));
                let result = answer.unwrap().map(|bytes| KvResponse::decode(&bytes).unwrap());
                let Ok(KvResponse::Value { entry, .. }) = result else {
                    panic!("seed {seed}: {idx} read {key}: {result:?}")
                };
                assert_eq!(entry.as_ref(), kv.get(key), "seed {seed}: {idx} read {key}");
            }
        }
    }

    fn report(&self, name: &str) {
        eprintln!(
            "{name} seed {}: {:?}, snapshots installed {}, {} virtual, {} steps, term {}",
            self.seed(),
            self.counts,
            self.snapshots_installed(),
            self.sim.now(),
            self.sim.steps(),
            self.sim.node(self.nodes[0]).map_or(0, |node| node.term())
        );
    }
}

/// Some member other than `except`, at random.
fn other_than(lab: &mut Lab, except: Option<NodeIdx>) -> NodeIdx {
    let others: Vec<NodeIdx> = lab.nodes.iter().copied().filter(|&idx| Some(idx) != except).collect();
    others[lab.rng.below(others.len() as u64) as usize]
}

/// The leader; if the members do not agree on one, a member that thinks it
/// leads, or any member.
fn leader_or_any(lab: &mut Lab) -> NodeIdx {
    if let Some(leader) = lab.leader() {
        return leader;
    }
    let claiming = lab.nodes.iter().copied().find(|&idx| lab.sim.node(idx).is_some_and(|node| node.is_leader()));
    claiming.unwrap_or_else(|| other_than(lab, None))
}

/// An unreliable network: 2 % of datagrams lost (stream frames delayed as
/// TCP's retransmissions would), 5 % duplicated, latencies spread over
/// 1–20 ms so datagrams reorder, and `drop_percent` of the directed links
/// cut in each 10 ms period, dropping the messages that cross them.
fn unreliable_network(lab: &mut Lab, drop_percent: u64) {
    let net = lab.sim.net_mut();
    net.loss = 0.02;
    net.duplicate = 0.05;
    net.latency_max = 20 * MS;
    lab.drop_percent = drop_percent;
}

/// Runs `rounds` periods of 0.3–0.7 s, pausing a member for up to 300 ms
/// in some of them (a GC pause: it misses heartbeats and wakes to stale
/// messages).
fn with_pauses(lab: &mut Lab, rounds: usize) {
    for _ in 0..rounds {
        let period = lab.rng.millis(300, 700);
        lab.run_for(period);
        if lab.rng.chance(40) {
            let idx = other_than(lab, None);
            lab.pause(idx);
            let pause = lab.rng.millis(50, 300);
            lab.run_for(pause);
            lab.resume_paused();
        }
    }
}

/// Whether at least two members of `group` hold a `Put` past `leader`'s
/// commit index. Cut off or crashed now, the leader never answers it, and
/// the group commits it (its next leader is one of those two: the others
/// cannot win their votes), so the member that asked must resend it to a
/// leader that has applied it already: dedupe's case.
fn put_in_flight(sim: &Sim, leader: NodeIdx, group: &[NodeIdx]) -> bool {
    let Some(commit) = sim.node(leader).map(|node| node.commit_index()) else { return false };
    let is_put = |entry: &quorate_core::raft::Entry| match &entry.payload {
        Payload::Command { command, .. } => {
            matches!(postcard::from_bytes(command.as_slice()), Ok(KvCommand::Put { .. }))
        }
        _ => false,
    };
    let holding =
        group.iter().filter(|&&idx| sim.node(idx).is_some_and(|node| node.log_entries(commit + 1).any(is_put)));
    holding.count() >= 2
}

/// Runs, one event at a time, until a `Put` is in flight from `leader` to
/// the rest of `nodes` but `minority` ([`put_in_flight`]), for at most a second.
fn await_put_in_flight(lab: &mut Lab, leader: NodeIdx, minority: &[NodeIdx]) {
    let group: Vec<NodeIdx> = lab.nodes.iter().copied().filter(|idx| !minority.contains(idx)).collect();
    lab.step_until(SECOND, |sim| put_in_flight(sim, leader, &group));
}

/// One partition with the leader in the minority (with one other member,
/// so the majority can elect), then healed. The cut comes while a `Put`
/// is in flight from the leader to the majority, when there is one.
fn partition_the_leader(lab: &mut Lab) {
    let leader = leader_or_any(lab);
    let other = other_than(lab, Some(leader));
    await_put_in_flight(lab, leader, &[leader, other]);
    lab.partition(vec![leader, other]);
    // Often longer than the 3 s apply timeout: the minority's commands time
    // out, and their clerks must find out whether they were applied.
    let cut_off = lab.rng.millis(1000, 4000);
    lab.run_for(cut_off);
    lab.heal_partition();
    let healed = lab.rng.millis(300, 900);
    lab.run_for(healed);
}

/// One crash and restart with the disk kept: the leader half of the time
/// (while a `Put` is in flight from it, when there is one), a second member
/// now and then, or with `everyone` the whole cluster.
fn crash_and_restart(lab: &mut Lab, everyone: bool) {
    let victims: Vec<NodeIdx> = if everyone {
        lab.nodes.clone()
    } else {
        let leader = lab.rng.chance(50);
        let first = if leader { leader_or_any(lab) } else { other_than(lab, None) };
        let mut victims = vec![first];
        if lab.rng.chance(30) {
            victims.push(other_than(lab, Some(first)));
        }
        if leader {
            await_put_in_flight(lab, first, &victims);
        }
        victims
    };
    for idx in victims {
        lab.crash(idx);
    }
    let down = lab.rng.millis(200, 1200);
    lab.run_for(down);
    lab.restart_down();
    let up = lab.rng.millis(500, 1500);
    lab.run_for(up);
}

/// The end of every scenario: heal, see progress, finish and check.
fn heal_and_check(mut lab: Lab, name: &str) -> Lab {
    lab.heal_all();
    lab.expect_progress(3, 10 * SECOND);
    lab.finish_and_check();
    lab.report(name);
    lab
}

#[test]
fn appends_under_an_unreliable_network_apply_once_in_order() {
    for seed in 1..=2 {
        let mut lab = Lab::new(Setup::new(seed));
        unreliable_network(&mut lab, 10);
        with_pauses(&mut lab, 12);
        heal_and_check(lab, "unreliable");
    }
}

#[test]
fn appends_across_partitions_that_strand_the_leader_apply_once_in_order() {
    for seed in 11..=12 {
        let mut lab = Lab::new(Setup::new(seed));
        for _ in 0..5 {
            partition_the_leader(&mut lab);
        }
        heal_and_check(lab, "partitions");
    }
}

#[test]
fn appends_across_crashes_and_restarts_from_disk_apply_once_in_order() {
    // Disks sync 5 ms after a write: a crash loses what was not synced yet.
    for seed in 21..=22 {
        let mut lab = Lab::new(Setup::new(seed));
        lab.sim.disk_mut().fsync_delay = 5 * MS;
        for round in 0..8 {
            crash_and_restart(&mut lab, round == 4);
        }
        heal_and_check(lab, "crashes");
    }
}

#[test]
fn appends_under_every_fault_with_a_log_compacted_every_30_entries_apply_once_in_order() {
    const THRESHOLD: usize = 30;
    for seed in 31..=32 {
        let mut setup = Setup::new(seed);
        setup.config.raft.snapshot_threshold = THRESHOLD;
        let mut lab = Lab::new(setup);
        lab.sim.disk_mut().fsync_delay = 5 * MS;
        unreliable_network(&mut lab, 5);
        for round in 0..8 {
            match lab.rng.below(3) {
                0 => partition_the_leader(&mut lab),
                1 => crash_and_restart(&mut lab, round == 5),
                _ => with_pauses(&mut lab, 2),
            }
        }
        let lab = heal_and_check(lab, "snapshots");
        assert!(lab.snapshots_installed() > 0, "seed {seed}: no member was brought up to date by a snapshot");
        for &idx in &lab.nodes {
            let node = lab.sim.node(idx).unwrap();
            let log = node.log_entries(0).count();
            assert!(node.snapshot_index() > 0, "seed {seed}: {idx} never compacted its log");
            assert!(log <= 2 * THRESHOLD, "seed {seed}: {idx} holds {log} entries past its snapshot");
        }
    }
}

#[test]
fn many_clerks_appending_to_one_key_at_once_apply_once_in_order() {
    // Twenty clerks, four per member, so each member has several commands
    // of one session in flight; every append goes to the one shared key of
    // the moment (a fresh one every 2 s), by compare-and-set.
    for seed in 41..=42 {
        let setup = Setup { clerks_per_member: 4, shared_keys: 1, shared_percent: 100, ..Setup::new(seed) };
        let mut lab = Lab::new(setup);
        unreliable_network(&mut lab, 5);
        with_pauses(&mut lab, 4);
        partition_the_leader(&mut lab);
        with_pauses(&mut lab, 4);
        heal_and_check(lab, "one key");
    }
}
