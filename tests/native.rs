//! The built-in sampler (`--backend native`, the Linux default), end to end on real fixture
//! programs: shares, complete stacks, inline frames, kernel frames, attach, signals and exit
//! status, DWARF unwinding with and without frame pointers, and agreement with perf.

mod util;

use std::ffi::OsStr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use util::{fixture, flamegraph, flamegraph_folded, Folded, KillOnDrop, Variant};

/// Frames that legitimately root a stack: the program's entry, a thread start, or a kernel-only
/// stack of the profiled task (exit, page faults before main).
fn reaches_root(stack: &[String]) -> bool {
    stack.iter().skip(1).any(|f| {
        matches!(
            util::normalize_frame(f),
            "main" | "_start" | "start_thread" | "clone3" | "clone" | "__clone3" | "thread_start"
        )
    }) || stack.iter().skip(1).all(|f| f.ends_with("_[k]"))
}

fn split_shares(variant: Variant, mode: &str, args: &[&str]) -> Folded {
    let split = fixture("split", variant);
    let (folded, _) = flamegraph_folded(
        args,
        &[split.as_os_str(), OsStr::new(mode), OsStr::new("1")],
    );
    // 60/30/10 of the work units by construction; up to 1 point goes to startup and the
    // driver loop; the rest of the tolerance is what the sample count supports.
    folded.assert_user_leaf_share("work_a", 0.60, 1.0);
    folded.assert_user_leaf_share("work_b", 0.30, 1.0);
    folded.assert_user_leaf_share("work_c", 0.10, 1.0);
    let rooted = folded.share_where(reaches_root);
    assert!(
        rooted > 0.99,
        "{:.1}% of stacks reach main or a thread start\n{}",
        rooted * 100.0,
        folded.summary()
    );
    folded
}

#[test]
fn frame_pointer_split_serial() {
    split_shares(Variant::CFramePointers, "serial", &["--call-graph", "fp"]);
}

#[test]
fn frame_pointer_split_threads() {
    split_shares(Variant::CFramePointers, "threads", &["--call-graph", "fp"]);
}

#[test]
fn frame_pointer_split_fork() {
    let folded = split_shares(Variant::CFramePointers, "fork", &["--call-graph", "fp"]);
    // Parent and child both run the rounds, both under the program's name.
    assert!(
        folded.roots().iter().all(|(r, _)| r == "split"),
        "{:?}",
        folded.roots()
    );
}

#[test]
fn dwarf_split_without_frame_pointers_serial() {
    split_shares(Variant::CNoFramePointers, "serial", &[]);
}

#[test]
fn dwarf_split_without_frame_pointers_threads() {
    let folded = split_shares(Variant::CNoFramePointers, "threads", &[]);
    let via_thread = folded.share_where(|s| s.iter().any(|f| f == "thread_main"));
    assert!(
        via_thread > 0.5,
        "thread stacks unwound through thread_main\n{}",
        folded.summary()
    );
}

#[test]
fn dwarf_split_without_frame_pointers_fork() {
    split_shares(Variant::CNoFramePointers, "fork", &[]);
}

#[test]
fn dwarf_rust_release_without_frame_pointers() {
    let split = fixture("split", Variant::RustNoFramePointers);
    let (folded, _) = flamegraph_folded(
        &[],
        &[split.as_os_str(), OsStr::new("threads"), OsStr::new("1")],
    );
    // Inlined core functions can be the leaves in Rust: assert frames, not leaves.
    folded.assert_sampled_frame_share("split::work_a", 0.60, 1.0);
    folded.assert_sampled_frame_share("split::work_b", 0.30, 1.0);
    folded.assert_sampled_frame_share("split::work_c", 0.10, 1.0);
    let rooted = folded.share_where(reaches_root);
    assert!(
        rooted > 0.99,
        "{:.1}% rooted\n{}",
        rooted * 100.0,
        folded.summary()
    );
}

#[test]
fn default_backend_never_calls_perf() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("perf-was-called");
    let fake = dir.path().join("perf");
    std::fs::write(
        &fake,
        format!("#!/bin/sh\ntouch {}\nexit 1\n", marker.display()),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let split = fixture("split", Variant::CFramePointers);
    let out = util::run_ok(
        flamegraph()
            .current_dir(dir.path())
            .env("PATH", path)
            .args(["-o", "n.folded", "--"])
            .arg(&split)
            .args(["serial", "0.3"]),
        Duration::from_secs(60),
    );
    assert!(
        !marker.exists(),
        "perf was called\n{}",
        util::describe_output(&out)
    );
    assert!(
        !dir.path().join("perf.data").exists(),
        "no perf.data is written"
    );
    let entries: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        entries.len(),
        2,
        "only the fake perf and the output: {entries:?}"
    );
}

#[test]
fn inline_frames_shown_by_default_and_hidden_with_no_inline() {
    let prog = fixture("inline", Variant::CNoFramePointers);
    let cmd = [prog.as_os_str(), OsStr::new("1")];
    let (with, _) = flamegraph_folded(&[], &cmd);
    let share = with.share_of_frame("hot_inlined");
    assert!(
        share >= 0.8,
        "hot_inlined in {:.1}%\n{}",
        share * 100.0,
        with.summary()
    );
    // Inline frames sit under their caller, as perf shows them.
    let ordered = with.share_where(|s| {
        s.windows(2)
            .any(|w| w[0] == "outer_caller" && w[1] == "hot_inlined")
    });
    assert!(
        ordered >= 0.8,
        "outer_caller;hot_inlined\n{}",
        with.summary()
    );
    let (without, _) = flamegraph_folded(&["--no-inline"], &cmd);
    assert_eq!(
        without.share_of_frame("hot_inlined"),
        0.0,
        "{}",
        without.summary()
    );
    assert!(
        without.share_of_user_leaf("outer_caller") >= 0.8,
        "{}",
        without.summary()
    );
}

#[test]
fn syscall_heavy_program_shows_kernel_frames() {
    let prog = fixture("syscalls", Variant::CNoFramePointers);
    let (folded, _) = flamegraph_folded(&[], &[prog.as_os_str(), OsStr::new("1")]);
    let kernel = folded.share_where(|s| s.iter().any(|f| f.ends_with("_[k]")));
    assert!(
        kernel >= 0.7,
        "kernel frames in {:.1}%\n{}",
        kernel * 100.0,
        folded.summary()
    );
    // The user part is still there above the kernel part.
    let joined = folded.share_where(|s| {
        let first_k = s.iter().position(|f| f.ends_with("_[k]"));
        first_k.is_some_and(|k| s[..k].iter().any(|f| f == "do_syscalls"))
    });
    assert!(
        joined >= 0.5,
        "user frames above the kernel ones\n{}",
        folded.summary()
    );
}

#[test]
fn deep_recursion_reaches_main_with_a_large_stack_copy() {
    let prog = fixture("recurse", Variant::CNoFramePointers);
    let cmd = [prog.as_os_str(), OsStr::new("300"), OsStr::new("1")];
    let (full, _) = flamegraph_folded(&["--stack-size", "65528"], &cmd);
    let complete = full.share_where(|s| {
        s.iter().any(|f| f == "main") && s.iter().filter(|f| *f == "recurse").count() == 300 + 1
    });
    // The first frame is the process name, itself `recurse`.
    assert!(
        complete >= 0.95,
        "300 recurse frames under main in {:.1}%\n{}",
        complete * 100.0,
        full.summary()
    );
    // From a 4 KiB copy the recursion is completed from the running program's stack (then
    // joined): never with a wrong depth, and what cannot be completed is marked at the root.
    let (cut, _) = flamegraph_folded(&["--stack-size", "4096"], &cmd);
    let depth = |s: &[String]| s.iter().filter(|f| *f == "recurse").count();
    let complete = cut.share_where(|s| s.iter().any(|f| f == "main") && depth(s) == 300 + 1);
    let marked = cut.share_where(|s| s.get(1).map(String::as_str) == Some("[truncated]"));
    assert!(
        complete >= 0.9 && complete + marked >= 0.99,
        "from 4 KiB: {:.1}% complete, {:.1}% marked [truncated]\n{}",
        complete * 100.0,
        marked * 100.0,
        cut.summary()
    );
    // No stack rooted at main has another depth where the depth is known by construction:
    // `burn_at_bottom` runs only under all 300 levels, and no stack is deeper than that. (A
    // sample taken while the recursion descends or returns rightly has fewer levels.)
    let wrong = cut.share_where(|s| {
        let burning = s.iter().any(|f| f == "burn_at_bottom");
        s.iter().any(|f| f == "main") && (depth(s) > 300 + 1 || burning && depth(s) != 300 + 1)
    });
    assert_eq!(wrong, 0.0, "{}", cut.summary());
}

#[test]
fn plt_calls_and_signal_handlers_unwind() {
    let prog = fixture("plt_signal", Variant::CNoFramePointers);
    let (folded, _) = flamegraph_folded(&[], &[prog.as_os_str(), OsStr::new("1")]);
    let handler = folded.share_where(|s| {
        let h = s.iter().position(|f| f == "handler_work");
        h.is_some_and(|h| s[..h].iter().any(|f| f == "main"))
    });
    assert!(
        handler > 0.01,
        "handler_work unwinds through the signal frame to main\n{}",
        folded.summary()
    );
    // The signal trampoline is named (perf shows `[libc.so.6]` there).
    let trampoline = folded.share_where(|s| {
        s.windows(2)
            .any(|w| w[0] == "__restore_rt" && w[1] == "sig_handler")
    });
    assert!(
        trampoline > 0.01,
        "__restore_rt;sig_handler\n{}",
        folded.summary()
    );
    let callback = folded.share_where(|s| {
        let c = s.iter().position(|f| f == "compare_ints");
        c.is_some_and(|c| {
            s[..c].iter().any(|f| f.contains("qsort")) && s[..c].iter().any(|f| f == "call_libc")
        })
    });
    assert!(
        callback > 0.01,
        "compare_ints under qsort under call_libc\n{}",
        folded.summary()
    );
    let rooted = folded.share_where(reaches_root);
    assert!(
        rooted > 0.97,
        "{:.1}% rooted\n{}",
        rooted * 100.0,
        folded.summary()
    );
}

#[test]
fn exec_failure_is_one_clean_line() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("not-exec");
    std::fs::write(&script, "#!/bin/sh\n").unwrap();
    let out = util::run_with_timeout(flamegraph().arg("--").arg(&script), Duration::from_secs(30));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!(
            "flamegraph: error: cannot run {}",
            script.display()
        )),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn frequency_above_the_kernel_limit_names_the_sysctl() {
    let max: u64 = std::fs::read_to_string("/proc/sys/kernel/perf_event_max_sample_rate")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let out = util::run_with_timeout(
        flamegraph().args(["-F", &(max + 1).to_string(), "--", "true"]),
        Duration::from_secs(30),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("perf_event_max_sample_rate"), "{err}");
}

#[test]
fn nonzero_exit_still_writes_the_graph() {
    let prog = fixture("exit_code", Variant::CNoFramePointers);
    let dir = tempfile::tempdir().unwrap();
    let out = util::run_with_timeout(
        flamegraph()
            .current_dir(dir.path())
            .args(["-o", "e.folded", "--"])
            .arg(&prog)
            .arg("7"),
        Duration::from_secs(60),
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        util::describe_output(&out)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the profiled program failed (exit status: 7)"),
        "{err}"
    );
    Folded::read(&dir.path().join("e.folded")).assert_user_leaf_share_at_least("burn", 0.95);
    let out = util::run_with_timeout(
        flamegraph()
            .current_dir(dir.path())
            .args(["--ignore-status", "-o", "e2.folded", "--"])
            .arg(&prog)
            .arg("7"),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", util::describe_output(&out));
}

/// Starts the tool on busy_forever in its own process group.
fn spawn_profiler(dir: &Path, args: &[&str]) -> KillOnDrop {
    let child = flamegraph()
        .current_dir(dir)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    KillOnDrop(child)
}

#[test]
fn ctrl_c_from_the_terminal_still_draws() {
    let prog = fixture("busy_forever", Variant::CNoFramePointers);
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_profiler(
        dir.path(),
        &["-o", "c.folded", "--", prog.to_str().unwrap()],
    );
    util::wait_for_ready_then_spin(&mut child);
    // A terminal's Ctrl-C signals the whole foreground group.
    // SAFETY: kill(2) with a negative pid signals the group this test started.
    unsafe { libc::kill(-(child.0.id() as i32), libc::SIGINT) };
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status}");
    Folded::read(&dir.path().join("c.folded"))
        .assert_user_leaf_share_at_least("spin_attached", 0.95);
}

#[test]
fn sigint_to_the_tool_alone_stops_the_program_and_draws() {
    let prog = fixture("busy_forever", Variant::CNoFramePointers);
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_profiler(
        dir.path(),
        &["-o", "s.folded", "--", prog.to_str().unwrap()],
    );
    util::wait_for_ready_then_spin(&mut child);
    util::send_signal(child.0.id(), libc::SIGINT);
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status}");
    Folded::read(&dir.path().join("s.folded"))
        .assert_user_leaf_share_at_least("spin_attached", 0.95);
}

#[test]
fn attach_by_pid_leaves_the_process_running() {
    let prog = fixture("busy_forever", Variant::CNoFramePointers);
    let mut target = util::spawn_ready(&prog, &["2"]);
    let dir = tempfile::tempdir().unwrap();
    let pid = target.0.id().to_string();
    let mut profiler = spawn_profiler(dir.path(), &["-o", "p.folded", "-p", &pid]);
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: kill(2) with a negative pid signals the profiler's own group only.
    unsafe { libc::kill(-(profiler.0.id() as i32), libc::SIGINT) };
    let status = profiler.0.wait().unwrap();
    assert!(status.success(), "{status}");
    let folded = Folded::read(&dir.path().join("p.folded"));
    folded.assert_user_leaf_share_at_least("spin_attached", 0.95);
    let rooted = folded.share_where(reaches_root);
    assert!(
        rooted > 0.95,
        "attached stacks reach a root\n{}",
        folded.summary()
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        target.0.try_wait().unwrap().is_none(),
        "the attached process keeps running"
    );
}

#[test]
fn agrees_with_perf_cli_on_the_same_fixture() {
    if !util::require_perf() {
        return;
    }
    let split = fixture("split", Variant::CFramePointers);
    // Frame pointers and 2999 Hz on both sides: thousands of samples keep the tolerance the
    // sample counts support near 3 points, and perf script stays fast.
    let cmd = [split.as_os_str(), OsStr::new("serial"), OsStr::new("1.5")];
    let (native, _) = flamegraph_folded(&["-F", "2999", "--call-graph", "fp"], &cmd);
    let (perf, _) = flamegraph_folded(&["-c", "record -F 2999 -g -o perf.data"], &cmd);
    for (f, truth) in [
        ("work_a", 0.6),
        ("work_b", 0.3),
        ("work_c", 0.1),
        ("main", 1.0),
    ] {
        let (n, p) = (native.share_of_frame(f), perf.share_of_frame(f));
        // Two independent samplings of the same truth: their difference has the variance of
        // both (tolerances add in quadrature), plus a point for startup and the driver loop.
        let (tn, tp) = (
            native.sampling_tolerance(truth, 0.0),
            perf.sampling_tolerance(truth, 0.0),
        );
        let tolerance = 1.0 + (tn * tn + tp * tp).sqrt();
        assert!(
            (n - p).abs() * 100.0 <= tolerance,
            "{f}: native {:.1}% ({} samples) vs perf {:.1}% ({} samples), tolerance {tolerance:.1}",
            n * 100.0,
            native.sample_count(),
            p * 100.0,
            perf.sample_count()
        );
    }
    // Both count samples (one per sample, not its period in nanoseconds): about the 1.5 CPU
    // seconds the fixture runs for at 2999 Hz (it counts its own CPU time, so load does not
    // shorten it).
    for (name, f) in [("native", &native), ("perf", &perf)] {
        let seconds = f.total() as f64 / 2999.0;
        assert!(
            (1.2..2.0).contains(&seconds),
            "{name}: {} samples = {seconds} s at 2999 Hz",
            f.total()
        );
    }
}

#[test]
fn svg_and_graph_options_work_natively() {
    let split = fixture("split", Variant::CFramePointers);
    let dir = tempfile::tempdir().unwrap();
    util::run_ok(
        flamegraph()
            .current_dir(dir.path())
            .args(["--title", "native run", "--flamechart", "-o", "n.svg", "--"])
            .arg(&split)
            .args(["serial", "0.5"]),
        Duration::from_secs(60),
    );
    let svg = std::fs::read_to_string(dir.path().join("n.svg")).unwrap();
    assert!(svg.contains("native run"));
    let titles = util::parse_svg_titles(&svg);
    assert!(
        titles.iter().any(|t| t.0 == "work_a"),
        "work_a in the flame chart"
    );
}

#[test]
#[cfg(target_arch = "x86_64")]
fn jit_code_is_named_from_the_perf_map_and_unwound() {
    let prog = fixture("jit", Variant::CNoFramePointers);
    let (folded, output) = flamegraph_folded(&[], &[prog.as_os_str(), OsStr::new("1")]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let pid = stdout
        .split_whitespace()
        .find_map(|w| w.strip_prefix("pid="))
        .expect("the fixture prints its pid");
    let _ = std::fs::remove_file(format!("/tmp/perf-{pid}.map"));
    folded.assert_user_leaf_share_at_least("jitted_spin", 0.95);
    // No CFI for JIT code: the unwinder falls back to its frame pointer to reach the caller.
    let through = folded.share_where(|s| {
        s.windows(2)
            .any(|w| w[0] == "call_jit" && w[1] == "jitted_spin")
    });
    assert!(
        through > 0.9,
        "main;call_jit;jitted_spin\n{}",
        folded.summary()
    );
}

#[test]
fn unwritable_output_fails_before_recording() {
    let out = util::run_with_timeout(
        flamegraph().args(["-o", "/nonexistent-dir/x.svg", "--", "sleep", "30"]),
        Duration::from_secs(10),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot write the output file in /nonexistent-dir"),
        "{err}"
    );
}

#[test]
fn failing_post_process_keeps_the_recorded_stacks() {
    let split = fixture("split", Variant::CFramePointers);
    let dir = tempfile::tempdir().unwrap();
    let out = util::run_with_timeout(
        flamegraph()
            .current_dir(dir.path())
            .args(["--post-process", "false", "-o", "x.svg", "--"])
            .arg(&split)
            .args(["serial", "0.3"]),
        Duration::from_secs(60),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let saved = err
        .split("saved to ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no rescue path in: {err}"));
    let rescued = Folded::read(Path::new(saved));
    std::fs::remove_file(saved).unwrap();
    rescued.assert_user_leaf_share("work_a", 0.60, 1.0);
}

#[test]
fn unprivileged_user_profiles_own_program_without_losing_samples() {
    if !util::require_root("switching to user nobody with setpriv") {
        return;
    }
    // Root's limits do not apply to `nobody`: small locked-memory budget, no kernel frames.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let prog = dir.path().join("split");
    std::fs::copy(fixture("split", Variant::CNoFramePointers), &prog).unwrap();
    let out = util::run_with_timeout(
        Command::new("setpriv")
            .current_dir(dir.path())
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_flamegraph"))
            .args(["-o", "u.folded", "--"])
            .arg(&prog)
            .args(["threads", "1"]),
        Duration::from_secs(60),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}", util::describe_output(&out));
    let paranoid: i32 = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    if paranoid >= 2 {
        assert!(err.contains("kernel frames are not shown"), "{err}");
    }
    // The summary says "0 lost"; a loss would add the "flamegraph: lost N of M samples" note.
    assert!(
        !err.contains("flamegraph: lost") && err.contains(" 0 lost"),
        "no samples lost with the unprivileged buffer size: {err}"
    );
    let folded = Folded::read(&dir.path().join("u.folded"));
    folded.assert_user_leaf_share("work_a", 0.60, 1.0);
}
