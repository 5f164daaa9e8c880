//! Parsing of perf_event record bodies, for live ring buffers and perf.data files alike.
//!
//! A record is a `perf_event_header` (`type`, `misc`, `size`) followed by a body whose layout
//! depends on the type and, for samples and the `sample_id_all` trailer, on the event's
//! `sample_type`. [`parse_record`] takes the header's type and misc plus the body bytes (without the
//! 8-byte header) and returns a [`Record`] that borrows from them. It never panics: any truncated or
//! inconsistent body gives a [`ParseError`] naming the field and byte offset.
//!
//! Bodies are read with `from_ne_bytes`, so they need no particular alignment.

use super::{callchain as cc, misc, read_format, record_kind as kind, sample_type as st};
use crate::frame::Space;

/// What is needed from an event's `perf_event_attr` to parse its records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SampleFormat {
    /// `perf_event_attr.sample_type`: which fields samples carry.
    pub sample_type: u64,
    /// `perf_event_attr.sample_regs_user`: which user registers samples carry, in bit order.
    pub sample_regs_user: u64,
    /// `perf_event_attr.read_format`: the layout of `PERF_SAMPLE_READ` values.
    pub read_format: u64,
    /// `perf_event_attr.branch_sample_type`: only its `HW_INDEX` bit matters here.
    pub branch_sample_type: u64,
    /// `perf_event_attr.sample_id_all`: non-sample records end with a sample-id trailer.
    pub sample_id_all: bool,
}

/// A record that could not be parsed: which field of which record type, at which byte offset of
/// the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed perf record of type {kind}: {field} at byte {offset} does not fit in a {len}-byte body")]
pub struct ParseError {
    /// The record type (`perf_event_header.type`).
    pub kind: u32,
    /// The field being read.
    pub field: &'static str,
    /// Byte offset of that field in the body.
    pub offset: usize,
    /// Length of the body.
    pub len: usize,
}

/// One parsed record, borrowing from the record's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record<'a> {
    /// `PERF_RECORD_SAMPLE`.
    Sample(Sample<'a>),
    /// `PERF_RECORD_MMAP2`, or an old `PERF_RECORD_MMAP` (then `file_id` is `None`).
    Mmap2(Mmap2<'a>),
    /// `PERF_RECORD_COMM`: a thread was named, by `exec` when `exec` is true.
    Comm(Comm<'a>),
    /// `PERF_RECORD_FORK`: a process or thread was created.
    Fork(Fork),
    /// `PERF_RECORD_EXIT`: a process or thread exited.
    Exit(Fork),
    /// `PERF_RECORD_LOST`: the ring buffer was full and `lost` records were dropped.
    Lost { id: u64, lost: u64 },
    /// `PERF_RECORD_THROTTLE`: the kernel throttled sampling (too many interrupts).
    Throttle { time: u64, id: u64 },
    /// `PERF_RECORD_UNTHROTTLE`: sampling resumed.
    Unthrottle { time: u64, id: u64 },
    /// `PERF_RECORD_LOST_SAMPLES`: `lost` samples were dropped (e.g. by a full buffer).
    LostSamples { lost: u64 },
    /// `PERF_RECORD_SWITCH` or `PERF_RECORD_SWITCH_CPU_WIDE`: a thread left or got a CPU.
    Switch(Switch<'a>),
    /// perf.data `PERF_RECORD_FINISHED_ROUND`.
    FinishedRound,
    /// Any other record type, not parsed.
    Other { kind: u32 },
}

/// A `PERF_RECORD_SAMPLE`. Fields whose `sample_type` bit is not set are zero (or empty).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample<'a> {
    /// The sampled instruction pointer (kernel or user, see `misc`).
    pub ip: u64,
    pub pid: u32,
    pub tid: u32,
    /// Timestamp in nanoseconds of the event's clock (CLOCK_MONOTONIC for the native recorder).
    pub time: u64,
    pub cpu: u32,
    /// The weight of this sample (events since the previous one, or nanoseconds for cpu-clock).
    pub period: u64,
    /// The kernel-collected callchain, markers included.
    pub callchain: CallChain<'a>,
    /// User registers at the time of the sample; `None` if not requested or the sample hit a
    /// kernel thread.
    pub user_regs: Option<UserRegs<'a>>,
    /// The copy of the user stack starting at the user stack pointer, already cut to the size the
    /// kernel actually filled (`dyn_size`).
    pub user_stack: &'a [u8],
    /// `perf_event_header.misc`; `misc & misc::CPUMODE_MASK` is the cpumode.
    pub misc: u16,
}

/// The raw callchain of a sample: addresses and `PERF_CONTEXT_*` markers, as the kernel wrote them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallChain<'a> {
    bytes: &'a [u8],
}

/// User registers of a sample: the ABI word and one value per bit set in the mask, in bit order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserRegs<'a> {
    /// `regs_abi::ABI_32` or `regs_abi::ABI_64`.
    pub abi: u64,
    /// `sample_regs_user` of the event.
    pub mask: u64,
    values: &'a [u8],
}

/// A `PERF_RECORD_MMAP2` (or old `PERF_RECORD_MMAP`): a file was mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mmap2<'a> {
    pub pid: u32,
    pub tid: u32,
    /// Start address of the mapping.
    pub address: u64,
    pub length: u64,
    /// File offset that `address` maps.
    pub pgoff: u64,
    /// How the file is identified, if at all.
    pub file_id: MmapFileId<'a>,
    /// `PROT_*` bits. Old MMAP records have none: `PROT_READ | PROT_EXEC` is assumed unless the
    /// record is a data mapping.
    pub prot: u32,
    /// `MAP_*` bits (0 for old MMAP records).
    pub flags: u32,
    /// The path (or `[vdso]`, `//anon`, ...), without its NUL padding.
    pub filename: &'a [u8],
    /// `perf_event_header.misc`: cpumode (kernel or user mapping) and `MMAP_DATA`.
    pub misc: u16,
}

/// How a mapped file is identified by an MMAP2 record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmapFileId<'a> {
    /// Old MMAP record: only the file name.
    None,
    /// Device and inode numbers.
    Inode {
        major: u32,
        minor: u32,
        inode: u64,
        generation: u64,
    },
    /// The ELF build id (kernels that set `attr.build_id`).
    BuildId(&'a [u8]),
}

/// A `PERF_RECORD_COMM`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Comm<'a> {
    pub pid: u32,
    pub tid: u32,
    /// The new thread name, without NUL.
    pub name: &'a [u8],
    /// True when the name changed because the thread called `exec`.
    pub exec: bool,
}

/// A `PERF_RECORD_SWITCH` or `PERF_RECORD_SWITCH_CPU_WIDE`, about the thread `pid`/`tid` of the
/// `sample_id_all` trailer (zero without one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Switch<'a> {
    pub pid: u32,
    pub tid: u32,
    /// Timestamp in nanoseconds (0 without a `sample_id_all` TIME).
    pub time: u64,
    /// The thread was switched out (otherwise in).
    pub out: bool,
    /// A switch-out by preemption: the thread was still runnable, not waiting.
    pub preempt: bool,
    /// On a switch-out, the blocked thread's user stack as the native recorder read it from
    /// `/proc` when the record arrived (never set by the parser).
    pub blocked: Option<BlockedStack<'a>>,
    /// On a switch-out, the `context-switches` sample the kernel took just before it, when the
    /// native recorder samples that event (never set by the parser).
    pub sample: Option<Sample<'a>>,
}

/// A blocked thread's user state read from outside: instruction and stack pointer from
/// `/proc/PID/task/TID/syscall`, the stack bytes from `sp` up with `process_vm_readv`. Other
/// registers are unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockedStack<'a> {
    pub ip: u64,
    pub sp: u64,
    pub stack: &'a [u8],
}

/// A `PERF_RECORD_FORK` or `PERF_RECORD_EXIT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fork {
    pub pid: u32,
    pub ppid: u32,
    pub tid: u32,
    pub ptid: u32,
    pub time: u64,
}

/// A bounds-checked little reader over a record body.
struct Reader<'a> {
    kind: u32,
    body: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(kind: u32, body: &'a [u8]) -> Self {
        Reader { kind, body, pos: 0 }
    }

    fn error(&self, field: &'static str) -> ParseError {
        ParseError {
            kind: self.kind,
            field,
            offset: self.pos,
            len: self.body.len(),
        }
    }

    fn bytes(&mut self, len: usize, field: &'static str) -> Result<&'a [u8], ParseError> {
        let end = self.pos.checked_add(len).ok_or_else(|| self.error(field))?;
        let slice = self
            .body
            .get(self.pos..end)
            .ok_or_else(|| self.error(field))?;
        self.pos = end;
        Ok(slice)
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, ParseError> {
        let bytes = self.bytes(8, field)?;
        let mut word = [0u8; 8];
        word.copy_from_slice(bytes);
        Ok(u64::from_ne_bytes(word))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, ParseError> {
        let bytes = self.bytes(4, field)?;
        let mut word = [0u8; 4];
        word.copy_from_slice(bytes);
        Ok(u32::from_ne_bytes(word))
    }

    /// `count` 8-byte words, as raw bytes.
    fn words(&mut self, count: u64, field: &'static str) -> Result<&'a [u8], ParseError> {
        let len = usize::try_from(count)
            .ok()
            .and_then(|c| c.checked_mul(8))
            .ok_or_else(|| self.error(field))?;
        self.bytes(len, field)
    }

    /// A NUL-terminated string in the rest of `limit` bytes of the body, NUL excluded.
    fn c_string(&mut self, limit: usize) -> &'a [u8] {
        let rest = self.body.get(self.pos..limit).unwrap_or(&[]);
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        self.pos = limit.max(self.pos);
        &rest[..end]
    }
}

/// Size in bytes of the `sample_id_all` trailer that ends every non-sample record.
fn sample_id_size(format: &SampleFormat) -> usize {
    if !format.sample_id_all {
        return 0;
    }
    let fields = [
        st::TID,
        st::TIME,
        st::ID,
        st::STREAM_ID,
        st::CPU,
        st::IDENTIFIER,
    ];
    fields
        .iter()
        .filter(|&&bit| format.sample_type & bit != 0)
        .count()
        * 8
}

/// Parses one record body (the bytes after the 8-byte header).
pub fn parse_record<'a>(
    format: &SampleFormat,
    kind: u32,
    misc: u16,
    body: &'a [u8],
) -> Result<Record<'a>, ParseError> {
    let mut r = Reader::new(kind, body);
    // The string of MMAP/COMM records ends where the sample-id trailer begins.
    let text_end = body.len().saturating_sub(sample_id_size(format));
    Ok(match kind {
        kind::SAMPLE => Record::Sample(parse_sample(format, misc, &mut r)?),
        kind::MMAP => Record::Mmap2(parse_mmap(misc, &mut r, text_end)?),
        kind::MMAP2 => Record::Mmap2(parse_mmap2(misc, &mut r, text_end)?),
        kind::COMM => Record::Comm(Comm {
            pid: r.u32("pid")?,
            tid: r.u32("tid")?,
            name: r.c_string(text_end),
            exec: misc & misc::COMM_EXEC != 0,
        }),
        kind::FORK => Record::Fork(parse_fork(&mut r)?),
        kind::EXIT => Record::Exit(parse_fork(&mut r)?),
        kind::LOST => Record::Lost {
            id: r.u64("id")?,
            lost: r.u64("lost")?,
        },
        kind::THROTTLE => Record::Throttle {
            time: r.u64("time")?,
            id: r.u64("id")?,
        },
        kind::UNTHROTTLE => Record::Unthrottle {
            time: r.u64("time")?,
            id: r.u64("id")?,
        },
        kind::LOST_SAMPLES => Record::LostSamples {
            lost: r.u64("lost")?,
        },
        kind::SWITCH | kind::SWITCH_CPU_WIDE => Record::Switch(parse_switch(format, misc, body)),
        kind::FINISHED_ROUND => Record::FinishedRound,
        other => Record::Other { kind: other },
    })
}

/// A switch record: everything it says is in `misc` and the `sample_id_all` trailer (CPU-wide
/// records put the other task's pid and tid before it, not needed here).
fn parse_switch<'a>(format: &SampleFormat, misc: u16, body: &[u8]) -> Switch<'a> {
    let out = misc & misc::SWITCH_OUT != 0;
    let mut s = Switch {
        pid: 0,
        tid: 0,
        time: 0,
        out,
        preempt: out && misc & misc::SWITCH_OUT_PREEMPT != 0,
        blocked: None,
        sample: None,
    };
    let Some(start) = body.len().checked_sub(sample_id_size(format)) else {
        return s;
    };
    if !format.sample_id_all {
        return s;
    }
    let mut r = Reader::new(kind::SWITCH, body);
    r.pos = start;
    if format.sample_type & st::TID != 0 {
        s.pid = r.u32("pid").unwrap_or(0);
        s.tid = r.u32("tid").unwrap_or(0);
    }
    if format.sample_type & st::TIME != 0 {
        s.time = r.u64("time").unwrap_or(0);
    }
    s
}

fn parse_fork(r: &mut Reader<'_>) -> Result<Fork, ParseError> {
    Ok(Fork {
        pid: r.u32("pid")?,
        ppid: r.u32("ppid")?,
        tid: r.u32("tid")?,
        ptid: r.u32("ptid")?,
        time: r.u64("time")?,
    })
}

fn parse_mmap<'a>(misc: u16, r: &mut Reader<'a>, text_end: usize) -> Result<Mmap2<'a>, ParseError> {
    let prot = if misc & misc::MMAP_DATA != 0 {
        libc_prot::READ
    } else {
        libc_prot::READ | libc_prot::EXEC
    };
    Ok(Mmap2 {
        pid: r.u32("pid")?,
        tid: r.u32("tid")?,
        address: r.u64("addr")?,
        length: r.u64("len")?,
        pgoff: r.u64("pgoff")?,
        file_id: MmapFileId::None,
        prot,
        flags: 0,
        filename: r.c_string(text_end),
        misc,
    })
}

fn parse_mmap2<'a>(
    misc: u16,
    r: &mut Reader<'a>,
    text_end: usize,
) -> Result<Mmap2<'a>, ParseError> {
    let (pid, tid) = (r.u32("pid")?, r.u32("tid")?);
    let (address, length, pgoff) = (r.u64("addr")?, r.u64("len")?, r.u64("pgoff")?);
    let file_id = if misc & misc::MMAP_BUILD_ID != 0 {
        let header = r.bytes(4, "build_id_size")?;
        let id = r.bytes(20, "build_id")?;
        MmapFileId::BuildId(&id[..usize::from(header[0]).min(20)])
    } else {
        MmapFileId::Inode {
            major: r.u32("maj")?,
            minor: r.u32("min")?,
            inode: r.u64("ino")?,
            generation: r.u64("ino_generation")?,
        }
    };
    Ok(Mmap2 {
        pid,
        tid,
        address,
        length,
        pgoff,
        file_id,
        prot: r.u32("prot")?,
        flags: r.u32("flags")?,
        filename: r.c_string(text_end),
        misc,
    })
}

/// `PROT_*` values (the same on every Linux architecture), so this module needs no libc.
mod libc_prot {
    pub const READ: u32 = 1;
    pub const EXEC: u32 = 4;
}

fn parse_sample<'a>(
    format: &SampleFormat,
    misc: u16,
    r: &mut Reader<'a>,
) -> Result<Sample<'a>, ParseError> {
    let t = format.sample_type;
    let has = |bit: u64| t & bit != 0;
    let mut s = Sample {
        ip: 0,
        pid: 0,
        tid: 0,
        time: 0,
        cpu: 0,
        period: 0,
        callchain: CallChain::default(),
        user_regs: None,
        user_stack: &[],
        misc,
    };
    if has(st::IDENTIFIER) {
        r.u64("identifier")?;
    }
    if has(st::IP) {
        s.ip = r.u64("ip")?;
    }
    if has(st::TID) {
        s.pid = r.u32("pid")?;
        s.tid = r.u32("tid")?;
    }
    if has(st::TIME) {
        s.time = r.u64("time")?;
    }
    if has(st::ADDR) {
        r.u64("addr")?;
    }
    if has(st::ID) {
        r.u64("id")?;
    }
    if has(st::STREAM_ID) {
        r.u64("stream_id")?;
    }
    if has(st::CPU) {
        s.cpu = r.u32("cpu")?;
        r.u32("cpu reserved")?;
    }
    if has(st::PERIOD) {
        s.period = r.u64("period")?;
    }
    if has(st::READ) {
        skip_read_values(format.read_format, r)?;
    }
    if has(st::CALLCHAIN) {
        let nr = r.u64("callchain nr")?;
        s.callchain = CallChain {
            bytes: r.words(nr, "callchain")?,
        };
    }
    parse_sample_tail(format, r, &mut s)?;
    Ok(s)
}

/// The fields after the callchain that matter for unwinding: user registers and stack.
fn parse_sample_tail<'a>(
    format: &SampleFormat,
    r: &mut Reader<'a>,
    s: &mut Sample<'a>,
) -> Result<(), ParseError> {
    let t = format.sample_type;
    if t & st::RAW != 0 {
        let size = r.u32("raw size")?;
        r.bytes(size as usize, "raw data")?;
    }
    if t & st::BRANCH_STACK != 0 {
        let nr = r.u64("branch nr")?;
        if format.branch_sample_type & super::BRANCH_SAMPLE_HW_INDEX != 0 {
            r.u64("branch hw_idx")?;
        }
        let words = nr.checked_mul(3).ok_or_else(|| r.error("branch entries"))?;
        r.words(words, "branch entries")?;
    }
    if t & st::REGS_USER != 0 {
        let abi = r.u64("regs abi")?;
        if abi != super::regs_abi::NONE {
            let count = u64::from(format.sample_regs_user.count_ones());
            let values = r.words(count, "user regs")?;
            s.user_regs = Some(UserRegs {
                abi,
                mask: format.sample_regs_user,
                values,
            });
        }
    }
    if t & st::STACK_USER != 0 {
        let size = r.u64("stack size")?;
        if size != 0 {
            let data = r.bytes(
                usize::try_from(size).map_err(|_| r.error("stack data"))?,
                "stack data",
            )?;
            let dyn_size = r.u64("stack dyn_size")?;
            let used = usize::try_from(dyn_size).map_or(data.len(), |d| d.min(data.len()));
            s.user_stack = &data[..used];
        }
    }
    Ok(())
}

fn skip_read_values(read_format: u64, r: &mut Reader<'_>) -> Result<(), ParseError> {
    let has = |bit: u64| read_format & bit != 0;
    let per_value = 1 + u64::from(has(read_format::ID)) + u64::from(has(read_format::LOST));
    let times = u64::from(has(read_format::TOTAL_TIME_ENABLED))
        + u64::from(has(read_format::TOTAL_TIME_RUNNING));
    if has(read_format::GROUP) {
        let nr = r.u64("read nr")?;
        r.words(times, "read times")?;
        let words = nr
            .checked_mul(per_value)
            .ok_or_else(|| r.error("read values"))?;
        r.words(words, "read values")?;
    } else {
        r.words(per_value + times, "read value")?;
    }
    Ok(())
}

/// The timestamp of a record, for ordering: the sample's TIME, or the `sample_id_all` trailer's
/// TIME for other records, or the time field of FORK/EXIT/THROTTLE records. `None` if the record
/// carries none (or is too short).
pub fn record_time(format: &SampleFormat, kind: u32, body: &[u8]) -> Option<u64> {
    let t = format.sample_type;
    let word_at = |offset: usize| -> Option<u64> {
        let bytes = body.get(offset..offset.checked_add(8)?)?;
        let mut word = [0u8; 8];
        word.copy_from_slice(bytes);
        Some(u64::from_ne_bytes(word))
    };
    if t & st::TIME == 0 {
        return match kind {
            kind::FORK | kind::EXIT => word_at(16),
            kind::THROTTLE | kind::UNTHROTTLE => word_at(0),
            _ => None,
        };
    }
    if kind == kind::SAMPLE {
        let before = [st::IDENTIFIER, st::IP, st::TID];
        let offset = before.iter().filter(|&&bit| t & bit != 0).count() * 8;
        return word_at(offset);
    }
    if !format.sample_id_all || kind >= kind::USER_TYPE_START {
        return None;
    }
    let start = body.len().checked_sub(sample_id_size(format))?;
    word_at(start + if t & st::TID != 0 { 8 } else { 0 })
}

impl<'a> CallChain<'a> {
    /// A callchain over raw bytes: native-endian u64 entries (a partial last entry is ignored).
    pub fn from_bytes(bytes: &'a [u8]) -> Self {
        CallChain { bytes }
    }

    /// Number of entries, markers included.
    pub fn len(&self) -> usize {
        self.bytes.len() / 8
    }

    /// True if there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every raw entry, markers included.
    pub fn entries(&self) -> impl Iterator<Item = u64> + 'a {
        self.bytes.chunks_exact(8).map(|chunk| {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            u64::from_ne_bytes(word)
        })
    }

    /// The addresses with their space, markers removed. Entries after `PERF_CONTEXT_KERNEL` are
    /// kernel frames, after `PERF_CONTEXT_USER` user frames; entries in hypervisor or guest
    /// contexts are dropped, and so is every other marker (>= `PERF_CONTEXT_MAX`). Entries before
    /// any marker (which the kernel never writes) count as user frames.
    ///
    /// Within each space, the first address is the interrupted instruction pointer and the rest
    /// are return addresses.
    pub fn frames(&self) -> CallChainFrames<'a> {
        CallChainFrames {
            chain: *self,
            index: 0,
            context: Some(Space::User),
            in_user_part: false,
        }
    }

    /// Kernel addresses only, innermost first.
    pub fn kernel(&self) -> impl Iterator<Item = u64> + 'a {
        self.frames()
            .filter(|(space, _)| *space == Space::Kernel)
            .map(|(_, address)| address)
    }

    /// User addresses only, innermost first.
    pub fn user(&self) -> impl Iterator<Item = u64> + 'a {
        self.frames()
            .filter(|(space, _)| *space == Space::User)
            .map(|(_, address)| address)
    }

    fn get(&self, index: usize) -> Option<u64> {
        let start = index.checked_mul(8)?;
        let bytes = self.bytes.get(start..start.checked_add(8)?)?;
        let mut word = [0u8; 8];
        word.copy_from_slice(bytes);
        Some(u64::from_ne_bytes(word))
    }
}

/// Iterator of [`CallChain::frames`]: `(space, address)` pairs, innermost first.
#[derive(Clone, Debug)]
pub struct CallChainFrames<'a> {
    chain: CallChain<'a>,
    index: usize,
    /// The space of the current context, `None` inside a context whose frames are dropped.
    context: Option<Space>,
    /// Past the `PERF_CONTEXT_USER` marker: the user part is the chain's last.
    in_user_part: bool,
}

impl Iterator for CallChainFrames<'_> {
    type Item = (Space, u64);

    fn next(&mut self) -> Option<(Space, u64)> {
        loop {
            let entry = self.chain.get(self.index)?;
            self.index += 1;
            if entry == cc::CONTEXT_KERNEL && self.in_user_part {
                // The user part is last, and the kernel copies its frame-pointer walk of user
                // memory verbatim: in code without frame pointers a junk "return address" can
                // look like a context marker (-128 is PERF_CONTEXT_KERNEL). It is neither a
                // marker nor an address (a kernel part never follows the user part): skip it.
                continue;
            }
            if entry >= cc::CONTEXT_MAX {
                self.context = match entry {
                    cc::CONTEXT_KERNEL => Some(Space::Kernel),
                    cc::CONTEXT_USER => Some(Space::User),
                    _ => None,
                };
                self.in_user_part |= entry == cc::CONTEXT_USER;
                continue;
            }
            if let Some(space) = self.context {
                return Some((space, entry));
            }
        }
    }
}

impl<'a> UserRegs<'a> {
    /// User registers from their raw parts (one native-endian u64 per bit of `mask`).
    pub fn new(abi: u64, mask: u64, values: &'a [u8]) -> Self {
        UserRegs { abi, mask, values }
    }

    /// The value of register number `reg` (e.g. `regs_x86_64::SP`), if it was sampled.
    pub fn get(&self, reg: u32) -> Option<u64> {
        let bit = 1u64.checked_shl(reg)?;
        if self.mask & bit == 0 {
            return None;
        }
        let index = (self.mask & (bit - 1)).count_ones() as usize;
        let bytes = self.values.get(index * 8..index * 8 + 8)?;
        let mut word = [0u8; 8];
        word.copy_from_slice(bytes);
        Some(u64::from_ne_bytes(word))
    }

    /// `(register number, value)` pairs in register order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        (0..64u32).filter_map(move |reg| self.get(reg).map(|value| (reg, value)))
    }
}

#[cfg(test)]
mod tests;
