//! System-wide recording (`-a`): who may do it, and the processes already running when it
//! starts, described by synthesized COMM and MMAP2 records as in attach mode.
//!
//! The events are opened with pid -1 on every CPU: every task's samples, and the MMAP2, COMM,
//! FORK and EXIT records of every task, arrive in the CPUs' rings; processes started during the
//! recording are thus described by the kernel itself.

use std::io;

use super::attach;
use super::sys;
use crate::perf::Record;

/// The `CapEff` bit of `CAP_SYS_ADMIN`.
const CAP_SYS_ADMIN: u32 = 21;
/// The `CapEff` bit of `CAP_PERFMON` (Linux 5.8 and later).
const CAP_PERFMON: u32 = 38;

/// Why this process may record every process, or why not: the kernel's rule for a CPU-wide
/// event (`perf_event_open` with pid -1): `perf_event_paranoid` <= 0, or CAP_PERFMON (or
/// CAP_SYS_ADMIN, which root has).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Permission {
    /// Root, CAP_PERFMON or CAP_SYS_ADMIN.
    Privileged,
    /// `perf_event_paranoid` is 0 or below.
    Paranoid(i64),
    /// Neither: the paranoid level, as read (`"unknown"` if unreadable).
    Denied(String),
}

/// Whether this process may record system-wide (see [`Permission`]).
pub fn permission() -> Permission {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if has_capability(&status, CAP_PERFMON) || has_capability(&status, CAP_SYS_ADMIN) {
        return Permission::Privileged;
    }
    match sys::read_sysctl(sys::PARANOID_PATH) {
        Some(level) if level <= 0 => Permission::Paranoid(level),
        Some(level) => Permission::Denied(level.to_string()),
        None => Permission::Denied("unknown".into()),
    }
}

/// Whether the `CapEff` line of a `/proc/PID/status` text has capability bit `cap`.
fn has_capability(status: &str, cap: u32) -> bool {
    let effective = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    effective & (1 << cap) != 0
}

/// The processes running now (numeric entries of `/proc`), pid 0 (the idle task) never
/// among them.
pub fn processes() -> io::Result<Vec<u32>> {
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&pid| pid != 0)
        .collect();
    pids.sort_unstable();
    Ok(pids)
}

/// Calls `emit` with the COMM records of every thread and the MMAP2 records of every
/// executable mapping of every running process (kernel threads have names only). Processes
/// that exit meanwhile are skipped.
pub fn synthesize(emit: &mut dyn FnMut(Record<'_>)) {
    for pid in processes().unwrap_or_default() {
        attach::synthesize(pid, emit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_from_status() {
        let status = "Name:\tx\nCapEff:\t000001ffffffffff\n";
        assert!(has_capability(status, CAP_PERFMON));
        assert!(has_capability(status, CAP_SYS_ADMIN));
        let perfmon_only = format!("CapEff:\t{:016x}\n", 1u64 << CAP_PERFMON);
        assert!(has_capability(&perfmon_only, CAP_PERFMON));
        assert!(!has_capability(&perfmon_only, CAP_SYS_ADMIN));
        assert!(!has_capability("CapEff:\t0000000000000000\n", CAP_PERFMON));
        assert!(!has_capability("garbage", CAP_PERFMON));
    }

    #[test]
    fn running_processes_include_ours_not_the_idle_task() {
        let pids = processes().unwrap();
        assert!(pids.contains(&std::process::id()));
        assert!(!pids.contains(&0));
    }
}
