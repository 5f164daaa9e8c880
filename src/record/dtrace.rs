//! The dtrace backend (FreeBSD, illumos, Windows' dtrace, and Linux when `DTRACE` names a
//! program), invoked exactly as flamegraph 0.6.15 does:
//! `dtrace -x ustackframes=100 -n 'profile-997 /pid == $target/ { @[ustack(100)] = count(); }'
//!  -o DIR/cargo-flamegraph.stacks -c 'CMD ARGS'` (or `-p PID` per pid), then inferno's dtrace
//! collapser. `-c/--cmd` replaces the D script. Unlike 0.6.15, the stacks file is written in a
//! private temporary directory, not at a predictable path in the current directory (dtrace
//! runs as root).

use std::ffi::OsString;

use super::external::{failed, private_dir, Tool};
use super::Recording;
use crate::error::{Error, Result};
use crate::fold::Folded;
use crate::options::{GraphOptions, RecordOptions, Workload};

const INSTALL_HINT: &str = "install dtrace for your system, or name it with DTRACE=/path/to/dtrace";

/// The name of the file dtrace writes its aggregation to, in a private temporary directory.
const STACKS_FILE: &str = "cargo-flamegraph.stacks";

/// The arguments after `dtrace`.
fn dtrace_args(options: &RecordOptions, stacks_file: &std::path::Path) -> Result<Vec<OsString>> {
    let script = options.custom_cmd.clone().unwrap_or_else(|| {
        format!(
            "profile-{} /pid == $target/ {{ @[ustack(100)] = count(); }}",
            options.frequency
        )
    });
    let mut args: Vec<OsString> = vec![
        "-x".into(),
        "ustackframes=100".into(),
        "-n".into(),
        script.into(),
        "-o".into(),
        stacks_file.into(),
    ];
    match &options.workload {
        Workload::Command(cmd) => {
            // dtrace -c takes one string that it splits on spaces; escape spaces inside args.
            let escaped: Vec<String> = cmd
                .iter()
                .map(|a| a.to_string_lossy().replace(' ', "\\ "))
                .collect();
            args.push("-c".into());
            args.push(escaped.join(" ").into());
        }
        Workload::Pids(pids) => {
            for pid in pids {
                args.push("-p".into());
                args.push(pid.to_string().into());
            }
        }
        Workload::PerfData(_) => {
            return Err(Error::InvalidOptions(
                "--perfdata reads perf.data files; it does not work with --backend dtrace".into(),
            ))
        }
        Workload::SystemWide(_) => return Err(system_wide_unsupported()),
    }
    Ok(args)
}

/// Records with dtrace and folds its `ustack()` aggregation.
pub fn record(options: &RecordOptions, graph: &GraphOptions) -> Result<Recording> {
    if !options.inline {
        return Err(Error::InvalidOptions(
            "--no-inline is only supported by the perf-cli and native backends".into(),
        ));
    }
    let tool = Tool::for_recording("DTRACE", "dtrace", INSTALL_HINT, options);
    let dir = private_dir()?;
    let stacks_file = dir.path().join(STACKS_FILE);
    let args = dtrace_args(options, &stacks_file)?;
    let finished = tool.run_teeing_stderr(tool.command(&args))?;
    let (status, stderr_tail, interrupted) =
        (finished.status, finished.stderr_tail, finished.interrupted);
    let bytes = match std::fs::read(&stacks_file) {
        Ok(b) => b,
        Err(source) if failed(status, interrupted) => {
            return Err(Error::ToolFailed {
                command: format!("{} (no {} written: {source})", tool.name(), STACKS_FILE),
                status,
                stderr: stderr_tail,
            })
        }
        Err(source) => {
            return Err(Error::File {
                action: "dtrace wrote no stacks to",
                path: stacks_file,
                source,
            })
        }
    };
    let mut folded = collapse_dtrace(&bytes)?;
    folded.clean_names(graph.full_names);
    Ok(Recording {
        interrupted,
        ..Recording::from_folded(&folded, Some(status))
    })
}

/// Collapses dtrace `ustack()` aggregation output (invalid UTF-8 is replaced, a known dtrace
/// quirk); names as the tool wrote them (see [`Folded::clean_names`]).
pub fn collapse_dtrace(bytes: &[u8]) -> Result<Folded> {
    let text = String::from_utf8_lossy(bytes);
    super::collapse_with(
        inferno::collapse::dtrace::Folder::default(),
        text.as_bytes(),
        "dtrace",
    )
}

/// The error for `-a` with dtrace or xctrace.
pub(crate) fn system_wide_unsupported() -> Error {
    Error::InvalidOptions("-a/--all-cpus needs the native or perf-cli backend (Linux)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_match_flamegraph_0_6() {
        let options = RecordOptions {
            workload: Workload::Command(vec!["./prog".into(), "a b".into()]),
            ..RecordOptions::default()
        };
        let args = dtrace_args(&options, std::path::Path::new(STACKS_FILE)).unwrap();
        let args: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "-x",
                "ustackframes=100",
                "-n",
                "profile-997 /pid == $target/ { @[ustack(100)] = count(); }",
                "-o",
                STACKS_FILE,
                "-c",
                "./prog a\\ b"
            ]
        );
    }

    #[test]
    fn collapses_ustack_output() {
        // dtrace prints each stack leaf first, then its count.
        let text = "\n              prog`work_a+0x5\n              prog`main+0x10\n              libc.so.1`_start+0x20\n                7\n\n";
        let f = collapse_dtrace(text.as_bytes()).unwrap();
        assert_eq!(f.to_text(), "libc.so.1`_start;prog`main;prog`work_a 7\n");
    }
}
