//! What both binaries do after parsing: run the profile, print notes, map the outcome to an exit
//! code. `anyhow` lives here, at the edge; the library returns typed errors.

use std::process::ExitCode;

use flamegraph::options::Config;

/// Runs the profile described by `config` and reports it.
pub fn profile(config: &Config) -> anyhow::Result<ExitCode> {
    let outcome = flamegraph::run::run(config)?;
    for note in &outcome.notes {
        eprintln!("flamegraph: {note}");
    }
    eprintln!("flamegraph: wrote {}", outcome.output.display());
    if outcome.program_failed() && !config.record.ignore_status {
        let ending = outcome
            .status
            .map(flamegraph::record::external::describe_failure)
            .unwrap_or_else(|| "failed".into());
        eprintln!(
            "flamegraph: error: the profiled program {ending}; the graph was still written to {}; \
             pass --ignore-status to exit with success anyway",
            outcome.output.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints an error chain on one line after the program prefix.
pub fn report(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("flamegraph: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
