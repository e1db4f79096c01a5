//! Replays the stored fuzz corpus (`fuzz/corpus/<target>/`) through the same
//! `quorate_core::fuzzing` entry points the `cargo fuzz` targets call, so plain
//! `cargo test` (and CI) re-checks every input the fuzzers ever kept (DESIGN
//! §2, STYLE "Tests"). A missing or empty corpus directory fails: the replay
//! must not pass by finding nothing.
//!
//! `cargo test -p quorate-core --test fuzz_corpus -- --ignored generate_seed_corpus`
//! rewrites the hand-made seeds (valid encodings of every membership message
//! and update kind, the smallest frame of every message kind a scripted Raft
//! cluster sends, some malformed frames, a few starting inputs for the
//! operation targets); see `fuzz/README.md`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use quorate_core::config::Bootstrap;
use quorate_core::fuzzing;
use quorate_core::membership::{Message, PushPull, Update, Updates};
use quorate_core::testing::{Disk, NodeIdx, Sim};
use quorate_core::wire::{self, Body, BoundedVec, Channel, Envelope, Header, limits};
use quorate_core::{ClusterUuid, Command, Config, MemberId, MemberInfo, State, Tags};

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target)
}

/// Every file of the target's corpus, sorted by name; panics if there are none.
fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = corpus_dir(target);
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|error| panic!("corpus {}: {error}", dir.display()));
    let mut files: Vec<PathBuf> =
        entries.map(|entry| entry.expect("readable corpus directory").path()).filter(|path| path.is_file()).collect();
    files.sort();
    assert!(!files.is_empty(), "corpus {} is empty: nothing would be replayed", dir.display());
    files
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
            (path, bytes)
        })
        .collect()
}

/// Runs the inputs of `target` through `entry`, naming the file that fails
/// (the name is printed before each input and shown if it panics):
/// all of them, or with `limit` an evenly spaced, fixed subset of at most
/// `limit` (every k-th file by name; the names are content hashes, so that
/// is an unbiased sample). `QUORATE_FUZZ_REPLAY_ALL=1` lifts the limit.
// Wall-clock time of the replay itself, for the report line; nothing in the core sees it.
#[allow(clippy::disallowed_methods)]
fn replay(target: &str, entry: fn(&[u8]), limit: Option<usize>) {
    let started = Instant::now();
    let inputs = corpus(target);
    let limit = limit.filter(|_| std::env::var_os("QUORATE_FUZZ_REPLAY_ALL").is_none());
    let stride = limit.map_or(1, |limit| inputs.len().div_ceil(limit.max(1)));
    let mut replayed = 0;
    for (path, bytes) in inputs.iter().step_by(stride) {
        eprintln!("replaying {}", path.display());
        entry(bytes);
        replayed += 1;
    }
    let elapsed = started.elapsed();
    let of = if replayed < inputs.len() {
        format!(" of {} (one in {stride}; QUORATE_FUZZ_REPLAY_ALL=1 replays all)", inputs.len())
    } else {
        String::new()
    };
    // Straight to stderr, past the test harness's capture, so CI logs show it.
    let line = format!("fuzz corpus `{target}`: replayed {replayed}{of} inputs in {elapsed:.2?}\n");
    std::io::stderr().write_all(line.as_bytes()).expect("stderr");
}

/// Most `cluster` inputs one debug `cargo test` replays (about 10 s).
const CLUSTER_REPLAY_LIMIT: usize = 100;

#[test]
fn every_stored_envelope_input_decodes_without_panicking_and_round_trips() {
    replay("envelope", fuzzing::decode_envelope, None);
}

#[test]
fn every_stored_node_input_sequence_keeps_the_node_invariants() {
    replay("node_inputs", fuzzing::node_inputs, None);
}

#[test]
fn stored_cluster_operation_sequences_keep_invariants_and_converge() {
    // A cluster input runs a simulated cluster for a minute or more of virtual
    // time: milliseconds in release, ten times that in a debug build.
    replay("cluster", fuzzing::cluster_ops, Some(CLUSTER_REPLAY_LIMIT));
}

/// Replays one input, e.g. a crash libFuzzer saved, with the panic context
/// the fuzz run cannot print (libFuzzer aborts at the panic; here the
/// operations of a `cluster` run are printed as the panic unwinds):
/// `QUORATE_FUZZ_INPUT=fuzz/artifacts/cluster/crash-… QUORATE_FUZZ_TARGET=cluster
/// cargo test -p quorate-core --test fuzz_corpus -- --ignored replay_one_input --nocapture`.
#[test]
#[ignore = "replays the file named by QUORATE_FUZZ_INPUT"]
fn replay_one_input() {
    let path = std::env::var("QUORATE_FUZZ_INPUT").expect("QUORATE_FUZZ_INPUT names the input file");
    let target = std::env::var("QUORATE_FUZZ_TARGET").expect("QUORATE_FUZZ_TARGET: envelope, node_inputs or cluster");
    let bytes = std::fs::read(&path).unwrap_or_else(|error| panic!("{path}: {error}"));
    match target.as_str() {
        "envelope" => fuzzing::decode_envelope(&bytes),
        "node_inputs" => fuzzing::node_inputs(&bytes),
        "cluster" => {
            println!("{}", fuzzing::describe_cluster_ops(&bytes));
            fuzzing::cluster_ops(&bytes);
        }
        other => panic!("unknown target {other}"),
    }
}

// ----- the seed generator ---------------------------------------------------------------------

fn header() -> Header {
    Header {
        version: wire::PROTOCOL_VERSION,
        cluster_name_hash: quorate_core::id::cluster_name_hash("fuzz"),
        cluster_uuid: ClusterUuid::NIL,
        from: MemberId::from_u128(2),
        boot_id: 1,
    }
}

fn addr(n: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, n], 7946))
}

fn member(n: u8, state: State, tags: bool) -> MemberInfo {
    let mut info_tags = Tags::new();
    if tags {
        info_tags.insert("service", "billing").unwrap();
        info_tags.insert("zone", "eu-1").unwrap();
    }
    MemberInfo {
        id: MemberId::from_u128(u128::from(n)),
        name: format!("m{n}").parse().unwrap(),
        addr: addr(n),
        boot_id: 1,
        incarnation: u32::from(n),
        state,
        leaving: n & 1 == 0,
        tags: info_tags,
        durable: true,
        cluster: quorate_core::ClusterClaim::Joining,
    }
}

fn every_update() -> Updates {
    let (id, from) = (MemberId::from_u128(3), MemberId::from_u128(2));
    let list = vec![
        Update::Alive(member(4, State::Alive, true)),
        Update::Suspect { id, boot_id: 1, incarnation: 2, from },
        Update::Dead { id, boot_id: 1, incarnation: 3, from },
        Update::Left { id: MemberId::from_u128(5), boot_id: 2, incarnation: 0 },
    ];
    BoundedVec::try_from_vec(list).unwrap()
}

fn encode(message: Message, channel: Channel) -> Vec<u8> {
    Envelope { header: header(), body: Body::Membership(message) }.encode(channel).unwrap()
}

/// Valid encodings of every message kind, then frames broken in one way each.
fn envelope_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let target = MemberId::from_u128(1);
    let push_pull = |join, reply, count: u8| {
        let states = [State::Alive, State::Suspect, State::Dead, State::Left];
        let members = (0..count).map(|n| member(n, states[usize::from(n) % 4], n % 3 == 0)).collect();
        Message::PushPull(PushPull { join, reply, members: BoundedVec::try_from_vec(members).unwrap() })
    };
    let v6: SocketAddr = "[fd00::7]:7946".parse().unwrap();
    let valid = vec![
        ("ping", encode(Message::Ping { seq: 1, target, updates: Updates::new() }, Channel::Datagram)),
        ("ping-with-updates", encode(Message::Ping { seq: 2, target, updates: every_update() }, Channel::Datagram)),
        ("ack", encode(Message::Ack { seq: 1, updates: Updates::new() }, Channel::Datagram)),
        ("ack-with-updates", encode(Message::Ack { seq: u32::MAX, updates: every_update() }, Channel::Datagram)),
        (
            "ping-req",
            encode(
                Message::PingReq { seq: 7, target, target_addr: addr(1), updates: every_update() },
                Channel::Datagram,
            ),
        ),
        (
            "ping-req-v6",
            encode(Message::PingReq { seq: 8, target, target_addr: v6, updates: Updates::new() }, Channel::Datagram),
        ),
        ("nack", encode(Message::Nack { seq: 7 }, Channel::Datagram)),
        ("gossip", encode(Message::Gossip { updates: every_update() }, Channel::Datagram)),
        ("push-pull-join", encode(push_pull(true, false, 1), Channel::Stream)),
        ("push-pull", encode(push_pull(false, false, 6), Channel::Stream)),
        ("push-pull-reply", encode(push_pull(false, true, 6), Channel::Stream)),
        ("push-pull-large", encode(push_pull(false, false, 40), Channel::Stream)),
    ];
    let ping = encode(Message::Ping { seq: 1, target, updates: every_update() }, Channel::Datagram);
    let header_len = postcard::to_allocvec(&header()).unwrap().len();
    let mut malformed = vec![
        ("malformed-empty", Vec::new()),
        ("malformed-unknown-version", [&[2u8][..], &ping[1..]].concat()),
        ("malformed-truncated-header", ping[..header_len / 2].to_vec()),
        ("malformed-truncated-body", ping[..ping.len() - 3].to_vec()),
        ("malformed-trailing-byte", [&ping[..], &[0]].concat()),
        ("malformed-unknown-message", [&ping[..header_len], &[0, 99]].concat()),
        ("malformed-unknown-body", [&ping[..header_len], &[9, 0]].concat()),
        // Gossip claiming 2^32 - 1 updates in a few bytes.
        ("malformed-lying-count", [&ping[..header_len], &[0, 4, 0xff, 0xff, 0xff, 0xff, 0x07, 1, 2]].concat()),
        // Gossip carrying one update more than the limit, every one of them there.
        ("malformed-count-over-limit", [&ping[..header_len], &[0, 4], &too_many_updates()].concat()),
    ];
    // The same push-pull with its first member's name bytes replaced by invalid UTF-8.
    let mut bad_utf8 = encode(push_pull(false, false, 1), Channel::Stream);
    if let Some(at) = bad_utf8.windows(2).position(|window| window == b"m0") {
        bad_utf8[at] = 0xff;
        malformed.push(("malformed-invalid-utf8-name", bad_utf8));
    }
    // Tags whose keys are out of order ("zone" before "service").
    let mut unsorted = encode(push_pull(false, false, 1), Channel::Stream);
    if let (Some(service), Some(zone)) = (find(&unsorted, b"service"), find(&unsorted, b"zone")) {
        let pair_service = unsorted[service - 1..zone - 1].to_vec();
        let end = zone + 4 + 1 + usize::from(unsorted[zone + 4]);
        let pair_zone = unsorted[zone - 1..end].to_vec();
        unsorted.splice(service - 1..end, [pair_zone, pair_service].concat());
        malformed.push(("malformed-unsorted-tags", unsorted));
    }
    let mut foreign = ping.clone();
    foreign[1] ^= 0x55;
    malformed.push(("foreign-cluster", foreign));
    valid.into_iter().chain(malformed).collect()
}

fn too_many_updates() -> Vec<u8> {
    let left = Update::Left { id: MemberId::from_u128(5), boot_id: 1, incarnation: 0 };
    postcard::to_allocvec(&vec![left; limits::MAX_PIGGYBACK + 1]).unwrap()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

/// Deterministic filler bytes (xorshift64*), so the operation targets start
/// from a few different shapes of input rather than from nothing.
fn filler(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

fn write_seeds(target: &str, seeds: &[(String, Vec<u8>)]) {
    let dir = corpus_dir(target);
    std::fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in seeds {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    println!("wrote {} seeds to {}", seeds.len(), dir.display());
}

/// Frames a small Raft cluster really sends under a scripted run of faults
/// (bootstrap, joins, leadership transfers, a crash and a restart, loss, a
/// partition, a compaction and a lagging follower that needs a snapshot,
/// tags, a leave), the smallest of each message kind: valid encodings of
/// every kind the nodes produce, whatever the wire grows to.
fn harvested_frames() -> BTreeMap<&'static str, (Channel, Vec<u8>)> {
    let second = Duration::from_secs(1);
    let mut founders = Config::fast("fuzz");
    founders.bootstrap = Bootstrap::Expect(NonZeroU32::new(3).unwrap());
    founders.raft.snapshot_threshold = 8;
    let mut sim = Sim::new(7);
    sim.set_record_deliveries(true);
    let mut nodes = sim.add_nodes(3, &founders);
    sim.join_all(&nodes, nodes[0]);
    sim.run_for(5 * second);
    for _ in 0..2 {
        let mut joiner = Config::fast("fuzz");
        joiner.raft.snapshot_threshold = 8;
        let node = sim.add_node(&NodeIdx(sim.len()).to_string(), joiner);
        sim.join(node, &[nodes[0]]);
        nodes.push(node);
    }
    sim.run_for(5 * second);
    let mut tags = Tags::new();
    tags.insert("zone", "eu-1").unwrap();
    sim.command(nodes[1], Command::SetTags(tags));
    for &node in &nodes {
        sim.command(node, Command::TransferLeadership(None));
    }
    sim.run_for(3 * second);
    // A follower that misses enough entries to need a snapshot.
    sim.crash(nodes[4]);
    for round in 0..6 {
        for &node in &nodes[..4] {
            let mut tags = Tags::new();
            tags.insert("round", round.to_string()).unwrap();
            sim.command(node, Command::SetTags(tags));
            sim.command(node, Command::TransferLeadership(None));
        }
        sim.run_for(2 * second);
    }
    sim.restart(nodes[4], Disk::Keep);
    sim.join(nodes[4], &[nodes[0]]);
    sim.run_for(5 * second);
    sim.net_mut().loss = 0.3;
    sim.run_for(5 * second);
    sim.net_mut().loss = 0.0;
    sim.partition(&[&nodes[..1]]);
    sim.run_for(5 * second);
    sim.heal();
    sim.run_for(10 * second);
    sim.command(nodes[3], Command::Leave);
    sim.run_for(5 * second);
    let mut smallest: BTreeMap<&'static str, (Channel, Vec<u8>)> = BTreeMap::new();
    for delivery in sim.take_deliveries() {
        let envelope = Envelope::decode(&delivery.bytes, delivery.channel).expect("nodes send valid envelopes");
        let kind = envelope.body.kind();
        if smallest.get(kind).is_none_or(|(_, bytes)| delivery.bytes.len() < bytes.len()) {
            smallest.insert(kind, (delivery.channel, delivery.bytes));
        }
    }
    smallest
}

/// Writes the hand-made seeds into `fuzz/corpus/`. Run it by hand when the
/// wire format changes, then let the fuzzers and `cargo fuzz cmin` take over.
#[test]
#[ignore = "writes into fuzz/corpus; run by hand"]
fn generate_seed_corpus() {
    let envelope: Vec<(String, Vec<u8>)> =
        envelope_seeds().into_iter().map(|(name, bytes)| (format!("seed-{name}"), bytes)).collect();
    for (name, bytes) in &envelope {
        fuzzing::decode_envelope(bytes);
        println!("{name}: {:?}", Envelope::decode(bytes, Channel::Datagram).map(|_| ()));
        if name.contains("malformed") {
            assert!(Envelope::decode(bytes, Channel::Datagram).is_err(), "{name} decodes as a datagram");
        } else {
            assert!(Envelope::decode(bytes, Channel::Stream).is_ok(), "{name} does not decode");
        }
    }
    let mut envelope = envelope;
    for (kind, (channel, bytes)) in harvested_frames() {
        println!("harvested {kind} ({channel:?}, {} bytes)", bytes.len());
        envelope.push((format!("seed-sim-{kind}"), bytes));
    }
    write_seeds("envelope", &envelope);

    // Valid frames also make good raw inputs for the node: the operation
    // targets reach them through `Raw`/`Inject`, so start from a few shapes.
    let operations: Vec<(String, Vec<u8>)> = [(1, 16), (2, 64), (3, 256), (4, 1024), (5, 4096)]
        .map(|(seed, len)| (format!("seed-{len}"), filler(seed, len)))
        .to_vec();
    write_seeds("node_inputs", &operations);
    write_seeds("cluster", &operations);
}
