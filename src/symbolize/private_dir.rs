//! A private directory of our own (a cache) and the files in it, safe to use as root: the
//! directory must be ours (owned by the effective user, or root) and writable by nobody else,
//! and every file in it is reached through the opened directory, never through a symlink and
//! never blocking on a FIFO. Shared by the debuginfod client's cache and the kernel symbol cache.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Creates the cache directory (mode 0700 for the parts made) and opens it, refusing a symlink
/// and a directory that is not ours or that others may write to.
pub(crate) fn open_cache_root(path: &Path) -> Result<File, String> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|e| format!("cannot create it: {e}"))?;
    let dir = open_dir_nofollow(path)?;
    check_ours(&dir)?;
    Ok(dir)
}

/// Opens the directory at `path`; a symlink there is refused.
pub(crate) fn open_dir_nofollow(path: &Path) -> Result<File, String> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) | Some(libc::ENOTDIR) => "it is not a directory (a symlink?)".into(),
            _ => format!("cannot open it: {e}"),
        })
}

/// Ok if the opened directory is owned by the effective user (or root) and not writable by
/// other users.
pub(crate) fn check_ours(dir: &File) -> Result<(), String> {
    let meta = dir.metadata().map_err(|e| format!("cannot stat it: {e}"))?;
    // SAFETY: geteuid and getegid have no preconditions and cannot fail.
    let (euid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
    if meta.uid() != euid && meta.uid() != 0 {
        return Err(format!("it belongs to uid {}, not to us", meta.uid()));
    }
    let mode = meta.mode();
    if mode & 0o002 != 0 || (mode & 0o020 != 0 && meta.gid() != egid) {
        return Err(format!(
            "other users may write to it (mode {:o}); `chmod go-w` it",
            mode & 0o7777
        ));
    }
    Ok(())
}

/// A path that reaches `relative` beneath the opened directory `dir` whatever happens to the
/// directory's own path (through `/proc/self/fd`).
pub(crate) fn beneath(dir: &File, relative: &str) -> PathBuf {
    fd_path(dir).join(relative)
}

pub(crate) fn fd_path(dir: &File) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()))
}

/// Opens the file `name` in `dir` for reading, not through a symlink, never blocking on a FIFO.
pub(crate) fn open_beneath(dir: &File, name: &str) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(beneath(dir, name))
}
