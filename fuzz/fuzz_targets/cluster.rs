//! A sequence of operations (faults, commands, raw bytes) on a small cluster in
//! the deterministic driver, with every node's invariants checked after every
//! input and membership convergence checked once the faults stop.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    quorate_core::fuzzing::cluster_ops(data);
});
