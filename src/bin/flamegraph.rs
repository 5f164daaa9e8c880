//! `flamegraph [OPTIONS] -- COMMAND [ARGS]`, `flamegraph --pid PID`, `flamegraph -a`,
//! `flamegraph --perfdata FILE`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use flamegraph::cli::{self, CommonArgs};

mod common;

#[derive(Debug, Parser)]
#[command(name = "flamegraph", version, about = "A profiler that draws flame graphs", long_about = None)]
struct Opt {
    /// Profile a running process by pid (comma separated list)
    #[arg(short = 'p', long = "pid")]
    pid: Option<String>,

    /// Profile every process on every CPU (system-wide) until --duration SECS or Ctrl-C, or
    /// while the command after `--` runs; each process under its own root (`comm-PID`). Needs
    /// root, CAP_PERFMON or kernel.perf_event_paranoid <= 0
    #[arg(short = 'a', long = "all-cpus", conflicts_with_all = ["pid", "perf_file"])]
    all_cpus: bool,

    /// Generate shell completions for the given shell
    #[arg(long = "completions", value_name = "SHELL", exclusive = true)]
    completions: Option<clap_complete::Shell>,

    #[command(flatten)]
    common: CommonArgs,

    /// Draw an existing perf.data file
    #[arg(long = "perfdata", conflicts_with = "pid")]
    perf_file: Option<PathBuf>,

    /// The command to profile and its arguments
    #[arg(last = true, value_name = "TRAILING_ARGUMENTS")]
    trailing_arguments: Vec<OsString>,
}

fn main() -> ExitCode {
    let opt = Opt::parse();
    if let Some(shell) = opt.completions {
        clap_complete::generate(
            shell,
            &mut Opt::command(),
            "flamegraph",
            &mut std::io::stdout(),
        );
        return ExitCode::SUCCESS;
    }
    common::report(try_main(opt))
}

fn try_main(opt: Opt) -> anyhow::Result<ExitCode> {
    let workload = cli::workload(
        opt.trailing_arguments,
        opt.pid.as_deref(),
        opt.all_cpus,
        opt.perf_file,
    )?;
    let sudo_child = opt.common.sudo_child;
    let warnings = opt.common.warnings();
    let config = opt.common.into_config(workload)?;
    if !sudo_child {
        common::warn(&warnings);
    }
    let options = common::sudo::options_from_args();
    common::profile_maybe_as_root(config, sudo_child, &options, None)
}
