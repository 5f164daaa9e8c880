//! The library's error type: one variant per thing that can go wrong, each with a message that
//! tells the user what to do. The binaries print the chain after a `flamegraph: ` prefix.

use std::path::PathBuf;
use std::process::ExitStatus;

/// Everything the profiling pipeline can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An external tool (perf, dtrace, xctrace, a post-process command) could not be started.
    #[error("{tool} is not installed or not on PATH ({source}); {hint}")]
    ToolMissing {
        tool: String,
        hint: String,
        #[source]
        source: std::io::Error,
    },

    /// An external tool ran and failed.
    #[error("`{command}` failed ({status}){}", stderr_suffix(.stderr))]
    ToolFailed {
        command: String,
        status: ExitStatus,
        stderr: String,
    },

    /// The kernel refuses perf events to this user.
    #[error(
        "permission denied by the kernel for perf events (kernel.perf_event_paranoid = {paranoid}); \
         run `sudo sysctl kernel.perf_event_paranoid=1` (kernel frames included), \
         or profile as root with --root"
    )]
    PerfParanoid { paranoid: String },

    /// The program to profile does not exist or cannot be executed.
    #[error("cannot run {program}: {reason}")]
    ProgramNotRunnable { program: String, reason: String },

    /// Recording ended with no samples at all.
    #[error(
        "no samples were recorded{detail}: the program probably ran too briefly; \
         run it longer or raise the sampling frequency with -F (e.g. -F 4999)"
    )]
    NoSamples { detail: String },

    /// Recording a counted event (`-e major-faults`) gave no sample: the program caused none.
    #[error(
        "-e {event}: the program caused none{detail} (or none this user may see: without kernel \
         access only user-space events count), so there is nothing to draw; sample another \
         event, or cpu-clock"
    )]
    NoEvents { event: String, detail: String },

    /// A combination of options that cannot work.
    #[error("{0}")]
    InvalidOptions(String),

    /// Reading or writing a file failed.
    #[error("{action} {}: {source}", path.display())]
    File {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Input we could not parse (perf script output, dtrace output, folded stacks, perf.data).
    #[error("{0}")]
    Malformed(String),

    /// The `--post-process` command failed.
    #[error("--post-process command `{command}` failed: {reason}")]
    PostProcess { command: String, reason: String },

    /// The native sampler failed.
    #[cfg(target_os = "linux")]
    #[error(transparent)]
    Native(#[from] crate::record::native::NativeError),

    /// The output path is refused, or writing it failed.
    #[error(transparent)]
    Output(#[from] crate::sink::OutputError),

    /// Drawing failed after recording; the folded stacks were saved to `path`.
    #[error("{cause}; the recorded stacks were saved to {} (draw them with `inferno-flamegraph {} > flamegraph.svg`)", path.display(), path.display())]
    Rescued { cause: Box<Error>, path: PathBuf },

    /// Any other I/O failure, with what we were doing.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

fn stderr_suffix(stderr: &str) -> String {
    let trimmed = stderr.trim();
    if trimmed.is_empty() {
        String::new()
    } else {
        // Keep the tail: tools print the cause last.
        let lines: Vec<&str> = trimmed.lines().collect();
        let tail = &lines[lines.len().saturating_sub(5)..];
        format!(": {}", tail.join(" | "))
    }
}

impl Error {
    /// Wraps an I/O error with what we were doing.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// An error and its causes on one line: `error: cause: cause`, where a cause whose text the line
/// already shows (messages that embed their OS error, wrapped errors that repeat their inner
/// one) is not printed a second time.
pub fn one_line(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !text.is_empty() && !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        next = cause.source();
    }
    line
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_prints_each_cause_once() {
        let missing = || std::io::Error::from_raw_os_error(libc::ENOENT);
        let file = Error::File {
            action: "cannot read",
            path: "/missing".into(),
            source: missing(),
        };
        assert_eq!(
            one_line(&file),
            "cannot read /missing: No such file or directory (os error 2)"
        );
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);
        assert_eq!(
            one_line(&Outer(missing())),
            "outer: No such file or directory (os error 2)"
        );
    }
}
