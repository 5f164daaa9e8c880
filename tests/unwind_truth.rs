//! Truthful stacks from the DWARF unwinder (issue 11, items 1 to 3), on real fixture programs
//! whose call graph is known by construction:
//!
//! - samples in prologues and epilogues keep their callers (`callee_saved.c`);
//! - lazy binding: samples in ld.so's `_dl_runtime_resolve_*`, whose CFA comes from rbx, unwind
//!   to `main` (`lazy_bind.c` + `lazy_lib.c`);
//! - Go: GC work run on the g0 stack through `runtime.systemstack` is rooted and under the
//!   goroutine that triggered it, never under a stale caller (`gc_pressure.go`);
//! - Debian's python3 and sqlite3: (almost) every stack reaches its root.
//!
//! Every recording and replay here also runs with `FLAMEGRAPH_CHECK_MEMO`: each walk that took
//! callers from its thread's previous walk is made again from scratch, and any difference fails
//! the run (see `src/unwind/memo.rs`).
//!
//! Tests that need gcc, go, python3 or sqlite3 fail with `CI=true` and skip otherwise.

mod util;

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::time::Duration;

use util::{fixture, flamegraph, normalize_frame, require_tool, run_ok, Folded, Variant};

/// Records `command` with the native backend (`flamegraph ARGS -o out.folded -- COMMAND`),
/// without `LD_BIND_NOW` in the profiled program's environment.
fn record(args: &[&str], command: &[&OsStr]) -> Folded {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.folded");
    let mut cmd = flamegraph();
    cmd.current_dir(dir.path())
        .env_remove("LD_BIND_NOW")
        .env("FLAMEGRAPH_CHECK_MEMO", "1")
        .args(args)
        .arg("-o")
        .arg(&out)
        .arg("--")
        .args(command);
    let output = run_ok(&mut cmd, Duration::from_secs(120));
    let text = std::fs::read_to_string(&out)
        .unwrap_or_else(|e| panic!("no folded output: {e}\n{}", util::describe_output(&output)));
    Folded::parse(&text)
}

fn has_gcc() -> bool {
    require_tool(
        "gcc",
        &["--version"],
        "install gcc (the C fixtures need it)",
    )
}

/// `name` without Go's `.abi0` suffix of assembly functions and the decorations
/// [`normalize_frame`] drops.
fn plain(frame: &str) -> &str {
    let f = normalize_frame(frame);
    f.strip_suffix(".abi0").unwrap_or(f)
}

/// The share of the weight of stacks containing a frame `pred` accepts that also contain
/// `caller`, and the weight of those stacks as a share of the total.
fn callers_kept(folded: &Folded, pred: impl Fn(&str) -> bool, caller: &str) -> (f64, f64) {
    let with = folded.weight_where(|s| s.iter().any(|f| pred(plain(f))));
    let kept = folded
        .weight_where(|s| s.iter().any(|f| pred(plain(f))) && s.iter().any(|f| plain(f) == caller));
    (
        kept as f64 / with.max(1) as f64,
        with as f64 / folded.total().max(1) as f64,
    )
}

#[test]
fn samples_in_prologues_and_epilogues_keep_their_callers() {
    if !has_gcc() {
        return;
    }
    let exe = fixture("callee_saved", Variant::CNoFramePointers);
    let folded = record(&[], &[exe.as_os_str(), OsStr::new("2")]);
    let (kept, share) = callers_kept(&folded, |f| f == "hot", "main");
    assert!(
        share > 0.5,
        "hot holds {:.1}%\n{}",
        share * 100.0,
        folded.summary()
    );
    assert!(
        kept >= 0.995,
        "{:.2}% of hot's weight reaches main (want >= 99.5%)\n{}",
        kept * 100.0,
        folded.summary()
    );
}

#[test]
fn lazy_binding_unwinds_through_the_resolver_to_main() {
    if !has_gcc() {
        return;
    }
    let lib = fixture("lazy_lib", Variant::CSharedLibrary);
    let exe = fixture("lazy_bind", Variant::CNoFramePointers);
    let folded = record(&[], &[exe.as_os_str(), lib.as_os_str(), OsStr::new("2")]);
    let resolver = |f: &str| f.starts_with("_dl_runtime_resolve");
    let (kept, share) = callers_kept(&folded, resolver, "main");
    assert!(
        share > 0.05,
        "only {:.1}% of the weight under _dl_runtime_resolve_*\n{}",
        share * 100.0,
        folded.summary()
    );
    let (via_caller, _) = callers_kept(&folded, resolver, "lazy_call_all");
    assert!(
        kept >= 0.995 && via_caller >= 0.995,
        "of the resolver's weight, {:.2}% reaches main and {:.2}% lazy_call_all (want >= 99.5%)\n{}",
        kept * 100.0,
        via_caller * 100.0,
        folded.summary()
    );
}

/// Outermost frames of a complete Go stack.
const GO_ROOTS: [&str; 4] = [
    "runtime.goexit",
    "runtime.mstart",
    "runtime.rt0_go",
    "_start",
];

/// GC functions that only the GC's own entry points call.
const GC_FRAMES: [&str; 5] = [
    "runtime.gcDrain",
    "runtime.gcDrainN",
    "runtime.gcBgMarkWorker",
    "runtime.markroot",
    "runtime.scanobject",
];

/// The callers (frame right above) of `callee`, with the weight of the stacks they call it in.
fn callers_of(folded: &Folded, callee: &str) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    for (stack, weight) in &folded.stacks {
        for pair in stack.windows(2) {
            if plain(&pair[1]) == callee {
                *out.entry(plain(&pair[0]).to_owned()).or_default() += *weight;
            }
        }
    }
    out
}

#[test]
fn go_gc_work_is_rooted_and_never_under_a_false_caller() {
    if !require_tool(
        "go",
        &["version"],
        "install golang-go (the Go fixture needs it)",
    ) {
        return;
    }
    let exe = fixture("gc_pressure", Variant::Go);
    let command = [exe.as_os_str(), OsStr::new("3")];
    let folded = record(&[], &command);
    let rooted = folded.share_where(|s| {
        let mut user = s.iter().skip(1).filter(|f| !f.ends_with("_[k]"));
        user.next().is_none_or(|f| GO_ROOTS.contains(&plain(f)))
    });
    assert!(
        rooted >= 0.95,
        "{:.1}% of the weight rooted (want >= 95%)\n{}",
        rooted * 100.0,
        folded.summary()
    );
    // runtime.newproc never calls into the GC: a stale word of the g0 stack made it look so.
    let false_caller = folded.share_where(|s| {
        s.iter()
            .position(|f| plain(f) == "runtime.newproc")
            .is_some_and(|i| s[i..].iter().any(|f| GC_FRAMES.contains(&plain(f))))
    });
    assert!(
        false_caller == 0.0,
        "{:.2}% of the weight has GC work under runtime.newproc\n{}",
        false_caller * 100.0,
        folded.summary()
    );
    // Every caller of runtime.systemstack holding >= 1% of the weight is one the kernel's
    // frame-pointer walk (`--call-graph fp`) also sees, or the stack-switch marker.
    let fp = record(&["--call-graph", "fp"], &command);
    let fp_callers: HashSet<String> = callers_of(&fp, "runtime.systemstack").into_keys().collect();
    let total = folded.total().max(1) as f64;
    for (caller, weight) in callers_of(&folded, "runtime.systemstack") {
        let share = weight as f64 / total;
        assert!(
            share < 0.01 || caller == "[stack switch]" || fp_callers.contains(&caller),
            "runtime.systemstack called by {caller} ({:.1}%), never seen with frame pointers \
             ({fp_callers:?})\n{}",
            share * 100.0,
            folded.summary()
        );
    }
}

/// Entry frames of a stack that reached its root. A stripped executable's `_start` has no name
/// (`sqlite3+0xa7a0`): a stack whose outermost frame calls `__libc_start_main` counts as rooted.
const ROOTS: [&str; 5] = [
    "_start",
    "__libc_start_main",
    "clone",
    "clone3",
    "start_thread",
];

/// The share of the weight whose outermost user frame is not a root.
fn unrooted_share(folded: &Folded) -> f64 {
    folded.share_where(|s| {
        let user: Vec<&str> = s
            .iter()
            .skip(1)
            .filter(|f| !f.ends_with("_[k]"))
            .map(|f| plain(f))
            .collect();
        let rooted = match user.as_slice() {
            [] => true,
            [_, next, ..] if next.starts_with("__libc_start") => true,
            [outer, ..] => ROOTS.contains(outer),
        };
        !rooted
    })
}

/// Programs nobody here wrote, from Debian: `/usr/bin/python3` (not a pyenv shim found first on
/// PATH) on a pure-Python loop and `sqlite3` on a sort-heavy query. perf's DWARF unwinder roots
/// all their stacks; at most 0.3% of the weight may end elsewhere.
#[test]
fn debian_python_and_sqlite_stacks_reach_their_roots() {
    let python = std::path::Path::new("/usr/bin/python3");
    if !require_tool("/usr/bin/python3", &["--version"], "install python3")
        || !require_tool("sqlite3", &["-version"], "install sqlite3")
    {
        return;
    }
    let script = "import time\n\
                  def f(n):\n    s = 0\n    for i in range(n):\n        s += i * i % 7\n    return s\n\
                  t = time.time()\n\
                  while time.time() - t < 2:\n    f(100000)\n";
    let folded = record(
        &[],
        &[python.as_os_str(), OsStr::new("-c"), OsStr::new(script)],
    );
    let python_unrooted = unrooted_share(&folded);
    assert!(
        python_unrooted <= 0.003,
        "python3: {:.2}% of the weight ends at a non-root frame\n{}",
        python_unrooted * 100.0,
        folded.summary()
    );
    let query = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<1000000) \
                 SELECT sum(y) FROM (SELECT (x*7919)%1000003 AS y FROM c ORDER BY y);";
    let folded = record(
        &[],
        &[
            OsStr::new("sqlite3"),
            OsStr::new(":memory:"),
            OsStr::new(query),
        ],
    );
    let sqlite_unrooted = unrooted_share(&folded);
    assert!(
        sqlite_unrooted <= 0.003,
        "sqlite3: {:.2}% of the weight ends at a non-root frame\n{}",
        sqlite_unrooted * 100.0,
        folded.summary()
    );
}

/// A perf.data recorded once by the real perf at the largest stack copy (65528 bytes).
struct Recorded {
    _dir: tempfile::TempDir,
    data: std::path::PathBuf,
}

fn record_full_copies(command: &[&OsStr]) -> Recorded {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("perf.data");
    let mut perf = std::process::Command::new("perf");
    perf.current_dir(dir.path())
        .args([
            "record",
            "-q",
            "-F",
            "997",
            "--call-graph",
            "dwarf,65528",
            "-o",
        ])
        .arg(&data)
        .arg("--")
        .args(command);
    run_ok(&mut perf, Duration::from_secs(120));
    Recorded { _dir: dir, data }
}

/// Folds `recorded` with our unwinder: from each sample's whole copy, or from only its first
/// `prefix` bytes (hidden `--replay-stack-prefix`), where truncated walks are completed by
/// joining them to earlier stacks of their thread.
fn replay(recorded: &Recorded, prefix: Option<u32>) -> Folded {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.folded");
    let mut cmd = flamegraph();
    cmd.env("FLAMEGRAPH_CHECK_MEMO", "1");
    cmd.arg("--perfdata").arg(&recorded.data);
    if let Some(bytes) = prefix {
        cmd.arg("--replay-stack-prefix").arg(bytes.to_string());
    }
    let output = run_ok(cmd.arg("-o").arg(&out), Duration::from_secs(120));
    let text = std::fs::read_to_string(&out)
        .unwrap_or_else(|e| panic!("no folded output: {e}\n{}", util::describe_output(&output)));
    Folded::parse(&text)
}

fn weights(folded: &Folded) -> HashMap<&[String], u64> {
    let mut m = HashMap::new();
    for (s, w) in &folded.stacks {
        *m.entry(s.as_slice()).or_default() += w;
    }
    m
}

fn truncated(stack: &[String]) -> bool {
    stack.iter().any(|f| f == "[truncated]")
}

/// Whether a stack (root first) reached its root.
fn rooted(stack: &[String]) -> bool {
    let single = Folded {
        stacks: vec![(stack.to_vec(), 1)],
    };
    !truncated(stack) && unrooted_share(&single) == 0.0
}

/// The share of the weight whose stack from the prefix is complete (not `[truncated]`) but not
/// one the full copy gives (or more often than it does): callers the joining invented.
fn invented_share(full: &Folded, cut: &Folded) -> f64 {
    let full_w = weights(full);
    let invented: u64 = weights(cut)
        .into_iter()
        .filter(|(s, _)| !truncated(s))
        .map(|(s, w)| w.saturating_sub(full_w.get(s).copied().unwrap_or(0)))
        .sum();
    invented as f64 / full.total().max(1) as f64
}

/// Of the weight rooted from the full copy, the share that is the same stack from the prefix,
/// and the rooted share of the full copy.
fn same_rooted_share(full: &Folded, cut: &Folded) -> (f64, f64) {
    let cut_w = weights(cut);
    let full_w = weights(full);
    let rooted_w: u64 = full_w
        .iter()
        .filter(|(s, _)| rooted(s))
        .map(|(_, &w)| w)
        .sum();
    let same: u64 = full_w
        .iter()
        .filter(|(s, _)| rooted(s))
        .map(|(s, &w)| w.min(cut_w.get(s).copied().unwrap_or(0)))
        .sum();
    (
        same as f64 / rooted_w.max(1) as f64,
        rooted_w as f64 / full.total().max(1) as f64,
    )
}

/// (1) Truth: a stack completed from the prefix is one the full copy gives too (the share of
/// weight that is not stays at most `invented_limit`); (2) completeness: of the weight rooted
/// from the full copy, at least `same_at_least` is the same stack from the prefix plus joining.
fn assert_replay_agrees(
    what: &str,
    full: &Folded,
    cut: &Folded,
    invented_limit: f64,
    same_at_least: f64,
) {
    let summaries = || {
        format!(
            "full copy:\n{}\nprefix + joining:\n{}",
            full.summary(),
            cut.summary()
        )
    };
    let invented = invented_share(full, cut);
    assert!(
        invented <= invented_limit,
        "{what}: {:.2}% of the weight got completed stacks the full copy does not have\n{}",
        invented * 100.0,
        summaries()
    );
    let (same, rooted_share) = same_rooted_share(full, cut);
    eprintln!(
        "{what}: {:.2}% the same, {:.2}% invented",
        same * 100.0,
        invented * 100.0
    );
    assert!(
        rooted_share > 0.5,
        "{what}: the full copy roots only {:.1}%\n{}",
        rooted_share * 100.0,
        summaries()
    );
    assert!(
        same >= same_at_least,
        "{what}: of the weight rooted from the full copy, {:.2}% is the same stack from the \
         prefix plus joining (want >= {:.1}%)\n{}",
        same * 100.0,
        same_at_least * 100.0,
        summaries()
    );
}

/// Issue 11 item 4, the deep-recursion fixture: stacks unwound from the default copy size (plus
/// joining) are those of the full 65528-byte copy of the same samples. In its `wave` mode
/// `recurse` sweeps depths 1..400 (about 50 KB of stack at the bottom), so its deepest samples
/// need more than the default copy and are completed from earlier samples of the same
/// activations. From a 32 KiB prefix many more samples need joining: no caller may be invented
/// then either.
#[test]
fn deep_recursion_from_a_prefix_plus_joining_equals_the_full_copy() {
    if !has_gcc() || !util::require_perf() {
        return;
    }
    let exe = fixture("recurse", Variant::CNoFramePointers);
    let command = [
        exe.as_os_str(),
        OsStr::new("400"),
        OsStr::new("2"),
        OsStr::new("wave"),
    ];
    let recorded = record_full_copies(&command);
    let full = replay(&recorded, None);
    let default = replay(&recorded, Some(flamegraph::options::DEFAULT_STACK_SIZE));
    assert_replay_agrees(
        "recurse wave from the default copy size",
        &full,
        &default,
        0.0,
        0.995,
    );
    let cut32 = replay(&recorded, Some(32 * 1024));
    let invented = invented_share(&full, &cut32);
    assert!(
        invented == 0.0,
        "recurse wave from 32 KiB: {:.2}% of the weight got invented callers\n{}",
        invented * 100.0,
        cut32.summary()
    );
}

/// The real rustc (not rustup's proxy) compiling `fixtures/rust/generic.rs` with `-O` into
/// `out_dir`.
fn rustc_command(out_dir: &std::path::Path) -> Vec<std::ffi::OsString> {
    let sysroot = run_ok(
        std::process::Command::new("rustc").args(["--print", "sysroot"]),
        Duration::from_secs(60),
    );
    let rustc =
        std::path::PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim()).join("bin/rustc");
    let source = util::fixtures_dir().join("rust/generic.rs");
    vec![
        rustc.into(),
        "-O".into(),
        "--out-dir".into(),
        out_dir.into(),
        source.into(),
    ]
}

/// Issue 11 item 4, a real Rust program: rustc compiling a small program, recorded once at the
/// full copy size. Replayed from a perf.data file, its compiler thread's stacks all end in
/// `[truncated]`, even from the full copy (`run_compiler::{closure#1}` has a 527 KiB frame, more
/// than any copy; only a live recording reads past it): the comparison is on the rooted weight
/// (the LLVM threads, the driver), and no stack may be completed wrongly.
#[test]
fn rustc_from_a_prefix_plus_joining_equals_the_full_copy() {
    if !util::require_perf() {
        return;
    }
    let out_dir = tempfile::tempdir().unwrap();
    let command = rustc_command(out_dir.path());
    let command: Vec<&OsStr> = command.iter().map(|a| a.as_os_str()).collect();
    let recorded = record_full_copies(&command);
    let full = replay(&recorded, None);
    let default = replay(&recorded, Some(flamegraph::options::DEFAULT_STACK_SIZE));
    assert_replay_agrees(
        "rustc from the default copy size",
        &full,
        &default,
        0.005,
        0.995,
    );
}

/// Issue 11 item 4, a frame larger than any stack copy: `recurse 20 1 big` runs its recursion
/// under `big_frame`, whose 256 KiB of locals no copy reaches past, so neither a larger copy nor
/// joining can find `main`. The first such sample is completed from the running program's stack
/// and the next ones are joined to it: at default settings every sample is the exact chain
/// main → big_frame → recurse × 20 → burn_at_bottom (≥ 95% of the weight; the rest start-up).
#[test]
fn a_frame_larger_than_the_copy_is_completed_from_the_live_stack() {
    if !has_gcc() {
        return;
    }
    let exe = fixture("recurse", Variant::CNoFramePointers);
    let folded = record(
        &[],
        &[
            exe.as_os_str(),
            OsStr::new("20"),
            OsStr::new("1"),
            OsStr::new("big"),
        ],
    );
    let mut expected = vec!["main", "big_frame"];
    expected.extend(std::iter::repeat_n("recurse", 20));
    expected.push("burn_at_bottom");
    let exact = folded.share_where(|s| {
        let user: Vec<&str> = s.iter().map(|f| plain(f)).collect();
        user.windows(expected.len())
            .any(|w| w == expected.as_slice())
            && user.last() == Some(&"burn_at_bottom")
            && rooted(s)
    });
    assert!(
        exact >= 0.95,
        "{:.1}% of the weight is the whole chain under big_frame\n{}",
        exact * 100.0,
        folded.summary()
    );
}

/// Issue 11 item 4: rustc compiling a small program at default settings: ≥ 95% of the weight
/// reaches a root (its compiler thread's `run_compiler::{closure#1}` frame is 527 KiB: the
/// callers past it come from the running compiler's stack).
#[test]
fn rustc_stacks_reach_their_roots_at_default_settings() {
    let out_dir = tempfile::tempdir().unwrap();
    let command = rustc_command(out_dir.path());
    let command: Vec<&OsStr> = command.iter().map(|a| a.as_os_str()).collect();
    let folded = record(&[], &command);
    let rooted_share = folded.share_where(rooted);
    assert!(
        rooted_share >= 0.95,
        "{:.1}% of rustc's weight is rooted\n{}",
        rooted_share * 100.0,
        folded.summary()
    );
}
