//! Starting the target program: fork a child that waits on a pipe until its perf events are
//! opened, then execs; an exec failure comes back through a close-on-exec pipe as a clean error.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::prctl::set_pdeathsig;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{dup2_stdout, fork, getpid, getppid, pipe2, read, write, ForkResult, Pid};

use super::sys::Credentials;
use super::NativeError;

/// The byte that lets the child exec; any other byte (or EOF) makes it exit. An explicit abort
/// byte matters because other children forked meanwhile may hold a copy of the pipe's write end.
const GO: u8 = 1;
const ABORT: u8 = 0;

/// A forked child blocked before its exec.
pub struct Launched {
    pub pid: i32,
    program: String,
    /// Writing a byte here lets the child exec; closing it without writing makes it exit.
    go: Option<OwnedFd>,
    /// Readable end of the close-on-exec pipe: EOF means the exec succeeded, else an errno.
    exec_status: OwnedFd,
}

fn exec_error(program: &OsStr, source: io::Error) -> NativeError {
    NativeError::Exec {
        program: program.to_string_lossy().into_owned(),
        source,
    }
}

fn c_string(bytes: &[u8], program: &OsStr) -> Result<CString, NativeError> {
    CString::new(bytes).map_err(|_| {
        exec_error(
            program,
            io::Error::new(io::ErrorKind::InvalidInput, "argument contains a NUL byte"),
        )
    })
}

/// Forks a child that will exec `program args...` once [`Launched::release`] is called, as the
/// user `run_as` names when given (the child switches to it just before exec); with
/// `stdout_to_stderr` its stdout is our stderr (our stdout carries the graph for `-o -`).
///
/// The child gets SIGKILL when the calling thread exits (PR_SET_PDEATHSIG), so it never outlives
/// a killed profiler: call this from a thread that lives as long as the recording.
pub fn spawn_stopped(
    program: &OsStr,
    args: &[OsString],
    run_as: Option<&Credentials>,
    stdout_to_stderr: bool,
) -> Result<Launched, NativeError> {
    let path = crate::record::program::find(program)
        .map_err(|problem| exec_error(program, problem.io_error()))?;
    let c_path = c_string(path.as_os_str().as_bytes(), program)?;
    let mut c_args = vec![c_string(program.as_bytes(), program)?];
    for arg in args {
        c_args.push(c_string(arg.as_bytes(), program)?);
    }
    let mut argv: Vec<*const libc::c_char> = c_args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let pipe = || pipe2(OFlag::O_CLOEXEC).map_err(|e| exec_error(program, e.into()));
    let (go_read, go_write) = pipe()?;
    let (status_read, status_write) = pipe()?;
    let parent = getpid();
    // SAFETY: after fork the child only calls async-signal-safe functions (close, prctl, getppid,
    // read, dup2, execv, write, _exit) on data prepared before the fork, so a multithreaded parent is
    // fine.
    match unsafe { fork() } {
        Err(e) => Err(exec_error(program, e.into())),
        Ok(ForkResult::Child) => {
            drop(go_write);
            drop(status_read);
            // SAFETY: see above; this never returns.
            unsafe {
                child(
                    parent,
                    go_read,
                    status_write,
                    &c_path,
                    &argv,
                    run_as,
                    stdout_to_stderr,
                )
            }
        }
        Ok(ForkResult::Parent { child }) => Ok(Launched {
            pid: child.as_raw(),
            program: program.to_string_lossy().into_owned(),
            go: Some(go_write),
            exec_status: status_read,
        }),
    }
}

/// The child between fork and exec: dies with its parent, waits for the go byte, execs.
///
/// # Safety
/// Must only run in a freshly forked child; uses async-signal-safe calls only.
unsafe fn child(
    parent: Pid,
    go_read: OwnedFd,
    status_write: OwnedFd,
    path: &CString,
    argv: &[*const libc::c_char],
    run_as: Option<&Credentials>,
    stdout_to_stderr: bool,
) -> ! {
    // Two libc calls remain here: nix's execv collects argv into a new Vec (allocating is not
    // async-signal-safe after a fork) and nix has no _exit (std's exit runs atexit handlers).
    // SAFETY: _exit only ends the process.
    let fail = || -> ! { unsafe { libc::_exit(127) } };
    // The parent may have died before prctl: then the signal never comes.
    if set_pdeathsig(Signal::SIGKILL).is_err() || getppid() != parent {
        fail();
    }
    let mut byte = [0u8];
    loop {
        match read(&go_read, &mut byte) {
            Ok(1) if byte[0] == GO => break,
            Err(Errno::EINTR) => continue,
            _ => fail(),
        }
    }
    if stdout_to_stderr && dup2_stdout(std::io::stderr()).is_err() {
        fail();
    }
    // SAFETY: `apply` only makes the set*id syscalls on credentials gathered before the fork;
    // `path` and `argv` (null-terminated) outlive execv, which returns only on error.
    let errno = match run_as.map_or(Ok(()), |c| unsafe { c.apply() }) {
        Ok(()) => {
            unsafe { libc::execv(path.as_ptr(), argv.as_ptr()) };
            Errno::last_raw()
        }
        Err(errno) => errno,
    }
    .to_ne_bytes();
    let _ = write(&status_write, &errno);
    fail()
}

impl Launched {
    /// Lets the child exec; returns the exec error if it failed (the child is then reaped).
    pub fn release(mut self) -> Result<(), NativeError> {
        self.send(GO);
        let mut errno = [0u8; 4];
        let mut got = 0;
        while got < errno.len() {
            match read(&self.exec_status, &mut errno[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(Errno::EINTR) => {}
                Err(_) => break,
            }
        }
        if got == 0 {
            return Ok(());
        }
        let _ = wait(self.pid, false);
        let source = io::Error::from_raw_os_error(i32::from_ne_bytes(errno));
        Err(NativeError::Exec {
            program: std::mem::take(&mut self.program),
            source,
        })
    }

    fn send(&mut self, byte: u8) {
        if let Some(go) = self.go.take() {
            let _ = write(&go, &[byte]);
        }
    }

    /// Makes the child exit without exec'ing, and reaps it.
    pub fn abort(mut self) {
        self.send(ABORT);
        let _ = wait(self.pid, false);
    }
}

/// `waitpid` on our child: `Ok(None)` if `nohang` and it is still running.
pub fn wait(pid: i32, nohang: bool) -> io::Result<Option<ExitStatus>> {
    let flags = nohang.then_some(WaitPidFlag::WNOHANG);
    loop {
        return match waitpid(Pid::from_raw(pid), flags) {
            Ok(WaitStatus::Exited(_, code)) => Ok(Some(ExitStatus::from_raw((code & 0xff) << 8))),
            Ok(WaitStatus::Signaled(_, signal, core)) => {
                let core = if core { 0x80 } else { 0 };
                Ok(Some(ExitStatus::from_raw(signal as i32 | core)))
            }
            Ok(_) => Ok(None),
            Err(Errno::EINTR) => continue,
            Err(e) => Err(e.into()),
        };
    }
}
