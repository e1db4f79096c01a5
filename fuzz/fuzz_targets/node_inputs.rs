//! One node fed an arbitrary sequence of inputs (ticks at increasing times,
//! well-formed, mutated and arbitrary frames on both channels, commands,
//! persist confirmations with any sequence number, discovery results): its
//! invariants hold after every input and its outputs obey the `Output` rules.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    quorate_core::fuzzing::node_inputs(data);
});
