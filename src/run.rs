//! One profiling run end to end: validate → record → (post-process) → render.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;

use crate::error::{Error, Result};
use crate::fold::Folded;
use crate::options::{Config, OutputTarget, Workload};
use crate::output::diff::Baseline;
use crate::output::summary::Summary;
use crate::output::View;
use crate::profile::fold::{fold, FoldOptions, Roots};
use crate::record;

/// What a successful run produced.
#[derive(Debug)]
pub struct Outcome {
    /// The first file written (`-` for standard output).
    pub output: PathBuf,
    /// Total sample weight in the graph.
    pub samples: u64,
    /// How the profiled program exited, when we launched it.
    pub status: Option<ExitStatus>,
    /// Whether the user stopped the recording (Ctrl-C, a signal to the profiler).
    pub interrupted: bool,
    /// Notes for the user (lost samples, kernel frames unavailable, ...).
    pub notes: Vec<String>,
    /// The terminal summary (printed unless `--quiet`).
    pub summary: Summary,
}

impl Outcome {
    /// Whether the profiled program (or the external recorder) failed, rather than succeeding or
    /// being stopped by the user (Ctrl-C, a signal to the profiler).
    pub fn program_failed(&self) -> bool {
        self.status
            .is_some_and(|s| record::external::failed(s, self.interrupted))
    }
}

/// Profiles `config.record.workload` and writes every output. The outputs are written even
/// when the profiled program fails: the caller decides from [`Outcome::program_failed`] whether
/// that fails the run (it does unless `--ignore-status`).
pub fn run(config: &Config) -> Result<Outcome> {
    validate(config)?;
    // The baseline is read before recording: a bad one must not cost a recording.
    let baseline = match &config.view.baseline {
        Some(path) => Some(Baseline {
            folded: record::read_baseline(config, path)?,
            normalize: config.view.normalize,
            path: path.clone(),
        }),
        None => None,
    };
    // Stop signals (Ctrl-C, SIGTERM, SIGHUP) are caught by the backends while they record: they
    // stop the program and the graph is still drawn.
    let mut recording = record::record(config)?;
    if recording.profile.is_empty() {
        let detail = match recording.status {
            Some(s) if record::external::failed(s, recording.interrupted) => {
                format!(" (the program exited with {s})")
            }
            _ => String::new(),
        };
        if let Some(event) = config.record.record_event.filter(|e| !e.is_time()) {
            let event = event.name();
            return Err(Error::NoEvents { event, detail });
        }
        return Err(Error::NoSamples { detail });
    }
    if let Some(note) = thread_note(config, &recording.profile) {
        recording.notes.push(note);
    }
    if baseline.is_some() && config.view.roots != Roots::ThreadName {
        recording.notes.push(
            "--baseline with per-thread or per-process roots: roots carry pids, so frames match \
             the baseline only where the pids are the same"
                .into(),
        );
    }
    recording.profile.skip_after(&config.graph.skip_after);
    let writing = std::time::Instant::now();
    let written: &[OutputTarget] = if config.view.summary_only {
        &[]
    } else {
        write_outputs(config, &recording, baseline.as_ref())?;
        &config.output.outputs
    };
    if config.record.verbose {
        recording.notes.push(resource_note(writing.elapsed()));
    }
    Ok(Outcome {
        output: config.output.first().path.clone(),
        samples: recording.profile.sample_count(),
        status: recording.status,
        interrupted: recording.interrupted,
        summary: Summary::new(
            &recording.profile,
            &recording.info,
            config.view.summary_rows,
            written,
        ),
        notes: recording.notes,
    })
}

/// The `-v` line on the outputs' writing time and this process's peak memory (`VmHWM`: resident
/// pages at their highest, mapped files included, child processes not).
fn resource_note(writing: std::time::Duration) -> String {
    let peak = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or_else(
            || "unknown".to_owned(),
            |kib| format!("{:.1} MiB", kib as f64 / 1024.0),
        );
    format!(
        "outputs written in {:.3} s; peak memory of the profiler: {peak} (VmHWM)",
        writing.as_secs_f64()
    )
}

/// Folds once, post-processes once, then writes each output, and opens the first if asked.
fn write_outputs(
    config: &Config,
    recording: &record::Recording,
    baseline: Option<&Baseline>,
) -> Result<()> {
    let options = FoldOptions {
        roots: config.view.roots,
        ..Default::default()
    };
    let folded_profile = || {
        let mut folded = fold(&recording.profile, &options);
        if recording.profile.time_ordered && !config.graph.flame_chart {
            // Time order was kept for another output (speedscope): graphs merge equal stacks.
            folded = Folded::from_counts(merge(&folded));
        }
        folded.skip_after(&config.graph.skip_after);
        folded
    };
    let mut folded = folded_profile();
    let rescue = |err: Error, folded: &Folded, beside: &Path| {
        // Never lose a profile to a late failure (post-process command, full disk, ...): keep
        // the folded stacks where they can be drawn again (not needed when only --open failed).
        let saved = match err {
            Error::Output(crate::sink::OutputError::CannotOpen { .. }) => None,
            _ => crate::sink::rescue(&folded.to_text(), beside),
        };
        match saved {
            Some(path) => Error::Rescued {
                cause: Box::new(err),
                path,
            },
            None => err,
        }
    };
    if let Some(cmd) = &config.output.post_process {
        // The command consumes the stacks; a failure is rescued from a second fold.
        folded = crate::output::folded::post_process(folded, cmd)
            .map_err(|e| rescue(e, &folded_profile(), &config.output.first().path))?;
    }
    let mut view = View {
        profile: &recording.profile,
        info: &recording.info,
        folded: &mut folded,
        diff: baseline,
        graph: &config.graph,
    };
    for target in &config.output.outputs {
        crate::output::write(&mut view, target)
            .map_err(|e| rescue(e, view.folded, &target.path))?;
    }
    if config.output.open {
        crate::sink::open_in_viewer(&config.output.first().path)?;
    }
    Ok(())
}

/// Equal stacks merged.
fn merge(folded: &Folded) -> std::collections::HashMap<String, u64> {
    let mut merged = std::collections::HashMap::with_capacity(folded.stacks().len());
    for (stack, weight) in folded.stacks() {
        *merged.entry(stack.clone()).or_default() += weight;
    }
    merged
}

/// One line when per-thread or per-process roots were asked of a recording without thread ids.
fn thread_note(config: &Config, profile: &crate::profile::Profile) -> Option<String> {
    let flag = match config.view.roots {
        Roots::ThreadName => return None,
        Roots::PerThread => "--per-thread",
        Roots::PerProcess => "--per-process",
    };
    let folded_input = matches!(config.record.workload, Workload::PerfData(_))
        && config.record.backend != crate::options::Backend::PerfCli;
    let lacks = profile.threads.iter().all(|t| t.pid.is_none())
        && (config.record.backend == crate::options::Backend::Dtrace || folded_input);
    lacks.then(|| {
        let source = if folded_input {
            "folded input"
        } else {
            "the dtrace backend"
        };
        format!("{flag}: {source} has no thread ids; stacks stay rooted at thread names")
    })
}

fn validate(config: &Config) -> Result<()> {
    let (mut program, mut perfdata) = (None, None);
    match &config.record.workload {
        Workload::Command(cmd) => {
            let name = cmd
                .first()
                .ok_or_else(|| Error::InvalidOptions("no command to profile".into()))?;
            // perf's own message for this is cryptic; ours says what is wrong.
            program = match config.record.root {
                None => Some(check_runnable(name)?),
                Some(_) => check_runnable(name).ok(),
            };
        }
        Workload::Pids(pids) => {
            for pid in pids {
                if cfg!(target_os = "linux") && !Path::new(&format!("/proc/{pid}")).exists() {
                    return Err(Error::InvalidOptions(format!("no process with pid {pid}")));
                }
            }
        }
        Workload::SystemWide(_) => {}
        Workload::PerfData(path) => {
            std::fs::metadata(path).map_err(|source| Error::File {
                action: "cannot read",
                path: path.clone(),
                source,
            })?;
            perfdata = Some(path.as_path());
        }
    }
    // Before anything runs: never overwrite the program or the input, never a directory.
    for target in &config.output.outputs {
        crate::sink::check(&target.path, program.as_deref(), perfdata)?;
        if config.view.baseline.as_deref() == Some(target.path.as_path()) {
            return Err(Error::InvalidOptions(format!(
                "{} is the --baseline: write the output elsewhere",
                target.path.display()
            )));
        }
    }
    Ok(())
}

/// Checks that `program` names an executable file, searching PATH like `execvp` when it has no
/// slash (see [`crate::record::program`]).
pub fn check_runnable(program: &OsStr) -> Result<PathBuf> {
    record::program::find(program).map_err(|problem| Error::ProgramNotRunnable {
        program: program.to_string_lossy().into_owned(),
        reason: problem.reason().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runnable_checks() {
        assert!(check_runnable(OsStr::new("sh")).is_ok());
        let e = check_runnable(OsStr::new("./definitely-missing")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot run ./definitely-missing: No such file or directory"
        );
        let e = check_runnable(OsStr::new("/tmp")).unwrap_err();
        assert!(e.to_string().contains("Is a directory"));
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain.txt");
        std::fs::write(&plain, "not a program").unwrap();
        let e = check_runnable(plain.as_os_str()).unwrap_err();
        assert!(e.to_string().contains("not executable"), "{e}");
    }
}
