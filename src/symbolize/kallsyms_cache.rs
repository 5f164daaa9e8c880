//! The running kernel's own text symbols, kept between runs.
//!
//! Reading `/proc/kallsyms` costs ~50 ms of kernel time per run (the kernel formats all of its
//! ~120k lines on every read; a seek formats everything before the offset), more than a whole
//! short profile's other work. The kernel's own text (`_text` to `_etext`) is the same for every
//! boot of the same kernel build, only moved by KASLR, so its symbols are kept relative to
//! `_text` in `CACHE/flamegraph/kallsyms-BUILDID` (`$XDG_CACHE_HOME`, else `$HOME/.cache`),
//! keyed by the kernel's build-id (`/sys/kernel/notes`), with a CRC. A run reads the head of
//! `/proc/kallsyms` for the current `_text`, and the cache. Modules, BPF programs and
//! trampolines are not in it: an address outside the kernel's own text makes the symbolizer
//! read the whole file after all ([`Kallsyms::covers`]).
//!
//! The cache directory must be ours and writable by nobody else (see `private_dir`); the file
//! is written to a temporary name and renamed, never over anything but a regular file, and read
//! only if it is a regular file of ours, within [`MAX_CACHE_BYTES`], and checks out whole.

use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::kallsyms::Kallsyms;
use super::private_dir::{
    beneath, check_ours, fd_path, open_beneath, open_cache_root, open_dir_nofollow,
};

/// What a cache file starts with (the format's version is in it).
const MAGIC: &[u8; 8] = b"FGKSYM01";

/// A cache file larger than this is not read (the kernel's own symbols take ~2.5 MB).
const MAX_CACHE_BYTES: u64 = 64 << 20;

/// How much of the head of `/proc/kallsyms` is read for `_text` (per-CPU symbols may come
/// first).
const HEAD_BYTES: usize = 256 << 10;

/// The running kernel's text symbols: the kernel's own from the cache when it has them (the
/// rest read on demand), else the whole of `/proc/kallsyms`, cached for the next run.
pub(crate) fn running_kernel() -> Kallsyms {
    let dir = cache_dir();
    let build_id = super::locate::running_kernel_build_id();
    running_kernel_with(
        dir.as_deref(),
        build_id.as_deref(),
        Path::new("/proc/kallsyms"),
    )
}

/// [`running_kernel`] with the cache directory, build-id and kallsyms file given.
pub(crate) fn running_kernel_with(
    dir: Option<&Path>,
    build_id: Option<&[u8]>,
    kallsyms: &Path,
) -> Kallsyms {
    let cache = dir.zip(build_id);
    if let Some((dir, id)) = cache {
        if let Some(table) = text_address(kallsyms).and_then(|text| read(dir, id, text)) {
            return table;
        }
    }
    let table = Kallsyms::load(kallsyms);
    if let Some((dir, id)) = cache {
        // A cache that cannot be written only costs the next run the whole read.
        let _ = write(dir, id, &table);
    }
    table
}

/// `$XDG_CACHE_HOME/flamegraph`, else `$HOME/.cache/flamegraph` (absolute paths only).
fn cache_dir() -> Option<PathBuf> {
    let var = |name| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    var("XDG_CACHE_HOME")
        .map(|d| d.join("flamegraph"))
        .or_else(|| var("HOME").map(|d| d.join(".cache/flamegraph")))
}

/// The address of `_text` from the head of the kallsyms file (`None` when hidden or absent),
/// read a page at a time: the kernel formats only the lines each read returns.
fn text_address(kallsyms: &Path) -> Option<u64> {
    let mut file = std::fs::File::open(kallsyms).ok()?;
    let mut head = Vec::new();
    let mut page = [0u8; 4096];
    let mut parsed = 0;
    while head.len() < HEAD_BYTES {
        let n = file.read(&mut page).ok()?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&page[..n]);
        let whole = head.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let text = head[parsed..whole]
            .split(|&b| b == b'\n')
            .filter_map(super::kallsyms::parse_line)
            .find(|&(_, name)| name == b"_text");
        if let Some((address, _)) = text {
            return (address != 0).then_some(address);
        }
        parsed = whole;
    }
    None
}

fn file_name(build_id: &[u8]) -> String {
    let hex: String = build_id.iter().map(|b| format!("{b:02x}")).collect();
    format!("kallsyms-{hex}")
}

/// Writes the kernel's own text symbols of `table` (relative to `_text`) into `dir`.
fn write(dir: &Path, build_id: &[u8], table: &Kallsyms) -> Option<()> {
    let (text, end, symbols) = table.own_text()?;
    let mut bytes = Vec::with_capacity(symbols.len() * 24);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&(end - text).to_le_bytes());
    bytes.extend_from_slice(&(symbols.len() as u64).to_le_bytes());
    for &(address, _) in &symbols {
        bytes.extend_from_slice(&u32::try_from(address - text).ok()?.to_le_bytes());
    }
    for &(_, name) in &symbols {
        bytes.extend_from_slice(&u16::try_from(name.len()).ok()?.to_le_bytes());
    }
    for &(_, name) in &symbols {
        bytes.extend_from_slice(name.as_bytes());
    }
    bytes.extend_from_slice(&crc32fast::hash(&bytes).to_le_bytes());

    let dir = open_cache_root(dir).ok()?;
    let name = file_name(build_id);
    if std::fs::symlink_metadata(beneath(&dir, &name)).is_ok_and(|m| !m.is_file()) {
        return None;
    }
    let mut temp = tempfile::Builder::new()
        .prefix(".kallsyms")
        .tempfile_in(fd_path(&dir))
        .ok()?;
    temp.write_all(&bytes).ok()?;
    temp.persist(beneath(&dir, &name)).ok()?;
    Some(())
}

/// The cached symbols of the kernel with `build_id`, placed at `text` (the current `_text`).
fn read(dir: &Path, build_id: &[u8], text: u64) -> Option<Kallsyms> {
    let dir = open_dir_nofollow(dir).ok()?;
    check_ours(&dir).ok()?;
    let file = open_beneath(&dir, &file_name(build_id)).ok()?;
    let meta = file.metadata().ok()?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    let ours = meta.uid() == euid || meta.uid() == 0;
    if !meta.is_file() || !ours || meta.mode() & 0o022 != 0 || meta.len() > MAX_CACHE_BYTES {
        return None;
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_CACHE_BYTES).read_to_end(&mut bytes).ok()?;
    decode(&bytes, text)
}

/// Parses a cache file's `bytes`, placing the symbols at `text`.
fn decode(bytes: &[u8], text: u64) -> Option<Kallsyms> {
    let (body, crc) = bytes.split_at_checked(bytes.len().checked_sub(4)?)?;
    if crc32fast::hash(body).to_le_bytes() != crc || !body.starts_with(MAGIC) {
        return None;
    }
    let u64_at = |at: usize| Some(u64::from_le_bytes(body.get(at..at + 8)?.try_into().ok()?));
    let span = u64_at(8)?;
    let n = usize::try_from(u64_at(16)?).ok()?;
    let offsets = body.get(24..24usize.checked_add(n.checked_mul(4)?)?)?;
    let lengths_at = 24 + n * 4;
    let lengths = body.get(lengths_at..lengths_at.checked_add(n.checked_mul(2)?)?)?;
    let names = std::str::from_utf8(body.get(lengths_at + n * 2..)?).ok()?;
    let offsets = offsets
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
    let lengths = lengths
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]));
    let end = text.checked_add(span)?;
    Kallsyms::own_text_from(text, end, offsets.zip(lengths), names)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KALLSYMS: &str = "\
0000000000000000 A fixed_percpu_data
ffffffff81000000 T _text
ffffffff81000000 T _stext
ffffffff81000100 t helper
ffffffff81000200 D some_data
ffffffff81000300 T do_work
ffffffff81000400 T _etext
ffffffffc0000000 t mod_fn\t[some_module]
";

    fn kallsyms_file(dir: &Path, content: &str) -> PathBuf {
        let path = dir.join("kallsyms");
        std::fs::write(&path, content).unwrap();
        path
    }

    #[test]
    fn the_kernels_own_text_is_cached_and_placed_at_the_current_text() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("cache");
        let id = [0xab, 0xcd];
        let first = kallsyms_file(tmp.path(), KALLSYMS);
        let table = running_kernel_with(Some(&cache), Some(&id), &first);
        assert!(table.covers(0xffff_ffff_c000_0010));
        assert_eq!(table.lookup(0xffff_ffff_c000_0010), Some("mod_fn"));
        assert!(cache.join("kallsyms-abcd").is_file());
        // Next boot, KASLR moved the kernel by 0x200000: the head gives the new _text, the
        // cache the rest; module addresses are not covered.
        let moved = KALLSYMS.replace("ffffffff81", "ffffffff83");
        let second = kallsyms_file(tmp.path(), &moved[..80]);
        let table = running_kernel_with(Some(&cache), Some(&id), &second);
        assert_eq!(table.lookup(0xffff_ffff_8300_0310), Some("do_work"));
        assert_eq!(table.lookup(0xffff_ffff_8300_0150), Some("helper"));
        assert!(table.covers(0xffff_ffff_8300_0000));
        assert!(!table.covers(0xffff_ffff_8300_0400));
        assert!(!table.covers(0xffff_ffff_c000_0010));
        // Another kernel build: not this cache (only what the file itself has).
        let table = running_kernel_with(Some(&cache), Some(&[1]), &second);
        assert_eq!(table.lookup(0xffff_ffff_8300_0310), Some("_text"));
        assert!(table.covers(0xffff_ffff_c000_0010));
    }

    #[test]
    fn a_damaged_or_foreign_cache_is_not_used() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("cache");
        let id = [7];
        let file = kallsyms_file(tmp.path(), KALLSYMS);
        running_kernel_with(Some(&cache), Some(&id), &file);
        let cached = cache.join("kallsyms-07");
        let good = std::fs::read(&cached).unwrap();
        assert!(decode(&good, 0xffff_ffff_8100_0000).is_some());
        // Any flipped byte, any cut: refused whole.
        for at in [0, 9, 20, 30, good.len() / 2, good.len() - 1] {
            let mut bad = good.clone();
            bad[at] ^= 0x40;
            assert!(decode(&bad, 0xffff_ffff_8100_0000).is_none(), "byte {at}");
        }
        for len in [0, 3, 8, 30, good.len() - 1] {
            assert!(
                decode(&good[..len], 0xffff_ffff_8100_0000).is_none(),
                "{len} bytes"
            );
        }
        // A symlink in its place is neither followed nor replaced.
        std::fs::remove_file(&cached).unwrap();
        std::os::unix::fs::symlink(&file, &cached).unwrap();
        running_kernel_with(Some(&cache), Some(&id), &file);
        assert!(std::fs::symlink_metadata(&cached).unwrap().is_symlink());
        assert!(read(&cache, &id, 0xffff_ffff_8100_0000).is_none());
        // A cache directory others may write to is not read.
        std::fs::remove_file(&cached).unwrap();
        running_kernel_with(Some(&cache), Some(&id), &file);
        assert!(read(&cache, &id, 0xffff_ffff_8100_0000).is_some());
        let open = std::os::unix::fs::PermissionsExt::from_mode(0o777);
        std::fs::set_permissions(&cache, open).unwrap();
        assert!(read(&cache, &id, 0xffff_ffff_8100_0000).is_none());
    }

    #[test]
    fn hidden_addresses_are_neither_cached_nor_read_from_the_cache() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("cache");
        let hidden = KALLSYMS
            .replace("ffffffff81", "0000000000")
            .replace("ffffffffc0", "0000000000");
        let file = kallsyms_file(tmp.path(), &hidden);
        let table = running_kernel_with(Some(&cache), Some(&[9]), &file);
        assert!(table.lookup(0x310).is_none());
        assert!(!cache.join("kallsyms-09").exists());
    }

    /// On this machine's kernel, when its symbols are visible: the cached table names every
    /// kernel text symbol's address as the whole file does.
    #[test]
    fn the_running_kernel_is_named_the_same_from_the_cache() {
        let Some(id) = crate::symbolize::locate::running_kernel_build_id() else {
            return;
        };
        let tmp = tempfile::tempdir().unwrap();
        let proc = Path::new("/proc/kallsyms");
        let whole = Kallsyms::load(proc);
        let Some((text, end, symbols)) = whole.own_text() else {
            return;
        };
        running_kernel_with(Some(tmp.path()), Some(&id), proc);
        let cached = running_kernel_with(Some(tmp.path()), Some(&id), proc);
        assert!(cached.covers(text) && !cached.covers(end));
        for &(address, _) in symbols.iter().step_by(7) {
            assert_eq!(
                cached.lookup(address + 1),
                whole.lookup(address + 1),
                "{address:x}"
            );
        }
    }
}
