//! Any bytes, decoded as a datagram and as a stream frame: never a panic, and
//! whatever decodes re-encodes to the same envelope.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    quorate_core::fuzzing::decode_envelope(data);
});
