//! The mmapped ring buffer of a perf event fd, and copying its records out.
//!
//! Layout: one metadata page (`struct perf_event_mmap_page`) then 2^n data pages. The kernel
//! advances `data_head` (we load it with acquire ordering); we advance `data_tail` after copying
//! (release ordering) so the kernel may reuse the space.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use super::sys;

/// One mmapped ring buffer. Unmapped on drop; the fd stays owned by it.
pub struct Ring {
    fd: OwnedFd,
    base: NonNull<u8>,
    map_len: usize,
    data_offset: usize,
    data_size: usize,
    /// Time of the last timestamped record read, for records without a timestamp.
    pub last_time: u64,
}

/// Where [`Ring::read_into`] puts one record: its bytes are `arena[start..start + len]`,
/// header included.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    pub time: u64,
    pub start: usize,
    pub len: usize,
}

impl Ring {
    /// Maps `fd`'s ring buffer with `data_pages` data pages (a power of two), halving the size on
    /// EPERM/ENOMEM (locked-memory limits) down to `min_pages`.
    pub fn map(fd: OwnedFd, mut data_pages: usize, min_pages: usize) -> io::Result<Ring> {
        let page = sys::page_size();
        loop {
            match Self::map_exact(&fd, page, data_pages) {
                Ok((base, map_len)) => return Self::from_mapping(fd, base, map_len, page),
                Err(err)
                    if data_pages > min_pages
                        && matches!(err.raw_os_error(), Some(libc::EPERM | libc::ENOMEM)) =>
                {
                    data_pages /= 2;
                }
                Err(err) => return Err(err),
            }
        }
    }

    fn map_exact(fd: &OwnedFd, page: usize, data_pages: usize) -> io::Result<(NonNull<u8>, usize)> {
        let map_len = (data_pages + 1) * page;
        // SAFETY: a fresh shared mapping of a perf event fd; the kernel checks the size. We only
        // access it through `Ring`, which unmaps it on drop.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base =
            NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        Ok((base, map_len))
    }

    fn from_mapping(
        fd: OwnedFd,
        base: NonNull<u8>,
        map_len: usize,
        page: usize,
    ) -> io::Result<Ring> {
        let mut ring = Ring {
            fd,
            base,
            map_len,
            data_offset: page,
            data_size: map_len - page,
            last_time: 0,
        };
        // Kernels since 4.1 publish the data area's position; older ones leave zeros.
        let offset = ring
            .control(sys::MMAP_PAGE_DATA_OFFSET)
            .load(Ordering::Relaxed) as usize;
        let size = ring
            .control(sys::MMAP_PAGE_DATA_SIZE)
            .load(Ordering::Relaxed) as usize;
        if size != 0 && size.is_power_of_two() && offset.checked_add(size) == Some(map_len) {
            ring.data_offset = offset;
            ring.data_size = size;
        }
        Ok(ring)
    }

    /// The fd whose ring this is.
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Size of the data area in bytes.
    pub fn data_size(&self) -> usize {
        self.data_size
    }

    fn control(&self, offset: usize) -> &AtomicU64 {
        // SAFETY: `offset` is one of the 8-byte aligned control words inside the first page of the
        // live mapping; the kernel writes them concurrently, so they are only touched atomically.
        unsafe { &*self.base.as_ptr().add(offset).cast::<AtomicU64>() }
    }

    /// Copies every available record into `arena` and appends an [`Entry`] per record, with its
    /// time from `time_of(kind, body)` (or the previous record's time), then frees the space.
    /// Returns the number of records copied.
    pub fn read_into(
        &mut self,
        arena: &mut Vec<u8>,
        entries: &mut Vec<Entry>,
        time_of: &dyn Fn(u32, &[u8]) -> Option<u64>,
    ) -> usize {
        let head = self
            .control(sys::MMAP_PAGE_DATA_HEAD)
            .load(Ordering::Acquire);
        let mut tail = self
            .control(sys::MMAP_PAGE_DATA_TAIL)
            .load(Ordering::Relaxed);
        let mut count = 0;
        while head.wrapping_sub(tail) >= 8 {
            let mut header = [0u8; 8];
            self.copy_out(tail, &mut header);
            let size = u16::from_ne_bytes([header[6], header[7]]) as usize;
            if size < 8 || size as u64 > head.wrapping_sub(tail) {
                // A corrupt header: skip everything rather than loop forever.
                tail = head;
                break;
            }
            let start = arena.len();
            self.append_to(tail, size, arena);
            let kind = u32::from_ne_bytes([header[0], header[1], header[2], header[3]]);
            if let Some(time) = time_of(kind, &arena[start + 8..]) {
                self.last_time = time;
            }
            entries.push(Entry {
                time: self.last_time,
                start,
                len: size,
            });
            tail = tail.wrapping_add(size as u64);
            count += 1;
        }
        self.control(sys::MMAP_PAGE_DATA_TAIL)
            .store(tail, Ordering::Release);
        count
    }

    /// Appends the `len` bytes at ring position `position` to `arena` (without zero-filling
    /// first: records are copied once, and a DWARF sample is 32 KiB).
    fn append_to(&self, position: u64, len: usize, arena: &mut Vec<u8>) {
        let start = (position % self.data_size as u64) as usize;
        let len = len.min(self.data_size);
        let first = len.min(self.data_size - start);
        // SAFETY: `start + first <= data_size` and `len - first <= data_size`, so both slices lie
        // inside the live data area; the kernel does not write the bytes between tail and head,
        // and the slices are dropped before the tail is advanced past them.
        let (head, wrapped) = unsafe {
            let data = self.base.as_ptr().add(self.data_offset);
            (
                std::slice::from_raw_parts(data.add(start), first),
                std::slice::from_raw_parts(data, len - first),
            )
        };
        arena.reserve(len);
        arena.extend_from_slice(head);
        arena.extend_from_slice(wrapped);
    }

    /// Copies `out.len()` bytes starting at ring position `position`, wrapping at the end.
    fn copy_out(&self, position: u64, out: &mut [u8]) {
        let start = (position % self.data_size as u64) as usize;
        let first = out.len().min(self.data_size - start);
        // SAFETY: `start + first <= data_size` and `out.len() - first <= data_size` (records are
        // smaller than the buffer), so both reads stay inside the live data area; the kernel does
        // not write to bytes between tail and head.
        unsafe {
            let data = self.base.as_ptr().add(self.data_offset);
            std::ptr::copy_nonoverlapping(data.add(start), out.as_mut_ptr(), first);
            let rest = (out.len() - first).min(self.data_size);
            std::ptr::copy_nonoverlapping(data, out.as_mut_ptr().add(first), rest);
        }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: `base`/`map_len` are exactly what mmap returned; no reference into the mapping
        // outlives `self`.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.map_len);
        }
    }
}
