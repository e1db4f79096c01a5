//! Scripted single-node tests: one node, imaginary peers, every output checked.

mod support;

use quorate_core::membership::{Message, PushPull, Update};
use quorate_core::wire::{BoundedVec, Channel, limits};
use quorate_core::{
    Command, Config, Event, Input, Instant, MemberId, MemberInfo, Node, Output, PersistState, Recovered, Rejection,
    State, Tags,
};
use support::*;

#[test]
fn nothing_is_sent_before_the_raised_boot_id_is_persisted() {
    // DESIGN §3.1: a restarted process raises its boot id, synced before its first send.
    let mut node = Node::new(
        Config::fast(CLUSTER),
        identity(1),
        7,
        Recovered { boot_id: 4, ..Recovered::default() },
        Instant::ZERO,
    )
    .unwrap();
    node.handle(Instant::ZERO, Input::Command(Command::Join(vec![addr(2)])));
    let outputs = drain(&mut node);
    let persists: Vec<_> =
        outputs.iter().filter_map(|o| if let Output::Persist(p) = o { Some(p.clone()) } else { None }).collect();
    assert_eq!(persists.len(), 1);
    assert_eq!(persists[0].state, PersistState::BootId(5));
    assert!(sent(&outputs).is_empty(), "sent before the boot id was durable: {outputs:?}");

    node.handle(millis(1), Input::Persisted(persists[0].seq));
    let released = sent(&drain(&mut node));
    assert!(
        released.iter().any(|(to, channel, message)| *to == addr(2)
            && *channel == Channel::Stream
            && matches!(message, Message::PushPull(PushPull { join: true, .. }))),
        "the join push-pull goes out once the boot id is durable: {released:?}"
    );
    assert_eq!(node.boot_id(), 5);
}

#[test]
fn a_ping_is_acked_with_its_sequence_number_and_a_misdirected_one_is_not() {
    let mut node = started_node(Config::fast(CLUSTER));
    let outputs = receive(
        &mut node,
        millis(1),
        2,
        Message::Ping { seq: 41, target: MemberId::from_u128(1), updates: updates(vec![]) },
    );
    let acks: Vec<_> = sent(&outputs)
        .into_iter()
        .filter(|(to, _, m)| *to == addr(2) && matches!(m, Message::Ack { seq: 41, .. }))
        .collect();
    assert_eq!(acks.len(), 1, "{outputs:?}");

    // A probe meant for whoever had this address before must not be answered:
    // the prober would take the old member for alive.
    let outputs = receive(
        &mut node,
        millis(2),
        2,
        Message::Ping { seq: 42, target: MemberId::from_u128(9), updates: updates(vec![]) },
    );
    assert!(sent(&outputs).iter().all(|(_, _, m)| !matches!(m, Message::Ack { .. })), "{outputs:?}");
    assert_eq!(node.metrics().rejected(Rejection::Misdirected), 1);
}

#[test]
fn messages_from_another_cluster_or_version_or_garbage_are_rejected_and_counted() {
    let mut node = started_node(Config::fast(CLUSTER));
    let ping = Message::Ping { seq: 1, target: MemberId::from_u128(1), updates: updates(vec![]) };

    let mut foreign = header_of(2, 1);
    foreign.cluster_name_hash = quorate_core::id::cluster_name_hash("other");
    let bytes = encode(foreign, ping.clone(), Channel::Datagram);
    node.handle(millis(1), Input::Receive { from: addr(2), channel: Channel::Datagram, bytes: &bytes });
    assert!(sent(&drain(&mut node)).is_empty());
    assert_eq!(node.metrics().rejected(Rejection::ForeignCluster), 1);

    let mut bytes = encode(header_of(2, 1), ping, Channel::Datagram);
    bytes[0] = 99;
    node.handle(millis(2), Input::Receive { from: addr(2), channel: Channel::Datagram, bytes: &bytes });
    assert_eq!(node.metrics().rejected(Rejection::UnknownVersion), 1);

    node.handle(millis(3), Input::Receive { from: addr(2), channel: Channel::Datagram, bytes: &[1, 0xff, 0xff] });
    assert_eq!(node.metrics().rejected(Rejection::Malformed), 1);
    assert!(node.members().all(|m| m.id == node.id()), "nothing rejected may change membership");
}

#[test]
fn a_suspicion_about_itself_is_refuted_with_a_higher_incarnation() {
    // SWIM §4.2: a suspected member refutes by raising its incarnation.
    let mut node = started_node(Config::fast(CLUSTER));
    receive(&mut node, millis(1), 2, Message::Gossip { updates: updates(vec![Update::Alive(alive(2, 0))]) });
    let suspicion =
        Update::Suspect { id: MemberId::from_u128(1), boot_id: 1, incarnation: 0, from: MemberId::from_u128(2) };
    receive(&mut node, millis(2), 2, Message::Gossip { updates: updates(vec![suspicion]) });
    assert_eq!(node.member(node.id()).unwrap().incarnation, 1);

    // The refutation rides on the next message the node sends.
    let outputs = receive(
        &mut node,
        millis(3),
        2,
        Message::Ping { seq: 5, target: MemberId::from_u128(1), updates: updates(vec![]) },
    );
    let refuted = sent(&outputs).into_iter().any(|(_, _, message)| match message {
        Message::Ack { updates, .. } => updates
            .iter()
            .any(|u| matches!(u, Update::Alive(info) if info.id == MemberId::from_u128(1) && info.incarnation == 1)),
        _ => false,
    });
    assert!(refuted, "{outputs:?}");
    assert!(node.local_health() > 0, "Lifeguard: having to refute lowers local health");
}

#[test]
fn claims_about_an_older_boot_never_touch_the_current_one() {
    // DESIGN §3.1: state is ordered by (boot_id, incarnation); an old boot is never confused with the new one.
    let mut node = Node::new(
        Config::fast(CLUSTER),
        identity(1),
        7,
        Recovered { boot_id: 2, ..Recovered::default() },
        Instant::ZERO,
    )
    .unwrap();
    let persist =
        drain(&mut node).into_iter().find_map(|o| if let Output::Persist(p) = o { Some(p) } else { None }).unwrap();
    node.handle(Instant::ZERO, Input::Persisted(persist.seq));
    let dead = Update::Dead { id: MemberId::from_u128(1), boot_id: 2, incarnation: 50, from: MemberId::from_u128(2) };
    receive(&mut node, millis(1), 2, Message::Gossip { updates: updates(vec![dead]) });
    let me = node.member(node.id()).unwrap();
    assert_eq!((me.boot_id, me.incarnation), (3, 0), "a death of boot 2 is not refuted by boot 3");

    // And messages sent by an older boot of a known member are dropped.
    receive(&mut node, millis(2), 2, Message::Gossip { updates: updates(vec![Update::Alive(alive(2, 0))]) });
    let mut newer = alive(2, 0);
    newer.boot_id = 5;
    receive(&mut node, millis(3), 2, Message::Gossip { updates: updates(vec![Update::Alive(newer)]) });
    let stale = encode(header_of(2, 1), Message::Gossip { updates: updates(vec![]) }, Channel::Datagram);
    node.handle(millis(4), Input::Receive { from: addr(2), channel: Channel::Datagram, bytes: &stale });
    assert_eq!(node.metrics().rejected(Rejection::StaleBoot), 1);
}

#[test]
fn a_relayed_probe_forwards_the_ack_or_sends_a_nack_in_time() {
    // SWIM §4: ping_req; Lifeguard §4.3: the relay nacks when the target stays silent.
    let config = Config::fast(CLUSTER);
    let probe_timeout = config.membership.probe_timeout;
    let mut node = started_node(config);
    let request =
        |seq| Message::PingReq { seq, target: MemberId::from_u128(3), target_addr: addr(3), updates: updates(vec![]) };

    let outputs = receive(&mut node, millis(1), 2, request(70));
    let relay_seq = sent(&outputs)
        .into_iter()
        .find_map(|(to, _, m)| match m {
            Message::Ping { seq, target, .. } if to == addr(3) && target == MemberId::from_u128(3) => Some(seq),
            _ => None,
        })
        .expect("the relay probes the target");
    let outputs = receive(&mut node, millis(5), 3, Message::Ack { seq: relay_seq, updates: updates(vec![]) });
    assert!(
        sent(&outputs).iter().any(|(to, _, m)| *to == addr(2) && matches!(m, Message::Ack { seq: 70, .. })),
        "{outputs:?}"
    );

    // No ack this time: a nack reaches the requester before its probe timeout.
    receive(&mut node, millis(10), 2, request(71));
    let outputs = run_until(&mut node, millis(10) + probe_timeout);
    let nack_sent = sent(&outputs).iter().any(|(to, _, m)| *to == addr(2) && matches!(m, Message::Nack { seq: 71 }));
    assert!(nack_sent, "{outputs:?}");
}

#[test]
fn piggybacked_datagrams_stay_within_the_limit_however_much_news_is_pending() {
    // DESIGN §6: datagrams ≤ 1400 bytes; the rest waits for the next message.
    let mut node = started_node(Config::fast(CLUSTER));
    let members: Vec<_> = (2..300)
        .map(|n| {
            let mut info = alive(n, 0);
            let mut tags = Tags::new();
            tags.insert("endpoint", "x".repeat(limits::MAX_TAGS_BYTES - 8)).unwrap();
            info.tags = tags;
            info
        })
        .collect();
    let push =
        Message::PushPull(PushPull { join: false, reply: true, members: BoundedVec::try_from_vec(members).unwrap() });
    let bytes = encode(header_of(2, 1), push, Channel::Stream);
    node.handle(millis(1), Input::Receive { from: addr(2), channel: Channel::Stream, bytes: &bytes });
    let mut outputs = drain(&mut node);
    outputs.extend(run_until(&mut node, millis(3000)));
    let datagrams: Vec<_> = outputs
        .iter()
        .filter_map(|o| match o {
            Output::Send(t) if t.channel == Channel::Datagram => Some(t.bytes.len()),
            _ => None,
        })
        .collect();
    assert!(datagrams.len() > 20, "the node probes and gossips: {}", datagrams.len());
    let largest = *datagrams.iter().max().unwrap();
    assert!(largest <= limits::MAX_DATAGRAM_BYTES, "a {largest}-byte datagram");
    assert!(largest > limits::MAX_DATAGRAM_BYTES / 2, "datagrams are filled, the largest had {largest} bytes");
}

#[test]
fn a_push_pull_is_answered_with_full_state_at_the_senders_advertised_address() {
    let mut node = started_node(Config::fast(CLUSTER));
    let members = BoundedVec::try_from_vec(vec![alive(2, 0), alive(5, 3)]).unwrap();
    let bytes =
        encode(header_of(2, 1), Message::PushPull(PushPull { join: true, reply: false, members }), Channel::Stream);
    // The stream comes from an ephemeral port; the reply goes to the advertised address.
    node.handle(
        millis(1),
        Input::Receive { from: "10.0.0.2:51000".parse().unwrap(), channel: Channel::Stream, bytes: &bytes },
    );
    let outputs = drain(&mut node);
    let reply = sent(&outputs).into_iter().find_map(|(to, channel, m)| match m {
        Message::PushPull(p) if p.reply => Some((to, channel, p)),
        _ => None,
    });
    let (to, channel, reply) = reply.expect("a reply");
    assert_eq!((to, channel), (addr(2), Channel::Stream));
    let ids: Vec<_> = reply.members.iter().map(|m| m.id.as_u128()).collect();
    assert_eq!(ids, [1, 2, 5]);
    assert!(node.is_joined());
}

/// Found by fuzzing: the refutation of a claim at the highest incarnation
/// overflowed (a panic with overflow checks, a wrap to 0 without).
#[test]
fn a_claim_about_this_member_at_the_highest_incarnation_cannot_panic_it() {
    let mut node = started_node(Config::fast(CLUSTER));
    let me = MemberId::from_u128(1);
    receive(&mut node, millis(1), 2, Message::Gossip { updates: updates(vec![Update::Alive(alive(2, 0))]) });
    let suspect = Update::Suspect { id: me, boot_id: 1, incarnation: u32::MAX, from: MemberId::from_u128(2) };
    let outputs = receive(&mut node, millis(2), 2, Message::Gossip { updates: updates(vec![suspect]) });
    // Nothing outranks the claim within this boot: no refutation is sent,
    // and the member keeps its own view of itself.
    assert!(!events(&outputs).iter().any(|event| matches!(event, Event::MemberFailed(_))));
    assert_eq!(node.members().find(|member| member.id == me).map(|member| member.state), Some(State::Alive));
    node.check_invariants();
}

/// Found by fuzzing: a push-pull holding a member `Dead` at a later
/// incarnation than ours revived it as `Suspect`, so a converged cluster
/// flapped (suspected, then reported failed a second time).
#[test]
fn a_later_dead_claim_about_a_dead_member_neither_revives_it_nor_reports_it_again() {
    let mut node = started_node(Config::fast(CLUSTER));
    let three = MemberId::from_u128(3);
    let gossip = |update| Message::Gossip { updates: updates(vec![update]) };
    receive(&mut node, millis(1), 2, gossip(Update::Alive(alive(2, 0))));
    receive(&mut node, millis(1), 2, gossip(Update::Alive(alive(3, 0))));
    let dead = Update::Dead { id: three, boot_id: 1, incarnation: 0, from: MemberId::from_u128(2) };
    let outputs = receive(&mut node, millis(2), 2, gossip(dead));
    assert_eq!(events(&outputs).iter().filter(|event| matches!(event, Event::MemberFailed(_))).count(), 1);

    let members = vec![alive(2, 0), MemberInfo { state: State::Dead, ..alive(3, 1) }];
    let push_pull = PushPull { join: false, reply: true, members: BoundedVec::try_from_vec(members).unwrap() };
    let mut outputs = receive(&mut node, millis(3), 2, Message::PushPull(push_pull));
    // Gossip of a later suspicion is no revival either.
    let suspect = Update::Suspect { id: three, boot_id: 1, incarnation: 2, from: MemberId::from_u128(2) };
    outputs.extend(receive(&mut node, millis(4), 2, gossip(suspect)));
    let three_now = node.members().find(|member| member.id == three).expect("known");
    assert_eq!((three_now.state, three_now.incarnation), (State::Dead, 1), "the later claim is recorded, still dead");
    let about_three: Vec<_> = events(&outputs)
        .into_iter()
        .filter(|event| match event {
            Event::MemberSuspected(info) | Event::MemberFailed(info) | Event::MemberRecovered(info) => info.id == three,
            _ => false,
        })
        .collect();
    assert!(about_three.is_empty(), "no news about a member already dead: {about_three:?}");
    node.check_invariants();
}
