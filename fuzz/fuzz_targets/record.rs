//! Fuzz target: see `flamegraph::fuzzing::record` for the input layout.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = flamegraph::fuzzing::record(data);
});
