//! Finding the separate debug file of a stripped binary, the way gdb and perf do:
//!
//! 1. by build-id: `ROOT/.build-id/xx/yyyy.debug` (first byte, then the rest, in hex), checked to
//!    carry the same build-id;
//! 2. by `.gnu_debuglink`: the named file next to the binary, in its `.debug/` subdirectory, or under
//!    `ROOT` followed by the binary's directory, checked against the link's CRC32.
//!
//! `ROOT` is [`DEFAULT_DEBUG_ROOT`] unless the caller gives another. A debug file compressed by dwz
//! may point at a supplementary file with `.gnu_debugaltlink`, see [`find_supplementary`].

use std::path::{Path, PathBuf};

use memmap2::Mmap;
use object::Object;

/// The root of the system's debug file tree.
pub(crate) const DEFAULT_DEBUG_ROOT: &str = "/usr/lib/debug";

/// Maps the debug file of the binary at `path` (already parsed as `object`), if one is found under
/// `root` or next to the binary and matches. Returns its path too, for its own links.
pub(crate) fn find(path: &Path, object: &object::File<'_>, root: &Path) -> Option<(PathBuf, Mmap)> {
    if let Ok(Some(build_id)) = object.build_id() {
        let candidate = build_id_path(root, build_id)?;
        if let Some(map) = map_with_build_id(&candidate, build_id) {
            return Some((candidate, map));
        }
    }
    let (name, crc) = object.gnu_debuglink().ok()??;
    let name = Path::new(std::str::from_utf8(name).ok()?);
    debuglink_candidates(path, name, root)
        .into_iter()
        .filter(|candidate| candidate != path)
        .find_map(|candidate| {
            let map = map_file(&candidate)?;
            (crc32(&map) == crc).then_some((candidate, map))
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
        .or_else(|| map_with_build_id(&build_id_path(root, build_id)?, build_id))
}

/// `ROOT/.build-id/xx/yyyy.debug`.
fn build_id_path(root: &Path, build_id: &[u8]) -> Option<PathBuf> {
    let (first, rest) = build_id.split_first()?;
    let mut name = String::with_capacity(rest.len() * 2 + 6);
    for byte in rest {
        name.push_str(&format!("{byte:02x}"));
    }
    name.push_str(".debug");
    Some(
        root.join(".build-id")
            .join(format!("{first:02x}"))
            .join(name),
    )
}

/// Maps `path` if it is an object file with this build-id.
fn map_with_build_id(path: &Path, build_id: &[u8]) -> Option<Mmap> {
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

/// The CRC-32 (IEEE 802.3, as in zlib) that `.gnu_debuglink` records, computed slicing-by-8.
pub(crate) fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    let mut chunks = data.chunks_exact(8);
    for chunk in &mut chunks {
        let lo = crc ^ u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        let hi = u32::from_le_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]);
        crc = CRC_TABLES[7][(lo & 0xff) as usize]
            ^ CRC_TABLES[6][((lo >> 8) & 0xff) as usize]
            ^ CRC_TABLES[5][((lo >> 16) & 0xff) as usize]
            ^ CRC_TABLES[4][(lo >> 24) as usize]
            ^ CRC_TABLES[3][(hi & 0xff) as usize]
            ^ CRC_TABLES[2][((hi >> 8) & 0xff) as usize]
            ^ CRC_TABLES[1][((hi >> 16) & 0xff) as usize]
            ^ CRC_TABLES[0][(hi >> 24) as usize];
    }
    for &byte in chunks.remainder() {
        crc = CRC_TABLES[0][((crc ^ u32::from(byte)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

static CRC_TABLES: [[u32; 256]; 8] = crc_tables();

const fn crc_tables() -> [[u32; 256]; 8] {
    let mut tables = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
            bit += 1;
        }
        tables[0][i] = crc;
        i += 1;
    }
    let mut t = 1;
    while t < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = tables[t - 1][i];
            tables[t][i] = (prev >> 8) ^ tables[0][(prev & 0xff) as usize];
            i += 1;
        }
        t += 1;
    }
    tables
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_zlib_check_values() {
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        let long: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let bytewise = long.iter().fold(!0u32, |crc, &b| {
            CRC_TABLES[0][((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8)
        });
        assert_eq!(crc32(&long), !bytewise);
    }

    #[test]
    fn debuglink_candidates_follow_gdb() {
        let c = debuglink_candidates(
            Path::new("/usr/bin/ls"),
            Path::new("ls.debug"),
            Path::new(DEFAULT_DEBUG_ROOT),
        );
        assert_eq!(c[0], Path::new("/usr/bin/ls.debug"));
        assert_eq!(c[1], Path::new("/usr/bin/.debug/ls.debug"));
        assert_eq!(c[2], Path::new("/usr/lib/debug/usr/bin/ls.debug"));
    }
}
