//! Every size limit of the protocol, in one place (DESIGN §6).
//!
//! Decoders check these before they allocate; tables and queues say in their
//! docs what they do when one is reached.

/// Largest membership datagram, envelope included. Fits a 1500-byte Ethernet
/// MTU after IP and UDP headers, with room for tunnels.
pub const MAX_DATAGRAM_BYTES: usize = 1400;

/// Largest stream frame (push-pull state, later Raft batches and snapshot
/// chunks). A full push-pull of [`MAX_MEMBERS`] members with full tags fits.
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// Most members one node tracks, dead ones included. When the table is full,
/// the oldest dead or left member is reaped first; if none is dead, news of a
/// further member is dropped and counted.
pub const MAX_MEMBERS: usize = 16_384;

/// Longest member name, in bytes.
pub const MAX_NAME_BYTES: usize = 128;

/// Most bytes of tag keys and values together (DESIGN §3.1).
pub const MAX_TAGS_BYTES: usize = 512;

/// Most tags one member carries.
pub const MAX_TAGS: usize = 32;

/// Most membership updates piggybacked on one datagram; the byte budget
/// usually binds first.
pub const MAX_PIGGYBACK: usize = 64;

/// Most discovery seeds a node retries; further addresses are ignored and counted.
pub const MAX_SEEDS: usize = 256;

/// Most indirect probes a node relays for others at once; further `ping_req`s
/// are dropped (the requester then misses a nack, which Lifeguard counts
/// against its own health, not ours).
pub const MAX_RELAYED_PROBES: usize = 64;

/// Most membership updates waiting to be piggybacked. One per member, so this
/// never binds before [`MAX_MEMBERS`] does.
pub const MAX_BROADCASTS: usize = MAX_MEMBERS;

/// Most entries in one Raft append.
pub const MAX_APPEND_ENTRIES: usize = 1024;

/// Bytes of entries in one Raft append (one entry may exceed it alone).
pub const MAX_APPEND_BYTES: usize = 1024 * 1024;

/// Bytes of one application command in the log (etcd's default request
/// limit is 1.5 MiB; a command must fit one append with room to spare).
pub const MAX_COMMAND_BYTES: usize = 512 * 1024;

/// Bytes of one state machine response sent back to a member.
pub const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

/// Bytes of one snapshot chunk.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;

/// Largest snapshot a member accepts; a larger one is refused and counted.
pub const MAX_SNAPSHOT_BYTES: usize = 256 * 1024 * 1024;

/// Most outputs a node queues between two drains of `poll()`; the caller must
/// drain after every `handle`. Past it, further datagrams are dropped and
/// counted (gossip tolerates loss), never persists or events.
pub const MAX_QUEUED_OUTPUTS: usize = 65_536;
