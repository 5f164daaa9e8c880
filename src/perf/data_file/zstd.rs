//! Decompression of `perf record -z` data: the payloads of all `PERF_RECORD_COMPRESSED` records
//! of a file form one zstd stream (perf keeps one `ZSTD_CStream` for the whole session and only
//! flushes it, so a single frame usually spans the whole file, and a block may straddle two
//! records). This module feeds those payloads, in file order, to one ruzstd [`FrameDecoder`] and
//! appends the decompressed bytes, which are more perf records, to an output buffer, one block
//! (at most 128 KiB) per [`ZstdStream::step`]: the caller consumes the output between steps, so
//! a record that expands 30,000 times (a zstd bomb) never sits whole in memory.
//!
//! ruzstd keeps the last `window_size` decoded bytes of an unfinished frame for back-references
//! and releases them only when the frame ends, which a perf frame never does before the end of
//! the file. To still know exactly how many bytes the compressed input so far decodes to (the
//! reader places `FINISHED_ROUND` markers by it), every frame is given a `window_size` prefix of
//! zero bytes (RLE blocks) that is dropped on output: the decoder then always holds exactly one
//! window, so `decoded = written + window - prefix still to drop`. At the end of the file an empty
//! last block ends the frame and releases the rest.

use std::io::Read;

use ruzstd::decoding::FrameDecoder;

use super::{At, PerfDataError};

/// zstd frame magic number.
const FRAME_MAGIC: u32 = 0xFD2F_B528;
/// Largest window accepted: perf's highest level (22) uses 128 MiB.
const MAX_WINDOW: u64 = 128 << 20;
/// Largest block a zstd block header may declare.
const MAX_BLOCK: u64 = 128 << 10;
/// An empty raw block with the last-block bit: ends a frame.
const END_BLOCK: [u8; 3] = [0x01, 0x00, 0x00];

/// The decompression state of a file.
pub(super) struct ZstdStream {
    decoder: FrameDecoder,
    /// Compressed bytes received: `input[consumed..]` is not decoded yet.
    input: Vec<u8>,
    consumed: usize,
    /// Scratch for the synthetic frame start given to the decoder.
    prefix: Vec<u8>,
    /// Window size of the current frame, or `None` between frames.
    window: Option<u64>,
    /// Bytes of the zero prefix still to drop from the output.
    skip: u64,
    /// Checksum bytes of the finished frame still to skip in the input.
    checksum_left: usize,
    /// Real (non-prefix) bytes written to the output so far.
    written: u64,
}

/// The fields of a zstd frame header that matter here.
struct FrameHeader {
    len: usize,
    window: u64,
    checksum: bool,
}

impl ZstdStream {
    pub fn new() -> Self {
        let mut decoder = FrameDecoder::new();
        decoder.set_max_window_size(MAX_WINDOW);
        ZstdStream {
            decoder,
            input: Vec::new(),
            consumed: 0,
            prefix: Vec::new(),
            window: None,
            skip: 0,
            checksum_left: 0,
            written: 0,
        }
    }

    /// How many bytes all input so far decodes to (absolute position in the decompressed stream),
    /// including bytes the decoder has not yet released. Exact once [`ZstdStream::step`] returned
    /// `false`.
    pub fn decoded(&self) -> u64 {
        let held = self.window.unwrap_or(0) + self.decoder.can_collect() as u64;
        self.written + held - self.skip
    }

    /// Queues the payload of one COMPRESSED record; [`ZstdStream::step`] decodes it.
    pub fn push(&mut self, payload: &[u8]) {
        self.input.drain(..self.consumed.min(self.input.len()));
        self.consumed = 0;
        self.input.extend_from_slice(payload);
    }

    /// Appends at most 128 KiB of decompressed data to `out`: what the decoder can release, else
    /// what the next block of the queued input decodes to. Returns `false` when there is nothing
    /// more to give before more input: a caller that consumes `out` between steps never buffers
    /// more than a block, however far the input expands.
    pub fn step(&mut self, out: &mut Vec<u8>, at: At) -> Result<bool, PerfDataError> {
        loop {
            if self.release(out, at)? {
                return Ok(true);
            }
            let rest = self.input.get(self.consumed..).unwrap_or(&[]);
            if self.window.is_some() {
                let Some(len) = block_len(rest, at)? else {
                    return Ok(false);
                };
                let (read, _) = self
                    .decoder
                    .decode_from_to(&rest[..len], &mut [])
                    .map_err(|e| zstd_error(at, e))?;
                if read != len {
                    return Err(zstd_error(
                        at,
                        format!("block of {len} bytes read as {read}"),
                    ));
                }
                self.consumed += len;
                if self.decoder.is_finished() {
                    self.window = None;
                }
                continue;
            }
            if rest.is_empty() {
                return Ok(false);
            }
            if self.checksum_left > 0 {
                let n = self.checksum_left.min(rest.len());
                self.checksum_left -= n;
                self.consumed += n;
                continue;
            }
            let Some(header) = parse_frame_header(rest, at)? else {
                return Ok(false);
            };
            self.prefix.clear();
            self.prefix.extend_from_slice(&rest[..header.len]);
            self.prefix[4] &= !0x04;
            self.consumed += header.len;
            self.start_frame(&header, at)?;
        }
    }

    /// Ends the stream: the frame in progress is closed, and the following calls of
    /// [`ZstdStream::step`] release what the decoder still holds. Compressed bytes that never
    /// formed a complete block are dropped (perf could not decode them either).
    pub fn finish(&mut self, at: At) -> Result<(), PerfDataError> {
        if self.window.is_some() {
            self.decoder
                .decode_from_to(&END_BLOCK, &mut [])
                .map_err(|e| zstd_error(at, e))?;
            self.window = None;
        }
        self.input.clear();
        self.consumed = 0;
        Ok(())
    }

    /// Moves at most [`MAX_BLOCK`] bytes the decoder can release into `out`, dropping the zero
    /// prefix; `false` if it had nothing to release.
    fn release(&mut self, out: &mut Vec<u8>, at: At) -> Result<bool, PerfDataError> {
        let n = self.decoder.can_collect().min(MAX_BLOCK as usize);
        if n == 0 {
            return Ok(false);
        }
        let start = out.len();
        out.resize(start + n, 0);
        let got = self
            .decoder
            .read(&mut out[start..])
            .map_err(|e| zstd_error(at, e))?;
        out.truncate(start + got);
        let dropped = usize::try_from(self.skip).unwrap_or(usize::MAX).min(got);
        out.drain(start..start + dropped);
        self.skip -= dropped as u64;
        self.written += (got - dropped) as u64;
        Ok(got > 0)
    }

    /// Starts a frame: its header, already in `prefix` with the checksum flag cleared (checksums
    /// are skipped here, not checked), then `window` zero bytes as RLE blocks.
    fn start_frame(&mut self, header: &FrameHeader, at: At) -> Result<(), PerfDataError> {
        self.decoder
            .reset(&mut &self.prefix[..])
            .map_err(|e| zstd_error(at, e))?;
        self.prefix.clear();
        let mut left = header.window;
        while left > 0 {
            let block = left.min(MAX_BLOCK).min(header.window);
            // Block header: last = 0, type = 1 (RLE), size = block; then the repeated byte.
            let bits = (block << 3) | (1 << 1);
            self.prefix
                .extend_from_slice(&[bits as u8, (bits >> 8) as u8, (bits >> 16) as u8, 0]);
            left -= block;
        }
        self.decoder
            .decode_from_to(&self.prefix, &mut [])
            .map_err(|e| zstd_error(at, e))?;
        self.window = Some(header.window);
        self.skip = header.window;
        self.checksum_left = if header.checksum { 4 } else { 0 };
        Ok(())
    }
}

fn zstd_error(at: At, e: impl std::fmt::Display) -> PerfDataError {
    PerfDataError::Malformed {
        section: "compressed data",
        at,
        detail: format!("zstd: {e}"),
    }
}

/// The length (header included) of the zstd block at the start of `bytes`, `None` if `bytes`
/// does not hold all of it.
fn block_len(bytes: &[u8], at: At) -> Result<Option<usize>, PerfDataError> {
    let Some(&[b0, b1, b2]) = bytes.get(..3) else {
        return Ok(None);
    };
    let bits = u32::from(b0) | u32::from(b1) << 8 | u32::from(b2) << 16;
    let size = u64::from(bits >> 3);
    let content = match (bits >> 1) & 3 {
        0 | 2 => size,
        1 => 1,
        _ => return Err(zstd_error(at, "reserved block type")),
    };
    if size > MAX_BLOCK {
        return Err(zstd_error(
            at,
            format!("block of {size} bytes is too large"),
        ));
    }
    let len = 3 + content as usize;
    Ok((bytes.len() >= len).then_some(len))
}

/// Parses a zstd frame header at the start of `bytes`; `None` if more bytes are needed.
fn parse_frame_header(bytes: &[u8], at: At) -> Result<Option<FrameHeader>, PerfDataError> {
    let Some(fixed) = bytes.get(..5) else {
        return Ok(None);
    };
    let magic = u32::from_le_bytes([fixed[0], fixed[1], fixed[2], fixed[3]]);
    if magic != FRAME_MAGIC {
        return Err(zstd_error(at, format!("bad frame magic {magic:#x}")));
    }
    let descriptor = fixed[4];
    let single_segment = descriptor & 0x20 != 0;
    let dict_len = [0, 1, 2, 4][usize::from(descriptor & 3)];
    if single_segment || dict_len != 0 || descriptor & 0x08 != 0 {
        return Err(PerfDataError::Unsupported {
            what: format!("zstd frame descriptor {descriptor:#04x} (single segment or dictionary)"),
            at,
        });
    }
    let fcs_len = [0, 2, 4, 8][usize::from(descriptor >> 6)];
    let len = 6 + fcs_len;
    let Some(&window_descriptor) = bytes.get(5) else {
        return Ok(None);
    };
    if bytes.len() < len {
        return Ok(None);
    }
    let exponent = u64::from(window_descriptor >> 3);
    let base = 1u64 << (10 + exponent);
    let window = base + (base / 8) * u64::from(window_descriptor & 7);
    if window > MAX_WINDOW {
        return Err(zstd_error(
            at,
            format!("window of {window} bytes is too large"),
        ));
    }
    Ok(Some(FrameHeader {
        len,
        window,
        checksum: descriptor & 0x04 != 0,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruzstd::encoding::{compress_to_vec, CompressionLevel};

    /// Pseudo-random but compressible data: perf-like records repeat a lot.
    fn sample_data(len: usize) -> Vec<u8> {
        let mut x = 0x1234_5678u32;
        (0..len)
            .map(|i| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                if i % 64 < 40 {
                    (i % 251) as u8
                } else {
                    (x >> 24) as u8
                }
            })
            .collect()
    }

    /// Feeds `compressed` in `chunk`-byte pieces; checks `decoded()` never goes back and ends
    /// at the full length, and returns the output.
    fn decode_in_chunks(compressed: &[u8], chunk: usize) -> Vec<u8> {
        let mut z = ZstdStream::new();
        let mut out = Vec::new();
        let mut last = 0;
        for piece in compressed.chunks(chunk) {
            z.push(piece);
            let mut before = out.len();
            while z.step(&mut out, At::File(0)).unwrap() {
                assert!(
                    out.len() - before <= MAX_BLOCK as usize,
                    "more than a block per step"
                );
                before = out.len();
            }
            assert!(z.decoded() >= last && z.decoded() >= out.len() as u64);
            last = z.decoded();
        }
        z.finish(At::File(0)).unwrap();
        while z.step(&mut out, At::File(0)).unwrap() {}
        assert_eq!(z.decoded(), out.len() as u64);
        out
    }

    #[test]
    fn frames_fed_in_any_pieces_decode_whole() {
        let data = sample_data(300_000);
        let mut compressed = compress_to_vec(&data[..200_000], CompressionLevel::Fastest);
        compressed.extend(compress_to_vec(&data[200_000..], CompressionLevel::Fastest));
        for chunk in [1, 7, 1000, 65_536, compressed.len()] {
            assert!(
                decode_in_chunks(&compressed, chunk) == data,
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut z = ZstdStream::new();
        z.push(b"definitely not zstd");
        let err = z.step(&mut Vec::new(), At::File(77)).unwrap_err();
        assert!(err.to_string().contains("at byte 77"), "{err}");
    }
}
