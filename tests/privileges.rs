//! Limits and privileges, with the real binary: a low `RLIMIT_NOFILE` when attaching to a
//! many-threaded process, attaching as an unprivileged user to a process it may not profile,
//! and `--root` with the native backend (the recorder under sudo, the files the user's).
//!
//! Tests that need root (to switch users, to create a throwaway user) fail with `CI=true` and
//! skip with a one-line reason otherwise.

mod util;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use util::{fixture, flamegraph, run_with_timeout, Folded, Variant};

const TIMEOUT: Duration = Duration::from_secs(120);
/// The unprivileged user the attach tests switch to.
const NOBODY: u32 = 65534;
/// The throwaway user of the `--root` test (created with useradd, with a NOPASSWD sudo rule).
const SUDO_USER: &str = "fg-sudo-test";
/// Its sudo rule, removed when the test ends.
const SUDO_RULE: &str = "/etc/sudoers.d/flamegraph-test";

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Skips (or fails in CI) with `reason` when `ok` is false.
fn require(ok: bool, reason: &str) -> bool {
    if !ok {
        assert!(!in_ci(), "CI=true: {reason}");
        eprintln!("skipping: {reason}");
    }
    ok
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A temporary directory every user may write to (sticky, like /tmp).
fn shared_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    dir
}

/// `flamegraph ARGS` run as user `uid` (group `uid`, no supplementary groups), in `dir`.
fn flamegraph_as(uid: u32, dir: &Path, args: &[&str]) -> Output {
    let mut cmd = flamegraph();
    // std drops the supplementary groups when root sets a uid.
    cmd.current_dir(dir).args(args).uid(uid).gid(uid);
    run_with_timeout(&mut cmd, TIMEOUT)
}

/// Starts `flamegraph ARGS` attached by pid with `RLIMIT_NOFILE` set to `soft`/`hard`, lets it
/// record for a moment, then stops it with SIGINT; returns what it printed.
fn attach_with_nofile(dir: &Path, pid: u32, soft: u64, hard: u64) -> Output {
    let mut cmd = flamegraph();
    cmd.current_dir(dir)
        .args(["--call-graph", "fp", "-F", "99", "-o", "attach.folded"])
        .args(["-p", &pid.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // SAFETY: setrlimit is async-signal-safe and only changes this (forked) child's limits.
    unsafe {
        cmd.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            match libc::setrlimit(libc::RLIMIT_NOFILE, &limit) {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            }
        });
    }
    let mut profiler = util::KillOnDrop(cmd.spawn().unwrap());
    let stdout = drain(profiler.0.stdout.take().unwrap());
    let stderr = drain(profiler.0.stderr.take().unwrap());
    // Let it record for a moment (or fail on its own), then stop it like a Ctrl-C.
    let mut status = None;
    for round in 0..1200 {
        std::thread::sleep(Duration::from_millis(100));
        status = profiler.0.try_wait().unwrap();
        if status.is_some() {
            break;
        }
        if round == 20 {
            util::send_signal(profiler.0.id(), libc::SIGINT);
        }
    }
    let status = status.expect("the profiler did not stop within 120 s of SIGINT");
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

fn drain(mut pipe: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

/// 6 threads on every CPU are more events than 10 file descriptors allow.
const THREADS: &str = "6";
const LIMIT: u64 = 10;

/// busy_forever with [`THREADS`] threads at the lowest priority, so that on a loaded machine the
/// spinning threads do not starve the profiler.
fn many_threads() -> util::KillOnDrop {
    let prog = fixture("busy_forever", Variant::CFramePointers);
    let prog = prog.to_str().unwrap();
    util::spawn_ready(Path::new("nice"), &["-n", "19", prog, THREADS])
}

#[test]
fn low_nofile_soft_limit_is_raised_to_the_hard_limit() {
    let dir = tempfile::tempdir().unwrap();
    let target = many_threads();
    let out = attach_with_nofile(dir.path(), target.0.id(), LIMIT, 4096);
    assert!(out.status.success(), "{}", util::describe_output(&out));
    // The attached threads spin in spin_attached: their stacks pass through it (the leaf may be
    // a kernel interrupt, and under load the nice 19 target gives few samples).
    let folded = Folded::read(&dir.path().join("attach.folded"));
    let spinning = folded.weight_where(|s| s.iter().any(|f| f == "spin_attached"));
    assert!(
        folded.total() > 0 && spinning as f64 >= 0.9 * folded.total() as f64,
        "{spinning} of {} under spin_attached\n{}",
        folded.total(),
        folded.summary()
    );
}

#[test]
fn low_nofile_hard_limit_names_ulimit() {
    let dir = tempfile::tempdir().unwrap();
    let target = many_threads();
    let out = attach_with_nofile(dir.path(), target.0.id(), LIMIT, LIMIT);
    assert!(!out.status.success(), "{}", util::describe_output(&out));
    let err = stderr(&out);
    assert!(err.contains("attaching to 6 threads"), "{err}");
    assert!(err.contains("more than the limit of 10"), "{err}");
    assert!(err.contains("`ulimit -n "), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
}

/// Attaches as `nobody` to `pid` with `backend` and returns stderr, checking it failed in one
/// line that does not blame perf_event_paranoid.
fn attach_as_nobody(pid: u32, backend: &str) -> String {
    let dir = shared_dir();
    let out = flamegraph_as(
        NOBODY,
        dir.path(),
        &[
            "--backend",
            backend,
            "-o",
            "x.folded",
            "-p",
            &pid.to_string(),
        ],
    );
    assert!(!out.status.success(), "{}", util::describe_output(&out));
    // perf's own stderr passes through with perf-cli; ours is the last line.
    let err = stderr(&out);
    let ours = err.lines().last().unwrap_or_default().to_owned();
    assert!(
        ours.starts_with("flamegraph: error: cannot attach to pid"),
        "{backend}: {err}"
    );
    assert!(!ours.contains("paranoid"), "{backend}: {err}");
    assert!(ours.contains("--root"), "{backend}: {err}");
    ours
}

#[test]
fn attaching_to_another_users_process_names_the_owner() {
    if !require(is_root(), "switching to an unprivileged user needs root") {
        return;
    }
    let prog = fixture("busy_forever", Variant::CFramePointers);
    let target = util::spawn_ready(&prog, &[]);
    let err = attach_as_nobody(target.0.id(), "native");
    assert!(err.contains("it is owned by another user (uid 0)"), "{err}");
    if util::require_perf() {
        let err = attach_as_nobody(target.0.id(), "perf-cli");
        assert!(err.contains("it is owned by another user (uid 0)"), "{err}");
    }
}

#[test]
fn attaching_to_a_non_dumpable_process_says_so() {
    if !require(is_root(), "switching to an unprivileged user needs root") {
        return;
    }
    // A program its user may execute but not read runs non-dumpable (the kernel's rule against
    // reading the binary through /proc/PID/mem).
    let dir = shared_dir();
    let exec_only = dir.path().join("busy_exec_only");
    std::fs::copy(fixture("busy_forever", Variant::CFramePointers), &exec_only).unwrap();
    std::fs::set_permissions(&exec_only, std::fs::Permissions::from_mode(0o711)).unwrap();
    let mut cmd = Command::new(&exec_only);
    cmd.uid(NOBODY).gid(NOBODY).stdout(Stdio::piped());
    let mut target = util::KillOnDrop(cmd.spawn().unwrap());
    let mut line = String::new();
    let stdout = target.0.stdout.as_mut().unwrap();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
    assert_eq!(line, "ready\n");
    let err = attach_as_nobody(target.0.id(), "native");
    assert!(err.contains("it is not dumpable"), "{err}");
}

/// Installs sudo (CI only) and creates the throwaway user with a NOPASSWD rule, once.
/// Returns the user's uid, or why it cannot.
fn sudo_user() -> Result<u32, String> {
    static USER: OnceLock<Result<u32, String>> = OnceLock::new();
    USER.get_or_init(|| {
        if !is_root() {
            return Err("creating a user with a sudo rule needs root".into());
        }
        let has_sudo = || Command::new("sudo").arg("--version").output().is_ok();
        if !has_sudo() && in_ci() {
            let install = "apt-get install -y -qq sudo || (apt-get update -qq && apt-get install -y -qq sudo)";
            let _ = Command::new("sh")
                .args(["-c", install])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status();
        }
        if !has_sudo() {
            return Err("sudo is not installed (apt-get install sudo)".into());
        }
        let uid = || {
            Command::new("id")
                .args(["-u", SUDO_USER])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        };
        if uid().is_none() {
            let _ = Command::new("useradd")
                .args(["--no-create-home", "--user-group", SUDO_USER])
                .status();
        }
        let rule = format!("{SUDO_USER} ALL=(ALL) NOPASSWD: ALL\n");
        let rule_path = Path::new(SUDO_RULE);
        std::fs::write(rule_path, rule).map_err(|e| format!("cannot write the sudo rule: {e}"))?;
        std::fs::set_permissions(rule_path, std::fs::Permissions::from_mode(0o440)).unwrap();
        uid().ok_or_else(|| format!("useradd {SUDO_USER} failed"))
    })
    .clone()
}

#[test]
fn root_with_native_records_under_sudo_and_gives_the_files_back() {
    let uid = match sudo_user() {
        Ok(uid) => uid,
        Err(reason) => {
            require(false, &reason);
            return;
        }
    };
    // A NOPASSWD rule for everything must not outlive the test.
    struct RemoveRule;
    impl Drop for RemoveRule {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(SUDO_RULE);
        }
    }
    let _rule = RemoveRule;
    let dir = shared_dir();
    let split = dir.path().join("split");
    std::fs::copy(fixture("split", Variant::CFramePointers), &split).unwrap();
    let mut cmd = flamegraph();
    // `sh` is resolved with the user's PATH before sudo resets it.
    cmd.current_dir(dir.path())
        .env("PATH", format!("{}:/usr/bin:/bin", dir.path().display()))
        .args(["--root", "-o", "root.folded", "--", "sh", "-c"])
        .arg("id -u > who; exec ./split serial 0.5")
        .uid(uid)
        .gid(uid);
    let out = run_with_timeout(&mut cmd, TIMEOUT);
    assert!(out.status.success(), "{}", util::describe_output(&out));
    let err = stderr(&out);
    // The recorder ran as root: kernel frames were allowed.
    assert!(!err.contains("kernel frames are not shown"), "{err}");
    // The program ran as the user, and every file is the user's.
    let who = std::fs::read_to_string(dir.path().join("who")).unwrap();
    assert_eq!(who.trim(), uid.to_string());
    for name in ["who", "root.folded"] {
        let owner = std::fs::metadata(dir.path().join(name)).unwrap().uid();
        assert_eq!(owner, uid, "{name} belongs to the invoking user");
    }
    Folded::read(&dir.path().join("root.folded")).assert_leaf_share("work_a", 0.6, 8.0);
}

#[test]
fn root_without_sudo_names_sudo() {
    let dir = tempfile::tempdir().unwrap();
    // No sudo on this PATH: the message must name sudo, not perf.
    let out = run_with_timeout(
        flamegraph()
            .current_dir(dir.path())
            .env("PATH", dir.path())
            .env("PERF", "/usr/bin/perf")
            .args(["--root", "--backend", "perf-cli", "--", "/bin/true"]),
        TIMEOUT,
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("sudo is not installed"), "{err}");
    assert!(!err.contains("perf is not installed"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    if is_root() {
        return; // root records natively without sudo
    }
    let out = run_with_timeout(
        flamegraph()
            .current_dir(dir.path())
            .env("PATH", dir.path())
            .args(["--root", "--", "/bin/true"]),
        TIMEOUT,
    );
    assert!(
        stderr(&out).contains("sudo is not installed"),
        "{}",
        stderr(&out)
    );
}
