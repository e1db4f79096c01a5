//! Fuzz entry points, shared by `cargo fuzz` targets and the corpus replay test.

use crate::wire::{Channel, Envelope};

/// Decodes `bytes` as a datagram and as a stream frame; a successful decode
/// must re-encode to a frame that decodes to the same envelope.
pub fn decode_envelope(bytes: &[u8]) {
    for channel in [Channel::Datagram, Channel::Stream] {
        if let Ok(envelope) = Envelope::decode(bytes, channel) {
            let again = envelope.encode(Channel::Stream).expect("a decoded envelope re-encodes");
            assert_eq!(Envelope::decode(&again, Channel::Stream).as_ref(), Ok(&envelope), "re-decode differs");
        }
    }
}
