//! The deterministic driver (`quorate_core::testing`): its network, storage and
//! fault model, its determinism, and smoke tests of the real protocol on it.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;

use core::time::Duration;
use quorate_core::testing::{Disk, NodeIdx, Sim, assert_no_live_member_failed, live_members_declared_failed};
use quorate_core::{Channel, Config, Event, PersistState, Rejection, State};

const CLUSTER: &str = "driver";

fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// `count` nodes with the fast profile, all told to join through the first.
fn cluster(seed: u64, count: usize) -> (Sim, Vec<NodeIdx>) {
    let mut sim = Sim::new(seed);
    let nodes = sim.add_nodes(count, &Config::fast(CLUSTER));
    sim.join_all(&nodes, nodes[0]);
    (sim, nodes)
}

/// `count` nodes that never join anyone: they stay silent, so the only
/// traffic is what a test puts on the network with `send_raw`.
fn quiet_nodes(seed: u64, count: usize) -> (Sim, Vec<NodeIdx>) {
    let mut sim = Sim::new(seed);
    let nodes = sim.add_nodes(count, &Config::fast(CLUSTER));
    sim.set_record_deliveries(true);
    sim.run_for(millis(10)); // boot ids synced
    sim.take_deliveries();
    (sim, nodes)
}

/// A payload no node accepts (an unknown protocol version) that carries a number.
fn numbered(n: u16) -> Vec<u8> {
    let [low, high] = n.to_le_bytes();
    vec![0xff, low, high]
}

fn number_of(bytes: &[u8]) -> u16 {
    u16::from_le_bytes([bytes[1], bytes[2]])
}

/// The numbers of the packets `dst` received from `src` on `channel`, in delivery order.
fn received(sim: &Sim, src: NodeIdx, dst: NodeIdx, channel: Channel) -> Vec<u16> {
    sim.deliveries()
        .iter()
        .filter(|d| d.src == Some(src) && d.dst == dst && d.channel == channel)
        .map(|d| number_of(&d.bytes))
        .collect()
}

/// A bit of everything: joins, jitter, loss, duplication, a restart, a partition.
fn eventful_run(seed: u64) -> Sim {
    let (mut sim, nodes) = cluster(seed, 8);
    let net = sim.net_mut();
    net.latency_max = millis(20);
    net.loss = 0.05;
    net.duplicate = 0.02;
    sim.run_for(secs(3));
    sim.restart(nodes[3], Disk::Keep);
    sim.partition(&[&nodes[..4]]);
    sim.run_for(secs(2));
    sim.heal();
    sim.run_for(secs(3));
    sim
}

// ----- determinism ----------------------------------------------------------------------------

#[test]
fn one_seed_run_twice_gives_the_same_trace_hash_and_event_log() {
    // DESIGN §5, D1.
    let first = eventful_run(11);
    let second = eventful_run(11);
    assert!(first.event_count() > 50, "the run did something: {} events", first.event_count());
    assert_eq!(first.trace_hash(), second.trace_hash());
    assert_eq!(first.events(), second.events());
    assert_eq!(first.counters(), second.counters());
}

#[test]
fn different_seeds_give_different_trace_hashes() {
    assert_ne!(eventful_run(11).trace_hash(), eventful_run(12).trace_hash());
}

#[test]
fn turning_event_recording_off_keeps_the_count_and_the_hash() {
    let (mut recorded, _) = cluster(5, 6);
    let (mut unrecorded, _) = cluster(5, 6);
    unrecorded.set_record_events(false);
    recorded.run_for(secs(2));
    unrecorded.run_for(secs(2));
    assert_eq!(recorded.event_count(), unrecorded.event_count());
    assert_eq!(recorded.trace_hash(), unrecorded.trace_hash());
    assert_eq!(recorded.events().len() as u64, recorded.event_count());
    assert!(unrecorded.events().len() < 10, "only the last step's events are kept");
}

// ----- datagrams --------------------------------------------------------------------------------

#[test]
fn ten_percent_datagram_loss_drops_about_ten_percent_of_datagrams_and_no_stream_frames() {
    let (mut sim, _) = cluster(21, 10);
    sim.net_mut().loss = 0.1;
    sim.run_for(secs(20));
    let datagrams = sim.counters().datagrams;
    assert!(datagrams.sent > 5_000, "enough traffic to measure: {datagrams:?}");
    let ratio = datagrams.lost as f64 / datagrams.sent as f64;
    assert!((0.08..=0.12).contains(&ratio), "lost {ratio:.3} of datagrams: {datagrams:?}");
    let streams = sim.counters().streams;
    assert!(streams.sent > 10, "push-pull ran: {streams:?}");
    assert_eq!(streams.dropped(), 0, "{streams:?}");
}

#[test]
fn jittered_datagrams_arrive_out_of_order_but_each_once() {
    let (mut sim, nodes) = quiet_nodes(3, 2);
    sim.net_mut().latency_max = millis(50);
    for n in 0..300 {
        sim.send_raw(nodes[0], sim.addr(nodes[1]), Channel::Datagram, numbered(n));
        sim.run_for(Duration::from_micros(100));
    }
    sim.run_for(millis(100));
    let mut numbers = received(&sim, nodes[0], nodes[1], Channel::Datagram);
    assert_eq!(numbers.len(), 300);
    assert!(!numbers.is_sorted(), "50 ms of jitter reorders datagrams sent 0.1 ms apart");
    numbers.sort_unstable();
    assert_eq!(numbers, (0..300).collect::<Vec<_>>());
    let from = sim.deliveries()[0].from;
    assert_eq!(from, sim.addr(nodes[0]), "a datagram comes from the sender's own address");
}

#[test]
fn duplication_delivers_every_datagram_twice() {
    let (mut sim, nodes) = quiet_nodes(3, 2);
    sim.net_mut().duplicate = 1.0;
    for n in 0..20 {
        sim.send_raw(nodes[0], sim.addr(nodes[1]), Channel::Datagram, numbered(n));
    }
    sim.send_raw(nodes[0], sim.addr(nodes[1]), Channel::Stream, numbered(99));
    sim.run_for(millis(10));
    let counters = sim.counters();
    assert_eq!((counters.datagrams.sent, counters.datagrams.duplicated, counters.datagrams.delivered), (20, 20, 40));
    assert_eq!(counters.streams.delivered, 1, "streams never duplicate");
}

// ----- streams --------------------------------------------------------------------------------

#[test]
fn streams_are_fifo_per_pair_and_loss_only_delays_them_as_tcp_retransmissions_would() {
    let (mut sim, nodes) = quiet_nodes(4, 3);
    let net = sim.net_mut();
    net.latency_max = millis(50);
    net.loss = 0.5;
    net.duplicate = 0.5;
    for n in 0..300 {
        sim.send_raw(nodes[0], sim.addr(nodes[1]), Channel::Stream, numbered(n));
        sim.send_raw(nodes[2], sim.addr(nodes[1]), Channel::Stream, numbered(n));
        sim.run_for(Duration::from_micros(100));
    }
    // Loss of 50 % chains retransmission timeouts (200 ms doubling, up to eight).
    sim.run_for(Duration::from_secs(120));
    let in_order: Vec<u16> = (0..300).collect();
    let slowest = sim.deliveries().iter().map(|d| d.at.saturating_duration_since(d.sent_at)).max().unwrap();
    assert!(slowest >= millis(200), "lost segments cost a retransmission timeout: slowest {slowest:?}");
    assert_eq!(received(&sim, nodes[0], nodes[1], Channel::Stream), in_order);
    assert_eq!(received(&sim, nodes[2], nodes[1], Channel::Stream), in_order);
    // Two pairs interleave: FIFO holds per pair, not across them.
    let senders: Vec<_> = sim.deliveries().iter().map(|d| d.src).collect();
    assert!(senders.windows(2).any(|w| w[0] != w[1]));

    // Like TCP, a frame comes from an ephemeral port, the same for the whole connection.
    let ports: Vec<u16> = sim.deliveries().iter().filter(|d| d.src == Some(nodes[0])).map(|d| d.from.port()).collect();
    assert!(ports.iter().all(|&port| port == ports[0] && port != sim.addr(nodes[0]).port()), "{:?}", &ports[..3]);
}

#[test]
fn a_stream_breaks_when_its_sender_restarts() {
    let (mut sim, nodes) = quiet_nodes(6, 2);
    let (a, b) = (nodes[0], nodes[1]);
    sim.send_raw(a, sim.addr(b), Channel::Stream, numbered(1));
    sim.run_for(millis(10));
    sim.send_raw(a, sim.addr(b), Channel::Stream, numbered(2));
    sim.restart(a, Disk::Keep);
    sim.send_raw(a, sim.addr(b), Channel::Stream, numbered(3));
    sim.run_for(millis(10));
    assert_eq!(received(&sim, a, b, Channel::Stream), [1, 3], "the frame in flight died with its connection");
    assert_eq!(sim.counters().streams.unreachable, 1);
    let ports: Vec<u16> = sim.deliveries().iter().filter(|d| d.src == Some(a)).map(|d| d.from.port()).collect();
    assert_ne!(ports[0], ports[1], "the new boot opened a new connection");
}

// ----- storage --------------------------------------------------------------------------------

#[test]
fn a_crash_before_the_fsync_delay_loses_the_pending_persist() {
    let mut sim = Sim::new(8);
    sim.disk_mut().fsync_delay = millis(10);
    let a = sim.add_node("a", Config::fast(CLUSTER));
    let pending: Vec<_> = sim.storage(a).pending().map(|persist| persist.state.clone()).collect();
    assert_eq!(pending, [PersistState::BootId(1)]);
    assert_eq!(sim.storage(a).synced().boot_id, 0);
    sim.run_for(millis(10));
    assert_eq!(sim.storage(a).synced().boot_id, 1, "synced after the fsync delay");

    sim.restart(a, Disk::Keep);
    assert_eq!(sim.node(a).map(|node| node.boot_id()), Some(2));
    sim.run_for(millis(5));
    sim.crash(a);
    assert_eq!(sim.storage(a).pending().count(), 0, "the crash lost the pending write");
    assert_eq!(sim.storage(a).synced().boot_id, 1);

    sim.restart(a, Disk::Keep);
    assert_eq!(sim.node(a).map(|node| node.boot_id()), Some(2), "recovered the previous boot id and raised it again");
    sim.run_for(millis(10));
    assert_eq!(sim.storage(a).synced().boot_id, 2);
}

#[test]
fn a_restart_with_a_lost_disk_is_a_new_member_at_boot_one() {
    let mut sim = Sim::new(9);
    let a = sim.add_node("a", Config::fast(CLUSTER));
    sim.run_for(millis(5));
    sim.restart(a, Disk::Keep);
    sim.run_for(millis(5));
    let old_id = sim.member_id(a);
    assert_eq!(sim.node(a).map(|node| node.boot_id()), Some(2));

    sim.restart(a, Disk::Lost);
    assert_ne!(sim.member_id(a), old_id);
    assert_eq!(sim.node(a).map(|node| (node.id(), node.boot_id())), Some((sim.member_id(a), 1)));
    assert_eq!(sim.node_of(old_id), None, "no slot holds the old id any more");
    assert_eq!(sim.node_of(sim.member_id(a)), Some(a));
    assert_eq!(sim.name(a).as_str(), "a", "same name");
}

// ----- faults ---------------------------------------------------------------------------------

#[test]
fn a_partition_blocks_both_directions_and_heal_restores_them() {
    let (mut sim, nodes) = quiet_nodes(10, 4);
    let (a, b, c, d) = (nodes[0], nodes[1], nodes[2], nodes[3]);
    let send_all = |sim: &mut Sim, n: u16| {
        for (src, dst) in [(a, c), (c, a), (a, b), (c, d)] {
            sim.send_raw(src, sim.addr(dst), Channel::Datagram, numbered(n));
            sim.send_raw(src, sim.addr(dst), Channel::Stream, numbered(n));
        }
    };
    // In flight when the partition starts: dropped on arrival.
    send_all(&mut sim, 0);
    sim.partition(&[&[a, b], &[c, d]]);
    assert!(sim.blocked(a, c) && sim.blocked(c, a) && !sim.blocked(a, b));
    send_all(&mut sim, 1);
    sim.run_for(millis(10));
    for channel in [Channel::Datagram, Channel::Stream] {
        assert!(received(&sim, a, c, channel).is_empty() && received(&sim, c, a, channel).is_empty());
        assert_eq!(received(&sim, a, b, channel), [0, 1]);
        assert_eq!(received(&sim, c, d, channel), [0, 1]);
    }
    assert_eq!(sim.counters().datagrams.blocked, 4);

    sim.heal();
    send_all(&mut sim, 2);
    sim.run_for(millis(10));
    assert_eq!(received(&sim, a, c, Channel::Datagram), [2]);
    assert_eq!(received(&sim, c, a, Channel::Stream), [2]);
}

#[test]
fn nodes_named_in_no_group_form_one_more_side() {
    let (mut sim, nodes) = quiet_nodes(10, 4);
    sim.partition(&[&[nodes[0]]]);
    assert!(sim.blocked(nodes[0], nodes[1]) && sim.blocked(nodes[3], nodes[0]));
    assert!(!sim.blocked(nodes[1], nodes[3]));
}

#[test]
fn a_one_way_cut_drops_only_that_direction() {
    let (mut sim, nodes) = quiet_nodes(12, 2);
    let (a, b) = (nodes[0], nodes[1]);
    sim.cut(a, b);
    for n in 0..5 {
        sim.send_raw(a, sim.addr(b), Channel::Datagram, numbered(n));
        sim.send_raw(b, sim.addr(a), Channel::Datagram, numbered(n));
    }
    sim.run_for(millis(10));
    assert!(received(&sim, a, b, Channel::Datagram).is_empty());
    assert_eq!(received(&sim, b, a, Channel::Datagram).len(), 5);
    assert_eq!(sim.node_counters(a).datagrams.blocked, 5);
    assert_eq!(sim.node_counters(b).datagrams.blocked, 0);
}

#[test]
fn an_isolated_node_reaches_nobody_and_nobody_reaches_it_until_heal() {
    let (mut sim, nodes) = quiet_nodes(13, 3);
    sim.isolate(nodes[1]);
    for (src, dst) in [(0, 1), (1, 0), (1, 2), (0, 2)] {
        sim.send_raw(nodes[src], sim.addr(nodes[dst]), Channel::Stream, numbered(0));
    }
    sim.run_for(millis(10));
    let delivered: Vec<_> = sim.deliveries().iter().map(|d| (d.src, d.dst)).collect();
    assert_eq!(delivered, [(Some(nodes[0]), nodes[2])]);
    sim.heal();
    assert!(!sim.blocked(nodes[0], nodes[1]));
}

#[test]
fn a_crash_drops_packets_in_flight_to_the_node_even_if_it_is_back_before_they_land() {
    let (mut sim, nodes) = quiet_nodes(14, 2);
    let (a, b) = (nodes[0], nodes[1]);
    sim.send_raw(a, sim.addr(b), Channel::Datagram, numbered(1));
    sim.send_raw(a, sim.addr(b), Channel::Stream, numbered(1));
    sim.crash(b);
    sim.send_raw(a, sim.addr(b), Channel::Datagram, numbered(2));
    sim.restart(b, Disk::Keep);
    sim.run_for(millis(10));
    assert!(sim.deliveries().is_empty(), "{:?}", sim.deliveries());
    assert_eq!(sim.counters().datagrams.unreachable, 2);
    assert_eq!(sim.counters().streams.unreachable, 1);
}

#[test]
fn a_node_restarted_at_a_new_address_keeps_its_id_and_its_old_address_reaches_nobody() {
    let (mut sim, nodes) = quiet_nodes(15, 2);
    let (a, b) = (nodes[0], nodes[1]);
    let (old_addr, id) = (sim.addr(b), sim.member_id(b));
    let new_addr: SocketAddr = "10.9.9.9:7000".parse().unwrap();
    sim.restart_at(b, Disk::Keep, new_addr);
    assert_eq!((sim.addr(b), sim.member_id(b)), (new_addr, id));
    assert_eq!(sim.node(b).map(|node| node.boot_id()), Some(2));
    assert_eq!((sim.node_at(new_addr), sim.node_at(old_addr)), (Some(b), None));
    sim.send_raw(a, old_addr, Channel::Datagram, numbered(1));
    sim.send_raw(a, new_addr, Channel::Datagram, numbered(2));
    sim.run_for(millis(10));
    assert_eq!(received(&sim, a, b, Channel::Datagram), [2]);
    assert_eq!(sim.counters().datagrams.unreachable, 1);
}

#[test]
fn a_paused_node_gets_its_queued_packets_on_resume_in_arrival_order() {
    let (mut sim, nodes) = quiet_nodes(16, 2);
    let (a, b) = (nodes[0], nodes[1]);
    sim.net_mut().latency_max = millis(1); // arrival order = send order
    sim.pause(b);
    for n in 0..3 {
        sim.send_raw(a, sim.addr(b), Channel::Datagram, numbered(n));
        sim.run_for(millis(2));
    }
    sim.send_raw(a, sim.addr(b), Channel::Stream, numbered(3));
    sim.run_for(millis(100));
    assert!(sim.deliveries().is_empty(), "nothing reaches a paused node");
    let bytes_before = sim.node(b).map(|node| node.metrics().bytes_received);

    sim.resume(b);
    let delivered: Vec<(u16, _)> = sim.deliveries().iter().map(|d| (number_of(&d.bytes), d.at)).collect();
    let at = sim.now();
    assert_eq!(delivered, [(0, at), (1, at), (2, at), (3, at)]);
    assert!(sim.node(b).map(|node| node.metrics().bytes_received) > bytes_before);
}

#[test]
fn a_paused_nodes_full_socket_buffer_drops_the_oldest_datagrams() {
    let (mut sim, nodes) = quiet_nodes(17, 2);
    let (a, b) = (nodes[0], nodes[1]);
    let net = sim.net_mut();
    net.latency_max = millis(1);
    net.socket_buffer_datagrams = 4;
    sim.pause(b);
    for n in 0..10 {
        sim.send_raw(a, sim.addr(b), Channel::Datagram, numbered(n));
        sim.run_for(millis(2));
    }
    sim.resume(b);
    assert_eq!(received(&sim, a, b, Channel::Datagram), [6, 7, 8, 9]);
    assert_eq!(sim.counters().datagrams.overflowed, 6);
}

#[test]
fn a_paused_node_fires_no_timers_and_sends_nothing_until_resumed() {
    let (mut sim, nodes) = cluster(18, 3);
    assert!(sim.run_until(secs(5), Sim::converged), "{:?}", sim.check_converged());
    sim.pause(nodes[1]);
    let sent = |sim: &Sim| sim.node_counters(nodes[1]).datagrams.sent;
    let before = sent(&sim);
    sim.run_for(secs(2));
    assert_eq!(sent(&sim), before);
    assert!(sim.is_up(nodes[1]) && !sim.is_running(nodes[1]));
    sim.resume(nodes[1]);
    sim.run_for(secs(1));
    assert!(sent(&sim) > before);
}

#[test]
fn injected_bytes_reach_the_node_directly() {
    let (mut sim, nodes) = quiet_nodes(19, 1);
    let from: SocketAddr = "192.0.2.1:9".parse().unwrap();
    sim.inject(nodes[0], from, Channel::Datagram, &[0xff, 1, 2]);
    sim.inject(nodes[0], from, Channel::Stream, &[1, 0xff]);
    let rejected = &sim.node(nodes[0]).expect("up").metrics().rejected;
    assert_eq!(rejected.get(&Rejection::UnknownVersion), Some(&1));
    assert_eq!(rejected.get(&Rejection::Malformed), Some(&1));
    assert_eq!(sim.deliveries().len(), 2);
    assert_eq!(sim.deliveries()[0].src, None);
    assert_eq!(sim.counters().datagrams.delivered, 0, "injection bypasses the network");
}

// ----- time and checks --------------------------------------------------------------------------

#[test]
fn run_until_gives_up_at_the_limit_and_leaves_the_clock_there() {
    let (mut sim, _) = quiet_nodes(20, 2);
    let start = sim.now();
    assert!(!sim.run_until(millis(300), |_| false));
    assert_eq!(sim.now(), start + millis(300));
    assert!(sim.run_until(millis(300), |sim| sim.now() > start + millis(400)));
    // The clock moves only with events (here the nodes' own timers, tens of ms apart).
    assert!(sim.now() > start + millis(400) && sim.now() < start + millis(500), "stopped at {}", sim.now());
}

#[test]
fn the_step_hook_sees_every_event_once() {
    let (mut sim, _) = cluster(22, 4);
    let seen = Rc::new(RefCell::new(0u64));
    let counter = Rc::clone(&seen);
    sim.set_step_hook(move |sim| *counter.borrow_mut() += sim.step_events().len() as u64);
    let before = sim.event_count();
    sim.run_for(secs(3));
    assert!(sim.event_count() > before);
    assert_eq!(*seen.borrow(), sim.event_count() - before);
}

#[test]
fn the_s6_check_flags_a_paused_member_declared_failed() {
    // A paused member is up: declaring it dead is what S6 forbids (when no
    // pause happened). The check must see it.
    let (mut sim, nodes) = cluster(23, 4);
    assert!(sim.run_until(secs(5), Sim::converged), "{:?}", sim.check_converged());
    let violations = Rc::new(RefCell::new(Vec::new()));
    let sink = Rc::clone(&violations);
    sim.set_step_hook(move |sim| sink.borrow_mut().extend(live_members_declared_failed(sim).cloned()));
    sim.pause(nodes[2]);
    sim.run_for(secs(10));
    let violations = violations.borrow();
    assert!(!violations.is_empty(), "a member paused for 10 s is declared dead");
    let subjects: Vec<_> = violations.iter().map(|record| record.subject()).collect();
    assert!(subjects.iter().all(|&subject| subject == Some(sim.member_id(nodes[2]))), "{subjects:?}");
}

#[test]
#[should_panic(expected = "S6 violated")]
fn assert_no_live_member_failed_panics_on_a_violation() {
    let (mut sim, nodes) = cluster(23, 4);
    sim.run_for(secs(3));
    sim.set_step_hook(assert_no_live_member_failed);
    sim.pause(nodes[2]);
    sim.run_for(secs(10));
}

#[test]
fn converged_is_false_while_a_crashed_member_is_believed_alive_and_true_once_it_is_dead() {
    let (mut sim, nodes) = cluster(24, 5);
    assert!(sim.run_until(secs(5), Sim::converged), "{:?}", sim.check_converged());
    sim.crash(nodes[4]);
    let reason = sim.check_converged().expect_err("the others still hold it alive");
    assert!(reason.reason.contains("n4"), "{reason}");
    assert!(sim.run_until(secs(10), Sim::converged), "{:?}", sim.check_converged());
    for &node in &nodes[..4] {
        let state = sim.member_view(node, nodes[4]).map(|info| info.state);
        assert_eq!(state, Some(State::Dead));
    }
}

// ----- the real protocol ------------------------------------------------------------------------

#[test]
fn five_nodes_joined_through_node_zero_converge_within_five_seconds() {
    let (mut sim, nodes) = cluster(30, 5);
    sim.set_step_hook(assert_no_live_member_failed);
    assert!(sim.run_until(secs(5), Sim::converged), "{:?}", sim.check_converged());
    let joined = sim.events().iter().filter(|record| matches!(record.event, Event::Joined)).count();
    assert_eq!(joined, nodes.len(), "every node reported joining once");
}

#[test]
fn fifty_nodes_joined_through_node_zero_converge_within_ten_seconds() {
    let (mut sim, _) = cluster(31, 50);
    sim.set_step_hook(assert_no_live_member_failed);
    assert!(sim.run_until(secs(10), Sim::converged), "{:?}", sim.check_converged());
}

#[test]
fn no_packet_crosses_a_partition_of_a_live_cluster() {
    let (mut sim, nodes) = cluster(32, 6);
    assert!(sim.run_until(secs(5), Sim::converged), "{:?}", sim.check_converged());
    sim.set_record_deliveries(true);
    let (left, right) = nodes.split_at(3);
    sim.partition(&[left, right]);
    sim.run_for(secs(5));
    let crossing =
        sim.deliveries().iter().filter(|d| d.src.is_some_and(|src| left.contains(&src) != left.contains(&d.dst)));
    assert_eq!(crossing.count(), 0);
    assert!(sim.counters().datagrams.blocked > 0, "the sides kept trying");
}

#[test]
fn a_member_restarted_at_a_new_address_is_known_there_by_everyone() {
    let (mut sim, nodes) = cluster(33, 5);
    assert!(sim.run_until(secs(5), Sim::converged), "{:?}", sim.check_converged());
    let moved = nodes[3];
    let new_addr: SocketAddr = "10.200.0.1:7946".parse().unwrap();
    sim.restart_at(moved, Disk::Keep, new_addr);
    sim.join(moved, &[nodes[0]]);
    let everyone_knows = |sim: &Sim| {
        sim.converged()
            && nodes.iter().all(|&node| sim.member_view(node, moved).is_some_and(|info| info.addr == new_addr))
    };
    assert!(sim.run_until(secs(10), everyone_knows), "{:?}", sim.check_converged());
    assert_eq!(sim.member_view(nodes[0], moved).map(|info| info.boot_id), Some(2));
}

/// 1,000 members with the LAN profile, all joining through the first within
/// one protocol period, run for 20 s of virtual time. Prints wall time,
/// convergence and traffic. Run in release:
/// `cargo test --release -p quorate-core --test driver -- --ignored --nocapture thousand`
#[test]
#[ignore = "large: run in release on demand"]
fn a_thousand_lan_members_joining_within_one_period_converge_within_twenty_seconds() {
    const MEMBERS: usize = 1_000;
    let config = Config::lan(CLUSTER);
    let period = config.membership.probe_interval;
    #[allow(clippy::disallowed_methods, reason = "the benchmark times itself; the simulation never reads this clock")]
    let started = std::time::Instant::now();
    let mut sim = Sim::new(1_000);
    sim.set_check_invariants(false);
    sim.set_record_events(false);
    let nodes = sim.add_nodes(MEMBERS, &config);
    for &node in &nodes[1..] {
        sim.run_for(period / MEMBERS as u32);
        sim.join(node, &[nodes[0]]);
    }
    let limit = secs(20);
    let remaining = limit - Duration::from_nanos(sim.now().as_nanos());
    let converged = sim.run_until_every(remaining, millis(100), Sim::converged);
    let converged_at = sim.now();
    let at_convergence = sim.counters().datagrams;
    sim.run_for(limit - Duration::from_nanos(sim.now().as_nanos()));
    let still = sim.check_converged();
    let wall = started.elapsed();
    let datagrams = sim.counters().datagrams;
    // Datagrams per member per protocol period between two instants.
    let rate = |sent: u64, from: Duration| {
        sent as f64 / MEMBERS as f64 / ((limit - from).as_secs_f64() / period.as_secs_f64())
    };
    let converged_after = Duration::from_nanos(converged_at.as_nanos());
    println!(
        "{MEMBERS} members, {limit:?} virtual in {wall:?} wall ({} steps): converged {converged} at {converged_at}, \
         at the end {still:?}; {:.1} datagrams/member/period overall, {:.1} after convergence, \
         {:.0} bytes/member/period; streams {:?}; events {}",
        sim.steps(),
        rate(datagrams.sent, Duration::ZERO),
        rate(datagrams.sent - at_convergence.sent, converged_after),
        rate(datagrams.bytes_sent, Duration::ZERO),
        sim.counters().streams,
        sim.event_count(),
    );
    assert!(converged, "not converged after {limit:?}: {still:?}");
}
