//! Shared helpers for the integration tests (`mod util;` in each test file).
//!
//! - [`fixture`] builds a ground-truth program from `fixtures/c` or `fixtures/rust` (once per
//!   test process, reused across processes while up to date) and returns its path.
//! - [`flamegraph`] is a [`Command`] for the profiler binary under test; [`run_with_timeout`]
//!   runs any command with a deadline so a hung test fails instead of hanging.
//! - [`Folded`] parses inferno's folded format (`frame;frame;frame COUNT`, root first) and
//!   measures shares; [`parse_svg_titles`] reads the `<title>` tooltips of an inferno SVG.
//! - [`require_perf`] and [`perf_folded`] run the real `perf` as an oracle; [`require_gcc`],
//!   [`require_root`] and [`skip`] skip a test that cannot run here with a one-line reason on
//!   stderr, and fail it instead when `CI=true`.
//! - [`Folded::assert_user_leaf_share`] and [`Folded::assert_sampled_frame_share`] check a
//!   sampled share with the tolerance its sample count supports ([`Folded::sampling_tolerance`]);
//!   kernel frames above a user frame (interrupts, page faults) count for that user frame.
//!
//! Shares are fractions in `0.0..=1.0`; tolerances are in percentage points (`2.0` = ±0.02).
//! Helpers panic with a full explanation instead of returning errors: they are for tests only.
#![allow(dead_code)]

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

/// How a fixture is compiled. C fixtures use gcc with `-O2 -g -pthread`, Rust fixtures rustc
/// with `-O -g` (edition 2021) and `-C llvm-args=-align-all-functions=6` (see `split.rs`).
// The shared "FramePointers" postfix is the point: tests read `Variant::CNoFramePointers`.
#[allow(clippy::enum_variant_names)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Variant {
    /// `fixtures/c/NAME.c` with `-fno-omit-frame-pointer`.
    CFramePointers,
    /// `fixtures/c/NAME.c` with `-fomit-frame-pointer`.
    CNoFramePointers,
    /// `fixtures/rust/NAME.rs` with `-C force-frame-pointers=yes`.
    RustFramePointers,
    /// `fixtures/rust/NAME.rs` with `-C force-frame-pointers=no`.
    RustNoFramePointers,
    /// `fixtures/c/NAME.c` as a shared library: `-shared -fPIC -Wl,-z,lazy`, no frame pointers
    /// (not in [`Variant::ALL`]).
    CSharedLibrary,
    /// `fixtures/go/NAME.go` with `go build` (Go keeps frame pointers; not in [`Variant::ALL`]).
    Go,
}

impl Variant {
    /// Every variant.
    pub const ALL: [Variant; 4] = [
        Variant::CFramePointers,
        Variant::CNoFramePointers,
        Variant::RustFramePointers,
        Variant::RustNoFramePointers,
    ];
    /// The two C variants.
    pub const C: [Variant; 2] = [Variant::CFramePointers, Variant::CNoFramePointers];
    /// The two Rust variants.
    pub const RUST: [Variant; 2] = [Variant::RustFramePointers, Variant::RustNoFramePointers];

    /// Directory name under `target/fixtures/`.
    pub fn dir_name(self) -> &'static str {
        match self {
            Variant::CFramePointers => "c-fp",
            Variant::CNoFramePointers => "c-nofp",
            Variant::RustFramePointers => "rust-fp",
            Variant::RustNoFramePointers => "rust-nofp",
            Variant::CSharedLibrary => "c-lib",
            Variant::Go => "go",
        }
    }

    /// True for the Rust variants.
    pub fn is_rust(self) -> bool {
        matches!(
            self,
            Variant::RustFramePointers | Variant::RustNoFramePointers
        )
    }

    /// True for the variants built with frame pointers.
    pub fn has_frame_pointers(self) -> bool {
        matches!(
            self,
            Variant::CFramePointers | Variant::RustFramePointers | Variant::Go
        )
    }

    /// The source file of fixture `name` for this variant (it may not exist).
    pub fn source(self, name: &str) -> PathBuf {
        if self.is_rust() {
            fixtures_dir().join("rust").join(format!("{name}.rs"))
        } else if self == Variant::Go {
            fixtures_dir().join("go").join(format!("{name}.go"))
        } else {
            fixtures_dir().join("c").join(format!("{name}.c"))
        }
    }

    /// The compiler command that builds `src` into `out`.
    fn compile_command(self, src: &Path, out: &Path) -> Command {
        let mut cmd;
        if self == Variant::Go {
            // A cache of our own: HOME may be unset or read-only under CI.
            cmd = Command::new("go");
            cmd.env("GOCACHE", fixtures_build_dir().join("go-cache"));
            cmd.args(["build", "-o"]).arg(out).arg(src);
            return cmd;
        }
        if self.is_rust() {
            cmd = Command::new(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()));
            cmd.args(["--edition", "2021", "-O", "-g"]);
            cmd.args(["-C", "llvm-args=-align-all-functions=6"]);
            let fp = if self.has_frame_pointers() {
                "yes"
            } else {
                "no"
            };
            cmd.arg("-C").arg(format!("force-frame-pointers={fp}"));
        } else {
            cmd = Command::new("gcc");
            cmd.args(["-O2", "-g", "-pthread", "-Wall", "-Wextra"]);
            cmd.arg(if self.has_frame_pointers() {
                "-fno-omit-frame-pointer"
            } else {
                "-fomit-frame-pointer"
            });
            if self == Variant::CSharedLibrary {
                cmd.args(["-shared", "-fPIC", "-Wl,-z,lazy"]);
            }
        }
        cmd.arg("-o").arg(out).arg(src);
        cmd
    }
}

/// The repository root (`CARGO_MANIFEST_DIR`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `fixtures/` directory with the fixture sources.
pub fn fixtures_dir() -> PathBuf {
    repo_root().join("fixtures")
}

/// `target/fixtures`, where built fixtures go (next to `target/tmp`).
pub fn fixtures_build_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("fixtures")
}

/// The fake `dtrace` script (see `fixtures/dtrace/README.md`).
pub fn fake_dtrace() -> PathBuf {
    fixtures_dir().join("dtrace").join("fake-dtrace")
}

/// The aggregation `fake-dtrace` writes: collapses to `work_a` 600, `work_b` 300, `work_c` 100.
pub fn dtrace_sample_stacks() -> PathBuf {
    fixtures_dir().join("dtrace").join("sample.stacks")
}

/// Builds fixture `name` in `variant` and returns the executable's path
/// (`target/fixtures/<variant>/<name>`).
///
/// Built at most once per test process; a build left by another process is reused when it
/// is newer than its sources and was made by the same compiler command. Builds go to a
/// unique temporary name and are renamed into place, so parallel test binaries never see a
/// half-written executable. Panics with the compiler's stderr when compilation fails, and
/// when the fixture has no source for this variant.
pub fn fixture(name: &str, variant: Variant) -> PathBuf {
    type Slot = Arc<OnceLock<PathBuf>>;
    static BUILT: OnceLock<Mutex<HashMap<(String, Variant), Slot>>> = OnceLock::new();
    let slot = {
        let mut map = BUILT
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        map.entry((name.to_owned(), variant)).or_default().clone()
    };
    slot.get_or_init(|| build_fixture(name, variant)).clone()
}

fn build_fixture(name: &str, variant: Variant) -> PathBuf {
    let src = variant.source(name);
    assert!(
        src.is_file(),
        "fixture {name:?} has no source for {variant:?}: {} does not exist",
        src.display()
    );
    let dir = fixtures_build_dir().join(variant.dir_name());
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join(name);
    let stamp_path = dir.join(format!("{name}.cmd"));
    let stamp = format!("{:?}", variant.compile_command(&src, &out));
    if is_up_to_date(&out, &stamp_path, &stamp, &fixture_inputs(&src)) {
        return out;
    }
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.tmp.{}.{n}", std::process::id()));
    let output = variant
        .compile_command(&src, &tmp)
        .current_dir(&dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run the compiler for {}: {e}", src.display()));
    if !output.status.success() {
        let _ = std::fs::remove_file(&tmp);
        panic!(
            "building fixture {name:?} ({variant:?}) failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    std::fs::rename(&tmp, &out).unwrap();
    // Not atomic with the rename: at worst another process rebuilds once more.
    std::fs::write(&stamp_path, &stamp).unwrap();
    out
}

/// The source plus, for C, the shared header it includes.
fn fixture_inputs(src: &Path) -> Vec<PathBuf> {
    let mut inputs = vec![src.to_path_buf()];
    if src.extension() == Some(OsStr::new("c")) {
        inputs.push(src.with_file_name("common.h"));
    }
    inputs
}

fn is_up_to_date(out: &Path, stamp_path: &Path, stamp: &str, inputs: &[PathBuf]) -> bool {
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let Some(built) = mtime(out) else {
        return false;
    };
    let stamp_matches = std::fs::read_to_string(stamp_path).is_ok_and(|s| s == stamp);
    stamp_matches
        && inputs
            .iter()
            .all(|i| mtime(i).unwrap_or(SystemTime::now()) <= built)
}

/// A [`Command`] for the profiler under test (`CARGO_BIN_EXE_flamegraph`, which Cargo sets
/// at compile time for integration tests of a crate with a `flamegraph` binary). Without the
/// caller's `DEBUGINFOD_URLS` (set by default on some distributions): tests ask no server unless
/// they start one (tests/debuginfod.rs).
pub fn flamegraph() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flamegraph"));
    cmd.env_remove("DEBUGINFOD_URLS");
    cmd
}

/// Runs `flamegraph ARGS -o DIR/out.folded -- COMMAND` (60 s deadline) in a fresh temporary
/// directory (also its working directory) and returns the parsed folded output with the
/// profiler's [`Output`]. Panics, showing stdout/stderr, when the profiler fails or writes no
/// folded file. Assumes the `.folded` extension selects the folded format.
pub fn flamegraph_folded(args: &[&str], command: &[&OsStr]) -> (Folded, Output) {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out.folded");
    let mut cmd = flamegraph();
    cmd.current_dir(dir.path())
        .args(args)
        .arg("-o")
        .arg(&out_path);
    cmd.arg("--").args(command);
    let output = run_ok(&mut cmd, Duration::from_secs(60));
    let text = std::fs::read_to_string(&out_path).unwrap_or_else(|e| {
        panic!(
            "no folded output at {}: {e}\n{}",
            out_path.display(),
            describe_output(&output)
        )
    });
    (Folded::parse(&text), output)
}

/// Runs `cmd` with stdin closed and stdout/stderr captured, killing it (and its process
/// group, so the profiled children too) when it runs longer than `timeout`: then panics with
/// what it printed. The command is started in a new process group.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    let description = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {description}: {e}"));
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let status = wait_until(&mut child, Instant::now() + timeout);
    let timed_out = status.is_none();
    if timed_out {
        kill_group(&child);
    }
    let status = status.unwrap_or_else(|| child.wait().unwrap());
    let output = Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    };
    if timed_out {
        panic!(
            "timed out after {timeout:?}: {description}\n{}",
            describe_output(&output)
        );
    }
    output
}

/// Like [`run_with_timeout`], and panics unless the command exits 0.
pub fn run_ok(cmd: &mut Command, timeout: Duration) -> Output {
    let description = format!("{cmd:?}");
    let output = run_with_timeout(cmd, timeout);
    assert!(
        output.status.success(),
        "{description} failed\n{}",
        describe_output(&output)
    );
    output
}

/// Status, stdout and stderr of a finished command, for assertion messages.
pub fn describe_output(output: &Output) -> String {
    format!(
        "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buf);
        }
        buf
    })
}

fn wait_until(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// SIGKILLs the process group led by `child` (started with `process_group(0)`).
fn kill_group(child: &Child) {
    let pgid = child.id() as libc::pid_t;
    // SAFETY: kill(2) has no memory-safety preconditions; a negative pid names the group
    // that this child leads, which contains only processes this test started.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

/// A child process that is SIGKILLed (and reaped) when dropped, so a failing test does not
/// leave a spinning fixture behind.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a fixture that prints `ready` once it runs (busy_forever) and waits for that line.
pub fn spawn_ready(program: &Path, args: &[&str]) -> KillOnDrop {
    let mut child = KillOnDrop(
        Command::new(program)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display())),
    );
    let mut line = String::new();
    let stdout = child.0.stdout.as_mut().expect("piped stdout");
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
    assert_eq!(line, "ready\n", "{} did not get ready", program.display());
    child
}

/// Waits until `child` (the profiler launching busy_forever, stdout piped) passes on the
/// fixture's `ready` line, then lets the fixture spin for a second of wall time: a fixed sleep
/// from the start is not enough on a loaded machine, where the startup alone can take longer.
pub fn wait_for_ready_then_spin(child: &mut KillOnDrop) {
    let stdout = child.0.stdout.as_mut().expect("piped stdout");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
    assert_eq!(line, "ready\n", "busy_forever did not get ready");
    std::thread::sleep(Duration::from_millis(1000));
}

/// Sends `signal` (a `libc::SIG*` number) to process `pid`.
pub fn send_signal(pid: u32, signal: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    let rc = unsafe { libc::kill(pid as libc::pid_t, signal) };
    assert_eq!(rc, 0, "kill({pid}, {signal}) failed");
}

/// The signal that killed a process, if any (`ExitStatus::signal`).
pub fn killed_by(status: &ExitStatus) -> Option<i32> {
    status.signal()
}

/// Parses inferno's folded format: one `frame;frame;frame COUNT` per line, root first.
/// Blank lines are skipped; a malformed line panics.
pub fn parse_folded(text: &str) -> Vec<(Vec<String>, u64)> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let (stack, count) = line
                .trim_end()
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("folded line without a count: {line:?}"));
            let count: u64 = count
                .parse()
                .unwrap_or_else(|_| panic!("folded line with a bad count: {line:?}"));
            (stack.split(';').map(str::to_owned).collect(), count)
        })
        .collect()
}

/// True when `frame` names `name`, ignoring an inferno annotation suffix (`_[k]`, `_[j]`,
/// `_[i]`, `_[w]`), a dtrace module prefix (`libc.so.6\`memcpy`) and a Rust legacy hash
/// suffix (`::h0123456789abcdef`).
pub fn frame_matches(frame: &str, name: &str) -> bool {
    normalize_frame(frame) == name
}

/// `frame` without the decorations listed in [`frame_matches`].
pub fn normalize_frame(frame: &str) -> &str {
    let mut f = frame;
    for suffix in ["_[k]", "_[j]", "_[i]", "_[w]"] {
        f = f.strip_suffix(suffix).unwrap_or(f);
    }
    if let Some((_, func)) = f.split_once('`') {
        f = func;
    }
    if let Some((path, hash)) = f.rsplit_once("::h") {
        if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            f = path;
        }
    }
    f
}

/// Parsed folded stacks with share queries. Shares are fractions of the total weight.
#[derive(Clone, Debug, Default)]
pub struct Folded {
    /// Each unique stack (root first) and its weight.
    pub stacks: Vec<(Vec<String>, u64)>,
}

impl Folded {
    /// Parses folded text (see [`parse_folded`]).
    pub fn parse(text: &str) -> Folded {
        Folded {
            stacks: parse_folded(text),
        }
    }

    /// Reads and parses a folded file.
    pub fn read(path: &Path) -> Folded {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        Folded::parse(&text)
    }

    /// The sum of all weights.
    pub fn total(&self) -> u64 {
        self.stacks.iter().map(|(_, n)| n).sum()
    }

    /// The weight of the stacks for which `pred` holds.
    pub fn weight_where(&self, mut pred: impl FnMut(&[String]) -> bool) -> u64 {
        self.stacks
            .iter()
            .filter(|(s, _)| pred(s))
            .map(|(_, n)| n)
            .sum()
    }

    /// The fraction of the weight whose stack satisfies `pred` (0 when there are no samples).
    pub fn share_where(&self, pred: impl FnMut(&[String]) -> bool) -> f64 {
        let total = self.total();
        if total == 0 {
            return 0.0;
        }
        self.weight_where(pred) as f64 / total as f64
    }

    /// The fraction of the weight whose stack has some frame satisfying `pred`.
    pub fn stacks_reaching(&self, mut pred: impl FnMut(&str) -> bool) -> f64 {
        self.share_where(|s| s.iter().any(|f| pred(f)))
    }

    /// The fraction of the weight whose stack contains a frame matching `name`
    /// (see [`frame_matches`]).
    pub fn share_of_frame(&self, name: &str) -> f64 {
        self.stacks_reaching(|f| frame_matches(f, name))
    }

    /// The fraction of the weight whose leaf (last frame) matches `name`.
    pub fn share_of_leaf(&self, name: &str) -> f64 {
        self.share_where(|s| s.last().is_some_and(|f| frame_matches(f, name)))
    }

    /// The fraction of the weight whose user leaf matches `name` (see [`user_leaf`]): a sample
    /// taken while the kernel served an interrupt or a page fault on top of `work_a` counts for
    /// `work_a`, as the CPU time was spent on its behalf.
    pub fn share_of_user_leaf(&self, name: &str) -> f64 {
        self.share_where(|s| user_leaf(s).is_some_and(|f| frame_matches(f, name)))
    }

    /// The number of samples behind the weights: the total divided by the greatest common
    /// divisor of the weights. The native backend weighs each sample by its period (one
    /// `cpu-clock` period at `-F 997` is 1003009 ns), the perf oracle by 1, so this is the sample
    /// count, or a smaller number (a more lenient tolerance) when every weight happens to share
    /// a factor.
    pub fn sample_count(&self) -> u64 {
        let gcd = self.stacks.iter().fold(0, |g, (_, n)| gcd(g, *n));
        self.total().checked_div(gcd).unwrap_or(0)
    }

    /// The tolerance in percentage points that sampling supports for a share whose true value
    /// is `expected`: `SIGMAS` binomial standard deviations for [`Folded::sample_count`]
    /// samples, plus `bias_points` for what the ground truth itself leaves open (e.g. a
    /// fixture's startup and driver loop, < 1%).
    ///
    /// Binomial is an upper bound here: each sample lands in a function with a probability
    /// equal to its share of CPU time when the sampling phase is random; `cpu-clock` samples
    /// a task's CPU time at a fixed period, which keeps its phase across context switches, so
    /// the real error is smaller (about one sample per contiguous run of a function), but every
    /// migration to another CPU restarts the phase, and a loaded machine migrates often.
    pub fn sampling_tolerance(&self, expected: f64, bias_points: f64) -> f64 {
        let n = self.sample_count().max(1) as f64;
        let p = expected.clamp(0.0, 1.0);
        bias_points + SIGMAS * (p * (1.0 - p) / n).sqrt() * 100.0
    }

    /// Asserts the share of stacks whose user leaf is `name` (see [`Folded::share_of_user_leaf`])
    /// is `expected` within [`Folded::sampling_tolerance`]`(expected, bias_points)`.
    #[track_caller]
    pub fn assert_user_leaf_share(&self, name: &str, expected: f64, bias_points: f64) {
        let what = format!(
            "share of stacks with user leaf {name:?} ({} samples)",
            self.sample_count()
        );
        let tolerance = self.sampling_tolerance(expected, bias_points);
        self.assert_share(&what, self.share_of_user_leaf(name), expected, tolerance);
    }

    /// Asserts that `name` is the user leaf of at least `minimum` of the stacks, less what
    /// sampling supports ([`Folded::sampling_tolerance`]`(minimum, 0.0)`): for fixtures whose
    /// ground truth is a lower bound ("spin_attached is the leaf of >= 95% of the samples").
    #[track_caller]
    pub fn assert_user_leaf_share_at_least(&self, name: &str, minimum: f64) {
        let share = self.share_of_user_leaf(name);
        let tolerance = self.sampling_tolerance(minimum, 0.0);
        if (share - minimum) * 100.0 < -tolerance {
            panic!(
                "share of stacks with user leaf {name:?}: {:.2}% is below {:.2}% less \
                 {tolerance:.2} points ({} samples)\n{}",
                share * 100.0,
                minimum * 100.0,
                self.sample_count(),
                self.summary()
            );
        }
    }

    /// Asserts the share of stacks containing frame `name` is `expected` within
    /// [`Folded::sampling_tolerance`]`(expected, bias_points)`.
    #[track_caller]
    pub fn assert_sampled_frame_share(&self, name: &str, expected: f64, bias_points: f64) {
        let what = format!(
            "share of stacks with frame {name:?} ({} samples)",
            self.sample_count()
        );
        let tolerance = self.sampling_tolerance(expected, bias_points);
        self.assert_share(&what, self.share_of_frame(name), expected, tolerance);
    }

    /// The first frames (process names) and their shares, largest first.
    pub fn roots(&self) -> Vec<(String, f64)> {
        self.shares_by(|s| s.first().cloned())
    }

    /// The leaves and their shares, largest first.
    pub fn leaves(&self) -> Vec<(String, f64)> {
        self.shares_by(|s| s.last().cloned())
    }

    fn shares_by(&self, key: impl Fn(&[String]) -> Option<String>) -> Vec<(String, f64)> {
        let mut by: HashMap<String, u64> = HashMap::new();
        for (stack, n) in &self.stacks {
            *by.entry(key(stack).unwrap_or_default()).or_default() += n;
        }
        let total = self.total().max(1) as f64;
        let mut out: Vec<_> = by.into_iter().map(|(k, n)| (k, n as f64 / total)).collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        out
    }

    /// A human summary for assertion messages: total, top leaves, heaviest stacks.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} stacks, total weight {}\n",
            self.stacks.len(),
            self.total()
        );
        s.push_str("top leaves:\n");
        for (leaf, share) in self.leaves().iter().take(12) {
            s.push_str(&format!("  {:6.2}%  {leaf}\n", share * 100.0));
        }
        let mut heavy: Vec<_> = self.stacks.iter().collect();
        heavy.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        s.push_str("heaviest stacks:\n");
        for (stack, n) in heavy.iter().take(8) {
            let mut line = stack.join(";");
            if line.len() > 300 {
                let cut = line.len() - 300;
                let cut = (cut..line.len())
                    .find(|&i| line.is_char_boundary(i))
                    .unwrap_or(0);
                line = format!("...{}", &line[cut..]);
            }
            s.push_str(&format!("  {n:8}  {line}\n"));
        }
        s
    }

    /// Asserts `actual` is within `tolerance_points` of `expected`, explaining with
    /// [`Folded::summary`] what `what` measured when it is not.
    #[track_caller]
    pub fn assert_share(&self, what: &str, actual: f64, expected: f64, tolerance_points: f64) {
        if !within(actual, expected, tolerance_points) {
            panic!(
                "{what}: {:.2}% is not within {tolerance_points} points of {:.2}%\n{}",
                actual * 100.0,
                expected * 100.0,
                self.summary()
            );
        }
    }

    /// Asserts the share of stacks containing frame `name` (see [`Folded::share_of_frame`]).
    #[track_caller]
    pub fn assert_frame_share(&self, name: &str, expected: f64, tolerance_points: f64) {
        let what = format!("share of stacks with frame {name:?}");
        self.assert_share(&what, self.share_of_frame(name), expected, tolerance_points);
    }

    /// Asserts the share of stacks whose leaf is `name` (see [`Folded::share_of_leaf`]).
    #[track_caller]
    pub fn assert_leaf_share(&self, name: &str, expected: f64, tolerance_points: f64) {
        let what = format!("share of stacks with leaf {name:?}");
        self.assert_share(&what, self.share_of_leaf(name), expected, tolerance_points);
    }
}

/// Standard deviations of [`Folded::sampling_tolerance`]: at 4.5 a correct profiler fails a
/// share assertion about once in 150,000 (two-sided normal tail), so a suite of a few hundred
/// share assertions run many times a day does not flake.
pub const SIGMAS: f64 = 4.5;

/// The last frame of `stack` that is not a kernel frame (`_[k]`): the user function the CPU
/// was working for when the sample was taken. `None` for kernel-only stacks.
pub fn user_leaf(stack: &[String]) -> Option<&str> {
    stack
        .iter()
        .rev()
        .map(String::as_str)
        .find(|f| !f.ends_with("_[k]"))
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn within(actual: f64, expected: f64, tolerance_points: f64) -> bool {
    // A hair of slack so 100% counts as within 5 points of 95%.
    ((actual - expected) * 100.0).abs() <= tolerance_points + 1e-9
}

/// Asserts that the fraction `actual` is within `tolerance_points` percentage points of the
/// fraction `expected` (`assert_share(0.59, 0.60, 2.0)` passes). Prefer
/// [`Folded::assert_share`], whose message includes the stacks.
#[track_caller]
pub fn assert_share(actual: f64, expected: f64, tolerance_points: f64) {
    assert!(
        within(actual, expected, tolerance_points),
        "share {:.2}% is not within {tolerance_points} points of {:.2}%",
        actual * 100.0,
        expected * 100.0
    );
}

/// The `<title>` tooltips of an inferno SVG as `(name, samples, percent)`: for
/// `<title>work_a (1,234 samples, 60.00%)</title>`, `("work_a", 1234, 60.0)`. The root is
/// `("all", total, 100.0)`. XML entities are unescaped; titles of another shape are skipped.
pub fn parse_svg_titles(svg: &str) -> Vec<(String, u64, f64)> {
    let mut out = Vec::new();
    let mut rest = svg;
    while let Some(start) = rest.find("<title>") {
        rest = &rest[start + "<title>".len()..];
        let Some(end) = rest.find("</title>") else {
            break;
        };
        if let Some(parsed) = parse_title(&unescape_xml(&rest[..end])) {
            out.push(parsed);
        }
        rest = &rest[end..];
    }
    out
}

/// `NAME (N COUNTNAME, P%)` or, in differential graphs, `NAME (N COUNTNAME, P%; +D%)`.
fn parse_title(title: &str) -> Option<(String, u64, f64)> {
    let inner = title.strip_suffix(')')?;
    let open = inner.rfind(" (")?;
    let (name, info) = (&inner[..open], &inner[open + 2..]);
    let info = info.split(';').next()?;
    let (count, pct) = info.split_once(", ")?;
    let samples = count.split(' ').next()?.replace(',', "").parse().ok()?;
    let percent = pct.trim().strip_suffix('%')?.parse().ok()?;
    Some((name.to_owned(), samples, percent))
}

/// Replaces `&lt; &gt; &amp; &quot; &apos;` and numeric character references.
pub fn unescape_xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let decoded = rest.find(';').and_then(|semi| {
            let c = match &rest[1..semi] {
                "lt" => '<',
                "gt" => '>',
                "amp" => '&',
                "quot" => '"',
                "apos" => '\'',
                e if e.starts_with("#x") => char::from_u32(u32::from_str_radix(&e[2..], 16).ok()?)?,
                e if e.starts_with('#') => char::from_u32(e[1..].parse().ok()?)?,
                _ => return None,
            };
            Some((c, semi + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// True when `program` runs with `args` (e.g. `("go", &["version"])`); else [`skip`]s naming
/// `reason` (a failure with `CI=true`).
#[track_caller]
pub fn require_tool(program: &str, args: &[&str], reason: &str) -> bool {
    let runs = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    require(
        runs,
        &format!("`{program}` is not runnable here ({reason})"),
    )
}

/// True under CI (`CI=true`), where a test that lacks perf, gcc or root must fail, not skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The name of the running test (the harness names each test's thread after it).
fn test_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_owned()
}

/// Reports that the running test cannot run here because of `reason` (one line, naming the
/// fix): panics when `CI=true`, else prints `skipping TEST: REASON` on stderr (uncaptured, so
/// `cargo test` shows it). The caller then returns: `if !have_x { util::skip("..."); return; }`,
/// or use a `require_*` helper.
#[track_caller]
pub fn skip(reason: &str) {
    if in_ci() {
        panic!("{reason}, and CI=true: a test that cannot run must fail in CI");
    }
    print_skip(reason);
}

/// Prints `skipping TEST: REASON` on stderr, also with `CI=true`: for what a machine's settings
/// decide (a sysctl), not for a missing tool or privilege (use [`skip`] for those).
pub fn print_skip(reason: &str) {
    // Straight to stderr, not through `eprintln!`, which the test harness captures (and
    // shows only for failures): a skip must be visible in a normal `cargo test` run.
    let _ = writeln!(std::io::stderr(), "skipping {}: {reason}", test_name());
}

/// `skip(reason)` unless `available`; returns `available`.
#[track_caller]
pub fn require(available: bool, reason: &str) -> bool {
    if !available {
        skip(reason);
    }
    available
}

fn runs(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// True when `perf` runs (`perf --version`); else [`skip`]s (a failure with `CI=true`).
#[track_caller]
pub fn require_perf() -> bool {
    require(
        runs("perf", "--version"),
        "`perf` is not runnable here (install linux-perf)",
    )
}

/// True when `gcc` runs (`gcc --version`); else [`skip`]s (a failure with `CI=true`).
#[track_caller]
pub fn require_gcc() -> bool {
    require(
        runs("gcc", "--version"),
        "`gcc` is not runnable here (install gcc and libc6-dev)",
    )
}

/// True when the effective user is root; else [`skip`]s (a failure with `CI=true`) naming
/// `why` root is needed, e.g. `"switching to user nobody with setpriv"`.
#[track_caller]
pub fn require_root(why: &str) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    require(
        root,
        &format!("needs root for {why} (run the tests as root)"),
    )
}

/// Oracle: records `command` with the real perf (`perf record -F 997 -g` plus `record_args`,
/// e.g. `["--call-graph", "dwarf,65528"]`), then `perf script` (plus `script_args`) collapsed
/// by inferno's perf collapser with kernel frames annotated `_[k]`. Each step has a 60 s
/// deadline. Returns the folded stacks and the raw `perf script` text.
pub fn perf_folded(
    command: &[&OsStr],
    record_args: &[&str],
    script_args: &[&str],
) -> (Folded, String) {
    use inferno::collapse::Collapse;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("perf.data");
    let timeout = Duration::from_secs(60);
    let mut record = Command::new("perf");
    record
        .args(["record", "-q", "-F", "997", "-g", "-o"])
        .arg(&data);
    record.args(record_args).arg("--").args(command);
    run_ok(&mut record, timeout);
    let mut script = Command::new("perf");
    script
        .args(["script", "--force", "-i"])
        .arg(&data)
        .args(script_args);
    let script_out = run_ok(&mut script, timeout).stdout;
    let mut options = inferno::collapse::perf::Options::default();
    options.annotate_kernel = true;
    let mut folded = Vec::new();
    inferno::collapse::perf::Folder::from(options)
        .collapse(&script_out[..], &mut folded)
        .unwrap();
    let folded = Folded::parse(&String::from_utf8(folded).unwrap());
    (folded, String::from_utf8_lossy(&script_out).into_owned())
}

/// A [`Command`] running `program` as user `nobody` (uid and gid 65534, no supplementary
/// groups) through `setpriv`: what an unprivileged user sees. Needs root (see [`require_root`]).
pub fn as_nobody(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(program);
    cmd
}

/// A fresh temporary directory anyone may write (0777), holding a copy of `program` anyone may
/// run (0755): for runs as `nobody`, who cannot enter `target/`. Returns (dir, copy).
pub fn copy_for_nobody(program: &Path) -> (tempfile::TempDir, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), PermissionsExt::from_mode(0o777)).unwrap();
    let name = program.file_name().expect("a program file name");
    let copy = dir.path().join(name);
    std::fs::copy(program, &copy).unwrap();
    std::fs::set_permissions(&copy, PermissionsExt::from_mode(0o755)).unwrap();
    (dir, copy)
}
