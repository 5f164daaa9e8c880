//! Running external tools (perf, dtrace, xctrace): `sudo` wrapping, a clear error when the tool is
//! missing, and stderr passed through to the user while its tail is kept for error messages.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, ExitStatus, Stdio};

use crate::error::{Error, Result};

/// What to do when `sudo` (needed by `--root`) is missing.
pub const SUDO_HINT: &str = "--root runs the recorder through sudo: install it \
     (`apt-get install sudo`), or run flamegraph as root without --root";

/// An external tool: its program name (from an env var such as `PERF`, or the default), how to
/// install it, and an optional `sudo` wrapper.
#[derive(Clone, Debug)]
pub struct Tool {
    pub program: OsString,
    pub install_hint: &'static str,
    pub root: Option<Option<String>>,
    pub verbose: bool,
    /// Give the tool (and so the program it launches) our stderr as its stdout, for `-o -`.
    pub stdout_to_stderr: bool,
    /// Stop the recorder after this long, as Ctrl-C does (`--duration`). Default: none.
    pub duration: Option<std::time::Duration>,
}

impl Tool {
    /// The tool named by `env_var`, or `default` when it is unset.
    pub fn from_env(env_var: &str, default: &str, install_hint: &'static str) -> Tool {
        Tool {
            program: std::env::var_os(env_var).unwrap_or_else(|| default.into()),
            install_hint,
            root: None,
            verbose: false,
            stdout_to_stderr: false,
            duration: None,
        }
    }

    /// The tool named by `env_var` (or `default`), run as the recording options ask: under
    /// `sudo` with `--root`, verbose, and with its stdout on our stderr for `-o -`.
    pub fn for_recording(
        env_var: &str,
        default: &str,
        install_hint: &'static str,
        options: &crate::options::RecordOptions,
    ) -> Tool {
        Tool {
            root: options.root.clone(),
            verbose: options.verbose,
            stdout_to_stderr: options.stdout_to_stderr,
            duration: options.duration,
            ..Tool::from_env(env_var, default, install_hint)
        }
    }

    pub fn name(&self) -> String {
        self.program.to_string_lossy().into_owned()
    }

    /// A command running the tool with `args`, wrapped in `sudo [FLAGS]` when asked.
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = match &self.root {
            None => Command::new(&self.program),
            Some(flags) => {
                let mut c = Command::new("sudo");
                if let Some(flags) = flags {
                    c.args(shlex::split(flags).unwrap_or_else(|| vec![flags.clone()]));
                }
                c.arg(&self.program);
                c
            }
        };
        cmd.args(args);
        cmd
    }

    fn spawn_error(&self, e: std::io::Error) -> Error {
        let missing = e.kind() == std::io::ErrorKind::NotFound
            || e.kind() == std::io::ErrorKind::PermissionDenied;
        if missing && self.root.is_some() {
            // With --root the program we started is sudo, not the tool.
            Error::ToolMissing {
                tool: "sudo".into(),
                hint: SUDO_HINT.into(),
                source: e,
            }
        } else if missing {
            Error::ToolMissing {
                tool: self.name(),
                hint: self.install_hint.to_owned(),
                source: e,
            }
        } else {
            Error::io(format!("cannot start {}", self.name()), e)
        }
    }

    /// Runs the command with stdin/stdout inherited (stdout goes to our stderr with
    /// `stdout_to_stderr`); stderr goes to ours line by line while the last lines are kept. Stop
    /// signals to us meanwhile are forwarded to the tool and escalated (SIGTERM, then SIGKILL)
    /// when it does not stop.
    pub fn run_teeing_stderr(&self, mut cmd: Command) -> Result<Finished> {
        print_command(&cmd, self.verbose);
        if self.stdout_to_stderr {
            use std::os::fd::AsFd;
            let stderr = std::io::stderr()
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| Error::io("duplicating stderr", e))?;
            cmd.stdout(stderr);
        }
        let mut child = cmd
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| self.spawn_error(e))?;
        let tail = child
            .stderr
            .take()
            .map(|stderr| std::thread::spawn(move || tee_tail(stderr)));
        let (status, interrupted) = wait_stopping(&mut child, self.duration)
            .map_err(|e| Error::io(format!("waiting for {}", self.name()), e))?;
        let stderr_tail = tail.and_then(|t| t.join().ok()).unwrap_or_default();
        Ok(Finished {
            status,
            stderr_tail,
            interrupted,
        })
    }

    /// Runs the command and captures its stdout, draining stderr concurrently so the child never
    /// blocks on a full pipe. A non-zero exit is an error carrying the child's stderr.
    pub fn output(&self, mut cmd: Command) -> Result<Vec<u8>> {
        print_command(&cmd, self.verbose);
        let command_line = format!("{cmd:?}");
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| self.spawn_error(e))?;
        let stderr = child.stderr.take().map(|mut s| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = s.read_to_end(&mut buf);
                buf
            })
        });
        let mut stdout = Vec::new();
        if let Some(mut out) = child.stdout.take() {
            out.read_to_end(&mut stdout)
                .map_err(|e| Error::io(format!("reading the output of {}", self.name()), e))?;
        }
        let status = child
            .wait()
            .map_err(|e| Error::io(format!("waiting for {}", self.name()), e))?;
        let stderr = stderr.and_then(|t| t.join().ok()).unwrap_or_default();
        if !status.success() {
            return Err(Error::ToolFailed {
                command: command_line,
                status,
                stderr: String::from_utf8_lossy(&stderr).into_owned(),
            });
        }
        Ok(stdout)
    }
}

/// How a recorder run by [`Tool::run_teeing_stderr`] ended.
#[derive(Debug)]
pub struct Finished {
    /// The exit status of the tool.
    pub status: ExitStatus,
    /// The last lines of its stderr.
    pub stderr_tail: String,
    /// Whether a stop signal reached us while it ran.
    pub interrupted: bool,
}

/// Copies `stderr` to ours line by line and returns its last 20 lines.
fn tee_tail(stderr: impl Read) -> String {
    let mut tail: VecDeque<String> = VecDeque::new();
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::new();
    let mut out = std::io::stderr();
    while let Ok(n) = reader.read_until(b'\n', &mut line) {
        if n == 0 {
            break;
        }
        let _ = out.write_all(&line);
        if tail.len() == 20 {
            tail.pop_front();
        }
        tail.push_back(String::from_utf8_lossy(&line).into_owned());
        line.clear();
    }
    tail.into_iter().collect::<String>()
}

/// How long an external recorder may take to stop after a signal before the next, stronger one:
/// longer than for a launched program, since perf still writes its file after a Ctrl-C.
#[cfg(unix)]
const RECORDER_STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Waits for `child` while catching the stop signals: each is forwarded to it (unless the
/// terminal already sent it; SIGHUP as SIGTERM); a second one, or a child still running 10 s
/// later, escalates (SIGTERM, then SIGKILL). `duration` is a stop request when it is up.
/// Returns its status and whether a stop was requested.
#[cfg(unix)]
fn wait_stopping(
    child: &mut std::process::Child,
    duration: Option<std::time::Duration>,
) -> std::io::Result<(ExitStatus, bool)> {
    use super::stop::{StopRequests, Stopper};
    let mut stop = StopRequests::new(true, None)?.with_duration(duration);
    let mut stopper = Stopper::new(child.id() as i32, RECORDER_STOP_GRACE);
    let mut interrupted = false;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok((status, interrupted || stop.stopped_with(status)));
        }
        while let Some(mut request) = stop.take() {
            interrupted = true;
            // perf handles SIGINT and SIGTERM (it stops its workload and finishes its file),
            // not SIGHUP.
            if request.signal == nix::sys::signal::Signal::SIGHUP {
                request.signal = nix::sys::signal::Signal::SIGTERM;
            }
            stopper.request(request);
        }
        stopper.tick();
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[cfg(not(unix))]
fn wait_stopping(
    child: &mut std::process::Child,
    _duration: Option<std::time::Duration>,
) -> std::io::Result<(ExitStatus, bool)> {
    Ok((child.wait()?, false))
}

/// With `--verbose`, prints the command about to run.
/// A private (0700) temporary directory for an external tool's output file, removed when
/// dropped: never a predictable path another user could have put a symlink at.
pub fn private_dir() -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("flamegraph-")
        .tempdir()
        .map_err(|source| Error::File {
            action: "create a temporary directory in",
            path: std::env::temp_dir(),
            source,
        })
}

pub fn print_command(cmd: &Command, verbose: bool) {
    if verbose {
        eprintln!("flamegraph: running {cmd:?}");
    }
}

/// The signals a stop request may end a program with: those we catch and forward, and the
/// SIGTERM and SIGKILL of escalation.
#[cfg(unix)]
const STOP_SIGNALS: [i32; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGKILL];

/// Whether an exit status means failure. A program (or recorder) that the user stopped
/// (`interrupted`: Ctrl-C, a signal to us) and that died of a stop signal did not fail (as in
/// flamegraph 0.6); killed by a signal nobody sent through us, it did.
pub fn failed(status: ExitStatus, interrupted: bool) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return !(interrupted && STOP_SIGNALS.contains(&sig));
        }
    }
    let _ = interrupted;
    !status.success()
}

/// How a failed program ended, after "the profiled program": `failed (exit status: 3)` or
/// `was killed by signal 15 (SIGTERM)`.
pub fn describe_failure(status: ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            let name = signal_hook::low_level::signal_name(sig).unwrap_or("unknown signal");
            let core = if status.core_dumped() {
                ", core dumped"
            } else {
                ""
            };
            return format!("was killed by signal {sig} ({name}{core})");
        }
    }
    format!("failed ({status})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn signals_fail_unless_we_stopped_the_program() {
        use std::os::unix::process::ExitStatusExt;
        let term = ExitStatus::from_raw(libc::SIGTERM);
        assert!(failed(term, false));
        assert!(!failed(term, true));
        assert!(failed(ExitStatus::from_raw(libc::SIGSEGV), true));
        assert!(failed(ExitStatus::from_raw(3 << 8), true));
        assert!(!failed(ExitStatus::from_raw(0), false));
        assert_eq!(describe_failure(term), "was killed by signal 15 (SIGTERM)");
        assert_eq!(
            describe_failure(ExitStatus::from_raw(3 << 8)),
            "failed (exit status: 3)"
        );
    }
}
