//! Helpers that make scripted single-node tests read as prose: build a node,
//! feed it messages from imaginary peers, drain and decode what it says.

#![allow(dead_code)]

use std::net::SocketAddr;

use quorate_core::membership::{Message, Updates};
use quorate_core::wire::{self, Body, BoundedVec, Channel, Envelope, Header};
use quorate_core::{
    ClusterUuid, Config, Event, Identity, Input, Instant, MemberId, MemberInfo, Node, Output, Recovered, State, Tags,
};

pub const CLUSTER: &str = "test";

pub fn addr(n: u128) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, n as u8], 7946))
}

pub fn identity(n: u128) -> Identity {
    Identity {
        id: MemberId::from_u128(n),
        name: format!("m{n}").parse().unwrap(),
        addr: addr(n),
        tags: Tags::new(),
        durable: true,
    }
}

pub fn millis(ms: u64) -> Instant {
    Instant::from_nanos(ms * 1_000_000)
}

/// A node built as member 1 whose boot id persist has been confirmed.
pub fn started_node(config: Config) -> Node {
    let mut node = Node::new(config, identity(1), 7, Recovered::default(), Instant::ZERO).unwrap();
    let outputs = drain(&mut node);
    let Some(Output::Persist(persist)) = outputs.first() else {
        panic!("first output must persist the boot id: {outputs:?}")
    };
    node.handle(Instant::ZERO, Input::Persisted(persist.seq));
    node
}

pub fn drain(node: &mut Node) -> Vec<Output> {
    std::iter::from_fn(|| node.poll()).collect()
}

/// Every message the node sent, decoded.
pub fn sent(outputs: &[Output]) -> Vec<(SocketAddr, Channel, Message)> {
    outputs
        .iter()
        .filter_map(|output| match output {
            Output::Send(transmit) => {
                let envelope = Envelope::decode(&transmit.bytes, transmit.channel).expect("node sends valid envelopes");
                match envelope.body {
                    Body::Membership(message) => Some((transmit.to, transmit.channel, message)),
                    _ => None,
                }
            }
            _ => None,
        })
        .collect()
}

pub fn events(outputs: &[Output]) -> Vec<Event> {
    outputs
        .iter()
        .filter_map(|output| match output {
            Output::Event(event) => Some(event.clone()),
            _ => None,
        })
        .collect()
}

/// The envelope header member `n` (boot `boot_id`) of our cluster would send.
pub fn header_of(n: u128, boot_id: u64) -> Header {
    Header {
        version: wire::PROTOCOL_VERSION,
        cluster_name_hash: quorate_core::id::cluster_name_hash(CLUSTER),
        cluster_uuid: ClusterUuid::NIL,
        from: MemberId::from_u128(n),
        boot_id,
    }
}

pub fn encode(header: Header, message: Message, channel: Channel) -> Vec<u8> {
    Envelope { header, body: Body::Membership(message) }.encode(channel).unwrap()
}

/// Delivers `message` from member `n` (boot 1) as a datagram.
pub fn receive(node: &mut Node, now: Instant, n: u128, message: Message) -> Vec<Output> {
    let bytes = encode(header_of(n, 1), message, Channel::Datagram);
    node.handle(now, Input::Receive { from: addr(n), channel: Channel::Datagram, bytes: &bytes });
    drain(node)
}

pub fn updates(list: Vec<quorate_core::membership::Update>) -> Updates {
    BoundedVec::try_from_vec(list).unwrap()
}

pub fn alive(n: u128, incarnation: u32) -> MemberInfo {
    MemberInfo {
        id: MemberId::from_u128(n),
        name: format!("m{n}").parse().unwrap(),
        addr: addr(n),
        boot_id: 1,
        incarnation,
        state: State::Alive,
        leaving: false,
        tags: Tags::new(),
        durable: true,
        cluster: quorate_core::ClusterClaim::Joining,
    }
}

/// Advances `node` to `until` through its own deadlines, collecting outputs.
pub fn run_until(node: &mut Node, until: Instant) -> Vec<Output> {
    let mut outputs = Vec::new();
    while let Some(deadline) = node.next_deadline().filter(|&deadline| deadline <= until) {
        node.handle(deadline, Input::Tick);
        outputs.extend(drain(node));
    }
    node.handle(until, Input::Tick);
    outputs.extend(drain(node));
    outputs
}
