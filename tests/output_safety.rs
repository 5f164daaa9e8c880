//! Where the graph goes, checked with real runs as root and as `nobody`: special files are
//! written in place, `-o -` keeps the program's stdout apart, the program, the input and
//! directories are refused before anything runs, no file the tool creates has a predictable name
//! (symlinks planted at the old names are not followed), a hostile symlink in a sticky directory
//! is not followed, and no temporary file is left behind on success or failure.

mod util;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use util::{fixture, flamegraph, run_with_timeout, Folded, Variant};

const TIMEOUT: Duration = Duration::from_secs(120);

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_success(out: &Output) {
    assert!(out.status.success(), "{}", util::describe_output(out));
}

/// Asserts a failed run that printed exactly one line containing `needle`.
fn assert_refused(out: &Output, needle: &str) {
    let err = stderr(out);
    assert!(!out.status.success(), "{}", util::describe_output(out));
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
}

/// The exit_code fixture: burns 0.3 s in `burn`, prints `exit_code 0` on stdout, exits 0.
fn burner() -> PathBuf {
    fixture("exit_code", Variant::CFramePointers)
}

/// `flamegraph ARGS -- exit_code 0` in `dir`.
fn run_burner(dir: &Path, args: &[&OsStr]) -> Output {
    run_with_timeout(
        flamegraph()
            .current_dir(dir)
            .args(args)
            .arg("--")
            .arg(burner())
            .arg("0"),
        TIMEOUT,
    )
}

fn os<'a>(items: &'a [&'a str]) -> Vec<&'a OsStr> {
    items.iter().map(OsStr::new).collect()
}

/// The names in `dir`.
fn entries(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// True when running as root. When not: panics if `CI=true` (CI runs as root), else prints a
/// skip notice and returns false.
fn require_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test} needs root (chown, setpriv) and CI=true: run the tests as root on CI");
    }
    eprintln!("skipping {test}: it needs root (to chown files and run as nobody)");
    false
}

/// A shell script `prog` in `dir` that creates `ran` in `dir` when it runs.
fn marker_program(dir: &Path) -> PathBuf {
    let prog = dir.join("prog");
    let script = format!("#!/bin/sh\ntouch '{}/ran'\n", dir.display());
    std::fs::write(&prog, script).unwrap();
    std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
    prog
}

fn assert_svg(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    assert!(
        text.starts_with("<?xml") && text.trim_end().ends_with("</svg>"),
        "not an SVG: {:.200}",
        text
    );
    assert!(text.contains("burn"), "the SVG shows the burn frame");
}

#[test]
fn dev_null_stays_a_char_device() {
    let before = std::fs::metadata("/dev/null").unwrap();
    assert!(before.file_type().is_char_device());
    let dir = tempfile::tempdir().unwrap();
    let out = run_burner(dir.path(), &os(&["-o", "/dev/null"]));
    assert_success(&out);
    let after = std::fs::metadata("/dev/null").unwrap();
    assert!(after.file_type().is_char_device(), "/dev/null was replaced");
    assert_eq!((before.ino(), before.rdev()), (after.ino(), after.rdev()));
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
}

#[test]
fn fifo_stays_a_fifo_and_its_reader_gets_the_svg() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("graph.fifo");
    let status = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(status.success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(&fifo).unwrap())
    };
    let out = run_burner(dir.path(), &[OsStr::new("-o"), fifo.as_os_str()]);
    assert_success(&out);
    assert_svg(&reader.join().unwrap());
    let meta = std::fs::symlink_metadata(&fifo).unwrap();
    assert!(meta.file_type().is_fifo(), "the FIFO was replaced");
    assert_eq!(entries(dir.path()), names(&["graph.fifo"]));
}

#[test]
fn dash_writes_the_svg_to_stdout_and_the_program_output_to_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_burner(dir.path(), &os(&["-o", "-"]));
    assert_success(&out);
    assert_svg(&out.stdout);
    let err = stderr(&out);
    assert!(
        err.lines().any(|l| l == "exit_code 0"),
        "the program's stdout is on stderr: {err}"
    );
    assert!(err.contains("wrote standard output"), "{err}");
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
    let refused = run_burner(dir.path(), &os(&["-o", "-", "--open"]));
    assert_refused(&refused, "--open has nothing to open with -o -");
}

#[test]
fn dev_stdout_into_a_pipe_keeps_the_program_output_apart() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_burner(dir.path(), &os(&["-o", "/dev/stdout"]));
    assert_success(&out);
    assert_svg(&out.stdout);
    assert!(stderr(&out).lines().any(|l| l == "exit_code 0"));
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
}

#[test]
fn foreign_fifo_in_a_sticky_directory_is_refused_without_hanging() {
    if !require_root("foreign_fifo_in_a_sticky_directory_is_refused_without_hanging") {
        return;
    }
    let shared = tempfile::tempdir().unwrap();
    std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let fifo = shared.path().join("out.svg");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    std::os::unix::fs::lchown(&fifo, Some(65534), Some(65534)).unwrap();
    let work = tempfile::tempdir().unwrap();
    let marker = marker_program(work.path());
    let out = run_with_timeout(
        flamegraph()
            .current_dir(shared.path())
            .args(["-o", "out.svg", "--"])
            .arg(&marker),
        TIMEOUT,
    );
    assert_refused(
        &out,
        "a FIFO owned by another user in the shared sticky directory",
    );
    assert!(!work.path().join("ran").exists(), "the program ran");
}

#[test]
fn dash_with_perf_cli_keeps_perf_and_program_output_off_stdout() {
    if !util::require_perf() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = run_burner(dir.path(), &os(&["--backend", "perf-cli", "-o", "-"]));
    assert_success(&out);
    assert_svg(&out.stdout);
    assert!(stderr(&out).lines().any(|l| l == "exit_code 0"));
}

#[test]
fn the_profiled_program_is_refused_as_output_before_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let prog = marker_program(dir.path());
    let original = std::fs::read(&prog).unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&prog, &link).unwrap();
    let path_var = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let elsewhere = tempfile::tempdir().unwrap();
    let cases: [(&OsStr, &OsStr); 3] = [
        // As given, through a symlink, and found by a PATH lookup from another directory.
        (OsStr::new("./prog"), OsStr::new("./prog")),
        (link.as_os_str(), OsStr::new("./prog")),
        (prog.as_os_str(), OsStr::new("prog")),
    ];
    for (output, program) in cases {
        let cwd = if program == "prog" {
            elsewhere.path()
        } else {
            dir.path()
        };
        let out = run_with_timeout(
            flamegraph()
                .current_dir(cwd)
                .env("PATH", &path_var)
                .arg("-o")
                .arg(output)
                .arg("--")
                .arg(program),
            TIMEOUT,
        );
        assert_refused(&out, "this is the program being profiled");
        assert!(!dir.path().join("ran").exists(), "the program ran");
        assert_eq!(
            std::fs::read(&prog).unwrap(),
            original,
            "the program changed"
        );
    }
    assert_eq!(entries(dir.path()), names(&["prog", "link"]));
    assert!(entries(elsewhere.path()).is_empty());
}

#[test]
fn the_perfdata_input_is_refused_as_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("perf.data");
    std::fs::write(&input, "not really perf data").unwrap();
    let out = run_with_timeout(
        flamegraph()
            .current_dir(dir.path())
            .args(["--perfdata", "perf.data", "-o", "perf.data"]),
        TIMEOUT,
    );
    assert_refused(&out, "this is the --perfdata input");
    assert_eq!(
        std::fs::read_to_string(&input).unwrap(),
        "not really perf data"
    );
    assert_eq!(entries(dir.path()), names(&["perf.data"]));
}

#[test]
fn a_directory_is_refused_before_the_program_runs() {
    let dir = tempfile::tempdir().unwrap();
    let prog = marker_program(dir.path());
    std::fs::create_dir(dir.path().join("somedir")).unwrap();
    let out = run_with_timeout(
        flamegraph()
            .current_dir(dir.path())
            .args(["-o", "somedir", "--"])
            .arg(&prog),
        TIMEOUT,
    );
    assert_refused(&out, "-o somedir: is a directory");
    assert!(stderr(&out).contains("somedir/flamegraph.svg"));
    assert!(!dir.path().join("ran").exists(), "the program ran");
    assert!(entries(&dir.path().join("somedir")).is_empty());
}

/// Symlinks at the names flamegraph 0.7 used (`OUT.tmpPID`, `.flamegraph-probe-PID` beside the
/// output, `$TMPDIR/flamegraph-PID.folded`) for the next pids, all pointing at one victim file;
/// removed when dropped.
struct PlantedLinks {
    links: Vec<PathBuf>,
}

impl PlantedLinks {
    fn plant(out_dir: &Path, out_name: &str, victim: &Path) -> PlantedLinks {
        let last: u32 = std::fs::read_to_string("/proc/sys/kernel/ns_last_pid")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let mut links = Vec::new();
        for pid in last + 1..last + 1500 {
            links.push(out_dir.join(format!("{out_name}.tmp{pid}")));
            links.push(out_dir.join(format!(".flamegraph-probe-{pid}")));
            links.push(std::env::temp_dir().join(format!("flamegraph-{pid}.folded")));
        }
        // Names another run may have left behind are not ours to plant (or remove).
        links.retain(|l| std::fs::symlink_metadata(l).is_err());
        for link in &links {
            std::os::unix::fs::symlink(victim, link).unwrap();
        }
        PlantedLinks { links }
    }

    fn assert_intact(&self) {
        for link in &self.links {
            let meta = std::fs::symlink_metadata(link).unwrap();
            assert!(meta.file_type().is_symlink(), "{} replaced", link.display());
        }
    }
}

impl Drop for PlantedLinks {
    fn drop(&mut self) {
        for link in &self.links {
            let _ = std::fs::remove_file(link);
        }
    }
}

#[test]
fn symlinks_planted_at_predictable_names_are_not_followed() {
    let victim_dir = tempfile::tempdir().unwrap();
    let victim = victim_dir.path().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let planted = PlantedLinks::plant(dir.path(), "out.svg", &victim);
    let before = entries(dir.path());

    let out = run_burner(dir.path(), &os(&["-o", "out.svg"]));
    assert_success(&out);
    assert_svg(&std::fs::read(dir.path().join("out.svg")).unwrap());

    // A failing post-process writes the rescue file: beside the output, never at a fixed name.
    let out = run_burner(
        dir.path(),
        &os(&["-o", "out.svg", "--post-process", "false"]),
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("saved to"), "{}", stderr(&out));

    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    planted.assert_intact();
    let added: Vec<String> = entries(dir.path()).difference(&before).cloned().collect();
    assert_eq!(
        added.len(),
        2,
        "only out.svg and the rescue file: {added:?}"
    );
    assert!(added.contains(&"out.svg".to_owned()), "{added:?}");
}

#[test]
fn failing_post_process_leaves_no_temp_file_and_rescues_beside_the_output() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("graphs")).unwrap();
    let out = run_burner(
        dir.path(),
        &os(&["-o", "graphs/out.svg", "--post-process", "false"]),
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    let files: Vec<String> = entries(&dir.path().join("graphs")).into_iter().collect();
    assert_eq!(files.len(), 1, "only the rescue file: {files:?}");
    let name = &files[0];
    assert!(
        name.starts_with("flamegraph-") && name.ends_with(".folded"),
        "{name}"
    );
    let rescued = dir.path().join("graphs").join(name);
    let canonical = rescued.canonicalize().unwrap();
    assert!(
        err.contains(&format!("saved to {}", canonical.display())),
        "the error names the rescue file {}: {err}",
        canonical.display()
    );
    Folded::read(&rescued).assert_leaf_share("burn", 0.9, 10.0);
    assert_eq!(entries(dir.path()), names(&["graphs"]));
}

#[test]
fn success_leaves_only_the_output() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("out.folded"), "old").unwrap();
    std::fs::set_permissions(
        dir.path().join("out.folded"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    let out = run_burner(dir.path(), &os(&["-o", "out.folded"]));
    assert_success(&out);
    assert_eq!(entries(dir.path()), names(&["out.folded"]));
    Folded::read(&dir.path().join("out.folded")).assert_leaf_share("burn", 0.9, 10.0);
    let mode = std::fs::metadata(dir.path().join("out.folded"))
        .unwrap()
        .mode();
    assert_eq!(mode & 0o777, 0o640, "the replaced file keeps its mode");
}

#[test]
fn hostile_symlink_in_a_sticky_directory_is_not_followed() {
    if !require_root("hostile_symlink_in_a_sticky_directory_is_not_followed") {
        return;
    }
    let victim_dir = tempfile::tempdir().unwrap();
    let victim = victim_dir.path().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    // A /tmp of our own: sticky and world-writable, owned by root.
    let shared = tempfile::tempdir().unwrap();
    std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let marker = marker_program(victim_dir.path());
    let trap = shared.path().join("out.svg");
    std::os::unix::fs::symlink(&victim, &trap).unwrap();
    std::os::unix::fs::lchown(&trap, Some(65534), Some(65534)).unwrap();
    let out = run_with_timeout(
        flamegraph()
            .current_dir(shared.path())
            .args(["-o", "out.svg", "--"])
            .arg(&marker),
        TIMEOUT,
    );
    assert_refused(&out, "symlink owned by another user");
    assert!(!victim_dir.path().join("ran").exists(), "the program ran");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    // The same link owned by us is followed, as cp would: the target gets the graph.
    std::os::unix::fs::lchown(&trap, Some(0), Some(0)).unwrap();
    let out = run_burner(shared.path(), &os(&["-o", "out.svg"]));
    assert_success(&out);
    assert!(std::fs::symlink_metadata(&trap)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_svg(&std::fs::read(&victim).unwrap());
    assert_eq!(entries(shared.path()), names(&["out.svg"]));
}

/// Runs the built flamegraph as `nobody` in `dir` with `args`.
fn run_as_nobody(dir: &Path, args: &[&OsStr]) -> Output {
    run_with_timeout(
        Command::new("setpriv")
            .current_dir(dir)
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_flamegraph"))
            .args(args),
        TIMEOUT,
    )
}

#[test]
fn unprivileged_user_is_refused_an_unwritable_directory_before_running() {
    if !require_root("unprivileged_user_is_refused_an_unwritable_directory_before_running") {
        return;
    }
    // Root's own directory (0755): nobody may not create files in it.
    let locked = tempfile::tempdir().unwrap();
    std::fs::set_permissions(locked.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let work = tempfile::tempdir().unwrap();
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let prog = marker_program(work.path());
    let burner_copy = work.path().join("exit_code");
    std::fs::copy(burner(), &burner_copy).unwrap();
    let output = locked.path().join("out.svg");
    let out = run_as_nobody(
        work.path(),
        &[
            OsStr::new("-o"),
            output.as_os_str(),
            OsStr::new("--"),
            prog.as_os_str(),
        ],
    );
    assert_refused(
        &out,
        &format!(
            "cannot write the output file in {}: Permission denied",
            locked.path().display()
        ),
    );
    assert!(!work.path().join("ran").exists(), "the program ran");
    assert!(entries(locked.path()).is_empty());

    // Writing to a device in place works for nobody too, and leaves it a device.
    let out = run_as_nobody(
        work.path(),
        &[
            OsStr::new("-o"),
            OsStr::new("/dev/null"),
            OsStr::new("--"),
            burner_copy.as_os_str(),
            OsStr::new("0"),
        ],
    );
    assert_success(&out);
    assert!(std::fs::metadata("/dev/null")
        .unwrap()
        .file_type()
        .is_char_device());
}

#[test]
fn os_errors_are_said_once() {
    let out = run_with_timeout(
        flamegraph().args(["--perfdata", "/nonexistent/perf.data"]),
        TIMEOUT,
    );
    assert_refused(&out, "cannot read /nonexistent/perf.data");
    assert_eq!(stderr(&out).matches("No such file or directory").count(), 1);
    let out = run_with_timeout(
        flamegraph().args(["-o", "/nonexistent-dir/x.svg", "--", "true"]),
        TIMEOUT,
    );
    assert_refused(
        &out,
        "cannot write the output file in /nonexistent-dir: No such file or directory",
    );
    assert_eq!(stderr(&out).matches("No such file or directory").count(), 1);
}

#[test]
fn open_without_a_graphical_session_says_where_the_graph_is() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_with_timeout(
        flamegraph()
            .current_dir(dir.path())
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .env_remove("BROWSER")
            .env_remove("WSL_DISTRO_NAME")
            .args(["--open", "-o", "o.svg", "--"])
            .arg(burner())
            .arg("0"),
        TIMEOUT,
    );
    let path = dir.path().canonicalize().unwrap().join("o.svg");
    assert_refused(
        &out,
        &format!(
            "--open: cannot open {}: no graphical session",
            path.display()
        ),
    );
    assert_svg(&std::fs::read(&path).unwrap());
    assert_eq!(entries(dir.path()), names(&["o.svg"]), "nothing rescued");
}
