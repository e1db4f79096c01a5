//! Core throughput on membership datagrams (DESIGN §3.1, §6).
//!
//! Target: at least 1,000,000 probe/ack round trips a second on one core with
//! no piggyback, and the same measured with a full 1,400-byte piggyback.
//!
//! Each iteration is what a real adapter pays per datagram: one
//! `Node::handle(now, Input::Receive { .. })` of an encoded `Ping` addressed to
//! the node (decode, route, build and encode the `Ack`) and draining `poll()`
//! until `None`. The node is built with `Node::new` (its boot-id persist
//! confirmed) and knows 100 members from a push-pull frame, so its tables are
//! realistic. Every iteration is checked after its timed stretch: exactly one
//! ack each, and of the size the case claims.
//!
//! - `probe_ack/no_piggyback`: pings without updates while the broadcast queue
//!   is empty, so the ack carries none.
//! - `probe_ack/full_ack`: pings without updates while the queue holds fresh
//!   news about all 100 members, so every ack is filled to the 1,400-byte
//!   limit. The queue is refilled (fresh incarnations in a push-pull frame,
//!   untimed) every [`CHUNK`] pings, well before it could run short.
//! - `probe_ack/full_both_ways`: the same, with pings that also carry a full
//!   piggyback (already-known claims, as most received gossip is).
//! - `decode/full_datagram`, `decode/empty_ping`: `Envelope::decode` alone.
//!
//! `now` stays before the node's first deadline, so no timer fires and every
//! output is the ack. Run: `cargo bench -p quorate-core --bench throughput`.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use quorate_core::membership::{Message, PushPull, Update, Updates};
use quorate_core::wire::{Body, BoundedVec, Channel, Envelope, Header, PROTOCOL_VERSION, limits};
use quorate_core::{
    ClusterUuid, Config, Identity, Input, Instant, MemberId, MemberInfo, Node, Output, Recovered, State, Tags,
};

const CLUSTER: &str = "bench";

/// The node under test is member 1; members 2 ..= MEMBERS + 1 are its peers.
const LOCAL: u128 = 1;
/// The peer whose pings the node answers.
const PEER: u128 = 2;
/// Peers the node knows.
const MEMBERS: u128 = 100;

/// Pings timed between two refills of the broadcast queue in the full cases.
/// A refill queues 100 fresh updates, each sent `4 · ceil(log10 102) = 12`
/// times at 33 a datagram: about 36 full acks, twice this and more.
const CHUNK: u64 = 16;

/// An ack this long or longer counts as full: the budget left after packing is
/// smaller than the next update (40 bytes here).
const FULL_ACK_BYTES: usize = limits::MAX_DATAGRAM_BYTES - 40;

/// All pings arrive at this instant, before the node's first timer.
const NOW: Instant = Instant::from_nanos(1_000);

fn addr(n: u128) -> SocketAddr {
    let [.., high, low] = (n as u32).to_be_bytes();
    SocketAddr::from(([10, 0, high, low], 7946))
}

fn info(n: u128, incarnation: u32) -> MemberInfo {
    MemberInfo {
        id: MemberId::from_u128(n),
        name: format!("member-{n:03}").parse().expect("short name"),
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

fn header_of(n: u128) -> Header {
    Header {
        version: PROTOCOL_VERSION,
        cluster_name_hash: quorate_core::id::cluster_name_hash(CLUSTER),
        cluster_uuid: ClusterUuid::NIL,
        from: MemberId::from_u128(n),
        boot_id: 1,
    }
}

fn encode(from: u128, message: Message, channel: Channel) -> Vec<u8> {
    Envelope { header: header_of(from), body: Body::Membership(message) }.encode(channel).expect("within limits")
}

/// A ping from `PEER`, encoded as a stream frame would be (no datagram limit,
/// so a caller can measure a candidate); the bytes are the same.
fn ping(updates: Vec<Update>) -> Vec<u8> {
    let updates = Updates::try_from_vec(updates).expect("within MAX_PIGGYBACK");
    encode(PEER, Message::Ping { seq: 7, target: MemberId::from_u128(LOCAL), updates }, Channel::Stream)
}

/// A push-pull frame from `PEER` claiming every peer alive at `incarnation`.
fn push_pull(incarnation: u32) -> Vec<u8> {
    let members = (2..MEMBERS + 2).map(|n| info(n, incarnation)).collect();
    let members = BoundedVec::try_from_vec(members).expect("within MAX_MEMBERS");
    encode(PEER, Message::PushPull(PushPull { join: false, reply: true, members }), Channel::Stream)
}

fn drain(node: &mut Node) -> Vec<Output> {
    std::iter::from_fn(|| node.poll()).collect()
}

/// The bytes of the one datagram an input produced.
fn only_datagram(outputs: &[Output]) -> &[u8] {
    match outputs {
        [Output::Send(transmit)] if transmit.channel == Channel::Datagram && transmit.to == addr(PEER) => {
            &transmit.bytes
        }
        _ => panic!("expected exactly one datagram to the prober, got {outputs:?}"),
    }
}

fn decode_ack(bytes: &[u8]) -> Updates {
    match Envelope::decode(bytes, Channel::Datagram).expect("the node sends valid envelopes").body {
        Body::Membership(Message::Ack { seq: 7, updates }) => updates,
        other => panic!("expected the ack of seq 7, got {other:?}"),
    }
}

/// A started node (boot-id persist confirmed) that knows `MEMBERS` alive peers.
fn node_with_members() -> Node {
    let identity = Identity {
        id: MemberId::from_u128(LOCAL),
        name: info(LOCAL, 0).name,
        addr: addr(LOCAL),
        tags: Tags::new(),
        durable: true,
    };
    let mut node = Node::new(Config::lan(CLUSTER), identity, 7, Recovered::default(), Instant::ZERO).expect("valid");
    let outputs = drain(&mut node);
    let Some(Output::Persist(persist)) = outputs.first() else {
        panic!("first output persists the boot id: {outputs:?}")
    };
    node.handle(Instant::ZERO, Input::Persisted(persist.seq));
    drain(&mut node);
    let frame = push_pull(0);
    node.handle(NOW, Input::Receive { from: addr(PEER), channel: Channel::Stream, bytes: &frame });
    drain(&mut node);
    let alive = node.members().filter(|member| member.state == State::Alive).count();
    assert_eq!(alive as u128, MEMBERS + 1, "the node knows every peer alive, and itself");
    assert!(node.next_deadline().is_some_and(|deadline| deadline > NOW), "no timer may fire during the bench");
    node
}

/// Answers pings until the broadcast queue is empty: the ack carries nothing.
fn drain_broadcasts(node: &mut Node, ping: &[u8]) {
    for _ in 0..10_000 {
        node.handle(NOW, Input::Receive { from: addr(PEER), channel: Channel::Datagram, bytes: ping });
        if decode_ack(only_datagram(&drain(node))).is_empty() {
            return;
        }
    }
    panic!("the broadcast queue never drained");
}

/// What the timed loop saw, checked after it.
#[derive(Default)]
struct Seen {
    datagrams: u64,
    other_outputs: u64,
    shortest: usize,
    longest: usize,
}

impl Seen {
    fn new() -> Self {
        Seen { shortest: usize::MAX, ..Seen::default() }
    }

    fn check(&self, iterations: u64, shortest: usize, longest: usize, case: &str) {
        assert_eq!((self.datagrams, self.other_outputs), (iterations, 0), "{case}: one ack per ping and nothing else");
        assert!(
            shortest <= self.shortest && self.longest <= longest,
            "{case}: acks of {}..={} bytes, expected within {shortest}..={longest}",
            self.shortest,
            self.longest
        );
    }
}

/// One datagram in, outputs drained: the measured unit.
#[inline(always)]
fn handle_one(node: &mut Node, bytes: &[u8], seen: &mut Seen) {
    node.handle(NOW, Input::Receive { from: addr(PEER), channel: Channel::Datagram, bytes: black_box(bytes) });
    while let Some(output) = node.poll() {
        match &output {
            Output::Send(transmit) => {
                seen.datagrams += 1;
                seen.shortest = seen.shortest.min(transmit.bytes.len());
                seen.longest = seen.longest.max(transmit.bytes.len());
            }
            _ => seen.other_outputs += 1,
        }
        black_box(output);
    }
}

#[allow(clippy::disallowed_methods, reason = "the benchmark times itself; the core never reads this clock")]
fn elapsed_since(start: std::time::Instant) -> Duration {
    start.elapsed()
}

#[allow(clippy::disallowed_methods, reason = "the benchmark times itself; the core never reads this clock")]
fn start_timer() -> std::time::Instant {
    std::time::Instant::now()
}

fn bench_probe_ack(c: &mut Criterion) {
    let mut group = c.benchmark_group("probe_ack");
    group.throughput(Throughput::Elements(1));

    // (a) No piggyback either way.
    let empty_ping = ping(Vec::new());
    let mut node = node_with_members();
    drain_broadcasts(&mut node, &empty_ping);
    node.handle(NOW, Input::Receive { from: addr(PEER), channel: Channel::Datagram, bytes: &empty_ping });
    let empty_ack = only_datagram(&drain(&mut node)).to_vec();
    assert!(decode_ack(&empty_ack).is_empty(), "the ack carries no piggyback");
    println!("probe_ack/no_piggyback: ping {} bytes, ack {} bytes, 0 updates", empty_ping.len(), empty_ack.len());
    group.bench_function("no_piggyback", |b| {
        b.iter_custom(|iterations| {
            let mut seen = Seen::new();
            let start = start_timer();
            for _ in 0..iterations {
                handle_one(&mut node, &empty_ping, &mut seen);
            }
            let elapsed = elapsed_since(start);
            seen.check(iterations, empty_ack.len(), empty_ack.len(), "no_piggyback");
            elapsed
        })
    });

    // (b) and (c): every ack filled to the limit.
    let full_ping = full_ping();
    for (name, ping) in [("full_ack", &empty_ping), ("full_both_ways", &full_ping)] {
        let mut node = node_with_members();
        let mut incarnation = 0;
        let mut refill = |node: &mut Node| {
            incarnation += 1;
            refill_broadcasts(node, incarnation);
        };
        refill(&mut node);
        node.handle(NOW, Input::Receive { from: addr(PEER), channel: Channel::Datagram, bytes: ping });
        let ack = only_datagram(&drain(&mut node)).to_vec();
        let carried = decode_ack(&ack).len();
        assert!(ack.len() >= FULL_ACK_BYTES, "{name}: a {}-byte ack is not full", ack.len());
        println!("probe_ack/{name}: ping {} bytes, ack {} bytes, {carried} updates", ping.len(), ack.len());
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| {
                let mut seen = Seen::new();
                let mut elapsed = Duration::ZERO;
                let mut left = iterations;
                while left > 0 {
                    refill(&mut node);
                    let chunk = left.min(CHUNK);
                    let start = start_timer();
                    for _ in 0..chunk {
                        handle_one(&mut node, ping, &mut seen);
                    }
                    elapsed += elapsed_since(start);
                    left -= chunk;
                }
                seen.check(iterations, FULL_ACK_BYTES, limits::MAX_DATAGRAM_BYTES, name);
                elapsed
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(1));
    let mut node = node_with_members();
    node.handle(NOW, Input::Receive { from: addr(PEER), channel: Channel::Datagram, bytes: &empty_ping });
    let full_ack = only_datagram(&drain(&mut node)).to_vec();
    assert!(full_ack.len() >= FULL_ACK_BYTES, "a {}-byte ack is not full", full_ack.len());
    group.bench_function("full_datagram", |b| {
        b.iter(|| Envelope::decode(black_box(&full_ack), Channel::Datagram).expect("valid"))
    });
    group.bench_function("empty_ping", |b| {
        b.iter(|| Envelope::decode(black_box(&empty_ping), Channel::Datagram).expect("valid"))
    });
    group.finish();
}

/// Queues fresh news about every peer: a push-pull frame claiming them alive
/// at a new `incarnation`. Untimed; never inlined, so profiles can leave it out.
#[inline(never)]
fn refill_broadcasts(node: &mut Node, incarnation: u32) {
    let frame = push_pull(incarnation);
    node.handle(NOW, Input::Receive { from: addr(PEER), channel: Channel::Stream, bytes: &frame });
    drain(node);
}

/// A ping whose piggyback fills the datagram with claims the node already
/// holds (incarnation 0, older than any refill), so applying them changes nothing.
fn full_ping() -> Vec<u8> {
    let mut updates = Vec::new();
    let mut bytes = ping(Vec::new());
    for n in 2..MEMBERS + 2 {
        if updates.len() == limits::MAX_PIGGYBACK {
            break;
        }
        updates.push(Update::Alive(info(n, 0)));
        let candidate = ping(updates.clone());
        if candidate.len() > limits::MAX_DATAGRAM_BYTES {
            break;
        }
        bytes = candidate;
    }
    assert!(bytes.len() >= FULL_ACK_BYTES, "a {}-byte ping is not full", bytes.len());
    bytes
}

criterion_group!(benches, bench_probe_ack);
criterion_main!(benches);
