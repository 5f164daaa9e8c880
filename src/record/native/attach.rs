//! Attaching to running processes: their threads from `/proc`, and synthesized COMM and MMAP2
//! records describing what existed before recording started, so consumers see one uniform stream.

use std::io;

use crate::perf::{misc, Comm, Mmap2, MmapFileId, Record};

/// The thread ids of process `pid`.
pub fn threads(pid: u32) -> io::Result<Vec<u32>> {
    let mut tids = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        if let Some(tid) = entry?.file_name().to_str().and_then(|n| n.parse().ok()) {
            tids.push(tid);
        }
    }
    tids.sort_unstable();
    Ok(tids)
}

/// Why the kernel refuses this user perf events on another process, read from `/proc`: the
/// checks of `ptrace_may_access` that `perf_event_open` applies to a target thread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessProblem {
    /// The process runs as another user.
    OtherUser { uid: u32 },
    /// Its real, effective and saved ids differ (a setuid or setgid program), or its group ids
    /// are not ours.
    SetId { uids: [u32; 3], gids: [u32; 3] },
    /// Its ids are ours but it is not dumpable (it changed credentials, or called
    /// `prctl(PR_SET_DUMPABLE, 0)`): the files in `/proc/PID` then belong to root.
    NotDumpable,
}

impl std::fmt::Display for AccessProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AccessProblem::OtherUser { uid } => write!(f, "it is owned by another user (uid {uid})"),
            AccessProblem::SetId { uids, gids } => write!(
                f,
                "it runs a setuid or setgid program (uids {} {} {}, gids {} {} {})",
                uids[0], uids[1], uids[2], gids[0], gids[1], gids[2]
            ),
            AccessProblem::NotDumpable => write!(
                f,
                "it is not dumpable (it changed its credentials or called prctl(PR_SET_DUMPABLE, 0))"
            ),
        }
    }
}

/// What keeps this user from profiling thread or process `pid`, or `None` when `/proc` shows no
/// such reason (we are root, the ids match and it is dumpable, or it is gone).
pub fn access_problem(pid: u32) -> Option<AccessProblem> {
    // SAFETY: getuid, getgid and geteuid have no preconditions and cannot fail.
    let (uid, gid, euid) = unsafe { (libc::getuid(), libc::getgid(), libc::geteuid()) };
    if euid == 0 {
        return None;
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let ids = |key: &str| -> Option<[u32; 3]> {
        let line = status.lines().find_map(|l| l.strip_prefix(key))?;
        let mut values = line.split_whitespace().map(|v| v.parse::<u32>().ok());
        Some([values.next()??, values.next()??, values.next()??])
    };
    let (uids, gids) = (ids("Uid:")?, ids("Gid:")?);
    if uids.iter().all(|&u| u == uids[0]) && uids[0] != uid {
        return Some(AccessProblem::OtherUser { uid: uids[0] });
    }
    if uids.iter().any(|&u| u != uid) || gids.iter().any(|&g| g != gid) {
        return Some(AccessProblem::SetId { uids, gids });
    }
    // Files under /proc/PID belong to root while the process is not dumpable (the directory
    // itself may keep its first owner).
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(format!("/proc/{pid}/status")).ok()?.uid();
    (owner != uid).then_some(AccessProblem::NotDumpable)
}

/// Whether `pid` still runs: some thread of it exists and is not a zombie. (The main thread shows
/// as a zombie after calling `pthread_exit` while other threads go on.)
pub fn is_alive(pid: u32) -> bool {
    if thread_alive(&format!("/proc/{pid}/stat")) {
        return true;
    }
    threads(pid)
        .unwrap_or_default()
        .iter()
        .any(|tid| thread_alive(&format!("/proc/{pid}/task/{tid}/stat")))
}

fn thread_alive(stat_path: &str) -> bool {
    let Ok(stat) = std::fs::read_to_string(stat_path) else {
        return false;
    };
    // The state follows the command name, which is in parentheses and may contain anything.
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].trim_start().chars().next());
    !matches!(state, Some('Z' | 'X') | None)
}

/// Calls `emit` with a COMM record per thread and an MMAP2 record per executable mapping of `pid`.
/// Threads or files that vanish meanwhile are skipped.
pub fn synthesize(pid: u32, emit: &mut dyn FnMut(Record<'_>)) {
    for tid in threads(pid).unwrap_or_default() {
        if let Ok(name) = std::fs::read(format!("/proc/{pid}/task/{tid}/comm")) {
            let name = name.strip_suffix(b"\n").unwrap_or(&name);
            emit(Record::Comm(Comm {
                pid,
                tid,
                name,
                exec: false,
            }));
        }
    }
    let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
        return;
    };
    for line in maps.lines() {
        if let Some(mmap) = parse_maps_line(pid, line) {
            if mmap.prot & libc::PROT_EXEC as u32 != 0 {
                emit(Record::Mmap2(mmap));
            }
        }
    }
}

/// Parses one `/proc/PID/maps` line: `start-end perms offset major:minor inode   path`.
fn parse_maps_line(pid: u32, line: &str) -> Option<Mmap2<'_>> {
    let mut fields = line.splitn(6, ' ');
    let (start, end) = fields.next()?.split_once('-')?;
    let perms = fields.next()?.as_bytes();
    let pgoff = u64::from_str_radix(fields.next()?, 16).ok()?;
    let (major, minor) = fields.next()?.split_once(':')?;
    let inode = fields.next()?.parse().ok()?;
    let filename = fields.next().unwrap_or("").trim_start();
    let address = u64::from_str_radix(start, 16).ok()?;
    let end = u64::from_str_radix(end, 16).ok()?;
    let flag = |i: usize, c: u8, value: i32| {
        if perms.get(i) == Some(&c) {
            value as u32
        } else {
            0
        }
    };
    let prot = flag(0, b'r', libc::PROT_READ)
        | flag(1, b'w', libc::PROT_WRITE)
        | flag(2, b'x', libc::PROT_EXEC);
    let flags = if perms.get(3) == Some(&b's') {
        libc::MAP_SHARED as u32
    } else {
        libc::MAP_PRIVATE as u32
    };
    Some(Mmap2 {
        pid,
        tid: pid,
        address,
        length: end.checked_sub(address)?,
        pgoff,
        file_id: MmapFileId::Inode {
            major: u32::from_str_radix(major, 16).ok()?,
            minor: u32::from_str_radix(minor, 16).ok()?,
            inode,
            generation: 0,
        },
        prot,
        flags,
        filename: filename.as_bytes(),
        misc: misc::USER,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines() {
        let m = parse_maps_line(
            7,
            "55d4c8a00000-55d4c8a15000 r-xp 00004000 fd:01 1311   /usr/bin/my prog",
        )
        .unwrap();
        assert_eq!(
            (m.address, m.length, m.pgoff),
            (0x55d4c8a00000, 0x15000, 0x4000)
        );
        assert_eq!(m.filename, b"/usr/bin/my prog");
        assert_eq!(m.prot, (libc::PROT_READ | libc::PROT_EXEC) as u32);
        assert_eq!(
            m.file_id,
            MmapFileId::Inode {
                major: 0xfd,
                minor: 1,
                inode: 1311,
                generation: 0
            }
        );
        let anon = parse_maps_line(7, "7ffd1000-7ffd2000 rw-p 00000000 00:00 0 ").unwrap();
        assert_eq!(anon.filename, b"");
        assert!(parse_maps_line(7, "garbage").is_none());
    }

    #[test]
    fn own_process() {
        let pid = std::process::id();
        assert!(is_alive(pid));
        assert!(threads(pid).unwrap().contains(&pid));
        let (mut comms, mut exec_maps) = (0, 0);
        synthesize(pid, &mut |record| match record {
            Record::Comm(_) => comms += 1,
            Record::Mmap2(_) => exec_maps += 1,
            _ => {}
        });
        assert!(comms >= 1 && exec_maps >= 1, "{comms} {exec_maps}");
        assert_eq!(
            access_problem(pid),
            None,
            "our own process is ours to profile"
        );
        assert!(!is_alive(u32::MAX - 1));
    }
}
