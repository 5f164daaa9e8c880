//! Completing a truncated walk from the running process's stack.
//!
//! The kernel copies at most 64 KiB of user stack per sample. A program with one frame larger
//! than that (rustc's `run_compiler` closure holds ~527 KiB of locals) can never be unwound
//! past it from the copy, whatever the copy size, and no earlier sample of the thread can be
//! joined to it either. But the frames past the copy are the sampled frames' *callers*: they
//! stay where they are for as long as the sampled frames are live, which for such outer frames
//! is usually the whole run. So when a live recording's walk runs out of copied bytes and
//! cannot be joined, the same walk is made again with reads past the copy served from the
//! process's memory (`process_vm_readv`), a few milliseconds after the sample was taken.
//!
//! It stays true as long as the thread did not return out of the frame the copy ended in in
//! between: only samples at most [`MAX_AGE_NS`] old are completed, the completion must reach
//! the outermost frame (a root), and what is read is bounded ([`MAX_CHUNKS`] pages per walk).
//! A completed stack is remembered by the joiner like any complete one, so the next samples cut
//! at the same frame are joined to it without reading the process again.

use std::cell::{Cell, RefCell};

use crate::unwind::LiveStack;

/// How a live recording reads its targets' memory and tells the time on the samples' clock
/// (`CLOCK_MONOTONIC`). Set only by the native recorder on Linux.
#[derive(Clone, Copy, Debug)]
pub struct LiveMemory {
    /// Copies memory of process `pid` at `address` into the buffer: `Ok(bytes read)`, or an
    /// error when the process cannot be read at all (no ptrace access, or gone).
    pub read: fn(pid: u32, address: u64, out: &mut [u8]) -> std::io::Result<usize>,
    /// Now, in nanoseconds of the samples' clock.
    pub now: fn() -> u64,
}

/// Samples older than this (the recorder fell behind) are not completed from live memory: the
/// longer the wait, the likelier the thread left the frame the copy ended in.
pub(super) const MAX_AGE_NS: u64 = 100_000_000;

/// Bytes read at a time: one page, aligned, so a read never spans an unmapped page.
const CHUNK: usize = 4096;

/// Pages read at most per walk: the callers of a frame past the copy sit close to its CFA, a
/// few pages in all; a walk that needs more is not worth the system calls.
const MAX_CHUNKS: usize = 16;

/// The stack past the copy of one sample, read page by page from process `pid`.
pub(super) struct LiveReader {
    memory: LiveMemory,
    pid: u32,
    /// Pages read so far, by address.
    pages: RefCell<Vec<(u64, Box<[u8; CHUNK]>)>>,
    /// The process could not be read at all (set by the first failed system call).
    refused: Cell<bool>,
}

impl LiveReader {
    pub(super) fn new(memory: LiveMemory, pid: u32) -> Self {
        LiveReader {
            memory,
            pid,
            pages: RefCell::new(Vec::new()),
            refused: Cell::new(false),
        }
    }

    /// Whether the process refused to be read (no access, or it exited): not worth trying again.
    pub(super) fn refused(&self) -> bool {
        self.refused.get()
    }

    /// Copies the bytes of the page at `base` from `offset` into `out`, reading the page first
    /// if needed; false when it cannot be read or the read budget is spent.
    fn copy_from_page(&self, base: u64, offset: usize, out: &mut [u8]) -> bool {
        let mut pages = self.pages.borrow_mut();
        let page = match pages.iter().position(|(at, _)| *at == base) {
            Some(i) => &pages[i].1,
            None => {
                if pages.len() >= MAX_CHUNKS || self.refused.get() {
                    return false;
                }
                let mut page = Box::new([0u8; CHUNK]);
                match (self.memory.read)(self.pid, base, &mut page[..]) {
                    Ok(CHUNK) => {}
                    Ok(_) => return false,
                    Err(_) => {
                        self.refused.set(true);
                        return false;
                    }
                }
                pages.push((base, page));
                &pages[pages.len() - 1].1
            }
        };
        out.copy_from_slice(&page[offset..offset + out.len()]);
        true
    }
}

impl LiveStack for LiveReader {
    fn read(&self, address: u64, out: &mut [u8]) -> bool {
        let mut done = 0;
        while done < out.len() {
            let Some(at) = address.checked_add(done as u64) else {
                return false;
            };
            let base = at & !(CHUNK as u64 - 1);
            let offset = (at - base) as usize;
            let n = (out.len() - done).min(CHUNK - offset);
            if !self.copy_from_page(base, offset, &mut out[done..done + n]) {
                return false;
            }
            done += n;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process whose memory byte at `a` is `a as u8`, readable from 0x10000 to 0x20000.
    fn fake_read(pid: u32, address: u64, out: &mut [u8]) -> std::io::Result<usize> {
        if pid != 7 {
            return Err(std::io::ErrorKind::PermissionDenied.into());
        }
        let mut n = 0;
        for (i, byte) in out.iter_mut().enumerate() {
            let a = address + i as u64;
            if !(0x10000..0x20000).contains(&a) {
                break;
            }
            *byte = a as u8;
            n += 1;
        }
        Ok(n)
    }

    fn memory() -> LiveMemory {
        LiveMemory {
            read: fake_read,
            now: || 0,
        }
    }

    #[test]
    fn reads_across_pages_and_stops_at_unreadable_ones() {
        let reader = LiveReader::new(memory(), 7);
        let mut word = [0u8; 8];
        assert!(reader.read(0x10ffc, &mut word)); // spans two pages
        assert_eq!(word, [0xfc, 0xfd, 0xfe, 0xff, 0, 1, 2, 3]);
        assert!(!reader.read(0x1fffc, &mut word)); // the second page is unmapped
        assert!(!reader.refused());
        assert_eq!(reader.pages.borrow().len(), 3);
    }

    #[test]
    fn a_process_that_cannot_be_read_is_refused_once() {
        let reader = LiveReader::new(memory(), 8);
        let mut word = [0u8; 8];
        assert!(!reader.read(0x10000, &mut word));
        assert!(reader.refused());
    }

    #[test]
    fn reads_at_most_a_few_pages_per_walk() {
        let reader = LiveReader::new(memory(), 7);
        let mut word = [0u8; 8];
        for i in 0..MAX_CHUNKS as u64 {
            assert!(reader.read(0x10000 + i * CHUNK as u64, &mut word));
        }
        assert!(!reader.read(0x10000 + (MAX_CHUNKS * CHUNK) as u64, &mut word));
        // Pages already read still serve.
        assert!(reader.read(0x10008, &mut word));
    }
}
