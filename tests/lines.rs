//! `--lines`: each frame named `FUNCTION FILE:LINE` from the DWARF line tables (README,
//! "Naming"). Real programs built here, recorded with the native backend; the expected lines are
//! found by searching the fixture sources for the hot statements, so editing a fixture moves
//! them with it.
//!
//! - `fixtures/c/inline.c`: the hot loop of the always-inlined `hot_inlined` is the heaviest
//!   line; its caller `outer_caller` shows the line of the inlined call, `main` the line of its
//!   call to `outer_caller`.
//! - `fixtures/c/split.c`: the heaviest leaf line is `work_a`'s loop; without `--lines` no frame
//!   has a `:LINE`.
//! - `fixtures/rust/split.rs`: `split::work_a`'s frames are on its loop, its inlined `core`
//!   frames in `core/src/...`.

mod util;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::Path;
use std::time::Duration;

use util::{fixture, Folded, Variant};

/// Profiles `program ARGS` with the native backend and `flags` into folded stacks. The deadline
/// is generous: a debug build of the profiler reads glibc's debug file slowly.
fn profile(flags: &[&str], program: &Path, args: &[&str]) -> Folded {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.folded");
    let mut cmd = util::flamegraph();
    cmd.current_dir(dir.path()).args(flags).arg("-o").arg(&out);
    cmd.arg("--").arg(program).args(args);
    let output = util::run_ok(&mut cmd, Duration::from_secs(300));
    let text = std::fs::read_to_string(&out)
        .unwrap_or_else(|e| panic!("no folded output: {e}\n{}", util::describe_output(&output)));
    let folded = Folded::parse(&text);
    assert!(folded.total() > 0, "no samples");
    folded
}

/// `FUNCTION FILE:LINE` → (`FUNCTION`, `FILE`, `LINE`); `None` for a frame without a location.
fn split_location(frame: &str) -> Option<(&str, &str, u32)> {
    let (function, location) = frame.rsplit_once(' ')?;
    let (file, line) = location.rsplit_once(':')?;
    Some((function, file, line.parse().ok()?))
}

/// The 1-based line of the only line of `source` (a fixture file) containing `needle`.
fn line_of(source: &str, needle: &str) -> u32 {
    let path = util::fixtures_dir().join(source);
    let text = std::fs::read_to_string(&path).unwrap();
    let found: Vec<u32> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .map(|(i, _)| i as u32 + 1)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "{needle:?} in {}: {found:?}",
        path.display()
    );
    found[0]
}

/// Weight per (file, line) of frames named `function` (with any location), summed over every
/// stack it appears in (once per stack).
fn weight_by_line(folded: &Folded, function: &str) -> HashMap<(String, u32), u64> {
    let mut by_line = HashMap::new();
    for (stack, weight) in &folded.stacks {
        let mut seen = Vec::new();
        for frame in stack {
            if let Some((f, file, line)) = split_location(frame) {
                if f == function && !seen.contains(&(file, line)) {
                    seen.push((file, line));
                    *by_line.entry((file.to_owned(), line)).or_default() += weight;
                }
            }
        }
    }
    by_line
}

/// The heaviest (file, line) of `function`, with the whole table for messages.
fn heaviest(folded: &Folded, function: &str) -> ((String, u32), String) {
    let by_line = weight_by_line(folded, function);
    let top = by_line
        .iter()
        .max_by_key(|(_, w)| **w)
        .map(|(k, _)| k.clone())
        .unwrap_or_else(|| panic!("no `{function} FILE:LINE` frame:\n{}", folded.summary()));
    (top, format!("{by_line:?}"))
}

#[test]
fn c_hot_loop_is_the_heaviest_line_and_inline_frames_get_call_sites() {
    let program = fixture("inline", Variant::CNoFramePointers);
    let folded = profile(&["--lines"], &program, &["1"]);
    let loop_body = line_of("c/inline.c", "acc += i ^ 0x5aUL;");
    let call_site = line_of("c/inline.c", "= hot_inlined(9 * units * UNIT);");
    let main_call = line_of("c/inline.c", "sink += outer_caller(1);");

    // The loop: its `for` line (compare, increment) or its body.
    let ((file, line), table) = heaviest(&folded, "hot_inlined");
    assert_eq!(file, "c/inline.c", "{table}");
    assert!(
        (loop_body - 1..=loop_body).contains(&line),
        "hot_inlined's heaviest line {line}, expected its loop at {}..={loop_body}: {table}",
        loop_body - 1
    );

    // Every stack through the inlined function: the caller at the inlined call's line, `main`
    // at its call of the caller.
    let mut checked = 0;
    for (stack, weight) in &folded.stacks {
        let Some(at) = stack.iter().position(|f| f.starts_with("hot_inlined ")) else {
            continue;
        };
        assert_eq!(
            stack[at - 1],
            format!("outer_caller c/inline.c:{call_site}"),
            "{stack:?}"
        );
        assert_eq!(
            stack[at - 2],
            format!("main c/inline.c:{main_call}"),
            "{stack:?}"
        );
        checked += weight;
    }
    let share = checked as f64 / folded.total() as f64;
    assert!(
        share > 0.5,
        "hot_inlined on only {share:.2}:\n{}",
        folded.summary()
    );
}

#[test]
fn c_heaviest_leaf_line_is_the_hot_loop_and_default_has_no_lines() {
    let program = fixture("split", Variant::CNoFramePointers);
    let args = ["serial", "1"];
    let folded = profile(&["--lines"], &program, &args);
    let body = line_of("c/split.c", "x = x * LCG_MUL + (i ^ 0xaaUL);");
    let leaves = folded.leaves();
    let (leaf, _) = leaves
        .first()
        .unwrap_or_else(|| panic!("no leaves:\n{}", folded.summary()));
    let (function, file, line) =
        split_location(leaf).unwrap_or_else(|| panic!("heaviest leaf {leaf:?} has no line"));
    assert_eq!((function, file), ("work_a", "c/split.c"), "{leaves:?}");
    assert!(
        (body - 1..=body).contains(&line),
        "work_a's heaviest line {line}, expected its loop at {}..={body}: {leaves:?}",
        body - 1
    );

    // Without --lines, names only.
    let plain = profile(&[], &program, &args);
    let with_line: Vec<_> = plain
        .stacks
        .iter()
        .flat_map(|(s, _)| s.iter())
        .filter(|f| split_location(f).is_some())
        .collect();
    assert!(with_line.is_empty(), "lines without --lines: {with_line:?}");
    assert!(plain.share_of_leaf("work_a") > 0.4, "{}", plain.summary());
}

#[test]
fn rust_frames_get_their_loop_lines_and_core_files() {
    let program = fixture("split", Variant::RustNoFramePointers);
    let folded = profile(&["--lines"], &program, &["serial", "1"]);
    let body = line_of(
        "rust/split.rs",
        "x = x.wrapping_mul(LCG_MUL).wrapping_add(i ^ 0xaa);",
    );
    let by_line = weight_by_line(&folded, "split::work_a");
    let total: u64 = by_line.values().sum();
    let on_loop: u64 = by_line
        .iter()
        .filter(|((file, line), _)| file == "rust/split.rs" && (body - 1..=body).contains(line))
        .map(|(_, w)| w)
        .sum();
    assert!(
        total > 0 && on_loop * 10 >= total * 9,
        "split::work_a off its loop ({}..={body}): {by_line:?}",
        body - 1
    );
    // Inlined standard-library frames above it point into the toolchain's sources.
    let core_inline = folded.weight_where(|stack| {
        stack.windows(2).any(|w| {
            w[0].starts_with("split::work_a ")
                && split_location(&w[1]).is_some_and(|(_, file, _)| file.starts_with("core/src/"))
        })
    });
    assert!(
        core_inline > 0,
        "no inlined core frame with a core/src/ file under split::work_a:\n{}",
        folded.summary()
    );
}

#[test]
fn lines_are_refused_on_external_backends() {
    for backend in ["perf-cli", "dtrace"] {
        let output = util::run_with_timeout(
            util::flamegraph()
                .args(["--lines", "--backend", backend, "-o", "x.folded", "--"])
                .arg(OsStr::new("true")),
            Duration::from_secs(30),
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{backend}: {stderr}");
        assert!(
            stderr.contains("--lines needs the native backend") && stderr.lines().count() == 1,
            "{backend}: {stderr}"
        );
    }
}
