//! SWIM + Lifeguard behaviour in the deterministic driver (DESIGN §3.1).
//!
//! Each test names the property and the paper section it checks. Virtual time
//! bounds are stated per test; the driver is deterministic, so a seed that
//! passes always passes.

use core::time::Duration;

use quorate_core::testing::{Disk, NodeIdx, Sim, assert_no_live_member_failed};
use quorate_core::{Command, Config, Event, MemberId, Rejection, State, Tags};

const SECOND: Duration = Duration::from_secs(1);

/// A converged cluster of `size` members, all joined through the first.
fn cluster(seed: u64, size: usize, config: &Config) -> (Sim, Vec<NodeIdx>) {
    let mut sim = Sim::new(seed);
    let nodes = sim.add_nodes(size, config);
    sim.join_all(&nodes, nodes[0]);
    let bound = 30 * SECOND;
    assert!(sim.run_until_every(bound, SECOND / 10, Sim::converged), "no convergence: {:?}", sim.check_converged());
    (sim, nodes)
}

/// The state `observer` holds for the member running in slot `subject`.
fn state_of(sim: &Sim, observer: NodeIdx, subject: NodeIdx) -> Option<State> {
    sim.member_view(observer, subject).map(|info| info.state)
}

fn reports(sim: &Sim, kind: &str, subject: MemberId) -> usize {
    sim.events().iter().filter(|record| record.kind() == kind && record.subject() == Some(subject)).count()
}

fn detects_crash(seed: u64, size: usize, bound: Duration) {
    let config = Config::fast("test");
    let (mut sim, nodes) = cluster(seed, size, &config);
    sim.take_events();
    let victim = nodes[size / 2];
    let victim_id = sim.member_id(victim);
    sim.crash(victim);
    let survivors: Vec<NodeIdx> = nodes.iter().copied().filter(|&n| n != victim).collect();
    let all_know = |sim: &Sim| survivors.iter().all(|&n| state_of(sim, n, victim) == Some(State::Dead));
    assert!(sim.run_until(bound, all_know), "not every member marked the crash dead within {bound:?}");
    // Every survivor reported it, exactly once, and only it.
    assert_eq!(reports(&sim, "member_failed", victim_id), survivors.len());
    let failed: Vec<_> = sim.events().iter().filter(|r| r.kind() == "member_failed").collect();
    assert!(failed.iter().all(|r| r.subject() == Some(victim_id)), "a survivor was declared dead: {failed:?}");
    assert!(sim.check_converged().is_ok());
}

#[test]
fn a_crash_in_a_5_member_cluster_is_detected_by_every_member() {
    // SWIM §4 + Lifeguard §4.2: probe, indirect probe, suspicion timeout, dissemination.
    detects_crash(1, 5, 5 * SECOND);
}

#[test]
fn a_crash_in_a_50_member_cluster_is_detected_by_every_member() {
    detects_crash(2, 50, 10 * SECOND);
}

#[test]
fn a_suspected_live_member_refutes_and_is_never_declared_dead() {
    // SWIM §4.2: a suspect refutes by raising its incarnation; Lifeguard's buddy
    // system tells it through the next probe.
    let config = Config::fast("test");
    let (mut sim, nodes) = cluster(3, 5, &config);
    let quiet = nodes[1];
    let quiet_id = sim.member_id(quiet);
    // Its acks are lost for a little over a protocol period: others suspect it.
    for &other in &nodes {
        if other != quiet {
            sim.cut(quiet, other);
        }
    }
    sim.run_for(config.membership.probe_interval * 3);
    sim.heal();
    assert!(sim.run_until(5 * SECOND, Sim::converged), "{:?}", sim.check_converged());
    sim.run_for(5 * SECOND);
    assert!(reports(&sim, "member_suspected", quiet_id) > 0, "the test must provoke a suspicion");
    assert_eq!(reports(&sim, "member_failed", quiet_id), 0);
    assert!(reports(&sim, "member_recovered", quiet_id) > 0);
    let incarnation = sim.node(quiet).unwrap().member(quiet_id).unwrap().incarnation;
    assert!(incarnation > 0, "refuted with a higher incarnation");
    assert!(sim.converged());
}

#[test]
fn a_paused_member_is_suspected_and_refutes_if_it_resumes_in_time() {
    // Lifeguard §4.2: the suspicion timeout leaves a stalled member time to refute.
    let config = Config::fast("test");
    let (mut sim, nodes) = cluster(4, 5, &config);
    let stalled = nodes[2];
    let stalled_id = sim.member_id(stalled);
    sim.pause(stalled);
    let suspected =
        |sim: &Sim| sim.events().iter().any(|r| r.kind() == "member_suspected" && r.subject() == Some(stalled_id));
    assert!(sim.run_until(2 * SECOND, suspected), "a stall of two seconds must raise a suspicion");
    sim.resume(stalled);
    assert!(sim.run_until(5 * SECOND, Sim::converged), "{:?}", sim.check_converged());
    assert_eq!(reports(&sim, "member_failed", stalled_id), 0, "resumed in time: never declared dead");
}

#[test]
fn a_member_paused_past_its_suspicion_timeout_is_declared_dead_and_rejoins_after_resuming() {
    let config = Config::fast("test");
    let (mut sim, nodes) = cluster(5, 5, &config);
    let stalled = nodes[3];
    let stalled_id = sim.member_id(stalled);
    sim.pause(stalled);
    let others: Vec<_> = nodes.iter().copied().filter(|&n| n != stalled).collect();
    let all_dead = |sim: &Sim| others.iter().all(|&n| state_of(sim, n, stalled) == Some(State::Dead));
    assert!(sim.run_until(10 * SECOND, all_dead));
    sim.resume(stalled);
    // Gossip to the recently dead tells it; it refutes and is alive again everywhere.
    assert!(sim.run_until(10 * SECOND, Sim::converged), "{:?}", sim.check_converged());
    assert!(reports(&sim, "member_joined", stalled_id) >= others.len());
}

#[test]
fn no_live_member_is_declared_dead_under_ten_percent_loss_for_ten_minutes() {
    // S6 (DESIGN §5), with the default `lan` profile and with `fast`.
    for (seed, config, size) in [(6, Config::lan("test"), 10), (7, Config::fast("test"), 20)] {
        let (mut sim, nodes) = cluster(seed, size, &config);
        sim.net_mut().loss = 0.10;

        sim.set_step_hook(assert_no_live_member_failed);
        sim.run_for(600 * SECOND);
        sim.clear_step_hook();
        // The loss was real and the failure detector had to work for it: direct
        // probes failed and indirect (and stream) probes stood in.
        let datagrams = sim.counters().datagrams;
        assert!(datagrams.lost * 100 >= datagrams.sent * 9, "seed {seed}: {datagrams:?}");
        let sent = |n: NodeIdx| sim.node(n).unwrap().metrics().sent.get("ping_req").copied().unwrap_or(0);
        let indirect: u64 = nodes.iter().map(|&n| sent(n)).sum();
        assert!(indirect > 100, "seed {seed}: only {indirect} indirect probes in 10 minutes at 10 % loss");
        assert!(sim.converged(), "seed {seed}: {:?}", sim.check_converged());
    }
}

#[test]
fn tags_propagate_to_every_member() {
    let config = Config::fast("test");
    let (mut sim, nodes) = cluster(8, 8, &config);
    let mut tags = Tags::new();
    tags.insert("service", "billing").unwrap();
    tags.insert("endpoint", "10.0.0.4:8080").unwrap();
    sim.command(nodes[4], Command::SetTags(tags.clone()));
    let everyone_sees = |sim: &Sim| nodes.iter().all(|&n| sim.member_view(n, nodes[4]).is_some_and(|m| m.tags == tags));
    assert!(sim.run_until(2 * SECOND, everyone_sees));
    let subject = sim.member_id(nodes[4]);
    assert_eq!(reports(&sim, "member_updated", subject), nodes.len(), "one update report per member, itself included");
}

#[test]
fn a_leave_propagates_and_is_never_reported_as_a_failure() {
    // DESIGN §3.1: graceful leave has a leaving phase and ends `Left`, never failed.
    let config = Config::fast("test");
    let (mut sim, nodes) = cluster(9, 6, &config);
    let leaver = nodes[5];
    let leaver_id = sim.member_id(leaver);
    sim.command(leaver, Command::Leave);
    let complete = |sim: &Sim| sim.events().iter().any(|r| r.node == leaver && r.event == Event::LeaveComplete);
    assert!(sim.run_until(2 * SECOND, complete));
    sim.crash(leaver); // the process exits after its leave completes
    let others: Vec<_> = nodes.iter().copied().filter(|&n| n != leaver).collect();
    let all_left = |sim: &Sim| others.iter().all(|&n| state_of(sim, n, leaver) == Some(State::Left));
    assert!(sim.run_until(2 * SECOND, all_left));
    sim.run_for(60 * SECOND);
    assert!(others.iter().all(|&n| state_of(&sim, n, leaver) == Some(State::Left)));
    assert_eq!(reports(&sim, "member_failed", leaver_id), 0);
    assert_eq!(reports(&sim, "member_suspected", leaver_id), 0);
    assert_eq!(reports(&sim, "member_left", leaver_id), others.len());
}

#[test]
fn a_restarted_member_is_never_confused_with_its_old_boot() {
    // DESIGN §3.1: state is ordered by (boot_id, incarnation); the new boot is
    // announced, and no claim about the old boot touches it.
    let config = Config::fast("test");
    let (mut sim, nodes) = cluster(10, 5, &config);
    let restarted = nodes[1];
    let id = sim.member_id(restarted);
    sim.crash(restarted);
    // Down long enough for others to suspect the old boot, not to declare it dead.
    sim.run_for(config.membership.probe_interval * 4);
    sim.restart(restarted, Disk::Keep);
    assert_eq!(sim.member_id(restarted), id, "same durable id with its disk");
    assert_eq!(sim.node(restarted).unwrap().boot_id(), 2);
    assert!(sim.run_until(5 * SECOND, Sim::converged), "{:?}", sim.check_converged());
    sim.run_for(20 * SECOND);
    for record in sim.events() {
        if let Event::MemberFailed(info) | Event::MemberSuspected(info) = &record.event {
            assert!(!(info.id == id && info.boot_id == 2), "the new boot was suspected or declared dead: {record:?}");
        }
    }
    assert!(reports(&sim, "member_restarted", id) + reports(&sim, "member_joined", id) >= 4);
    assert!(
        nodes
            .iter()
            .all(|&n| { sim.member_view(n, restarted).is_some_and(|m| m.boot_id == 2 && m.state == State::Alive) })
    );
}

#[test]
fn a_member_restarted_without_its_disk_supersedes_its_old_id_at_once() {
    // DESIGN §3.1: a new durable id under a known name supersedes the old one.
    let config = Config::fast("test");
    let (mut sim, nodes) = cluster(11, 5, &config);
    let reborn = nodes[3];
    let old_id = sim.member_id(reborn);
    sim.crash(reborn);
    sim.restart(reborn, Disk::Lost);
    sim.join(reborn, &[nodes[0]]); // as the agent's --join would
    let new_id = sim.member_id(reborn);
    assert_ne!(old_id, new_id);
    // Faster than failure detection could have done it: the suspicion floor
    // alone is 300 ms with this profile.
    let superseded = |sim: &Sim| {
        nodes.iter().filter(|&&n| n != reborn).all(|&n| {
            let node = sim.node(n).unwrap();
            node.member(old_id).is_some_and(|m| m.state == State::Dead)
                && node.member(new_id).is_some_and(|m| m.state == State::Alive)
        })
    };
    assert!(sim.run_until(config.membership.probe_interval * 3, superseded));
    assert!(sim.run_until(5 * SECOND, Sim::converged), "{:?}", sim.check_converged());
}

#[test]
fn a_member_keeps_its_identity_across_an_address_change() {
    let config = Config::fast("test");
    let (mut sim, nodes) = cluster(12, 4, &config);
    let moved = nodes[2];
    let id = sim.member_id(moved);
    sim.crash(moved);
    let new_addr = "10.9.9.9:7946".parse().unwrap();
    sim.restart_at(moved, Disk::Keep, new_addr);
    sim.join(moved, &[nodes[0]]); // as the agent's --join would
    assert!(sim.run_until(5 * SECOND, Sim::converged), "{:?}", sim.check_converged());
    assert!(nodes.iter().all(|&n| { sim.node(n).unwrap().member(id).is_some_and(|m| m.addr == new_addr) }));
}

#[test]
fn two_halves_that_declared_each_other_dead_merge_after_the_partition_heals() {
    // DESIGN §3.1 healing: dead members and seeds are retried slowly (serf#605).
    let config = Config::fast("test");
    let (mut sim, nodes) = cluster(13, 6, &config);
    let (left, right) = nodes.split_at(3);
    sim.partition(&[left, right]);
    let split = |sim: &Sim| {
        sim.groups_converged(&[left, right])
            && left.iter().all(|&l| right.iter().all(|&r| state_of(sim, l, r) == Some(State::Dead)))
    };
    assert!(sim.run_until(30 * SECOND, split), "each half must declare the other dead");
    sim.run_for(30 * SECOND);
    sim.heal();
    let bound = 4 * config.membership.reconnect_interval + 4 * config.membership.push_pull_interval;
    assert!(sim.run_until(bound, Sim::converged), "no merge within {bound:?}: {:?}", sim.check_converged());
}

#[test]
fn members_of_another_cluster_name_are_rejected_and_counted() {
    // DESIGN §3.2/§6: the cluster name hash rides in every envelope.
    let config = Config::fast("test");
    let (mut sim, nodes) = cluster(14, 3, &config);
    let stranger = sim.add_node("stranger", Config::fast("other"));
    sim.join(stranger, &[nodes[0]]);
    sim.run_for(5 * SECOND);
    let stranger_id = sim.member_id(stranger);
    assert!(sim.node(nodes[0]).unwrap().metrics().rejected(Rejection::ForeignCluster) > 0);
    assert!(nodes.iter().all(|&n| sim.node(n).unwrap().member(stranger_id).is_none()));
    assert_eq!(sim.node(stranger).unwrap().members().count(), 1, "the stranger learned nobody");
    assert!(!sim.node(stranger).unwrap().is_joined());
}

#[test]
fn a_member_joins_through_any_one_reachable_seed_retrying_the_others() {
    // DESIGN §3.1: join needs any one reachable address; unreachable ones back off.
    let config = Config::fast("test");
    let (mut sim, nodes) = cluster(15, 3, &config);
    let late = sim.add_node("late", config.clone());
    sim.crash(nodes[0]);
    sim.crash(nodes[1]);
    sim.join(late, &[nodes[0], nodes[1], nodes[2]]);
    let joined = |sim: &Sim| sim.node(late).unwrap().is_joined();
    assert!(sim.run_until(2 * SECOND, joined));
    let survivors = [nodes[2], late];
    assert!(sim.run_until(10 * SECOND, |sim| sim.groups_converged(&[&survivors])));
}
