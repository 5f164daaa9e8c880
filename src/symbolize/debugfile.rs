//! Finding the separate debug file of a stripped binary, the way gdb and perf do:
//!
//! 1. by build-id: `ROOT/.build-id/xx/yyyy.debug` (first byte, then the rest, in hex), checked to
//!    carry the same build-id;
//! 2. by `.gnu_debuglink`: the named file next to the binary, in its `.debug/` subdirectory, or under
//!    `ROOT` followed by the binary's directory, checked against the link's CRC32.
//!
//! 3. from debuginfod servers by build-id, when configured (see `debuginfod.rs`).
//!
//! `ROOT` is [`crate::elf::DEFAULT_DEBUG_ROOT`] unless the caller gives another. A debug file compressed by dwz
//! may point at a supplementary file with `.gnu_debugaltlink`, see [`find_supplementary`].

use std::path::{Path, PathBuf};

use memmap2::Mmap;
use object::Object;

use crate::elf::build_id_debug_path;

/// Maps the debug file of the binary at `path` (already parsed as `object`), if one is found under
/// `root` or next to the binary and matches. Returns its path too, for its own links.
/// Last, with a build-id, from debuginfod servers (see `debuginfod.rs`; off unless configured).
pub(crate) fn find(path: &Path, object: &object::File<'_>, root: &Path) -> Option<(PathBuf, Mmap)> {
    let build_id = object.build_id().ok().flatten();
    if let Some(build_id) = build_id {
        let candidate = build_id_debug_path(root, build_id)?;
        if let Some(map) = map_with_build_id(&candidate, build_id) {
            return Some((candidate, map));
        }
    }
    find_by_debuglink(path, object, root)
        .or_else(|| super::debuginfod::debuginfo(build_id.filter(|id| !id.is_empty())?))
}

/// The `.gnu_debuglink` target of `object` (read from `path`), CRC-checked.
fn find_by_debuglink(
    path: &Path,
    object: &object::File<'_>,
    root: &Path,
) -> Option<(PathBuf, Mmap)> {
    let (name, crc) = object.gnu_debuglink().ok()??;
    let name = Path::new(std::str::from_utf8(name).ok()?);
    debuglink_candidates(path, name, root)
        .into_iter()
        .filter(|candidate| candidate != path)
        .find_map(|candidate| {
            let map = map_file(&candidate)?;
            (crc32fast::hash(&map) == crc).then_some((candidate, map))
        })
}

/// Maps the dwz supplementary file that `.gnu_debugaltlink` of `object` (read from `path`) names:
/// the path as written (relative to `path`'s directory if relative), else by build-id under
/// `root`; either must carry the build-id the link records.
pub(crate) fn find_supplementary(
    path: &Path,
    object: &object::File<'_>,
    root: &Path,
) -> Option<Mmap> {
    let (name, build_id) = object.gnu_debugaltlink().ok()??;
    let name = Path::new(std::str::from_utf8(name).ok()?);
    let linked = path.parent().unwrap_or(Path::new("/")).join(name);
    map_with_build_id(&linked, build_id)
        .or_else(|| map_with_build_id(&build_id_debug_path(root, build_id)?, build_id))
}

/// Maps `path` if it is a regular object file with this build-id (opened without following
/// a FIFO or device).
pub(crate) fn map_with_build_id(path: &Path, build_id: &[u8]) -> Option<Mmap> {
    let map = map_file(path)?;
    let same = object::File::parse(&*map)
        .ok()
        .and_then(|file| file.build_id().ok().flatten())
        .is_some_and(|id| id == build_id);
    same.then_some(map)
}

/// Where gdb looks for a `.gnu_debuglink` target.
fn debuglink_candidates(path: &Path, name: &Path, root: &Path) -> [PathBuf; 3] {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let mut system = root.to_owned();
    system.push(dir.strip_prefix("/").unwrap_or(dir));
    system.push(name);
    [dir.join(name), dir.join(".debug").join(name), system]
}

fn map_file(path: &Path) -> Option<Mmap> {
    let file = crate::elf::open_regular(path).ok()?;
    // SAFETY: the file is mapped read-only and only read through the returned map. Like every
    // debugger, we assume debug files are not truncated while we read them (a truncation would
    // raise SIGBUS); files replaced by rename, the usual way, keep their old content mapped.
    unsafe { Mmap::map(&file) }.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `.gnu_debuglink` records zlib's CRC-32 (IEEE 802.3): the standard check values.
    #[test]
    fn debuglink_crc_is_zlibs_crc32() {
        assert_eq!(crc32fast::hash(b""), 0);
        assert_eq!(crc32fast::hash(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn debuglink_candidates_follow_gdb() {
        let c = debuglink_candidates(
            Path::new("/usr/bin/ls"),
            Path::new("ls.debug"),
            Path::new(crate::elf::DEFAULT_DEBUG_ROOT),
        );
        assert_eq!(c[0], Path::new("/usr/bin/ls.debug"));
        assert_eq!(c[1], Path::new("/usr/bin/.debug/ls.debug"));
        assert_eq!(c[2], Path::new("/usr/lib/debug/usr/bin/ls.debug"));
    }
}
