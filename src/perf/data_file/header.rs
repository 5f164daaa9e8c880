//! The parts of a perf.data file around the record stream: the file header, the attribute
//! section (one `perf_event_attr` plus an id list per event) and the feature sections after the
//! data section (`HEADER_BUILD_ID`, `HEADER_CMDLINE`, `HEADER_EVENT_DESC`, `HEADER_COMPRESSED`).
//!
//! Layouts follow linux `tools/perf/util/header.h` and `Documentation/perf.data-file-format.txt`.
//! Every read is bounds-checked and every error names the absolute byte offset it failed at.

use std::ops::Range;
use std::path::PathBuf;

use super::{At, PerfDataError};
use crate::perf::SampleFormat;

/// `PERFILE2` read as a native-endian u64 from a file written on a machine of the same endianness.
const MAGIC: u64 = u64::from_ne_bytes(*b"PERFILE2");
/// The legacy (version 1) magic of perf 3.x and older, the same bytes in either byte order.
const MAGIC_V1: u64 = u64::from_ne_bytes(*b"PERFFILE");
/// A version 1 header may end before the feature bitmap (`offsetof(adds_features)`).
const FILE_HEADER_SIZE_V1: u64 = 72;
/// Size of `struct perf_file_header` in a regular file.
const FILE_HEADER_SIZE: u64 = 104;
/// Size of `struct perf_pipe_file_header` (magic + size) in a pipe-mode file.
const PIPE_HEADER_SIZE: u64 = 16;
/// `PERF_ATTR_SIZE_VER0`: the smallest `perf_event_attr`.
const ATTR_SIZE_VER0: usize = 64;
/// `struct perf_file_section`: offset and size.
const SECTION_SIZE: usize = 16;
/// Number of bits of `adds_features`.
const FEATURE_BITS: usize = 256;

/// Feature bits (`enum HEADER_*` in perf's header.h) that this reader uses.
pub(super) mod feature {
    pub const BUILD_ID: u64 = 2;
    pub const HOSTNAME: u64 = 3;
    pub const OSRELEASE: u64 = 4;
    pub const CMDLINE: u64 = 11;
    pub const EVENT_DESC: u64 = 12;
    pub const COMPRESSED: u64 = 27;
}

/// One event of the file: how to parse its records, and which sample ids belong to it.
#[derive(Clone, Debug)]
pub(super) struct Attr {
    pub format: SampleFormat,
    pub kind: u32,
    pub config: u64,
    pub ids: Vec<u64>,
    /// The fixed sampling period (`perf record -c N`) when samples do not carry theirs: not a
    /// frequency, and `PERF_SAMPLE_PERIOD` unset (perf leaves it out for `-c`).
    pub fixed_period: Option<u64>,
}

/// What the feature sections (or pipe-mode feature records) say.
#[derive(Clone, Debug, Default)]
pub(super) struct Features {
    pub event_names: Vec<String>,
    pub build_ids: Vec<(u32, Vec<u8>, PathBuf)>,
    pub cmdline: Vec<String>,
    pub compressed: bool,
    /// `HEADER_OSRELEASE`: the recording kernel's `uname -r`.
    pub os_release: Option<String>,
}

/// The parsed file header and everything it points to, except the records.
#[derive(Debug)]
pub(super) struct FileHeader {
    /// Byte range of the record stream.
    pub data: Range<usize>,
    pub attrs: Vec<Attr>,
    pub features: Features,
    /// What was worked around: a truncated file, a data size of 0, bad feature sections.
    pub warnings: Vec<String>,
}

/// A bounds-checked reader over a byte range of the file, reporting absolute offsets.
pub(super) struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Absolute position of `bytes[0]`, for error messages.
    base: At,
    section: &'static str,
}

impl<'a> Cursor<'a> {
    pub fn new(bytes: &'a [u8], base: At, section: &'static str) -> Self {
        Cursor {
            bytes,
            pos: 0,
            base,
            section,
        }
    }

    pub fn error(&self, detail: impl Into<String>) -> PerfDataError {
        PerfDataError::Malformed {
            section: self.section,
            at: self.base.plus(self.pos as u64),
            detail: detail.into(),
        }
    }

    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    pub fn bytes(&mut self, len: usize, what: &str) -> Result<&'a [u8], PerfDataError> {
        let slice = self
            .pos
            .checked_add(len)
            .and_then(|end| self.bytes.get(self.pos..end))
            .ok_or_else(|| {
                self.error(format!(
                    "{what} needs {len} bytes, only {} left",
                    self.remaining()
                ))
            })?;
        self.pos += len;
        Ok(slice)
    }

    pub fn u32(&mut self, what: &str) -> Result<u32, PerfDataError> {
        let b = self.bytes(4, what)?;
        Ok(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64(&mut self, what: &str) -> Result<u64, PerfDataError> {
        let b = self.bytes(8, what)?;
        let mut word = [0u8; 8];
        word.copy_from_slice(b);
        Ok(u64::from_ne_bytes(word))
    }

    /// A `struct perf_file_section`, checked to lie inside a file of `file_len` bytes.
    fn section(&mut self, what: &str, file_len: usize) -> Result<Range<usize>, PerfDataError> {
        let at = self.pos;
        let (offset, size) = (self.u64(what)?, self.u64(what)?);
        offset
            .checked_add(size)
            .filter(|&end| end <= file_len as u64)
            .map(|end| offset as usize..end as usize)
            .ok_or_else(|| {
                self.pos = at;
                self.error(format!(
                    "{what} [{offset}, +{size}) lies beyond the end of the {file_len}-byte file"
                ))
            })
    }

    /// A perf header string: a u32 length, then that many bytes, NUL-padded.
    pub fn string(&mut self, what: &str) -> Result<String, PerfDataError> {
        let len = self.u32(what)? as usize;
        let raw = self.bytes(len, what)?;
        let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        Ok(String::from_utf8_lossy(&raw[..end]).into_owned())
    }
}

/// Reads a u64 at `offset` of `bytes`, or 0 if it does not fit (fields past a short attr).
fn word_at(bytes: &[u8], offset: usize) -> u64 {
    bytes.get(offset..offset + 8).map_or(0, |b| {
        u64::from_ne_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
    })
}

/// Parses the fields of a `perf_event_attr` that matter here. Missing trailing fields are zero.
pub(super) fn parse_attr(bytes: &[u8], ids: Vec<u64>) -> Attr {
    let flags = word_at(bytes, 40);
    let sample_type = word_at(bytes, 24);
    let freq = flags & (1 << 10) != 0;
    let period = word_at(bytes, 16);
    let fixed_period =
        (!freq && sample_type & super::st::PERIOD == 0 && period > 0).then_some(period);
    Attr {
        fixed_period,
        format: SampleFormat {
            sample_type: word_at(bytes, 24),
            read_format: word_at(bytes, 32),
            sample_id_all: flags & (1 << 18) != 0,
            branch_sample_type: word_at(bytes, 72),
            sample_regs_user: word_at(bytes, 80),
        },
        kind: word_at(bytes, 0) as u32,
        config: word_at(bytes, 8),
        ids,
    }
}

/// What the magic and the header size say about a file.
pub(super) enum Layout {
    File,
    Pipe,
    /// A `PERFFILE` (version 1) file of perf 3.x or older: the same layout, the feature bitmap
    /// possibly missing or (before `HEADER_HOSTNAME` existed) valid only for the build-id bit.
    FileV1,
}

/// Checks the magic and tells a regular file from a pipe-mode stream.
pub(super) fn detect(map: &[u8]) -> Result<Layout, PerfDataError> {
    let mut c = Cursor::new(map, At::File(0), "file header");
    let magic = c.u64("magic").map_err(|_| PerfDataError::NotPerfData)?;
    if magic == MAGIC.swap_bytes() {
        return Err(PerfDataError::Unsupported {
            what: "perf.data written on a machine of the other byte order".into(),
            at: At::File(0),
        });
    }
    if magic == MAGIC_V1 {
        return match c.u64("header size")? {
            FILE_HEADER_SIZE | FILE_HEADER_SIZE_V1 => Ok(Layout::FileV1),
            other => Err(PerfDataError::Unsupported {
                what: format!(
                    "legacy PERFFILE header of {other} bytes (convert the file with perf 3.0 or \
                     later: `perf inject -i OLD -o NEW` writes the current PERFILE2 format)"
                ),
                at: At::File(8),
            }),
        };
    }
    if magic != MAGIC {
        return Err(PerfDataError::NotPerfData);
    }
    match c.u64("header size")? {
        FILE_HEADER_SIZE => Ok(Layout::File),
        PIPE_HEADER_SIZE => Ok(Layout::Pipe),
        other => Err(PerfDataError::Malformed {
            section: "file header",
            at: At::File(8),
            detail: format!(
                "header size {other}, expected {FILE_HEADER_SIZE} or {PIPE_HEADER_SIZE}"
            ),
        }),
    }
}

/// Parses the header of a regular (seekable) perf.data file.
pub(super) fn parse_file_header(map: &[u8]) -> Result<FileHeader, PerfDataError> {
    let mut c = Cursor::new(map, At::File(0), "file header");
    c.bytes(8, "magic")?;
    let header_size = c.u64("header size")?;
    let attr_size = c.u64("attr_size")?;
    let attrs = c.section("attrs section", map.len())?;
    let (data, mut warnings) = data_section(&mut c, map.len())?;
    c.section("event_types section", map.len())?;
    let mut bitmap = [0u8; FEATURE_BITS / 8];
    if header_size == FILE_HEADER_SIZE {
        bitmap.copy_from_slice(c.bytes(FEATURE_BITS / 8, "feature bitmap")?);
    }
    // perf's rule for version 1 files: before HEADER_HOSTNAME existed, the only feature
    // section a file could have was the build-id table (the other bits may be garbage).
    let has = |bit: u64| bitmap[bit as usize / 8] & (1 << (bit % 8)) != 0;
    if map.starts_with(b"PERFFILE") && !has(feature::HOSTNAME) {
        let build_ids = has(feature::BUILD_ID);
        bitmap = [0; FEATURE_BITS / 8];
        if build_ids {
            bitmap[0] = 1 << feature::BUILD_ID;
        }
    }
    let bitmap = &bitmap[..];
    let attrs = parse_attrs(map, attrs, attr_size)?;
    // The feature sections follow the data: a truncated or unfinished file has none.
    let features = if !warnings.is_empty() {
        Features::default()
    } else {
        parse_feature_sections(map, data.end, bitmap).unwrap_or_else(|e| {
            warnings.push(format!(
                "{e}; the feature sections are ignored (no event names, build ids or command line)"
            ));
            Features::default()
        })
    };
    Ok(FileHeader {
        data,
        attrs,
        features,
        warnings,
    })
}

/// The data section of the file header. A size of 0 (`perf record` killed before it could
/// write the header again) or a section that runs past the end of the file (a truncated copy)
/// is read up to the end of the file, with a warning.
fn data_section(
    c: &mut Cursor<'_>,
    file_len: usize,
) -> Result<(Range<usize>, Vec<String>), PerfDataError> {
    let at = c.pos;
    let (offset, size) = (c.u64("data section")?, c.u64("data section")?);
    let file_len64 = file_len as u64;
    if offset < FILE_HEADER_SIZE || offset > file_len64 {
        c.pos = at;
        return Err(c.error(format!(
            "data section offset {offset} lies outside the {file_len}-byte file"
        )));
    }
    let start = offset as usize;
    let end = offset.saturating_add(size);
    let warning = if size == 0 && offset < file_len64 {
        format!(
            "perf.data header gives a data size of 0 (was `perf record` stopped properly?): \
             reading the {} bytes after the header as records",
            file_len64 - offset
        )
    } else if end > file_len64 {
        format!(
            "perf.data is truncated: its data section should end at byte {end} but the file \
             has {file_len} bytes"
        )
    } else {
        return Ok((start..end as usize, Vec::new()));
    };
    Ok((start..file_len, vec![warning]))
}

/// The attrs section: `perf_file_attr` entries of `attr_size` bytes each.
fn parse_attrs(
    map: &[u8],
    range: Range<usize>,
    attr_size: u64,
) -> Result<Vec<Attr>, PerfDataError> {
    let mut c = Cursor::new(
        &map[range.clone()],
        At::File(range.start as u64),
        "attr section",
    );
    let stride = usize::try_from(attr_size)
        .ok()
        .filter(|s| (ATTR_SIZE_VER0 + SECTION_SIZE..=4096).contains(s))
        .ok_or_else(|| {
            c.error(format!(
                "attr_size {attr_size} is not a perf_file_attr size"
            ))
        })?;
    if range.len() % stride != 0 {
        return Err(c.error(format!(
            "section size {} is not a multiple of attr_size {stride}",
            range.len()
        )));
    }
    let mut attrs = Vec::new();
    while c.remaining() > 0 {
        let attr = c.bytes(stride - SECTION_SIZE, "perf_event_attr")?;
        let ids = c.section("ids section", map.len())?;
        let mut ids_cursor =
            Cursor::new(&map[ids.clone()], At::File(ids.start as u64), "ids section");
        let mut id_list = Vec::with_capacity(ids.len() / 8);
        while ids_cursor.remaining() >= 8 {
            id_list.push(ids_cursor.u64("id")?);
        }
        attrs.push(parse_attr(attr, id_list));
    }
    if attrs.is_empty() {
        return Err(c.error("no event attributes"));
    }
    Ok(attrs)
}

/// The feature section table after the data section: one `perf_file_section` per set bit.
fn parse_feature_sections(
    map: &[u8],
    table_start: usize,
    bitmap: &[u8],
) -> Result<Features, PerfDataError> {
    let table = map.get(table_start..).unwrap_or(&[]);
    let mut c = Cursor::new(table, At::File(table_start as u64), "feature section table");
    let mut features = Features::default();
    for bit in 0..FEATURE_BITS {
        if bitmap[bit / 8] & (1 << (bit % 8)) == 0 {
            continue;
        }
        let range = c.section("feature section", map.len())?;
        let at = At::File(range.start as u64);
        parse_feature(&mut features, bit as u64, &map[range], at)?;
    }
    Ok(features)
}

/// Parses one feature's data (from a feature section or a pipe-mode `HEADER_FEATURE` record).
pub(super) fn parse_feature(
    features: &mut Features,
    feature_id: u64,
    data: &[u8],
    at: At,
) -> Result<(), PerfDataError> {
    match feature_id {
        feature::BUILD_ID => {
            let mut c = Cursor::new(data, at, "build-id feature");
            while c.remaining() > 0 {
                let (_, misc, size) = read_event_header(&mut c)?;
                let body_at = at.plus(c.pos as u64);
                let body = c.bytes(size - 8, "build-id record")?;
                let entry = parse_build_id(body, body_at, misc)?;
                features.build_ids.push(entry);
            }
        }
        feature::CMDLINE => {
            let mut c = Cursor::new(data, at, "cmdline feature");
            let nr = c.u32("argument count")?;
            for _ in 0..nr {
                features.cmdline.push(c.string("argument")?);
            }
        }
        feature::EVENT_DESC => features.event_names = parse_event_desc(data, at)?,
        feature::COMPRESSED => features.compressed = true,
        feature::OSRELEASE => {
            let mut c = Cursor::new(data, at, "osrelease feature");
            features.os_release = Some(c.string("os release")?);
        }
        _ => {}
    }
    Ok(())
}

/// Reads a `perf_event_header`, checking that its size covers at least the header.
pub(super) fn read_event_header(c: &mut Cursor<'_>) -> Result<(u32, u16, usize), PerfDataError> {
    let at = c.pos;
    let kind = c.u32("record type")?;
    let b = c.bytes(4, "record misc and size")?;
    let (misc, size) = (
        u16::from_ne_bytes([b[0], b[1]]),
        usize::from(u16::from_ne_bytes([b[2], b[3]])),
    );
    if size < 8 {
        c.pos = at;
        return Err(c.error(format!("record size {size} is smaller than its header")));
    }
    Ok((kind, misc, size))
}

/// `PERF_RECORD_MISC_BUILD_ID_SIZE`: the build-id record carries the id's length.
const MISC_BUILD_ID_SIZE: u16 = 1 << 15;

/// The body of a `perf_record_header_build_id`: pid, 20-byte id (+ size byte), file name.
pub(super) fn parse_build_id(
    body: &[u8],
    at: At,
    misc: u16,
) -> Result<(u32, Vec<u8>, PathBuf), PerfDataError> {
    let mut c = Cursor::new(body, at, "build-id record");
    let pid = c.u32("pid")?;
    let id = c.bytes(24, "build id")?;
    let len = if misc & MISC_BUILD_ID_SIZE != 0 {
        usize::from(id[20]).min(20)
    } else {
        20
    };
    let name = &body[c.pos..];
    let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
    Ok((pid, id[..len].to_vec(), bytes_to_path(name)))
}

fn bytes_to_path(bytes: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    PathBuf::from(std::ffi::OsStr::from_bytes(bytes))
}

/// `HEADER_EVENT_DESC`: u32 count, u32 attr size, then per event its attr, id count, name, ids.
fn parse_event_desc(data: &[u8], at: At) -> Result<Vec<String>, PerfDataError> {
    let mut c = Cursor::new(data, at, "event_desc feature");
    let nr = c.u32("event count")?;
    let attr_size = c.u32("attr size")? as usize;
    if attr_size < ATTR_SIZE_VER0 {
        return Err(c.error(format!("attr size {attr_size} is too small")));
    }
    let mut names = Vec::new();
    for _ in 0..nr {
        c.bytes(attr_size, "perf_event_attr")?;
        let nr_ids = c.u32("id count")? as usize;
        names.push(c.string("event name")?);
        let ids_len = nr_ids
            .checked_mul(8)
            .ok_or_else(|| c.error("id count overflows"))?;
        c.bytes(ids_len, "ids")?;
    }
    Ok(names)
}

/// A readable name for an event without `HEADER_EVENT_DESC`.
pub(super) fn fallback_name(attr: &Attr) -> String {
    const SOFTWARE: u32 = 1;
    match (attr.kind, attr.config) {
        (SOFTWARE, 0) => "cpu-clock".into(),
        (SOFTWARE, 1) => "task-clock".into(),
        (kind, config) => format!("event type {kind} config {config:#x}"),
    }
}
