//! The replicated state machine in the deterministic driver (DESIGN §3.4):
//! `apply` from any member, at most once across leader changes, a clear
//! error when no leader answers, and state carried by snapshots.

mod support_raft;

use core::time::Duration;

use quorate_core::rsm::ApplyError;
use quorate_core::rsm::kv::{Kv, KvCommand, KvEntry, KvResponse};
use quorate_core::testing::{Disk, NodeIdx, Sim};
use quorate_core::time::Instant;
use quorate_core::{Command, Event};
use support_raft::{SECOND, agreed_leader, await_leader, describe, expect};

/// A cluster of `n` voters that bootstrapped together and agree on a leader.
fn cluster(seed: u64, n: usize) -> (Sim, Vec<NodeIdx>) {
    let mut sim = Sim::new(seed);
    let nodes = sim.add_nodes(n, &expect(n as u32));
    sim.join_all(&nodes, nodes[0]);
    await_leader(&mut sim, &nodes, 10 * SECOND);
    (sim, nodes)
}

/// Sends `command` as request `request` from `idx`.
fn apply(sim: &mut Sim, idx: NodeIdx, request: u64, command: KvCommand) {
    sim.command(idx, Command::Apply { request, command: command.encode() });
}

/// Sends `query` as read request `request` from `idx`.
fn read(sim: &mut Sim, idx: NodeIdx, request: u64, query: KvCommand) {
    sim.command(idx, Command::Read { request, query: query.encode() });
}

/// The answer `idx` reported for `request` (an apply or a read), if any,
/// and when.
fn answered(sim: &Sim, idx: NodeIdx, request: u64) -> Option<(Instant, Result<KvResponse, ApplyError>)> {
    sim.events().iter().find_map(|record| match &record.event {
        Event::Applied { request: r, result } | Event::Read { request: r, result }
            if record.node == idx && *r == request =>
        {
            Some((record.at, result.clone().map(|bytes| KvResponse::decode(&bytes).expect("a KV response"))))
        }
        _ => None,
    })
}

/// The answer `idx` reported for `request`, if any.
fn answer(sim: &Sim, idx: NodeIdx, request: u64) -> Option<Result<KvResponse, ApplyError>> {
    answered(sim, idx, request).map(|(_, result)| result)
}

/// Runs until `idx` answered `request`; returns the answer.
fn await_answer(sim: &mut Sim, idx: NodeIdx, request: u64, limit: Duration) -> Result<KvResponse, ApplyError> {
    if !sim.run_until(limit, |sim| answer(sim, idx, request).is_some()) {
        panic!("{idx} never answered request {request} (Sim::new({}))\n{}", sim.seed(), describe(sim));
    }
    answer(sim, idx, request).unwrap()
}

fn put(key: &str, value: &str) -> KvCommand {
    KvCommand::Put { key: key.into(), value: value.as_bytes().to_vec() }
}

fn get(key: &str) -> KvCommand {
    KvCommand::Get { key: key.into() }
}

#[test]
fn an_apply_from_any_member_commits_and_is_answered_there() {
    for seed in 1..=5 {
        let (mut sim, nodes) = cluster(seed, 3);
        let leader = agreed_leader(&sim, &nodes).unwrap();
        let follower = *nodes.iter().find(|&&idx| idx != leader).unwrap();
        assert_eq!(
            await_answer_of(&mut sim, follower, 1, put("color", "blue")),
            Ok(KvResponse::Written { revision: 1 }),
            "seed {seed}"
        );
        // Read back through the log from the leader and from the other follower.
        for (request, idx) in nodes.iter().enumerate() {
            apply(&mut sim, *idx, 10 + request as u64, get("color"));
        }
        for (request, idx) in nodes.iter().enumerate() {
            let entry = KvEntry { value: b"blue".to_vec(), created: 1, modified: 1 };
            assert_eq!(
                await_answer(&mut sim, *idx, 10 + request as u64, 5 * SECOND),
                Ok(KvResponse::Value { entry: Some(entry), revision: 1 }),
                "seed {seed}, {idx}"
            );
        }
        // Every member applied the same state.
        sim.run_for(SECOND);
        let states: Vec<Vec<u8>> = nodes.iter().map(|&idx| sim.node(idx).unwrap().state_machine_snapshot()).collect();
        assert!(states.windows(2).all(|pair| pair[0] == pair[1]), "seed {seed}: members differ");
    }
}

/// `apply` and then run until answered: a helper for sequential clients.
fn await_answer_of(sim: &mut Sim, idx: NodeIdx, request: u64, command: KvCommand) -> Result<KvResponse, ApplyError> {
    apply(sim, idx, request, command);
    await_answer(sim, idx, request, 10 * SECOND)
}

#[test]
fn a_command_whose_answer_was_lost_in_a_leader_change_applies_once() {
    // The 6.824 case: the leader commits a member's command, then crashes
    // before the member hears of it; the member resends the same (session,
    // seq) to the next leader, which answers from the session table.
    for seed in 1..=5 {
        let (mut sim, nodes) = cluster(100 + seed, 5);
        let leader = agreed_leader(&sim, &nodes).unwrap();
        let client = *nodes.iter().find(|&&idx| idx != leader).unwrap();
        assert_eq!(await_answer_of(&mut sim, client, 1, put("warmup", "x")), Ok(KvResponse::Written { revision: 1 }));
        apply(&mut sim, client, 2, put("k", "v"));
        // Until the command commits on the leader.
        let before = sim.node(leader).unwrap().commit_index();
        let committed = sim.run_until(5 * SECOND, |sim| {
            sim.node(leader).unwrap().commit_index() > before && answer(sim, client, 2).is_none()
        });
        assert!(committed, "seed {seed}: not committed before answered\n{}", describe(&sim));
        // The member hears nothing more; the leader dies.
        sim.isolate(client);
        sim.crash(leader);
        let rest: Vec<NodeIdx> = nodes.iter().copied().filter(|&idx| idx != leader && idx != client).collect();
        await_leader(&mut sim, &rest, 10 * SECOND);
        sim.heal();
        assert_eq!(
            await_answer(&mut sim, client, 2, 10 * SECOND),
            Ok(KvResponse::Written { revision: 2 }),
            "seed {seed}"
        );
        // Applied once: the next write is revision 3.
        assert_eq!(await_answer_of(&mut sim, client, 3, put("k", "w")), Ok(KvResponse::Written { revision: 3 }));
    }
}

#[test]
fn an_apply_with_no_leader_in_reach_fails_in_time_naming_the_last_leader() {
    let (mut sim, nodes) = cluster(7, 3);
    let leader = agreed_leader(&sim, &nodes).unwrap();
    let member = *nodes.iter().find(|&&idx| idx != leader).unwrap();
    sim.isolate(member);
    let started = sim.now();
    apply(&mut sim, member, 1, put("k", "v"));
    let result = await_answer(&mut sim, member, 1, 10 * SECOND);
    let waited = sim.now().saturating_duration_since(started);
    assert!(matches!(result, Err(ApplyError::Timeout { .. })), "{result:?}");
    // The fast profile's apply timeout is 3 s: answered then, not sooner, not never.
    assert!(waited >= Duration::from_secs(3) && waited < Duration::from_secs(4), "answered after {waited:?}");
}

#[test]
fn an_idle_member_gets_a_fresh_session_instead_of_an_expired_one() {
    let mut config = expect(3);
    config.session_ttl = Duration::from_secs(4);
    let mut sim = Sim::new(21);
    let nodes = sim.add_nodes(3, &config);
    sim.join_all(&nodes, nodes[0]);
    await_leader(&mut sim, &nodes, 10 * SECOND);
    let (a, b) = (nodes[1], nodes[2]);
    assert_eq!(await_answer_of(&mut sim, a, 1, put("a", "1")), Ok(KvResponse::Written { revision: 1 }));
    // b keeps log time moving well past a's session lifetime.
    for request in 0..10 {
        assert!(await_answer_of(&mut sim, b, 100 + request, put("b", "x")).is_ok());
        sim.run_for(SECOND);
    }
    assert_eq!(await_answer_of(&mut sim, a, 2, put("a", "2")), Ok(KvResponse::Written { revision: 12 }));
}

/// The leader compacts several times while the member is down; the transfer
/// it began at the first compaction must give way to the newest snapshot (a
/// leader that kept sending the newest snapshot while waiting for answers
/// about the first one never finished: found by this test).
#[test]
fn a_member_restarted_behind_a_log_compacted_twice_gets_the_state_by_snapshot() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("QUORATE_LOG"))
        .with_test_writer()
        .try_init();
    let mut config = expect(3);
    config.raft.snapshot_threshold = 20;
    let mut sim = Sim::new(31);
    let nodes = sim.add_nodes(3, &config);
    sim.join_all(&nodes, nodes[0]);
    let leader = await_leader(&mut sim, &nodes, 10 * SECOND);
    let behind = *nodes.iter().find(|&&idx| idx != leader).unwrap();
    sim.crash(behind);
    for request in 0..60 {
        assert!(await_answer_of(&mut sim, leader, request, put(&format!("k{request}"), "v")).is_ok());
    }
    assert!(sim.node(leader).unwrap().snapshot_index() > 0, "the leader compacted its log");
    sim.restart(behind, Disk::Keep);
    sim.join(behind, &[leader]);
    let caught_up = sim.run_until(10 * SECOND, |sim| {
        sim.node(behind)
            .is_some_and(|node| node.state_machine_snapshot() == sim.node(leader).unwrap().state_machine_snapshot())
    });
    assert!(caught_up, "the restarted member never reached the leader's state\n{}", describe(&sim));
    let mut kv = Kv::new();
    quorate_core::rsm::StateMachine::restore(&mut kv, &sim.node(behind).unwrap().state_machine_snapshot()).unwrap();
    assert_eq!(kv.revision(), 60);
}

fn value(value: &str, created: u64, modified: u64, revision: u64) -> Result<KvResponse, ApplyError> {
    let entry = KvEntry { value: value.as_bytes().to_vec(), created, modified };
    Ok(KvResponse::Value { entry: Some(entry), revision })
}

#[test]
fn a_read_from_any_member_sees_every_write_acknowledged_before_it_and_adds_nothing_to_the_log() {
    for seed in 1..=5 {
        let (mut sim, nodes) = cluster(200 + seed, 3);
        let leader = agreed_leader(&sim, &nodes).unwrap();
        let writer = *nodes.iter().find(|&&idx| idx != leader).unwrap();
        assert_eq!(await_answer_of(&mut sim, writer, 1, put("color", "blue")), Ok(KvResponse::Written { revision: 1 }));
        let last_index = sim.node(leader).unwrap().log_entries(0).last().map(|e| e.index);
        // At once, from every member: a follower that has not applied the
        // write yet must not answer from its own state.
        for (request, idx) in nodes.iter().enumerate() {
            read(&mut sim, *idx, 10 + request as u64, get("color"));
        }
        for (request, idx) in nodes.iter().enumerate() {
            let result = await_answer(&mut sim, *idx, 10 + request as u64, 5 * SECOND);
            assert_eq!(result, value("blue", 1, 1, 1), "seed {seed}, {idx}");
        }
        assert_eq!(
            sim.node(leader).unwrap().log_entries(0).last().map(|e| e.index),
            last_index,
            "seed {seed}: reads appended entries"
        );
        // A write asked as a read changes nothing.
        read(&mut sim, writer, 20, put("color", "red"));
        let refused = await_answer(&mut sim, writer, 20, 5 * SECOND);
        assert!(matches!(refused, Ok(KvResponse::Invalid(_))), "seed {seed}: {refused:?}");
    }
}

#[test]
fn a_deposed_leader_never_serves_a_stale_read() {
    // The leader pauses (a stalled process); the others elect another and
    // overwrite the key. The old leader resumes cut off and its member reads
    // at once: answering from its own state, it would return the old value
    // after the new one was acknowledged. The read must wait for a leader
    // a majority vouches for, which after the heal is the new one.
    for seed in 1..=5 {
        let (mut sim, nodes) = cluster(300 + seed, 5);
        let old = agreed_leader(&sim, &nodes).unwrap();
        assert_eq!(await_answer_of(&mut sim, old, 1, put("k", "old")), Ok(KvResponse::Written { revision: 1 }));
        sim.pause(old);
        let rest: Vec<NodeIdx> = nodes.iter().copied().filter(|&idx| idx != old).collect();
        let new = await_leader(&mut sim, &rest, 10 * SECOND);
        assert_eq!(await_answer_of(&mut sim, new, 3, put("k", "new")), Ok(KvResponse::Written { revision: 2 }));
        sim.isolate(old);
        sim.resume(old);
        read(&mut sim, old, 2, get("k"));
        sim.run_for(SECOND);
        sim.heal();
        assert_eq!(await_answer(&mut sim, old, 2, 10 * SECOND), value("new", 1, 2, 2), "seed {seed}");
    }
}

#[test]
fn with_leases_a_leader_reads_without_a_round_until_it_loses_the_majority() {
    let mut config = expect(3);
    config.raft.lease_reads = true;
    let mut sim = Sim::new(41);
    let nodes = sim.add_nodes(3, &config);
    sim.join_all(&nodes, nodes[0]);
    let leader = await_leader(&mut sim, &nodes, 10 * SECOND);
    assert_eq!(await_answer_of(&mut sim, leader, 1, put("k", "v")), Ok(KvResponse::Written { revision: 1 }));
    sim.run_for(SECOND);
    // Under a lease the answer comes in the same step: no round trip.
    let asked = sim.now();
    read(&mut sim, leader, 2, get("k"));
    sim.run_until(SECOND, |sim| answer(sim, leader, 2).is_some());
    assert_eq!(answered(&sim, leader, 2), Some((asked, value("v", 1, 1, 1))));
    // Cut off, the lease runs out within an election timeout; no read is
    // answered from it afterwards.
    sim.isolate(leader);
    sim.run_for(Duration::from_millis(100));
    read(&mut sim, leader, 3, get("k"));
    let result = await_answer(&mut sim, leader, 3, 10 * SECOND);
    assert!(matches!(result, Err(ApplyError::Timeout { .. })), "{result:?}");
}
