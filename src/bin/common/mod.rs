//! What both binaries do after parsing: run the profile, print notes, map the outcome to an exit
//! code. `anyhow` lives here, at the edge; the library returns typed errors.

pub mod sudo;

use std::io::Write;
use std::process::ExitCode;

use flamegraph::options::Config;

/// Prints `flamegraph: MESSAGE` to stderr. A stderr that fails (the terminal hung up) is no
/// reason to panic: the graph is written by then.
fn say(message: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr(), "flamegraph: {message}");
}

/// Runs the profile described by `config` and reports it.
pub fn profile(config: &Config) -> anyhow::Result<ExitCode> {
    let outcome = flamegraph::run::run(config)?;
    if let Some(user) = config.record.run_as {
        for target in &config.output.outputs {
            sudo::give_back(&target.path, user);
        }
    }
    for note in &outcome.notes {
        say(format_args!("{note}"));
    }
    let written = if flamegraph::sink::is_stdout(&outcome.output) {
        "standard output".into()
    } else {
        outcome.output.display().to_string()
    };
    if !config.view.quiet {
        use std::io::IsTerminal;
        let _ = write!(
            std::io::stderr(),
            "{}",
            outcome.summary.render(std::io::stderr().is_terminal())
        );
    }
    if outcome.program_failed() && !config.record.ignore_status {
        let ending = outcome
            .status
            .map(flamegraph::record::external::describe_failure)
            .unwrap_or_else(|| "failed".into());
        say(format_args!(
            "error: the profiled program {ending}; the graph was still written to {written}; \
             pass --ignore-status to exit with success anyway"
        ));
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Profiles `config`, or, for `--root` with the native backend, runs the recorder again under
/// sudo with `options` (the arguments before `--`) and `command` (after `--`; `None` to keep
/// the workload the options give). `sudo_child` says this process is that recorder.
pub fn profile_maybe_as_root(
    mut config: Config,
    sudo_child: bool,
    options: &[std::ffi::OsString],
    command: Option<Vec<std::ffi::OsString>>,
) -> anyhow::Result<ExitCode> {
    if sudo_child {
        config.record.run_as = sudo::invoking_user();
        // The parent opens the graph as the user; root's viewer is not the user's.
        config.output.open = false;
    } else if sudo::needed(&config) {
        let command = match command {
            Some(command) => Some(command),
            None => sudo::resolved_command(&config)?,
        };
        return sudo::rerun(&config, options, command.as_deref());
    }
    profile(&config)
}

/// Prints the option warnings, one line each.
pub fn warn(warnings: &[String]) {
    for warning in warnings {
        say(format_args!("warning: {warning}"));
    }
}

/// Prints an error chain on one line after the program prefix, each cause once.
pub fn report(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(err) => {
            let err: &(dyn std::error::Error + 'static) = err.as_ref();
            say(format_args!("error: {}", flamegraph::error::one_line(err)));
            ExitCode::FAILURE
        }
    }
}
