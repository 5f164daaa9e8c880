//! What the tool says, from the real binaries: one line per problem with its cause once and its
//! fix; a warning for every option that does not do what it says with the chosen backend; the
//! `--call-graph fp` hint; completions from both binaries.

mod util;

use std::process::{Command, Output};
use std::time::Duration;

use util::{fixture, flamegraph, run_with_timeout, Variant};

const TIMEOUT: Duration = Duration::from_secs(120);

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `flamegraph ARGS` in a fresh directory.
fn run(args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    run_with_timeout(flamegraph().current_dir(dir.path()).args(args), TIMEOUT)
}

/// The lines of stderr that are ours (external tools' output passes through).
fn our_lines(out: &Output) -> Vec<String> {
    stderr(out)
        .lines()
        .filter(|l| l.starts_with("flamegraph:"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn missing_inputs_print_the_os_error_once() {
    for args in [
        &["--", "./no-such-program"][..],
        &["--perfdata", "/no/such/perf.data"],
        &["-p", "999999999"],
    ] {
        let out = run(args);
        assert!(!out.status.success(), "{args:?}");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{args:?}: one line: {err}");
        assert!(err.starts_with("flamegraph: error: "), "{args:?}: {err}");
        assert!(err.matches("No such file").count() <= 1, "{args:?}: {err}");
        assert!(err.matches("(os error").count() <= 1, "{args:?}: {err}");
    }
    let err = stderr(&run(&["--perfdata", "/no/such/perf.data"]));
    assert_eq!(
        err.trim(),
        "flamegraph: error: cannot read /no/such/perf.data: No such file or directory (os error 2)"
    );
}

#[test]
fn perf_only_options_warn_with_the_native_backend() {
    let out = run(&["--backend", "native", "-z", "-o", "x.folded", "--", "true"]);
    let ours = our_lines(&out);
    let warning = ours
        .iter()
        .find(|l| l.contains("-z/--compression-level is ignored"))
        .unwrap_or_else(|| panic!("{}", util::describe_output(&out)));
    assert!(warning.contains("--backend perf-cli"), "{warning}");
}

#[test]
fn custom_command_says_it_selects_perf_cli() {
    // Whether perf runs or not, the warning comes first.
    let out = run(&["-c", "record -g -o my.data", "-o", "x.folded", "--", "true"]);
    let ours = our_lines(&out);
    assert!(
        ours[0].starts_with("flamegraph: warning: -c/--cmd selects the perf-cli backend")
            && ours[0].ends_with("leaves its data in my.data"),
        "{}",
        util::describe_output(&out)
    );
}

#[test]
fn rounded_stack_size_is_said() {
    let out = run(&["--stack-size", "13", "-o", "x.folded", "--", "true"]);
    assert!(
        our_lines(&out)
            .iter()
            .any(|l| l.contains("--stack-size 13 rounded down to 8")),
        "{}",
        util::describe_output(&out)
    );
    let out = run(&["--stack-size", "16", "-o", "x.folded", "--", "true"]);
    assert!(!stderr(&out).contains("rounded"), "{}", stderr(&out));
    let out = run(&["--backend", "perf-cli", "--stack-size", "16", "--", "true"]);
    assert!(
        stderr(&out).contains("--call-graph and --stack-size are ignored"),
        "{}",
        stderr(&out)
    );
}

/// Records the split fixture with `--call-graph fp` and returns stderr.
fn fp_run(variant: Variant) -> String {
    let split = fixture("split", variant);
    let out = run(&[
        "--call-graph",
        "fp",
        "-o",
        "fp.folded",
        "--",
        split.to_str().unwrap(),
        "serial",
        "0.5",
    ]);
    assert!(out.status.success(), "{}", util::describe_output(&out));
    stderr(&out)
}

#[test]
fn frame_pointer_call_graph_without_frame_pointers_suggests_dwarf() {
    let err = fp_run(Variant::CNoFramePointers);
    let hint = err
        .lines()
        .find(|l| l.contains("stop before reaching main"))
        .unwrap_or_else(|| panic!("no hint: {err}"));
    assert!(hint.contains("use --call-graph dwarf"), "{hint}");
    let err = fp_run(Variant::CFramePointers);
    assert!(!err.contains("stop before reaching main"), "{err}");
}

#[test]
fn cargo_flamegraph_generates_completions() {
    let out = run_with_timeout(
        Command::new(env!("CARGO_BIN_EXE_cargo-flamegraph")).args([
            "flamegraph",
            "--completions",
            "bash",
        ]),
        TIMEOUT,
    );
    assert!(out.status.success(), "{}", util::describe_output(&out));
    let script = String::from_utf8_lossy(&out.stdout);
    assert!(
        script.contains("--unit-test") && script.contains("--post-process"),
        "{script}"
    );
    assert!(script.contains("complete -F"), "{script}");
}
