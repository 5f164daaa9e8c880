//! Programs whose binaries exist only in their own mount namespace, as in a container: each test
//! starts `unshare --mount` (util-linux; root), mounts a tmpfs on an empty directory in that
//! namespace only, copies a fixture there and runs it, so that at its path the profiler's own
//! namespace has nothing. Its functions must still be named (the profiler reads the file through
//! `/proc/PID/root`), and its stacks unwound from its CFI (`split` is built without frame
//! pointers, so `main` is found above `work_a` only through the file's `.eh_frame`).
//!
//! Ground truth (`fixtures/c/split.c`): `work_a`, `work_b` and `work_c` are leaves called by
//! `main`; `fixtures/c/jit.c`: `jitted_spin`, named only by the perf map it writes in its `/tmp`.

mod util;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use util::{fixture, Folded, Variant};

/// True when `unshare --mount` works here (root and util-linux); else skips (fails with CI=true).
fn require_unshare() -> bool {
    if !util::require_root("unshare --mount and mount") {
        return false;
    }
    util::require_tool(
        "unshare",
        &["--mount", "true"],
        "install util-linux; mount namespaces must be allowed",
    )
}

/// An empty directory outside `/tmp` (one test mounts a tmpfs on `/tmp` in its namespace), with
/// a copy of `fixture` beside it: (the directory, the mount point in it, the copy).
fn prepare(fixture: &Path) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mount_point = dir.path().join("only-in-namespace");
    std::fs::create_dir(&mount_point).unwrap();
    let copy = dir.path().join("copy");
    std::fs::copy(fixture, &copy).unwrap();
    (dir, mount_point, copy)
}

/// `sh -c` script: mounts a tmpfs on `mount_point` (this namespace only), copies `copy` there
/// as `prog`, then runs `then` (where `$P` is the copy's path in the namespace).
fn script(mount_point: &Path, copy: &Path, then: &str) -> String {
    format!(
        "mount -t tmpfs none '{m}' && cp '{c}' '{m}/prog' && P='{m}/prog' && {then}",
        m = mount_point.display(),
        c = copy.display()
    )
}

/// Asserts that the split fixture's three functions are named, each under `main`, and that no
/// frame is a `FILE+0xOFFSET` placeholder of the program.
fn assert_split_named(folded: &Folded, stderr: &[u8]) {
    let context = || {
        format!(
            "{}\n--- stderr ---\n{}",
            folded.summary(),
            String::from_utf8_lossy(stderr)
        )
    };
    for name in ["work_a", "work_b", "work_c"] {
        let under_main = folded.weight_where(|stack| {
            stack
                .windows(2)
                .any(|w| util::frame_matches(&w[0], "main") && util::frame_matches(&w[1], name))
        });
        assert!(under_main > 0, "no {name} under main:\n{}", context());
    }
    let placeholders = folded.weight_where(|stack| stack.iter().any(|f| f.starts_with("prog+0x")));
    assert_eq!(
        placeholders,
        0,
        "unnamed frames of the program:\n{}",
        context()
    );
    assert!(
        folded.share_of_user_leaf("work_a") > 0.3,
        "work_a is not the main leaf:\n{}",
        context()
    );
}

#[test]
fn launched_program_only_in_its_mount_namespace_is_named() {
    if !util::require_gcc() || !require_unshare() {
        return;
    }
    let (_dir, mount_point, copy) = prepare(&fixture("split", Variant::CNoFramePointers));
    let sh = script(&mount_point, &copy, "exec \"$P\" serial 0.5");
    let command = ["unshare", "--mount", "sh", "-c", &sh].map(OsStr::new);
    let (folded, output) = util::flamegraph_folded(&[], &command);
    assert!(
        std::fs::read_dir(&mount_point).unwrap().next().is_none(),
        "the mount leaked into the test's namespace"
    );
    assert_split_named(&folded, &output.stderr);
}

/// Waits until process `pid` runs `comm` (it execs into it), panicking after 30 s.
fn wait_for_comm(pid: u32, comm: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let path = format!("/proc/{pid}/comm");
    while std::fs::read_to_string(&path)
        .unwrap_or_default()
        .trim_end()
        != comm
    {
        assert!(Instant::now() < deadline, "{pid} never ran {comm}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn attached_program_only_in_its_mount_namespace_is_named() {
    if !util::require_gcc() || !require_unshare() {
        return;
    }
    let (dir, mount_point, copy) = prepare(&fixture("split", Variant::CNoFramePointers));
    // unshare and sh exec: the pid started is the program's.
    let sh = script(&mount_point, &copy, "exec \"$P\" serial 1.5");
    let child = Command::new("unshare")
        .args(["--mount", "sh", "-c", &sh])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut child = util::KillOnDrop(child);
    let pid = child.0.id();
    wait_for_comm(pid, "prog");
    let out = dir.path().join("attached.folded");
    let mut cmd = util::flamegraph();
    cmd.arg("-p").arg(pid.to_string()).arg("-o").arg(&out);
    let output = util::run_ok(&mut cmd, Duration::from_secs(60));
    assert!(child.0.wait().unwrap().success());
    assert_split_named(&Folded::read(&out), &output.stderr);
}

/// A program deleted before it runs (executed through a descriptor, so its mapping's path is
/// `PATH (deleted)`): as root its file is read through `/proc/PID/map_files`.
#[test]
fn deleted_program_is_read_through_map_files() {
    if !util::require_gcc() || !util::require_root("reading /proc/PID/map_files") {
        return;
    }
    let (_dir, _, copy) = prepare(&fixture("split", Variant::CNoFramePointers));
    let prog = copy.with_file_name("prog");
    std::fs::rename(&copy, &prog).unwrap();
    let sh = format!(
        "exec 3< '{p}' && rm '{p}' && exec /proc/self/fd/3 serial 0.5",
        p = prog.display()
    );
    let (folded, output) = util::flamegraph_folded(&[], &["sh", "-c", &sh].map(OsStr::new));
    assert_split_named(&folded, &output.stderr);
}

/// A JIT in its own mount and pid namespaces writes `/tmp/perf-NSPID.map` in its own `/tmp`
/// (a tmpfs there) under its pid in that namespace: read as perf does, after it exited.
#[test]
fn jit_map_in_the_namespace_tmp_is_read() {
    if !cfg!(target_arch = "x86_64") {
        util::print_skip("the jit fixture is x86_64 code");
        return;
    }
    if !util::require_gcc() || !require_unshare() {
        return;
    }
    let (_dir, mount_point, copy) = prepare(&fixture("jit", Variant::CFramePointers));
    let sh = script(
        &mount_point,
        &copy,
        "mount -t tmpfs none /tmp && \"$P\" 0.5 && ls /tmp/perf-*.map",
    );
    let command = ["unshare", "--mount", "--pid", "--fork", "sh", "-c", &sh].map(OsStr::new);
    let (folded, output) = util::flamegraph_folded(&[], &command);
    let share = folded.share_of_user_leaf("jitted_spin");
    assert!(
        share > 0.5,
        "jitted_spin is {share:.2} of the leaves:\n{}\n{}",
        folded.summary(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A perf.data file recorded by perf from a program that still runs in its own mount
/// namespace: its file is read through `/proc/PID/root` once its build-id is the recorded one
/// (what perf itself does). perf's build-id cache is kept out (`-N`, an empty `$HOME`).
#[test]
fn perf_data_of_a_running_program_in_its_namespace_is_named() {
    if !util::require_gcc() || !require_unshare() || !util::require_perf() {
        return;
    }
    let (dir, mount_point, copy) = prepare(&fixture("split", Variant::CFramePointers));
    let sh = script(&mount_point, &copy, "exec \"$P\" serial 60");
    let child = Command::new("unshare")
        .args(["--mount", "sh", "-c", &sh])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let child = util::KillOnDrop(child);
    let pid = child.0.id().to_string();
    wait_for_comm(child.0.id(), "prog");
    let data = dir.path().join("perf.data");
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let mut perf = Command::new("perf");
    perf.env("HOME", &home)
        .args(["record", "-q", "-N", "-g", "-F", "997", "-p", &pid, "-o"])
        .arg(&data)
        .args(["--", "sleep", "1"]);
    util::run_ok(&mut perf, Duration::from_secs(60));
    let out = dir.path().join("perfdata.folded");
    let mut cmd = util::flamegraph();
    cmd.env("HOME", &home)
        .arg("--perfdata")
        .arg(&data)
        .arg("-o")
        .arg(&out);
    let output = util::run_ok(&mut cmd, Duration::from_secs(60));
    drop(child);
    assert_split_named(&Folded::read(&out), &output.stderr);
}
