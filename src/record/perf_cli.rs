//! The `perf` command-line backend: `perf record` + `perf script`, collapsed with inferno's perf
//! collapser. This is what flamegraph 0.6 does, kept for `--backend perf-cli`, for `-c` custom
//! perf arguments, and as the oracle the native backend is checked against.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::external::{failed, Tool};
use super::Recording;
use crate::error::{Error, Result};
use crate::fold::Folded;
use crate::options::{GraphOptions, RecordOptions, Workload};
use crate::profile::fold::Roots;

const INSTALL_HINT: &str = "install it: `apt-get install linux-perf` (Debian), \
     `apt-get install linux-tools-$(uname -r)` (Ubuntu), `dnf install perf` (Fedora) \
     or `pacman -S perf` (Arch), or name it with PERF=/path/to/perf";

/// The `perf` tool, from `PERF` or PATH.
pub fn perf_tool(options: &RecordOptions) -> Tool {
    Tool::for_recording("PERF", "perf", INSTALL_HINT, options)
}

/// `perf record` arguments: ours, or the user's `-c` replacement (split with shell quoting), plus
/// where the data goes and what to profile.
struct RecordArgs {
    args: Vec<OsString>,
    output: PathBuf,
}

fn record_args(options: &RecordOptions) -> Result<RecordArgs> {
    let mut args: Vec<OsString> = Vec::new();
    let mut output = None;
    let mut has_pid = false;
    match &options.custom_cmd {
        Some(custom) => {
            let words = shlex::split(custom).ok_or_else(|| {
                Error::InvalidOptions(format!("-c {custom:?}: unbalanced quotes"))
            })?;
            let mut words = words.into_iter();
            while let Some(word) = words.next() {
                let takes_value = matches!(word.as_str(), "-o" | "--output" | "-p" | "--pid");
                has_pid |= matches!(word.as_str(), "-p" | "--pid") || word.starts_with("--pid=");
                if let Some(path) = word.strip_prefix("--output=") {
                    output = Some(PathBuf::from(path));
                }
                args.push(word.clone().into());
                if takes_value {
                    let value = words.next().ok_or_else(|| {
                        Error::InvalidOptions(format!("-c {custom:?}: {word} needs a value"))
                    })?;
                    if word == "-o" || word == "--output" {
                        output = Some(PathBuf::from(&value));
                    }
                    args.push(value.into());
                }
            }
        }
        None => {
            args.push("record".into());
            if let Some(event) = options.record_event {
                args.push("-e".into());
                args.push(event.name().into());
            }
            let (flag, rate) = match options.period {
                Some(period) => ("-c", period.to_string()),
                None => ("-F", options.frequency.to_string()),
            };
            for a in [flag, &rate, "--call-graph", "dwarf,64000", "-g"] {
                args.push(a.into());
            }
            if let Some(level) = options.compression_level {
                args.push(format!("--compression-level={level}").into());
            }
        }
    }
    let output = match output {
        Some(o) => o,
        None => {
            args.push("-o".into());
            args.push("perf.data".into());
            PathBuf::from("perf.data")
        }
    };
    if !has_pid {
        match &options.workload {
            Workload::Command(cmd) => {
                args.push("--".into());
                args.extend(cmd.iter().cloned());
            }
            Workload::Pids(pids) => {
                let list: Vec<String> = pids.iter().map(u32::to_string).collect();
                args.push("-p".into());
                args.push(list.join(",").into());
            }
            // Until a stop (--duration, Ctrl-C) reaches perf, or while the command runs (perf
            // script then resolves inline frames of every sampled binary with addr2line: slow;
            // --no-inline is advised).
            Workload::SystemWide(cmd) => {
                args.push("-a".into());
                if !cmd.is_empty() {
                    args.push("--".into());
                    args.extend(cmd.iter().cloned());
                }
            }
            Workload::PerfData(_) => {}
        }
    }
    Ok(RecordArgs { args, output })
}

/// Records with `perf record`, then folds with `perf script`.
pub fn record(options: &RecordOptions, graph: &GraphOptions, roots: Roots) -> Result<Recording> {
    let tool = perf_tool(options);
    let RecordArgs { args, output } = record_args(options)?;
    let finished = tool.run_teeing_stderr(tool.command(&args))?;
    let (status, stderr_tail, interrupted) =
        (finished.status, finished.stderr_tail, finished.interrupted);
    if failed(status, interrupted) {
        if let Some(err) = classify_record_failure(&stderr_tail, options) {
            return Err(err);
        }
        if !output.exists() {
            return Err(Error::ToolFailed {
                command: format!("{} {}", tool.name(), lossy_join(&args)),
                status,
                stderr: stderr_tail,
            });
        }
    }
    let counted = options.record_event.filter(|e| !e.is_time());
    // Frequency-sampled events carry their varying period: keep it as the weight.
    let keep_period = counted.is_some() && options.period.is_none();
    let folded = script(&tool, &output, options, graph, roots, keep_period)?;
    let mut recording = Recording::from_folded(&folded, Some(status));
    if let Some(event) = counted {
        weigh_events(&mut recording.profile, event, options.period);
    }
    Ok(Recording {
        interrupted,
        ..recording
    })
}

/// A graph of `-e EVENT` (not a clock) counts events: period × samples with a fixed period,
/// the summed periods (the folded counts) at a frequency.
fn weigh_events(
    profile: &mut crate::profile::Profile,
    event: crate::event::Event,
    period: Option<u64>,
) {
    use crate::profile::{Measure, WeightUnit};
    for sample in &mut profile.samples {
        sample.weight = sample.count.saturating_mul(period.unwrap_or(1));
    }
    profile.event = event.name();
    profile.weight_unit = WeightUnit::Events(event.name());
    profile.measure = Measure::Weight;
}

/// Folds an existing perf.data file with `perf script`.
pub fn script_file(
    options: &RecordOptions,
    graph: &GraphOptions,
    roots: Roots,
    path: &Path,
) -> Result<Recording> {
    let tool = perf_tool(options);
    let folded = script(&tool, path, options, graph, roots, false)?;
    Ok(Recording::from_folded(&folded, None))
}

fn script(
    tool: &Tool,
    data: &Path,
    options: &RecordOptions,
    graph: &GraphOptions,
    roots: Roots,
    keep_period: bool,
) -> Result<Folded> {
    // Without the period field, inferno counts one per sample: the graph counts samples, as the
    // native backend's does, not nanoseconds of cpu-clock (`keep_period`: events counted at a
    // frequency, weighed by their periods). Mangled names, so that our demangler, which knows
    // Rust from C++, applies the naming rules. Per-thread and per-process roots need the pid
    // beside the tid (`comm PID/TID`).
    let fields = match (roots, keep_period) {
        (Roots::ThreadName, false) => Some("-period"),
        (Roots::PerThread | Roots::PerProcess, false) => Some("-period,+pid"),
        (Roots::ThreadName, true) => None,
        (Roots::PerThread | Roots::PerProcess, true) => Some("+pid"),
    };
    let mut args: Vec<OsString> = vec!["script".into(), "--force".into()];
    if let Some(fields) = fields {
        args.push("-F".into());
        args.push(fields.into());
    }
    args.push("--no-demangle".into());
    if !options.inline {
        args.push("--no-inline".into());
    }
    // A perf.data file from another machine: perf's own options for its files and kernel.
    for (flag, value) in [
        ("--symfs", &options.symfs),
        ("--kallsyms", &options.kallsyms),
    ] {
        if let Some(value) = value {
            args.push(flag.into());
            args.push(value.into());
        }
    }
    args.push("-i".into());
    args.push(data.into());
    let text = tool.output(tool.command(&args))?;
    let mut folded = collapse_perf_script(&text, &graph.skip_after, roots)?;
    folded.clean_names(graph.full_names);
    Ok(folded)
}

/// Collapses `perf script` output with inferno (kernel frames annotated `_[k]`, inlined ones
/// `_[i]`); names as perf wrote them (see [`Folded::clean_names`]). Per-thread and per-process
/// roots are inferno's `comm-PID/TID` and `comm-PID`.
pub fn collapse_perf_script(text: &[u8], skip_after: &[String], roots: Roots) -> Result<Folded> {
    let mut options = inferno::collapse::perf::Options::default();
    options.annotate_kernel = true;
    options.include_tid = roots == Roots::PerThread;
    options.include_pid = roots == Roots::PerProcess;
    options.skip_after = skip_after.to_vec();
    super::collapse_with(
        inferno::collapse::perf::Folder::from(options),
        text,
        "perf script",
    )
}

fn classify_record_failure(stderr: &str, options: &RecordOptions) -> Option<Error> {
    // perf blames perf_event_paranoid for every refusal; name the real cause when /proc shows it.
    #[cfg(target_os = "linux")]
    if let (Workload::Pids(pids), None) = (&options.workload, &options.root) {
        if let Some(denied) = pids
            .iter()
            .find_map(|&pid| super::native::attach_denied(pid))
        {
            return Some(Error::Native(denied));
        }
    }
    if stderr.contains("perf_event_paranoid")
        || stderr.contains("Permission denied") && stderr.contains("perf_event")
    {
        let paranoid = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "unknown".into());
        return Some(Error::PerfParanoid { paranoid });
    }
    if stderr.contains("Failed to collect") && stderr.contains("workload") {
        let program = match &options.workload {
            Workload::Command(cmd) => cmd.first().map(|p| p.to_string_lossy().into_owned()),
            _ => None,
        }
        .unwrap_or_default();
        let reason = stderr
            .lines()
            .find(|l| l.contains("Failed to collect"))
            .and_then(|l| l.rsplit(": ").next())
            .unwrap_or("perf could not start it")
            .trim()
            .to_owned();
        return Some(Error::ProgramNotRunnable { program, reason });
    }
    None
}

fn lossy_join(args: &[OsString]) -> String {
    args.iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(custom: Option<&str>) -> RecordOptions {
        RecordOptions {
            custom_cmd: custom.map(str::to_owned),
            workload: Workload::Command(vec!["./prog".into(), "arg one".into()]),
            ..RecordOptions::default()
        }
    }

    fn strings(a: &RecordArgs) -> Vec<String> {
        a.args
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn default_args_match_flamegraph_0_6() {
        let a = record_args(&opts(None)).unwrap();
        assert_eq!(
            strings(&a),
            [
                "record",
                "-F",
                "997",
                "--call-graph",
                "dwarf,64000",
                "-g",
                "-o",
                "perf.data",
                "--",
                "./prog",
                "arg one"
            ]
        );
    }

    #[test]
    fn event_and_period_are_passed_to_perf() {
        let mut o = opts(None);
        o.record_event = Some(crate::event::Event::PageFaults);
        o.period = Some(1);
        let a = strings(&record_args(&o).unwrap());
        assert_eq!(a[..5], ["record", "-e", "page-faults", "-c", "1"]);
        o.record_event = Some(crate::event::Event::Raw(0x1c2));
        o.period = None;
        let a = strings(&record_args(&o).unwrap());
        assert_eq!(a[..5], ["record", "-e", "r1c2", "-F", "997"]);
    }

    #[test]
    fn system_wide_is_perf_record_a() {
        let options = RecordOptions {
            workload: Workload::SystemWide(Vec::new()),
            ..RecordOptions::default()
        };
        let a = record_args(&options).unwrap();
        assert_eq!(strings(&a).last().map(String::as_str), Some("-a"));
        assert!(!strings(&a).contains(&"--".to_owned()));
    }

    #[test]
    fn custom_args_are_shell_split_and_keep_their_output() {
        let a = record_args(&opts(Some(
            "record -e 'cpu-clock' -o my.data --call-graph fp",
        )))
        .unwrap();
        assert_eq!(a.output, PathBuf::from("my.data"));
        assert_eq!(
            strings(&a),
            [
                "record",
                "-e",
                "cpu-clock",
                "-o",
                "my.data",
                "--call-graph",
                "fp",
                "--",
                "./prog",
                "arg one"
            ]
        );
        let a = record_args(&opts(Some("record -p 42"))).unwrap();
        assert!(!strings(&a).contains(&"./prog".to_string()));
        assert!(record_args(&opts(Some("record 'unbalanced"))).is_err());
    }

    #[test]
    fn collapses_real_perf_script_text() {
        let text = b"prog 123 [000] 1.0: 1001001 cpu-clock:pppH: \n\
            \tffffffff8100 do_syscall_64+0x10 ([kernel.kallsyms])\n\
            \t401000 work_a+0x5 (/tmp/prog)\n\
            \t401100 main+0x10 (/tmp/prog)\n\n";
        let f = collapse_perf_script(text, &[], Roots::ThreadName).unwrap();
        assert_eq!(f.to_text(), "prog;main;work_a;do_syscall_64_[k] 1001001\n");
    }
}
