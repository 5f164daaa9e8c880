//! Event choice (`-e/--event`, `--period`) on real recordings.
//!
//! `fixtures/c/page_touch.c` writes one byte to each page of a fresh mapping advised
//! `MADV_NOHUGEPAGE` in `touch_pages`: each write is one page fault, so `-e page-faults` with
//! period 1 counts exactly the pages under `touch_pages` (the tolerance allows for a fault of
//! the stack or of lazily bound code landing there). The fixture touches a few pages at a time
//! with pauses, so that the count does not depend on how fast the profiler drains its buffers.
//!
//! The refusals are checked for what they must be: one line on stderr that names the cause and
//! the alternative, a non-zero exit, no panic. A machine with a hardware PMU (where `cycles`
//! opens) or with kernel access for `nobody` (paranoid <= 1) must record instead.

mod util;

use std::ffi::OsStr;
use std::process::Output;
use std::time::Duration;

use util::{fixture, Folded, Variant};

/// Pages `page_touch` touches, and how many at a time.
const PAGES: u64 = 2000;
const BATCH: &str = "8";

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The samples the profiler says it lost (`..., N lost, ...` in its summary line), 0 if none.
fn reported_lost(err: &str) -> u64 {
    err.lines()
        .filter(|line| line.contains(" samples (") && line.contains(" lost"))
        .find_map(|line| {
            let before = line.split(" lost").next()?;
            before.rsplit(", ").next()?.trim().parse().ok()
        })
        .unwrap_or(0)
}

/// Asserts a refusal: non-zero exit, exactly one line on stderr, containing every `needle`.
#[track_caller]
fn assert_one_line_error(out: &Output, needles: &[&str]) {
    let err = stderr(out);
    assert!(
        !out.status.success(),
        "succeeded:\n{}",
        util::describe_output(out)
    );
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "not one line: {err}");
    for needle in needles {
        assert!(err.contains(needle), "no {needle:?} in: {err}");
    }
}

/// `flamegraph ARGS -o out.folded -o out.svg -- page_touch PAGES BATCH` in a temporary
/// directory: the folded stacks, the SVG and the profiler's output.
fn record_page_touch(args: &[&str]) -> (Folded, String, Output) {
    let prog = fixture("page_touch", Variant::CNoFramePointers);
    let dir = tempfile::tempdir().unwrap();
    let out = util::run_ok(
        util::flamegraph()
            .current_dir(dir.path())
            .args(args)
            .args(["-o", "out.folded", "-o", "out.svg", "--"])
            .arg(&prog)
            .args([&PAGES.to_string(), BATCH]),
        Duration::from_secs(120),
    );
    let folded = Folded::read(&dir.path().join("out.folded"));
    let svg = std::fs::read_to_string(dir.path().join("out.svg")).unwrap();
    (folded, svg, out)
}

/// Checks that the page faults under `touch_pages` are the pages touched (within 10%), and that
/// the SVG and the summary count page-faults, not samples.
///
/// On a loaded machine (the suite beside two busy loops on 2 cores) the draining thread can still
/// fall behind the ring buffers, and the profiler then reports the samples it lost: those count
/// as faults too, since the summary states them; most of them must still be in the graph.
fn check_page_faults(folded: &Folded, svg: &str, out: &Output) {
    let touched = folded.weight_where(|s| s.iter().any(|f| util::frame_matches(f, "touch_pages")));
    let err = stderr(out);
    let lost = reported_lost(&err);
    let counted = (touched + lost) as f64;
    assert!(
        counted >= 0.9 * PAGES as f64
            && counted <= 1.1 * PAGES as f64
            && touched as f64 >= 0.5 * PAGES as f64,
        "{touched} page faults under touch_pages and {lost} lost, expected {PAGES} ± 10% in all, \
         most in the graph\n{}\n{err}",
        folded.summary()
    );
    let titles = util::parse_svg_titles(svg);
    let title = titles.iter().find(|(name, ..)| name == "touch_pages");
    assert!(
        title.is_some_and(|(_, n, _)| *n == touched),
        "SVG tooltip of touch_pages: {title:?}, folded {touched}"
    );
    assert!(
        svg.contains(" page-faults, "),
        "the SVG does not count page-faults"
    );
    assert!(
        err.contains("page-faults)") && err.contains("of page-faults:"),
        "the summary does not count page-faults: {err}"
    );
}

#[test]
fn page_faults_period_1_counts_every_touched_page() {
    if !util::require_gcc() {
        return;
    }
    let (folded, svg, out) = record_page_touch(&["-e", "page-faults", "--period", "1"]);
    check_page_faults(&folded, &svg, &out);
}

#[test]
fn faults_alias_samples_every_fault_by_default() {
    if !util::require_gcc() {
        return;
    }
    // No --period and no -F: software count events are sampled at every occurrence.
    let (folded, svg, out) = record_page_touch(&["-e", "faults", "-v"]);
    assert!(stderr(&out).contains("every 1 events"), "{}", stderr(&out));
    check_page_faults(&folded, &svg, &out);
}

/// `--period 10`: one sample every tenth fault, each weighing 10 (the kernel would sample every
/// fault of a software event if its samples asked for their period).
#[test]
fn period_n_samples_every_nth_fault() {
    if !util::require_gcc() {
        return;
    }
    let (folded, _, out) = record_page_touch(&["-e", "minor-faults", "--period", "10"]);
    let touched = folded.weight_where(|s| s.iter().any(|f| util::frame_matches(f, "touch_pages")));
    let err = stderr(&out);
    assert!(
        touched as f64 >= 0.9 * PAGES as f64 && touched as f64 <= 1.1 * PAGES as f64,
        "{touched} minor faults under touch_pages, expected {PAGES} ± 10%\n{err}"
    );
    assert!(
        folded.stacks.iter().all(|(_, w)| w % 10 == 0),
        "{}",
        folded.summary()
    );
    // "recorded 1.2 s of minor-faults: 205 samples (2050 minor-faults), ..."
    let counts = err
        .split_once("of minor-faults: ")
        .and_then(|(_, rest)| rest.split_once(" minor-faults)"))
        .and_then(|(counts, _)| counts.split_once(" samples ("))
        .and_then(|(n, e)| Some((n.parse::<u64>().ok()?, e.parse::<u64>().ok()?)));
    assert!(
        counts.is_some_and(|(samples, events)| events == 10 * samples),
        "{err}"
    );
}

/// The page faults under `touch_pages` are the pages touched (within 10%), or fewer when the
/// recording says it lost events: perf's own ring can overflow on a loaded machine at period 1
/// ("lost N chunks", "LOST n events"), and then fewer faults is the truth of its recording.
fn assert_touched_unless_lost(folded: &Folded, out: &Output) {
    let touched = folded.weight_where(|s| s.iter().any(|f| util::frame_matches(f, "touch_pages")));
    let lost = String::from_utf8_lossy(&out.stderr)
        .to_lowercase()
        .contains("lost");
    assert!(
        (touched as f64 >= 0.9 * PAGES as f64 || lost) && touched as f64 <= 1.1 * PAGES as f64,
        "{touched} page faults under touch_pages, expected {PAGES} ± 10%\n{}",
        util::describe_output(out)
    );
}

#[test]
fn perf_cli_backend_passes_the_event_and_period() {
    if !util::require_gcc() || !util::require_perf() {
        return;
    }
    let args = [
        "--backend",
        "perf-cli",
        "-e",
        "page-faults",
        "--period",
        "1",
    ];
    let (folded, svg, out) = record_page_touch(&args);
    assert_touched_unless_lost(&folded, &out);
    assert!(
        svg.contains(" page-faults, "),
        "the SVG does not count page-faults"
    );
}

#[test]
fn cycles_without_a_pmu_fails_in_one_line() {
    if !util::require_gcc() {
        return;
    }
    let prog = fixture("page_touch", Variant::CNoFramePointers);
    let dir = tempfile::tempdir().unwrap();
    let out = util::run_with_timeout(
        util::flamegraph()
            .current_dir(dir.path())
            .args([
                "-e",
                "cycles",
                "--period",
                "100000",
                "-o",
                "out.folded",
                "--",
            ])
            .arg(&prog)
            .arg("10"),
        Duration::from_secs(60),
    );
    if out.status.success() {
        // A machine with a hardware PMU: the graph counts cycles (starting a process takes
        // millions: tens of samples).
        let folded = Folded::read(&dir.path().join("out.folded"));
        assert!(folded.total() > 0, "{}", util::describe_output(&out));
        assert!(stderr(&out).contains("of cycles:"), "{}", stderr(&out));
        return;
    }
    assert_one_line_error(
        &out,
        &[
            "-e cycles",
            "no hardware performance counter",
            "-e cpu-clock",
        ],
    );
    assert!(!dir.path().join("out.folded").exists());
}

#[test]
fn context_switches_unprivileged_fails_in_one_line() {
    if !util::require_gcc() || !util::require_root("switching to user nobody with setpriv") {
        return;
    }
    let (dir, prog) = util::copy_for_nobody(&fixture("page_touch", Variant::CNoFramePointers));
    let out = util::run_with_timeout(
        util::as_nobody(env!("CARGO_BIN_EXE_flamegraph"))
            .current_dir(dir.path())
            .args(["-e", "context-switches", "-o", "out.folded", "--"])
            .arg(&prog)
            .arg("10"),
        Duration::from_secs(60),
    );
    let paranoid = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok());
    if paranoid.is_some_and(|p| p <= 1) {
        // Kernel access for everyone: the event records.
        assert!(out.status.success(), "{}", util::describe_output(&out));
        return;
    }
    assert_one_line_error(
        &out,
        &[
            "-e context-switches",
            "kernel.perf_event_paranoid",
            "sysctl kernel.perf_event_paranoid=1",
            "-e cpu-clock",
        ],
    );
}

#[test]
fn period_with_frequency_is_refused() {
    let out = util::run_with_timeout(
        util::flamegraph().args([
            "-F",
            "99",
            "--period",
            "10",
            "-o",
            "/dev/null",
            "--",
            "true",
        ]),
        Duration::from_secs(30),
    );
    assert_one_line_error(&out, &["--period", "-F"]);
}

#[test]
fn unknown_event_is_refused_with_the_valid_names() {
    let out = util::run_with_timeout(
        util::flamegraph().args(["-e", "sched:sched_switch", "-o", "/dev/null", "--", "true"]),
        Duration::from_secs(30),
    );
    assert_one_line_error(
        &out,
        &[
            "-e sched:sched_switch: unknown event",
            "cpu-clock",
            "page-faults",
            "cycles",
            "branch-instructions",
            "rNNNN",
        ],
    );
}

#[test]
fn counted_events_and_off_cpu_are_refused_together() {
    let args = [
        "-e",
        "page-faults",
        "--off-cpu",
        "-o",
        "/dev/null",
        "--",
        "true",
    ];
    let out = util::run_with_timeout(util::flamegraph().args(args), Duration::from_secs(30));
    assert_one_line_error(&out, &["--off-cpu", "-e page-faults", "cpu-clock"]);
}

#[test]
fn raw_event_is_accepted_or_refused_for_want_of_a_pmu() {
    if !util::require_gcc() {
        return;
    }
    let prog = fixture("page_touch", Variant::CNoFramePointers);
    let out = util::run_with_timeout(
        util::flamegraph()
            .args(["-e", "r00c0", "--period", "100000", "-o", "/dev/null", "--"])
            .args([prog.as_os_str(), OsStr::new("10")]),
        Duration::from_secs(60),
    );
    if !out.status.success() {
        assert_one_line_error(&out, &["-e rc0", "cpu-clock"]);
    }
}

#[test]
fn an_event_that_never_fires_is_an_error_not_an_empty_graph() {
    if !util::require_gcc() {
        return;
    }
    let prog = fixture("page_touch", Variant::CNoFramePointers);
    let dir = tempfile::tempdir().unwrap();
    // Touching 10 fresh anonymous pages takes no major fault (no I/O); the rest is cached.
    let out = util::run_with_timeout(
        util::flamegraph()
            .current_dir(dir.path())
            .args(["-e", "major-faults", "-o", "out.svg", "--"])
            .arg(&prog)
            .arg("10"),
        Duration::from_secs(60),
    );
    if out.status.success() {
        // A cold page cache: the loader's reads were major faults. Then the graph shows them.
        return;
    }
    assert_one_line_error(
        &out,
        &["-e major-faults: the program caused none", "cpu-clock"],
    );
    assert!(!dir.path().join("out.svg").exists());
}

#[test]
fn perf_data_recorded_at_a_fixed_period_weighs_each_sample_by_it() {
    if !util::require_gcc() || !util::require_perf() {
        return;
    }
    // `perf record -c N` leaves the period out of the samples: each stands for N events.
    let prog = fixture("page_touch", Variant::CNoFramePointers);
    let dir = tempfile::tempdir().unwrap();
    util::run_ok(
        std::process::Command::new("perf")
            .current_dir(dir.path())
            .args(["record", "-q", "-e", "page-faults", "-c", "10", "-g"])
            .args(["-o", "p.data", "--"])
            .arg(&prog)
            .args([&PAGES.to_string(), BATCH]),
        Duration::from_secs(120),
    );
    let out = util::run_ok(
        util::flamegraph().current_dir(dir.path()).args([
            "--perfdata",
            "p.data",
            "-o",
            "out.folded",
            "-o",
            "out.svg",
        ]),
        Duration::from_secs(120),
    );
    let folded = Folded::read(&dir.path().join("out.folded"));
    let svg = std::fs::read_to_string(dir.path().join("out.svg")).unwrap();
    assert_touched_unless_lost(&folded, &out);
    assert!(
        svg.contains(" page-faults, "),
        "the SVG does not count page-faults"
    );
}
