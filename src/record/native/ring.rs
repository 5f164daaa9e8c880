//! The mmapped ring buffer of a perf event fd, and reading its records in place.
//!
//! Layout: one metadata page (`struct perf_event_mmap_page`) then 2^n data pages. The kernel
//! advances `data_head` (we load it with acquire ordering); we advance `data_tail` once a record
//! has been handled (release ordering) so the kernel may reuse the space. A record is read where
//! it lies; only one that wraps around the end of the data area is copied.

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
    last_time: u64,
    /// `data_head` as loaded by the last [`Ring::refresh`].
    head: u64,
    /// Where the next record starts; `data_tail` follows it (see [`Ring::consume`]).
    pos: u64,
    next: Option<Next>,
    /// A record that wraps around the end of the data area, made contiguous.
    wrapped: Vec<u8>,
}

/// The record at a ring's read position, once looked at.
#[derive(Clone, Copy, Debug)]
struct Next {
    time: u64,
    size: usize,
    /// The record runs past the end of the data area: its bytes were copied to `Ring::wrapped`.
    wrapped: bool,
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
            head: 0,
            pos: 0,
            next: None,
            wrapped: Vec::new(),
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

    /// Sees what the kernel has written since the last call.
    pub fn refresh(&mut self) {
        self.head = self
            .control(sys::MMAP_PAGE_DATA_HEAD)
            .load(Ordering::Acquire);
    }

    /// The time of the record at the read position (from `time_of(kind, body)`, or the previous
    /// record's time), or `None` if no whole record is available.
    pub fn next_time(&mut self, time_of: &dyn Fn(u32, &[u8]) -> Option<u64>) -> Option<u64> {
        if let Some(next) = self.next {
            return Some(next.time);
        }
        let available = self.head.wrapping_sub(self.pos);
        if available < 8 {
            return None;
        }
        let mut header = [0u8; 8];
        self.copy_out(self.pos, &mut header);
        let size = u16::from_ne_bytes([header[6], header[7]]) as usize;
        if size < 8 || size as u64 > available {
            // A corrupt header: skip everything rather than loop forever, and give the space
            // back, or a full ring would stay full for the rest of the session.
            self.pos = self.head;
            self.control(sys::MMAP_PAGE_DATA_TAIL)
                .store(self.pos, Ordering::Release);
            return None;
        }
        let start = (self.pos % self.data_size as u64) as usize;
        let wrapped = start + size > self.data_size;
        if wrapped {
            let mut buffer = std::mem::take(&mut self.wrapped);
            buffer.clear();
            buffer.resize(size, 0);
            self.copy_out(self.pos, &mut buffer);
            self.wrapped = buffer;
        }
        self.next = Some(Next {
            time: self.last_time,
            size,
            wrapped,
        });
        let kind = u32::from_ne_bytes([header[0], header[1], header[2], header[3]]);
        if let Some(time) = time_of(kind, self.record().get(8..).unwrap_or(&[])) {
            self.last_time = time;
            if let Some(next) = &mut self.next {
                next.time = time;
            }
        }
        Some(self.last_time)
    }

    /// The bytes (header included) of the record [`Ring::next_time`] looked at; empty if none.
    pub fn record(&self) -> &[u8] {
        match self.next {
            None => &[],
            Some(Next {
                wrapped: true,
                size,
                ..
            }) => &self.wrapped[..size],
            Some(Next { size, .. }) => {
                let start = (self.pos % self.data_size as u64) as usize;
                // SAFETY: `next_time` checked that the record lies whole inside the data area
                // (`start + size <= data_size`) and between tail and head: the kernel does not
                // write there until `consume` moves the tail past it, which needs `&mut self`,
                // so not while this borrow lives.
                unsafe {
                    std::slice::from_raw_parts(
                        self.base.as_ptr().add(self.data_offset + start),
                        size,
                    )
                }
            }
        }
    }

    /// Moves past the record [`Ring::next_time`] looked at and lets the kernel reuse its space
    /// at once (a slow record, such as the first in a new library, must not hold the others').
    pub fn consume(&mut self) {
        if let Some(next) = self.next.take() {
            self.pos = self.pos.wrapping_add(next.size as u64);
            self.control(sys::MMAP_PAGE_DATA_TAIL)
                .store(self.pos, Ordering::Release);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A ring over anonymous memory laid out like a perf mapping (a control page, two data
    /// pages), written by the test instead of the kernel.
    fn fake_ring() -> Ring {
        let page = sys::page_size();
        let map_len = 3 * page;
        // SAFETY: a fresh private anonymous mapping; the `Ring` owns it and unmaps it on drop.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(ptr, libc::MAP_FAILED);
        let fd: OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
        Ring::from_mapping(fd, NonNull::new(ptr.cast()).unwrap(), map_len, page).unwrap()
    }

    /// Writes `bytes` at ring position `position`, wrapping as the kernel does.
    fn write(ring: &Ring, position: u64, bytes: &[u8]) {
        for (i, &b) in bytes.iter().enumerate() {
            let at = (position.wrapping_add(i as u64) % ring.data_size as u64) as usize;
            // SAFETY: `at < data_size`, inside the data area of the live mapping.
            unsafe { *ring.base.as_ptr().add(ring.data_offset + at) = b };
        }
    }

    fn header(kind: u32, size: u16) -> Vec<u8> {
        let mut h = kind.to_ne_bytes().to_vec();
        h.extend_from_slice(&0u16.to_ne_bytes());
        h.extend_from_slice(&size.to_ne_bytes());
        h
    }

    fn set_head(ring: &Ring, head: u64) {
        ring.control(sys::MMAP_PAGE_DATA_HEAD)
            .store(head, Ordering::Release);
    }

    fn tail(ring: &Ring) -> u64 {
        ring.control(sys::MMAP_PAGE_DATA_TAIL)
            .load(Ordering::Acquire)
    }

    #[test]
    fn corrupt_header_gives_the_space_back_to_the_kernel() {
        let mut ring = fake_ring();
        write(&ring, 0, &header(9, 4)); // a size smaller than a header
        set_head(&ring, 64);
        ring.refresh();
        assert_eq!(ring.next_time(&|_, _| None), None);
        assert_eq!(tail(&ring), 64);
    }

    #[test]
    fn record_wrapping_the_data_area_and_the_u64_position() {
        let mut ring = fake_ring();
        let size = ring.data_size as u64;
        let start = u64::MAX - 15; // 16 bytes before the end of the data area, and of u64
        assert_eq!(start % size, size - 16);
        ring.pos = start;
        let mut record = header(9, 48);
        record.extend(0..40u8);
        write(&ring, start, &record);
        set_head(&ring, start.wrapping_add(48));
        ring.refresh();
        assert_eq!(ring.next_time(&|_, _| Some(7)), Some(7));
        assert_eq!(ring.record(), &record[..]);
        ring.consume();
        assert_eq!((ring.pos, tail(&ring)), (32, 32));
        assert_eq!(ring.next_time(&|_, _| Some(8)), None);
    }

    #[test]
    fn records_are_read_in_place_until_consumed() {
        let mut ring = fake_ring();
        let mut first = header(9, 16);
        first.extend(1..=8u8);
        let mut second = header(9, 24);
        second.extend(11..=26u8);
        write(&ring, 0, &first);
        write(&ring, 16, &second);
        set_head(&ring, 40);
        ring.refresh();
        let time = |_: u32, body: &[u8]| Some(u64::from(body[0]));
        assert_eq!(ring.next_time(&time), Some(1));
        assert_eq!(
            ring.next_time(&time),
            Some(1),
            "peeking twice does not advance"
        );
        assert_eq!(ring.record(), &first[..]);
        assert_eq!(tail(&ring), 0, "not released before it is consumed");
        ring.consume();
        assert_eq!(ring.next_time(&time), Some(11));
        assert_eq!(ring.record(), &second[..]);
        ring.consume();
        assert_eq!(tail(&ring), 40);
        assert_eq!(ring.next_time(&time), None);
    }
}
