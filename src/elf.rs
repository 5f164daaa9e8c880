//! Small ELF facts shared by the unwinder and the symbolizer: mapping a file offset (what a
//! process's memory map tells) to an SVMA (what the ELF headers and DWARF talk about).

use object::{Object, ObjectSegment};

pub(crate) mod vdso;

/// Opens a file named by a memory map or a perf.data record (so possibly planted by another
/// user) for reading: without blocking on a FIFO, and refused unless it is a regular file, so
/// that a device such as `/dev/urandom` is never read or mapped.
pub(crate) fn open_regular(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(file)
}

/// The root of the system's debug file tree.
pub(crate) const DEFAULT_DEBUG_ROOT: &str = "/usr/lib/debug";

/// Where the debug file tree at `root` keeps the debug file of a build-id, as gdb and perf look
/// for it: `ROOT/.build-id/xx/yyyy.debug` (the first byte, then the rest, in hex). `None` for an
/// empty build-id.
pub(crate) fn build_id_debug_path(
    root: &std::path::Path,
    build_id: &[u8],
) -> Option<std::path::PathBuf> {
    let (first, rest) = build_id.split_first()?;
    let rest: String = rest.iter().map(|b| format!("{b:02x}")).collect();
    Some(
        root.join(".build-id")
            .join(format!("{first:02x}"))
            .join(format!("{rest}.debug")),
    )
}

/// One loadable segment: the file range `[offset, offset + file_size)` is loaded at `address`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub offset: u64,
    pub file_size: u64,
    pub address: u64,
}

impl Segment {
    /// Whether the file range of the segment holds `file_offset` (without overflow: the fields
    /// come from the file, which may be hostile).
    fn covers_file_offset(&self, file_offset: u64) -> bool {
        file_offset
            .checked_sub(self.offset)
            .is_some_and(|d| d < self.file_size)
    }
}

/// The loadable segments of an object file, to translate file offsets into SVMAs.
#[derive(Clone, Debug, Default)]
pub struct SegmentMap {
    segments: Vec<Segment>,
}

impl SegmentMap {
    /// Reads the `PT_LOAD` segments of `file`.
    pub fn from_object<'data>(file: &impl Object<'data>) -> Self {
        let mut segments: Vec<Segment> = file
            .segments()
            .map(|s| {
                let (offset, file_size) = s.file_range();
                Segment {
                    offset,
                    file_size,
                    address: s.address(),
                }
            })
            .filter(|s| s.file_size > 0)
            .collect();
        segments.sort_by_key(|s| s.offset);
        SegmentMap { segments }
    }

    pub fn from_segments(mut segments: Vec<Segment>) -> Self {
        segments.sort_by_key(|s| s.offset);
        SegmentMap { segments }
    }

    /// The SVMA of the byte at `file_offset`, using the segment that covers it. Offsets outside
    /// every segment (rare: a mapping of non-loaded data) fall back to the first segment's bias.
    pub fn svma_for_file_offset(&self, file_offset: u64) -> Option<u64> {
        let seg = self
            .segments
            .iter()
            .find(|s| s.covers_file_offset(file_offset))
            .or_else(|| self.segments.first())?;
        Some(
            file_offset
                .wrapping_sub(seg.offset)
                .wrapping_add(seg.address),
        )
    }

    /// The file offset holding `svma`, the inverse of [`SegmentMap::svma_for_file_offset`].
    pub fn file_offset_for_svma(&self, svma: u64) -> Option<u64> {
        let seg = self
            .segments
            .iter()
            .find(|s| svma.checked_sub(s.address).is_some_and(|d| d < s.file_size))?;
        (svma - seg.address).checked_add(seg.offset)
    }
}

/// Where a mapping of a file sits in a process: what `PERF_RECORD_MMAP2` or `/proc/PID/maps` tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MappingRange {
    /// First AVMA of the mapping.
    pub start: u64,
    /// One past the last AVMA.
    pub end: u64,
    /// File offset mapped at `start`.
    pub pgoff: u64,
}

impl MappingRange {
    /// The file offset of an AVMA inside this mapping (wrapping: `pgoff` comes from the kernel
    /// or a perf.data file, which may be hostile).
    pub fn file_offset(&self, avma: u64) -> u64 {
        avma.wrapping_sub(self.start).wrapping_add(self.pgoff)
    }

    pub fn contains(&self, avma: u64) -> bool {
        avma >= self.start && avma < self.end
    }
}

/// The GNU build-id of the ELF file at `path`, in lowercase hex, if it is a regular file with
/// one. Reads only the file's headers and notes (through a read-only map).
pub fn build_id_hex(path: &std::path::Path) -> Option<String> {
    let file = std::fs::File::open(path).ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    // SAFETY: the map is read-only and private to this function; a file truncated underneath us
    // could fault, which is the accepted risk of mapping binaries (the symbolizer does the same).
    let map = unsafe { memmap2::Mmap::map(&file) }.ok()?;
    let object = object::File::parse(&*map).ok()?;
    let id = object.build_id().ok()??;
    Some(id.iter().map(|b| format!("{b:02x}")).collect())
}

/// Largest expansion believed of a compressed section: zlib's own limit (1032:1). A header that
/// claims more is a decompression bomb (`object` allocates the claimed size up front).
pub(crate) const MAX_EXPANSION: u64 = 1032;

/// Whether `section`'s uncompressed size is believable: always for an uncompressed section, and
/// for a compressed one at most [`MAX_EXPANSION`] times its compressed bytes.
pub(crate) fn plausible_size<'data>(section: &impl object::ObjectSection<'data>) -> bool {
    match section.compressed_data() {
        Ok(c) if c.format != object::CompressionFormat::None => {
            let limit = (c.data.len() as u64)
                .saturating_mul(MAX_EXPANSION)
                .saturating_add(4096);
            c.uncompressed_size <= limit
        }
        Ok(_) => true,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_id_debug_path_splits_the_first_byte() {
        let root = std::path::Path::new(DEFAULT_DEBUG_ROOT);
        assert_eq!(
            build_id_debug_path(root, &[0xab, 0xcd, 0x01]).unwrap(),
            std::path::Path::new("/usr/lib/debug/.build-id/ab/cd01.debug")
        );
        assert_eq!(build_id_debug_path(root, &[]), None);
    }

    /// Devices and FIFOs are refused at once (a FIFO without a writer would block a plain open).
    #[test]
    fn open_regular_refuses_devices_and_fifos() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: c_path is a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        for path in [std::path::Path::new("/dev/urandom"), &fifo] {
            let err = open_regular(path).unwrap_err();
            assert_eq!(
                err.kind(),
                std::io::ErrorKind::InvalidInput,
                "{}",
                path.display()
            );
        }
        assert!(open_regular(std::path::Path::new("/proc/self/exe")).is_ok());
    }

    #[test]
    fn pie_text_segment_translates_with_its_own_bias() {
        // A typical PIE: read-only segment at 0, text at file 0x1000 loaded at 0x1000, data at file
        // 0x2e10 loaded at 0x3e10 (vaddr and offset differ by a page).
        let map = SegmentMap::from_segments(vec![
            Segment {
                offset: 0,
                file_size: 0x600,
                address: 0,
            },
            Segment {
                offset: 0x1000,
                file_size: 0x1800,
                address: 0x1000,
            },
            Segment {
                offset: 0x2e10,
                file_size: 0x200,
                address: 0x3e10,
            },
        ]);
        assert_eq!(map.svma_for_file_offset(0x1234), Some(0x1234));
        assert_eq!(map.svma_for_file_offset(0x2e20), Some(0x3e20));
        assert_eq!(map.file_offset_for_svma(0x3e20), Some(0x2e20));
        let m = MappingRange {
            start: 0x5555_5555_5000,
            end: 0x5555_5555_7000,
            pgoff: 0x1000,
        };
        assert_eq!(
            map.svma_for_file_offset(m.file_offset(0x5555_5555_5234)),
            Some(0x1234)
        );
    }

    /// Found by the `symbolize` fuzz target: a segment whose `p_offset + p_filesz` overflows
    /// made the lookup panic (fuzz/corpus/symbolize/crash-c1f5fb88...).
    #[test]
    fn hostile_segment_ranges_do_not_overflow() {
        let map = SegmentMap::from_segments(vec![
            Segment {
                offset: 0x1000,
                file_size: 0x1000,
                address: u64::MAX - 0x10,
            },
            Segment {
                offset: u64::MAX - 0x10,
                file_size: 0x1000,
                address: 0x1000,
            },
        ]);
        assert_eq!(map.svma_for_file_offset(u64::MAX - 8), Some(0x1008));
        assert_eq!(map.svma_for_file_offset(0x800), Some(u64::MAX - 0x810));
        assert_eq!(map.file_offset_for_svma(0x1008), Some(u64::MAX - 8));
        assert_eq!(map.file_offset_for_svma(0x1020), None);
        assert_eq!(map.file_offset_for_svma(u64::MAX - 8), Some(0x1008));
        let m = MappingRange {
            start: 0x1000,
            end: 0x2000,
            pgoff: u64::MAX,
        };
        assert_eq!(m.file_offset(0x1001), 0);
    }

    #[test]
    fn reads_segments_of_the_test_binary() {
        let path = std::env::current_exe().unwrap();
        let data = std::fs::read(path).unwrap();
        let file = object::File::parse(&*data).unwrap();
        let map = SegmentMap::from_object(&file);
        let entry = file.entry();
        let off = map.file_offset_for_svma(entry).unwrap();
        assert_eq!(map.svma_for_file_offset(off), Some(entry));
    }
}
