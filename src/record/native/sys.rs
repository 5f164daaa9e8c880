//! Raw kernel ABI: constants, sysctl paths and thin wrappers over the syscalls the recorder uses.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

pub use perf_event_open_sys::bindings::perf_event_attr;

/// `perf_event_attr.type` for hardware events.
pub const PERF_TYPE_HARDWARE: u32 = perf_event_open_sys::bindings::PERF_TYPE_HARDWARE;
/// `perf_event_attr.type` for software events.
pub const PERF_TYPE_SOFTWARE: u32 = perf_event_open_sys::bindings::PERF_TYPE_SOFTWARE;
/// `perf_event_attr.type` for raw PMU events (`rNNNN`).
pub const PERF_TYPE_RAW: u32 = perf_event_open_sys::bindings::PERF_TYPE_RAW;
/// Software event: context switches (fires in the kernel, so it needs kernel access).
pub const PERF_COUNT_SW_CONTEXT_SWITCHES: u64 =
    perf_event_open_sys::bindings::PERF_COUNT_SW_CONTEXT_SWITCHES as u64;
/// `perf_event_attr` (type, config) of a sampled event.
pub fn event_type_config(event: crate::event::Event) -> (u32, u64) {
    use crate::event::Event;
    use perf_event_open_sys::bindings as b;
    let (hw, sw) = (PERF_TYPE_HARDWARE, PERF_TYPE_SOFTWARE);
    let (type_, config) = match event {
        Event::CpuClock => (sw, b::PERF_COUNT_SW_CPU_CLOCK),
        Event::TaskClock => (sw, b::PERF_COUNT_SW_TASK_CLOCK),
        Event::PageFaults => (sw, b::PERF_COUNT_SW_PAGE_FAULTS),
        Event::MinorFaults => (sw, b::PERF_COUNT_SW_PAGE_FAULTS_MIN),
        Event::MajorFaults => (sw, b::PERF_COUNT_SW_PAGE_FAULTS_MAJ),
        Event::ContextSwitches => (sw, b::PERF_COUNT_SW_CONTEXT_SWITCHES),
        Event::CpuMigrations => (sw, b::PERF_COUNT_SW_CPU_MIGRATIONS),
        Event::Cycles => (hw, b::PERF_COUNT_HW_CPU_CYCLES),
        Event::Instructions => (hw, b::PERF_COUNT_HW_INSTRUCTIONS),
        Event::CacheMisses => (hw, b::PERF_COUNT_HW_CACHE_MISSES),
        Event::CacheReferences => (hw, b::PERF_COUNT_HW_CACHE_REFERENCES),
        Event::BranchMisses => (hw, b::PERF_COUNT_HW_BRANCH_MISSES),
        Event::BranchInstructions => (hw, b::PERF_COUNT_HW_BRANCH_INSTRUCTIONS),
        Event::Raw(config) => return (PERF_TYPE_RAW, config),
    };
    (type_, u64::from(config))
}

/// Software event that counts nothing: carries side-band records (context switches).
pub const PERF_COUNT_SW_DUMMY: u64 = perf_event_open_sys::bindings::PERF_COUNT_SW_DUMMY as u64;
/// `perf_event_open` flag: close the fd on exec.
pub const PERF_FLAG_FD_CLOEXEC: libc::c_ulong =
    perf_event_open_sys::bindings::PERF_FLAG_FD_CLOEXEC as libc::c_ulong;

/// Largest user stack a sample can carry: the record size is a u16, minus the header and fields.
pub const MAX_STACK_USER: u32 = 65528;

pub const PARANOID_PATH: &str = "/proc/sys/kernel/perf_event_paranoid";
pub const MAX_SAMPLE_RATE_PATH: &str = "/proc/sys/kernel/perf_event_max_sample_rate";
pub const ONLINE_CPUS_PATH: &str = "/sys/devices/system/cpu/online";

/// Byte offsets in `struct perf_event_mmap_page` of the ring buffer's control words.
pub const MMAP_PAGE_DATA_HEAD: usize = 1024;
pub const MMAP_PAGE_DATA_TAIL: usize = 1032;
pub const MMAP_PAGE_DATA_OFFSET: usize = 1040;
pub const MMAP_PAGE_DATA_SIZE: usize = 1048;

/// Opens one perf event (`perf_event_open(2)`), close-on-exec.
pub fn perf_event_open(attr: &perf_event_attr, pid: i32, cpu: i32) -> io::Result<OwnedFd> {
    let mut attr = *attr;
    // SAFETY: `attr` is a fully initialized perf_event_attr with `size` set; the kernel only reads
    // it (and may write back `size` on E2BIG, into our local copy).
    let fd = unsafe {
        perf_event_open_sys::perf_event_open(&mut attr, pid, cpu, -1, PERF_FLAG_FD_CLOEXEC)
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the syscall returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `PERF_EVENT_IOC_SET_OUTPUT`: send `fd`'s records to `target`'s ring buffer.
pub fn set_output(fd: &OwnedFd, target: &OwnedFd) -> io::Result<()> {
    // SAFETY: both fds are open perf event fds owned by the caller.
    let ret =
        unsafe { perf_event_open_sys::ioctls::SET_OUTPUT(fd.as_raw_fd(), target.as_raw_fd()) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `PERF_EVENT_IOC_ENABLE`.
pub fn enable(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: `fd` is an open perf event fd; ENABLE takes no pointer argument.
    let ret = unsafe { perf_event_open_sys::ioctls::ENABLE(fd.as_raw_fd(), 0) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `PERF_EVENT_IOC_DISABLE`.
pub fn disable(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: `fd` is an open perf event fd; DISABLE takes no pointer argument.
    let ret = unsafe { perf_event_open_sys::ioctls::DISABLE(fd.as_raw_fd(), 0) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads a sysctl file holding one integer.
pub fn read_sysctl(path: &str) -> Option<i64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The current `CLOCK_MONOTONIC` time in nanoseconds, the clock samples are stamped with.
/// Bytes of perf ring buffer each of `rings` buffers (one per CPU) may lock for an unprivileged
/// user, or `None` for root, whose buffers are not limited. The kernel allows
/// `perf_event_mlock_kb` per online CPU, then charges the rest to `RLIMIT_MEMLOCK`.
pub fn unprivileged_ring_budget(rings: usize) -> Option<usize> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return None;
    }
    let kb = read_sysctl("/proc/sys/kernel/perf_event_mlock_kb").unwrap_or(516);
    let per_cpu = usize::try_from(kb.max(8)).unwrap_or(516) * 1024;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass and has no other effect.
    let memlock = if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } == 0 {
        // Leave a quarter of it for the rest of the process.
        usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX) / 4 * 3
    } else {
        0
    };
    Some(per_cpu.saturating_add(memlock / rings.max(1)))
}

pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write to; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// The nice value of the thread draining the rings while it records, where the system allows it
/// (root, or `CAP_SYS_NICE`). More busy threads than CPUs starve a thread at nice 0 now and
/// then: 264 of 1.02 M samples were lost in a 10-minute, 4-thread soak on 2 CPUs.
const DRAIN_NICE: i32 = -10;

/// The calling thread at [`DRAIN_NICE`] for as long as this lives, then back to its own nice
/// value. Only the calling thread changes (Linux's `setpriority` on thread id 0); take it after
/// forking the profiled program, which would inherit it.
pub struct DrainPriority {
    previous: Option<i32>,
}

impl DrainPriority {
    /// Raises the calling thread's priority if allowed; silently keeps it otherwise.
    pub fn raise() -> Self {
        nix::errno::Errno::clear();
        // SAFETY: plain syscalls on the calling thread (`who` 0), no memory passed.
        let previous = unsafe { libc::getpriority(libc::PRIO_PROCESS as _, 0) };
        let known = previous != -1 || nix::errno::Errno::last_raw() == 0;
        // SAFETY: as above.
        let raised = known
            && previous > DRAIN_NICE
            && unsafe { libc::setpriority(libc::PRIO_PROCESS as _, 0, DRAIN_NICE) } == 0;
        DrainPriority {
            previous: raised.then_some(previous),
        }
    }
}

impl Drop for DrainPriority {
    fn drop(&mut self) {
        if let Some(previous) = self.previous {
            // SAFETY: as in `raise`; lowering one's own priority is always allowed.
            unsafe { libc::setpriority(libc::PRIO_PROCESS as _, 0, previous) };
        }
    }
}

/// The system page size.
pub fn page_size() -> usize {
    // SAFETY: sysconf has no memory effects.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096).max(4096)
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (many fds when attaching). Best effort;
/// returns the soft limit now in force (`u64::MAX` for unlimited, 0 if it cannot be read).
pub fn raise_nofile_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit to fill and then pass back.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    limit.rlim_cur
}

/// Whether an error means this process (EMFILE) or the system (ENFILE) ran out of file
/// descriptors.
pub fn is_out_of_fds(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// A user to run the launched program as (the invoking user when the recorder runs under sudo):
/// its ids and supplementary groups, gathered before the fork so that switching to them in the
/// child is async-signal-safe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
    /// Supplementary groups; just `gid` when the user has no passwd entry.
    pub groups: Vec<libc::gid_t>,
}

impl Credentials {
    /// The credentials of `uid` with primary group `gid`, with the user's supplementary groups
    /// from the group database.
    pub fn of_user(uid: u32, gid: u32) -> Credentials {
        let groups = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .and_then(|user| {
                let name = std::ffi::CString::new(user.name).ok()?;
                nix::unistd::getgrouplist(&name, nix::unistd::Gid::from_raw(gid)).ok()
            })
            .map(|groups| groups.into_iter().map(|g| g.as_raw()).collect())
            .unwrap_or_else(|| vec![gid]);
        Credentials { uid, gid, groups }
    }

    /// Switches the calling process to these credentials (groups, then gid, then uid): the
    /// errno of the first failing call.
    ///
    /// # Safety
    /// Meant for a freshly forked child before exec: only async-signal-safe syscalls.
    pub unsafe fn apply(&self) -> Result<(), i32> {
        // SAFETY: `groups` is a live vector of gid_t of the given length; setgid and setuid take
        // plain integers.
        unsafe {
            if libc::setgroups(self.groups.len(), self.groups.as_ptr()) != 0
                || libc::setgid(self.gid) != 0
                || libc::setuid(self.uid) != 0
            {
                return Err(*libc::__errno_location());
            }
        }
        Ok(())
    }
}

/// Parses a CPU list like `0-3,5,7-8` (the format of `/sys/devices/system/cpu/online`).
pub fn parse_cpu_list(text: &str) -> Option<Vec<u32>> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((first, last)) => {
                let (first, last): (u32, u32) = (first.parse().ok()?, last.parse().ok()?);
                if last < first || last - first > 65536 {
                    return None;
                }
                cpus.extend(first..=last);
            }
            None => cpus.push(part.parse().ok()?),
        }
    }
    Some(cpus)
}

/// The online CPUs.
pub fn online_cpus() -> io::Result<Vec<u32>> {
    let text = std::fs::read_to_string(ONLINE_CPUS_PATH)?;
    parse_cpu_list(&text)
        .filter(|cpus| !cpus.is_empty())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("cannot parse {ONLINE_CPUS_PATH}: {:?}", text.trim()),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-1\n"), Some(vec![0, 1]));
        assert_eq!(parse_cpu_list("0,2-4,7"), Some(vec![0, 2, 3, 4, 7]));
        assert_eq!(parse_cpu_list("0"), Some(vec![0]));
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("x"), None);
        assert!(!online_cpus().unwrap().is_empty());
    }
}
