//! Finding the files of a recording that may have been made on another machine (a perf.data
//! file): a binary, library or debug file is used only when its GNU build-id is the one the
//! recording wrote down, and the running kernel's symbols only when it is the kernel that ran.
//!
//! For a file recorded at `PATH` with build-id `ID` (`ab` its first byte in hex, `cdef…` the
//! rest), the candidates are, in this order (perf's search):
//!
//! 1. `SYMFS/PATH`, with `--symfs SYMFS`;
//! 2. `PATH` itself (before the cache, unlike perf: its `.gnu_debuglink` is then looked up next
//!    to it, where the debug packages put it);
//! 3. perf's build-id cache: `~/.debug/.build-id/ab/cdef…/elf`, `~/.debug/PATH/ID/elf`, and the
//!    older layout's `~/.debug/.build-id/ab/cdef…` file (`perf archive` on the recording machine
//!    packs these);
//! 4. the debug file `/usr/lib/debug/.build-id/ab/cdef….debug`;
//! 5. the binary from debuginfod servers (`GET URL/buildid/abcdef…/executable`), when
//!    configured (see `debuginfod.rs`).
//!
//! The first whose build-id matches is used; when the recording has no build-id for a file
//! (`perf record --no-buildid`), `SYMFS/PATH` or else `PATH` is used unchecked, as perf does.
//! A live recording needs none of this: the files are there while it runs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The name of the kernel's entry in perf's build-id table.
const KERNEL_ENTRY: &str = "[kernel.kallsyms]";
/// `NT_GNU_BUILD_ID`.
const NT_GNU_BUILD_ID: u32 = 3;
/// Most bytes read from `/sys/kernel/notes` (a few hundred in practice).
const MAX_NOTES: u64 = 64 * 1024;

/// Where the files of a recording are looked up, and the build-ids it recorded.
#[derive(Clone, Debug, Default)]
pub struct Locator {
    /// `--symfs`: a directory holding the recording machine's files at their recorded paths.
    symfs: Option<PathBuf>,
    /// perf's build-id cache (`~/.debug`).
    cache: Option<PathBuf>,
    /// The system's debug file tree (`/usr/lib/debug`).
    debug_root: PathBuf,
    /// Recorded path → build-id (from the header's build-id table).
    build_ids: HashMap<PathBuf, Vec<u8>>,
}

impl Locator {
    /// A locator for a recording whose build-id table is `build_ids` (pid, build-id, path), with
    /// `--symfs DIR` if given; the cache is `$HOME/.debug`.
    pub fn new(build_ids: &[(u32, Vec<u8>, PathBuf)], symfs: Option<PathBuf>) -> Self {
        Locator {
            symfs,
            cache: std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".debug")),
            debug_root: PathBuf::from(crate::elf::DEFAULT_DEBUG_ROOT),
            build_ids: (build_ids.iter())
                .map(|(_, id, path)| (path.clone(), id.clone()))
                .collect(),
        }
    }

    /// Looks in `dir` instead of `$HOME/.debug` for perf's build-id cache.
    pub fn with_cache_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.cache = dir;
        self
    }

    /// The build-id recorded for `path` in the header's table.
    pub fn recorded_build_id(&self, path: &Path) -> Option<&[u8]> {
        self.build_ids.get(path).map(Vec::as_slice)
    }

    /// The file to read for `path` as recorded, given the build-id of its MMAP2 record if it had
    /// one (else the header table's): `None` when no candidate carries the recorded build-id.
    pub fn locate(&self, path: &Path, mmap_build_id: Option<&[u8]>) -> Option<PathBuf> {
        let symfs = self.symfs.as_ref().map(|dir| under(dir, path));
        let Some(expected) = mmap_build_id.or_else(|| self.recorded_build_id(path)) else {
            return Some(
                symfs
                    .filter(|p| p.is_file())
                    .unwrap_or_else(|| path.to_owned()),
            );
        };
        let hex = to_hex(expected.iter().copied().take(significant_len(expected)));
        let mut candidates: Vec<PathBuf> = symfs.into_iter().collect();
        candidates.push(path.to_owned());
        if let (Some(cache), Some((first, rest))) = (&self.cache, split_hex(&hex)) {
            let id_dir = cache.join(".build-id").join(first).join(rest);
            candidates.push(id_dir.join("elf"));
            candidates.push(under(cache, path).join(&hex).join("elf"));
            candidates.push(id_dir);
        }
        let significant = &expected[..significant_len(expected)];
        candidates.extend(crate::elf::build_id_debug_path(
            &self.debug_root,
            significant,
        ));
        (candidates.into_iter())
            .find(|c| file_build_id(c).is_some_and(|found| same_build_id(&found, expected)))
            .or_else(|| super::debuginfod::executable(significant))
    }
}

/// `dir` joined with an absolute recorded `path` (its root dropped).
fn under(dir: &Path, path: &Path) -> PathBuf {
    dir.join(path.strip_prefix("/").unwrap_or(path))
}

/// Build-ids recorded without their size are zero-padded to 20 bytes: the length without the
/// padding (never below 16, the shortest real build-id, an MD5).
fn significant_len(id: &[u8]) -> usize {
    let len = id.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    len.max(16).min(id.len())
}

/// A build-id found in a file against a recorded one, which may be zero-padded.
pub(crate) fn same_build_id(found: &[u8], recorded: &[u8]) -> bool {
    recorded.starts_with(found)
        && !found.is_empty()
        && recorded[found.len()..].iter().all(|&b| b == 0)
}

fn to_hex(bytes: impl Iterator<Item = u8>) -> String {
    bytes.map(|b| format!("{b:02x}")).collect()
}

fn split_hex(hex: &str) -> Option<(&str, &str)> {
    (hex.len() > 2).then(|| hex.split_at(2))
}

/// The GNU build-id of the ELF file at `path`, if it is a regular file (no FIFO or device:
/// opened non-blocking and checked) with one.
pub fn file_build_id(path: &Path) -> Option<Vec<u8>> {
    use object::Object;
    let file = crate::elf::open_regular(path).ok()?;
    // SAFETY: the map is read-only and private to this function; a file truncated underneath us
    // could fault, the accepted risk of mapping binaries (the symbolizer does the same).
    let map = unsafe { memmap2::Mmap::map(&file) }.ok()?;
    let object = object::File::parse(&*map).ok()?;
    Some(object.build_id().ok()??.to_vec())
}

/// Where the kernel's names come from when drawing a recording.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum KernelNames {
    /// The running kernel's `/proc/kallsyms` (live recordings, or the recording's kernel is the
    /// running one).
    #[default]
    Running,
    /// A kallsyms file (`--kallsyms FILE`, or perf's cache of the recording kernel's).
    File(PathBuf),
    /// Unknown kernel: every kernel frame is `[kernel]`; the reason is said to the user.
    Unnamed(String),
}

/// Decides where kernel names come from for a recording whose build-id table is `build_ids`
/// and whose kernel release is `os_release`: `kallsyms` if given, else the running kernel if it
/// is the recorded one (build-id against `/sys/kernel/notes`, else release against `uname -r`),
/// else perf's cached copy `~/.debug/[kernel.kallsyms]/ID/kallsyms`, else unnamed.
pub fn kernel_names(
    build_ids: &[(u32, Vec<u8>, PathBuf)],
    os_release: Option<&str>,
    kallsyms: Option<&Path>,
    cache: Option<&Path>,
) -> KernelNames {
    if let Some(file) = kallsyms {
        return KernelNames::File(file.to_owned());
    }
    let recorded = (build_ids.iter())
        .find(|(_, _, path)| path.as_os_str() == KERNEL_ENTRY)
        .map(|(_, id, _)| id.as_slice());
    if let Some(recorded) = recorded {
        if running_kernel_build_id().is_some_and(|found| same_build_id(&found, recorded)) {
            return KernelNames::Running;
        }
        let hex = to_hex(recorded.iter().copied().take(significant_len(recorded)));
        if let Some(cached) = cache
            .map(|c| c.join(KERNEL_ENTRY).join(&hex).join("kallsyms"))
            .filter(|p| crate::elf::open_regular(p).is_ok())
        {
            return KernelNames::File(cached);
        }
        return KernelNames::Unnamed(format!(
            "the recording's kernel (build-id {hex}) is not the running one"
        ));
    }
    match (os_release, running_release()) {
        (Some(recorded), Some(running)) if recorded == running => KernelNames::Running,
        (Some(recorded), _) => KernelNames::Unnamed(format!(
            "the recording's kernel ({recorded}) is not the running one"
        )),
        (None, _) => {
            KernelNames::Unnamed("the recording does not say which kernel it ran on".into())
        }
    }
}

/// The running kernel's release (`uname -r`).
fn running_release() -> Option<String> {
    let text = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    Some(text.trim().to_owned())
}

/// The running kernel's GNU build-id, from the ELF notes in `/sys/kernel/notes`.
pub fn running_kernel_build_id() -> Option<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    let file = crate::elf::open_regular(Path::new("/sys/kernel/notes")).ok()?;
    file.take(MAX_NOTES).read_to_end(&mut bytes).ok()?;
    gnu_build_id_note(&bytes)
}

/// The descriptor of the first `GNU` note of type `NT_GNU_BUILD_ID` in a run of ELF notes
/// (native byte order, 4-byte aligned names and descriptors).
fn gnu_build_id_note(mut notes: &[u8]) -> Option<Vec<u8>> {
    let word = |b: &[u8], i: usize| -> Option<usize> {
        let w = b.get(i..i + 4)?;
        Some(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]) as usize)
    };
    while notes.len() >= 12 {
        let (name_size, desc_size) = (word(notes, 0)?, word(notes, 4)?);
        let kind = word(notes, 8)? as u32;
        let name_end = 12usize.checked_add(name_size)?;
        let desc_start = name_end.checked_next_multiple_of(4)?;
        let desc_end = desc_start.checked_add(desc_size)?;
        let name = notes.get(12..name_end)?;
        let desc = notes.get(desc_start..desc_end)?;
        if kind == NT_GNU_BUILD_ID && name == b"GNU\0" {
            return Some(desc.to_vec());
        }
        notes = notes.get(desc_end.checked_next_multiple_of(4)?..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_padded_build_ids_match() {
        let id = [0xab; 20];
        assert!(same_build_id(&id, &id));
        let mut padded = [0u8; 20];
        padded[..16].copy_from_slice(&[7; 16]);
        assert!(same_build_id(&[7; 16], &padded));
        assert!(!same_build_id(&[7; 16], &id));
        assert!(!same_build_id(&[], &[0; 20]));
        assert_eq!(significant_len(&padded), 16);
    }

    #[test]
    fn finds_the_build_id_note() {
        let mut notes = Vec::new();
        // An unrelated note first ("Xen", type 1, 4-byte descriptor), then GNU's build-id.
        for (name, kind, desc) in [
            (&b"Xen\0"[..], 1u32, &[1u8, 2, 3, 4][..]),
            (b"GNU\0", 3, &[9; 20]),
        ] {
            notes.extend((name.len() as u32).to_ne_bytes());
            notes.extend((desc.len() as u32).to_ne_bytes());
            notes.extend(kind.to_ne_bytes());
            notes.extend(name);
            notes.extend(desc);
        }
        assert_eq!(gnu_build_id_note(&notes), Some(vec![9; 20]));
        assert_eq!(gnu_build_id_note(&notes[..40]), None);
    }

    #[test]
    fn kernel_names_only_for_the_recorded_kernel() {
        let kernel = |id: Vec<u8>| vec![(u32::MAX, id, PathBuf::from(KERNEL_ENTRY))];
        let fake = kernel(vec![0xee; 20]);
        assert!(matches!(
            kernel_names(&fake, None, None, None),
            KernelNames::Unnamed(_)
        ));
        let file = Path::new("/some/kallsyms");
        assert_eq!(
            kernel_names(&fake, None, Some(file), None),
            KernelNames::File(file.to_owned())
        );
        if let Some(running) = running_kernel_build_id() {
            assert_eq!(
                kernel_names(&kernel(running), None, None, None),
                KernelNames::Running
            );
        }
        if let Some(release) = running_release() {
            assert_eq!(
                kernel_names(&[], Some(&release), None, None),
                KernelNames::Running
            );
            assert!(matches!(
                kernel_names(&[], Some("2.6.32-old"), None, None),
                KernelNames::Unnamed(_)
            ));
        }
        assert!(matches!(
            kernel_names(&[], None, None, None),
            KernelNames::Unnamed(_)
        ));
    }

    #[test]
    fn a_mismatched_file_is_not_located() {
        let exe = std::env::current_exe().unwrap();
        let own = file_build_id(&exe).expect("the test binary has a build-id");
        let table = vec![(u32::MAX, own.clone(), exe.clone())];
        let locator = Locator::new(&table, None).with_cache_dir(None);
        assert_eq!(locator.locate(&exe, None), Some(exe.clone()));
        let other = Locator::new(&[(u32::MAX, vec![1; 20], exe.clone())], None);
        assert_eq!(other.with_cache_dir(None).locate(&exe, None), None);
        // The MMAP2 record's build-id wins over the table's.
        assert_eq!(locator.locate(&exe, Some(&[2; 20])), None);
    }
}
