//! perf is the oracle: the same perf.data file, recorded by the real `perf record --call-graph
//! dwarf`, is folded twice: by `perf script | inferno-collapse-perf` (our perf-cli backend) and by
//! our own reader, unwinder and symbolizer (`--perfdata` with the native backend). The stacks must
//! agree sample by sample.
//!
//! Normalizations, the only ones applied (and documented in the README):
//! - Aliases: several symbols at one address (glibc's `malloc` / `__libc_malloc` /
//!   `__GI___libc_malloc`, `__libc_start_main` / `__libc_start_main_impl`, or Rust functions
//!   merged by identical-code folding such as `<u64 as Display>::fmt` / `<usize as Display>::fmt`)
//!   are the same function; perf picks among them arbitrarily. Both sides are mapped to one name
//!   per address, read from the symbol tables of the modules in the recording.
//! - Unresolved addresses: where perf writes `[libc.so.6]` (inferno's module fallback for
//!   `[unknown]`), we write `libc.so.6+0x3c04f`, the file offset; ours is mapped to perf's form.
//! - The signal trampoline, where perf is wrong: the return address of a signal handler is the
//!   first byte of glibc's `__restore_rt`, so `ra - 1` lands on the padding byte before it;
//!   perf then names no symbol (`[libc.so.6]`), we name `__restore_rt`; ours is mapped to
//!   perf's form.
//! - glibc's calls to its own IFUNCs go through PLT stubs whose relocation has no symbol (only
//!   the resolver's address); perf 6.1 names them `@plt`, we name them after the IFUNC
//!   (`strnlen@plt`); ours is mapped to perf's form where perf has a bare `@plt`.
//! - Compiler clone suffixes (`.constprop.0`, `.isra.0`, `.part.0`, `.cold`) are dropped: perf
//!   names some clones by their DWARF name, we by their symbol.
//! - Names: none. Both sides name frames with the README's rules (the perf-cli backend runs
//!   `perf script --no-demangle` and demangles as the native backend does); the alias table
//!   reads symbol names through the same rules.

mod util;

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use object::{Object, ObjectSymbol};
use util::{fixture, flamegraph, Folded, Variant};

const TIMEOUT: Duration = Duration::from_secs(120);

/// Drops `.constprop.N`-style clone suffixes.
fn strip_clone_suffix(name: &str) -> &str {
    let mut name = name;
    for marker in [".constprop.", ".isra.", ".part.", ".cold", ".lto_priv."] {
        if let Some(i) = name.find(marker) {
            name = &name[..i];
        }
    }
    name
}

/// A symbol's name as both backends show it (the README's naming rules).
fn demangle(name: &str) -> String {
    flamegraph::symbolize::names::display(name, None, true, false)
}

/// Maps every symbol name of `paths` (and their build-id debug files) to one canonical name per
/// address: the alphabetically first alias.
fn alias_table(paths: &HashSet<PathBuf>) -> HashMap<String, String> {
    let mut table = HashMap::new();
    for path in paths {
        let mut files = vec![path.clone()];
        if let Ok(data) = std::fs::read(path) {
            if let Ok(Some(id)) = object::File::parse(&*data).and_then(|f| f.build_id()) {
                let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
                files.push(PathBuf::from(format!(
                    "/usr/lib/debug/.build-id/{}/{}.debug",
                    &hex[..2],
                    &hex[2..]
                )));
            }
        }
        let mut by_address: HashMap<u64, Vec<String>> = HashMap::new();
        for file in files {
            let Ok(data) = std::fs::read(&file) else {
                continue;
            };
            let Ok(obj) = object::File::parse(&*data) else {
                continue;
            };
            for sym in obj.symbols().chain(obj.dynamic_symbols()) {
                if sym.kind() != object::SymbolKind::Text || sym.address() == 0 {
                    continue;
                }
                if let Ok(name) = sym.name() {
                    let name = strip_clone_suffix(&demangle(name)).to_owned();
                    by_address.entry(sym.address()).or_default().push(name);
                }
            }
        }
        for names in by_address.values() {
            let Some(canonical) = names.iter().min() else {
                continue;
            };
            for n in names {
                table.entry(n.clone()).or_insert_with(|| canonical.clone());
            }
        }
    }
    table
}

/// Each stack of `folded` with the normalizations above; `rename` maps a frame to perf's form
/// first where it returns a name.
fn normalize(
    folded: &Folded,
    aliases: &HashMap<String, String>,
    rename: &dyn Fn(&str) -> Option<String>,
) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    for (stack, weight) in &folded.stacks {
        let frames: Vec<String> = stack
            .iter()
            .map(|f| {
                if let Some(renamed) = rename(f) {
                    return renamed;
                }
                if let Some((module, offset)) = f.rsplit_once("+0x") {
                    if !module.is_empty() && offset.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return format!("[{module}]");
                    }
                }
                if f == "__restore_rt" {
                    return "[libc.so.6]".to_owned();
                }
                let f = strip_clone_suffix(f);
                aliases.get(f).cloned().unwrap_or_else(|| f.to_owned())
            })
            .collect();
        *out.entry(frames.join(";")).or_default() += weight;
    }
    out
}

/// The share of sample weight whose stack is identical on both sides, and a report of the
/// largest differences.
fn agreement(perf: &HashMap<String, u64>, ours: &HashMap<String, u64>) -> (f64, String) {
    let tp: u64 = perf.values().sum();
    let to: u64 = ours.values().sum();
    let mut same = 0.0;
    let mut diffs: Vec<(f64, &String)> = Vec::new();
    for key in perf.keys().chain(ours.keys()).collect::<HashSet<_>>() {
        let p = *perf.get(key).unwrap_or(&0) as f64 / tp as f64;
        let o = *ours.get(key).unwrap_or(&0) as f64 / to as f64;
        same += p.min(o);
        diffs.push((p - o, key));
    }
    diffs.sort_by(|a, b| b.0.abs().total_cmp(&a.0.abs()));
    let report = diffs
        .iter()
        .take(8)
        .map(|(d, k)| format!("{:+.2}% {}", d * 100.0, k))
        .collect::<Vec<_>>()
        .join("\n");
    (same, report)
}

/// One recording, folded both ways: `perf script | inferno` (perf-cli) and our reader.
struct Folds {
    perf: Folded,
    ours: Folded,
    data: PathBuf,
    _dir: tempfile::TempDir,
}

/// Records `command` with the real perf (DWARF call graphs, 64 KiB copies) and folds the file
/// with both backends.
fn record_and_fold(command: &[&OsStr]) -> Folds {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("perf.data");
    util::run_ok(
        Command::new("perf")
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
            .args(command),
        TIMEOUT,
    );
    let fold = |backend: &str, out: &str| -> Folded {
        util::run_ok(
            flamegraph()
                .current_dir(dir.path())
                .args(["--backend", backend, "-o", out, "--perfdata"])
                .arg(&data),
            TIMEOUT,
        );
        Folded::read(&dir.path().join(out))
    };
    Folds {
        perf: fold("perf-cli", "perf.folded"),
        ours: fold("native", "ours.folded"),
        data,
        _dir: dir,
    }
}

/// Records `command` with perf, folds the file both ways, and returns the agreement.
fn compare(command: &[&OsStr]) -> (f64, String) {
    let Folds {
        perf,
        ours,
        data,
        _dir,
    } = record_and_fold(command);
    // The modules of the recording, from perf's own view of it.
    let script = util::run_ok(
        Command::new("perf")
            .args(["script", "-F", "dso", "--show-mmap-events", "-i"])
            .arg(&data),
        TIMEOUT,
    );
    let modules: HashSet<PathBuf> = String::from_utf8_lossy(&script.stdout)
        .split(['(', ')', ' ', '\n'])
        .filter(|w| w.starts_with('/') && Path::new(w).is_file())
        .map(PathBuf::from)
        .chain(command.first().map(PathBuf::from))
        .collect();
    let aliases = alias_table(&modules);
    let perf_frames: HashSet<&str> = perf
        .stacks
        .iter()
        .flat_map(|(s, _)| s)
        .map(|f| f.as_str())
        .collect();
    let bare_plt = |f: &str| {
        let unnamed_by_perf = perf_frames.contains("@plt") && !perf_frames.contains(f);
        (f.ends_with("@plt") && unnamed_by_perf).then(|| "@plt".to_owned())
    };
    agreement(
        &normalize(&perf, &aliases, &|_| None),
        &normalize(&ours, &aliases, &bare_plt),
    )
}

fn assert_agreement(command: &[&OsStr], at_least: f64) {
    if !util::require_perf() {
        return;
    }
    let (same, report) = compare(command);
    eprintln!("{:?}: {:.2}% identical", command[0], same * 100.0);
    assert!(
        same >= at_least,
        "{:.2}% of the weight has identical stacks (want {:.0}%); largest differences (perf - ours):\n{report}",
        same * 100.0,
        at_least * 100.0
    );
}

#[test]
fn c_without_frame_pointers_threads() {
    let prog = fixture("split", Variant::CNoFramePointers);
    assert_agreement(
        &[prog.as_os_str(), OsStr::new("threads"), OsStr::new("1")],
        0.99,
    );
}

#[test]
fn c_recursion_100_deep() {
    let prog = fixture("recurse", Variant::CNoFramePointers);
    assert_agreement(
        &[prog.as_os_str(), OsStr::new("100"), OsStr::new("1")],
        0.99,
    );
}

#[test]
fn c_plt_and_signal_handler() {
    let prog = fixture("plt_signal", Variant::CNoFramePointers);
    assert_agreement(&[prog.as_os_str(), OsStr::new("1")], 0.99);
}

#[test]
fn rust_release_with_heavy_inlining() {
    let prog = fixture("generic", Variant::RustNoFramePointers);
    assert_agreement(&[prog.as_os_str(), OsStr::new("1.5")], 0.95);
}

/// Where perf is wrong, we say so: `perf script` cuts every stack at 127 frames
/// (`--max-stack`), so a 300-deep recursion loses its root; our reader unwinds the same samples
/// completely.
#[test]
fn perf_cuts_deep_stacks_at_127_frames_and_we_do_not() {
    if !util::require_perf() {
        return;
    }
    let prog = fixture("recurse", Variant::CNoFramePointers);
    let Folds { perf, ours, .. } =
        record_and_fold(&[prog.as_os_str(), OsStr::new("300"), OsStr::new("1")]);
    let complete = |f: &Folded| {
        f.share_where(|s| {
            s.iter().any(|x| x == "main") && s.iter().filter(|x| *x == "recurse").count() > 300
        })
    };
    let deepest = perf.stacks.iter().map(|(s, _)| s.len()).max().unwrap_or(0);
    assert!(
        deepest < 160,
        "perf script stops at 127 user frames (deepest stack: {deepest})"
    );
    assert_eq!(
        complete(&perf),
        0.0,
        "perf loses the root of every 300-deep stack"
    );
    assert!(
        complete(&ours) >= 0.95,
        "we unwind all 300 frames to main:\n{}",
        ours.summary()
    );
}
