//! Fuzz target: see `flamegraph::fuzzing::unwind` for the input layout. The modules are the real
//! ELF files `fuzz/elf/unwind_seed*`, built from `fuzz/elf/seed.c` by `fuzz/elf/build.sh`.
#![no_main]

use std::path::Path;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let elfs = [
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/elf/unwind_seed")),
        Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/elf/unwind_seed_debug_frame"
        )),
    ];
    let _ = flamegraph::fuzzing::unwind(&elfs, data);
});
