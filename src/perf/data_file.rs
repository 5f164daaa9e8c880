//! A reader of the `perf.data` files that `perf record` writes, without the perf binary.
//!
//! [`read_perf_data`] memory-maps the file, parses its header, event attributes and feature
//! sections, and streams the kernel records of the data section (samples, MMAP/MMAP2, COMM,
//! FORK, EXIT, LOST, ...) through the same [`parse_record`] the live sampler uses, so a
//! consumer such as the stack collector cannot tell the two sources apart. User records that
//! perf itself writes (`FINISHED_ROUND`, `ID_INDEX`, `THREAD_MAP`, `COMPRESSED`, ...) are consumed
//! here and not delivered.
//!
//! Ordering follows perf's `FINISHED_ROUND` rule: when the marker of round N is read, every
//! queued record not later than the newest timestamp seen before the marker of round N-1 is
//! delivered in time order (records of equal time in file order); the rest are delivered at the
//! end of the file. Only offsets are queued, never copies: records stay in the mapping (or, for
//! `perf record -z` files, in the decompressed buffer, which is trimmed after every round). When
//! the first event lacks `sample_id_all` or `PERF_SAMPLE_TIME`, records are delivered in file
//! order, as perf does.
//!
//! Both regular files and pipe-mode streams (`perf record -o -`) are read. Only files written on
//! a machine of the reader's byte order are supported (the others are refused in one line).
//!
//! # Hostile and damaged files
//!
//! Memory stays bounded whatever the file says: compressed data is decoded one zstd block
//! (at most 128 KiB) at a time and parsed before the next block, and the records waiting for
//! their round (the decompressed bytes they sit in plus their queue entries) are held to
//! [`MAX_QUEUED`] bytes: past it every queued record is delivered at once, in time order, as
//! perf's ordered-events queue does when it reaches its size limit. A zstd window is at most
//! 128 MiB, so a read peaks below ~220 MiB even on a forged file.
//!
//! A problem in the record stream (a record cut by the end of a truncated file, a malformed
//! record, corrupt compressed data) stops the read there: the records before it are delivered
//! and the summary carries one warning saying where it stopped and how much was read, as
//! `perf script` salvages a damaged file. Only when nothing at all was read before it is it an
//! error. A header whose data section runs past the end of the file (a truncated copy) or whose
//! data size is 0 (a `perf record` that was killed) is read up to the end of the file, with a
//! warning; feature sections that cannot be read give a warning too.

use std::collections::VecDeque;
use std::fmt;
use std::ops::Range;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::{
    parse_record, record_kind, record_time, sample_type as st, ParseError, Record, SampleFormat,
};

mod header;
mod zstd;

use header::{Attr, Cursor, Features};

/// User record types (`enum perf_user_event_type`) handled here.
mod user_kind {
    pub const HEADER_ATTR: u32 = 64;
    pub const HEADER_TRACING_DATA: u32 = 66;
    pub const HEADER_BUILD_ID: u32 = 67;
    pub const AUXTRACE: u32 = 71;
    pub const HEADER_FEATURE: u32 = 80;
    pub const COMPRESSED: u32 = 81;
    pub const COMPRESSED2: u32 = 83;
}

/// What a perf.data file contained, besides the records delivered to the callback.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PerfDataSummary {
    /// `PERF_RECORD_SAMPLE` records delivered.
    pub samples: u64,
    /// Events the kernel reported as lost (`PERF_RECORD_LOST` and `PERF_RECORD_LOST_SAMPLES`).
    pub lost: u64,
    /// Kernel records delivered to the callback (samples included).
    pub records: u64,
    /// The data was written by `perf record -z` (zstd-compressed records).
    pub compressed: bool,
    /// One name per event, in attribute order (from `HEADER_EVENT_DESC`, else derived from the
    /// event type).
    pub event_names: Vec<String>,
    /// The build-id table: pid (`u32::MAX` for the kernel, perf's -1), build id, file name.
    pub build_ids: Vec<(u32, Vec<u8>, PathBuf)>,
    /// The `perf record` command line (`HEADER_CMDLINE`), empty if absent.
    pub cmdline: Vec<String>,
    /// The recording kernel's release (`HEADER_OSRELEASE`, `uname -r` there), if recorded.
    pub os_release: Option<String>,
    /// Samples of events other than the one chosen by the header callback, skipped.
    pub other_samples: u64,
    /// One line per problem the read worked around: a truncated file, a read stopped by a bad
    /// record (saying where, and how many records and samples came before it), unreadable
    /// feature sections. Empty for an intact file.
    pub warnings: Vec<String>,
}

/// Where in the input something was found: a file offset, or an offset in the decompressed
/// stream of a `perf record -z` file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum At {
    /// Byte offset in the file.
    File(u64),
    /// Byte offset in the decompressed record stream.
    Decompressed(u64),
}

impl At {
    fn plus(self, delta: u64) -> At {
        match self {
            At::File(o) => At::File(o.saturating_add(delta)),
            At::Decompressed(o) => At::Decompressed(o.saturating_add(delta)),
        }
    }
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            At::File(o) => write!(f, "byte {o}"),
            At::Decompressed(o) => write!(f, "byte {o} of the decompressed data"),
        }
    }
}

/// Why a perf.data file could not be read. Every parse error names where it failed.
#[derive(Debug, thiserror::Error)]
pub enum PerfDataError {
    /// The file could not be opened or mapped.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file does not start with the `PERFILE2` magic.
    #[error("not a perf.data file: bad magic")]
    NotPerfData,
    /// A valid file using something this reader does not implement.
    #[error("perf.data: unsupported {what} at {at}")]
    Unsupported { what: String, at: At },
    /// A part of the file is truncated or inconsistent.
    #[error("perf.data: bad {section} at {at}: {detail}")]
    Malformed {
        section: &'static str,
        at: At,
        detail: String,
    },
    /// A kernel record whose body does not match its event's format.
    #[error("perf.data: bad record at {at}: {source}")]
    Record {
        at: At,
        #[source]
        source: ParseError,
    },
}

/// What the header of a perf.data file says, shown to the caller of [`read_perf_data_with`]
/// before the first record is delivered.
#[derive(Debug)]
#[non_exhaustive]
pub struct PerfDataHeader<'a> {
    /// One name per event, in attribute order (see [`PerfDataSummary::event_names`]).
    pub event_names: &'a [String],
    /// The build-id table read so far: pid, build id, file name. In a regular file it is
    /// complete; a pipe-mode stream may send more entries after its records.
    pub build_ids: &'a [(u32, Vec<u8>, PathBuf)],
    /// The recording kernel's release, if recorded.
    pub os_release: Option<&'a str>,
}

/// The callback shown the header: it answers with the event whose samples are wanted.
pub type OnHeader<'c> = dyn FnMut(&PerfDataHeader<'_>) -> Option<usize> + 'c;

/// Streams every kernel record of the perf.data file at `path` to `on_record`, in timestamp
/// order (see the module doc), with the [`SampleFormat`] of the record's event.
pub fn read_perf_data(
    path: &Path,
    on_record: &mut dyn FnMut(&SampleFormat, Record<'_>),
) -> Result<PerfDataSummary, PerfDataError> {
    read_perf_data_with(path, &mut |_| None, on_record)
}

/// [`read_perf_data`], first showing the header to `on_header` (once, before the first record),
/// which answers with the index of the one event whose samples are wanted (`None`: all). The
/// other events' samples are skipped and counted in [`PerfDataSummary::other_samples`]; records
/// that are not samples (maps, names) are delivered whatever their event.
pub fn read_perf_data_with(
    path: &Path,
    on_header: &mut dyn FnMut(&PerfDataHeader<'_>) -> Option<usize>,
    on_record: &mut dyn FnMut(&SampleFormat, Record<'_>),
) -> Result<PerfDataSummary, PerfDataError> {
    let io_error = |source| PerfDataError::Io {
        path: path.to_path_buf(),
        source,
    };
    // O_NONBLOCK: a FIFO named as the input must not hang the open; it is refused below.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(io_error)?;
    let meta = file.metadata().map_err(io_error)?;
    if meta.is_dir() {
        return Err(PerfDataError::Unsupported {
            what: "perf.data directory (perf record --threads)".into(),
            at: At::File(0),
        });
    }
    if !meta.is_file() {
        return Err(PerfDataError::Unsupported {
            what: "input that is not a regular file (save the stream to a file first)".into(),
            at: At::File(0),
        });
    }
    if meta.len() == 0 {
        return Err(PerfDataError::NotPerfData);
    }
    // SAFETY: the mapping is read-only and private to this call. perf.data files are not
    // modified while they are read; if another process truncated the file meanwhile, reads
    // past the new end would fault, as they would for any mmap-based reader (perf included).
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io_error)?;
    // Pages of the file stay in the profiler's RSS once read: give back what is done with, so a
    // multi-gigabyte recording does not show as a multi-gigabyte process.
    let release = |range: Range<usize>| {
        #[cfg(unix)]
        // SAFETY: `map` is a read-only mapping of a file (shared, as memmap2 maps it) that is
        // never written through it: MADV_DONTNEED only drops our page mappings, and a later
        // read of the range faults the same bytes back in from the file. No reference into the
        // range is invalidated.
        unsafe {
            let _ = map.unchecked_advise_range(
                memmap2::UncheckedAdvice::DontNeed,
                range.start,
                range.len(),
            );
        }
        #[cfg(not(unix))]
        let _ = range;
    };
    read_data(&map, Some(&release), on_header, on_record)
}

/// [`read_perf_data`] over bytes already in memory.
pub fn read_perf_data_bytes(
    bytes: &[u8],
    on_record: &mut dyn FnMut(&SampleFormat, Record<'_>),
) -> Result<PerfDataSummary, PerfDataError> {
    read_data(bytes, None, &mut |_| None, on_record)
}

/// How much of the file is read between two calls of the release callback. Pages read since the
/// last call stay in the RSS: at 32 MiB the peak was 48 MiB for a 105 MB file and 64 MiB for
/// 1 GB; at 4 MiB, 31 and 32 MiB.
const RELEASE_STEP: usize = 4 << 20;

/// Most bytes held for records waiting for their round: the decompressed bytes they sit in
/// plus their queue entries. Real files hold a few MiB between two rounds.
pub const MAX_QUEUED: usize = 64 << 20;

/// Reads `bytes`; `release`, if given, is told of file ranges no longer needed.
fn read_data(
    bytes: &[u8],
    release: Option<&dyn Fn(Range<usize>)>,
    on_header: &mut dyn FnMut(&PerfDataHeader<'_>) -> Option<usize>,
    on_record: &mut dyn FnMut(&SampleFormat, Record<'_>),
) -> Result<PerfDataSummary, PerfDataError> {
    let (data, attrs, features, warnings) = match header::detect(bytes)? {
        header::Layout::File | header::Layout::FileV1 => {
            let h = header::parse_file_header(bytes)?;
            (h.data, h.attrs, h.features, h.warnings)
        }
        header::Layout::Pipe => (16..bytes.len(), Vec::new(), Features::default(), Vec::new()),
    };
    let mut reader = Reader {
        map: bytes,
        events: Events::new(attrs),
        features,
        queue: Queue::default(),
        arena: Arena::default(),
        zstd: None,
        markers: VecDeque::new(),
        release,
        released: 0,
        next_release: RELEASE_STEP,
        stop: None,
        forced_flushes: 0,
        sink: Sink {
            on_record,
            on_header: Some(on_header),
            chosen: None,
            summary: PerfDataSummary {
                warnings,
                ..PerfDataSummary::default()
            },
        },
    };
    reader.run(data.start, data.end);
    reader.into_summary()
}

/// The events of the file and the map from sample ids to them.
struct Events {
    attrs: Vec<Attr>,
    /// `(id, attr index)`, sorted by id.
    ids: Vec<(u64, usize)>,
}

impl Events {
    fn new(attrs: Vec<Attr>) -> Self {
        let mut events = Events {
            attrs,
            ids: Vec::new(),
        };
        events.index_ids();
        events
    }

    fn add(&mut self, attr: Attr) {
        self.attrs.push(attr);
        self.index_ids();
    }

    fn index_ids(&mut self) {
        self.ids = (self.attrs.iter().enumerate())
            .flat_map(|(index, attr)| attr.ids.iter().map(move |&id| (id, index)))
            .collect();
        self.ids.sort_unstable();
    }

    /// True when records carry timestamps and may be reordered (perf's rule: the first event
    /// has `sample_id_all` and `PERF_SAMPLE_TIME`).
    fn ordered(&self) -> bool {
        self.attrs
            .first()
            .is_some_and(|a| a.format.sample_id_all && a.format.sample_type & st::TIME != 0)
    }

    /// The format of a kernel record, found by its sample id when there are several events.
    fn format(&self, kind: u32, body: &[u8]) -> Option<&SampleFormat> {
        self.event(kind, body).map(|(_, format)| format)
    }

    /// The index and format of the event of a kernel record.
    /// The fixed period of event `index` whose samples do not carry one (see [`Attr`]).
    fn fixed_period(&self, index: usize) -> Option<u64> {
        self.attrs.get(index)?.fixed_period
    }

    fn event(&self, kind: u32, body: &[u8]) -> Option<(usize, &SampleFormat)> {
        let first = self.attrs.first()?;
        if self.attrs.len() == 1 {
            return Some((0, &first.format));
        }
        let index = self
            .record_id(&first.format, kind, body)
            .and_then(|id| self.ids.binary_search_by_key(&id, |&(i, _)| i).ok())
            .map_or(0, |found| self.ids[found].1);
        Some((index, &self.attrs[index].format))
    }

    /// One name per event: from `HEADER_EVENT_DESC` when it names them all, else derived.
    fn names(&self, features: &Features) -> Vec<String> {
        if features.event_names.len() == self.attrs.len() {
            features.event_names.clone()
        } else {
            self.attrs.iter().map(header::fallback_name).collect()
        }
    }

    /// The sample id of a record, located as perf does with the first event's layout: counted
    /// from the start of a sample, from the end of another record's `sample_id_all` trailer.
    fn record_id(&self, first: &SampleFormat, kind: u32, body: &[u8]) -> Option<u64> {
        let t = first.sample_type;
        let count = |bits: &[u64]| bits.iter().filter(|&&b| t & b != 0).count();
        let offset = if kind == record_kind::SAMPLE {
            if t & st::IDENTIFIER != 0 {
                0
            } else if t & st::ID != 0 {
                count(&[st::IP, st::TID, st::TIME, st::ADDR]) * 8
            } else {
                return None;
            }
        } else {
            let from_end = if !first.sample_id_all {
                return None;
            } else if t & st::IDENTIFIER != 0 {
                1
            } else if t & st::ID != 0 {
                1 + count(&[st::CPU, st::STREAM_ID])
            } else {
                return None;
            };
            body.len().checked_sub(from_end * 8)?
        };
        let bytes = body.get(offset..offset + 8)?;
        Some(u64::from_ne_bytes(bytes.try_into().ok()?))
    }
}

/// A record waiting for its round to be flushed.
#[derive(Clone, Copy, Debug)]
struct Pending {
    time: u64,
    seq: u64,
    loc: Loc,
}

/// Where a record starts: in the file, or in the decompressed stream (absolute offset).
#[derive(Clone, Copy, Debug)]
enum Loc {
    File(usize),
    Decompressed(u64),
}

/// Records queued for ordering, with perf's round bookkeeping.
#[derive(Default)]
struct Queue {
    pending: Vec<Pending>,
    seq: u64,
    /// Newest timestamp queued so far.
    max_time: u64,
    /// Records up to this time are delivered at the next round marker.
    limit: u64,
}

/// Decompressed records: `bytes` holds the decompressed stream from absolute offset `base`.
#[derive(Default)]
struct Arena {
    bytes: Vec<u8>,
    base: u64,
    /// Absolute offset of the first record not yet parsed.
    parsed: u64,
}

impl Arena {
    fn end(&self) -> u64 {
        self.base + self.bytes.len() as u64
    }

    /// The bytes from absolute offset `at` on (empty if outside the buffer).
    fn from(&self, at: u64) -> &[u8] {
        usize::try_from(at.wrapping_sub(self.base))
            .ok()
            .and_then(|start| self.bytes.get(start..))
            .unwrap_or(&[])
    }

    /// Drops the bytes before `keep_from` when that frees at least half of the buffer.
    fn trim(&mut self, keep_from: u64) {
        let cut = usize::try_from(keep_from.saturating_sub(self.base)).unwrap_or(usize::MAX);
        let cut = cut.min(self.bytes.len());
        if cut > 0 && cut * 2 >= self.bytes.len() {
            self.bytes.drain(..cut);
            self.base += cut as u64;
        }
    }
}

/// The callback and the counters of what it was given.
struct Sink<'c> {
    on_record: &'c mut dyn FnMut(&SampleFormat, Record<'_>),
    /// Shown the header before the first record, then dropped.
    on_header: Option<&'c mut OnHeader<'c>>,
    /// The event whose samples are delivered (`None`: all).
    chosen: Option<usize>,
    summary: PerfDataSummary,
}

impl Sink<'_> {
    /// Parses a whole record (header included) and hands it to the callback.
    fn deliver(
        &mut self,
        events: &Events,
        features: &Features,
        record: &[u8],
        at: At,
    ) -> Result<(), PerfDataError> {
        if let Some(on_header) = self.on_header.take() {
            let names = events.names(features);
            self.chosen = on_header(&PerfDataHeader {
                event_names: &names,
                build_ids: &features.build_ids,
                os_release: features.os_release.as_deref(),
            });
        }
        let (kind, misc, body) = split_record(record);
        let Some((event, format)) = events.event(kind, body) else {
            return Err(PerfDataError::Malformed {
                section: "data section",
                at,
                detail: "record before any event attribute".into(),
            });
        };
        if kind == record_kind::SAMPLE && self.chosen.is_some_and(|c| c != event) {
            self.summary.other_samples += 1;
            return Ok(());
        }
        let mut parsed = parse_record(format, kind, misc, body)
            .map_err(|source| PerfDataError::Record { at, source })?;
        // `perf record -c N`: each sample stands for N events, as in a live recording.
        if let (Record::Sample(sample), Some(period)) = (&mut parsed, events.fixed_period(event)) {
            sample.period = period;
        }
        let summary = &mut self.summary;
        summary.records += 1;
        match parsed {
            Record::Sample(_) => summary.samples += 1,
            Record::Lost { lost, .. } | Record::LostSamples { lost } => {
                summary.lost = summary.lost.saturating_add(lost)
            }
            _ => {}
        }
        (self.on_record)(format, parsed);
        Ok(())
    }
}

/// Splits a record whose header was validated: `(type, misc, body)`.
fn split_record(record: &[u8]) -> (u32, u16, &[u8]) {
    let word = |i: usize| {
        record
            .get(i..i + 2)
            .map_or(0, |b| u16::from_ne_bytes([b[0], b[1]]))
    };
    let kind = u32::from(word(0)) | u32::from(word(2)) << 16;
    let kind = if cfg!(target_endian = "little") {
        kind
    } else {
        u32::from(word(0)) << 16 | u32::from(word(2))
    };
    (kind, word(4), record.get(8..).unwrap_or(&[]))
}

/// Reads the header of the record at `pos` of `bytes`: `Ok(None)` if fewer than a whole record
/// remains and `partial_ok`, else an error for a bad or truncated record.
fn record_at(
    bytes: &[u8],
    pos: usize,
    at: At,
    partial_ok: bool,
) -> Result<Option<(u32, u16, usize)>, PerfDataError> {
    let rest = bytes.get(pos..).unwrap_or(&[]);
    let mut c = Cursor::new(rest, at, "data section");
    if rest.len() < 8 && partial_ok {
        return Ok(None);
    }
    let (kind, misc, size) = header::read_event_header(&mut c)?;
    if size > rest.len() {
        if partial_ok {
            return Ok(None);
        }
        return Err(c.error(format!(
            "record of type {kind} and size {size} runs past the end of the data ({} bytes left)",
            rest.len()
        )));
    }
    Ok(Some((kind, misc, size)))
}

/// The state of one read.
struct Reader<'m, 'c> {
    map: &'m [u8],
    events: Events,
    features: Features,
    queue: Queue,
    arena: Arena,
    zstd: Option<zstd::ZstdStream>,
    /// `FINISHED_ROUND` markers read after compressed data the arena has not yet parsed up to:
    /// their positions in the decompressed stream.
    markers: VecDeque<u64>,
    /// Told of file ranges no record still needs, see [`Reader::release_done`].
    release: Option<&'m dyn Fn(Range<usize>)>,
    /// The file is released up to here.
    released: usize,
    /// Where the next release check happens.
    next_release: usize,
    /// The problem that stopped the read, if any.
    stop: Option<PerfDataError>,
    /// Times the queue reached [`MAX_QUEUED`] and was delivered before its round.
    forced_flushes: u64,
    sink: Sink<'c>,
}

impl Reader<'_, '_> {
    /// Reads the record stream in `start..end` of the file, then delivers everything queued. A
    /// problem stops the reading and is kept in `stop`; what was queued before it is delivered.
    fn run(&mut self, start: usize, end: usize) {
        if let Err(e) = self.read_records(start, end) {
            // The compressed records before the problem were whole: what the decoder still
            // holds of them is good (unless the compressed data itself is what failed).
            let zstd_failed = matches!(
                e,
                PerfDataError::Malformed {
                    section: "compressed data",
                    ..
                }
            );
            if !zstd_failed && self.stop.is_none() {
                let _ = self.finish_zstd(At::File(end as u64));
            }
            self.stop.get_or_insert(e);
        }
        while self.markers.pop_front().is_some() {
            self.finished_round();
        }
        self.flush(u64::MAX);
    }

    /// Reads the record stream until its end, an error, or a record that failed to deliver.
    fn read_records(&mut self, start: usize, end: usize) -> Result<(), PerfDataError> {
        let map = self.map;
        let data = &map[..end];
        let mut pos = start;
        while pos < end && self.stop.is_none() {
            // Checked every RELEASE_STEP bytes read (not "when RELEASE_STEP bytes are
            // unreleased": a file without round markers keeps its oldest record queued, and the
            // scan of the queue would run at every record).
            if pos >= self.next_release {
                self.release_done(pos);
                self.next_release = pos.saturating_add(RELEASE_STEP);
            }
            let at = At::File(pos as u64);
            let (kind, misc, size) = match record_at(data, pos, at, false) {
                Ok(Some(header)) => header,
                Ok(None) => break,
                Err(e) => {
                    self.salvage_cut_record(&data[pos..]);
                    return Err(e);
                }
            };
            let extra = self.raw_record(pos, kind, misc, &data[pos + 8..pos + size])?;
            pos = pos
                .checked_add(size)
                .and_then(|p| p.checked_add(extra))
                .filter(|&p| p <= end)
                .ok_or_else(|| PerfDataError::Malformed {
                    section: "data section",
                    at,
                    detail: format!(
                        "payload of {extra} bytes after record of type {kind} runs past the end"
                    ),
                })?;
        }
        if self.stop.is_some() {
            return Ok(());
        }
        self.finish_zstd(At::File(end as u64))
    }

    /// A COMPRESSED record cut by the end of a truncated file: its complete zstd blocks still
    /// decode (one record can hold megabytes of samples), so they are given to the decoder.
    fn salvage_cut_record(&mut self, rest: &[u8]) {
        let Some(kind) = rest
            .get(..4)
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        else {
            return;
        };
        let skip = match kind {
            user_kind::COMPRESSED => 8,
            user_kind::COMPRESSED2 => 16,
            _ => return,
        };
        if let Some(payload) = rest.get(skip..) {
            let z = self.zstd.get_or_insert_with(zstd::ZstdStream::new);
            z.push(payload);
            self.features.compressed = true;
            let _ = self.decompress(At::File(0));
        }
    }

    /// Ends the compressed stream: parses what the decoder still holds.
    fn finish_zstd(&mut self, at: At) -> Result<(), PerfDataError> {
        if let Some(z) = &mut self.zstd {
            z.finish(at)?;
            self.decompress(at)?;
            if self.arena.parsed < self.arena.end() {
                return Err(PerfDataError::Malformed {
                    section: "compressed data",
                    at: At::Decompressed(self.arena.parsed),
                    detail: "the decompressed stream ends inside a record".into(),
                });
            }
        }
        Ok(())
    }

    /// Decodes the queued compressed input one block at a time, parsing the records of each
    /// block before decoding the next, so that memory stays bounded.
    fn decompress(&mut self, at: At) -> Result<(), PerfDataError> {
        while let Some(z) = &mut self.zstd {
            if !z.step(&mut self.arena.bytes, at)? {
                break;
            }
            self.parse_decompressed()?;
            if self.stop.is_some() {
                break;
            }
        }
        Ok(())
    }

    /// Keeps the queued records within [`MAX_QUEUED`] bytes: drops decompressed bytes no queued
    /// record needs, and delivers the whole queue when it is still too large.
    fn bound_queue(&mut self) {
        let pending = &self.queue.pending;
        if pending.is_empty() {
            self.arena.trim(self.arena.parsed);
        }
        let queued = self.arena.bytes.len() + pending.len() * std::mem::size_of::<Pending>();
        if queued > MAX_QUEUED {
            self.forced_flushes += 1;
            self.flush(u64::MAX);
        }
    }

    /// Releases the file up to the oldest record still queued, or `pos` (the next to read).
    fn release_done(&mut self, pos: usize) {
        let Some(release) = self.release else {
            return;
        };
        let oldest = (self.queue.pending.iter())
            .filter_map(|p| match p.loc {
                Loc::File(at) => Some(at),
                Loc::Decompressed(_) => None,
            })
            .min()
            .unwrap_or(pos)
            .min(pos);
        // Page-aligned (memmap2 aligns down on larger pages: a page dropped early is only read
        // again from the file).
        let upto = oldest & !0xfff;
        if upto > self.released {
            release(self.released..upto);
            self.released = upto;
        }
    }

    /// Handles one record of the file's data section; returns the size of a payload that
    /// follows the record (AUXTRACE, TRACING_DATA), which the caller skips.
    fn raw_record(
        &mut self,
        pos: usize,
        kind: u32,
        misc: u16,
        body: &[u8],
    ) -> Result<usize, PerfDataError> {
        let at = At::File(pos as u64 + 8);
        match kind {
            k if k < record_kind::USER_TYPE_START => self.kernel_record(pos, kind, body)?,
            record_kind::FINISHED_ROUND => {
                let position = self.zstd.as_ref().map_or(0, |z| z.decoded());
                if self.markers.is_empty() && position <= self.arena.parsed {
                    self.finished_round();
                } else {
                    self.markers.push_back(position);
                }
            }
            user_kind::COMPRESSED | user_kind::COMPRESSED2 => {
                let payload = compressed_payload(kind, body, at)?;
                let z = self.zstd.get_or_insert_with(zstd::ZstdStream::new);
                z.push(payload);
                self.features.compressed = true;
                self.decompress(at)?;
            }
            user_kind::HEADER_ATTR => self.pipe_attr(body, at)?,
            user_kind::HEADER_FEATURE => {
                let mut c = Cursor::new(body, at, "feature record");
                let id = c.u64("feature id")?;
                header::parse_feature(&mut self.features, id, &body[8..], at.plus(8))?;
            }
            user_kind::HEADER_BUILD_ID => {
                let entry = header::parse_build_id(body, at, misc)?;
                self.features.build_ids.push(entry);
            }
            user_kind::AUXTRACE => {
                let size = Cursor::new(body, at, "auxtrace record").u64("size")?;
                return usize::try_from(size).map_err(|_| overflow(at));
            }
            user_kind::HEADER_TRACING_DATA => {
                let size = Cursor::new(body, at, "tracing data record").u32("size")?;
                return Ok((size as usize).next_multiple_of(8));
            }
            _ => {}
        }
        Ok(0)
    }

    /// A pipe-mode `HEADER_ATTR` record: a `perf_event_attr` followed by its ids.
    fn pipe_attr(&mut self, body: &[u8], at: At) -> Result<(), PerfDataError> {
        let mut c = Cursor::new(body, at, "attr record");
        c.u32("attr type")?;
        let size = match c.u32("attr size")? as usize {
            0 => 64,
            size => size,
        };
        c = Cursor::new(body, at, "attr record");
        let attr = c.bytes(size, "perf_event_attr")?;
        let mut ids = Vec::new();
        while c.remaining() >= 8 {
            ids.push(c.u64("id")?);
        }
        self.events.add(header::parse_attr(attr, ids));
        Ok(())
    }

    /// Parses the complete records of the decompressed buffer, honouring pending markers.
    fn parse_decompressed(&mut self) -> Result<(), PerfDataError> {
        loop {
            while self
                .markers
                .front()
                .is_some_and(|&m| m <= self.arena.parsed)
            {
                self.markers.pop_front();
                self.finished_round();
            }
            let start = self.arena.parsed;
            let at = At::Decompressed(start);
            let Some((kind, _, size)) = record_at(self.arena.from(start), 0, at, true)? else {
                return Ok(());
            };
            match kind {
                k if k < record_kind::USER_TYPE_START => {
                    let body = &self.arena.from(start)[8..size];
                    match self.time_of(kind, body) {
                        Some(time) => self.queue_record(time, Loc::Decompressed(start)),
                        None => {
                            let record = &self.arena.from(start)[..size];
                            self.sink
                                .deliver(&self.events, &self.features, record, at)?;
                        }
                    }
                }
                record_kind::FINISHED_ROUND => self.finished_round(),
                _ => {}
            }
            self.arena.parsed = start + size as u64;
            self.bound_queue();
        }
    }

    /// A kernel record in the file: queued by time, or delivered now if unordered.
    fn kernel_record(&mut self, pos: usize, kind: u32, body: &[u8]) -> Result<(), PerfDataError> {
        match self.time_of(kind, body) {
            Some(time) => {
                self.queue_record(time, Loc::File(pos));
                if self.queue.pending.len() * std::mem::size_of::<Pending>() > MAX_QUEUED {
                    self.forced_flushes += 1;
                    self.flush(u64::MAX);
                }
                Ok(())
            }
            None => {
                let record = &self.map[pos..pos + 8 + body.len()];
                self.sink
                    .deliver(&self.events, &self.features, record, At::File(pos as u64))
            }
        }
    }

    /// The time to order a record by, `None` to deliver it at once.
    fn time_of(&self, kind: u32, body: &[u8]) -> Option<u64> {
        if !self.events.ordered() {
            return None;
        }
        record_time(self.events.format(kind, body)?, kind, body)
    }

    fn queue_record(&mut self, time: u64, loc: Loc) {
        let q = &mut self.queue;
        q.pending.push(Pending {
            time,
            seq: q.seq,
            loc,
        });
        q.seq += 1;
        q.max_time = q.max_time.max(time);
    }

    /// A `FINISHED_ROUND` marker: deliver up to the previous round's newest time.
    fn finished_round(&mut self) {
        self.flush(self.queue.limit);
        self.queue.limit = self.queue.max_time;
    }

    /// Delivers, in time order, every queued record not later than `limit`. A record that does
    /// not parse is dropped and stops the read (see `stop`); the others are still delivered.
    fn flush(&mut self, limit: u64) {
        let pending = &mut self.queue.pending;
        pending.sort_unstable_by_key(|p| (p.time, p.seq));
        let count = pending.partition_point(|p| p.time <= limit);
        for p in &pending[..count] {
            let (record, at) = match p.loc {
                Loc::File(pos) => (self.map.get(pos..).unwrap_or(&[]), At::File(pos as u64)),
                Loc::Decompressed(start) => (self.arena.from(start), At::Decompressed(start)),
            };
            let size = record
                .get(6..8)
                .map_or(0, |b| usize::from(u16::from_ne_bytes([b[0], b[1]])));
            let record = record.get(..size).unwrap_or(&[]);
            if let Err(e) = (self.sink).deliver(&self.events, &self.features, record, at) {
                self.stop.get_or_insert(e);
            }
        }
        pending.drain(..count);
        let oldest = (pending.iter())
            .filter_map(|p| match p.loc {
                Loc::Decompressed(start) => Some(start),
                Loc::File(_) => None,
            })
            .min()
            .unwrap_or(u64::MAX);
        self.arena.trim(oldest.min(self.arena.parsed));
    }

    /// The summary, with a warning if the read stopped early; the error itself if it stopped
    /// before any sample.
    fn into_summary(self) -> Result<PerfDataSummary, PerfDataError> {
        let mut summary = self.sink.summary;
        if let Some(stop) = self.stop {
            if summary.samples == 0 {
                return Err(stop);
            }
            summary.warnings.push(format!(
                "{stop}; read stopped there, after {} records ({} samples)",
                summary.records, summary.samples
            ));
        }
        if self.forced_flushes > 0 {
            summary.warnings.push(format!(
                "more than {} MiB of records waited for a round marker; they were delivered \
                 early {} times, so a few may be out of time order",
                MAX_QUEUED >> 20,
                self.forced_flushes
            ));
        }
        summary.event_names = self.events.names(&self.features);
        let features = self.features;
        summary.compressed = features.compressed;
        summary.build_ids = features.build_ids;
        summary.cmdline = features.cmdline;
        summary.os_release = features.os_release;
        Ok(summary)
    }
}

/// The zstd bytes of a COMPRESSED (all of the body) or COMPRESSED2 (u64 size, then data) record.
fn compressed_payload(kind: u32, body: &[u8], at: At) -> Result<&[u8], PerfDataError> {
    if kind == user_kind::COMPRESSED {
        return Ok(body);
    }
    let mut c = Cursor::new(body, at, "compressed2 record");
    let size = c.u64("data size")?;
    let size = usize::try_from(size).map_err(|_| overflow(at))?;
    c.bytes(size, "compressed data")
}

fn overflow(at: At) -> PerfDataError {
    PerfDataError::Malformed {
        section: "data section",
        at,
        detail: "size does not fit in memory".into(),
    }
}
