//! The wire format: one versioned envelope around every message (DESIGN §6).
//!
//! `Envelope { version, cluster_name_hash, cluster_uuid, from, boot_id, body }`
//! encoded with postcard, followed by a CRC-32C of those bytes (little-endian,
//! [`CHECKSUM_BYTES`]). The header is decoded first and checked before the
//! body is touched: an unknown version or a foreign cluster costs a few bytes of
//! parsing and is counted, never panicked on. Every size is bounded by
//! [`limits`], checked before decoding; collections decode through
//! [`BoundedVec`] and friends, which never trust a claimed count.
//!
//! The checksum is there because a damaged message can still decode: one
//! flipped bit in a gossiped durable id makes a phantom member, which then
//! supersedes the real one under its name (the simulator found exactly this).
//! UDP's own 16-bit checksum is optional over IPv4, and neither it nor TCP's
//! catches every corruption; memberlist checksums its datagrams for the same
//! reason.

pub mod limits;

mod bounded;

use serde::{Deserialize, Serialize};

pub use bounded::{BoundedString, BoundedVec, Name, Tags, TagsError, TooLong};

use crate::id::{ClusterUuid, MemberId};
use crate::{membership, raft, rebalance, rsm};

/// The protocol version this build speaks. The first byte of every envelope.
pub const PROTOCOL_VERSION: u8 = 1;

/// Bytes of the CRC-32C that ends every encoded envelope.
pub const CHECKSUM_BYTES: usize = 4;

/// How a message travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
pub enum Channel {
    /// One UDP datagram of at most [`limits::MAX_DATAGRAM_BYTES`]; may be lost,
    /// reordered or duplicated.
    Datagram,
    /// One length-prefixed frame of at most [`limits::MAX_FRAME_BYTES`] on a
    /// TCP stream to the destination.
    Stream,
}

impl Channel {
    /// The largest encoded envelope this channel carries.
    pub const fn max_bytes(self) -> usize {
        match self {
            Channel::Datagram => limits::MAX_DATAGRAM_BYTES,
            Channel::Stream => limits::MAX_FRAME_BYTES,
        }
    }
}

/// What every envelope says about its sender, decoded before the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// [`PROTOCOL_VERSION`] of the sender. Must stay the first field: it is
    /// checked on the raw first byte.
    pub version: u8,
    /// [`crate::id::cluster_name_hash`] of the sender's cluster name.
    pub cluster_name_hash: u64,
    /// The sender's cluster uuid, nil before bootstrap.
    pub cluster_uuid: ClusterUuid,
    /// The sender's durable id.
    pub from: MemberId,
    /// The sender's boot id: raised on every start and synced before its first send.
    pub boot_id: u64,
}

/// The message inside an envelope, routed by [`crate::Node`] to a sub-machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    /// SWIM membership: probes, acks, gossip, push-pull.
    Membership(membership::Message),
    /// Raft: votes, appends, snapshots.
    Raft(raft::Message),
    /// Views: acks to the leader.
    View(rebalance::Message),
    /// Sent by a recovered member to an old member of the cluster it
    /// replaced: the envelope's uuid is the new cluster; the receiver fences itself.
    Recovered,
    /// The replicated state machine: sessions and commands to the leader,
    /// answers back.
    Client(rsm::client::Message),
}

impl Body {
    /// Bytes the variant tag takes in front of the message (one varint byte
    /// while there are fewer than 128 variants).
    pub(crate) const VARIANT_BYTES: usize = 1;

    /// A short, stable name of the message kind, for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Body::Membership(message) => message.kind(),
            Body::Raft(message) => message.kind(),
            Body::View(message) => message.kind(),
            Body::Client(message) => message.kind(),
            Body::Recovered => "recovered",
        }
    }
}

/// One message as it travels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Who sent it, from which cluster, speaking which version.
    pub header: Header,
    /// The message.
    pub body: Body,
}

/// Why bytes were refused. Decoding never changes any state; the caller counts
/// the error and drops the bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Larger than its channel allows; nothing was parsed.
    #[error("{len}-byte message over the {limit}-byte limit of its channel")]
    TooLarge {
        /// Bytes received.
        len: usize,
        /// The channel's limit.
        limit: usize,
    },
    /// Spoken by a version this build does not know; nothing past the first
    /// byte was parsed.
    #[error("unknown protocol version {0}")]
    UnknownVersion(u8),
    /// Not a well-formed envelope: truncated, an unknown variant, a count over
    /// its limit, invalid UTF-8.
    #[error("malformed message: {0}")]
    Malformed(postcard::Error),
    /// A well-formed envelope followed by bytes that belong to nothing.
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
    /// The bytes do not match their checksum: damaged on the way.
    #[error("checksum mismatch: the message says {expected:08x}, its bytes give {found:08x}")]
    Checksum {
        /// The checksum the message carries.
        expected: u32,
        /// The checksum of the bytes received.
        found: u32,
    },
}

/// Why a message could not be encoded. Nothing was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The encoding is larger than the channel allows.
    #[error("{len}-byte message over the {limit}-byte limit of its channel")]
    TooLarge {
        /// Bytes the encoding took.
        len: usize,
        /// The channel's limit.
        limit: usize,
    },
    /// postcard refused the value (cannot happen for our types; kept so a bug
    /// shows as an error, not a panic).
    #[error("encoding failed: {0}")]
    Postcard(postcard::Error),
}

impl Envelope {
    /// Encodes the envelope for `channel`, refusing one over the channel's limit.
    pub fn encode(&self, channel: Channel) -> Result<Vec<u8>, EncodeError> {
        let mut bytes = postcard::to_allocvec(self).map_err(EncodeError::Postcard)?;
        let limit = channel.max_bytes();
        let len = bytes.len() + CHECKSUM_BYTES;
        if len > limit {
            return Err(EncodeError::TooLarge { len, limit });
        }
        let checksum = crc32c::crc32c(&bytes);
        bytes.extend_from_slice(&checksum.to_le_bytes());
        Ok(bytes)
    }

    /// Decodes an envelope received on `channel`.
    pub fn decode(bytes: &[u8], channel: Channel) -> Result<Envelope, DecodeError> {
        let (header, rest) = Header::decode(bytes, channel)?;
        let body = decode_body(rest)?;
        Ok(Envelope { header, body })
    }
}

impl Header {
    /// Checks the checksum and decodes just the header, returning it and the
    /// undecoded body bytes, so the caller can refuse a foreign cluster
    /// before parsing further.
    pub fn decode(bytes: &[u8], channel: Channel) -> Result<(Header, &[u8]), DecodeError> {
        let limit = channel.max_bytes();
        if bytes.len() > limit {
            return Err(DecodeError::TooLarge { len: bytes.len(), limit });
        }
        match bytes.first() {
            None => {
                return Err(DecodeError::Malformed(postcard::Error::DeserializeUnexpectedEnd));
            }
            Some(&version) if version != PROTOCOL_VERSION => {
                return Err(DecodeError::UnknownVersion(version));
            }
            Some(_) => {}
        }
        let Some(split) = bytes.len().checked_sub(CHECKSUM_BYTES) else {
            return Err(DecodeError::Malformed(postcard::Error::DeserializeUnexpectedEnd));
        };
        let (bytes, trailer) = bytes.split_at(split);
        let expected = u32::from_le_bytes(trailer.try_into().expect("CHECKSUM_BYTES bytes"));
        let found = crc32c::crc32c(bytes);
        if expected != found {
            return Err(DecodeError::Checksum { expected, found });
        }
        postcard::take_from_bytes::<Header>(bytes).map_err(DecodeError::Malformed)
    }
}

/// `bytes` with the checksum an envelope ends with appended: for tests and
/// fuzzing that build envelopes by hand.
pub fn with_checksum(bytes: &[u8]) -> Vec<u8> {
    let mut sealed = bytes.to_vec();
    sealed.extend_from_slice(&crc32c::crc32c(bytes).to_le_bytes());
    sealed
}

/// Decodes the body that follows a header; every byte must belong to it.
pub fn decode_body(bytes: &[u8]) -> Result<Body, DecodeError> {
    let (body, rest) = postcard::take_from_bytes::<Body>(bytes).map_err(DecodeError::Malformed)?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes(rest.len()));
    }
    Ok(body)
}
