//! Recording backends: each turns a workload into folded stacks.
//!
//! - `native` (Linux): the built-in perf_event sampler; no external tool, no intermediate file.
//! - `perf_cli`: `perf record` + `perf script`, as flamegraph 0.6 does.
//! - `dtrace`: dtrace's `ustack()` aggregation (and `xctrace` on macOS).

pub mod dtrace;
pub mod external;
pub mod perf_cli;

#[cfg(target_os = "linux")]
pub mod native;

use std::process::ExitStatus;

use crate::error::Result;
use crate::fold::Folded;
use crate::options::{Backend, Config, Workload};

/// What a backend recorded.
#[derive(Debug)]
pub struct Recording {
    /// The stacks, symbolized and folded.
    pub folded: Folded,
    /// How the profiled program (or the external recorder standing for it) exited; `None` when
    /// nothing was run (a perf.data file, or attaching).
    pub status: Option<ExitStatus>,
    /// One-line notes for the user (lost samples, kernel frames unavailable, ...).
    pub notes: Vec<String>,
}

/// Records `config.record.workload` with the chosen backend.
pub fn record(config: &Config) -> Result<Recording> {
    let options = &config.record;
    match (&options.workload, options.backend) {
        (Workload::PerfData(path), Backend::PerfCli) => {
            perf_cli::script_file(options, &config.graph, path)
        }
        (_, Backend::PerfCli) => perf_cli::record(options, &config.graph),
        (_, Backend::Dtrace) => dtrace::record(options, &config.graph),
        (_, Backend::Native) => native_record(config),
    }
}

#[cfg(target_os = "linux")]
fn native_record(config: &Config) -> Result<Recording> {
    // The native sampler lands in its own change; until then it shares perf's path.
    match &config.record.workload {
        Workload::PerfData(path) => perf_cli::script_file(&config.record, &config.graph, path),
        _ => perf_cli::record(&config.record, &config.graph),
    }
}

#[cfg(not(target_os = "linux"))]
fn native_record(_config: &Config) -> Result<Recording> {
    Err(crate::error::Error::InvalidOptions(
        "the native backend needs Linux; use --backend dtrace".into(),
    ))
}
