//! Starting the target program: fork a child that waits on a pipe until its perf events are
//! opened, then execs; an exec failure comes back through a close-on-exec pipe as a clean error.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;

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

/// Finds `program` like `execvp`: as given if it contains a slash, else in `$PATH`.
fn resolve(program: &OsStr) -> io::Result<PathBuf> {
    if program.as_bytes().contains(&b'/') {
        return Ok(PathBuf::from(program));
    }
    if program.is_empty() {
        return Err(io::Error::from_raw_os_error(libc::ENOENT));
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))
}

fn is_executable(path: &Path) -> bool {
    let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c_path` is a valid NUL-terminated string; access only reads it.
    let ok = unsafe { libc::access(c_path.as_ptr(), libc::X_OK) } == 0;
    ok && path.is_file()
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two fds pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both fds are new and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
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
pub fn spawn_stopped(
    program: &OsStr,
    args: &[OsString],
    run_as: Option<&Credentials>,
    stdout_to_stderr: bool,
) -> Result<Launched, NativeError> {
    let path = resolve(program).map_err(|e| exec_error(program, e))?;
    let c_path = c_string(path.as_os_str().as_bytes(), program)?;
    let mut c_args = vec![c_string(program.as_bytes(), program)?];
    for arg in args {
        c_args.push(c_string(arg.as_bytes(), program)?);
    }
    let mut argv: Vec<*const libc::c_char> = c_args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let (go_read, go_write) = pipe().map_err(|e| exec_error(program, e))?;
    let (status_read, status_write) = pipe().map_err(|e| exec_error(program, e))?;
    // SAFETY: after fork the child only calls async-signal-safe functions (close, read, execv,
    // write, _exit) on data prepared before the fork, so a multithreaded parent is fine.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(exec_error(program, io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: see above; this never returns.
        unsafe {
            child(
                &go_read,
                &go_write,
                &status_read,
                &status_write,
                &c_path,
                &argv,
                run_as,
                stdout_to_stderr,
            );
        }
    }
    Ok(Launched {
        pid,
        program: program.to_string_lossy().into_owned(),
        go: Some(go_write),
        exec_status: status_read,
    })
}

/// The child between fork and exec.
///
/// # Safety
/// Must only run in a freshly forked child; uses async-signal-safe calls only.
unsafe fn child(
    go_read: &OwnedFd,
    go_write: &OwnedFd,
    status_read: &OwnedFd,
    status_write: &OwnedFd,
    path: &CString,
    argv: &[*const libc::c_char],
    run_as: Option<&Credentials>,
    stdout_to_stderr: bool,
) -> ! {
    // SAFETY: closing our copies of the parent's pipe ends, reading one byte into a local, dup2,
    // and exec/write/_exit with pointers that stay valid: all async-signal-safe.
    unsafe {
        libc::close(go_write.as_raw_fd());
        libc::close(status_read.as_raw_fd());
        let mut byte = 0u8;
        loop {
            let n = libc::read(go_read.as_raw_fd(), (&mut byte as *mut u8).cast(), 1);
            if n == 1 && byte == GO {
                break;
            }
            if n == 1 {
                libc::_exit(127);
            }
            if n < 0 && *libc::__errno_location() == libc::EINTR {
                continue;
            }
            libc::_exit(127);
        }
        if stdout_to_stderr {
            libc::dup2(libc::STDERR_FILENO, libc::STDOUT_FILENO);
        }
        let errno = match run_as.map_or(Ok(()), |c| c.apply()) {
            Ok(()) => {
                libc::execv(path.as_ptr(), argv.as_ptr());
                *libc::__errno_location()
            }
            Err(errno) => errno,
        }
        .to_ne_bytes();
        libc::write(status_write.as_raw_fd(), errno.as_ptr().cast(), errno.len());
        libc::_exit(127)
    }
}

impl Launched {
    /// Lets the child exec; returns the exec error if it failed (the child is then reaped).
    pub fn release(mut self) -> Result<(), NativeError> {
        self.send(GO);
        let mut errno = [0u8; 4];
        let mut got = 0;
        while got < errno.len() {
            // SAFETY: reading into the unfilled part of a local buffer.
            let n = unsafe {
                libc::read(
                    self.exec_status.as_raw_fd(),
                    errno[got..].as_mut_ptr().cast(),
                    errno.len() - got,
                )
            };
            match n {
                0 => break,
                n if n > 0 => got += n as usize,
                _ if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
                _ => break,
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
            // SAFETY: writing one byte from a valid local to a pipe we own.
            unsafe { libc::write(go.as_raw_fd(), (&byte as *const u8).cast(), 1) };
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
    let flags = if nohang { libc::WNOHANG } else { 0 };
    loop {
        let mut status = 0;
        // SAFETY: `status` is a valid int to write the wait status to.
        let ret = unsafe { libc::waitpid(pid, &mut status, flags) };
        if ret == pid {
            return Ok(Some(ExitStatus::from_raw(status)));
        }
        if ret == 0 {
            return Ok(None);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}
