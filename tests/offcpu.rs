//! Off-CPU time (`--off-cpu`, `--off-cpu-only`) on real recordings of `fixtures/c/offcpu.c`,
//! whose threads alternate 50 ms of CPU time in `compute` with ~50 ms of waiting in
//! `wait_sleep` / `wait_pipe` / `wait_mutex`, and print the wall time each spent waiting.
//!
//! The ground truth is the fixture's own measure of its waits, not a share of the total: on a
//! loaded machine CPU time is stolen (that shows as `[preempted]`, not as waiting), so the total
//! grows with the load while the waits do not. Weights are microseconds.
//!
//! Unprivileged runs use `setpriv` to become `nobody` (paranoid 2: stacks read from /proc);
//! root runs use context-switch samples. Both need root to start (CI runs as root).

mod util;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use util::{fixture, Folded, Variant};

/// True when running as root; else panics with `CI=true` or prints a skip line.
fn require_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test} needs root (setpriv to nobody, context-switch samples) and CI=true");
    }
    eprintln!("skipping {test}: it needs root (to run as nobody, or to sample context switches)");
    false
}

/// A directory `nobody` can use, holding a copy of the fixture with 0755 permissions.
fn prepare() -> (tempfile::TempDir, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), PermissionsExt::from_mode(0o777)).unwrap();
    let prog = dir.path().join("offcpu");
    std::fs::copy(fixture("offcpu", Variant::CNoFramePointers), &prog).unwrap();
    std::fs::set_permissions(&prog, PermissionsExt::from_mode(0o755)).unwrap();
    (dir, prog)
}

/// What one recording gave: the folded graph, the profiler's stderr, and the fixture's
/// `waited NAME US` lines.
struct Run {
    folded: Folded,
    stderr: String,
    waited: HashMap<String, u64>,
}

/// Runs `flamegraph FLAG -o out.folded -- offcpu MODE ROUNDS THREADS`, as `nobody` or as root.
fn record(as_nobody: bool, flag: &str, mode: &str, rounds: u32, threads: u32) -> Run {
    let (dir, prog) = prepare();
    let mut cmd = if as_nobody {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_flamegraph"));
        c
    } else {
        util::flamegraph()
    };
    cmd.current_dir(dir.path())
        .args([flag, "-o", "out.folded", "--"])
        .arg(&prog)
        .args([mode, &rounds.to_string(), &threads.to_string()]);
    let out = util::run_ok(&mut cmd, Duration::from_secs(120));
    parse_run(dir.path(), &out)
}

fn parse_run(dir: &Path, out: &Output) -> Run {
    let waited = parse_run_waited(out);
    Run {
        folded: Folded::read(&dir.join("out.folded")),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        waited,
    }
}

fn has(stack: &[String], name: &str) -> bool {
    stack.iter().any(|f| util::frame_matches(f, name))
}

fn leaf_is(stack: &[String], name: &str) -> bool {
    stack.last().is_some_and(|f| f == name)
}

impl Run {
    /// Microseconds on `root` under `function` whose leaf is `leaf`.
    fn weight(&self, root: &str, function: &str, leaf: &str) -> u64 {
        self.folded.weight_where(|s| {
            s.first().is_some_and(|r| r == root) && has(s, function) && leaf_is(s, leaf)
        })
    }

    /// Checks that thread `root`'s off-CPU time in `wait_fn` (below `blocking`) matches what the
    /// fixture measured (at most 5% more, at least its nominal blocking less 5%); and that its
    /// on-CPU time is under `compute`.
    fn check_thread(&self, root: &str, wait_fn: &str, blocking: &str, rounds: u32) {
        // sleep and pipe block at least 50 ms a round; a mutex wait starts a little after the
        // holder took it.
        let nominal_us = (wait_fn != "wait_mutex").then_some(f64::from(rounds) * 50_000.0);
        let waited = self.waited[root] as f64;
        let off = self.weight(root, wait_fn, "[off-cpu]") as f64;
        let preempted = self.weight(root, wait_fn, "[preempted]") as f64;
        let under_blocking = self.folded.weight_where(|s| {
            s.first().is_some_and(|r| r == root)
                && has(s, wait_fn)
                && has(s, blocking)
                && leaf_is(s, "[off-cpu]")
        }) as f64;
        // Waits whose stack could not be read in time (the thread ran again first: /proc path
        // on a loaded machine) are kept as [off-cpu] alone on the thread.
        let bare = self
            .folded
            .weight_where(|s| s.len() == 2 && s[0] == root && s[1] == "[off-cpu]")
            as f64;
        let summary = || {
            format!(
                "{root}: fixture waited {waited} us; [off-cpu] under {wait_fn} {off} us ({under_blocking} \
                 under {blocking}), [preempted] there {preempted} us, [off-cpu] without stack \
                 {bare} us\n{}\n{}",
                self.folded.summary(),
                self.stderr
            )
        };
        // Never more waiting than the fixture measured; at least its nominal blocking (50 ms a
        // round: sleep, pipe). Some switch-outs in a wait carry the kernel's preemption flag
        // (the woken thread then waits for a CPU; 5-10% of the time on a loaded machine, kernel
        // 6.18); in the /proc path such a runnable thread has no readable stack, so a little of
        // the wait may sit in a bare [preempted]: the lower bound against the measure is looser.
        // The upper bound is on what the graph puts under the wait: a bare [off-cpu] is on the
        // thread alone, and may also hold its other waits (its start, its exit).
        let waiting = off + bare;
        assert!(
            off <= 1.05 * waited,
            "more off-CPU time under {wait_fn} than the fixture waited: {}",
            summary()
        );
        if let Some(nominal) = nominal_us {
            assert!(
                waiting >= 0.95 * nominal,
                "less off-CPU time than the fixture's {nominal} us of blocking: {}",
                summary()
            );
        }
        assert!(
            waiting + preempted >= 0.85 * waited,
            "off-CPU time under {wait_fn} far below the fixture's waits: {}",
            summary()
        );
        assert!(off >= 0.7 * waited, "too little [off-cpu]: {}", summary());
        assert!(
            under_blocking >= 0.9 * off,
            "[off-cpu] not under {blocking}: {}",
            summary()
        );
        // On-CPU: 50 ms of CPU per round in compute, sampled (loose: samples are lost to load).
        let computing = self.folded.weight_where(|s| {
            s.first().is_some_and(|r| r == root)
                && has(s, "compute")
                && !s.iter().any(|f| f == "[off-cpu]" || f == "[preempted]")
        }) as f64;
        let expected = f64::from(rounds) * 50_000.0;
        assert!(
            (computing - expected).abs() <= 0.25 * expected,
            "on-CPU time under compute {computing} us, expected {expected} us: {}",
            summary()
        );
    }
}

const ROUNDS: u32 = 10;

fn check_single(run: &Run, wait_fn: &str, blocking: &str) {
    run.check_thread("offcpu", wait_fn, blocking, ROUNDS);
}

#[test]
fn unprivileged_sleep_off_cpu_under_nanosleep() {
    if !require_root("unprivileged_sleep_off_cpu_under_nanosleep") {
        return;
    }
    let run = record(true, "--off-cpu", "sleep", ROUNDS, 1);
    assert!(
        run.stderr.contains("read from /proc/TID/syscall")
            || run.stderr.contains("context-switch samples"),
        "no line naming the stack path: {}",
        run.stderr
    );
    check_single(&run, "wait_sleep", "clock_nanosleep");
}

#[test]
fn unprivileged_pipe_read_off_cpu() {
    if !require_root("unprivileged_pipe_read_off_cpu") {
        return;
    }
    let run = record(true, "--off-cpu", "pipe", ROUNDS, 1);
    check_single(&run, "wait_pipe", "read");
}

#[test]
fn unprivileged_contended_mutex_off_cpu() {
    if !require_root("unprivileged_contended_mutex_off_cpu") {
        return;
    }
    let run = record(true, "--off-cpu", "mutex", ROUNDS, 1);
    check_single(&run, "wait_mutex", "pthread_mutex_lock");
}

#[test]
fn unprivileged_threads_each_their_own_waits() {
    if !require_root("unprivileged_threads_each_their_own_waits") {
        return;
    }
    let run = record(true, "--off-cpu", "sleep", ROUNDS, 2);
    for worker in ["worker1", "worker2"] {
        run.check_thread(worker, "wait_sleep", "clock_nanosleep", ROUNDS);
    }
}

#[test]
fn root_context_switch_samples_same_graph() {
    if !require_root("root_context_switch_samples_same_graph") {
        return;
    }
    let run = record(false, "--off-cpu", "sleep", ROUNDS, 1);
    assert!(
        run.stderr.contains("context-switch samples"),
        "root should use context-switch samples: {}",
        run.stderr
    );
    check_single(&run, "wait_sleep", "clock_nanosleep");
    // With kernel access the off-CPU stacks go down into the scheduler.
    let kernel = run
        .folded
        .weight_where(|s| leaf_is(s, "[off-cpu]") && has(s, "wait_sleep") && has(s, "schedule"));
    assert!(kernel > 0, "no kernel frames: {}", run.folded.summary());
}

#[test]
fn root_threads_mutex() {
    if !require_root("root_threads_mutex") {
        return;
    }
    let run = record(false, "--off-cpu", "mutex", ROUNDS, 2);
    for worker in ["worker1", "worker2"] {
        run.check_thread(worker, "wait_mutex", "pthread_mutex_lock", ROUNDS);
    }
}

#[test]
fn off_cpu_only_shows_only_waiting() {
    if !require_root("off_cpu_only_shows_only_waiting") {
        return;
    }
    let run = record(true, "--off-cpu-only", "sleep", ROUNDS, 1);
    for (stack, weight) in &run.folded.stacks {
        assert!(
            leaf_is(stack, "[off-cpu]"),
            "a stack that is not waiting ({weight} us): {stack:?}"
        );
    }
    let waited = run.waited["offcpu"] as f64;
    let off = run.weight("offcpu", "wait_sleep", "[off-cpu]") as f64;
    assert!(
        off >= 0.7 * waited && off <= 1.05 * waited,
        "waited {waited} us, [off-cpu] under wait_sleep {off} us\n{}",
        run.folded.summary()
    );
}

#[test]
fn off_cpu_refused_where_unsupported() {
    let args = [
        "--off-cpu",
        "--backend",
        "perf-cli",
        "-o",
        "/dev/null",
        "--",
        "true",
    ];
    let out = util::run_with_timeout(util::flamegraph().args(args), Duration::from_secs(30));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--off-cpu"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

/// Attaches `--off-cpu` to `offcpu sleep` (one thread) for about 3 s, as `nobody` (the /proc
/// path) or as root (context-switch samples); the target keeps running. The fixture's helper
/// thread waits in `read` all along, from before the attach: its off-CPU time is the whole
/// recording. The worker alternates computing and sleeping: it must show both.
fn check_attach(as_nobody: bool, path: &str) {
    let (dir, prog) = prepare();
    let mut target = if as_nobody {
        util::as_nobody(&prog)
    } else {
        Command::new(&prog)
    };
    target
        .args(["sleep", "1000", "1"])
        .stdout(std::process::Stdio::null());
    // A copy just written may be open for writing in a child another test forked meanwhile
    // (until that child execs): ETXTBSY for a moment, not a failure.
    let mut spawned = target.spawn();
    for _ in 0..100 {
        match &spawned {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                std::thread::sleep(Duration::from_millis(20));
                spawned = target.spawn();
            }
            _ => break,
        }
    }
    let mut target = util::KillOnDrop(spawned.unwrap());
    // Let it start its helper thread.
    std::thread::sleep(Duration::from_millis(300));
    let pid = target.0.id().to_string();
    let mut cmd = if as_nobody {
        util::as_nobody(env!("CARGO_BIN_EXE_flamegraph"))
    } else {
        util::flamegraph()
    };
    cmd.current_dir(dir.path())
        .args(["--off-cpu", "-p", &pid, "-o", "out.folded"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let recorder = cmd.spawn().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    util::send_signal(recorder.id(), libc::SIGINT);
    let out = recorder.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}", util::describe_output(&out));
    assert!(stderr.contains(path), "not the {path:?} path: {stderr}");
    assert!(
        target.0.try_wait().unwrap().is_none(),
        "the attached program did not keep running"
    );
    let folded = Folded::read(&dir.path().join("out.folded"));
    let on_thread = |root: &str| folded.weight_where(|s| s.first().is_some_and(|r| r == root));
    let helper_total = on_thread("helper") as f64;
    let helper_waiting = folded.weight_where(|s| {
        s.first().is_some_and(|r| r == "helper") && has(s, "read") && leaf_is(s, "[off-cpu]")
    }) as f64;
    let summary = || format!("{}\n{stderr}", folded.summary());
    // About 3 s of recording (SIGINT at 3 s after start; the attach takes a moment).
    assert!(
        helper_waiting >= 1.5e6 && helper_waiting >= 0.95 * helper_total,
        "the helper waited in read all along: {helper_waiting} us of {helper_total}: {}",
        summary()
    );
    let sleeping = folded.weight_where(|s| {
        s.first().is_some_and(|r| r == "offcpu")
            && has(s, "wait_sleep")
            && has(s, "clock_nanosleep")
            && leaf_is(s, "[off-cpu]")
    }) as f64;
    let computing = folded.weight_where(|s| {
        s.first().is_some_and(|r| r == "offcpu")
            && has(s, "compute")
            && !s.iter().any(|f| f == "[off-cpu]" || f == "[preempted]")
    }) as f64;
    // A round is 50 ms of CPU time and 50 ms of sleep: however loaded the machine stretches the
    // computing, 3 s hold a few rounds.
    assert!(
        sleeping >= 150_000.0 && computing >= 50_000.0,
        "the worker sleeps and computes: {sleeping} us sleeping, {computing} us computing: {}",
        summary()
    );
}

#[test]
fn attach_unprivileged_off_cpu_from_proc() {
    if !require_root("attach_unprivileged_off_cpu_from_proc") {
        return;
    }
    check_attach(true, "read from /proc/TID/syscall");
}

#[test]
fn attach_root_off_cpu_from_context_switch_samples() {
    if !require_root("attach_root_off_cpu_from_context_switch_samples") {
        return;
    }
    check_attach(false, "context-switch samples");
}

#[test]
fn perfdata_with_context_switch_samples() {
    if !require_root("perfdata_with_context_switch_samples") || !util::require_perf() {
        return;
    }
    let (dir, prog) = prepare();
    let out = util::run_ok(
        Command::new("perf")
            .current_dir(dir.path())
            .args(["record", "-q", "-e", "context-switches", "-c", "1"])
            .args(["--switch-events", "--call-graph", "dwarf,32768"])
            .args(["-o", "cs.data", "--"])
            .arg(&prog)
            .args(["sleep", &ROUNDS.to_string(), "1"]),
        Duration::from_secs(120),
    );
    let waited = parse_run_waited(&out)["offcpu"] as f64;
    let drawn = util::run_ok(
        util::flamegraph().current_dir(dir.path()).args([
            "--off-cpu",
            "--perfdata",
            "cs.data",
            "-o",
            "out.folded",
        ]),
        Duration::from_secs(120),
    );
    let folded = Folded::read(&dir.path().join("out.folded"));
    let off = folded.weight_where(|s| {
        has(s, "wait_sleep") && has(s, "clock_nanosleep") && leaf_is(s, "[off-cpu]")
    }) as f64;
    let nominal = f64::from(ROUNDS) * 50_000.0;
    assert!(
        off >= 0.95 * nominal && off <= 1.05 * waited,
        "[off-cpu] under wait_sleep {off} us; nominal {nominal} us, fixture waited {waited} us\n{}\n{}",
        folded.summary(),
        String::from_utf8_lossy(&drawn.stderr)
    );
}

fn parse_run_waited(out: &Output) -> HashMap<String, u64> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let mut words = line.strip_prefix("waited ")?.split_whitespace();
            Some((words.next()?.to_owned(), words.next()?.parse().ok()?))
        })
        .collect()
}
