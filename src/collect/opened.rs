//! Live recordings: every mapped file is opened when its MMAP2 record is seen, and read
//! through that open file from then on (unwinding, symbolizing at the end). A process that
//! starts and exits during the recording, whose binary is deleted or rebuilt before the graph
//! is drawn (a test runner, a build step), is still named.
//!
//! The file is the mapped one: `/proc/PID/map_files/START-END` where the kernel lets us open it
//! (CAP_SYS_ADMIN: root), which also works once the file is deleted and in another mount
//! namespace; else the recorded path, only if it is still a regular file with the mapped inode
//! (not a symlink, FIFO or another file put there since).

use crate::perf::records::{Mmap2, MmapFileId};
use crate::process::{ModuleId, ModuleKind, Processes};

/// The most files held open: each costs a file descriptor.
const MAX_OPENED: usize = 2048;

/// File descriptors left to the rest of the tool (perf events, files being read).
const FDS_KEPT_FREE: u64 = 256;

/// Opens the files of new file-backed modules, up to [`MAX_OPENED`] and half of what
/// `RLIMIT_NOFILE` leaves after [`FDS_KEPT_FREE`].
#[derive(Debug, Default)]
pub(super) struct FileOpener {
    opened: usize,
    /// The bound, read at the first open (the recorder may raise the limit before).
    max: Option<usize>,
    /// Out of file descriptors (or at the bound): modules are read by path from then on.
    exhausted: bool,
}

impl FileOpener {
    /// Opens the file `m` maps for `module`, unless one is open for it already.
    pub(super) fn open(&mut self, processes: &mut Processes, module: ModuleId, m: &Mmap2<'_>) {
        if self.exhausted || processes.modules.is_opened(module) {
            return;
        }
        let ModuleKind::File(path) = processes.modules.get(module) else {
            return;
        };
        let max = *self.max.get_or_insert_with(max_opened);
        if self.opened >= max {
            self.exhausted = true;
            return;
        }
        match open_mapped(m, path) {
            Ok((file, path)) => {
                processes.modules.set_opened(module, file, path);
                self.opened += 1;
            }
            Err(err) if matches!(err.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                self.exhausted = true;
            }
            Err(_) => {}
        }
    }
}

/// How many files to hold open under the current `RLIMIT_NOFILE`.
fn max_opened() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes into the struct we pass.
    let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        limit.rlim_cur
    } else {
        1024
    };
    let spare = soft.saturating_sub(FDS_KEPT_FREE) / 2;
    usize::try_from(spare).unwrap_or(MAX_OPENED).min(MAX_OPENED)
}

/// The file `m` maps (recorded at `path`), and the `/proc/self/fd` path that reads it.
#[cfg(target_os = "linux")]
fn open_mapped(
    m: &Mmap2<'_>,
    path: &std::path::Path,
) -> std::io::Result<(std::fs::File, std::path::PathBuf)> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let open = |path: &std::path::Path, flags: i32| {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | flags)
            .open(path)
    };
    let end = m.address.saturating_add(m.length);
    let map_file = format!("/proc/{}/map_files/{:x}-{end:x}", m.pid, m.address);
    // The map_files entry is a link the kernel resolves to the mapped file itself.
    let file = open(std::path::Path::new(&map_file), 0).or_else(|_| {
        // The kernel writes resolved paths: a symlink there was put in since.
        open(path, libc::O_NOFOLLOW)
    })?;
    let meta = file.metadata()?;
    let inode_differs = match m.file_id {
        MmapFileId::Inode { inode, .. } => inode != 0 && inode != meta.ino(),
        _ => false,
    };
    if !meta.is_file() || inode_differs {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not the mapped file",
        ));
    }
    let fd_path = format!("/proc/self/fd/{}", file.as_raw_fd());
    Ok((file, fd_path.into()))
}

#[cfg(not(target_os = "linux"))]
fn open_mapped(
    _m: &Mmap2<'_>,
    _path: &std::path::Path,
) -> std::io::Result<(std::fs::File, std::path::PathBuf)> {
    Err(std::io::ErrorKind::Unsupported.into())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use crate::elf::MappingRange;

    /// An MMAP2 record of our own executable's first executable mapping, from /proc.
    fn own_exec_mapping(maps: &str) -> (u64, u64, u64, String) {
        let line = maps
            .lines()
            .find(|l| {
                l.split_whitespace().nth(1).is_some_and(|p| p.contains('x')) && l.contains('/')
            })
            .unwrap();
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (start, end) = fields[0].split_once('-').unwrap();
        (
            u64::from_str_radix(start, 16).unwrap(),
            u64::from_str_radix(end, 16).unwrap(),
            fields[4].parse().unwrap(),
            fields[5].to_owned(),
        )
    }

    #[test]
    fn a_mapped_file_is_opened_and_read_through_proc_self_fd() {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let (start, end, inode, path) = own_exec_mapping(&maps);
        let mmap = |inode| Mmap2 {
            pid: std::process::id(),
            tid: std::process::id(),
            address: start,
            length: end - start,
            pgoff: 0,
            file_id: MmapFileId::Inode {
                major: 0,
                minor: 0,
                inode,
                generation: 0,
            },
            prot: 5,
            flags: 2,
            filename: path.as_bytes(),
            misc: 2,
        };
        let mut processes = Processes::default();
        let range = MappingRange {
            start,
            end,
            pgoff: 0,
        };
        processes.on_mmap(1, range, path.as_bytes());
        let module = processes.space(1).unwrap().find(start).unwrap().module;
        let mut opener = FileOpener::default();
        // The wrong inode: not the mapped file, neither through map_files nor by path.
        opener.open(&mut processes, module, &mmap(inode + 1));
        assert!(!processes.modules.is_opened(module));
        opener.open(&mut processes, module, &mmap(inode));
        assert!(processes.modules.is_opened(module));
        let file = processes.modules.file(module).unwrap();
        assert!(file.starts_with("/proc/self/fd/"), "{}", file.display());
        let read = std::fs::metadata(file).unwrap();
        assert_eq!(std::os::unix::fs::MetadataExt::ino(&read), inode);
        assert_eq!(
            processes.modules.path(module).unwrap(),
            std::path::Path::new(&path)
        );
    }
}
