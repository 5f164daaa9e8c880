//! Decompression of `perf record -z` data: the payloads of all `PERF_RECORD_COMPRESSED` records
//! of a file form one zstd stream (perf keeps one `ZSTD_CStream` for the whole session and only
//! flushes it, so a single frame usually spans the whole file, and a block may straddle two
//! records). This module feeds those payloads, in file order, to one ruzstd [`FrameDecoder`] and
//! appends the decompressed bytes, which are more perf records, to an output buffer.
//!
//! ruzstd keeps the last `window_size` decoded bytes of an unfinished frame for back-references
//! and releases them only when the frame ends, which a perf frame never does before the end of
//! the file. To still know exactly how many bytes the compressed input so far decodes to (the
//! reader places `FINISHED_ROUND` markers by it), every frame is given a `window_size` prefix of
//! zero bytes (RLE blocks) that is dropped on output: the decoder then always holds exactly one
//! window, so `decoded = written + window - prefix still to drop`. At the end of the file an empty
//! last block ends the frame and releases the rest.

use std::io::Write;

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
    /// Compressed bytes received but not yet decodable (a partial block or frame header).
    input: Vec<u8>,
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
            prefix: Vec::new(),
            window: None,
            skip: 0,
            checksum_left: 0,
            written: 0,
        }
    }

    /// How many bytes all input so far decodes to (absolute position in the decompressed stream),
    /// including bytes the decoder has not yet released.
    pub fn decoded(&self) -> u64 {
        self.written + self.window.map_or(0, |w| w - self.skip)
    }

    /// Feeds the payload of one COMPRESSED record (at `at`), appending what it releases to `out`.
    pub fn feed(&mut self, payload: &[u8], out: &mut Vec<u8>, at: At) -> Result<(), PerfDataError> {
        self.input.extend_from_slice(payload);
        let mut consumed = 0;
        let result = self.decode(&mut consumed, out, at);
        self.input.drain(..consumed.min(self.input.len()));
        result
    }

    /// Ends the stream: releases everything the decoder still holds into `out`. Compressed bytes
    /// that never formed a complete block are dropped (perf could not decode them either).
    pub fn finish(&mut self, out: &mut Vec<u8>, at: At) -> Result<(), PerfDataError> {
        if self.window.is_some() {
            self.decoder
                .decode_from_to(&END_BLOCK, &mut [])
                .map_err(|e| zstd_error(at, e))?;
            self.drain(out, at)?;
            self.window = None;
        }
        self.input.clear();
        Ok(())
    }

    fn decode(
        &mut self,
        consumed: &mut usize,
        out: &mut Vec<u8>,
        at: At,
    ) -> Result<(), PerfDataError> {
        loop {
            let rest = self.input.get(*consumed..).unwrap_or(&[]);
            if self.window.is_none() {
                if rest.is_empty() {
                    return Ok(());
                }
                if self.checksum_left > 0 {
                    let n = self.checksum_left.min(rest.len());
                    self.checksum_left -= n;
                    *consumed += n;
                    continue;
                }
                let Some(header) = parse_frame_header(rest, at)? else {
                    return Ok(());
                };
                self.prefix.clear();
                self.prefix.extend_from_slice(&rest[..header.len]);
                self.prefix[4] &= !0x04;
                *consumed += header.len;
                self.start_frame(&header, at)?;
                continue;
            }
            let (read, _) = self
                .decoder
                .decode_from_to(rest, &mut [])
                .map_err(|e| zstd_error(at, e))?;
            *consumed += read;
            self.drain(out, at)?;
            if self.decoder.is_finished() {
                self.window = None;
                continue;
            }
            if read == 0 {
                return Ok(());
            }
        }
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

    /// Moves every byte the decoder releases into `out`, dropping the zero prefix.
    fn drain(&mut self, out: &mut Vec<u8>, at: At) -> Result<(), PerfDataError> {
        let mut sink = SkipWriter {
            out,
            skip: &mut self.skip,
            written: &mut self.written,
        };
        self.decoder
            .collect_to_writer(&mut sink)
            .map_err(|e| PerfDataError::Malformed {
                section: "compressed data",
                at,
                detail: e.to_string(),
            })?;
        Ok(())
    }
}

/// A writer that drops the first `skip` bytes and appends the rest to `out`.
struct SkipWriter<'a> {
    out: &'a mut Vec<u8>,
    skip: &'a mut u64,
    written: &'a mut u64,
}

impl Write for SkipWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let dropped = usize::try_from(*self.skip)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        *self.skip -= dropped as u64;
        self.out.extend_from_slice(&buf[dropped..]);
        *self.written += (buf.len() - dropped) as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
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
            z.feed(piece, &mut out, At::File(0)).unwrap();
            assert!(z.decoded() >= last && z.decoded() >= out.len() as u64);
            last = z.decoded();
        }
        z.finish(&mut out, At::File(0)).unwrap();
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
        let err = z
            .feed(b"definitely not zstd", &mut Vec::new(), At::File(77))
            .unwrap_err();
        assert!(err.to_string().contains("at byte 77"), "{err}");
    }
}
