//! Wire format properties (DESIGN §6): every valid envelope round-trips; every
//! truncation and every single-bit flip of a valid frame decodes to an error
//! or to a valid message, never a panic; a lying count never pre-allocates.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;

use proptest::prelude::*;
use quorate_core::membership::{Message, PushPull, Update, Updates};
use quorate_core::wire::{self, Body, BoundedVec, Channel, DecodeError, Envelope, Header, Name, limits};
use quorate_core::{ClusterClaim, ClusterUuid, MemberId, MemberInfo, State, Tags};

/// Counts bytes allocated by each thread, so a test can bound what one decode
/// allocated while other tests run in parallel.
struct CountingAllocator;

thread_local! {
    static ALLOCATED: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.with(|allocated| allocated.set(allocated.get() + layout.size()));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn header() -> Header {
    Header {
        version: wire::PROTOCOL_VERSION,
        cluster_name_hash: quorate_core::id::cluster_name_hash("test"),
        cluster_uuid: ClusterUuid::NIL,
        from: MemberId::from_u128(1),
        boot_id: 3,
    }
}

fn arb_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
    ]
}

fn arb_tags() -> impl Strategy<Value = Tags> {
    proptest::collection::btree_map("[a-z]{1,8}", "[ -~]{0,24}", 0..4).prop_map(|map| {
        let mut tags = Tags::new();
        for (key, value) in map {
            tags.insert(key, value).expect("small tags fit");
        }
        tags
    })
}

fn arb_state() -> impl Strategy<Value = State> {
    prop_oneof![Just(State::Alive), Just(State::Suspect), Just(State::Dead), Just(State::Left)]
}

fn arb_member() -> impl Strategy<Value = MemberInfo> {
    (any::<u128>(), "[a-z0-9-]{1,20}", arb_addr(), any::<u64>(), any::<u32>(), arb_state(), any::<bool>(), arb_tags())
        .prop_map(|(id, name, addr, boot_id, incarnation, state, leaving, tags)| MemberInfo {
            id: MemberId::from_u128(id),
            name: name.parse().expect("short name"),
            addr,
            boot_id,
            incarnation,
            state,
            leaving,
            tags,
            durable: leaving,
            cluster: if state == State::Alive {
                ClusterClaim::Joining
            } else {
                ClusterClaim::Member(ClusterUuid([state as u8; 16]))
            },
        })
}

fn arb_update() -> impl Strategy<Value = Update> {
    let id = any::<u128>().prop_map(MemberId::from_u128);
    prop_oneof![
        arb_member().prop_map(Update::Alive),
        (id.clone(), any::<u64>(), any::<u32>(), id.clone())
            .prop_map(|(id, boot_id, incarnation, from)| Update::Suspect { id, boot_id, incarnation, from }),
        (id.clone(), any::<u64>(), any::<u32>(), id.clone())
            .prop_map(|(id, boot_id, incarnation, from)| Update::Dead { id, boot_id, incarnation, from }),
        (id, any::<u64>(), any::<u32>()).prop_map(|(id, boot_id, incarnation)| Update::Left {
            id,
            boot_id,
            incarnation
        }),
    ]
}

fn arb_updates() -> impl Strategy<Value = Updates> {
    proptest::collection::vec(arb_update(), 0..6).prop_map(|updates| BoundedVec::try_from_vec(updates).unwrap())
}

fn arb_message() -> impl Strategy<Value = Message> {
    let id = any::<u128>().prop_map(MemberId::from_u128);
    prop_oneof![
        (any::<u32>(), id.clone(), arb_updates())
            .prop_map(|(seq, target, updates)| { Message::Ping { seq, target, updates } }),
        (any::<u32>(), arb_updates()).prop_map(|(seq, updates)| Message::Ack { seq, updates }),
        (any::<u32>(), id, arb_addr(), arb_updates())
            .prop_map(|(seq, target, target_addr, updates)| Message::PingReq { seq, target, target_addr, updates }),
        any::<u32>().prop_map(|seq| Message::Nack { seq }),
        arb_updates().prop_map(|updates| Message::Gossip { updates }),
        (any::<bool>(), any::<bool>(), proptest::collection::vec(arb_member(), 0..5)).prop_map(
            |(join, reply, members)| {
                Message::PushPull(PushPull { join, reply, members: BoundedVec::try_from_vec(members).unwrap() })
            }
        ),
    ]
}

fn arb_envelope() -> impl Strategy<Value = Envelope> {
    (arb_message(), any::<u128>(), any::<u64>(), any::<[u8; 16]>()).prop_map(|(message, from, boot_id, uuid)| {
        Envelope {
            header: Header { from: MemberId::from_u128(from), boot_id, cluster_uuid: ClusterUuid(uuid), ..header() },
            body: Body::Membership(message),
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Round trip: decode(encode(e)) == e on the stream channel.
    #[test]
    fn every_envelope_round_trips(envelope in arb_envelope()) {
        let bytes = envelope.encode(Channel::Stream).unwrap();
        prop_assert_eq!(Envelope::decode(&bytes, Channel::Stream).unwrap(), envelope);
    }

    /// Every strict prefix of a valid frame is refused, never panics.
    #[test]
    fn every_truncation_is_an_error(envelope in arb_envelope()) {
        let bytes = envelope.encode(Channel::Stream).unwrap();
        for len in 0..bytes.len() {
            prop_assert!(Envelope::decode(&bytes[..len], Channel::Stream).is_err(), "prefix of {} bytes decoded", len);
        }
    }

    /// Every single-bit flip decodes to an error or to a message that itself
    /// round-trips (a valid message), never a panic.
    #[test]
    fn every_single_bit_flip_is_an_error_or_a_valid_message(envelope in arb_envelope()) {
        let bytes = envelope.encode(Channel::Stream).unwrap();
        let mut flipped = bytes.clone();
        for bit in 0..bytes.len() * 8 {
            flipped[bit / 8] ^= 1 << (bit % 8);
            if let Ok(decoded) = Envelope::decode(&flipped, Channel::Stream) {
                let again = decoded.encode(Channel::Stream).unwrap();
                prop_assert_eq!(Envelope::decode(&again, Channel::Stream).unwrap(), decoded);
            }
            flipped[bit / 8] ^= 1 << (bit % 8);
        }
    }

    /// Garbage is refused without panicking.
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = Envelope::decode(&bytes, Channel::Datagram);
        let _ = Envelope::decode(&bytes, Channel::Stream);
    }
}

#[test]
fn an_unknown_version_is_refused_before_anything_else_is_parsed() {
    let envelope = Envelope { header: header(), body: Body::Membership(Message::Nack { seq: 1 }) };
    let mut bytes = envelope.encode(Channel::Datagram).unwrap();
    bytes[0] = wire::PROTOCOL_VERSION + 1;
    bytes.truncate(1);
    assert_eq!(
        Envelope::decode(&bytes, Channel::Datagram),
        Err(DecodeError::UnknownVersion(wire::PROTOCOL_VERSION + 1))
    );
}

#[test]
fn an_oversized_datagram_is_refused_without_parsing() {
    let bytes = vec![wire::PROTOCOL_VERSION; limits::MAX_DATAGRAM_BYTES + 1];
    assert_eq!(
        Envelope::decode(&bytes, Channel::Datagram),
        Err(DecodeError::TooLarge { len: limits::MAX_DATAGRAM_BYTES + 1, limit: limits::MAX_DATAGRAM_BYTES })
    );
}

#[test]
fn trailing_bytes_after_a_message_are_refused() {
    let envelope = Envelope { header: header(), body: Body::Membership(Message::Nack { seq: 1 }) };
    let mut bytes = unsealed(envelope.encode(Channel::Datagram).unwrap());
    bytes.push(0);
    assert_eq!(Envelope::decode(&wire::with_checksum(&bytes), Channel::Datagram), Err(DecodeError::TrailingBytes(1)));
}

/// The encoding without its checksum, to damage it on purpose.
fn unsealed(mut bytes: Vec<u8>) -> Vec<u8> {
    bytes.truncate(bytes.len() - wire::CHECKSUM_BYTES);
    bytes
}

proptest! {
    /// One flipped bit anywhere, even one that leaves a well-formed
    /// envelope (a durable id in gossip), is refused.
    #[test]
    fn a_flipped_bit_anywhere_is_refused(seq in any::<u32>(), at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let envelope = Envelope { header: header(), body: Body::Membership(Message::Nack { seq }) };
        let mut bytes = envelope.encode(Channel::Datagram).unwrap();
        let at = at.index(bytes.len());
        bytes[at] ^= 1 << bit;
        let refused = Envelope::decode(&bytes, Channel::Datagram);
        prop_assert!(
            matches!(refused, Err(DecodeError::Checksum { .. } | DecodeError::UnknownVersion(_))),
            "flipping bit {bit} of byte {at} gave {refused:?}"
        );
    }
}

#[test]
fn encoding_refuses_a_message_over_its_channel_limit() {
    let name: Name = "n".repeat(limits::MAX_NAME_BYTES).parse().unwrap();
    let member = MemberInfo {
        id: MemberId::from_u128(9),
        name,
        addr: "10.0.0.1:1".parse().unwrap(),
        boot_id: 1,
        incarnation: 1,
        state: State::Alive,
        leaving: false,
        tags: Tags::new(),
        durable: true,
        cluster: ClusterClaim::Joining,
    };
    let members = BoundedVec::try_from_vec(vec![member; 20]).unwrap();
    let body = Body::Membership(Message::PushPull(PushPull { join: true, reply: false, members }));
    let envelope = Envelope { header: header(), body };
    assert!(matches!(envelope.encode(Channel::Datagram), Err(wire::EncodeError::TooLarge { .. })));
    assert!(envelope.encode(Channel::Stream).is_ok());
}

/// A push-pull whose member count claims the maximum but carries only a few
/// bytes: refused, and the decode allocates next to nothing.
#[test]
fn a_lying_member_count_never_preallocates() {
    let envelope = Envelope {
        header: header(),
        body: Body::Membership(Message::PushPull(PushPull { join: true, reply: false, members: BoundedVec::new() })),
    };
    let mut bytes = unsealed(envelope.encode(Channel::Stream).unwrap());
    // The empty member list is the last byte (count 0); claim MAX_MEMBERS instead.
    assert_eq!(bytes.pop(), Some(0));
    let mut count = limits::MAX_MEMBERS as u32;
    while count >= 0x80 {
        bytes.push((count as u8) | 0x80);
        count >>= 7;
    }
    bytes.push(count as u8);
    bytes.extend_from_slice(&[0xAB; 40]);
    let bytes = wire::with_checksum(&bytes);

    let before = ALLOCATED.with(Cell::get);
    let decoded = Envelope::decode(&bytes, Channel::Stream);
    let allocated = ALLOCATED.with(Cell::get) - before;
    assert!(decoded.is_err());
    // The claim times the size of a member record would be megabytes.
    assert!(allocated < 16 * 1024, "decode allocated {allocated} bytes for a {}-byte frame", bytes.len());
}
