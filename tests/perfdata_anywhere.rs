//! perf.data from another machine: files are used only with the build-id the recording gives,
//! kernel names only for the recorded kernel, the first event is drawn unless `-e` picks one,
//! and old or unfinished headers are read or refused in one line.
//!
//! "Another machine" is made here: a real `perf record` of a small C program, then the program
//! rebuilt at the same path with another build-id and the kernel's build-id in the file replaced
//! by a fake one. Skips (with a one-line reason) where gcc or perf is missing or perf_event_open
//! is not allowed, and fails there instead when `CI=true`.
#![cfg(target_os = "linux")]

mod util;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use flamegraph::perf::data_file::{read_perf_data, read_perf_data_with};

const BUSY_C: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
__attribute__((noinline)) static unsigned long anywhere_work(unsigned long n) {
    volatile unsigned long s = 0;
    for (unsigned long i = 0; i < n; i++) s += i * i ^ (s >> 3);
    return s;
}
int main(int argc, char **argv) {
    double secs = argc > 1 ? atof(argv[1]) : 0.3;
    unsigned long t = 0;
    for (unsigned long k = 0; k < (unsigned long)(secs * 2500); k++) {
        t += anywhere_work(200000);
        if (k % 16 == 0) t += (unsigned long)getppid();
    }
    printf("%lu\n", t);
    return 0;
}
"#;

/// The build-id the program is recorded with, and the one of its rebuild.
const ORIGINAL_ID: &str = "aaaa0000aaaa0000aaaa0000aaaa0000aaaa0001";
const REBUILT_ID: &str = "bbbb0000bbbb0000bbbb0000bbbb0000bbbb0002";
/// The fake kernel build-id patched into the recording.
const FAKE_KERNEL_ID: [u8; 20] = [0xee; 20];

/// A temp dir with the program, its own HOME (perf's build-id cache stays out of the real one).
struct Fixture {
    dir: tempfile::TempDir,
    busy: PathBuf,
    home: PathBuf,
}

/// Skips the test with a one-line reason, or fails it when `CI=true` (CI must run them all).
fn skip(reason: &str) -> Option<Fixture> {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{reason}, and CI=true: install gcc and perf (linux-perf) on CI");
    }
    eprintln!("skipped: {reason}");
    None
}

/// The fixture, or `None` (test skipped) without perf, gcc or perf_event_open.
fn fixture() -> Option<Fixture> {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let busy = dir.path().join("busy");
    let f = Fixture { dir, busy, home };
    if !f.build(ORIGINAL_ID) {
        return skip("gcc cannot build the test program");
    }
    if !f.record(&f.path("probe.data"), &[], "0.01") {
        return skip("`perf record` does not work here (missing, or perf_event_open denied)");
    }
    Some(f)
}

impl Fixture {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Builds the program at its path with `build_id` (hex).
    fn build(&self, build_id: &str) -> bool {
        let source = self.path("busy.c");
        std::fs::write(&source, BUSY_C).unwrap();
        let _ = std::fs::remove_file(&self.busy);
        Command::new("gcc")
            .args(["-O1", "-g", "-fno-omit-frame-pointer"])
            .arg(format!("-Wl,--build-id=0x{build_id}"))
            .arg("-o")
            .arg(&self.busy)
            .arg(&source)
            .status()
            .is_ok_and(|s| s.success())
    }

    /// `perf record -N -g -F 997 EXTRA -o OUT -- busy SECS` (no build-id cache: the tests fill
    /// it themselves); true on success.
    fn record(&self, out: &Path, extra: &[&str], secs: &str) -> bool {
        Command::new("perf")
            .env("HOME", &self.home)
            .args(["record", "-q", "-N", "-g", "-F", "997"])
            .args(extra)
            .arg("-o")
            .arg(out)
            .arg("--")
            .arg(&self.busy)
            .arg(secs)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// `flamegraph --perfdata DATA ARGS -o out.folded` with HOME=`home`: (folded lines, stderr).
    fn draw(&self, data: &Path, home: &Path, args: &[&str]) -> (Vec<(Vec<String>, u64)>, String) {
        let out = self.path("out.folded");
        let _ = std::fs::remove_file(&out);
        let output = self.draw_output(data, home, args, &out);
        assert!(
            output.status.success(),
            "{}",
            util::describe_output(&output)
        );
        let text = std::fs::read_to_string(&out).unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        (util::parse_folded(&text), stderr)
    }

    fn draw_output(&self, data: &Path, home: &Path, args: &[&str], out: &Path) -> Output {
        let mut cmd = util::flamegraph();
        cmd.env("HOME", home)
            .arg("--perfdata")
            .arg(data)
            .args(args)
            .arg("-o")
            .arg(out);
        util::run_with_timeout(&mut cmd, Duration::from_secs(60))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// The build-id table of a recording.
fn build_ids(data: &Path) -> Vec<(u32, Vec<u8>, PathBuf)> {
    read_perf_data(data, &mut |_, _| {}).unwrap().build_ids
}

/// Replaces the kernel's build-id in the recording's table with [`FAKE_KERNEL_ID`]; false if the
/// recording has no kernel entry (no kernel samples).
fn fake_kernel_build_id(data: &Path) -> bool {
    let Some((_, id, _)) =
        (build_ids(data).into_iter()).find(|(_, _, path)| path.as_os_str() == "[kernel.kallsyms]")
    else {
        return false;
    };
    let mut bytes = std::fs::read(data).unwrap();
    let at = (bytes.windows(id.len()))
        .position(|w| w == id.as_slice())
        .expect("the kernel build-id is in the file");
    bytes[at..at + id.len()].copy_from_slice(&FAKE_KERNEL_ID[..id.len()]);
    std::fs::write(data, bytes).unwrap();
    true
}

fn frames(folded: &[(Vec<String>, u64)]) -> impl Iterator<Item = &str> {
    folded
        .iter()
        .flat_map(|(s, _)| s.iter().map(String::as_str))
}

fn total(folded: &[(Vec<String>, u64)]) -> u64 {
    folded.iter().map(|(_, w)| w).sum()
}

/// Lines of the profiler's stderr that are notes about unmatched files or the kernel.
fn elsewhere_notes(stderr: &str) -> Vec<&str> {
    (stderr.lines())
        // Notes only: the summary table also shows `[kernel]` when a kernel leaf is in its top.
        .filter(|l| l.starts_with("flamegraph:"))
        .filter(|l| l.contains("build-id") || l.contains("[kernel]"))
        .collect()
}

/// A recording of a binary since rebuilt with another build-id, made under a kernel with another
/// build-id: no name from the rebuilt binary or the local kallsyms, one note naming the file;
/// the original binary under --symfs, or in a ~/.debug build-id cache, gives the names back.
#[test]
fn files_are_used_only_with_the_recorded_build_id() {
    let Some(f) = fixture() else { return };
    let data = f.path("rec.data");
    assert!(f.record(&data, &[], "0.3"), "perf record failed");
    let busy_id = (build_ids(&data).into_iter())
        .find(|(_, _, p)| p == &f.busy)
        .map(|(_, id, _)| hex(&id));
    assert_eq!(busy_id.as_deref(), Some(ORIGINAL_ID), "recorded build-id");
    let kernel_patched = fake_kernel_build_id(&data);

    // Drawn here as recorded: the names are there.
    let original = f.path("original");
    std::fs::copy(&f.busy, &original).unwrap();
    let empty_home = f.path("empty-home");
    std::fs::create_dir(&empty_home).unwrap();
    assert!(f.build(REBUILT_ID), "rebuild failed");

    let (folded, stderr) = f.draw(&data, &empty_home, &[]);
    assert!(
        !frames(&folded).any(|fr| fr == "anywhere_work" || fr == "main"),
        "a name from the rebuilt binary: {folded:?}"
    );
    assert!(
        frames(&folded).any(|fr| fr.starts_with("busy+0x")),
        "no busy+0xOFFSET frame: {folded:?}"
    );
    if kernel_patched {
        let kernel: Vec<&str> = frames(&folded).filter(|fr| fr.ends_with("_[k]")).collect();
        assert!(!kernel.is_empty(), "no kernel frame at all");
        assert!(
            kernel.iter().all(|fr| *fr == "[kernel]_[k]"),
            "a kernel name from the local kallsyms: {kernel:?}"
        );
    }
    let notes = elsewhere_notes(&stderr);
    assert_eq!(notes.len(), 1, "one note expected:\n{stderr}");
    assert!(
        notes[0].contains(&*f.busy.to_string_lossy()),
        "{}",
        notes[0]
    );
    assert!(notes[0].contains("1 file"), "{}", notes[0]);
    if kernel_patched {
        assert!(notes[0].contains("--kallsyms"), "{}", notes[0]);
    }

    // --symfs DIR with the original at DIR/<recorded path>.
    let symfs = f.path("symfs");
    let at = symfs.join(f.busy.strip_prefix("/").unwrap());
    std::fs::create_dir_all(at.parent().unwrap()).unwrap();
    std::fs::copy(&original, &at).unwrap();
    let symfs_arg = symfs.to_str().unwrap();
    let (folded, stderr) = f.draw(&data, &empty_home, &["--symfs", symfs_arg]);
    assert_named(&folded, &stderr, "--symfs");

    // perf's build-id cache: ~/.debug/.build-id/aa/aa00…/elf.
    let cache_home = f.path("cache-home");
    let entry = cache_home
        .join(".debug/.build-id")
        .join(&ORIGINAL_ID[..2])
        .join(&ORIGINAL_ID[2..]);
    std::fs::create_dir_all(&entry).unwrap();
    std::fs::copy(&original, entry.join("elf")).unwrap();
    let (folded, stderr) = f.draw(&data, &cache_home, &[]);
    assert_named(&folded, &stderr, "~/.debug");

    // A file that does not match is never used, even under --symfs.
    std::fs::copy(&f.busy, &at).unwrap();
    let (folded, _) = f.draw(&data, &empty_home, &["--symfs", symfs_arg]);
    assert!(
        !frames(&folded).any(|fr| fr == "anywhere_work"),
        "{folded:?}"
    );
}

fn assert_named(folded: &[(Vec<String>, u64)], stderr: &str, how: &str) {
    let named = folded
        .iter()
        .filter(|(s, _)| s.iter().any(|fr| fr == "anywhere_work"))
        .map(|(_, w)| w)
        .sum::<u64>();
    assert!(
        named * 2 > total(folded),
        "{how}: anywhere_work in {named} of {} samples: {folded:?}",
        total(folded)
    );
    assert!(
        !frames(folded).any(|fr| fr.starts_with("busy+0x")),
        "{how}: {folded:?}"
    );
    assert!(
        !elsewhere_notes(stderr).iter().any(|l| l.contains("busy")),
        "{how}: {stderr}"
    );
}

/// Samples of the event with index `event` in a recording.
fn samples_of(data: &Path, event: usize) -> u64 {
    read_perf_data_with(data, &mut |_| Some(event), &mut |_, _| {})
        .unwrap()
        .samples
}

/// Two events: the first is drawn, and said; `-e task-clock` draws the other; an unknown name is
/// refused in one line naming the events.
#[test]
fn several_events_draw_the_first_unless_one_is_picked() {
    let Some(f) = fixture() else { return };
    let data = f.path("two.data");
    assert!(
        f.record(&data, &["-e", "cpu-clock,task-clock"], "0.3"),
        "perf record failed"
    );
    let names = read_perf_data(&data, &mut |_, _| {}).unwrap().event_names;
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names[0].starts_with("cpu-clock") && names[1].starts_with("task-clock"));
    let (first, second) = (samples_of(&data, 0), samples_of(&data, 1));
    assert!(first > 0 && second > 0);

    let (folded, stderr) = f.draw(&data, &f.home, &[]);
    assert_eq!(total(&folded), first, "the first event's samples only");
    let note: Vec<&str> = stderr.lines().filter(|l| l.contains("2 events")).collect();
    assert_eq!(note.len(), 1, "{stderr}");
    assert!(note[0].contains("drawing cpu-clock"), "{}", note[0]);

    let (folded, stderr) = f.draw(&data, &f.home, &["-e", "task-clock"]);
    assert_eq!(total(&folded), second, "the task-clock samples only");
    assert!(stderr.contains("drawing task-clock"), "{stderr}");

    let out = f.path("none.folded");
    let output = f.draw_output(&data, &f.home, &["-e", "cache-misses"], &out);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("cpu-clock") && stderr.contains("task-clock"),
        "{stderr}"
    );
}

/// Offsets in `struct perf_file_header`.
const ATTR_SIZE_AT: usize = 16;
const ATTRS_AT: usize = 24;
const DATA_AT: usize = 40;
const BITMAP_AT: usize = 72;

fn word(bytes: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(bytes[at..at + 8].try_into().unwrap())
}

/// A version 1 (`PERFFILE`, perf 3.x) file made of a current one: legacy magic, the oldest
/// attribute layout (64 bytes), and of the feature sections only the build-id table (a v1 file
/// without the hostname bit has no other).
fn legacy_file(v2: &[u8]) -> Vec<u8> {
    let attr_size = word(v2, ATTR_SIZE_AT) as usize;
    let (attrs_off, attrs_len) = (word(v2, ATTRS_AT) as usize, word(v2, ATTRS_AT + 8) as usize);
    let (data_off, data_len) = (word(v2, DATA_AT) as usize, word(v2, DATA_AT + 8) as usize);
    // Feature sections: one (offset, size) per set bit, after the data; build-id is bit 2.
    let bitmap = &v2[BITMAP_AT..BITMAP_AT + 32];
    assert!(bitmap[0] & 0b100 != 0, "the recording has a build-id table");
    let table = data_off + data_len;
    let (build_ids_off, build_ids_len) = (word(v2, table) as usize, word(v2, table + 8) as usize);

    let mut out = Vec::new();
    out.extend_from_slice(b"PERFFILE");
    out.extend_from_slice(&104u64.to_ne_bytes());
    out.extend_from_slice(&80u64.to_ne_bytes());
    let count = attrs_len / attr_size;
    let attrs_at = 104;
    let data_at = attrs_at + count * 80;
    for (offset, size) in [(attrs_at, count * 80), (data_at, data_len), (0, 0)] {
        out.extend_from_slice(&(offset as u64).to_ne_bytes());
        out.extend_from_slice(&(size as u64).to_ne_bytes());
    }
    let mut features = [0u8; 32];
    features[0] = 0b100;
    out.extend_from_slice(&features);
    for i in 0..count {
        let entry = &v2[attrs_off + i * attr_size..attrs_off + (i + 1) * attr_size];
        let mut attr = entry[..64].to_vec();
        attr[4..8].copy_from_slice(&64u32.to_ne_bytes());
        out.extend_from_slice(&attr);
        out.extend_from_slice(&entry[attr_size - 16..]);
    }
    out.extend_from_slice(&v2[data_off..data_off + data_len]);
    let build_ids_at = out.len() + 16;
    out.extend_from_slice(&(build_ids_at as u64).to_ne_bytes());
    out.extend_from_slice(&(build_ids_len as u64).to_ne_bytes());
    out.extend_from_slice(&v2[build_ids_off..build_ids_off + build_ids_len]);
    out
}

/// A perf 3.x `PERFFILE` header is read (the same graph as the current format), `perf inject`
/// converts it as the refusal of an unreadable one says; a data size of 0 is drawn and said.
#[test]
fn legacy_and_unfinished_headers() {
    let Some(f) = fixture() else { return };
    let data = f.path("rec.data");
    assert!(f.record(&data, &[], "0.2"), "perf record failed");
    let v2 = std::fs::read(&data).unwrap();
    let (reference, _) = f.draw(&data, &f.home, &[]);
    let sorted = |mut folded: Vec<(Vec<String>, u64)>| {
        folded.sort();
        folded
    };
    let reference = sorted(reference);

    // The current layout under the legacy magic.
    let magic_only = f.path("magic.data");
    let mut bytes = v2.clone();
    bytes[..8].copy_from_slice(b"PERFFILE");
    std::fs::write(&magic_only, &bytes).unwrap();
    let (folded, stderr) = f.draw(&magic_only, &f.home, &[]);
    assert_eq!(sorted(folded), reference, "{stderr}");

    // A v1 file with v0 attributes, as perf 3.x wrote them.
    let legacy = f.path("legacy.data");
    std::fs::write(&legacy, legacy_file(&v2)).unwrap();
    let (folded, stderr) = f.draw(&legacy, &f.home, &[]);
    assert_eq!(sorted(folded), reference, "{stderr}");
    // The conversion the refusal below names works on it.
    let converted = f.path("converted.data");
    let inject = Command::new("perf")
        .env("HOME", &f.home)
        .args(["inject", "-i"])
        .arg(&legacy)
        .arg("-o")
        .arg(&converted)
        .output()
        .unwrap();
    assert!(
        inject.status.success(),
        "{}",
        util::describe_output(&inject)
    );
    assert_eq!(&std::fs::read(&converted).unwrap()[..8], b"PERFILE2");
    // (perf inject keeps the samples, not every feature section: compare the totals.)
    let (folded, _) = f.draw(&converted, &f.home, &[]);
    assert_eq!(total(&folded), total(&reference));

    // A legacy header of a size no perf wrote: refused in one line naming the conversion.
    let mut odd = v2.clone();
    odd[..8].copy_from_slice(b"PERFFILE");
    odd[8..16].copy_from_slice(&80u64.to_ne_bytes());
    let odd_path = f.path("odd.data");
    std::fs::write(&odd_path, odd).unwrap();
    let output = f.draw_output(&odd_path, &f.home, &[], &f.path("odd.folded"));
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("perf inject"), "{stderr}");

    // Data size 0: `perf record` did not finish the header.
    let mut unfinished = v2.clone();
    unfinished[DATA_AT + 8..DATA_AT + 16].copy_from_slice(&0u64.to_ne_bytes());
    let unfinished_path = f.path("unfinished.data");
    std::fs::write(&unfinished_path, unfinished).unwrap();
    let (folded, stderr) = f.draw(&unfinished_path, &f.home, &[]);
    assert!(total(&folded) >= total(&reference), "{stderr}");
    assert!(
        stderr.contains("data size of 0") && stderr.contains("stopped properly"),
        "{stderr}"
    );
}

#[test]
fn build_id_hex_round_trips() {
    assert_eq!(hex(&unhex(ORIGINAL_ID)), ORIGINAL_ID);
}

/// `-e` chooses the event drawn from a perf.data file; for recording it is refused in one line.
#[test]
fn event_flag_is_refused_for_recording() {
    let output = util::run_with_timeout(
        util::flamegraph().args(["-e", "task-clock", "--", "true"]),
        Duration::from_secs(30),
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("not supported yet"), "{stderr}");
}

/// `perf record --buildid-mmap`: the build-id comes with each MMAP2 record; a rebuilt binary is
/// not used, the original under --symfs is.
#[test]
fn mmap2_build_ids_are_checked_too() {
    use flamegraph::perf::{MmapFileId, Record};
    let Some(f) = fixture() else { return };
    let data = f.path("mmap.data");
    if !f.record(&data, &["--buildid-mmap"], "0.2") {
        skip("this perf has no --buildid-mmap");
        return;
    }
    let busy = f.busy.as_os_str().as_encoded_bytes().to_vec();
    let mut ids = Vec::new();
    read_perf_data(&data, &mut |_, record| {
        if let Record::Mmap2(m) = record {
            if let (true, MmapFileId::BuildId(id)) = (m.filename == busy, m.file_id) {
                ids.push(hex(id));
            }
        }
    })
    .unwrap();
    assert!(
        ids.iter().any(|id| id == ORIGINAL_ID),
        "MMAP2 build-ids: {ids:?}"
    );

    let original = f.path("original");
    std::fs::copy(&f.busy, &original).unwrap();
    assert!(f.build(REBUILT_ID), "rebuild failed");
    let (folded, stderr) = f.draw(&data, &f.home, &[]);
    assert!(
        !frames(&folded).any(|fr| fr == "anywhere_work"),
        "{folded:?}"
    );
    assert!(stderr.contains(&*f.busy.to_string_lossy()), "{stderr}");

    let symfs = f.path("symfs");
    let at = symfs.join(f.busy.strip_prefix("/").unwrap());
    std::fs::create_dir_all(at.parent().unwrap()).unwrap();
    std::fs::copy(&original, &at).unwrap();
    let (folded, stderr) = f.draw(&data, &f.home, &["--symfs", symfs.to_str().unwrap()]);
    assert_named(&folded, &stderr, "--symfs, MMAP2 build-id");
}
