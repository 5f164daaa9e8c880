//! System-wide recording (`-a`) and `--duration`, with the real binary and real recordings:
//! a fixture running beside the recording shows up under its own `comm-PID` root with other
//! processes; a program started and deleted during the recording is still named; `-p` and `-a`
//! stop by themselves and leave their targets running; a launched program is stopped as by
//! Ctrl-C; an unprivileged user gets the one-line refusal.
//!
//! Tests that need root (recording every process, switching users) fail with `CI=true` and skip
//! with a one-line reason otherwise.

mod util;

use std::io::BufRead;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use util::{fixture, flamegraph, run_with_timeout, Folded, KillOnDrop, Variant};

const TIMEOUT: Duration = Duration::from_secs(120);
/// The unprivileged user of the refusal test.
const NOBODY: u32 = 65534;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `flamegraph ARGS -o DIR/out.folded` in `dir`; returns the output and the folded stacks
/// (panics, showing what it printed, when it fails).
fn record_folded(dir: &Path, args: &[&str]) -> (Output, Folded) {
    let out_path = dir.join("out.folded");
    let mut cmd = flamegraph();
    cmd.current_dir(dir).arg("-o").arg(&out_path).args(args);
    let output = run_with_timeout(&mut cmd, TIMEOUT);
    assert!(
        output.status.success(),
        "{}",
        util::describe_output(&output)
    );
    (output, Folded::read(&out_path))
}

/// The stacks under root `root` (`comm-PID`), as (frames below the root, weight).
fn under_root<'a>(folded: &'a Folded, root: &str) -> Vec<(&'a [String], u64)> {
    (folded.stacks.iter())
        .filter(|(stack, _)| stack.first().is_some_and(|r| r == root))
        .map(|(stack, n)| (&stack[1..], *n))
        .collect()
}

fn weight_with_frame(stacks: &[(&[String], u64)], name: &str) -> u64 {
    (stacks.iter())
        .filter(|(frames, _)| frames.iter().any(|f| util::frame_matches(f, name)))
        .map(|(_, n)| n)
        .sum()
}

#[test]
fn all_cpus_shows_a_running_fixture_under_its_own_root_with_other_processes() {
    if !util::require_root("recording every process (-a)") || !util::require_gcc() {
        return;
    }
    let prog = fixture("busy_forever", Variant::CNoFramePointers);
    let target = util::spawn_ready(&prog, &[]);
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let (output, folded) = record_folded(dir.path(), &["-a", "--duration", "3"]);
    let elapsed = started.elapsed();
    let root = format!("busy_forever-{}", target.0.id());
    let stacks = under_root(&folded, &root);
    let spin = weight_with_frame(&stacks, "spin_attached");
    let total: u64 = stacks.iter().map(|(_, n)| n).sum();
    assert!(
        spin > 0 && spin * 10 >= total * 9,
        "{root}: spin_attached {spin} of {total}\n{}",
        folded.summary()
    );
    // DWARF-unwound through a binary without frame pointers, down to main.
    assert!(
        weight_with_frame(&stacks, "main") * 10 >= spin * 9,
        "{}",
        folded.summary()
    );
    let roots = folded.roots();
    let others: Vec<&String> = (roots.iter().map(|(r, _)| r))
        .filter(|r| **r != root)
        .collect();
    assert!(!others.is_empty(), "no other process: {roots:?}");
    assert!(
        roots.iter().all(|(r, _)| r
            .rsplit_once('-')
            .is_some_and(|(_, pid)| pid.parse::<u32>().is_ok_and(|pid| pid != 0))),
        "every root is comm-PID, the idle task left out: {roots:?}"
    );
    // Root sees kernel callchains.
    let kernel = (folded.stacks.iter()).any(|(s, _)| s.iter().any(|f| f.ends_with("_[k]")));
    assert!(kernel, "no kernel frame\n{}", folded.summary());
    let err = stderr(&output);
    assert!(
        err.contains("recording stopped after --duration 3s"),
        "{err}"
    );
    assert!(elapsed < Duration::from_secs(60), "took {elapsed:?}");
}

/// Starts `flamegraph ARGS` (stderr piped, verbose) and waits until it says it samples: the
/// events are open, so what starts from now on is recorded.
fn start_recording(dir: &Path, args: &[&str]) -> (KillOnDrop, std::thread::JoinHandle<String>) {
    let mut child = KillOnDrop(
        flamegraph()
            .current_dir(dir)
            .args(args)
            .arg("-v")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap(),
    );
    let mut lines = std::io::BufReader::new(child.0.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let n = lines.read_line(&mut line).unwrap();
        assert!(n > 0, "flamegraph ended before sampling:\n{seen}");
        seen.push_str(&line);
        if line.contains("flamegraph: sampling") {
            break;
        }
    }
    let rest = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(lines.get_mut(), &mut rest);
        seen + &rest
    });
    (child, rest)
}

/// Waits for `child` for at most `timeout`.
fn wait_for(child: &mut KillOnDrop, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "still running after {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_program_started_and_deleted_during_all_cpus_is_named() {
    if !util::require_root("recording every process (-a)") || !util::require_gcc() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bin_dir = tempfile::tempdir().unwrap();
    let copy = bin_dir.path().join("fg_shortlived");
    std::fs::copy(fixture("split", Variant::CNoFramePointers), &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (mut recorder, stderr) =
        start_recording(dir.path(), &["-a", "--duration", "8", "-o", "out.folded"]);
    let run = Command::new(&copy)
        .args(["serial", "0.5"])
        .output()
        .unwrap();
    assert!(run.status.success(), "{run:?}");
    std::fs::remove_file(&copy).unwrap();
    let status = wait_for(&mut recorder, TIMEOUT);
    let err = stderr.join().unwrap();
    assert!(status.success(), "{status}\n{err}");
    let folded = Folded::read(&dir.path().join("out.folded"));
    let stacks: Vec<(&[String], u64)> = (folded.stacks.iter())
        .filter(|(s, _)| s.first().is_some_and(|r| r.starts_with("fg_shortlived-")))
        .map(|(s, n)| (&s[1..], *n))
        .collect();
    let total: u64 = stacks.iter().map(|(_, n)| n).sum();
    let named: u64 = ["work_a", "work_b", "work_c"]
        .iter()
        .map(|f| weight_with_frame(&stacks, f))
        .sum();
    assert!(
        total > 0 && named * 10 >= total * 8,
        "fg_shortlived: {named} of {total} samples in work_a/b/c\n{}\n{err}",
        folded.summary()
    );
}

#[test]
fn attach_with_a_duration_stops_by_itself_and_leaves_the_target_running() {
    if !util::require_gcc() {
        return;
    }
    let prog = fixture("busy_forever", Variant::CFramePointers);
    let mut target = util::spawn_ready(&prog, &[]);
    let dir = tempfile::tempdir().unwrap();
    let pid = target.0.id().to_string();
    let started = Instant::now();
    let (output, folded) = record_folded(dir.path(), &["-p", &pid, "--duration", "2"]);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(60),
        "took {elapsed:?}"
    );
    assert!(
        folded.share_of_frame("spin_attached") > 0.9,
        "{}",
        folded.summary()
    );
    let err = stderr(&output);
    assert!(
        err.contains("recording stopped after --duration 2s; the profiled processes keep running"),
        "{err}"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        target.0.try_wait().unwrap().is_none(),
        "the target did not survive the recording"
    );
}

#[test]
fn a_launched_program_is_stopped_at_the_end_of_its_duration_and_drawn() {
    if !util::require_gcc() {
        return;
    }
    // busy_forever exits 0 on SIGINT; a shell loop dies of it.
    let prog = fixture("busy_forever", Variant::CFramePointers);
    let dir = tempfile::tempdir().unwrap();
    let prog = prog.to_str().unwrap();
    let (output, folded) = record_folded(dir.path(), &["--duration", "1", "--", prog]);
    assert!(
        folded.share_of_frame("spin_attached") > 0.9,
        "{}",
        folded.summary()
    );
    let err = stderr(&output);
    assert!(
        err.contains("recording stopped after --duration 1s; the program had not finished and exited successfully on SIGINT"),
        "{err}"
    );
    let (output, folded) = record_folded(
        dir.path(),
        &["--duration", "1", "--", "sh", "-c", "while :; do :; done"],
    );
    assert!(folded.total() > 0);
    let err = stderr(&output);
    assert!(
        err.contains(
            "the program had not finished and was stopped (was killed by signal 2 (SIGINT)), \
             as by Ctrl-C: not an error"
        ),
        "{err}"
    );
}

#[test]
fn all_cpus_as_an_unprivileged_user_is_refused_in_one_line() {
    if !util::require_root("switching to user nobody") {
        return;
    }
    let paranoid: i64 = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(2);
    if paranoid <= 0 {
        util::print_skip("kernel.perf_event_paranoid <= 0 lets every user record system-wide");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let mut cmd = flamegraph();
    cmd.current_dir(dir.path())
        .args(["-a", "--duration", "1", "-o", "x.folded"])
        .uid(NOBODY)
        .gid(NOBODY);
    let out = run_with_timeout(&mut cmd, TIMEOUT);
    assert!(!out.status.success(), "{}", util::describe_output(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    for part in [
        "flamegraph: error: -a/--all-cpus records every process",
        &format!("kernel.perf_event_paranoid <= 0 (it is {paranoid})"),
        "as root",
        "`sudo sysctl kernel.perf_event_paranoid=0`",
    ] {
        assert!(err.contains(part), "{part:?} not in {err}");
    }
    assert!(!dir.path().join("x.folded").exists());
}

#[test]
fn perf_cli_records_all_cpus_for_a_duration() {
    if !util::require_root("recording every process (-a)")
        || !util::require_perf()
        || !util::require_gcc()
    {
        return;
    }
    let prog = fixture("busy_forever", Variant::CFramePointers);
    let target = util::spawn_ready(&prog, &[]);
    let dir = tempfile::tempdir().unwrap();
    let (_, folded) = record_folded(
        dir.path(),
        &[
            "--backend",
            "perf-cli",
            "--no-inline",
            "-a",
            "--duration",
            "2",
            "-F",
            "199",
        ],
    );
    let root = format!("busy_forever-{}", target.0.id());
    let stacks = under_root(&folded, &root);
    assert!(
        weight_with_frame(&stacks, "spin_attached") > 0,
        "{root}\n{}",
        folded.summary()
    );
    assert!(folded.roots().len() > 1, "{:?}", folded.roots());
}

/// `-a -- CMD` (perf's `record -a -- CMD`): every process is recorded while the command runs,
/// the command under its own `comm-PID` root; the recording ends when it exits, and its failure
/// is the tool's.
#[test]
fn all_cpus_with_a_command_records_while_it_runs() {
    if !util::require_root("recording every process (-a)") || !util::require_gcc() {
        return;
    }
    let prog = fixture("split", Variant::CNoFramePointers);
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let (_, folded) = record_folded(
        dir.path(),
        &["-a", "--", prog.to_str().unwrap(), "serial", "1"],
    );
    let elapsed = started.elapsed();
    let roots = folded.roots();
    let root = (roots.iter().map(|(r, _)| r))
        .find(|r| r.starts_with("split-"))
        .unwrap_or_else(|| panic!("no split-PID root: {roots:?}"));
    let stacks = under_root(&folded, root);
    let total: u64 = stacks.iter().map(|(_, n)| n).sum();
    // split serial: work_a 60%, work_b 30%, work_c 10% of its CPU time.
    let work_a = weight_with_frame(&stacks, "work_a");
    assert!(
        total >= 500 && work_a * 100 >= total * 50,
        "{root}: work_a {work_a} of {total}\n{}",
        folded.summary()
    );
    assert!(elapsed < Duration::from_secs(60), "took {elapsed:?}");
    // The command's exit status is the tool's (the graph is still written).
    let out = dir.path().join("failed.folded");
    let output = run_with_timeout(
        flamegraph()
            .args(["-a", "-o"])
            .arg(&out)
            .args(["--", "sh", "-c", "exit 3"]),
        TIMEOUT,
    );
    assert!(
        !output.status.success(),
        "{}",
        util::describe_output(&output)
    );
    assert!(
        stderr(&output).contains("exit status: 3"),
        "{}",
        stderr(&output)
    );
    assert!(out.exists());
}
