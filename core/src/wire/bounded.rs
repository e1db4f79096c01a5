//! Collections whose decoders refuse to exceed a limit, and never trust a count.
//!
//! A postcard sequence starts with its length. A hostile peer can claim any
//! length, so these decoders reject a count over the limit before reading an
//! element and never pre-allocate from the claim: memory grows only with bytes
//! that actually arrived.

use core::fmt;
use core::marker::PhantomData;
use std::collections::BTreeMap;
use std::string::String;
use std::vec::Vec;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

use super::limits;

/// How many elements a decoder reserves room for up front, whatever the claim.
const PREALLOCATE_AT_MOST: usize = 16;

/// A `Vec` of at most `N` elements on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoundedVec<T, const N: usize>(Vec<T>);

impl<T, const N: usize> Default for BoundedVec<T, N> {
    fn default() -> Self {
        BoundedVec(Vec::new())
    }
}

impl<T, const N: usize> BoundedVec<T, N> {
    /// An empty vector.
    pub const fn new() -> Self {
        BoundedVec(Vec::new())
    }

    /// Wraps `items`, or gives them back if there are more than `N`.
    pub fn try_from_vec(items: Vec<T>) -> Result<Self, Vec<T>> {
        if items.len() <= N { Ok(BoundedVec(items)) } else { Err(items) }
    }

    /// Appends `item`, or gives it back when full.
    pub fn try_push(&mut self, item: T) -> Result<(), T> {
        if self.0.len() < N {
            self.0.push(item);
            Ok(())
        } else {
            Err(item)
        }
    }

    /// The elements.
    pub fn as_slice(&self) -> &[T] {
        &self.0
    }

    /// The elements, by value.
    pub fn into_vec(self) -> Vec<T> {
        self.0
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<T, const N: usize> core::ops::Deref for BoundedVec<T, N> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.0
    }
}

impl<T: Serialize, const N: usize> Serialize for BoundedVec<T, N> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for item in &self.0 {
            seq.serialize_element(item)?;
        }
        seq.end()
    }
}

impl<'de, T: Deserialize<'de>, const N: usize> Deserialize<'de> for BoundedVec<T, N> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BoundedVisitor<T, const N: usize>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>, const N: usize> Visitor<'de> for BoundedVisitor<T, N> {
            type Value = BoundedVec<T, N>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a sequence of at most {N} elements")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let claimed = seq.size_hint().unwrap_or(0);
                if claimed > N {
                    return Err(de::Error::invalid_length(claimed, &self));
                }
                let mut items = Vec::with_capacity(claimed.min(PREALLOCATE_AT_MOST));
                while let Some(item) = seq.next_element()? {
                    if items.len() == N {
                        return Err(de::Error::invalid_length(N + 1, &self));
                    }
                    items.push(item);
                }
                Ok(BoundedVec(items))
            }
        }

        deserializer.deserialize_seq(BoundedVisitor::<T, N>(PhantomData))
    }
}

/// A UTF-8 string of at most `N` bytes on the wire.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BoundedString<const N: usize>(String);

impl<const N: usize> BoundedString<N> {
    /// Wraps `value`, or gives it back if it is longer than `N` bytes.
    pub fn try_new(value: impl Into<String>) -> Result<Self, String> {
        let value = value.into();
        if value.len() <= N { Ok(BoundedString(value)) } else { Err(value) }
    }

    /// The string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<const N: usize> core::str::FromStr for BoundedString<N> {
    type Err = TooLong;

    fn from_str(value: &str) -> Result<Self, TooLong> {
        Self::try_new(value).map_err(|value| TooLong { len: value.len(), limit: N })
    }
}

/// A string was longer than its limit; nothing was stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{len} bytes, over the limit of {limit}")]
pub struct TooLong {
    /// Bytes given.
    pub len: usize,
    /// The limit.
    pub limit: usize,
}

impl<const N: usize> fmt::Display for BoundedString<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<const N: usize> Serialize for BoundedString<N> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de, const N: usize> Deserialize<'de> for BoundedString<N> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrVisitor<const N: usize>;

        impl<const N: usize> Visitor<'_> for StrVisitor<N> {
            type Value = BoundedString<N>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a string of at most {N} bytes")
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
                if value.len() > N {
                    return Err(E::invalid_length(value.len(), &self));
                }
                Ok(BoundedString(String::from(value)))
            }
        }

        deserializer.deserialize_str(StrVisitor::<N>)
    }
}

/// A member name.
pub type Name = BoundedString<{ limits::MAX_NAME_BYTES }>;

/// Why a tag was refused. The tags are left as they were.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagsError {
    /// Keys and values together would exceed [`limits::MAX_TAGS_BYTES`].
    #[error("tags would take {bytes} bytes, over the limit of {}", limits::MAX_TAGS_BYTES)]
    TooLarge {
        /// The size the tags would have had.
        bytes: usize,
    },
    /// There would be more than [`limits::MAX_TAGS`] tags.
    #[error("more than {} tags", limits::MAX_TAGS)]
    TooMany,
    /// Tag keys may not be empty.
    #[error("a tag key may not be empty")]
    EmptyKey,
}

/// A member's small key-value tags (service name, version, endpoints, capacity).
///
/// Bounded by [`limits::MAX_TAGS`] entries and [`limits::MAX_TAGS_BYTES`] of
/// keys and values. On the wire the keys are strictly increasing, so one set of
/// tags has exactly one encoding.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tags(BTreeMap<String, String>);

impl Tags {
    /// No tags.
    pub const fn new() -> Self {
        Tags(BTreeMap::new())
    }

    /// Sets `key` to `value`, or says why not and changes nothing.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) -> Result<(), TagsError> {
        let (key, value) = (key.into(), value.into());
        if key.is_empty() {
            return Err(TagsError::EmptyKey);
        }
        let replaced = self.0.get(&key).map_or(0, |old| key.len() + old.len());
        let bytes = self.byte_len() - replaced + key.len() + value.len();
        if bytes > limits::MAX_TAGS_BYTES {
            return Err(TagsError::TooLarge { bytes });
        }
        if replaced == 0 && !self.0.contains_key(&key) && self.0.len() == limits::MAX_TAGS {
            return Err(TagsError::TooMany);
        }
        self.0.insert(key, value);
        Ok(())
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.0.remove(key)
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// The tags in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(key, value)| (key.as_str(), value.as_str()))
    }

    /// Number of tags.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Bytes of keys and values together, the figure [`limits::MAX_TAGS_BYTES`] bounds.
    pub fn byte_len(&self) -> usize {
        self.0.iter().map(|(key, value)| key.len() + value.len()).sum()
    }
}

impl Serialize for Tags {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for pair in &self.0 {
            seq.serialize_element(&pair)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for Tags {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        type Key = BoundedString<{ limits::MAX_TAGS_BYTES }>;
        let pairs = BoundedVec::<(Key, Key), { limits::MAX_TAGS }>::deserialize(deserializer)?;
        let mut tags = Tags::new();
        let mut bytes = 0usize;
        for (key, value) in pairs.into_vec() {
            if tags.0.last_key_value().is_some_and(|(last, _)| last.as_str() >= key.as_str()) {
                return Err(de::Error::custom("tag keys not strictly increasing"));
            }
            if key.0.is_empty() {
                return Err(de::Error::custom("empty tag key"));
            }
            bytes += key.0.len() + value.0.len();
            if bytes > limits::MAX_TAGS_BYTES {
                return Err(de::Error::custom("tags over the byte limit"));
            }
            tags.0.insert(key.0, value.0);
        }
        Ok(tags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lying_sequence_count_is_refused_before_reading_elements() {
        // Claim 2^28 elements in a handful of bytes.
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x01]);
        bytes.extend_from_slice(&[1, 2, 3]);
        let decoded: Result<BoundedVec<u8, 64>, _> = postcard::from_bytes(&bytes);
        assert!(decoded.is_err());
        let decoded: Result<BoundedVec<u64, { usize::MAX }>, _> = postcard::from_bytes(&bytes);
        assert!(decoded.is_err(), "a count larger than the input fails at the first missing element");
    }

    #[test]
    fn a_string_over_its_limit_is_refused() {
        let encoded = postcard::to_allocvec("hello").unwrap();
        assert!(postcard::from_bytes::<BoundedString<4>>(&encoded).is_err());
        assert_eq!(postcard::from_bytes::<BoundedString<5>>(&encoded).unwrap().as_str(), "hello");
    }

    #[test]
    fn tags_refuse_to_grow_past_their_byte_limit_and_stay_unchanged() {
        let mut tags = Tags::new();
        tags.insert("service", "a".repeat(400)).unwrap();
        let before = tags.clone();
        let error = tags.insert("version", "b".repeat(200)).unwrap_err();
        assert_eq!(error, TagsError::TooLarge { bytes: 7 + 400 + 7 + 200 });
        assert_eq!(tags, before);
        // Replacing a value counts only the new size.
        tags.insert("service", "c".repeat(500)).unwrap();
        assert_eq!(tags.byte_len(), 507);
    }

    #[test]
    fn tags_round_trip_and_reject_unsorted_or_duplicate_keys() {
        let mut tags = Tags::new();
        tags.insert("b", "2").unwrap();
        tags.insert("a", "1").unwrap();
        let encoded = postcard::to_allocvec(&tags).unwrap();
        assert_eq!(postcard::from_bytes::<Tags>(&encoded).unwrap(), tags);

        let unsorted = postcard::to_allocvec(&[("b", "2"), ("a", "1")]).unwrap();
        assert!(postcard::from_bytes::<Tags>(&unsorted).is_err());
        let duplicate = postcard::to_allocvec(&[("a", "1"), ("a", "2")]).unwrap();
        assert!(postcard::from_bytes::<Tags>(&duplicate).is_err());
    }

    #[test]
    fn too_many_tags_are_refused() {
        let mut tags = Tags::new();
        for index in 0..limits::MAX_TAGS {
            tags.insert(format!("k{index:02}"), "").unwrap();
        }
        assert_eq!(tags.insert("another", ""), Err(TagsError::TooMany));
        tags.insert("k00", "replaced").unwrap();
    }
}
