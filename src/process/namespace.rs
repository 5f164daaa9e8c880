//! Files of processes that see another file system: containers (Docker, podman), `unshare
//! --mount`, `chroot`. A mapping's path is the path *the process* sees; in the profiler's own
//! mount namespace it may not exist, or be another file. Such a file is reached through
//! `/proc/PID/root`, the process's root directory, as perf does (its `nsinfo`).
//!
//! `/proc/PID/root` is a magic link, and what lies under it belongs to whoever controls the
//! container: a path is walked one component at a time from an `O_PATH` descriptor of that root,
//! every component opened with `O_NOFOLLOW` (a mapping's path is the kernel's canonical `d_path`,
//! with no symlink, `.` or `..` in it), the last one non-blocking and checked to be a regular file.
//! A symlink planted there (to a host file, to `/dev/zero`) or a FIFO is refused, never followed.
//!
//! Files of a mapping that was deleted or replaced since it was mapped are read through
//! `/proc/PID/map_files/START-END`, which the kernel lets only a privileged user (root,
//! `CAP_CHECKPOINT_RESTORE`) open.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path};

/// Most bytes read from `/proc/PID/status` (a few KiB in practice).
const MAX_STATUS: u64 = 64 * 1024;
/// Most entries of `/proc/PID/map_files` looked at (one per mapping of the process).
const MAX_MAP_FILES: usize = 1 << 16;

/// The identity of a mapped file, as an MMAP2 record or `/proc/PID/maps` gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileId {
    pub major: u32,
    pub minor: u32,
    pub inode: u64,
}

impl FileId {
    /// Whether the opened file is this one: the same inode on the same device, or (`lax`) the same
    /// inode number on any device. Through `/proc/PID/root` the device may differ: overlayfs
    /// (Docker's layers) reports its own device for a file whose mapping names the layer's, and
    /// btrfs a subvolume's.
    pub fn is(&self, meta: &std::fs::Metadata, lax: bool) -> bool {
        let dev = meta.dev();
        let same_dev = libc::major(dev) == self.major && libc::minor(dev) == self.minor;
        meta.ino() == self.inode && (lax || same_dev)
    }
}

/// Whether process `pid` sees another file system than this one: another mount namespace or
/// another root directory (`chroot`). False when it cannot be told (the process is gone, or
/// `/proc/PID/root` is not ours to read).
pub fn sees_other_files(pid: u32) -> bool {
    let other = |own: &str, theirs: String| -> Option<bool> {
        let (own, theirs) = (
            std::fs::metadata(own).ok()?,
            std::fs::metadata(theirs).ok()?,
        );
        Some((own.dev(), own.ino()) != (theirs.dev(), theirs.ino()))
    };
    other("/proc/self/ns/mnt", format!("/proc/{pid}/ns/mnt")).unwrap_or(false)
        || other("/", format!("/proc/{pid}/root")).unwrap_or(false)
}

/// Opens the absolute `path` as process `pid` sees it, under `/proc/PID/root`, following no
/// symlink and refusing `.`, `..`, FIFOs and devices (see the module documentation).
pub fn open_in_root(pid: u32, path: &Path) -> io::Result<File> {
    let (dir, name) = open_parent_in_root(pid, path)?;
    let file = openat(&dir, name, libc::O_RDONLY | libc::O_NONBLOCK)?;
    let file = File::from(file);
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(file)
}

/// Opens the directory at the absolute `path` as process `pid` sees it (an `O_PATH` descriptor,
/// the same walk as [`open_in_root`]): files in it can then be opened after the process is gone.
pub fn open_dir_in_root(pid: u32, path: &Path) -> io::Result<OwnedFd> {
    let (dir, name) = open_parent_in_root(pid, path)?;
    openat(&dir, name, libc::O_PATH | libc::O_DIRECTORY)
}

/// The directory holding `path`'s last component under `pid`'s root, and that component.
fn open_parent_in_root(pid: u32, path: &Path) -> io::Result<(OwnedFd, &std::ffi::OsStr)> {
    let invalid = || io::Error::new(io::ErrorKind::InvalidInput, "not a plain absolute path");
    let mut components = path.components();
    if components.next() != Some(Component::RootDir) {
        return Err(invalid());
    }
    let mut names = Vec::new();
    for component in components {
        match component {
            Component::Normal(name) => names.push(name),
            _ => return Err(invalid()),
        }
    }
    let last = names.pop().ok_or_else(invalid)?;
    // The one link followed on purpose: the process's root directory.
    let root = CString::new(format!("/proc/{pid}/root")).map_err(|_| invalid())?;
    // SAFETY: `root` is a valid NUL-terminated path; the returned descriptor, if any, is owned
    // by the `OwnedFd` made from it right below.
    let fd = unsafe {
        libc::open(
            root.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nobody else.
    let mut dir = unsafe { OwnedFd::from_raw_fd(fd) };
    for name in names {
        dir = openat(&dir, name, libc::O_PATH | libc::O_DIRECTORY)?;
    }
    Ok((dir, last))
}

/// `openat(dir, name, flags | O_NOFOLLOW | O_CLOEXEC)`.
fn openat(dir: &OwnedFd, name: &std::ffi::OsStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    let name = CString::new(name.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a path"))?;
    // SAFETY: `dir` is an open descriptor and `name` a valid NUL-terminated string; the returned
    // descriptor, if any, is owned by the `OwnedFd` made from it right below.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens the file mapped at `avma` in process `pid` through `/proc/PID/map_files`: the very file
/// mapped, even deleted or replaced since. Needs privileges (`PermissionDenied` otherwise).
pub fn open_mapped(pid: u32, avma: u64) -> io::Result<File> {
    let dir = format!("/proc/{pid}/map_files");
    for entry in std::fs::read_dir(&dir)?.take(MAX_MAP_FILES) {
        let entry = entry?;
        let name = entry.file_name();
        let Some((start, end)) = name.to_str().and_then(|n| n.split_once('-')) else {
            continue;
        };
        let (Ok(start), Ok(end)) = (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16))
        else {
            continue;
        };
        if (start..end).contains(&avma) {
            // Following this magic link is the point: it leads to the mapped file itself.
            return crate::elf::open_regular(&entry.path());
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        "no mapping at that address",
    ))
}

/// The process id of `pid` in its own pid namespace: the last `NStgid` (else `NSpid`) field of
/// `/proc/PID/status`, as perf names a containerized JIT's `/tmp/perf-PID.map`.
pub fn ns_pid(pid: u32) -> Option<u32> {
    use std::io::Read;
    let mut status = String::new();
    let file = crate::elf::open_regular(Path::new(&format!("/proc/{pid}/status"))).ok()?;
    file.take(MAX_STATUS).read_to_string(&mut status).ok()?;
    let field = |key: &str| -> Option<u32> {
        let line = status.lines().find_map(|l| l.strip_prefix(key))?;
        line.split_whitespace().last()?.parse().ok()
    };
    field("NStgid:").or_else(|| field("NSpid:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own_pid() -> u32 {
        std::process::id()
    }

    #[test]
    fn opens_plain_paths_under_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.bin");
        std::fs::write(&file, b"x").unwrap();
        let opened = open_in_root(own_pid(), &file).unwrap();
        let meta = std::fs::metadata(&file).unwrap();
        let id = FileId {
            major: libc::major(meta.dev()),
            minor: libc::minor(meta.dev()),
            inode: meta.ino(),
        };
        assert!(id.is(&opened.metadata().unwrap(), false));
        assert!(open_dir_in_root(own_pid(), dir.path()).is_ok());
        assert!(!sees_other_files(own_pid()));
    }

    /// A symlink anywhere on the path, `..`, a relative path, a FIFO: refused, never followed.
    #[test]
    fn refuses_links_dots_and_fifos() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::fs::write(real.join("f"), b"x").unwrap();
        std::os::unix::fs::symlink(&real, dir.path().join("dirlink")).unwrap();
        std::os::unix::fs::symlink(real.join("f"), dir.path().join("filelink")).unwrap();
        let fifo = dir.path().join("fifo");
        let c_path = CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: c_path is a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let pid = own_pid();
        assert!(open_in_root(pid, &real.join("f")).is_ok());
        for bad in [
            dir.path().join("dirlink/f"),
            dir.path().join("filelink"),
            real.join("../real/f"),
            PathBuf::from("relative/f"),
            fifo,
            PathBuf::from("/dev/zero"),
        ] {
            assert!(open_in_root(pid, &bad).is_err(), "{}", bad.display());
        }
    }

    #[test]
    fn own_ns_pid_and_mapped_files() {
        // In a pid namespace of its own the test sees itself under its namespace's number, which
        // is what getpid says.
        assert_eq!(ns_pid(own_pid()), Some(own_pid()));
        let here = own_ns_pid_and_mapped_files as *const () as usize as u64;
        match open_mapped(own_pid(), here) {
            Ok(file) => {
                let exe = std::fs::metadata(std::env::current_exe().unwrap()).unwrap();
                assert_eq!(file.metadata().unwrap().ino(), exe.ino());
            }
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}"),
        }
    }

    use std::path::PathBuf;
}
