//! The perf.data reader against files written by the installed `perf record`, with `perf report
//! --stats` as the oracle for what the files contain. Skips (with a message) where perf is missing or
//! perf_event_open is not allowed; with `CI=true` those fail instead (`util::skip`).
#![cfg(target_os = "linux")]

mod util;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use flamegraph::perf::data_file::{
    read_perf_data, read_perf_data_bytes, PerfDataError, PerfDataSummary,
};
use flamegraph::perf::{Record, SampleFormat};

const BUSY_C: &str = r#"
#include <stdio.h>
#include <stdlib.h>
__attribute__((noinline)) static unsigned long work_a(unsigned long n) {
    volatile unsigned long s = 0;
    for (unsigned long i = 0; i < n; i++) s += i * i ^ (s >> 3);
    return s;
}
__attribute__((noinline)) static unsigned long work_b(unsigned long n) {
    volatile unsigned long s = 1;
    for (unsigned long i = 0; i < n; i++) s = s * 31 + (i ^ (s >> 7));
    return s;
}
int main(int argc, char **argv) {
    double secs = argc > 1 ? atof(argv[1]) : 0.3;
    unsigned long t = 0;
    for (unsigned long k = 0; k < (unsigned long)(secs * 2500); k++) {
        t += work_a(200000);
        t += work_b(200000);
    }
    printf("%lu\n", t);
    return 0;
}
"#;

/// A temp dir with the busy program built in it.
struct Fixture {
    dir: tempfile::TempDir,
    busy: PathBuf,
}

/// The fixture, or `None` (test skipped) without perf, gcc or perf_event_open.
fn fixture() -> Option<Fixture> {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("busy.c");
    std::fs::write(&source, BUSY_C).unwrap();
    let busy = dir.path().join("busy");
    let gcc = Command::new("gcc")
        .args(["-O1", "-g", "-fno-omit-frame-pointer", "-o"])
        .arg(&busy)
        .arg(&source)
        .status();
    if !gcc.is_ok_and(|s| s.success()) {
        util::skip("gcc cannot build the fixture (install gcc and libc6-dev)");
        return None;
    }
    let fixture = Fixture { dir, busy };
    let probe = fixture.path("probe.data");
    if !perf_record(&fixture, &probe, &["-F", "997"], &["0.01"]) {
        util::skip(
            "`perf record` does not work here (install linux-perf; perf_event_paranoid <= 2)",
        );
        return None;
    }
    Some(fixture)
}

impl Fixture {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// `perf record OPTIONS -o OUT -- busy ARGS`; true on success.
fn perf_record(f: &Fixture, out: &Path, options: &[&str], args: &[&str]) -> bool {
    Command::new("perf")
        .arg("record")
        .args(options)
        .arg("-o")
        .arg(out)
        .arg("--")
        .arg(&f.busy)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Samples per event name according to `perf report --stats` (its "NAME stats:" blocks).
fn perf_counts(file: &Path) -> HashMap<String, u64> {
    let out = Command::new("perf")
        .args(["report", "--stats", "-i"])
        .arg(file)
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "perf report failed on {}",
        file.display()
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut counts = HashMap::new();
    let mut event = None;
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_suffix(" stats:") {
            event = (name != "Aggregated").then(|| name.to_string());
        } else if let (Some(name), Some(n)) = (&event, line.strip_prefix("SAMPLE events:")) {
            counts.insert(name.clone(), n.trim().parse().unwrap());
        }
    }
    assert!(!counts.is_empty(), "no per-event stats in:\n{text}");
    counts
}

/// What the tests look at in a record stream, owned.
#[derive(Default)]
struct Seen {
    samples: Vec<SampleInfo>,
    mmaps: Vec<(u32, Vec<u8>)>,
    comms: Vec<(u32, Vec<u8>)>,
    /// Samples per distinct format (by address: one per event of the file).
    per_format: HashMap<usize, u64>,
}

struct SampleInfo {
    pid: u32,
    time: u64,
    user_frames: usize,
    has_regs: bool,
    stack_len: usize,
}

fn read(file: &Path) -> (PerfDataSummary, Seen) {
    let mut seen = Seen::default();
    let summary = read_perf_data(file, &mut |format: &SampleFormat, record| match record {
        Record::Sample(s) => {
            *seen
                .per_format
                .entry(format as *const SampleFormat as usize)
                .or_insert(0) += 1;
            seen.samples.push(SampleInfo {
                pid: s.pid,
                time: s.time,
                user_frames: s.callchain.user().count(),
                has_regs: s.user_regs.is_some(),
                stack_len: s.user_stack.len(),
            });
        }
        Record::Mmap2(m) => seen.mmaps.push((m.pid, m.filename.to_vec())),
        Record::Comm(c) => seen.comms.push((c.pid, c.name.to_vec())),
        _ => {}
    })
    .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
    (summary, seen)
}

fn total(counts: &HashMap<String, u64>) -> u64 {
    counts.values().sum()
}

fn assert_time_ordered(seen: &Seen) {
    let unordered = seen
        .samples
        .windows(2)
        .filter(|w| w[1].time < w[0].time)
        .count();
    assert_eq!(unordered, 0, "samples out of time order");
}

fn busy_name(f: &Fixture) -> Vec<u8> {
    f.busy.as_os_str().as_encoded_bytes().to_vec()
}

#[test]
fn frame_pointer_callchains_match_perf_script() {
    let Some(f) = fixture() else { return };
    let file = f.path("fp.data");
    assert!(perf_record(&f, &file, &["-F", "997", "-g"], &["0.5"]));
    let (summary, seen) = read(&file);
    let expected = perf_counts(&file);
    assert_eq!(summary.samples, total(&expected));
    assert_eq!(seen.samples.len() as u64, summary.samples);
    assert!(summary.samples > 100, "only {} samples", summary.samples);
    assert!(!summary.compressed);
    assert_eq!(summary.event_names.len(), 1);
    assert!(
        summary.event_names[0].starts_with("cpu-clock"),
        "{:?}",
        summary.event_names
    );
    assert!(
        summary.cmdline.iter().any(|a| a == "record"),
        "{:?}",
        summary.cmdline
    );
    assert!(
        summary
            .build_ids
            .iter()
            .any(|(_, id, path)| path == &f.busy && id.len() == 20),
        "no build id for the program: {:?}",
        summary.build_ids
    );
    let pid = seen.samples[0].pid;
    assert!(seen
        .mmaps
        .iter()
        .any(|(p, name)| *p == pid && *name == busy_name(&f)));
    assert!(seen
        .comms
        .iter()
        .any(|(p, name)| *p == pid && name == b"busy"));
    let with_user = seen.samples.iter().filter(|s| s.user_frames >= 2).count();
    assert!(
        with_user * 10 >= seen.samples.len() * 9,
        "{with_user} of {}",
        seen.samples.len()
    );
    assert_time_ordered(&seen);
}

#[test]
fn dwarf_samples_carry_registers_and_stack() {
    let Some(f) = fixture() else { return };
    let file = f.path("dwarf.data");
    assert!(perf_record(
        &f,
        &file,
        &["-F", "997", "--call-graph", "dwarf,8192"],
        &["0.3"]
    ));
    let (summary, seen) = read(&file);
    assert_eq!(summary.samples, total(&perf_counts(&file)));
    let full = (seen.samples.iter())
        .filter(|s| s.has_regs && s.stack_len > 0)
        .count();
    assert!(
        full * 10 >= seen.samples.len() * 9,
        "{full} of {}",
        seen.samples.len()
    );
    assert_time_ordered(&seen);
}

#[test]
fn compressed_files_match_perf_script() {
    let Some(f) = fixture() else { return };
    // Frame pointers (small records) and DWARF stacks (large records that straddle the
    // decompressed chunks of consecutive COMPRESSED records).
    for (name, options) in [
        ("z.data", &["-F", "997", "-g", "-z"][..]),
        ("zd.data", &["-F", "997", "--call-graph", "dwarf", "-z"][..]),
    ] {
        let file = f.path(name);
        assert!(perf_record(&f, &file, options, &["0.5"]));
        let (summary, seen) = read(&file);
        assert!(summary.compressed, "{name}");
        assert_eq!(summary.samples, total(&perf_counts(&file)), "{name}");
        assert!(summary.samples > 100, "{name}: {} samples", summary.samples);
        let pid = seen.samples[0].pid;
        assert!(
            seen.mmaps
                .iter()
                .any(|(p, n)| *p == pid && *n == busy_name(&f)),
            "{name}"
        );
        assert_time_ordered(&seen);
    }
}

#[test]
fn attach_to_a_running_process_sees_synthesized_mmaps() {
    let Some(f) = fixture() else { return };
    let mut child = Command::new(&f.busy)
        .arg("3")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let file = f.path("attach.data");
    let pid = child.id();
    // perf exits with the SIGTERM status it sends to `sleep`; the file is complete all the same.
    Command::new("perf")
        .args(["record", "-F", "997", "-g", "-p", &pid.to_string(), "-o"])
        .arg(&file)
        .args(["--", "sleep", "0.5"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let (summary, seen) = read(&file);
    assert_eq!(summary.samples, total(&perf_counts(&file)));
    assert!(summary.samples > 50);
    assert!(seen.samples.iter().all(|s| s.pid == pid));
    assert!(seen
        .mmaps
        .iter()
        .any(|(p, n)| *p == pid && *n == busy_name(&f)));
    assert!(seen
        .mmaps
        .iter()
        .any(|(p, n)| *p == pid && n.ends_with(b".so.6")));
    assert!(seen.comms.iter().any(|(p, n)| *p == pid && n == b"busy"));
}

#[test]
fn two_events_map_samples_to_their_attr() {
    let Some(f) = fixture() else { return };
    let file = f.path("two.data");
    let options = ["-F", "997", "-g", "-e", "cpu-clock", "-e", "task-clock"];
    assert!(perf_record(&f, &file, &options, &["0.5"]));
    let (summary, seen) = read(&file);
    assert_eq!(summary.event_names.len(), 2, "{:?}", summary.event_names);
    let expected = perf_counts(&file);
    assert_eq!(summary.samples, total(&expected));
    let mut ours: Vec<u64> = seen.per_format.values().copied().collect();
    let mut theirs: Vec<u64> = expected.values().copied().collect();
    ours.sort_unstable();
    theirs.sort_unstable();
    assert_eq!(ours, theirs, "samples per event");
    assert_time_ordered(&seen);
}

#[test]
fn pipe_mode_stream_is_read() {
    let Some(f) = fixture() else { return };
    let file = f.path("pipe.data");
    let out = std::fs::File::create(&file).unwrap();
    let ok = Command::new("perf")
        .args(["record", "-F", "997", "-g", "-o", "-", "--"])
        .arg(&f.busy)
        .arg("0.3")
        .stdout(out)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok);
    let (summary, seen) = read(&file);
    assert_eq!(summary.samples, total(&perf_counts(&file)));
    assert!(summary.samples > 50);
    let pid = seen.samples[0].pid;
    assert!(seen.comms.iter().any(|(p, n)| *p == pid && n == b"busy"));
}

#[test]
fn errors_name_the_offset() {
    let dir = tempfile::tempdir().unwrap();
    let not_perf = dir.path().join("not.data");
    std::fs::write(&not_perf, b"hello, world: not a perf file at all").unwrap();
    let err = read_perf_data(&not_perf, &mut |_, _| {}).unwrap_err();
    assert!(matches!(err, PerfDataError::NotPerfData), "{err}");
    assert_eq!(err.to_string(), "not a perf.data file: bad magic");

    let mut header = b"PERFILE2".to_vec();
    header.extend_from_slice(&104u64.to_ne_bytes());
    header.extend_from_slice(&[0; 20]);
    let err = read_perf_data_bytes(&header, &mut |_, _| {}).unwrap_err();
    assert_eq!(
        err.to_string(),
        "perf.data: bad file header at byte 32: attrs section needs 8 bytes, only 4 left"
    );

    let err = read_perf_data(&dir.path().join("missing"), &mut |_, _| {}).unwrap_err();
    assert!(matches!(err, PerfDataError::Io { .. }), "{err}");
}

/// Every truncation and many byte flips of real files give `Ok` or `Err`, never a panic or a
/// hang (the test would time out).
#[test]
fn damaged_files_never_panic() {
    let Some(f) = fixture() else { return };
    for (name, options) in [
        ("fuzz.data", &["-F", "997", "-g"][..]),
        ("fuzz-z.data", &["-F", "997", "-g", "-z"][..]),
    ] {
        let file = f.path(name);
        assert!(perf_record(&f, &file, options, &["0.05"]));
        let bytes = std::fs::read(&file).unwrap();
        let count = |bytes: &[u8]| {
            let mut n = 0u64;
            let result = read_perf_data_bytes(bytes, &mut |_, _| n += 1);
            (result.is_ok(), n)
        };
        assert!(count(&bytes).0, "{name}: the intact file must read");
        let step = (bytes.len() / 1500).max(1);
        for len in (0..bytes.len()).step_by(step) {
            count(&bytes[..len]);
        }
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut damaged = bytes.clone();
        for _ in 0..3000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let pos = (rng % bytes.len() as u64) as usize;
            let flip = 1u8 << ((rng >> 32) % 8);
            damaged[pos] ^= flip;
            count(&damaged);
            damaged[pos] ^= flip;
        }
    }
}

/// A file larger than the reader's release step (32 MiB): the mapped pages it gives back while
/// reading must not change a single record (compared with reading the bytes from memory).
#[test]
fn large_file_read_in_released_windows_is_unchanged() {
    let Some(f) = fixture() else { return };
    let file = f.path("large.data");
    assert!(perf_record(
        &f,
        &file,
        &["-F", "997", "--call-graph", "dwarf,65528"],
        &["1"]
    ));
    let size = std::fs::metadata(&file).unwrap().len();
    assert!(size > 48 << 20, "only {size} bytes recorded");
    let (summary, seen) = read(&file);
    let bytes = std::fs::read(&file).unwrap();
    let mut from_memory = Vec::new();
    let summary_memory = read_perf_data_bytes(&bytes, &mut |_, record| {
        if let Record::Sample(s) = record {
            from_memory.push((s.time, s.pid, s.user_stack.len()));
        }
    })
    .unwrap();
    assert_eq!(summary.samples, summary_memory.samples);
    assert_eq!(summary.samples, total(&perf_counts(&file)));
    let from_file: Vec<_> = (seen.samples.iter())
        .map(|s| (s.time, s.pid, s.stack_len))
        .collect();
    assert!(from_file == from_memory, "records differ");
    assert_time_ordered(&seen);
}
