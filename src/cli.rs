//! The command-line options of both binaries, and their conversion into [`Config`].
//!
//! Option names and defaults are flamegraph 0.6.15's, so users switch without relearning. Only
//! this module knows about clap: it hands the library a plain [`Config`].

use std::ffi::OsString;
use std::path::PathBuf;
use std::str::FromStr;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, ValueEnum};

use crate::collect::OffCpuMode;
use crate::error::{Error, Result};
use crate::event::{Event, Sampling};
use crate::options::{
    Backend, CallGraph, Config, GraphOptions, OutputFormat, OutputOptions, OutputTarget, Palette,
    RecordOptions, ViewOptions, Workload, MAX_STACK_SIZE,
};
use crate::profile::fold::Roots;

/// `--backend`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    /// The built-in perf_event sampler (Linux).
    Native,
    /// `perf record` + `perf script`, as flamegraph 0.6.
    PerfCli,
    /// dtrace (xctrace on macOS).
    Dtrace,
}

/// `--call-graph`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CallGraphArg {
    /// Copy user stacks and unwind them with DWARF CFI (works without frame pointers).
    Dwarf,
    /// Let the kernel walk frame pointers (cheaper; needs -fno-omit-frame-pointer builds).
    Fp,
}

/// Options shared by `flamegraph` and `cargo flamegraph`.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Print extra output to help debug problems
    #[arg(short, long)]
    pub verbose: bool,

    /// Output file, may be repeated; the extension picks the format (`.svg`, `.folded`,
    /// `.pb.gz`/`.pprof`, `.speedscope.json`, else --format, else SVG); `-` writes to stdout (the
    /// profiled program's stdout then goes to stderr)
    #[arg(short, long, default_value = "flamegraph.svg")]
    pub output: Vec<PathBuf>,

    /// Open the (first) output file with default program
    #[arg(long)]
    pub open: bool,

    /// Run with root privileges (using `sudo`). Accepts an optional argument containing command
    /// line options which will be passed to sudo
    #[arg(long, value_name = "SUDO FLAGS")]
    pub root: Option<Option<String>>,

    /// Internal: this process is the recorder that `--root` started under sudo (it then ignores
    /// `--root`, runs the program as the invoking user and gives the output back to that user)
    #[arg(long = "sudo-child", hide = true)]
    pub sudo_child: bool,

    /// Sampling frequency in Hz [default: 997]
    #[arg(short = 'F', long = "freq")]
    pub frequency: Option<u32>,

    /// Produce compressed trace using the specified level. perf only.
    #[arg(short = 'z', long, num_args = 0..=1, default_missing_value = "1")]
    pub compression_level: Option<u8>,

    /// Custom command for invoking perf/dtrace (replaces the `perf record ...` arguments or the D
    /// script; split with shell quoting rules)
    #[arg(short, long = "cmd")]
    pub custom_cmd: Option<String>,

    #[command(flatten)]
    pub graph: GraphArgs,

    /// Ignores perf's exit code (and the profiled program's)
    #[arg(long)]
    pub ignore_status: bool,

    /// Don't resolve inlined functions (faster with perf, less detail)
    #[arg(long = "no-inline")]
    pub no_inline: bool,

    /// Add each frame's source file and line (`work_a c/split.c:47`): one frame per line of a
    /// function. Native backend and perf.data files only
    #[arg(long)]
    pub lines: bool,

    /// Native backend: also show where threads wait and for how long (off-CPU time, topped by
    /// [off-cpu]), with on-CPU time, in microseconds
    #[arg(long, conflicts_with = "off_cpu_only")]
    pub off_cpu: bool,

    /// Native backend: show only where threads wait (off-CPU time), in microseconds
    #[arg(long)]
    pub off_cpu_only: bool,

    /// Stop recording after SECS seconds (fractions allowed), as Ctrl-C does: a launched program
    /// is stopped and the graph drawn; attached processes (-p) and a system-wide recording's
    /// (-a) keep running
    #[arg(long, value_name = "SECS", value_parser = parse_duration)]
    pub duration: Option<std::time::Duration>,

    /// Run a command to process the folded stacks, taking the input from stdin and outputting to
    /// stdout.
    #[arg(long)]
    pub post_process: Option<String>,

    /// Recorder: native (built-in sampler, Linux), perf-cli (perf record/script), dtrace
    /// [default: native on Linux, dtrace elsewhere]
    #[arg(long, value_enum)]
    pub backend: Option<BackendArg>,

    /// Native backend: how user stacks are unwound [default: dwarf]
    #[arg(long, value_enum)]
    pub call_graph: Option<CallGraphArg>,

    /// Native backend: bytes of user stack copied per sample with --call-graph dwarf (at most
    /// 65528) [default: 49152]
    #[arg(long, value_name = "BYTES")]
    pub stack_size: Option<u32>,

    /// The event to sample: cpu-clock, task-clock, page-faults, minor-faults, major-faults,
    /// context-switches, cpu-migrations, cycles, instructions, cache-misses, cache-references,
    /// branch-misses, branch-instructions or rNNNN (raw, hex) [default: cpu-clock]. Graphs of
    /// events other than the clocks count events. With --perfdata: the recorded event to draw
    /// (as `perf evlist` names it) [default: the first]
    #[arg(short = 'e', long = "event", value_name = "NAME")]
    pub event: Option<String>,

    /// Sample every N events instead of at a frequency (nanoseconds for cpu-clock and
    /// task-clock) [default: -F for clocks and hardware events, 1 for page faults, context
    /// switches and migrations]
    #[arg(long, value_name = "N")]
    pub period: Option<u64>,
    /// Testing: with --perfdata, unwind from only the first BYTES of each sample's copied user
    /// stack (checks stacks completed by joining against the full copy)
    #[arg(long = "replay-stack-prefix", value_name = "BYTES", hide = true)]
    pub replay_stack_prefix: Option<u32>,

    /// With --perfdata: look up the recording machine's files under DIR (DIR/usr/lib/libc.so.6
    /// for /usr/lib/libc.so.6), as perf's --symfs; only files whose build-id matches are used
    #[arg(long, value_name = "DIR")]
    pub symfs: Option<PathBuf>,

    /// With --perfdata: the recording kernel's symbols (a copy of its /proc/kallsyms), for when
    /// the running kernel is not the recorded one
    #[arg(long, value_name = "FILE")]
    pub kallsyms: Option<PathBuf>,

    /// Do not fetch missing debug info from the debuginfod servers DEBUGINFOD_URLS names
    #[arg(long)]
    pub no_debuginfod: bool,

    #[command(flatten)]
    pub views: ViewArgs,
}

// ---- Views and exports (issue 12): formats, thread roots, baselines, the summary. ----

/// `--format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// Interactive SVG flame graph.
    Svg,
    /// Folded stacks (`frame;frame count` lines).
    Folded,
    /// gzip'ed pprof protobuf (`go tool pprof`, Pyroscope, Parca).
    Pprof,
    /// speedscope JSON (speedscope.app).
    Speedscope,
}

/// Options that choose views and exports.
#[derive(Debug, Args)]
pub struct ViewArgs {
    /// Format of outputs whose extension names none (`-o -` included) [default: svg]
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,

    /// Root each stack at its thread, `comm-PID/TID`, so same-named threads stay apart
    #[arg(long, conflicts_with = "per_process")]
    pub per_thread: bool,

    /// Root each stack at its process, `comm-PID`
    #[arg(long)]
    pub per_process: bool,

    /// Draw a differential graph against FILE (folded, perf.data or our pprof): red grew, blue
    /// shrank
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,

    /// With --baseline: compare raw counts instead of scaling the baseline to the same total
    #[arg(long, requires = "baseline")]
    pub no_normalize: bool,

    /// Print nothing after the run but warnings and errors (no summary)
    #[arg(short, long)]
    pub quiet: bool,

    /// Rows in each table of the terminal summary [default: 10]
    #[arg(long, value_name = "N")]
    pub summary: Option<usize>,

    /// Print the terminal summary only; write no output file
    #[arg(long, conflicts_with_all = ["quiet", "open"])]
    pub summary_only: bool,
}

impl ViewArgs {
    fn into_options(self) -> ViewOptions {
        let defaults = ViewOptions::default();
        ViewOptions {
            roots: if self.per_thread {
                Roots::PerThread
            } else if self.per_process {
                Roots::PerProcess
            } else {
                Roots::ThreadName
            },
            baseline: self.baseline,
            normalize: !self.no_normalize,
            summary_rows: self.summary.unwrap_or(defaults.summary_rows),
            quiet: self.quiet,
            summary_only: self.summary_only,
        }
    }
}

impl FormatArg {
    fn format(self) -> OutputFormat {
        match self {
            FormatArg::Svg => OutputFormat::Svg,
            FormatArg::Folded => OutputFormat::Folded,
            FormatArg::Pprof => OutputFormat::Pprof,
            FormatArg::Speedscope => OutputFormat::Speedscope,
        }
    }
}

/// The outputs of `-o` (repeatable) with `--format` for those without a known extension, and
/// the checks that need them all.
fn output_options(
    paths: Vec<PathBuf>,
    format: Option<FormatArg>,
    open: bool,
    post_process: Option<String>,
) -> Result<OutputOptions> {
    let fallback = format.map(FormatArg::format);
    let outputs: Vec<OutputTarget> = paths
        .into_iter()
        .map(|p| OutputTarget::new(p, fallback))
        .collect();
    if outputs
        .iter()
        .filter(|o| crate::sink::is_stdout(&o.path))
        .count()
        > 1
    {
        return Err(Error::InvalidOptions(
            "-o - (standard output) can be given only once".into(),
        ));
    }
    if post_process.is_some() {
        if let Some(o) = outputs.iter().find(|o| !o.format.takes_post_process()) {
            return Err(Error::InvalidOptions(format!(
                "--post-process edits folded stacks; it cannot shape the {} output {}: \
                 drop --post-process or write that output in another run",
                o.format.name(),
                o.path.display()
            )));
        }
    }
    Ok(OutputOptions {
        outputs,
        open,
        post_process,
    })
}

/// Options that shape the graph.
#[derive(Debug, Args)]
pub struct GraphArgs {
    /// Set title text in SVG
    #[arg(long, value_name = "STRING")]
    pub title: Option<String>,

    /// Set second level title text in SVG
    #[arg(long, value_name = "STRING")]
    pub subtitle: Option<String>,

    /// Colors are selected such that the color of a function does not change between runs
    #[arg(long)]
    pub deterministic: bool,

    /// Plot the flame graph up-side-down
    #[arg(short, long)]
    pub inverted: bool,

    /// Generate stack-reversed flame graph
    #[arg(long)]
    pub reverse: bool,

    /// Set embedded notes in SVG
    #[arg(long, value_name = "STRING")]
    pub notes: Option<String>,

    /// Omit functions smaller than <FLOAT> pixels
    #[arg(long, default_value = "0.01", value_name = "FLOAT")]
    pub min_width: f64,

    /// Image width in pixels
    #[arg(long)]
    pub image_width: Option<usize>,

    /// Color palette
    #[arg(
        long,
        value_parser = PossibleValuesParser::new(Palette::VARIANTS)
            .try_map(|s| Palette::from_str(&s))
    )]
    pub palette: Option<Palette>,

    /// Cut off stack frames below <FUNCTION>; may be repeated
    #[arg(long, value_name = "FUNCTION")]
    pub skip_after: Vec<String>,

    /// Produce a flame chart (sort by time, do not merge stacks)
    #[arg(long = "flamechart", conflicts_with = "reverse")]
    pub flame_chart: bool,

    /// Keep the generic arguments of Rust function names (`fold<usize, …>` instead of `fold`)
    #[arg(long)]
    pub full_names: bool,
}

impl GraphArgs {
    fn into_options(self) -> GraphOptions {
        GraphOptions {
            title: self.title,
            subtitle: self.subtitle,
            deterministic: self.deterministic,
            inverted: self.inverted,
            reverse: self.reverse,
            notes: self.notes,
            min_width: self.min_width,
            image_width: self.image_width,
            palette: self.palette,
            skip_after: self.skip_after,
            flame_chart: self.flame_chart,
            full_names: self.full_names,
            time_in_us: false,
        }
    }
}

impl CommonArgs {
    /// The backend these options select: `--backend`, else perf-cli for `-c` on Linux, else the
    /// platform's default.
    pub fn backend(&self) -> Backend {
        match self.backend {
            Some(BackendArg::Native) => Backend::Native,
            Some(BackendArg::PerfCli) => Backend::PerfCli,
            Some(BackendArg::Dtrace) => Backend::Dtrace,
            // A custom perf/dtrace command only makes sense with an external tool.
            None if self.custom_cmd.is_some() && cfg!(target_os = "linux") => Backend::PerfCli,
            None => Backend::platform_default(),
        }
    }

    /// One line for each option that does not do what its name says with the chosen backend:
    /// ignored options, an implied backend, a rounded value.
    pub fn warnings(&self) -> Vec<String> {
        let backend = self.backend();
        let mut warnings = Vec::new();
        if self.compression_level.is_some() && backend != Backend::PerfCli {
            warnings.push(format!(
                "-z/--compression-level is ignored: it compresses perf.data, which only \
                 --backend perf-cli writes (this run uses the {} backend)",
                backend.name()
            ));
        }
        if let (None, Some(custom), Backend::PerfCli) = (self.backend, &self.custom_cmd, backend) {
            warnings.push(format!(
                "-c/--cmd selects the perf-cli backend: `perf record` runs with these arguments \
                 and leaves its data in {}",
                perf_data_path(custom)
            ));
        }
        if backend != Backend::Native && (self.call_graph.is_some() || self.stack_size.is_some()) {
            warnings.push(format!(
                "--call-graph and --stack-size are ignored: they set up the native backend, and \
                 this run uses {} (perf-cli records with `--call-graph dwarf,64000`; change it \
                 with -c)",
                backend.name()
            ));
        } else if self.call_graph == Some(CallGraphArg::Fp) && self.stack_size.is_some() {
            warnings
                .push("--stack-size is ignored with --call-graph fp: no stack is copied".into());
        } else if let Some(size) = self.stack_size.filter(|s| s % 8 != 0) {
            warnings.push(format!(
                "--stack-size {size} rounded down to {} (the kernel copies stacks in multiples of \
                 8 bytes)",
                size & !7
            ));
        }
        warnings
    }

    /// Checks option combinations and builds the configuration for `workload`.
    pub fn into_config(self, workload: Workload) -> Result<Config> {
        if self.frequency.is_some() && self.custom_cmd.is_some() {
            return Err(Error::InvalidOptions(
                "cannot pass both a custom command (-c) and a frequency (-F): put -F in the custom command".into(),
            ));
        }
        let backend = self.backend();
        if backend == Backend::Native && self.custom_cmd.is_some() {
            return Err(Error::InvalidOptions(
                "-c/--cmd passes arguments to perf or dtrace; it cannot be used with --backend native".into(),
            ));
        }
        if matches!(workload, Workload::SystemWide(_)) && backend == Backend::Dtrace {
            return Err(crate::record::dtrace::system_wide_unsupported());
        }
        if self.frequency == Some(0) {
            return Err(Error::InvalidOptions(
                "-F/--freq must be at least 1 Hz".into(),
            ));
        }
        if let Some(size) = self.stack_size {
            if !(8..=MAX_STACK_SIZE).contains(&size) {
                return Err(Error::InvalidOptions(format!(
                    "--stack-size must be between 8 and {MAX_STACK_SIZE} bytes (the kernel's limit for one sample), got {size}"
                )));
            }
        }
        if self.lines && backend != Backend::Native {
            return Err(Error::InvalidOptions(format!(
                "--lines needs the native backend (this run uses {}: perf script's srcline \
                 lookups take minutes, dtrace gives no lines): drop --backend/-c or --lines",
                backend.name()
            )));
        }
        if self
            .output
            .first()
            .is_some_and(|o| crate::sink::is_stdout(o))
            && self.open
        {
            return Err(Error::InvalidOptions(
                "--open has nothing to open with -o - (standard output): name a file with -o"
                    .into(),
            ));
        }
        let off_cpu = match (self.off_cpu, self.off_cpu_only) {
            (_, true) => OffCpuMode::Only,
            (true, false) => OffCpuMode::With,
            (false, false) => OffCpuMode::Off,
        };
        if off_cpu != OffCpuMode::Off {
            check_off_cpu(backend, &workload)?;
        }
        let (event, record_event, period) = self.sampling(backend, &workload, off_cpu)?;
        if !matches!(workload, Workload::PerfData(_))
            && (self.symfs.is_some() || self.kallsyms.is_some())
        {
            return Err(Error::InvalidOptions(
                "--symfs and --kallsyms apply to --perfdata files only (a live recording \
                 reads this machine's files)"
                    .into(),
            ));
        }
        if !matches!(workload, Workload::PerfData(_)) && self.replay_stack_prefix.is_some() {
            return Err(Error::InvalidOptions(
                "--replay-stack-prefix applies to --perfdata files only".into(),
            ));
        }
        let defaults = RecordOptions::default();
        let record = RecordOptions {
            backend,
            workload,
            frequency: self.frequency.unwrap_or(defaults.frequency),
            custom_cmd: self.custom_cmd,
            compression_level: self.compression_level,
            root: if self.sudo_child { None } else { self.root },
            inline: !self.no_inline,
            lines: self.lines,
            ignore_status: self.ignore_status,
            verbose: self.verbose,
            call_graph: match self.call_graph {
                Some(CallGraphArg::Dwarf) => CallGraph::Dwarf,
                Some(CallGraphArg::Fp) => CallGraph::FramePointer,
                None => defaults.call_graph,
            },
            // The kernel wants a multiple of 8.
            stack_size: self.stack_size.map_or(defaults.stack_size, |s| s & !7),
            replay_stack_prefix: self.replay_stack_prefix,
            stdout_to_stderr: self.output.iter().any(|o| crate::sink::shares_stdout(o)),
            run_as: None,
            event,
            record_event,
            period,
            symfs: self.symfs,
            kallsyms: self.kallsyms,
            off_cpu,
            debuginfod: !self.no_debuginfod,
            duration: self.duration,
        };

        let output = output_options(self.output, self.views.format, self.open, self.post_process)?;
        let views = self.views.into_options();
        Ok(Config {
            graph: GraphOptions {
                time_in_us: off_cpu != OffCpuMode::Off,
                ..self.graph.into_options()
            },
            output,
            view: ViewOptions {
                // Every process in one graph: each under its own root.
                roots: match (&record.workload, views.roots) {
                    (Workload::SystemWide(_), Roots::ThreadName) => Roots::PerProcess,
                    (_, roots) => roots,
                },
                ..views
            },
            record,
        })
    }
}

impl CommonArgs {
    /// The event and period of `-e` and `--period`: (the event to draw from a perf.data file,
    /// the event to record, the period), checked against the other options. Software count
    /// events get their default period here when neither `-F` nor `--period` is given.
    fn sampling(
        &self,
        backend: Backend,
        workload: &Workload,
        off_cpu: OffCpuMode,
    ) -> Result<(Option<String>, Option<Event>, Option<u64>)> {
        let invalid = |text: &str| Err(Error::InvalidOptions(text.into()));
        if let Workload::PerfData(_) = workload {
            if self.period.is_some() {
                return invalid("--period sets how often to sample while recording; a --perfdata file is already recorded");
            }
            return Ok((self.event.clone(), None, None));
        }
        if self.period.is_some() && self.frequency.is_some() {
            return invalid(
                "--period and -F/--freq both set how often to sample: give one of them",
            );
        }
        if self.period == Some(0) {
            return invalid("--period must be at least 1");
        }
        let event = (self.event.as_deref().map(Event::parse).transpose())
            .map_err(|e| Error::InvalidOptions(e.to_string()))?;
        if (event.is_some() || self.period.is_some()) && self.custom_cmd.is_some() {
            return invalid("-c/--cmd replaces the perf record arguments: put -e and -c (period) in the custom command");
        }
        if (event.is_some() || self.period.is_some()) && backend == Backend::Dtrace {
            return invalid("-e/--event and --period need the native or perf-cli backend (dtrace samples on a timer)");
        }
        if let (Some(e), true) = (event, off_cpu != OffCpuMode::Off) {
            if !e.is_time() {
                return Err(Error::InvalidOptions(format!(
                    "--off-cpu weighs waits in time, and -e {e} counts events: one graph has one \
                     unit; drop -e or use -e cpu-clock"
                )));
            }
        }
        let period = self.period.or(match (event, self.frequency) {
            (Some(e), None) => match e.default_sampling(RecordOptions::default().frequency) {
                Sampling::Period(period) => Some(period),
                Sampling::Frequency(_) => None,
            },
            _ => None,
        });
        Ok((None, event, period))
    }
}

/// Where `perf record` with the custom arguments `custom` writes: its `-o`/`--output`, else
/// `./perf.data`.
fn perf_data_path(custom: &str) -> String {
    let words = shlex::split(custom).unwrap_or_default();
    let mut words = words.iter();
    while let Some(word) = words.next() {
        if let Some(path) = word.strip_prefix("--output=") {
            return path.to_owned();
        }
        if word == "-o" || word == "--output" {
            return words.next().cloned().unwrap_or_default();
        }
    }
    "./perf.data".into()
}

/// Parses `-p 1,2,3` (also accepts spaces after commas).
pub fn parse_pids(list: &str) -> Result<Vec<u32>> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<u32>()
                .map_err(|_| Error::InvalidOptions(format!("-p/--pid: {s:?} is not a process id")))
        })
        .collect::<Result<Vec<u32>>>()
        .and_then(|pids| {
            if pids.is_empty() {
                Err(Error::InvalidOptions(
                    "-p/--pid needs at least one process id".into(),
                ))
            } else {
                Ok(pids)
            }
        })
}

/// The workload of `flamegraph`: exactly one of a command, `--pid`, `--all-cpus` (with or
/// without a command) or `--perfdata`.
pub fn workload(
    command: Vec<OsString>,
    pids: Option<&str>,
    all_cpus: bool,
    perfdata: Option<PathBuf>,
) -> Result<Workload> {
    match (command.is_empty(), pids, all_cpus, perfdata) {
        (false, None, false, None) => Ok(Workload::Command(command)),
        (true, Some(p), false, None) => Ok(Workload::Pids(parse_pids(p)?)),
        (_, None, true, None) => Ok(Workload::SystemWide(command)),
        (true, None, false, Some(f)) => Ok(Workload::PerfData(f)),
        (true, None, false, None) => Err(Error::InvalidOptions(
            "nothing to profile: give a command after `--`, a --pid, --all-cpus, or a \
             --perfdata file"
                .into(),
        )),
        _ => Err(Error::InvalidOptions(
            "give only one of: a command after `--`, --pid, --all-cpus, --perfdata".into(),
        )),
    }
}

/// Parses `--duration SECS`: a positive number of seconds, fractions allowed.
fn parse_duration(text: &str) -> std::result::Result<std::time::Duration, String> {
    let seconds: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if seconds.is_nan() || seconds <= 0.0 {
        return Err("the duration must be more than 0 seconds".into());
    }
    std::time::Duration::try_from_secs_f64(seconds)
        .map_err(|_| format!("{text} seconds is too long"))
}

/// `--off-cpu` needs the native backend (launch or attach; whether this user may read the
/// attached threads' stacks is checked when recording), or a perf.data file with switch records.
fn check_off_cpu(backend: Backend, workload: &Workload) -> Result<()> {
    let problem = match (backend, workload) {
        (Backend::PerfCli, _) => "it needs the native backend (or our perf.data reader)",
        (Backend::Native, _) | (_, Workload::PerfData(_)) => return Ok(()),
        _ => "it needs the native backend",
    };
    Err(Error::InvalidOptions(format!(
        "--off-cpu: {problem}; profile with the native backend"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        common: CommonArgs,
    }

    fn warnings(args: &[&str]) -> Vec<String> {
        let cli =
            Cli::try_parse_from(std::iter::once("flamegraph").chain(args.iter().copied())).unwrap();
        cli.common.warnings()
    }

    fn config(args: &[&str], workload: Workload) -> Result<Config> {
        let cli =
            Cli::try_parse_from(std::iter::once("flamegraph").chain(args.iter().copied())).unwrap();
        cli.common.into_config(workload)
    }

    #[test]
    fn event_and_period_resolve_to_a_sampling() {
        let run = || Workload::Command(vec!["prog".into()]);
        let record = |args: &[&str]| config(args, run()).map(|c| c.record);
        let r = record(&[]).unwrap();
        assert_eq!((r.record_event, r.period, r.frequency), (None, None, 997));
        let r = record(&["-e", "faults"]).unwrap();
        assert_eq!(
            (r.record_event, r.period),
            (Some(Event::PageFaults), Some(1))
        );
        let r = record(&["-e", "faults", "-F", "99"]).unwrap();
        assert_eq!((r.period, r.frequency), (None, 99));
        let r = record(&["-e", "cycles"]).unwrap();
        assert_eq!((r.record_event, r.period), (Some(Event::Cycles), None));
        let r = record(&["-e", "cpu-clock", "--period", "250000"]).unwrap();
        assert_eq!(r.period, Some(250000));
        for bad in [
            &["--period", "0"][..],
            &["--period", "5", "-F", "99"],
            &["-e", "nope"],
            &["-e", "cycles", "--backend", "dtrace"],
            &["-e", "cycles", "-c", "record -g"],
            &["-e", "page-faults", "--off-cpu"],
        ] {
            let err = record(bad).unwrap_err().to_string();
            assert!(!err.contains('\n'), "{bad:?}: {err}");
        }
        let perfdata = || Workload::PerfData("perf.data".into());
        let r = config(&["-e", "task-clock:u"], perfdata()).unwrap().record;
        assert_eq!(
            (r.event.as_deref(), r.record_event),
            (Some("task-clock:u"), None)
        );
        assert!(config(&["--period", "3"], perfdata()).is_err());
    }

    #[test]
    fn durations_and_system_wide_workloads() {
        assert_eq!(parse_duration("2"), Ok(std::time::Duration::from_secs(2)));
        assert_eq!(
            parse_duration("0.5"),
            Ok(std::time::Duration::from_millis(500))
        );
        for bad in ["0", "-1", "x", "NaN", "1e300"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(
            workload(Vec::new(), None, true, None).unwrap(),
            Workload::SystemWide(Vec::new())
        );
        assert_eq!(
            workload(vec!["ls".into()], None, true, None).unwrap(),
            Workload::SystemWide(vec!["ls".into()])
        );
        let cli = Cli::try_parse_from(["flamegraph", "--duration", "3"]).unwrap();
        let config = cli
            .common
            .into_config(Workload::SystemWide(Vec::new()))
            .unwrap();
        assert_eq!(config.view.roots, Roots::PerProcess);
        assert_eq!(
            config.record.duration,
            Some(std::time::Duration::from_secs(3))
        );
        let cli = Cli::try_parse_from(["flamegraph", "--per-thread"]).unwrap();
        let config = cli
            .common
            .into_config(Workload::SystemWide(Vec::new()))
            .unwrap();
        assert_eq!(config.view.roots, Roots::PerThread);
    }

    #[test]
    fn warnings_name_what_is_ignored_implied_or_rounded() {
        assert!(warnings(&[]).is_empty());
        assert!(warnings(&["-z", "--backend", "perf-cli"]).is_empty());
        let w = warnings(&["-z"]);
        assert!(w.len() == 1 && w[0].contains("-z/--compression-level is ignored"));
        let w = warnings(&["-c", "record -g '--output=x y.data'"]);
        assert!(w[0].ends_with("leaves its data in x y.data"), "{w:?}");
        let w = warnings(&["-c", "record -g"]);
        assert!(w[0].ends_with("leaves its data in ./perf.data"), "{w:?}");
        let w = warnings(&["--stack-size", "100"]);
        assert!(
            w[0].contains("--stack-size 100 rounded down to 96"),
            "{w:?}"
        );
        let w = warnings(&["--call-graph", "fp", "--stack-size", "64"]);
        assert!(w[0].contains("ignored with --call-graph fp"), "{w:?}");
    }
}
