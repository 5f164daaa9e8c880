//! Readable names, the same rules on every backend (README, "Names"): real programs built here,
//! profiled with the native backend (and perf-cli), and every frame checked against the rules.
//!
//! - a line-tables-only Rust build (`fixtures/rust/names.rs`): no generic arguments;
//! - the same with full debug info: inline frames qualified (`core::iter::...::fold`);
//! - a C++ STL program (`fixtures/cpp/stl.cpp`): no `_Z…`, no return type or parameter list,
//!   `NAME@plt` stubs;
//! - a glibc-heavy C program (`fixtures/c/glibc_heavy.c`): no symbol versions; stripped, one
//!   frame per function and `_start` at the root.

mod util;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use object::{Object, ObjectSegment, ObjectSymbol};
use util::{fixture, Folded, Variant};

/// A directory for this process's builds, removed at exit.
fn build_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

/// True if `program` runs; else fails under `CI=true` and skips with a notice.
fn require(program: &str) -> bool {
    let runs = Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !runs {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("`{program}` is not runnable and CI=true: install it on CI");
        }
        eprintln!("skipping: `{program}` is not runnable here");
    }
    runs
}

/// Compiles with `compiler ARGS -o OUT SOURCE`, panicking with the compiler's stderr.
fn build(compiler: &str, args: &[&str], source: &Path, name: &str) -> PathBuf {
    let out = build_dir().join(name);
    let output = Command::new(compiler)
        .args(args)
        .arg("-o")
        .arg(&out)
        .arg(source)
        .current_dir(build_dir())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{compiler} failed on {}:\n{}",
        source.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    out
}

fn rust_names(debuginfo: &[&str], name: &str) -> PathBuf {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let mut args = vec!["--edition", "2021", "-O"];
    args.extend_from_slice(debuginfo);
    build(
        &rustc,
        &args,
        &util::fixtures_dir().join("rust").join("names.rs"),
        name,
    )
}

/// Profiles `program 1` with the native backend (or `args`) into folded stacks. The deadline is
/// generous: a debug build of the profiler decompresses glibc's debug file slowly, and these
/// machines are shared.
fn profile(args: &[&str], program: &Path) -> Folded {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.folded");
    let mut cmd = util::flamegraph();
    cmd.current_dir(dir.path()).args(args).arg("-o").arg(&out);
    cmd.arg("--").arg(program).arg("1");
    let output = util::run_ok(&mut cmd, Duration::from_secs(300));
    let text = std::fs::read_to_string(&out)
        .unwrap_or_else(|e| panic!("no folded output: {e}\n{}", util::describe_output(&output)));
    let folded = Folded::parse(&text);
    assert!(folded.total() > 0, "no samples");
    folded
}

/// Every frame of every stack, without inferno's `_[k]`-style annotations.
fn frames(folded: &Folded) -> BTreeSet<String> {
    folded
        .stacks
        .iter()
        .flat_map(|(stack, _)| stack.iter().skip(1))
        .map(|f| util::normalize_frame(f).to_owned())
        .collect()
}

/// `^[a-z_]+<` or `^\{closure[^}]*\}<`: a bare DWARF name with its generic arguments.
fn has_generic_arguments(frame: &str) -> bool {
    let word = frame
        .bytes()
        .take_while(|b| b.is_ascii_lowercase() || *b == b'_')
        .count();
    let closure = frame
        .strip_prefix("{closure")
        .and_then(|rest| rest.find('}').map(|end| &rest[end + 1..]))
        .is_some_and(|after| after.starts_with('<'));
    (word > 0 && frame[word..].starts_with('<')) || closure
}

#[test]
fn line_tables_only_rust_names_have_no_generic_arguments() {
    let program = rust_names(&["-C", "debuginfo=line-tables-only"], "names-lines");
    let folded = profile(&[], &program);
    let names = frames(&folded);
    let generic: Vec<_> = names.iter().filter(|f| has_generic_arguments(f)).collect();
    assert!(generic.is_empty(), "generic arguments left: {generic:#?}");
    // The inline frames are there, under their short names.
    assert!(
        names.contains("fold") || names.contains("{closure#0}"),
        "no inline frame `fold` or `{{closure#0}}`: {names:#?}"
    );
    assert!(names.contains("names::count_primes"), "{names:#?}");

    // --full-names keeps them.
    let full = frames(&profile(&["--full-names"], &program));
    assert!(
        full.iter().any(|f| has_generic_arguments(f)),
        "--full-names shows no generic arguments: {full:#?}"
    );
}

#[test]
fn full_debug_rust_inline_frames_are_qualified() {
    let program = rust_names(&["-g"], "names-full");
    let names = frames(&profile(&[], &program));
    assert!(
        names
            .iter()
            .any(|f| f.starts_with("core::iter::") && f.ends_with("::fold")),
        "no qualified core::iter::...::fold frame: {names:#?}"
    );
    assert!(
        names.contains("names::count_primes::{{closure}}"),
        "closure not qualified: {names:#?}"
    );
    let bare: Vec<_> = names
        .iter()
        .filter(|f| ["fold", "{closure#0}", "count", "sum"].contains(&f.as_str()))
        .collect();
    assert!(bare.is_empty(), "unqualified inline frames: {bare:#?}");
    let generic: Vec<_> = names.iter().filter(|f| has_generic_arguments(f)).collect();
    assert!(generic.is_empty(), "generic arguments left: {generic:#?}");
}

/// A C++ name with a parameter list or a return type left: a `(` that is not part of
/// `operator()`, a lambda, `(anonymous namespace)` or a template argument, or a top-level space
/// before a `::`.
fn has_cpp_signature(frame: &str) -> bool {
    let mut depth = 0i32;
    let mut rest = frame;
    let mut i = 0;
    while let Some(c) = rest.chars().next() {
        if rest.starts_with("operator()") {
            rest = &rest["operator()".len()..];
            i += "operator()".len();
            continue;
        }
        match c {
            '<' | '{' | '[' => depth += 1,
            '>' | '}' | ']' | ')' => depth -= 1,
            '(' if depth == 0 && !rest.starts_with("(anonymous namespace)") => return true,
            '(' => depth += 1,
            ' ' if depth == 0 && frame[i..].contains("::") && !frame[..i].contains("operator") => {
                return true
            }
            _ => {}
        }
        rest = &rest[c.len_utf8()..];
        i += c.len_utf8();
    }
    false
}

fn check_cpp_names(names: &BTreeSet<String>) {
    let mangled: Vec<_> = names.iter().filter(|f| f.starts_with("_Z")).collect();
    assert!(mangled.is_empty(), "mangled frames: {mangled:#?}");
    let signatures: Vec<_> = names.iter().filter(|f| has_cpp_signature(f)).collect();
    assert!(
        signatures.is_empty(),
        "return types or parameter lists: {signatures:#?}"
    );
    let versioned: Vec<_> = names.iter().filter(|f| f.contains("@GLIBC")).collect();
    assert!(versioned.is_empty(), "symbol versions: {versioned:#?}");
    assert!(
        names.contains("fixture::compare_tags"),
        "no fixture::compare_tags: {names:#?}"
    );
    assert!(
        names
            .iter()
            .any(|f| f.starts_with("std::_Function_handler<") && f.ends_with("::_M_invoke")),
        "no std::function invoker: {names:#?}"
    );
}

#[test]
fn cpp_stl_names_are_demangled_without_signatures() {
    if !require("g++") {
        return;
    }
    let source = util::fixtures_dir().join("cpp").join("stl.cpp");
    let program = build("g++", &["-O2", "-g"], &source, "stl");
    let names = frames(&profile(&[], &program));
    check_cpp_names(&names);
    let plt: Vec<_> = names.iter().filter(|f| f.ends_with("@plt")).collect();
    assert!(
        plt.iter().any(|f| *f == "memcmp@plt" || *f == "strlen@plt"),
        "no memcmp@plt or strlen@plt frame: {names:#?}"
    );
}

#[test]
fn perf_cli_names_follow_the_same_rules() {
    if !require("g++") || !util::require_perf() {
        return;
    }
    let source = util::fixtures_dir().join("cpp").join("stl.cpp");
    let program = build("g++", &["-O2", "-g"], &source, "stl-perf");
    let names = frames(&profile(&["--backend", "perf-cli"], &program));
    check_cpp_names(&names);
}

#[test]
fn glibc_names_have_no_versions() {
    let program = fixture("glibc_heavy", Variant::CNoFramePointers);
    let names = frames(&profile(&[], &program));
    let versioned: Vec<_> = names
        .iter()
        .filter(|f| f.contains('@') && !f.ends_with("@plt"))
        .collect();
    assert!(versioned.is_empty(), "symbol versions: {versioned:#?}");
    assert!(names.contains("resolve_paths"), "{names:#?}");
}

/// The file offsets where the functions of `path` start, from its symbol table.
fn function_starts(path: &Path) -> BTreeSet<u64> {
    let data = std::fs::read(path).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let segments: Vec<(u64, u64, u64)> = file
        .segments()
        .map(|s| (s.address(), s.size(), s.file_range().0))
        .collect();
    file.symbols()
        .filter(|s| s.kind() == object::SymbolKind::Text && s.address() != 0)
        .filter_map(|s| {
            let &(address, _, offset) = segments
                .iter()
                .find(|&&(a, size, _)| (a..a + size).contains(&s.address()))?;
            Some(s.address() - address + offset)
        })
        .collect()
}

#[test]
fn stripped_binary_gets_one_frame_per_function_and_start() {
    let program = fixture("glibc_heavy", Variant::CNoFramePointers);
    let stripped = build_dir().join("glibc_heavy_stripped");
    std::fs::copy(&program, &stripped).unwrap();
    let status = Command::new("strip").arg(&stripped).status().unwrap();
    assert!(status.success(), "strip failed");
    let starts = function_starts(&program);
    let folded = profile(&[], &stripped);
    let prefix = "glibc_heavy_stripped+0x";
    let placeholders: BTreeSet<u64> = frames(&folded)
        .iter()
        .filter_map(|f| u64::from_str_radix(f.strip_prefix(prefix)?, 16).ok())
        .collect();
    assert!(
        !placeholders.is_empty(),
        "no {prefix}… frame\n{}",
        folded.summary()
    );
    let inside: Vec<_> = placeholders
        .iter()
        .filter(|o| !starts.contains(o))
        .collect();
    assert!(
        inside.is_empty(),
        "frames named by an address inside a function, not by its start: {inside:x?}\n\
         function starts: {starts:x?}"
    );
    // Our functions are main, parse_and_sort, resolve_paths, write_lines, cmp_doubles.
    assert!(placeholders.len() <= 5, "{placeholders:x?}");
    let rooted = folded.share_where(|stack| stack.get(1).is_some_and(|f| f == "_start"));
    let kernel_only = folded.share_where(|stack| stack.iter().skip(1).all(|f| f.ends_with("_[k]")));
    assert!(
        rooted + kernel_only > 0.95,
        "{:.1}% of the weight starts at _start\n{}",
        rooted * 100.0,
        folded.summary()
    );
}
