//! Views and exports on real recordings of the fixtures: per-thread roots, pprof (decoded by
//! prost and by `go tool pprof`), speedscope (validated against speedscope's JSON schema),
//! differential graphs, the terminal summary and progress.
#![cfg(target_os = "linux")]

mod util;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use flamegraph::output::pprof::proto;
use prost::Message;
use util::{fixture, flamegraph, run_ok, run_with_timeout, Folded, Variant};

const MINUTE: Duration = Duration::from_secs(60);

/// True when `tool` is installed; fails under `CI=true` (CI installs it), else skips.
fn require(tool: &str, args: &[&str], install: &str) -> bool {
    let ok = Command::new(tool)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("`{tool}` is not runnable and CI=true: {install} (.ci/run does)");
    }
    eprintln!("skipping: `{tool}` is not runnable here ({install})");
    false
}

/// Runs `flamegraph ARGS -- split MODE ...` in `dir` and returns its stderr.
fn record(dir: &Path, args: &[&str], split_args: &[&str]) -> String {
    let split = fixture("split", Variant::CFramePointers);
    let mut cmd = flamegraph();
    cmd.current_dir(dir)
        .args(["--call-graph", "fp"])
        .args(args)
        .arg("--")
        .arg(&split)
        .args(split_args);
    let out = run_ok(&mut cmd, MINUTE);
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn leaf_shares(pairs: impl IntoIterator<Item = (String, u64)>) -> HashMap<String, f64> {
    let mut map: HashMap<String, u64> = HashMap::new();
    let mut total = 0;
    for (leaf, w) in pairs {
        *map.entry(leaf).or_default() += w;
        total += w;
    }
    map.into_iter()
        .map(|(k, v)| (k, v as f64 / total.max(1) as f64))
        .collect()
}

fn assert_split(shares: &HashMap<String, f64>, what: &str) {
    for (name, expected) in [("work_a", 0.6), ("work_b", 0.3), ("work_c", 0.1)] {
        let got = shares.get(name).copied().unwrap_or(0.0);
        assert!(
            (got - expected).abs() <= 0.02,
            "{what}: {name} has {:.1}%, expected {:.0}% ± 2 points\n{shares:?}",
            got * 100.0,
            expected * 100.0
        );
    }
}

#[test]
fn per_thread_roots_keep_three_threads_apart() {
    let dir = tempfile::tempdir().unwrap();
    record(
        dir.path(),
        &["--per-thread", "-o", "t.folded"],
        &["threads", "1"],
    );
    let folded = Folded::read(&dir.path().join("t.folded"));
    folded.assert_leaf_share("work_a", 0.60, 2.0);
    folded.assert_leaf_share("work_b", 0.30, 2.0);
    folded.assert_leaf_share("work_c", 0.10, 2.0);
    // Three worker roots `split-PID/TID`, one pid, distinct tids, each with a third of the work.
    let workers: Vec<(String, f64)> = folded
        .roots()
        .into_iter()
        .filter(|(_, share)| *share > 0.2)
        .collect();
    assert_eq!(workers.len(), 3, "{}", folded.summary());
    let mut pids = Vec::new();
    let mut tids = Vec::new();
    for (root, _) in &workers {
        let rest = root
            .strip_prefix("split-")
            .unwrap_or_else(|| panic!("root {root:?} is not split-PID/TID"));
        let (pid, tid) = rest.split_once('/').expect("PID/TID");
        pids.push(pid.parse::<u32>().unwrap());
        tids.push(tid.parse::<u32>().unwrap());
    }
    pids.dedup();
    tids.sort_unstable();
    tids.dedup();
    assert_eq!((pids.len(), tids.len()), (1, 3), "{workers:?}");

    record(
        dir.path(),
        &["--per-process", "-o", "p.folded"],
        &["threads", "0.3"],
    );
    let folded = Folded::read(&dir.path().join("p.folded"));
    let roots = folded.roots();
    assert_eq!(roots.len(), 1, "{roots:?}");
    assert!(roots[0].0.starts_with("split-"), "{roots:?}");
}

#[test]
fn per_thread_roots_with_perf_cli() {
    if !util::require_perf() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let split = fixture("split", Variant::CFramePointers);
    let mut cmd = flamegraph();
    cmd.current_dir(dir.path())
        .args([
            "--backend",
            "perf-cli",
            "--per-thread",
            "-o",
            "t.folded",
            "--",
        ])
        .arg(&split)
        .args(["threads", "1"]);
    run_ok(&mut cmd, MINUTE * 2);
    let folded = Folded::read(&dir.path().join("t.folded"));
    let workers = folded.roots().into_iter().filter(|(_, s)| *s > 0.2).count();
    assert_eq!(workers, 3, "{}", folded.summary());
    assert!(
        folded
            .roots()
            .iter()
            .all(|(r, _)| r.starts_with("split-") && r.contains('/')),
        "{}",
        folded.summary()
    );
}

#[test]
fn per_thread_on_folded_input_says_it_has_no_threads() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.folded"), "prog;main;f 3\n").unwrap();
    let mut cmd = flamegraph();
    cmd.current_dir(dir.path()).args([
        "--perfdata",
        "in.folded",
        "--per-thread",
        "-o",
        "out.folded",
    ]);
    let out = run_ok(&mut cmd, MINUTE);
    let err = String::from_utf8_lossy(&out.stderr);
    let notes: Vec<&str> = err.lines().filter(|l| l.contains("--per-thread")).collect();
    assert_eq!(notes.len(), 1, "{err}");
    assert!(notes[0].contains("no thread ids"), "{err}");
}

fn decode_pprof(path: &Path) -> proto::Profile {
    let bytes = std::fs::read(path).unwrap();
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut raw)
        .expect("pprof output is gzip'ed");
    proto::Profile::decode(&raw[..]).expect("pprof output decodes")
}

#[test]
fn pprof_has_the_split_labels_and_inline_lines() {
    let dir = tempfile::tempdir().unwrap();
    record(dir.path(), &["-o", "p.pb.gz"], &["serial", "1"]);
    let p = decode_pprof(&dir.path().join("p.pb.gz"));
    let s = |i: i64| p.string_table[i as usize].as_str();
    let types: Vec<(&str, &str)> = p
        .sample_type
        .iter()
        .map(|t| (s(t.r#type), s(t.unit)))
        .collect();
    assert_eq!(types, [("samples", "count"), ("cpu", "nanoseconds")]);
    let function = |id: u64| s(p.function.iter().find(|f| f.id == id).unwrap().name);
    let location = |id: u64| p.location.iter().find(|l| l.id == id).unwrap();
    let leaves = p.sample.iter().map(|sample| {
        let leaf = location(sample.location_id[0]);
        (
            function(leaf.line[0].function_id).to_owned(),
            sample.value[0] as u64,
        )
    });
    assert_split(&leaf_shares(leaves), "pprof decoded by prost");
    let keys: Vec<&str> = p.sample[0].label.iter().map(|l| s(l.key)).collect();
    assert_eq!(keys, ["comm", "pid", "tid"]);
    assert!(p.sample[0].label[1].num > 0);
    assert!(
        p.mapping
            .iter()
            .any(|m| s(m.filename).ends_with("/split") && m.build_id != 0),
        "the fixture's mapping has its build-id"
    );

    // --skip-after reaches the model, so every output honours it.
    record(
        dir.path(),
        &["-o", "q.pb.gz", "--skip-after", "main"],
        &["serial", "1"],
    );
    let p = decode_pprof(&dir.path().join("q.pb.gz"));
    let s = |i: i64| p.string_table[i as usize].as_str();
    let function = |id: u64| s(p.function.iter().find(|f| f.id == id).unwrap().name);
    let location = |id: u64| p.location.iter().find(|l| l.id == id).unwrap();
    for sample in &p.sample {
        let names: Vec<&str> = sample
            .location_id
            .iter()
            .flat_map(|&id| location(id).line.iter().map(|l| function(l.function_id)))
            .collect();
        if names.contains(&"main") {
            assert_eq!(names.last(), Some(&"main"), "--skip-after main: {names:?}");
        }
    }

    // Inline frames: several lines of one location, innermost first.
    let inline = fixture("inline", Variant::CNoFramePointers);
    let mut cmd = flamegraph();
    cmd.current_dir(dir.path())
        .args(["-o", "i.pb.gz", "--"])
        .arg(&inline)
        .arg("0.5");
    run_ok(&mut cmd, MINUTE);
    let p = decode_pprof(&dir.path().join("i.pb.gz"));
    let s = |i: i64| p.string_table[i as usize].as_str();
    let name = |id: u64| s(p.function.iter().find(|f| f.id == id).unwrap().name);
    let inlined = p.location.iter().any(|l| {
        let names: Vec<&str> = l.line.iter().map(|line| name(line.function_id)).collect();
        names.starts_with(&["hot_inlined", "outer_caller"])
    });
    assert!(inlined, "no location with lines hot_inlined, outer_caller");
}

#[test]
fn go_tool_pprof_reads_our_profiles() {
    if !require("go", &["version"], "apt-get install golang-go") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    record(dir.path(), &["-o", "p.pb.gz"], &["serial", "1"]);
    let mut top = Command::new("go");
    top.current_dir(dir.path()).env("HOME", dir.path()).args([
        "tool",
        "pprof",
        "-top",
        "-cum",
        "-sample_index=samples",
        "p.pb.gz",
    ]);
    let out = run_ok(&mut top, MINUTE * 2);
    let text = String::from_utf8_lossy(&out.stdout);
    // `flat flat% sum% cum cum% name`
    let flat: HashMap<String, f64> = text
        .lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let pct = cols.get(1)?.strip_suffix('%')?.parse::<f64>().ok()?;
            Some((cols.get(5)?.to_string(), pct / 100.0))
        })
        .collect();
    assert_split(&flat, &format!("go tool pprof -top:\n{text}"));
    let mut raw = Command::new("go");
    raw.current_dir(dir.path())
        .env("HOME", dir.path())
        .args(["tool", "pprof", "-raw", "p.pb.gz"]);
    let out = run_ok(&mut raw, MINUTE * 2);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("comm:[split]"), "{text}");
}

/// speedscope's JSON schema, from the `speedscope` npm package that .ci/run installs into
/// `target/speedscope` (override with SPEEDSCOPE_SCHEMA).
fn speedscope_schema() -> Option<PathBuf> {
    let path = std::env::var_os("SPEEDSCOPE_SCHEMA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            util::repo_root().join(
                "target/speedscope/node_modules/speedscope/dist/release/file-format-schema.json",
            )
        });
    if path.is_file() {
        return Some(path);
    }
    let install = "npm install --prefix target/speedscope speedscope";
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "{} is missing and CI=true: {install} (.ci/run does)",
            path.display()
        );
    }
    eprintln!(
        "skipping schema check: {} is missing ({install})",
        path.display()
    );
    None
}

#[test]
fn speedscope_validates_and_gives_the_split() {
    let dir = tempfile::tempdir().unwrap();
    record(dir.path(), &["-o", "p.speedscope.json"], &["serial", "1"]);
    let path = dir.path().join("p.speedscope.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let frames = v["shared"]["frames"].as_array().unwrap();
    let profile = &v["profiles"][0];
    assert_eq!(profile["type"], "sampled");
    assert_eq!(profile["unit"], "nanoseconds");
    let samples = profile["samples"].as_array().unwrap();
    let weights = profile["weights"].as_array().unwrap();
    assert!(samples.len() > 100, "one sample per record, in time order");
    let leaves = samples.iter().zip(weights).map(|(stack, w)| {
        let leaf = stack.as_array().unwrap().last().unwrap().as_u64().unwrap();
        let name = frames[leaf as usize]["name"].as_str().unwrap().to_owned();
        (name, w.as_u64().unwrap())
    });
    assert_split(&leaf_shares(leaves), "speedscope weights");
    let name = profile["name"].as_str().unwrap();
    assert!(name.starts_with("split-") && name.contains('/'), "{name}");
    // Root first: a stack through main starts at main's callers and ends at the leaf (the
    // first samples may be in the dynamic linker, before main).
    let names_of = |stack: &serde_json::Value| -> Vec<String> {
        (stack.as_array().unwrap().iter())
            .map(|i| {
                frames[i.as_u64().unwrap() as usize]["name"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    let position =
        |names: &[String], prefix: &str| names.iter().position(|n| n.starts_with(prefix));
    let names = (samples.iter().map(names_of))
        .find(|names| position(names, "main").is_some() && position(names, "work_").is_some())
        .unwrap();
    assert!(
        position(&names, "main") < position(&names, "work_"),
        "{names:?}"
    );

    let Some(schema) = speedscope_schema() else {
        return;
    };
    if !require(
        "python3",
        &["-c", "import jsonschema"],
        "apt-get install python3-jsonschema",
    ) {
        return;
    }
    let script = "import json,sys,jsonschema\n\
        schema=json.load(open(sys.argv[1]))\n\
        schema=dict(schema, **{'$ref': '#/definitions/FileFormat.File'})\n\
        jsonschema.validate(json.load(open(sys.argv[2])), schema)\n";
    let mut check = Command::new("python3");
    check.args(["-c", script]).arg(&schema).arg(&path);
    run_ok(&mut check, MINUTE);
}

/// (fill, title) of every frame of an SVG whose title starts with `name (`.
fn frames_named<'a>(svg: &'a str, name: &str) -> Vec<(&'a str, String)> {
    let mut out = Vec::new();
    let mut rest = svg;
    let needle = format!("<title>{name} (");
    while let Some(i) = rest.find(&needle) {
        rest = &rest[i + "<title>".len()..];
        let title = util::unescape_xml(&rest[..rest.find("</title>").unwrap()]);
        let fill_at = rest.find("fill=\"").unwrap() + "fill=\"".len();
        let fill = &rest[fill_at..fill_at + rest[fill_at..].find('"').unwrap()];
        out.push((fill, title));
    }
    out
}

fn rgb(fill: &str) -> (i32, i32, i32) {
    let inner = fill.trim_start_matches("rgb(").trim_end_matches(')');
    let v: Vec<i32> = inner.split(',').map(|c| c.parse().unwrap()).collect();
    (v[0], v[1], v[2])
}

fn is_red(fill: &str) -> bool {
    let (r, g, b) = rgb(fill);
    r > b + 40 && r > g + 40
}

fn is_blue(fill: &str) -> bool {
    let (r, _, b) = rgb(fill);
    b > r + 40
}

#[test]
fn differential_graph_colours_the_slower_function_and_its_callers() {
    let dir = tempfile::tempdir().unwrap();
    // The same work twice, the second time with work_b twice as slow (60/60/10).
    record(
        dir.path(),
        &["-o", "before.folded", "-o", "before.pb.gz"],
        &["serial", "0", "1", "40"],
    );
    record(
        dir.path(),
        &["-o", "after.folded"],
        &["serial", "0", "2", "40"],
    );
    let draw = |args: &[&str]| {
        let mut cmd = flamegraph();
        cmd.current_dir(dir.path())
            .args(["--perfdata", "after.folded", "-q"])
            .args(args);
        run_ok(&mut cmd, MINUTE);
    };
    // Raw counts: work_b and every caller grew; work_a and work_c changed much less.
    draw(&[
        "--baseline",
        "before.folded",
        "--no-normalize",
        "-o",
        "raw.svg",
    ]);
    let svg = std::fs::read_to_string(dir.path().join("raw.svg")).unwrap();
    for name in ["work_b", "main", "split", "all"] {
        let frames = frames_named(&svg, name);
        assert!(!frames.is_empty(), "no frame {name}");
        for (fill, title) in frames {
            assert!(is_red(fill), "{name} is {fill}: {title}");
            assert!(
                title.contains("before") && title.contains("after"),
                "{title}"
            );
        }
    }
    let change = |name: &str, svg: &str| -> f64 {
        let (_, title) = &frames_named(svg, name)[0];
        let pct = title.rsplit(", ").next().unwrap().trim_end_matches("%)");
        pct.parse().unwrap()
    };
    let b = change("work_b", &svg);
    assert!(b > 35.0, "work_b grew by {b}%");
    for name in ["work_a", "work_c"] {
        let c = change(name, &svg);
        assert!(c.abs() < b / 2.0, "{name} changed {c}%, work_b {b}%");
    }
    // Normalized (the default), against our own pprof: work_b red, the others blue.
    draw(&[
        "--baseline",
        "before.pb.gz",
        "-o",
        "norm.svg",
        "-o",
        "diff.folded",
    ]);
    let svg = std::fs::read_to_string(dir.path().join("norm.svg")).unwrap();
    assert!(frames_named(&svg, "work_b").iter().all(|(f, _)| is_red(f)));
    for name in ["work_a", "work_c"] {
        for (fill, title) in frames_named(&svg, name) {
            assert!(is_blue(fill), "{name} is {fill}: {title}");
        }
    }
    // The folded output of a diff keeps both counts.
    let text = std::fs::read_to_string(dir.path().join("diff.folded")).unwrap();
    let line = text.lines().find(|l| l.contains("work_b")).unwrap();
    let counts: Vec<u64> = line
        .rsplitn(3, ' ')
        .take(2)
        .map(|c| c.parse().unwrap())
        .collect();
    assert!(counts[0] > counts[1], "after > before: {line}");
}

#[test]
fn summary_names_the_top_function_unless_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let stderr = record(dir.path(), &["-o", "s.folded"], &["serial", "1"]);
    let row = stderr
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("work_a"))
        .unwrap_or_else(|| panic!("no work_a row:\n{stderr}"));
    let share: f64 = row
        .split_whitespace()
        .next()
        .unwrap()
        .trim_end_matches('%')
        .parse()
        .unwrap();
    assert!((share - 60.0).abs() <= 2.0, "{row}");
    assert!(
        stderr.contains("flamegraph: wrote s.folded (folded)"),
        "{stderr}"
    );
    assert!(stderr.lines().all(|l| l.chars().count() <= 100));
    assert!(!stderr.contains('\x1b'), "no colour into a pipe");

    let quiet = record(dir.path(), &["-q", "-o", "q.folded"], &["serial", "0.2"]);
    assert!(!quiet.contains("flamegraph"), "{quiet}");

    // --summary-only on a folded file (read by content): the summary, no output.
    let mut cmd = flamegraph();
    cmd.current_dir(dir.path()).args([
        "--perfdata",
        "s.folded",
        "--summary-only",
        "--summary",
        "3",
    ]);
    let out = run_ok(&mut cmd, MINUTE);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("work_a"), "{text}");
    assert!(!text.contains("wrote"), "{text}");
    assert!(!dir.path().join("flamegraph.svg").exists());
}

#[test]
fn perf_data_against_itself_is_all_grey() {
    if !util::require_perf() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let split = fixture("split", Variant::CFramePointers);
    let mut rec = Command::new("perf");
    rec.current_dir(dir.path())
        .args(["record", "-q", "-g", "-o", "p.data", "--"])
        .arg(&split)
        .args(["serial", "0.3"]);
    run_ok(&mut rec, MINUTE);
    let mut cmd = flamegraph();
    cmd.current_dir(dir.path()).args([
        "--perfdata",
        "p.data",
        "--baseline",
        "p.data",
        "-o",
        "same.svg",
        "-q",
    ]);
    run_ok(&mut cmd, MINUTE);
    let svg = std::fs::read_to_string(dir.path().join("same.svg")).unwrap();
    let frames = frames_named(&svg, "work_a");
    assert!(!frames.is_empty());
    for (fill, title) in frames {
        assert_eq!(fill, "rgb(220,220,220)", "{title}");
        assert!(title.contains("change +0, +0.0%"), "{title}");
    }
}

#[test]
fn baseline_fifo_or_garbage_is_one_line_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.folded"), "prog;main;f 3\n").unwrap();
    std::fs::write(dir.path().join("junk.bin"), [0xffu8, 0xfe, 0, 1]).unwrap();
    let fifo = dir.path().join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    for (baseline, expected) in [
        ("fifo", "not a regular file"),
        ("junk.bin", "neither folded"),
    ] {
        let mut cmd = flamegraph();
        cmd.current_dir(dir.path()).args([
            "--perfdata",
            "in.folded",
            "--baseline",
            baseline,
            "-o",
            "d.svg",
        ]);
        let out = run_with_timeout(&mut cmd, MINUTE);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(err.contains(expected), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

#[test]
fn format_applies_to_outputs_without_a_known_extension() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("in.folded"),
        "prog;main;f 3\nprog;main;g 1\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        let mut cmd = flamegraph();
        cmd.current_dir(dir.path())
            .args(["--perfdata", "in.folded", "-q"])
            .args(args);
        run_with_timeout(&mut cmd, MINUTE)
    };
    // `-o -` with --format pprof: gzip'ed protobuf on stdout.
    let out = run(&["--format", "pprof", "-o", "-"]);
    assert!(out.status.success());
    assert!(out.stdout.starts_with(&[0x1f, 0x8b]), "gzip on stdout");
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&out.stdout[..]), &mut raw)
        .unwrap();
    let p = proto::Profile::decode(&raw[..]).unwrap();
    assert_eq!(p.sample.iter().map(|s| s.value[0]).sum::<i64>(), 4);
    // The extension wins over --format; no extension takes it.
    let out = run(&["--format", "folded", "-o", "g.svg", "-o", "stacks"]);
    assert!(out.status.success());
    let svg = std::fs::read_to_string(dir.path().join("g.svg")).unwrap();
    assert!(svg.contains("<svg"));
    let text = std::fs::read_to_string(dir.path().join("stacks")).unwrap();
    assert_eq!(text, "prog;main;f 3\nprog;main;g 1\n");
    // Standard output only once.
    let out = run(&["-o", "-", "-o", "-"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("only once"));
}

#[test]
fn post_process_is_refused_with_exports() {
    let mut cmd = flamegraph();
    cmd.args(["--post-process", "cat", "-o", "x.pb.gz", "--", "true"]);
    let out = run_with_timeout(&mut cmd, MINUTE);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("--post-process") && err.contains("pprof"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn progress_bar_only_on_a_terminal() {
    if !util::require_perf() {
        return;
    }
    if !require("script", &["--version"], "apt-get install bsdutils") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let split = fixture("split", Variant::CFramePointers);
    let mut rec = Command::new("perf");
    rec.current_dir(dir.path())
        .args(["record", "-q", "-g", "-o", "p.data", "--"])
        .arg(&split)
        .args(["serial", "0.3"]);
    run_ok(&mut rec, MINUTE);
    let bin = env!("CARGO_BIN_EXE_flamegraph");
    let line = format!("{bin} --perfdata p.data -o out.svg");
    let mut tty = Command::new("script");
    tty.current_dir(dir.path())
        .env("FLAMEGRAPH_PROGRESS", "always")
        .args(["-qec", &line, "/dev/null"]);
    let out = run_ok(&mut tty, MINUTE);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("reading perf.data") || text.contains("symbolizing"),
        "{text}"
    );

    let mut piped = flamegraph();
    piped
        .current_dir(dir.path())
        .env("FLAMEGRAPH_PROGRESS", "always")
        .args(["--perfdata", "p.data", "-o", "out2.svg"]);
    let out = run_ok(&mut piped, MINUTE);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("reading perf.data") && !err.contains('\r'),
        "{err}"
    );

    // A native recording on a terminal shows a live status line.
    let line = format!("{bin} -o rec.svg -- {} serial 0.5", split.display());
    let mut tty = Command::new("script");
    tty.current_dir(dir.path())
        .env("FLAMEGRAPH_PROGRESS", "always")
        .args(["-qec", &line, "/dev/null"]);
    let out = run_ok(&mut tty, MINUTE);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("flamegraph: recording: "), "{text}");
}
