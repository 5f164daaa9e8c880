//! What both binaries do after parsing: run the profile, print notes, map the outcome to an exit
//! code. `anyhow` lives here, at the edge; the library returns typed errors.

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
    for note in &outcome.notes {
        say(format_args!("{note}"));
    }
    say(format_args!("wrote {}", outcome.output.display()));
    if outcome.program_failed() && !config.record.ignore_status {
        let ending = outcome
            .status
            .map(flamegraph::record::external::describe_failure)
            .unwrap_or_else(|| "failed".into());
        say(format_args!(
            "error: the profiled program {ending}; the graph was still written to {}; \
             pass --ignore-status to exit with success anyway",
            outcome.output.display()
        ));
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints an error chain on one line after the program prefix.
pub fn report(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(err) => {
            say(format_args!("error: {err:#}"));
            ExitCode::FAILURE
        }
    }
}
