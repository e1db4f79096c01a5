//! Identities: durable member ids, cluster uuids and the cluster-name hash.
//!
//! A member is known by its *durable id*, created with its storage and never
//! reused (DESIGN §3.2); names are for people. The cluster is known by the hash
//! of its name, and after bootstrap by a uuid every member derives alike. All
//! hashing here is xxh3 over explicit bytes, so every build on every platform
//! agrees.

use serde::{Deserialize, Serialize};

/// A member's durable id: 16 bytes, created with its storage and never reused.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
pub struct MemberId(pub [u8; 16]);

impl MemberId {
    /// Builds an id from a `u128`, big-endian, so small numbers print recognisably in tests.
    pub const fn from_u128(value: u128) -> Self {
        MemberId(value.to_be_bytes())
    }

    /// The id as a `u128` (big-endian).
    pub const fn as_u128(self) -> u128 {
        u128::from_be_bytes(self.0)
    }
}

impl core::fmt::Debug for MemberId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Display::fmt(self, f)
    }
}

impl core::fmt::Display for MemberId {
    /// The first 6 bytes in hex: enough to tell members apart in a log line.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for byte in &self.0[..6] {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// The uuid of a bootstrapped cluster; [`ClusterUuid::NIL`] before bootstrap.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
pub struct ClusterUuid(pub [u8; 16]);

impl ClusterUuid {
    /// The uuid a member sends before its cluster has bootstrapped.
    pub const NIL: ClusterUuid = ClusterUuid([0; 16]);

    /// Whether this is the pre-bootstrap nil uuid.
    pub fn is_nil(self) -> bool {
        self == Self::NIL
    }
}

impl core::fmt::Debug for ClusterUuid {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for byte in &self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// The hash of a cluster name carried in every envelope (DESIGN §6).
///
/// A domain prefix keeps it from colliding with any other xxh3 use in the
/// protocol.
pub fn cluster_name_hash(name: &str) -> u64 {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(b"quorate/cluster-name/v1\0");
    hasher.update(name.as_bytes());
    hasher.digest()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_name_hash_is_pinned() {
        // Golden values: changing them splits every mixed-version cluster.
        assert_eq!(cluster_name_hash("quorate"), GOLDEN_QUORATE);
        assert_eq!(cluster_name_hash(""), GOLDEN_EMPTY);
        assert_ne!(cluster_name_hash("a"), cluster_name_hash("b"));
    }

    const GOLDEN_QUORATE: u64 = 0x3fc3_7fe7_c35e_0c09;
    const GOLDEN_EMPTY: u64 = 0x30c5_f72e_d9d0_7d45;

    #[test]
    fn member_id_prints_its_first_six_bytes() {
        let id = MemberId::from_u128(0x0102_0304_0506_0708_0000_0000_0000_0000);
        assert_eq!(id.to_string(), "010203040506");
        assert_eq!(MemberId::from_u128(7).as_u128(), 7);
    }
}
