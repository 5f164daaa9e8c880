//! The macOS backend: Instruments' `xctrace` with the Time Profiler template, as flamegraph
//! 0.6.15 does (`XCTRACE` names the tool). Compiled on every platform so it stays linted; only
//! macOS dispatches to it (see [`super::record`]).
//!
//! `xctrace record --template 'Time Profiler' --output DIR/cargo-flamegraph.trace
//!  (--target-stdout - --launch -- CMD | --attach PID)`, then `xctrace export --input
//! DIR/cargo-flamegraph.trace --xpath '/trace-toc/*/data/table[@schema="time-profile"]'` collapsed
//! with inferno's xctrace collapser. DIR is a private temporary directory, removed afterwards
//! (0.6.15 used the current directory: a predictable path).

use std::ffi::OsString;

use super::external::{failed, private_dir, Tool};
use super::Recording;
use crate::error::{Error, Result};
use crate::fold::Folded;
use crate::options::{GraphOptions, RecordOptions, Workload};

const INSTALL_HINT: &str =
    "install Xcode or its command line tools (`xcode-select --install`), or name it with XCTRACE=/path";

const TRACE_FILE: &str = "cargo-flamegraph.trace";

fn record_args(options: &RecordOptions, trace: &std::path::Path) -> Result<Vec<OsString>> {
    if options.frequency != 997 {
        return Err(Error::InvalidOptions(
            "xctrace samples at a fixed rate: -F is not supported on macOS (use --backend dtrace with DTRACE set)".into(),
        ));
    }
    if options.custom_cmd.is_some() {
        return Err(Error::InvalidOptions(
            "xctrace does not take a custom command (-c)".into(),
        ));
    }
    let mut args: Vec<OsString> = ["record", "--template", "Time Profiler", "--output"]
        .iter()
        .map(OsString::from)
        .collect();
    args.push(trace.into());
    match &options.workload {
        Workload::Command(cmd) => {
            args.extend(["--target-stdout", "-", "--launch", "--"].map(OsString::from));
            args.extend(cmd.iter().cloned());
        }
        Workload::Pids(pids) => match pids.as_slice() {
            [pid] => {
                args.push("--attach".into());
                args.push(pid.to_string().into());
            }
            _ => {
                return Err(Error::InvalidOptions(
                    "xctrace profiles a single process at a time: give one --pid".into(),
                ))
            }
        },
        Workload::PerfData(_) => {
            return Err(Error::InvalidOptions(
                "xctrace cannot read perf.data files".into(),
            ))
        }
        Workload::SystemWide(_) => return Err(super::dtrace::system_wide_unsupported()),
    }
    Ok(args)
}

/// Records with xctrace and folds its time-profile table.
pub fn record(options: &RecordOptions, graph: &GraphOptions) -> Result<Recording> {
    if !options.inline {
        return Err(Error::InvalidOptions(
            "--no-inline is not supported by xctrace".into(),
        ));
    }
    let tool = Tool::for_recording("XCTRACE", "xctrace", INSTALL_HINT, options);
    let dir = private_dir()?;
    let trace = dir.path().join(TRACE_FILE);
    let args = record_args(options, &trace)?;
    let finished = tool.run_teeing_stderr(tool.command(&args))?;
    let (status, stderr_tail, interrupted) =
        (finished.status, finished.stderr_tail, finished.interrupted);
    // xctrace exits 54 when Ctrl-C stopped the recording: not a failure.
    if failed(status, interrupted) && status.code() != Some(54) && !trace.exists() {
        return Err(Error::ToolFailed {
            command: format!("{} record", tool.name()),
            status,
            stderr: stderr_tail,
        });
    }
    let mut export = Tool::from_env("XCTRACE", "xctrace", INSTALL_HINT);
    export.verbose = options.verbose;
    let xml = export.output(export.command([
        OsString::from("export"),
        OsString::from("--input"),
        trace.clone().into(),
        OsString::from("--xpath"),
        OsString::from(r#"/trace-toc/*/data/table[@schema="time-profile"]"#),
    ]));
    let mut folded = collapse_xctrace(&xml?)?;
    folded.clean_names(graph.full_names);
    Ok(Recording {
        interrupted,
        ..Recording::from_folded(&folded, Some(status))
    })
}

/// Collapses an `xctrace export` time-profile table; names as the tool wrote them (see
/// [`Folded::clean_names`]).
pub fn collapse_xctrace(xml: &[u8]) -> Result<Folded> {
    super::collapse_with(
        inferno::collapse::xctrace::Folder::default(),
        xml,
        "xctrace",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_match_flamegraph_0_6() {
        let options = RecordOptions {
            workload: Workload::Command(vec!["./prog".into(), "x".into()]),
            ..RecordOptions::default()
        };
        let args = record_args(&options, std::path::Path::new(TRACE_FILE)).unwrap();
        let args: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "record",
                "--template",
                "Time Profiler",
                "--output",
                TRACE_FILE,
                "--target-stdout",
                "-",
                "--launch",
                "--",
                "./prog",
                "x"
            ]
        );
        let two = RecordOptions {
            workload: Workload::Pids(vec![1, 2]),
            ..RecordOptions::default()
        };
        assert!(record_args(&two, std::path::Path::new(TRACE_FILE)).is_err());
    }
}
