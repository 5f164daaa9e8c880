//! Entry points for the fuzz targets (`fuzz/`) and for the replay of their committed corpus
//! (`tests/fuzz_corpus.rs`). Not a stable API: each function takes the raw bytes of one fuzz
//! input, decodes them into a call of the library, and uses every result so that nothing is
//! optimized away. They must never panic, hang or allocate without bound, whatever the input.
//!
//! Input layouts (all integers little-endian; a short input is padded with zeros):
//!
//! - [`record`]: `sample_type: u64`, `sample_regs_user: u64`, `read_format: u8`, `flags: u8`
//!   (bit 0: `sample_id_all`, bit 1: branch `HW_INDEX`), `kind: u8` (record type), `misc: u16`,
//!   then the record body.
//! - [`perf_data`]: a whole perf.data file.
//! - [`symbolize`]: `flags: u8` (bit 0: inline frames, bit 1: demangle), four file offsets
//!   (`u32`), then the bytes of an object file.
//! - [`unwind`]: `flags: u8` (bit 0: aarch64 instead of x86_64, the other bits: which module),
//!   four registers (`u64`: ip/pc, sp, bp/x29, lr) given as offsets (see [`unwind`]), then the
//!   stack bytes.

use std::path::Path;

use crate::elf::MappingRange;
use crate::frame::CodeAddress;
use crate::perf::{parse_record, record_time, Record, SampleFormat};
use crate::unwind::{
    Aarch64, Aarch64Regs, Arch, ModuleLookup, ModuleRef, StackSnapshot, Unwinder, X86_64Regs,
    X86_64,
};

/// Little-endian fields taken one after the other from the front of a fuzz input.
struct Fields<'a> {
    data: &'a [u8],
}

impl<'a> Fields<'a> {
    /// The next `N` bytes, zero-padded if the input is shorter.
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut word = [0u8; N];
        let n = self.data.len().min(N);
        word[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        word
    }

    fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.take())
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }

    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }

    /// The bytes after the fields taken.
    fn rest(self) -> &'a [u8] {
        self.data
    }
}

/// Parses one record body with a fuzzed [`SampleFormat`], then reads every part of the result.
pub fn record(data: &[u8]) {
    let mut f = Fields { data };
    let sample_type = f.u64();
    let sample_regs_user = f.u64();
    let read_format = u64::from(f.u8());
    let flags = f.u8();
    let format = SampleFormat {
        sample_type,
        sample_regs_user,
        read_format,
        branch_sample_type: if flags & 2 != 0 {
            crate::perf::BRANCH_SAMPLE_HW_INDEX
        } else {
            0
        },
        sample_id_all: flags & 1 != 0,
    };
    let kind = u32::from(f.u8());
    let misc = f.u16();
    let body = f.rest();
    std::hint::black_box(record_time(&format, kind, body));
    if let Ok(record) = parse_record(&format, kind, misc, body) {
        std::hint::black_box(use_record(record));
    }
}

/// Walks every part of a parsed record, as the stack collector would; returns a checksum.
fn use_record(record: Record<'_>) -> u64 {
    match record {
        Record::Sample(s) => {
            let chain = s
                .callchain
                .frames()
                .map(|(_, a)| a)
                .fold(0, u64::wrapping_add);
            let kernel = s.callchain.kernel().count() + s.callchain.user().count();
            let regs = (s.user_regs.iter().flat_map(|r| r.iter())).fold(0, |a, (_, v)| a ^ v);
            chain ^ regs ^ kernel as u64 ^ s.user_stack.len() as u64
        }
        Record::Mmap2(m) => m.address ^ m.filename.len() as u64,
        Record::Comm(c) => c.name.len() as u64,
        other => format!("{other:?}").len() as u64,
    }
}

/// Reads a whole perf.data file from memory, touching every record delivered. Returns the
/// number of samples, or the error.
pub fn perf_data(data: &[u8]) -> Result<u64, crate::perf::data_file::PerfDataError> {
    let mut sum = 0u64;
    let result = crate::perf::data_file::read_perf_data_bytes(data, &mut |_, record| {
        sum = sum.wrapping_add(use_record(record));
    });
    // Errors must render (they are what the user sees).
    if let Err(e) = &result {
        std::hint::black_box(e.to_string());
    }
    std::hint::black_box(sum);
    result.map(|summary| summary.samples)
}

/// Symbolizes four file offsets in an object file given as bytes.
pub fn symbolize(data: &[u8]) -> Vec<String> {
    let mut f = Fields { data };
    let flags = f.u8();
    let offsets = [f.u32(), f.u32(), f.u32(), f.u32()].map(u64::from);
    let options = crate::symbolize::SymbolizeOptions::new(flags & 1 != 0, flags & 2 != 0);
    crate::symbolize::symbolize_image(f.rest().to_vec(), &offsets, options)
}

/// Where [`unwind`] maps its module (a typical PIE load address).
pub const UNWIND_BASE: u64 = 0x5555_5555_4000;
/// Where [`unwind`]'s stack starts: the sampled `sp` is this plus the fuzzed `sp` offset.
pub const UNWIND_STACK: u64 = 0x7ffd_0000_0000;

/// One module, `elf`, mapped whole at [`UNWIND_BASE`] from file offset 0.
struct OneModule<'a> {
    path: &'a Path,
    range: MappingRange,
}

impl ModuleLookup for OneModule<'_> {
    fn find(&self, avma: u64) -> Option<ModuleRef<'_>> {
        self.range.contains(avma).then_some(ModuleRef {
            range: self.range,
            path: self.path,
            key: None,
        })
    }
}

/// Unwinds fuzzed registers and stack bytes over one of the real ELF files `elfs` (chosen by the
/// flags), mapped at [`UNWIND_BASE`]. The ip and lr are offsets from `UNWIND_BASE` and sp and fp offsets from
/// [`UNWIND_STACK`] (all wrapping), so small values land in the code and in the stack. Returns
/// the frames found.
pub fn unwind(elfs: &[&Path], data: &[u8]) -> Vec<CodeAddress> {
    let mut f = Fields { data };
    let flags = f.u8();
    let Some(elf) = elfs.get(usize::from(flags >> 1) % elfs.len().max(1)) else {
        return Vec::new();
    };
    let [pc, sp, fp, lr] = [f.u64(), f.u64(), f.u64(), f.u64()];
    let (pc, lr) = (UNWIND_BASE.wrapping_add(pc), UNWIND_BASE.wrapping_add(lr));
    let (sp, fp) = (UNWIND_STACK.wrapping_add(sp), UNWIND_STACK.wrapping_add(fp));
    let len = std::fs::metadata(elf).map_or(0, |m| m.len());
    let modules = OneModule {
        path: elf,
        range: MappingRange {
            start: UNWIND_BASE,
            end: UNWIND_BASE + len.next_multiple_of(4096),
            pgoff: 0,
        },
    };
    let stack = StackSnapshot::new(sp, f.rest());
    let mut out = Vec::new();
    if flags & 1 == 0 {
        let regs = X86_64Regs::new(pc, sp, fp);
        walk::<X86_64>(&regs, &stack, &modules, &mut out);
    } else {
        let regs = Aarch64Regs::new(pc, sp, lr, fp);
        walk::<Aarch64>(&regs, &stack, &modules, &mut out);
    }
    out
}

/// One walk with a fresh unwinder, checked against the walk's documented bounds.
fn walk<A: Arch>(
    regs: &A::Regs,
    stack: &StackSnapshot,
    modules: &dyn ModuleLookup,
    out: &mut Vec<CodeAddress>,
) {
    let end = Unwinder::<A>::new().unwind(regs, stack, modules, out);
    assert!(
        out.len() <= crate::unwind::MAX_DEPTH,
        "{} frames ({end:?})",
        out.len()
    );
}
