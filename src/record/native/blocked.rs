//! Reading a blocked thread's user stack from outside, for off-CPU stacks without kernel access
//! (`perf_event_paranoid` 2): `/proc/PID/task/TID/syscall` gives its user stack and instruction
//! pointers while it is off the CPU, `process_vm_readv` copies its stack from there up.
//!
//! Both need ptrace access to the thread (our own launched program has it). The read must follow
//! the switch-out promptly: once the thread runs again the file says `running` and there is
//! nothing to read.

use std::io::Read;

/// Bytes read from the `syscall` file at most (a line of 9 hex words is ~180 bytes).
const SYSCALL_FILE_MAX: u64 = 512;

/// The user instruction and stack pointer of a thread that is not running, from
/// `/proc/PID/task/TID/syscall` (`nr arg1..arg6 sp pc` while in a system call, `-1 sp pc` when
/// blocked elsewhere). `None` while it runs, or if the file cannot be read.
pub fn ip_sp(pid: u32, tid: u32) -> Option<(u64, u64)> {
    parse_syscall(&read_syscall_file(pid, tid)?)
}

/// The text of `/proc/PID/task/TID/syscall` (bounded), or `None` if it cannot be read.
fn read_syscall_file(pid: u32, tid: u32) -> Option<String> {
    let path = format!("/proc/{pid}/task/{tid}/syscall");
    let file = std::fs::File::open(path).ok()?;
    let mut text = String::new();
    file.take(SYSCALL_FILE_MAX).read_to_string(&mut text).ok()?;
    Some(text)
}

/// Whether this user may read process `pid`'s blocked stacks: the `syscall` file and
/// `process_vm_readv` both need ptrace access to it (same user and dumpable, and a Yama
/// `ptrace_scope` that allows it, or root).
pub fn may_read(pid: u32) -> bool {
    read_syscall_file(pid, pid).is_some()
}

/// Parses a `/proc/PID/task/TID/syscall` line into (pc, sp).
fn parse_syscall(text: &str) -> Option<(u64, u64)> {
    let words: Vec<&str> = text.split_whitespace().collect();
    // "running", or a thread in no state to tell.
    if words.len() < 3 {
        return None;
    }
    let hex = |w: &str| u64::from_str_radix(w.strip_prefix("0x")?, 16).ok();
    let sp = hex(words[words.len() - 2])?;
    let pc = hex(words[words.len() - 1])?;
    (sp != 0 && pc != 0).then_some((pc, sp))
}

/// Copies up to `out.len()` bytes of `pid`'s memory from `address` into `out`, stopping at the
/// first unreadable page; returns the number of bytes read (0 on any error).
pub fn read_memory(pid: u32, address: u64, out: &mut [u8]) -> usize {
    try_read_memory(pid, address, out).unwrap_or(0)
}

/// [`read_memory`], telling an unreadable address (`Ok(0)`) from a process that cannot be
/// read at all (no ptrace access: `EPERM`; gone: `ESRCH`), which is an error.
pub fn try_read_memory(pid: u32, address: u64, out: &mut [u8]) -> std::io::Result<usize> {
    let local = libc::iovec {
        iov_base: out.as_mut_ptr().cast(),
        iov_len: out.len(),
    };
    let remote = libc::iovec {
        iov_base: address as usize as *mut libc::c_void,
        iov_len: out.len(),
    };
    // SAFETY: `local` describes `out`, a writable buffer we own for the whole call; the remote
    // iovec is only read by the kernel, in the other process's address space, with its checks.
    let read = unsafe { libc::process_vm_readv(pid as libc::pid_t, &local, 1, &remote, 1, 0) };
    match usize::try_from(read) {
        Ok(n) => Ok(n),
        Err(_) => match std::io::Error::last_os_error() {
            e if matches!(e.raw_os_error(), Some(libc::EPERM | libc::ESRCH)) => Err(e),
            _ => Ok(0),
        },
    }
}

/// The samples' clock (`CLOCK_MONOTONIC`, see `perf_event.rs`), in nanoseconds.
pub fn monotonic_now() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| (t.tv_sec() as u64).saturating_mul(1_000_000_000) + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// A blocked thread's state: pc, sp and up to `max` bytes of its stack from sp up, or `None` if
/// it runs again (or vanished). The copy ends where the stack's mapping ends.
pub fn capture(pid: u32, tid: u32, max: usize) -> Option<(u64, u64, Vec<u8>)> {
    let (ip, sp) = ip_sp(pid, tid)?;
    Some(read_stack(pid, ip, sp, max))
}

/// Like [`capture`], for a thread waiting in a system call only (`-1 sp pc` is a thread
/// preempted in user code: runnable, not waiting).
fn capture_waiting(pid: u32, tid: u32, max: usize) -> Option<(u64, u64, Vec<u8>)> {
    let text = read_syscall_file(pid, tid)?;
    if text.trim_start().starts_with('-') {
        return None;
    }
    let (ip, sp) = parse_syscall(&text)?;
    Some(read_stack(pid, ip, sp, max))
}

/// Attach mode: a switch-out record at `time`, with its stack, for each thread of `pid` that is
/// waiting in a system call when recording starts, so that a thread blocked since before the
/// attach (a server's idle loop) shows its wait from there, not only waits that start later.
pub fn synthesize_waiting(
    pid: u32,
    max: usize,
    time: u64,
    emit: &mut dyn FnMut(crate::perf::Record<'_>),
) {
    for tid in super::attach::threads(pid).unwrap_or_default() {
        let Some((ip, sp, stack)) = capture_waiting(pid, tid, max) else {
            continue;
        };
        emit(crate::perf::Record::Switch(crate::perf::Switch {
            pid,
            tid,
            time,
            out: true,
            preempt: false,
            blocked: Some(crate::perf::BlockedStack {
                ip,
                sp,
                stack: &stack,
            }),
            sample: None,
        }));
    }
}

/// `pid`'s stack from `sp` up, at most `max` bytes, with the state (`ip`, `sp`) it goes with.
fn read_stack(pid: u32, ip: u64, sp: u64, max: usize) -> (u64, u64, Vec<u8>) {
    let mut stack = vec![0u8; max];
    let mut filled = read_memory(pid, sp, &mut stack);
    if filled == 0 {
        // A copy crossing the mapping's end may fail as a whole: retry up to the page's end.
        let page = super::sys::page_size() as u64;
        let to_page_end = (page - sp % page) as usize;
        filled = read_memory(pid, sp, &mut stack[..to_page_end.min(max)]);
    }
    stack.truncate(filled);
    // Held until delivery (a few ms): keep only what was read.
    stack.shrink_to_fit();
    (ip, sp, stack)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_lines() {
        let blocked = "230 0x1 0x0 0x7ffd2f0 0x0 0x0 0x0 0x7ffd1c8 0x7f12345\n";
        assert_eq!(parse_syscall(blocked), Some((0x7f12345, 0x7ffd1c8)));
        assert_eq!(
            parse_syscall("-1 0x7ffd1c8 0x401000\n"),
            Some((0x401000, 0x7ffd1c8))
        );
        assert_eq!(parse_syscall("running\n"), None);
        assert_eq!(parse_syscall(""), None);
    }

    #[test]
    fn reads_own_memory() {
        let data = [7u8; 64];
        let mut out = [0u8; 64];
        let n = read_memory(std::process::id(), data.as_ptr() as u64, &mut out);
        assert_eq!(n, 64);
        assert_eq!(out, data);
    }
}
