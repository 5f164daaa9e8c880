//! Other mount namespaces exist only on Linux: elsewhere a mapping's path is the file.

use std::fs::File;
use std::io;
use std::path::Path;

/// The identity of a mapped file, as an MMAP2 record gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileId {
    pub major: u32,
    pub minor: u32,
    pub inode: u64,
}

impl FileId {
    /// Whether the file is this one (by inode only here).
    pub fn is(&self, meta: &std::fs::Metadata, _lax: bool) -> bool {
        std::os::unix::fs::MetadataExt::ino(meta) == self.inode
    }
}

pub fn sees_other_files(_pid: u32) -> bool {
    false
}

fn unsupported() -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, "Linux only")
}

pub fn open_in_root(_pid: u32, _path: &Path) -> io::Result<File> {
    Err(unsupported())
}

pub fn open_dir_in_root(_pid: u32, _path: &Path) -> io::Result<std::os::fd::OwnedFd> {
    Err(unsupported())
}

pub fn open_mapped(_pid: u32, _avma: u64) -> io::Result<File> {
    Err(unsupported())
}

pub fn ns_pid(_pid: u32) -> Option<u32> {
    None
}
