//! Reusing the rest of a thread's previous walk (see [`super::Unwinder::unwind_memoized`]).
//!
//! A walk is a deterministic function of the frame's code address, its registers, the memory
//! it reads from the stack copy, and the process's maps. So when a new walk of the same thread
//! reaches a frame in exactly the state a remembered walk had at one of its frames (same code
//! address, stack pointer and known register values), and every read the remembered walk made
//! from that frame on gives the same result in the new copy (same value, or the same failure:
//! past the copy, or below its `sp`), the new walk would make exactly the same steps: its
//! remaining frames, stack pointers and end are the remembered ones. Checking the reads is a
//! few loads per frame, where a step is a rule lookup and its evaluation.
//!
//! Samples of a thread usually share most of their callers with the sample before (a deep
//! recursion, a worker's loop under `main`), so most frames of most walks are taken this way.

use std::cell::RefCell;

use super::arch::RegFile;
use super::{ReadError, StackSnapshot, UnwindEnd};
use crate::frame::CodeAddress;

/// One read from the stack copy and what it gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Read {
    addr: u64,
    size: u8,
    result: Result<u64, ReadError>,
}

/// The index of the first of `reads` that gives something else in `stack`, if any.
fn first_difference(reads: &[Read], stack: &StackSnapshot) -> Option<usize> {
    reads.iter().position(|r| {
        // Most reads are words inside the copy: compared without the general path.
        let offset = r.addr.wrapping_sub(stack.sp) as usize;
        match (
            r.size,
            r.result,
            stack.bytes.get(offset..offset.wrapping_add(8)),
        ) {
            (8, Ok(value), Some(word)) if r.addr >= stack.sp => {
                word != value.to_le_bytes().as_slice()
            }
            _ => stack.read_unlogged(r.addr, r.size) != r.result,
        }
    })
}

/// Where a walk records the reads it makes (the snapshot is shared, so the log is a cell).
pub(crate) type ReadLog = RefCell<Vec<Read>>;

impl Read {
    pub(crate) fn new(addr: u64, size: u8, result: Result<u64, ReadError>) -> Self {
        Read { addr, size, result }
    }
}

/// One frame of a remembered walk: the state the frame was stepped from.
#[derive(Clone, Copy, Debug)]
struct Frame {
    address: CodeAddress,
    sp: u64,
    /// The known registers (bits by DWARF number); their values are in [`WalkMemo::values`].
    known: u32,
    /// How many reads stepping this frame made (they follow the previous frame's).
    reads: u32,
}

/// The last walk of one thread: its frames with their states and the reads it made, so that the
/// next walk of the thread can take its callers from here.
#[derive(Debug, Default)]
pub struct WalkMemo {
    /// The lookup's version and the unwinder's epoch the walk was made with.
    version: (u64, u64),
    frames: Vec<Frame>,
    /// The known register values of every frame, frame after frame, lowest register first.
    values: Vec<u64>,
    reads: Vec<Read>,
    /// How the walk ended; `None` when it cannot be reused (nothing remembered yet, or the
    /// walk stopped at the depth limit, which a longer prefix would reach sooner).
    end: Option<UnwindEnd>,
}

/// A walk being made: the frames and register values recorded so far (its reads are logged by
/// the snapshot).
#[derive(Debug, Default)]
pub(super) struct Recording {
    frames: Vec<Frame>,
    values: Vec<u64>,
    /// Reads logged when the last frame was recorded.
    reads_before_last: usize,
}

impl Recording {
    pub(super) fn clear(&mut self) {
        self.frames.clear();
        self.values.clear();
        self.reads_before_last = 0;
    }

    /// Records the frame at `address`, about to be stepped from `regs`; `logged` reads so far.
    pub(super) fn frame(&mut self, address: CodeAddress, regs: &RegFile, logged: usize) {
        self.close_last(logged);
        let known = regs.known_mask();
        self.values.extend(regs.known_values());
        self.frames.push(Frame {
            address,
            sp: regs.sp,
            known,
            reads: 0,
        });
    }

    /// Forgets the last frame (its return address lay in no mapping): its reads, if any, count
    /// as the frame before's.
    pub(super) fn pop(&mut self) {
        if let Some(last) = self.frames.pop() {
            let n = last.known.count_ones() as usize;
            self.values.truncate(self.values.len() - n);
            if let Some(before) = self.frames.last() {
                self.reads_before_last -= before.reads as usize;
            }
        }
    }

    /// Attributes the reads logged since the last frame was recorded to it.
    fn close_last(&mut self, logged: usize) {
        if let Some(last) = self.frames.last_mut() {
            last.reads = (logged - self.reads_before_last) as u32;
            self.reads_before_last = logged;
        }
    }
}

/// How far a new walk has got through a remembered one.
#[derive(Clone, Copy, Debug)]
pub(super) struct Cursor {
    /// The first remembered frame whose `sp` is not below the new walk's current one.
    frame: usize,
    /// Register values and reads of the remembered frames before `frame`.
    values: usize,
    reads: usize,
    /// A remembered read that gave something else in the new copy: a frame whose reads
    /// include it cannot be reused.
    failed: Option<usize>,
}

impl Cursor {
    /// The remembered frame the cursor is at.
    pub(super) fn frame(&self) -> usize {
        self.frame
    }
}

impl WalkMemo {
    /// How many frames the remembered walk has.
    pub(super) fn len(&self) -> usize {
        self.frames.len()
    }

    /// A cursor for a new walk made with `version`, or `None` when nothing here applies to it.
    /// The leaf frame is never reused (its address is exact, the others' are return addresses),
    /// so the cursor starts at the second.
    pub(super) fn cursor(&self, version: (u64, u64)) -> Option<Cursor> {
        let first = self.frames.first().filter(|_| self.usable(version))?;
        Some(Cursor {
            frame: 1,
            values: first.known.count_ones() as usize,
            reads: first.reads as usize,
            failed: None,
        })
    }

    fn usable(&self, version: (u64, u64)) -> bool {
        self.end.is_some() && self.version == version
    }

    /// Whether the new walk, about to step from `address` with `regs` over `stack`, would go on
    /// exactly as this one did from one of its frames: that frame's index.
    pub(super) fn matching(
        &self,
        cursor: &mut Cursor,
        address: CodeAddress,
        regs: &RegFile,
        stack: &StackSnapshot,
    ) -> Option<usize> {
        while let Some(f) = self.frames.get(cursor.frame).filter(|f| f.sp < regs.sp) {
            cursor.values += f.known.count_ones() as usize;
            cursor.reads += f.reads as usize;
            cursor.frame += 1;
        }
        let frame = self.frames.get(cursor.frame)?;
        if frame.sp != regs.sp || frame.address != address || frame.known != regs.known_mask() {
            return None;
        }
        if cursor.failed.is_some_and(|k| k >= cursor.reads) {
            return None;
        }
        let values = &self.values[cursor.values..][..frame.known.count_ones() as usize];
        if !regs.known_values().eq(values.iter().copied()) {
            return None;
        }
        match first_difference(&self.reads[cursor.reads..], stack) {
            None => Some(cursor.frame),
            Some(k) => {
                cursor.failed = Some(cursor.reads + k);
                None
            }
        }
    }

    /// The remembered frames from `frame` on: code addresses and stack pointers.
    pub(super) fn tail(&self, frame: usize) -> impl Iterator<Item = (CodeAddress, u64)> + '_ {
        self.frames[frame..].iter().map(|f| (f.address, f.sp))
    }

    /// How the remembered walk ended (after [`WalkMemo::matching`] found a frame).
    pub(super) fn end(&self) -> UnwindEnd {
        self.end.unwrap_or(UnwindEnd::Stopped)
    }

    /// Remembers a whole new walk: `recording`, the reads of `log`, and how it ended.
    pub(super) fn replace(
        &mut self,
        version: (u64, u64),
        recording: &mut Recording,
        log: &mut Vec<Read>,
        end: Option<UnwindEnd>,
    ) {
        recording.close_last(log.len());
        self.version = version;
        std::mem::swap(&mut self.frames, &mut recording.frames);
        std::mem::swap(&mut self.values, &mut recording.values);
        std::mem::swap(&mut self.reads, log);
        self.end = end;
    }

    /// Remembers a new walk that went on as this one from `cursor`'s frame: its own frames
    /// (`recording`, reads in `log`) replace the ones before.
    pub(super) fn splice(
        &mut self,
        cursor: &Cursor,
        recording: &mut Recording,
        log: &mut Vec<Read>,
    ) {
        recording.close_last(log.len());
        self.frames
            .splice(..cursor.frame, recording.frames.drain(..));
        self.values
            .splice(..cursor.values, recording.values.drain(..));
        self.reads.splice(..cursor.reads, log.drain(..));
    }
}
