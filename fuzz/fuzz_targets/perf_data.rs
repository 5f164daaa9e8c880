//! Fuzz target: see `flamegraph::fuzzing::perf_data` for the input layout.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = flamegraph::fuzzing::perf_data(data);
});
