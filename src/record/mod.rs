//! Recording backends: each turns a workload into folded stacks.
//!
//! - `native` (Linux): the built-in perf_event sampler; no external tool, no intermediate file.
//! - `perf_cli`: `perf record` + `perf script`, as flamegraph 0.6 does.
//! - `dtrace`: dtrace's `ustack()` aggregation (and `xctrace` on macOS).

pub mod dtrace;
pub mod external;
pub mod hints;
pub mod perf_cli;
#[cfg(unix)]
pub(crate) mod stop;
pub mod xctrace;

#[cfg(target_os = "linux")]
pub mod native;

use std::process::ExitStatus;

use crate::error::Result;
use crate::fold::Folded;
use crate::options::{Backend, Config, Workload};
use crate::profile::Profile;

/// Runs an inferno collapser over a tool's output: the shared step of the external backends,
/// which then apply the naming rules with [`Folded::clean_names`].
pub(crate) fn collapse_with(
    mut folder: impl inferno::collapse::Collapse,
    input: &[u8],
    tool: &str,
) -> Result<Folded> {
    let mut out = Vec::new();
    folder.collapse(input, &mut out).map_err(|e| {
        crate::error::Error::Malformed(format!("cannot collapse {tool} output: {e}"))
    })?;
    Folded::parse(&String::from_utf8_lossy(&out))
}

/// What a backend recorded.
#[derive(Debug)]
pub struct Recording {
    /// The symbolized profile.
    pub profile: Profile,
    /// How the profiled program (or the external recorder standing for it) exited; `None` when
    /// nothing was run (a perf.data file, or attaching).
    pub status: Option<ExitStatus>,
    /// Whether a stop was requested (a signal to us): a program killed by the signals that
    /// stopped it did not fail.
    pub interrupted: bool,
    /// One-line notes for the user (lost samples, kernel frames unavailable, ...).
    pub notes: Vec<String>,
}

impl Recording {
    /// A recording of a backend that only gives folded stacks (perf-cli, dtrace, xctrace).
    pub fn from_folded(folded: &Folded, status: Option<ExitStatus>) -> Self {
        Recording {
            profile: Profile::from_folded(folded, false),
            status,
            notes: Vec::new(),
            interrupted: false,
        }
    }
}

/// Records `config.record.workload` with the chosen backend.
pub fn record(config: &Config) -> Result<Recording> {
    let options = &config.record;
    match (&options.workload, options.backend) {
        (Workload::PerfData(path), Backend::PerfCli) => {
            perf_cli::script_file(options, &config.graph, path)
        }
        // Our own reader serves every other backend choice, on every platform.
        (Workload::PerfData(path), _) => perf_data(config, path),
        (_, Backend::PerfCli) => perf_cli::record(options, &config.graph),
        // On macOS the dtrace backend means Instruments' xctrace, as in flamegraph 0.6, unless
        // DTRACE names a dtrace to use.
        (_, Backend::Dtrace)
            if cfg!(target_os = "macos") && std::env::var_os("DTRACE").is_none() =>
        {
            xctrace::record(options, &config.graph)
        }
        (_, Backend::Dtrace) => dtrace::record(options, &config.graph),
        (_, Backend::Native) => native_record(config),
    }
}

#[cfg(target_os = "linux")]
fn native_record(config: &Config) -> Result<Recording> {
    use crate::options::CallGraph;

    let options = &config.record;
    let target = match &options.workload {
        Workload::PerfData(path) => return perf_data(config, path),
        Workload::Command(cmd) => match cmd.split_first() {
            Some((program, args)) => native::Target::Launch {
                program: program.clone(),
                args: args.to_vec(),
            },
            None => {
                return Err(crate::error::Error::InvalidOptions(
                    "no command to profile".into(),
                ))
            }
        },
        Workload::Pids(pids) => native::Target::Attach { pids: pids.clone() },
    };
    let mut native_options = native::NativeOptions::new(target);
    native_options.frequency = options.frequency;
    native_options.verbose = options.verbose;
    native_options.stdout_to_stderr = options.stdout_to_stderr;
    native_options.run_as = options.run_as;
    native_options.off_cpu = options.off_cpu != crate::collect::OffCpuMode::Off;
    native_options.call_graph = match options.call_graph {
        CallGraph::FramePointer => native::CallGraph::FramePointer,
        CallGraph::Dwarf => native::CallGraph::Dwarf {
            stack_size: options.stack_size,
        },
    };
    let mut collector = new_collector(config);
    let summary = native::record(&native_options, &mut |format, record| {
        collector.on_record(format, record)
    })?;
    let stats = collector.stats();
    collector.set_event(summary.event);
    let (profile, symbolizer_notes) = collector.finish_with_notes();

    let mut notes = native_notes(&summary, stats, options);
    notes.extend(symbolizer_notes);
    if options.call_graph == CallGraph::FramePointer {
        notes.extend(hints::frame_pointer_hint(&profile));
    }
    Ok(Recording {
        profile,
        status: summary.exit_status,
        interrupted: summary.interrupted,
        notes,
    })
}

/// What the user should know about a native recording, one line each.
#[cfg(target_os = "linux")]
fn native_notes(
    summary: &native::RecordSummary,
    stats: crate::collect::CollectStats,
    options: &crate::options::RecordOptions,
) -> Vec<String> {
    let mut notes = Vec::new();
    notes.extend(off_cpu_note(summary, stats));
    if options.verbose {
        let interrupted = if summary.interrupted {
            " (interrupted)"
        } else {
            ""
        };
        notes.push(format!(
            "recorded {} samples with the {} event{interrupted}",
            summary.samples, summary.event
        ));
    }
    if !summary.kernel_frames {
        notes.push(
            "kernel frames are not shown: kernel.perf_event_paranoid forbids them; \
             `sudo sysctl kernel.perf_event_paranoid=1` or run as root to see them"
                .into(),
        );
    }
    if summary.lost > 0 || summary.throttled > 0 {
        notes.push(format!(
            "lost {} of {} samples ({} throttling events): the ring buffers overflowed; \
             lower -F or use --call-graph fp",
            summary.lost,
            summary.samples + summary.lost,
            summary.throttled
        ));
    }
    // A few cut stacks are normal (deep library code); many deserve a hint even without -v.
    if stats.truncated > 0 && (options.verbose || stats.truncated * 100 > stats.samples) {
        notes.push(format!(
            "{} of {} stacks were deeper than the {}-byte stack copy and are marked [truncated]; \
             raise --stack-size (at most 65528)",
            stats.truncated, stats.samples, options.stack_size
        ));
    }
    notes
}

/// The one line that says where off-CPU stacks came from, with the intervals left without one.
#[cfg(target_os = "linux")]
fn off_cpu_note(
    summary: &native::RecordSummary,
    stats: crate::collect::CollectStats,
) -> Option<String> {
    let how = match summary.off_cpu_stacks? {
        native::OffCpuStacks::ContextSwitchSamples => {
            "off-CPU stacks from context-switch samples (kernel access)".to_owned()
        }
        native::OffCpuStacks::ProcReads => format!(
            "off-CPU stacks read from /proc/TID/syscall and process_vm_readv at each switch-out \
             (no kernel access needed); {} of {} waits had no stack (the thread ran again before \
             it was read) and show [off-cpu] alone",
            stats.off_cpu_without_stack, stats.off_cpu_intervals
        ),
    };
    Some(how)
}

/// A collector for the run: its symbolizer thread loads kernel symbols and debug info while
/// records arrive.
fn new_collector(config: &Config) -> crate::collect::StackCollector {
    let mut options = crate::collect::CollectOptions::new(config.record.inline);
    options.time_ordered = config.graph.flame_chart;
    options.full_names = config.graph.full_names;
    options.off_cpu = config.record.off_cpu;
    crate::collect::StackCollector::new(options)
}

/// Reads a perf.data file with our own parser and folds it through the same unwinder,
/// symbolizer and folder as live recording: no perf binary involved.
fn perf_data(config: &Config, path: &std::path::Path) -> Result<Recording> {
    let mut collector = new_collector(config);
    let summary = crate::perf::data_file::read_perf_data(path, &mut |format, record| {
        collector.on_record(format, record)
    })
    .map_err(|e| crate::error::Error::Malformed(e.to_string()))?;
    let stats = collector.stats();
    let (profile, symbolizer_notes) = collector.finish_with_notes();
    // A damaged file is drawn as far as it could be read; the warnings say where it stopped.
    let mut notes = summary.warnings.clone();
    notes.extend(symbolizer_notes);
    if config.record.verbose {
        notes.push(format!(
            "read {} samples ({} records{}) from {}",
            summary.samples,
            summary.records,
            if summary.compressed {
                ", zstd-compressed"
            } else {
                ""
            },
            path.display()
        ));
    }
    if summary.lost > 0 {
        notes.push(format!(
            "the recording lost {} events (perf's ring buffers overflowed while recording)",
            summary.lost
        ));
    }
    if stats.truncated > 0 && config.record.verbose {
        notes.push(format!(
            "{} of {} stacks were deeper than the recorded stack copy and are marked [truncated]",
            stats.truncated, stats.samples
        ));
    }
    Ok(Recording {
        profile,
        status: None,
        interrupted: false,
        notes,
    })
}

#[cfg(not(target_os = "linux"))]
fn native_record(_config: &Config) -> Result<Recording> {
    Err(crate::error::Error::InvalidOptions(
        "the native backend needs Linux; use --backend dtrace".into(),
    ))
}
