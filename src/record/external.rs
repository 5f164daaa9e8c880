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
    /// `stdout_to_stderr`); stderr goes to ours line by line while the last lines are kept.
    /// Returns the exit status and that tail.
    pub fn run_teeing_stderr(&self, mut cmd: Command) -> Result<(ExitStatus, String)> {
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
        let tail = child.stderr.take().map(|stderr| {
            std::thread::spawn(move || {
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
            })
        });
        let status = child
            .wait()
            .map_err(|e| Error::io(format!("waiting for {}", self.name()), e))?;
        let tail = tail.and_then(|t| t.join().ok()).unwrap_or_default();
        Ok((status, tail))
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

/// With `--verbose`, prints the command about to run.
pub fn print_command(cmd: &Command, verbose: bool) {
    if verbose {
        eprintln!("flamegraph: running {cmd:?}");
    }
}

/// Whether an exit status means failure rather than an interruption by the user: being killed by
/// SIGINT or SIGTERM is how Ctrl-C ends a profile, not an error (as in flamegraph 0.6).
pub fn failed(status: ExitStatus) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return sig != libc::SIGINT && sig != libc::SIGTERM;
        }
    }
    !status.success()
}
