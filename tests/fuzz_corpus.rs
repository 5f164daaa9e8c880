//! Replays the committed corpus of every fuzz target (`fuzz/corpus/<target>/`, crashes found
//! included) through the same library entry points the targets call (`flamegraph::fuzzing`), on
//! the stable toolchain: none of the inputs may panic. The fuzzers themselves run with
//! `cargo +nightly fuzz run <target>`, see the README.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use flamegraph::fuzzing;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// Calls `run` on every file of `fuzz/corpus/<target>/`; fails naming every input that panicked.
fn replay(target: &str, run: impl Fn(&[u8])) {
    let dir = fuzz_dir().join("corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no corpus", dir.display());
    let panicked: Vec<String> = files
        .iter()
        .filter(|path| {
            let data = std::fs::read(path).unwrap();
            catch_unwind(AssertUnwindSafe(|| run(&data))).is_err()
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(panicked.is_empty(), "inputs that panic: {panicked:?}");
}

#[test]
fn record_corpus_parses_without_panic() {
    replay("record", fuzzing::record);
}

#[test]
fn perf_data_corpus_reads_without_panic() {
    replay("perf_data", |data| {
        let _ = fuzzing::perf_data(data);
    });
}

#[test]
fn symbolize_corpus_symbolizes_without_panic() {
    replay("symbolize", |data| {
        fuzzing::symbolize(data);
    });
}

#[test]
fn unwind_corpus_unwinds_without_panic() {
    let elf = fuzz_dir().join("elf");
    let elfs = [elf.join("unwind_seed"), elf.join("unwind_seed_debug_frame")];
    let elfs: Vec<&Path> = elfs.iter().map(PathBuf::as_path).collect();
    replay("unwind", |data| {
        fuzzing::unwind(&elfs, data);
    });
}

/// The seeds (`seed-*`, written by `fuzz/seeds/make_seeds.py`) are real inputs: they must do
/// what real inputs do, or the fuzzers would start from nothing.
#[test]
fn seeds_are_real_inputs() {
    for (target, path) in seeds() {
        let data = std::fs::read(&path).unwrap();
        let name = path.display();
        match target {
            "perf_data" => {
                let samples = fuzzing::perf_data(&data).unwrap();
                assert!(samples > 0, "{name}: no samples");
            }
            "symbolize" => {
                let names = fuzzing::symbolize(&data);
                assert!(names.len() >= 4, "{name}: {names:?}");
                if name.to_string().ends_with("seed-c_g") {
                    assert_eq!(names[..2], ["leaf", "hot_inlined"], "{name}");
                }
            }
            "unwind" => {
                let elf = fuzz_dir().join("elf");
                let elfs = [elf.join("unwind_seed"), elf.join("unwind_seed_debug_frame")];
                let elfs: Vec<&Path> = elfs.iter().map(PathBuf::as_path).collect();
                // leaf (or big_frame), big_frame, with_alloca, recurse, main, libc.
                let frames = fuzzing::unwind(&elfs, &data);
                assert!(frames.len() >= 5, "{name}: {frames:x?}");
            }
            _ => {}
        }
    }
}

fn seeds() -> Vec<(&'static str, PathBuf)> {
    let mut out = Vec::new();
    for target in ["perf_data", "symbolize", "unwind"] {
        let dir = fuzz_dir().join("corpus").join(target);
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let is_seed = path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("seed-");
            if is_seed {
                out.push((target, path));
            }
        }
    }
    out.sort();
    out
}
