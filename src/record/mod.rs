//! Recording backends: each turns a workload into folded stacks.
//!
//! - `native` (Linux): the built-in perf_event sampler; no external tool, no intermediate file.
//! - `perf_cli`: `perf record` + `perf script`, as flamegraph 0.6 does.
//! - `dtrace`: dtrace's `ustack()` aggregation (and `xctrace` on macOS).

pub mod dtrace;
pub mod external;
pub mod hints;
pub mod perf_cli;
pub(crate) mod program;
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
    /// Duration, lost and truncated samples, where the backend knows them.
    pub info: crate::output::RecordingInfo,
}

impl Recording {
    /// A recording of a backend that only gives folded stacks (perf-cli, dtrace, xctrace).
    pub fn from_folded(folded: &Folded, status: Option<ExitStatus>) -> Self {
        Recording {
            profile: Profile::from_folded(folded, false),
            status,
            notes: Vec::new(),
            interrupted: false,
            info: Default::default(),
        }
    }
}

/// Records `config.record.workload` with the chosen backend.
pub fn record(config: &Config) -> Result<Recording> {
    let options = &config.record;
    crate::symbolize::debuginfod::configure(options.debuginfod);
    match (&options.workload, options.backend) {
        (Workload::PerfData(path), Backend::PerfCli) => {
            perf_cli::script_file(options, &config.graph, config.view.roots, path)
        }
        // Our own reader serves every other backend choice, on every platform.
        (Workload::PerfData(path), _) => perf_data(config, path),
        (_, Backend::PerfCli) => perf_cli::record(options, &config.graph, config.view.roots),
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
        Workload::SystemWide(cmd) => native::Target::SystemWide {
            command: (cmd.split_first()).map(|(program, args)| (program.clone(), args.to_vec())),
        },
    };
    let mut native_options = native::NativeOptions::new(target);
    native_options.frequency = options.frequency;
    native_options.event = options.record_event.unwrap_or_default();
    native_options.period = options.period;
    native_options.verbose = options.verbose;
    native_options.stdout_to_stderr = options.stdout_to_stderr;
    native_options.run_as = options.run_as;
    native_options.off_cpu = options.off_cpu != crate::collect::OffCpuMode::Off;
    native_options.duration = options.duration;
    native_options.call_graph = match options.call_graph {
        CallGraph::FramePointer => native::CallGraph::FramePointer,
        CallGraph::Dwarf => native::CallGraph::Dwarf {
            stack_size: options.stack_size,
        },
    };
    let mut collect = collect_options(config);
    // Programs that come and go during the recording (their binaries deleted or rebuilt before
    // the end) are read through the files opened as they were mapped.
    collect.open_mapped_files = true;
    // Stacks deeper than the copy may be completed from the running program.
    collect.live_memory = Some(native::live_memory());
    let mut collector = crate::collect::StackCollector::new(collect);
    let mut status = crate::progress::Progress::new("recording");
    let started = std::time::Instant::now();
    let summary = native::record(&native_options, &mut |format, record| {
        if let crate::perf::records::Record::Sample(_) = record {
            status.add(1);
        }
        collector.on_record(format, record)
    })?;
    let duration = started.elapsed();
    status.phase("symbolizing");
    let stats = collector.stats();
    collector.set_event(summary.event.clone());
    let symbolizing = std::time::Instant::now();
    let (profile, symbolizer_notes) = collector.finish_with_notes();
    status.finish();

    let mut notes = native_notes(&summary, stats, options);
    if options.verbose {
        let seconds = symbolizing.elapsed().as_secs_f64();
        notes.push(format!(
            "symbolized in {seconds:.3} s after the recording ended"
        ));
    }
    notes.extend(symbolizer_notes);
    if options.call_graph == CallGraph::FramePointer {
        notes.extend(hints::frame_pointer_hint(&profile));
    }
    Ok(Recording {
        profile,
        status: summary.exit_status,
        interrupted: summary.interrupted,
        notes,
        info: crate::output::RecordingInfo {
            duration: Some(duration),
            lost: summary.lost,
            truncated: stats.truncated,
        },
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
    notes.extend(duration_note(summary, options));
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
        // At a fixed period every lost sample is that many events missing from the graph.
        let (short, fix) = match (options.period, options.record_event) {
            (Some(period), Some(event)) if !event.is_time() => (
                format!(
                    ", so the graph is short of about {} {event}",
                    summary.lost.saturating_mul(period)
                ),
                format!(
                    "raise --period (e.g. --period {})",
                    period.saturating_mul(100)
                ),
            ),
            (Some(_), _) => (String::new(), "raise --period".to_owned()),
            (None, _) => (String::new(), "lower -F".to_owned()),
        };
        notes.push(format!(
            "lost {} of {} samples ({} throttling events): the ring buffers overflowed{short}; \
             {fix} or use --call-graph fp",
            summary.lost,
            summary.samples + summary.lost,
            summary.throttled,
        ));
    }
    // A few cut stacks are normal (deep library code); many deserve a hint even without -v.
    if options.verbose && stats.joined > 0 {
        notes.push(format!(
            "{} of {} stacks were deeper than the {}-byte stack copy and were completed from an \
             earlier stack of their thread",
            stats.joined, stats.samples, options.stack_size
        ));
    }
    if options.verbose && stats.reused_frames > 0 {
        notes.push(format!(
            "{:.1}% of {} user frames were taken from their thread's previous stack (checked \
             against the new stack copy) rather than unwound again",
            stats.reused_frames as f64 * 100.0 / stats.user_frames.max(1) as f64,
            stats.user_frames,
        ));
    }
    if options.verbose && stats.live > 0 {
        notes.push(format!(
            "{} of {} stacks were deeper than the {}-byte stack copy and were completed from the \
             running program's stack",
            stats.live, stats.samples, options.stack_size
        ));
    }
    if stats.truncated > 0 && (options.verbose || stats.truncated * 100 > stats.samples) {
        let fix = if options.stack_size < crate::options::MAX_STACK_SIZE {
            format!(
                "raise --stack-size (at most {})",
                crate::options::MAX_STACK_SIZE
            )
        } else {
            "no copy goes deeper (a frame larger than the copy whose program could not be read \
             in time, or had exited)"
                .to_owned()
        };
        notes.push(format!(
            "{} of {} stacks were deeper than the {}-byte stack copy and are marked [truncated]; \
             {fix}",
            stats.truncated, stats.samples, options.stack_size
        ));
    }
    notes
}

/// The one line that says the recording stopped at the end of `--duration`, and what became of
/// a launched program (stopped as by Ctrl-C: its death by that signal is no failure).
#[cfg(target_os = "linux")]
fn duration_note(
    summary: &native::RecordSummary,
    options: &crate::options::RecordOptions,
) -> Option<String> {
    let duration = options.duration.filter(|_| summary.duration_elapsed)?;
    let what = match summary.exit_status {
        Some(status) if status.success() => {
            "; the program had not finished and exited successfully on SIGINT".to_owned()
        }
        Some(status) if !crate::record::external::failed(status, true) => format!(
            "; the program had not finished and was stopped ({}), as by Ctrl-C: not an error",
            crate::record::external::describe_failure(status)
        ),
        Some(status) => format!(
            "; the program had not finished and then {}",
            crate::record::external::describe_failure(status)
        ),
        None => "; the profiled processes keep running".to_owned(),
    };
    Some(format!(
        "recording stopped after --duration {}{what}",
        format_seconds(duration)
    ))
}

/// `1.5s`, `30s`.
fn format_seconds(duration: std::time::Duration) -> String {
    format!("{}s", duration.as_secs_f64())
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
/// Threads are kept apart by pid and tid for per-thread or per-process roots and for outputs
/// that label threads (pprof); every sample keeps its time for flame charts and for outputs
/// that show time order (speedscope).
fn new_collector(config: &Config) -> crate::collect::StackCollector {
    crate::collect::StackCollector::new(collect_options(config))
}

/// The collector's options for the run: what the outputs and views need (times, threads,
/// lines, names, off-CPU), the same for live recordings and perf.data files.
fn collect_options(config: &Config) -> crate::collect::CollectOptions {
    use crate::profile::fold::Roots;
    let mut options = crate::collect::CollectOptions::new(config.record.inline);
    let outputs = &config.output.outputs;
    options.time_ordered =
        config.graph.flame_chart || outputs.iter().any(|o| o.format.needs_time());
    options.split_threads =
        config.view.roots != Roots::ThreadName || outputs.iter().any(|o| o.format.needs_threads());
    options.full_names = config.graph.full_names;
    options.lines = config.record.lines;
    options.off_cpu = config.record.off_cpu;
    options.stack_prefix = config.record.replay_stack_prefix.map(|n| n as usize);
    options
}

/// Reads a perf.data file with our own parser and folds it through the same unwinder,
/// symbolizer and folder as live recording: no perf binary involved. The recording may come from
/// another machine: files are used only with the build-id it recorded, the running kernel's
/// symbols only if it is the recorded kernel (see `symbolize/locate.rs`). A file that is not
/// perf.data (by its magic) is read as folded stacks.
fn perf_data(config: &Config, path: &std::path::Path) -> Result<Recording> {
    if !is_perf_data(path)? {
        let folded = crate::output::diff::read_folded_or_pprof(path)?;
        return Ok(Recording::from_folded(&folded, None));
    }
    let options = &config.record;
    // Made when the header has been read (its build-ids, kernel and events decide how).
    let collector = std::cell::RefCell::new(None);
    let mut choice = Ok(None);
    let mut event_names = Vec::new();
    let mut progress = crate::progress::Progress::new("reading perf.data");
    let read = crate::perf::data_file::read_perf_data_with(
        path,
        &mut |header| {
            event_names = header.event_names.to_vec();
            choice = choose_event(header.event_names, options.event.as_deref());
            *collector.borrow_mut() = Some(perf_data_collector(config, header));
            // An unknown -e NAME draws nothing; the error is returned after the read.
            match &choice {
                Ok(chosen) => *chosen,
                Err(_) => Some(usize::MAX),
            }
        },
        &mut |format, record| {
            if let crate::perf::records::Record::Sample(_) = record {
                progress.add(1);
            }
            if let Some(collector) = collector.borrow_mut().as_mut() {
                collector.on_record(format, record)
            }
        },
    );
    let summary = read.map_err(|e| crate::error::Error::Malformed(e.to_string()))?;
    progress.phase("symbolizing");
    let chosen = choice.map_err(crate::error::Error::InvalidOptions)?;
    let mut collector = (collector.into_inner()).unwrap_or_else(|| new_collector(config));
    let mut notes = summary.warnings.clone();
    if let Some(index) = chosen {
        let name = &event_names[index];
        collector.set_event(name.split(':').next().unwrap_or(name));
        if event_names.len() > 1 {
            notes.push(format!(
                "{path} has {} events ({}): drawing {name}{}",
                event_names.len(),
                event_names.join(", "),
                if options.event.is_none() {
                    " (the first); pick another with -e NAME"
                } else {
                    ""
                },
                path = path.display(),
            ));
        }
    }
    let stats = collector.stats();
    let (profile, symbolizer_notes) = collector.finish_with_notes();
    progress.finish();
    // A damaged file is drawn as far as it could be read; the warnings say where it stopped.
    notes.extend(symbolizer_notes);
    notes.extend(perf_data_notes(config, path, &summary, stats));
    Ok(Recording {
        profile,
        status: None,
        interrupted: false,
        notes,
        info: crate::output::RecordingInfo {
            duration: stats.duration(),
            lost: summary.lost,
            truncated: stats.truncated,
        },
    })
}

/// The index of the event to draw: the one named `wanted` (exactly, or without its modifiers:
/// `cpu-clock` for `cpu-clock:u`), else the first; an error naming the events if none matches.
fn choose_event(
    names: &[String],
    wanted: Option<&str>,
) -> std::result::Result<Option<usize>, String> {
    let Some(wanted) = wanted else {
        return Ok((!names.is_empty()).then_some(0));
    };
    let base = |n: &str| n.split(':').next().unwrap_or(n).to_owned();
    (names.iter().position(|n| n == wanted))
        .or_else(|| names.iter().position(|n| base(n) == base(wanted)))
        .map(Some)
        .ok_or_else(|| {
            format!(
                "-e {wanted}: the perf.data file has no such event; it has: {}",
                names.join(", ")
            )
        })
}

/// A collector for a perf.data file whose header is `header`: files located by build-id, kernel
/// names only from the recorded kernel.
fn perf_data_collector(
    config: &Config,
    header: &crate::perf::data_file::PerfDataHeader<'_>,
) -> crate::collect::StackCollector {
    use crate::symbolize::locate::{kernel_names, Locator};
    let options = &config.record;
    let locator = Locator::new(header.build_ids, options.symfs.clone());
    let cache = std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".debug"));
    let mut collect = collect_options(config);
    collect.kernel = kernel_names(
        header.build_ids,
        header.os_release,
        options.kallsyms.as_deref(),
        cache.as_deref(),
    );
    collect.locator = Some(std::sync::Arc::new(locator));
    collect.from_file = true;
    crate::collect::StackCollector::new(collect)
}

/// What the user should know about a perf.data file read, besides its warnings.
fn perf_data_notes(
    config: &Config,
    path: &std::path::Path,
    summary: &crate::perf::data_file::PerfDataSummary,
    stats: crate::collect::CollectStats,
) -> Vec<String> {
    let mut notes = Vec::new();
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
    notes
}

/// Whether `path` starts with perf.data's magic (`PERFILE2`).
fn is_perf_data(path: &std::path::Path) -> Result<bool> {
    use std::io::Read;
    let mut head = [0u8; 8];
    let mut file = crate::output::diff::open_profile(path)?;
    let n = file.read(&mut head).unwrap_or(0);
    Ok(crate::output::diff::detect(&head[..n]) == crate::output::diff::BaselineKind::PerfData)
}

/// Reads a baseline for a differential graph: perf.data through our reader (folded like the
/// recording, with the same roots), our pprof export, or folded text.
pub fn read_baseline(config: &Config, path: &std::path::Path) -> Result<crate::fold::Folded> {
    if is_perf_data(path)? {
        let recording = perf_data(config, path)?;
        let options = crate::profile::fold::FoldOptions {
            roots: config.view.roots,
            ..Default::default()
        };
        Ok(crate::profile::fold::fold(&recording.profile, &options))
    } else {
        crate::output::diff::read_folded_or_pprof(path)
    }
}

#[cfg(not(target_os = "linux"))]
fn native_record(_config: &Config) -> Result<Recording> {
    Err(crate::error::Error::InvalidOptions(
        "the native backend needs Linux; use --backend dtrace".into(),
    ))
}
