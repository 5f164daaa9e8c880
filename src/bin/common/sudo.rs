//! `--root` with the native backend: the recorder runs this same binary again under
//! `sudo [FLAGS] -- EXE OPTIONS --sudo-child [-- COMMAND]`. That child records with root's
//! privileges, runs the profiled program as the invoking user (`SUDO_UID`/`SUDO_GID`), and gives
//! the output file back to that user, so only the recorder is privileged and no file is left
//! owned by root.
//!
//! Limits: the program sees the environment sudo passes (sudo resets it by default: `PATH`
//! becomes sudo's `secure_path`, which is why the program's path is resolved before sudo runs).

use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flamegraph::options::{Backend, Config, Workload};

/// The marker argument of the child run under sudo (a hidden option of both binaries).
const MARKER: &str = "--sudo-child";

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Whether `config` asks for the native recorder to run under sudo: `--root`, the native
/// backend recording something (a perf.data file needs no privileges), and not root already
/// (root records directly).
pub fn needed(config: &Config) -> bool {
    config.record.root.is_some()
        && config.record.backend == Backend::Native
        && !matches!(config.record.workload, Workload::PerfData(_))
        && !is_root()
}

/// The command line arguments before the first `--` (the options), without the program name.
pub fn options_from_args() -> Vec<OsString> {
    std::env::args_os()
        .skip(1)
        .take_while(|arg| arg != "--")
        .collect()
}

/// The program to launch, with its path resolved here, where the user's `PATH` still holds.
pub fn resolved_command(config: &Config) -> anyhow::Result<Option<Vec<OsString>>> {
    let Workload::Command(command) = &config.record.workload else {
        return Ok(None);
    };
    let mut command = command.clone();
    if let Some(program) = command.first_mut() {
        *program = flamegraph::run::check_runnable(program)?.into_os_string();
    }
    Ok(Some(command))
}

/// Runs this binary again under `sudo [FLAGS] --` with `options`, the marker and `command`, and
/// returns its exit code. SIGTERM and SIGHUP are passed on to sudo (which relays them to the
/// recorder); SIGINT is not, as a Ctrl-C already reached sudo's whole process group.
pub fn rerun(
    config: &Config,
    options: &[OsString],
    command: Option<&[OsString]>,
) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe()
        .map_err(|e| flamegraph::Error::io("cannot find this program's path for sudo", e))?;
    let mut cmd = Command::new("sudo");
    if let Some(Some(flags)) = &config.record.root {
        cmd.args(shlex::split(flags).unwrap_or_else(|| vec![flags.clone()]));
    }
    cmd.arg("--").arg(exe).args(options).arg(MARKER);
    if let Some(command) = command {
        cmd.arg("--").args(command);
    }
    if config.record.verbose {
        eprintln!("flamegraph: running {cmd:?}");
    }
    let signals: Vec<(i32, Arc<AtomicBool>)> = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP]
        .into_iter()
        .map(|sig| (sig, Arc::new(AtomicBool::new(false))))
        .collect();
    let ids: Vec<_> = signals
        .iter()
        .filter_map(|(sig, flag)| signal_hook::flag::register(*sig, Arc::clone(flag)).ok())
        .collect();
    let status = wait_forwarding(cmd, &signals);
    for id in ids {
        signal_hook::low_level::unregister(id);
    }
    let status = status?;
    if status.success() && config.output.open {
        flamegraph::sink::open_in_viewer(&config.output.first().path)?;
    }
    if let Some(code) = status.code() {
        return Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)));
    }
    anyhow::bail!("the recorder run under sudo ended with {status}")
}

fn wait_forwarding(
    mut cmd: Command,
    signals: &[(i32, Arc<AtomicBool>)],
) -> anyhow::Result<std::process::ExitStatus> {
    let mut child = cmd.spawn().map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            flamegraph::Error::ToolMissing {
                tool: "sudo".into(),
                hint: flamegraph::record::external::SUDO_HINT.into(),
                source,
            }
        } else {
            flamegraph::Error::io("cannot start sudo", source)
        }
    })?;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        for (sig, flag) in signals {
            if flag.swap(false, Ordering::SeqCst) && *sig != libc::SIGINT {
                // SAFETY: kill(2) has no memory-safety preconditions; the pid is our child's.
                unsafe { libc::kill(child.id() as libc::pid_t, *sig) };
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// In the child run under sudo (the marker given, running as root): the invoking user from
/// `SUDO_UID` and `SUDO_GID`.
pub fn invoking_user() -> Option<(u32, u32)> {
    if !is_root() {
        return None;
    }
    let id = |name: &str| std::env::var(name).ok()?.parse::<u32>().ok();
    Some((id("SUDO_UID")?, id("SUDO_GID")?))
}

/// Gives a file this run wrote back to `user`: only a regular file now owned by root, and never
/// through a symbolic link. Best effort, with a note when it fails.
pub fn give_back(path: &Path, (uid, gid): (u32, u32)) {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    if !meta.is_file() || meta.uid() != 0 {
        return;
    }
    if let Err(e) = std::os::unix::fs::lchown(path, Some(uid), Some(gid)) {
        eprintln!(
            "flamegraph: note: {} stays owned by root: cannot change its owner ({e})",
            path.display()
        );
    }
}
