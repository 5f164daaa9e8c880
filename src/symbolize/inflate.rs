//! A zlib-compressed debug section decompressed only as far as it is read.
//!
//! Debian's and Fedora's debug files compress their DWARF: glibc's `.debug_info` is 2.3 MB of
//! zlib for 5.8 MB of data, and decompressing all of it took a third of the profiler's own CPU
//! in a short run, although a profile usually names a few of its units (`__libc_start_call_main`
//! lies in the first 0.2% of the section, `exit` in the first 8%). A zlib stream cannot be
//! entered in the middle, but it can be decompressed in steps: [`Inflating::grow`] continues
//! where the last step stopped, until the requested offset is covered.
//!
//! The output buffer has the section's full size from the start (zeroed pages cost nothing until
//! written) and never moves, so the prefixes handed out stay valid while later bytes are written.
//! Each prefix covers only bytes already written, and writes only go past it.

use std::sync::{Arc, Mutex};

use flate2::{Decompress, FlushDecompress, Status};

/// Decompressed in steps of at least this many bytes (a step costs a call into zlib).
const STEP: usize = 64 << 10;

/// A section's decompression in progress, shared by the DWARF reader that grows it and the
/// binary's storage that owns it.
pub(super) struct Inflating {
    /// The zlib stream (a view of the mapped file, owned by the binary's storage).
    input: &'static [u8],
    /// The whole decompressed section: `done` bytes written so far.
    output: *mut u8,
    size: usize,
    done: usize,
    state: Decompress,
    /// The stream ended or was found corrupt: nothing more will be written.
    stopped: bool,
}

// SAFETY: `output` is an allocation owned by this struct (freed in `Drop`), reached only through
// `&mut self` for writes and through prefixes of written bytes for reads; moving the struct to
// another thread moves that ownership with it.
unsafe impl Send for Inflating {}

impl Inflating {
    /// A decompression of the zlib stream `input` into `size` bytes, nothing done yet. The
    /// caller has checked `size` against the compressed size (a decompression bomb).
    pub(super) fn new(input: &'static [u8], size: usize) -> Arc<Mutex<Self>> {
        let output = Box::into_raw(vec![0u8; size].into_boxed_slice()) as *mut u8;
        Arc::new(Mutex::new(Inflating {
            input,
            output,
            size,
            done: 0,
            state: Decompress::new(true),
            stopped: false,
        }))
    }

    /// Decompresses until at least `end` bytes (or the whole section) are written, or the stream
    /// ends; returns the written prefix. Its bytes are never written again: the prefix may be
    /// held for as long as this struct lives.
    pub(super) fn grow(&mut self, end: u64) -> &'static [u8] {
        let end = usize::try_from(end).unwrap_or(usize::MAX).min(self.size);
        if end > self.done && !self.stopped {
            // Past the request by a step: requests come a unit header at a time.
            let target = end.max(self.done.saturating_add(STEP)).min(self.size);
            self.inflate_to(target);
        }
        self.prefix()
    }

    /// Everything, decompressed to the end.
    pub(super) fn all(&mut self) -> &'static [u8] {
        self.grow(u64::MAX)
    }

    fn inflate_to(&mut self, target: usize) {
        while self.done < target && !self.stopped {
            let consumed = self.state.total_in() as usize;
            let input = self.input.get(consumed..).unwrap_or_default();
            // SAFETY: `done..target` lies inside the allocation of `size` bytes, and no prefix
            // handed out reaches past `done`: nothing else refers to these bytes.
            let out = unsafe {
                std::slice::from_raw_parts_mut(self.output.add(self.done), target - self.done)
            };
            let before = self.state.total_out();
            let status = self.state.decompress(input, out, FlushDecompress::None);
            let written = (self.state.total_out() - before) as usize;
            self.done += written;
            match status {
                Ok(Status::Ok) if written > 0 || self.state.total_in() as usize > consumed => {}
                // The stream ended, broke, or cannot go on (input used up, no progress).
                _ => self.stopped = true,
            }
        }
    }

    fn prefix(&self) -> &'static [u8] {
        // SAFETY: the first `done` bytes were written and are never written again; the
        // allocation lives until this struct is dropped, and the owner of the DWARF reader that
        // holds the prefix drops it before (see `Storage` in binary.rs). `'static` is that
        // private fiction, as for the mapped files.
        unsafe { std::slice::from_raw_parts(self.output, self.done) }
    }
}

impl Drop for Inflating {
    fn drop(&mut self) {
        // SAFETY: `output` came from `Box::into_raw` of a boxed slice of `size` bytes, and is
        // freed only here.
        unsafe {
            drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(
                self.output,
                self.size,
            )));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn compressed(data: &[u8]) -> &'static [u8] {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(data).unwrap();
        Vec::leak(z.finish().unwrap())
    }

    #[test]
    fn grows_in_steps_to_the_same_bytes_as_a_whole_decompression() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let lazy = Inflating::new(compressed(&data), data.len());
        let mut lazy = lazy.lock().unwrap();
        let first = lazy.grow(10);
        assert!(first.len() >= 10 && first.len() < data.len());
        assert_eq!(first, &data[..first.len()]);
        let more = lazy.grow(first.len() as u64 + 1_000_000);
        assert!(more.len() > first.len() + 999_999);
        assert_eq!(more, &data[..more.len()]);
        // The first prefix still reads the same bytes.
        assert_eq!(first, &data[..first.len()]);
        assert_eq!(lazy.all(), &data[..]);
        assert_eq!(lazy.grow(u64::MAX), &data[..]);
    }

    #[test]
    fn a_corrupt_or_short_stream_stops_at_what_it_had() {
        let data = vec![7u8; 1_000_000];
        let stream = compressed(&data);
        let lazy = Inflating::new(&stream[..stream.len() / 2], data.len());
        let got = lazy.lock().unwrap().all().len();
        assert!(got < data.len());
        let mut garbage = stream.to_vec();
        garbage[2..].iter_mut().for_each(|b| *b = !*b);
        let lazy = Inflating::new(Vec::leak(garbage), data.len());
        assert!(lazy.lock().unwrap().all().len() < data.len());
        // A size claimed larger than the stream gives the stream's bytes only.
        let lazy = Inflating::new(stream, data.len() * 2);
        assert_eq!(lazy.lock().unwrap().all(), &data[..]);
    }
}
