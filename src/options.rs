//! Plain configuration structs: what the CLI turns its arguments into. Nothing here depends on
//! clap, so the library can be driven by any front end (the two binaries, tests, benchmarks).

use std::ffi::OsString;
use std::path::PathBuf;

pub use inferno::flamegraph::color::Palette;

/// Which recorder produces the stacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The built-in perf_event sampler (Linux only).
    Native,
    /// `perf record` + `perf script`, as flamegraph 0.6 does.
    PerfCli,
    /// `dtrace` (or `xctrace` on macOS).
    Dtrace,
}

impl Backend {
    /// The default for this platform: the native sampler on Linux, dtrace/xctrace elsewhere.
    pub fn platform_default() -> Self {
        if cfg!(target_os = "linux") {
            Backend::Native
        } else {
            Backend::Dtrace
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Native => "native",
            Backend::PerfCli => "perf-cli",
            Backend::Dtrace => "dtrace",
        }
    }
}

/// What to profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Launch this command (program and arguments).
    Command(Vec<OsString>),
    /// Attach to running processes.
    Pids(Vec<u32>),
    /// Every process on every CPU (`-a`), until `--duration` or Ctrl-C, or while this command
    /// (program and arguments; empty: none) runs, as `perf record -a -- CMD` does.
    SystemWide(Vec<OsString>),
    /// Draw an existing perf.data file.
    PerfData(PathBuf),
}

/// How user stacks are unwound by the native sampler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallGraph {
    /// The kernel walks frame pointers.
    FramePointer,
    /// The kernel copies the user stack and we unwind it with DWARF CFI.
    Dwarf,
}

/// Everything about recording. Every field documents its default (see [`RecordOptions::default`]).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RecordOptions {
    /// Which recorder. Default: [`Backend::platform_default`].
    pub backend: Backend,
    /// What to profile. Default: an empty command (invalid until set).
    pub workload: Workload,
    /// Sampling frequency in Hz. Default: 997.
    pub frequency: u32,
    /// Custom arguments replacing `perf record ...` / the dtrace script (`-c`). Default: none.
    pub custom_cmd: Option<String>,
    /// `perf record -z` compression level. Default: none.
    pub compression_level: Option<u8>,
    /// Run the external tool through `sudo`, with optional extra sudo flags. Default: no.
    pub root: Option<Option<String>>,
    /// Resolve inlined frames. Default: true (`--no-inline` turns it off).
    pub inline: bool,
    /// Native backend and perf.data files: add each user frame's source `file:line` (`--lines`),
    /// read from the DWARF line tables of sampled modules only. Default: false.
    pub lines: bool,
    /// Succeed even if the profiled program (or perf) exits with an error. Default: false.
    pub ignore_status: bool,
    /// Print the commands run and the events chosen. Default: false.
    pub verbose: bool,
    /// Native sampler: how user stacks are unwound. Default: DWARF on x86_64/aarch64.
    pub call_graph: CallGraph,
    /// Native sampler: bytes of user stack copied per sample in DWARF mode.
    /// Default: [`DEFAULT_STACK_SIZE`].
    pub stack_size: u32,
    /// Send the launched program's stdout (and the external recorder's) to our stderr, so that
    /// our stdout carries nothing but the graph. Default: false; the CLI sets it when the output
    /// is our stdout ([`crate::sink::shares_stdout`]: `-o -`, or `/dev/stdout` into a pipe or file).
    pub stdout_to_stderr: bool,
    /// Native sampler, launch mode: run the program as this user (uid, gid) while recording with
    /// our own privileges; set when `--root` re-runs the recorder under sudo. Default: none.
    pub run_as: Option<(u32, u32)>,
    /// `-e/--event` with `--perfdata`: the event to draw from a perf.data file with several (by
    /// name, as `perf evlist` shows it, modifiers such as `:u` optional). Default: the first.
    pub event: Option<String>,
    /// `-e/--event` when recording: the event to sample. Default: none, meaning cpu-clock for
    /// the native backend and perf's own default for perf-cli.
    pub record_event: Option<crate::event::Event>,
    /// `--period N`: sample every N events (nanoseconds for cpu-clock and task-clock) instead of
    /// at [`RecordOptions::frequency`]. Default: none; the CLI sets 1 for software count events
    /// (faults, switches) when neither -F nor --period is given
    /// ([`crate::event::Event::default_sampling`]).
    pub period: Option<u64>,
    /// `--symfs DIR`: the recording machine's files, at their recorded paths under `DIR`
    /// (perf.data only). Default: none.
    pub symfs: Option<PathBuf>,
    /// `--kallsyms FILE`: the recording kernel's symbols (perf.data only). Default: none (the
    /// running kernel's, if it is the one that was recorded).
    pub kallsyms: Option<PathBuf>,
    /// Native sampler, launch mode: off-CPU time with on-CPU time (`--off-cpu`) or alone
    /// (`--off-cpu-only`). Default: off.
    pub off_cpu: crate::collect::OffCpuMode,
    /// Fetch missing debug info (and, for perf.data, missing binaries) from the servers
    /// `DEBUGINFOD_URLS` names; `--no-debuginfod` turns it off. Default: true (nothing is asked
    /// when the variable is unset).
    pub debuginfod: bool,
    /// `--duration`: stop recording after this long, as Ctrl-C does (a launched program is
    /// stopped; attached processes and a system-wide recording's keep running). Default: none.
    pub duration: Option<std::time::Duration>,
    /// Testing hook for `--perfdata` (hidden `--replay-stack-prefix BYTES`): unwind from only
    /// the first BYTES of each sample's copied stack. Default: none.
    pub replay_stack_prefix: Option<u32>,
}

/// Bytes of user stack copied per sample by default in DWARF mode.
pub const DEFAULT_STACK_SIZE: u32 = 48 * 1024;

/// The largest user stack copy the kernel accepts (the sample record size is a u16).
pub const MAX_STACK_SIZE: u32 = 65528;

impl Default for RecordOptions {
    fn default() -> Self {
        RecordOptions {
            backend: Backend::platform_default(),
            workload: Workload::Command(Vec::new()),
            frequency: 997,
            custom_cmd: None,
            compression_level: None,
            root: None,
            inline: true,
            lines: false,
            ignore_status: false,
            verbose: false,
            call_graph: if cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
                CallGraph::Dwarf
            } else {
                CallGraph::FramePointer
            },
            stack_size: DEFAULT_STACK_SIZE,
            replay_stack_prefix: None,
            stdout_to_stderr: false,
            run_as: None,
            event: None,
            record_event: None,
            period: None,
            symfs: None,
            kallsyms: None,
            off_cpu: crate::collect::OffCpuMode::Off,
            debuginfod: true,
            duration: None,
        }
    }
}

/// Options that shape the graph; they apply to every backend alike.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct GraphOptions {
    /// SVG title. Default: inferno's ("Flame Graph", or "Flame Chart").
    pub title: Option<String>,
    /// Second title line. Default: none.
    pub subtitle: Option<String>,
    /// Colors depend only on the function name. Default: false.
    pub deterministic: bool,
    /// Icicle graph (root at the top). Default: false.
    pub inverted: bool,
    /// Reverse the stacks (leaf at the root). Default: false.
    pub reverse: bool,
    /// Notes embedded in the SVG. Default: none.
    pub notes: Option<String>,
    /// Omit functions narrower than this many pixels. Default: 0.01.
    pub min_width: f64,
    /// Image width in pixels. Default: inferno's (1200).
    pub image_width: Option<usize>,
    /// Color palette. Default: inferno's (hot).
    pub palette: Option<Palette>,
    /// Cut off the frames below (rootward of) any of these functions. Default: none.
    pub skip_after: Vec<String>,
    /// Flame chart: time on the x axis, stacks not merged. Default: false.
    pub flame_chart: bool,
    /// Keep the generic arguments of Rust names (`fold<usize, …>`). Default: false.
    pub full_names: bool,
    /// The counts are microseconds of on- and off-CPU time (`--off-cpu`): the SVG says ms, and
    /// `[off-cpu]` / `[preempted]` frames get their own colours. Default: false.
    pub time_in_us: bool,
}

impl Default for GraphOptions {
    fn default() -> Self {
        GraphOptions {
            title: None,
            subtitle: None,
            deterministic: false,
            inverted: false,
            reverse: false,
            notes: None,
            min_width: 0.01,
            image_width: None,
            palette: None,
            skip_after: Vec::new(),
            flame_chart: false,
            full_names: false,
            time_in_us: false,
        }
    }
}

pub use crate::output::Format as OutputFormat;

/// One output file and its format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputTarget {
    /// The file, or `-` for standard output (see [`crate::sink`] for how each kind of path is
    /// written).
    pub path: PathBuf,
    /// Its format: from the extension, else `--format`, else SVG
    /// ([`crate::output::Format::resolve`]).
    pub format: OutputFormat,
}

impl OutputTarget {
    /// `path` in the format its extension names, else `fallback`, else SVG.
    pub fn new(path: PathBuf, fallback: Option<OutputFormat>) -> Self {
        OutputTarget {
            format: OutputFormat::resolve(&path, fallback),
            path,
        }
    }
}

/// Where the result goes.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct OutputOptions {
    /// The outputs, all drawn from one recording, in the order given (never empty).
    /// Default: one SVG, `flamegraph.svg`.
    pub outputs: Vec<OutputTarget>,
    /// Open the first output with the default program. Default: false.
    pub open: bool,
    /// A shell-quoted command the folded stacks go through (stdin → stdout) before the SVG and
    /// folded outputs; refused with pprof and speedscope outputs. Default: none.
    pub post_process: Option<String>,
}

impl OutputOptions {
    /// The first output (the one `--open` opens).
    pub fn first(&self) -> &OutputTarget {
        &self.outputs[0]
    }

    /// True when any output has this format.
    pub fn has(&self, format: OutputFormat) -> bool {
        self.outputs.iter().any(|o| o.format == format)
    }
}

impl Default for OutputOptions {
    fn default() -> Self {
        OutputOptions {
            outputs: vec![OutputTarget::new(PathBuf::from("flamegraph.svg"), None)],
            open: false,
            post_process: None,
        }
    }
}

/// The views drawn from a recording: thread roots, a baseline to compare with, the terminal
/// summary.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ViewOptions {
    /// What the root frame of each stack names. Default: the thread's name (`comm`).
    pub roots: crate::profile::fold::Roots,
    /// Draw a differential graph against this profile (folded, perf.data or our pprof).
    /// Default: none.
    pub baseline: Option<PathBuf>,
    /// Scale the baseline to the new profile's total before comparing. Default: true.
    pub normalize: bool,
    /// Rows of each table of the terminal summary. Default: 10.
    pub summary_rows: usize,
    /// Print nothing after the run but warnings and errors. Default: false.
    pub quiet: bool,
    /// Print the summary and write no output file. Default: false.
    pub summary_only: bool,
}

impl Default for ViewOptions {
    fn default() -> Self {
        ViewOptions {
            roots: crate::profile::fold::Roots::default(),
            baseline: None,
            normalize: true,
            summary_rows: 10,
            quiet: false,
            summary_only: false,
        }
    }
}

/// One profiling run, fully described.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Config {
    pub record: RecordOptions,
    pub graph: GraphOptions,
    pub output: OutputOptions,
    pub view: ViewOptions,
}
