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
    let written = if flamegraph::sink::is_stdout(&outcome.output) {
        "standard output".into()
    } else {
        outcome.output.display().to_string()
    };
    if !config.view.quiet {
        use std::io::IsTerminal;
        eprint!(
            "{}",
            outcome.summary.render(std::io::stderr().is_terminal())
        );
    }
    if outcome.program_failed() && !config.record.ignore_status {
        let status = outcome
            .status
            .map(|s| s.to_string())
            .unwrap_or_else(|| "an error".into());
        eprintln!(
            "flamegraph: error: the profiled program failed ({status}); the graph was still written \
             to {written}; pass --ignore-status to exit with success anyway"
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
            eprintln!("flamegraph: error: {}", one_line(&err));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes joined with `: `, each cause said once: many messages already
/// quote their source ("cannot read X: No such file or directory (os error 2)"), and repeating
/// it from the chain would double it.
fn one_line(err: &anyhow::Error) -> String {
    let mut line = err.to_string();
    for cause in err.chain().skip(1) {
        let cause = cause.to_string();
        if !line.contains(&cause) {
            line.push_str(": ");
            line.push_str(&cause);
        }
    }
    line
}
