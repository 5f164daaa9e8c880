//! Files the tool reads but did not write, made hostile or damaged: zstd bombs and lying sizes in
//! perf.data, truncated recordings, other byte order, FIFOs and symlinks where files should be,
//! perf maps owned by another user. Each must end in one line (a note, a warning or an error) at
//! bounded memory and time, never a hang; damaged recordings are drawn as far as they go.
//!
//! Tests that need perf, node or root fail with `CI=true` and skip with a reason otherwise.
#![cfg(target_os = "linux")]

mod util;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use util::{fixture, flamegraph, run_with_timeout, Folded, KillOnDrop, Variant};

/// The peak resident size a bomb may push the tool to, in KiB.
const MAX_RSS_KIB: u64 = 256 << 10;

// ---------------------------------------------------------------------------------------------
// Helpers

/// A finished run of the tool: status, stderr, and its peak RSS in KiB (from wait4).
struct Measured {
    status: ExitStatus,
    stderr: String,
    max_rss_kib: u64,
}

/// Runs `cmd` (stdout and stderr to files) and waits for it with `wait4`, which gives this
/// child's own peak RSS. Kills it and panics past `timeout`.
// The child is reaped by wait4, which std does not see.
#[allow(clippy::zombie_processes)]
fn run_measured(cmd: &mut Command, timeout: Duration) -> Measured {
    let dir = tempfile::tempdir().unwrap();
    let err_path = dir.path().join("stderr");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + timeout;
    let pid = child.id() as libc::pid_t;
    loop {
        let mut status = 0;
        // SAFETY: an all-zero rusage is a valid value of this plain C struct.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `status` and `usage` are valid for writes; `pid` is our unwaited child.
        let rc = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        assert!(rc >= 0, "wait4: {}", std::io::Error::last_os_error());
        if rc == pid {
            std::mem::forget(child); // already reaped
            return Measured {
                status: ExitStatus::from_raw(status),
                stderr: std::fs::read_to_string(&err_path).unwrap(),
                max_rss_kib: usage.ru_maxrss as u64,
            };
        }
        if Instant::now() > deadline {
            let mut child: Child = child;
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{cmd:?} still running after {timeout:?}; stderr:\n{}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The lines the tool printed, without the final "wrote" line.
fn message_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| !l.starts_with("flamegraph: wrote"))
        .collect()
}

/// True if `CI=true`; else prints why the test is skipped.
fn must_run(reason: &str) -> bool {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        return true;
    }
    eprintln!("skipped: {reason}");
    false
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn mkfifo(path: &Path) {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: c_path is a valid NUL-terminated path.
    let rc = unsafe { libc::mkfifo(c_path.as_ptr(), 0o666) };
    assert_eq!(rc, 0, "mkfifo {}", path.display());
}

// ---------------------------------------------------------------------------------------------
// Forged perf.data files

/// `perf_event_attr.sample_type` of the forged files: IP | TID | TIME | CALLCHAIN.
const SAMPLE_TYPE: u64 = 1 | 2 | 4 | 32;

/// A perf.data file: header, one cpu-clock event, then `data` as the data section.
fn perf_data_file(data: &[u8]) -> Vec<u8> {
    let mut attr = vec![0u8; 64];
    attr[0..4].copy_from_slice(&1u32.to_le_bytes()); // PERF_TYPE_SOFTWARE
    attr[4..8].copy_from_slice(&64u32.to_le_bytes());
    attr[24..32].copy_from_slice(&SAMPLE_TYPE.to_le_bytes());
    attr[40..48].copy_from_slice(&(1u64 << 18).to_le_bytes()); // sample_id_all
    let mut attrs = attr;
    attrs.extend_from_slice(&[0; 16]); // empty ids section
    let attrs_offset = 104u64;
    let data_offset = attrs_offset + attrs.len() as u64;
    let mut file = b"PERFILE2".to_vec();
    for word in [
        104,
        80,
        attrs_offset,
        attrs.len() as u64,
        data_offset,
        data.len() as u64,
        0,
        0,
    ] {
        file.extend_from_slice(&u64::to_le_bytes(word));
    }
    file.extend_from_slice(&[0; 32]); // no feature sections
    file.extend_from_slice(&attrs);
    file.extend_from_slice(data);
    file
}

fn record(kind: u32, body: &[u8]) -> Vec<u8> {
    let size = u16::try_from(8 + body.len()).expect("record too large");
    let mut r = kind.to_le_bytes().to_vec();
    r.extend_from_slice(&0u16.to_le_bytes());
    r.extend_from_slice(&size.to_le_bytes());
    r.extend_from_slice(body);
    r
}

const COMPRESSED: u32 = 81;
/// Largest zstd block: 128 KiB.
const BLOCK: u32 = 128 << 10;
/// RLE blocks that fit in one COMPRESSED record (4 bytes each).
const BLOCKS_PER_RECORD: usize = (65535 - 8 - 6) / 4;

/// A zstd frame header (no checksum, no content size) with a 1 MiB window.
const FRAME_START: [u8; 6] = [0x28, 0xB5, 0x2F, 0xFD, 0x00, 0x50];

/// `count` RLE blocks of 128 KiB of `byte` each: 4 bytes that decode to 128 KiB.
fn rle_blocks(count: usize, byte: u8) -> Vec<u8> {
    let bits = (BLOCK << 3) | (1 << 1);
    let block = [bits as u8, (bits >> 8) as u8, (bits >> 16) as u8, byte];
    block.repeat(count)
}

/// `records` COMPRESSED records whose one zstd frame decodes to runs of `byte`: ~2 GiB per
/// 64 KiB record.
fn zstd_bomb(records: usize, byte: u8) -> Vec<u8> {
    let mut data = Vec::new();
    for i in 0..records {
        let mut payload = if i == 0 {
            FRAME_START.to_vec()
        } else {
            Vec::new()
        };
        payload.extend(rle_blocks(BLOCKS_PER_RECORD, byte));
        data.extend(record(COMPRESSED, &payload));
    }
    perf_data_file(&data)
}

fn write_temp(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Runs `flamegraph --perfdata FILE -o DIR/out.folded` with a peak-RSS measure.
fn read_perf_data(file: &Path, timeout: Duration) -> Measured {
    let out = file.with_extension("folded");
    run_measured(
        flamegraph().arg("--perfdata").arg(file).arg("-o").arg(out),
        timeout,
    )
}

/// A 197 KB file whose compressed records decode to 6 GiB of zero bytes: zero is not a valid
/// record header, so the read stops at the first one, in one line, with nothing to draw.
#[test]
fn zstd_bomb_of_zeros_ends_in_one_line_at_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let bomb = zstd_bomb(3, 0);
    assert!(bomb.len() < 200_000);
    let file = write_temp(dir.path(), "zeros.data", &bomb);
    let run = read_perf_data(&file, Duration::from_secs(120));
    assert!(!run.status.success(), "{}", run.stderr);
    let lines = message_lines(&run.stderr);
    assert_eq!(lines.len(), 1, "{}", run.stderr);
    assert!(
        lines[0].contains("record size 0 is smaller than its header"),
        "{}",
        run.stderr
    );
    assert!(
        run.max_rss_kib < MAX_RSS_KIB,
        "peak RSS {} KiB",
        run.max_rss_kib
    );
}

/// A 66 KB file whose one compressed record decodes to 2 GiB of well-formed records (a user
/// record type nobody knows, 2056 bytes each, all made of the byte 0x08): read to the end in
/// bounded memory, where the last record is cut (2 GiB is no multiple of 2056): one line.
#[test]
fn zstd_bomb_of_valid_records_streams_at_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_temp(dir.path(), "records.data", &zstd_bomb(1, 0x08));
    let run = read_perf_data(&file, Duration::from_secs(600));
    assert!(!run.status.success(), "{}", run.stderr);
    let lines = message_lines(&run.stderr);
    assert_eq!(lines.len(), 1, "{}", run.stderr);
    assert!(
        lines[0].contains("the decompressed stream ends inside a record"),
        "{}",
        run.stderr
    );
    assert!(
        run.max_rss_kib < MAX_RSS_KIB,
        "peak RSS {} KiB",
        run.max_rss_kib
    );
}

/// Sizes that point far past the end of the file: an AUXTRACE payload of 2^62 bytes, a
/// COMPRESSED2 record claiming 2^40 bytes of data, and a zstd window of 2 GiB.
#[test]
fn lying_sizes_end_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut aux = 1u64 << 62;
    let auxtrace = record(71, &aux.to_le_bytes());
    aux = 1 << 40;
    let mut compressed2 = aux.to_le_bytes().to_vec();
    compressed2.extend_from_slice(&FRAME_START);
    let compressed2 = record(83, &compressed2);
    let mut window = FRAME_START.to_vec();
    window[5] = 21 << 3; // 2^(10+21) bytes
    window.extend(rle_blocks(4, 0));
    let window = record(COMPRESSED, &window);
    for (name, data, expected) in [
        ("auxtrace", auxtrace, "runs past the end"),
        (
            "compressed2",
            compressed2,
            "compressed data needs 1099511627776 bytes",
        ),
        ("window", window, "is too large"),
    ] {
        let file = write_temp(dir.path(), name, &perf_data_file(&data));
        let run = read_perf_data(&file, Duration::from_secs(60));
        assert!(!run.status.success(), "{name}: {}", run.stderr);
        let lines = message_lines(&run.stderr);
        assert_eq!(lines.len(), 1, "{name}: {}", run.stderr);
        assert!(lines[0].contains(expected), "{name}: {}", run.stderr);
        assert!(
            run.max_rss_kib < MAX_RSS_KIB,
            "{name}: {} KiB",
            run.max_rss_kib
        );
    }
}

/// A file written on a big-endian machine (the magic reads `PERFILE2` byte-swapped) is
/// refused in one line.
#[test]
fn other_byte_order_is_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = perf_data_file(&[]);
    bytes[..8].reverse();
    let file = write_temp(dir.path(), "big-endian.data", &bytes);
    let run = read_perf_data(&file, Duration::from_secs(60));
    assert!(!run.status.success());
    let lines = message_lines(&run.stderr);
    assert_eq!(lines.len(), 1, "{}", run.stderr);
    assert!(lines[0].contains("other byte order"), "{}", run.stderr);
}

/// A FIFO given as the perf.data input is refused at once, not read forever.
#[test]
fn fifo_as_perf_data_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.data");
    mkfifo(&fifo);
    let run = read_perf_data(&fifo, Duration::from_secs(60));
    assert!(!run.status.success());
    assert!(run.stderr.contains("not a regular file"), "{}", run.stderr);
}

// ---------------------------------------------------------------------------------------------
// Damaged real recordings

/// `perf record -F 997 -g OPTIONS -o FILE -- recurse 20 1`, or `None` (skipped) without perf.
fn perf_recording(dir: &Path, name: &str, options: &[&str]) -> Option<PathBuf> {
    if !util::require_perf() {
        return None;
    }
    let program = fixture("recurse", Variant::CFramePointers);
    let file = dir.join(name);
    // One CPU: a short recording is one round of records, written ring after ring, so a
    // program that exec'd on one CPU and ran on the other has its MMAP records after its
    // samples in the file, and the first half of the file would have samples of no known
    // mapping (seen once under load). Pinned, the file's order is the time order.
    let output = run_with_timeout(
        Command::new("perf")
            .args(["record", "-F", "997", "-g"])
            .args(options)
            .arg("-o")
            .arg(&file)
            .args(["--", "taskset", "-c", "0"])
            .arg(&program)
            .args(["20", "1"]),
        Duration::from_secs(60),
    );
    assert!(
        output.status.success(),
        "{}",
        util::describe_output(&output)
    );
    Some(file)
}

/// Draws `file`; returns the folded stacks and what the tool printed.
fn draw(file: &Path) -> (Folded, String) {
    let out = file.with_extension("folded");
    let output = util::run_ok(
        flamegraph().arg("--perfdata").arg(file).arg("-o").arg(&out),
        Duration::from_secs(120),
    );
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (Folded::read(&out), stderr)
}

/// The number after `after` in `text` ("after 123 records" → 123).
fn number_after(text: &str, after: &str) -> u64 {
    let rest = &text[text
        .find(after)
        .unwrap_or_else(|| panic!("{after:?} in {text}"))
        + after.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap()
}

/// A recording cut at half its bytes, plain and `-z`: drawn up to its last complete record,
/// with a warning giving the byte it stopped at and how much it read.
#[test]
fn half_a_perf_data_is_drawn_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    for (name, options) in [
        ("plain.data", &[][..]),
        ("zstd.data", &["-z", "-m", "2"][..]),
    ] {
        // -m 2: small ring buffers, so the -z file holds many COMPRESSED records.
        let Some(file) = perf_recording(dir.path(), name, options) else {
            return;
        };
        let (whole, _) = draw(&file);
        let bytes = std::fs::read(&file).unwrap();
        let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
        let middle = word(40) + word(48) / 2; // data section offset + half its size
        let half = write_temp(dir.path(), &format!("half-{name}"), &bytes[..middle]);
        let (folded, stderr) = draw(&half);
        assert!(
            stderr.contains("perf.data is truncated"),
            "{name}: {stderr}"
        );
        assert!(stderr.contains("read stopped there"), "{name}: {stderr}");
        assert!(number_after(&stderr, "records (") > 0, "{name}: {stderr}");
        // Half the records (of a plain file): about half the samples.
        let enough = name.starts_with("zstd") || folded.total() * 4 > whole.total();
        assert!(
            enough && folded.total() < whole.total(),
            "{name}: {} of {} samples",
            folded.total(),
            whole.total()
        );
        // The first half of the records holds the program's start-up samples too (ld.so, libc
        // init): on a loaded machine those can be a sizeable part of a short recording's first
        // half, so the check is that the hot function still dominates, not its whole-run share.
        let share = folded.share_of_frame("burn_at_bottom");
        assert!(share > 0.5, "{name}: burn_at_bottom {share:.3}");
    }
}

/// A header whose data size is 0 (what a killed `perf record` leaves): everything after the
/// header is read, with a warning.
#[test]
fn data_size_zero_is_salvaged_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let Some(file) = perf_recording(dir.path(), "whole.data", &[]) else {
        return;
    };
    let (whole, _) = draw(&file);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[48..56].fill(0); // the data section's size
    let unfinished = write_temp(dir.path(), "unfinished.data", &bytes);
    let (folded, stderr) = draw(&unfinished);
    assert!(stderr.contains("data size of 0"), "{stderr}");
    // Only the feature sections follow the data: not records, so the read stops there.
    assert_eq!(folded.total(), whole.total(), "{stderr}");
}

// ---------------------------------------------------------------------------------------------
// Perf maps planted in /tmp

/// Starts the JIT fixture (it writes `/tmp/perf-PID.map`, then spins in its JIT code for
/// `seconds`) and waits until the map exists. Returns the process and its map path.
fn start_jit(seconds: &str) -> (KillOnDrop, PathBuf) {
    let program = fixture("jit", Variant::CFramePointers);
    let child = Command::new(program)
        .arg(seconds)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let map = PathBuf::from(format!("/tmp/perf-{}.map", child.id()));
    let child = KillOnDrop(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::metadata(&map).map_or(true, |m| m.len() == 0) {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            map.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    (child, map)
}

/// Attaches `flamegraph --pid PID` for `seconds`, then stops it with SIGINT; returns the
/// folded output and what it printed. A hang (on a FIFO, say) fails after 60 s.
fn attach(pid: u32, dir: &Path, seconds: f64) -> (Folded, String) {
    let out = dir.join("attach.folded");
    let mut tool = Command::new(env!("CARGO_BIN_EXE_flamegraph"));
    tool.arg("--pid")
        .arg(pid.to_string())
        .arg("-o")
        .arg(&out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut tool = KillOnDrop(tool.spawn().unwrap());
    std::thread::sleep(Duration::from_secs_f64(seconds));
    util::send_signal(tool.0.id(), libc::SIGINT);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = tool.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the profiler hangs");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(tool.0.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{status}: {stderr}");
    (Folded::read(&out), stderr)
}

/// Replaces a perf map with something hostile.
type Plant = fn(&Path);

/// Three hostile replacements of a JIT program's perf map: a FIFO, a symlink to /dev/zero and a
/// file owned by another user. Each is skipped with a note (the JIT frames stay unnamed), the
/// profiler neither hangs nor grows; the intact map names them.
#[test]
fn hostile_perf_maps_are_skipped_with_a_note() {
    if !util::require_perf() {
        return;
    }
    if !is_root() && !must_run("planting a map owned by another user needs root") {
        return;
    }
    assert!(is_root(), "CI=true: this test needs root");
    let dir = tempfile::tempdir().unwrap();
    let plant: [(&str, Plant); 4] = [
        ("intact", |_| {}),
        ("fifo", |map| {
            std::fs::remove_file(map).unwrap();
            mkfifo(map);
        }),
        ("symlink", |map| {
            std::fs::remove_file(map).unwrap();
            std::os::unix::fs::symlink("/dev/zero", map).unwrap();
        }),
        ("other user", |map| {
            std::os::unix::fs::chown(map, Some(65534), Some(65534)).unwrap();
        }),
    ];
    for (name, plant) in plant {
        let (jit, map) = start_jit("4");
        plant(&map);
        let (folded, stderr) = attach(jit.0.id(), dir.path(), 1.5);
        let _ = std::fs::remove_file(&map);
        let named = folded.share_of_frame("jitted_spin");
        if name == "intact" {
            assert!(named > 0.5, "{name}: {}\n{stderr}", folded.summary());
            continue;
        }
        assert_eq!(named, 0.0, "{name}: {}", folded.summary());
        let expected = match name {
            "fifo" => "not a regular file",
            "symlink" => "symbolic link",
            _ => "owned by uid 65534",
        };
        let note = format!("perf map {} skipped: ", map.display());
        assert!(
            stderr
                .lines()
                .any(|l| l.contains(&note) && l.contains(expected)),
            "{name}: {stderr}"
        );
    }
}

/// node without `--perf-basic-prof` writes no perf map: a FIFO planted at its map path (its pid
/// is known by attaching) does not hang the profiler, and its JIT frames stay `[anon]`.
#[test]
fn fifo_planted_for_node_does_not_hang() {
    if !util::require_perf() {
        return;
    }
    let node_runs = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !node_runs {
        assert!(
            !must_run("node is not installed"),
            "CI=true: install nodejs"
        );
        return;
    }
    // A hot loop (compiled by V8 into anonymous memory within milliseconds), announced once
    // it has run for half a second.
    let script =
        "let x = 0; const hot = (n) => { for (let i = 0; i < n; i++) x += Math.sqrt(x + i); }; \
                  const start = Date.now(); while (Date.now() < start + 500) hot(1000); \
                  console.log('ready'); while (Date.now() < start + 20000) hot(1000);";
    let mut node = Command::new("node")
        .args(["-e", script])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let stdout = node.stdout.take().unwrap();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
    assert_eq!(line, "ready\n");
    let node = KillOnDrop(node);
    let map = PathBuf::from(format!("/tmp/perf-{}.map", node.0.id()));
    let _ = std::fs::remove_file(&map);
    mkfifo(&map);
    let dir = tempfile::tempdir().unwrap();
    let (folded, stderr) = attach(node.0.id(), dir.path(), 3.0);
    let _ = std::fs::remove_file(&map);
    assert!(folded.total() > 0);
    assert!(
        stderr.contains("not a regular file"),
        "{stderr}\n{}",
        folded.summary()
    );
}
