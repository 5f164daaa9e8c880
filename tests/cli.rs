//! The `flamegraph` command line, end to end, with the perf-cli and dtrace backends: every
//! flamegraph 0.6.15 option that shapes the result, and each error message, triggered for real.

mod util;

use std::ffi::OsStr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use util::{fixture, flamegraph, run_with_timeout, Folded, Variant};

const TIMEOUT: Duration = Duration::from_secs(120);

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `flamegraph ARGS` in `dir` and returns its output.
fn run_in(dir: &Path, args: &[&OsStr]) -> Output {
    run_with_timeout(flamegraph().current_dir(dir).args(args), TIMEOUT)
}

fn os<'a>(items: &'a [&'a str]) -> Vec<&'a OsStr> {
    items.iter().map(OsStr::new).collect()
}

fn assert_success(out: &Output) {
    assert!(out.status.success(), "{}", util::describe_output(out));
}

/// Records the serial split fixture once with perf and returns the perf.data path.
fn recorded_split(dir: &Path) -> std::path::PathBuf {
    let split = fixture("split", Variant::CFramePointers);
    let data = dir.join("split.data");
    let out = run_in(
        dir,
        &[
            OsStr::new("--backend"),
            OsStr::new("perf-cli"),
            OsStr::new("-c"),
            OsStr::new(&format!("record -F 997 -g -o {}", data.display())),
            OsStr::new("-o"),
            OsStr::new("first.folded"),
            OsStr::new("--"),
            split.as_os_str(),
            OsStr::new("serial"),
            OsStr::new("1"),
        ],
    );
    assert_success(&out);
    data
}

fn split_shares_with_perf_cli(mode: &str) {
    if !util::require_perf() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let split = fixture("split", Variant::CFramePointers);
    let out = run_in(
        dir.path(),
        &[
            OsStr::new("--backend"),
            OsStr::new("perf-cli"),
            OsStr::new("-o"),
            OsStr::new("out.folded"),
            OsStr::new("--"),
            split.as_os_str(),
            OsStr::new(mode),
            OsStr::new("1"),
        ],
    );
    assert_success(&out);
    let folded = Folded::read(&dir.path().join("out.folded"));
    // 60/30/10 by construction, a point for startup and the driver loop, and the tolerance the
    // sample count supports; perf as root records kernel frames: they count for the user leaf.
    folded.assert_user_leaf_share("work_a", 0.60, 1.0);
    folded.assert_user_leaf_share("work_b", 0.30, 1.0);
    folded.assert_user_leaf_share("work_c", 0.10, 1.0);
    // flamegraph 0.6 leaves perf.data in the working directory; so does perf-cli.
    assert!(dir.path().join("perf.data").exists());
}

#[test]
fn perf_cli_split_serial() {
    split_shares_with_perf_cli("serial");
}

#[test]
fn perf_cli_split_threads() {
    split_shares_with_perf_cli("threads");
}

#[test]
fn perf_cli_split_fork() {
    split_shares_with_perf_cli("fork");
}

#[test]
fn graph_options_reach_the_svg() {
    if !util::require_perf() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = recorded_split(dir.path());
    let svg_with = |extra: &[&str]| -> String {
        let mut args = os(&["--backend", "perf-cli", "-o", "g.svg", "--perfdata"]);
        args.push(data.as_os_str());
        args.extend(os(extra));
        let out = run_in(dir.path(), &args);
        assert_success(&out);
        std::fs::read_to_string(dir.path().join("g.svg")).unwrap()
    };
    let svg = svg_with(&[
        "--title",
        "My <title>",
        "--subtitle",
        "sub & title",
        "--notes",
        "a note",
    ]);
    assert!(svg.contains("My &lt;title&gt;"), "title");
    assert!(svg.contains("sub &amp; title"), "subtitle");
    assert!(svg.contains("a note"), "notes");
    let titles = util::parse_svg_titles(&svg);
    let a = titles
        .iter()
        .find(|t| t.0 == "work_a")
        .expect("work_a in the SVG");
    // The same recording folded: its sample count gives the tolerance of the 60% share.
    let tolerance = Folded::read(&dir.path().join("first.folded")).sampling_tolerance(0.6, 1.0);
    assert!(
        (a.2 - 60.0).abs() <= tolerance,
        "work_a {a:?}, tolerance {tolerance:.1}"
    );

    let svg = svg_with(&["--inverted"]);
    assert!(
        svg.contains("inverted = true"),
        "--inverted draws an icicle graph"
    );
    let svg = svg_with(&["--image-width", "777"]);
    assert!(svg.contains(r#"width="777""#), "--image-width");
    let svg = svg_with(&["--palette", "java"]);
    assert!(svg.contains("rgb(") && svg.contains("inverted = false"));
    let svg = svg_with(&["--flamechart"]);
    assert!(svg.contains("Flame Chart"), "--flamechart titles the chart");
    let svg = svg_with(&["--reverse"]);
    let first_level: Vec<_> = util::parse_svg_titles(&svg);
    assert!(
        first_level.iter().any(|t| t.0 == "work_a"),
        "--reverse keeps the functions"
    );
    // A large --min-width leaves only the widest frames (inferno's scale).
    let svg = svg_with(&["--min-width", "50"]);
    let titles = util::parse_svg_titles(&svg);
    assert!(
        titles.iter().all(|t| t.0 != "work_c"),
        "work_c (10%) is dropped"
    );
    assert!(titles.iter().any(|t| t.0 == "work_a"), "work_a (60%) stays");
    // --deterministic: the same input gives byte-identical SVGs.
    assert_eq!(
        svg_with(&["--deterministic"]),
        svg_with(&["--deterministic"])
    );
    // Bad palette names are refused by the parser.
    let out = run_in(dir.path(), &os(&["--palette", "plaid", "--", "true"]));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("possible values"), "{}", stderr(&out));
}

#[test]
fn post_process_folded_output_and_skip_after() {
    if !util::require_perf() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = recorded_split(dir.path());
    let mut args = os(&[
        "--backend",
        "perf-cli",
        "-o",
        "pp.svg",
        "--post-process",
        "tee stacks.folded",
        "--perfdata",
    ]);
    args.push(data.as_os_str());
    assert_success(&run_in(dir.path(), &args));
    let tee = Folded::read(&dir.path().join("stacks.folded"));
    tee.assert_user_leaf_share("work_a", 0.60, 1.0);
    assert!(std::fs::read_to_string(dir.path().join("pp.svg"))
        .unwrap()
        .contains("<svg"));

    let mut args = os(&[
        "--backend",
        "perf-cli",
        "-o",
        "renamed.folded",
        "--post-process",
        "sed s/work_b/renamed_b/",
        "--perfdata",
    ]);
    args.push(data.as_os_str());
    assert_success(&run_in(dir.path(), &args));
    let renamed = Folded::read(&dir.path().join("renamed.folded"));
    renamed.assert_user_leaf_share("renamed_b", 0.30, 1.0);

    let mut args = os(&[
        "--backend",
        "perf-cli",
        "-o",
        "skip.folded",
        "--skip-after",
        "main",
        "--perfdata",
    ]);
    args.push(data.as_os_str());
    assert_success(&run_in(dir.path(), &args));
    let skipped = Folded::read(&dir.path().join("skip.folded"));
    let rooted_at_main = skipped.share_where(|s| s.first().map(String::as_str) == Some("main"));
    assert!(
        rooted_at_main > 0.95,
        "--skip-after main roots stacks at main:\n{}",
        skipped.summary()
    );
}

#[test]
fn custom_perf_command_is_shell_split() {
    if !util::require_perf() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let split = fixture("split", Variant::CFramePointers);
    let out = run_in(
        dir.path(),
        &[
            OsStr::new("-c"),
            OsStr::new("record -F 499 -g -o 'my data.perf'"),
            OsStr::new("-o"),
            OsStr::new("c.folded"),
            OsStr::new("--"),
            split.as_os_str(),
            OsStr::new("serial"),
            OsStr::new("0.5"),
        ],
    );
    assert_success(&out);
    assert!(
        dir.path().join("my data.perf").exists(),
        "the quoted -o path is one argument"
    );
    Folded::read(&dir.path().join("c.folded")).assert_user_leaf_share("work_a", 0.60, 1.0);
}

#[test]
fn custom_command_with_frequency_is_refused() {
    let out = run_in(
        Path::new("."),
        &os(&["-c", "record -g", "-F", "99", "--", "true"]),
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot pass both a custom command (-c) and a frequency (-F)"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn missing_perf_names_the_packages() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_with_timeout(
        flamegraph()
            .current_dir(dir.path())
            .env("PERF", "/nonexistent/perf")
            .args(["--backend", "perf-cli", "--", "true"]),
        TIMEOUT,
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("/nonexistent/perf is not installed"), "{err}");
    assert!(
        err.contains("linux-perf") && err.contains("linux-tools-$(uname -r)"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");
}

#[test]
fn missing_program_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    for backend in ["perf-cli", "dtrace"] {
        let out = run_in(
            dir.path(),
            &os(&["--backend", backend, "--", "./no-such-program"]),
        );
        assert!(!out.status.success());
        assert_eq!(
            stderr(&out).trim(),
            "flamegraph: error: cannot run ./no-such-program: No such file or directory"
        );
    }
}

#[test]
fn nothing_to_profile_and_conflicting_workloads() {
    let out = run_in(Path::new("."), &[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("nothing to profile"),
        "{}",
        stderr(&out)
    );
    let out = run_in(Path::new("."), &os(&["-p", "1", "--", "true"]));
    assert!(
        stderr(&out).contains("give only one of"),
        "{}",
        stderr(&out)
    );
    let out = run_in(Path::new("."), &os(&["-p", "1,x"]));
    assert!(
        stderr(&out).contains("\"x\" is not a process id"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn no_samples_suggests_a_higher_frequency() {
    if !util::require_perf() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = run_in(
        dir.path(),
        &os(&["--backend", "perf-cli", "-F", "1", "--", "true"]),
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("no samples were recorded") && err.contains("-F"),
        "{err}"
    );
}

#[test]
fn unprivileged_attach_to_another_users_process_names_the_owner() {
    if !util::require_perf() || !util::require_root("switching to user nobody with setpriv") {
        return;
    }
    // perf blames perf_event_paranoid; the cause is that pid 1 belongs to root.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let out = run_with_timeout(
        std::process::Command::new("setpriv")
            .current_dir(dir.path())
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_flamegraph"))
            .args(["--backend", "perf-cli", "-p", "1"]),
        TIMEOUT,
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    let ours = err.lines().last().unwrap_or_default();
    assert!(
        ours.starts_with("flamegraph: error: cannot attach to pid 1: it is owned by another user"),
        "{err}"
    );
    assert!(ours.contains("--root"), "{err}");
}

#[test]
fn failing_program_still_gets_its_graph() {
    if !util::require_perf() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let prog = fixture("exit_code", Variant::CFramePointers);
    let args = |extra: &'static [&'static str]| -> Vec<&OsStr> {
        let mut a: Vec<&OsStr> = ["--backend", "perf-cli", "-o", "fail.folded"]
            .iter()
            .chain(extra)
            .map(OsStr::new)
            .collect();
        a.push(OsStr::new("--"));
        a.push(prog.as_os_str());
        a.push(OsStr::new("3"));
        a
    };
    let out = run_in(dir.path(), &args(&[]));
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        util::describe_output(&out)
    );
    assert!(
        stderr(&out).contains("the profiled program failed (exit status: 3)"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("--ignore-status"));
    Folded::read(&dir.path().join("fail.folded")).assert_user_leaf_share_at_least("burn", 0.9);
    std::fs::remove_file(dir.path().join("fail.folded")).unwrap();
    let out = run_in(dir.path(), &args(&["--ignore-status"]));
    assert_success(&out);
    assert!(dir.path().join("fail.folded").exists());
}

#[test]
fn ctrl_c_stops_the_program_and_draws_the_graph() {
    if !util::require_perf() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let prog = fixture("busy_forever", Variant::CFramePointers);
    let child = flamegraph()
        .current_dir(dir.path())
        .args(["--backend", "perf-cli", "-o", "int.folded", "--"])
        .arg(&prog)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let mut child = util::KillOnDrop(child);
    util::wait_for_ready_then_spin(&mut child);
    // Ctrl-C in a terminal signals the whole foreground process group.
    // SAFETY: kill(2) with a negative pid signals the group this test started.
    unsafe { libc::kill(-(child.0.id() as i32), libc::SIGINT) };
    let status = child.0.wait().unwrap();
    assert!(
        status.success(),
        "interrupted by the user is not a failure: {status}"
    );
    Folded::read(&dir.path().join("int.folded"))
        .assert_user_leaf_share_at_least("spin_attached", 0.95);
}

#[test]
fn attach_by_pid_with_perf_cli() {
    if !util::require_perf() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let prog = fixture("busy_forever", Variant::CFramePointers);
    let mut target = util::spawn_ready(&prog, &[]);
    let pid = target.0.id().to_string();
    let profiler = flamegraph()
        .current_dir(dir.path())
        .args(["--backend", "perf-cli", "-o", "pid.folded", "-p", &pid])
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let mut profiler = util::KillOnDrop(profiler);
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: kill(2) with a negative pid signals the profiler's own group only.
    unsafe { libc::kill(-(profiler.0.id() as i32), libc::SIGINT) };
    assert!(profiler.0.wait().unwrap().success());
    Folded::read(&dir.path().join("pid.folded"))
        .assert_user_leaf_share_at_least("spin_attached", 0.95);
    assert!(
        target.0.try_wait().unwrap().is_none(),
        "the attached process keeps running"
    );
}

#[test]
fn dtrace_backend_replays_a_recorded_aggregation() {
    let dir = tempfile::tempdir().unwrap();
    // 0.6.15 wrote cargo-flamegraph.stacks in the current directory, where another user could
    // have planted a symlink; ours goes to a private directory.
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "keep").unwrap();
    std::os::unix::fs::symlink(&victim, dir.path().join("cargo-flamegraph.stacks")).unwrap();
    let out = run_with_timeout(
        flamegraph()
            .current_dir(dir.path())
            .env("DTRACE", util::fake_dtrace())
            .args(["--backend", "dtrace", "-o", "d.folded", "--", "true"]),
        TIMEOUT,
    );
    assert_success(&out);
    let folded = Folded::read(&dir.path().join("d.folded"));
    folded.assert_leaf_share("work_a", 0.60, 0.5);
    folded.assert_leaf_share("work_b", 0.30, 0.5);
    folded.assert_leaf_share("work_c", 0.10, 0.5);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
    assert!(dir.path().join("cargo-flamegraph.stacks").is_symlink());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        3,
        "no file left behind"
    );
    let out = run_with_timeout(
        flamegraph()
            .current_dir(dir.path())
            .env("DTRACE", "/nonexistent/dtrace")
            .args(["--backend", "dtrace", "--", "true"]),
        TIMEOUT,
    );
    assert!(
        stderr(&out).contains("/nonexistent/dtrace is not installed"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn completions_are_generated() {
    let out = run_in(Path::new("."), &os(&["--completions", "bash"]));
    assert_success(&out);
    let script = String::from_utf8_lossy(&out.stdout);
    assert!(script.contains("--perfdata") && script.contains("--post-process"));
}
