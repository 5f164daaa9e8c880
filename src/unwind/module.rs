//! The unwind information of one binary: its CFI sections, copied out of the file once, an index
//! to find the FDE covering an SVMA, and its segment map to turn mapping offsets into SVMAs.
//!
//! FDE lookup order: `.eh_frame` through the `.eh_frame_hdr` binary-search table (or through our
//! own sorted index when the header is missing or unusable), then `.debug_frame` (from the binary,
//! or from `/usr/lib/debug/.build-id/xx/yyyy.debug` when the binary has no CFI at all).

use std::path::Path;

use gimli::{
    BaseAddresses, CieOrFde, DebugFrame, DebugFrameOffset, EhFrame, EhFrameHdr, EhFrameOffset,
    EndianSlice, LittleEndian, UnwindContext, UnwindSection,
};
use object::{Object, ObjectSection};

use super::arch::Arch;
use super::rule::{CfiSection, Expr, ExprSource, FrameRule};
use super::UnwindError;
use crate::elf::{MappingRange, SegmentMap};

type Slice<'a> = EndianSlice<'a, LittleEndian>;

/// One FDE of our own index: it covers `[start, end)` and sits at `offset` in its section.
#[derive(Clone, Copy, Debug)]
struct FdeEntry {
    start: u64,
    end: u64,
    offset: usize,
}

/// The parsed unwind information of one file.
#[derive(Debug, Default)]
pub(crate) struct ModuleInfo {
    seg_map: SegmentMap,
    bases: BaseAddresses,
    eh_frame: SectionBytes,
    /// `.eh_frame_hdr`, kept only when it parses and has a search table.
    eh_frame_hdr: Option<SectionBytes>,
    /// Our own index of `.eh_frame`, built when `eh_frame_hdr` is `None`.
    eh_index: Vec<FdeEntry>,
    debug_frame: SectionBytes,
    debug_index: Vec<FdeEntry>,
    /// SVMA ranges `[start, end)` of functions that switch stacks (Go's `runtime.systemstack`,
    /// `runtime.mcall`, ...), sorted: their CFI finds the caller on the wrong stack.
    stack_switches: Vec<(u64, u64)>,
}

/// Go runtime functions that run their callee on another stack (g0 or the signal stack), with
/// or without the `.abi0` suffix of assembly functions: the caller found by their CFI is a stale
/// word of the new stack, not the goroutine that called them. `nanotime1` and `walltime` move
/// to the g0 stack around their vDSO call.
const GO_STACK_SWITCHES: [&str; 6] = [
    "runtime.systemstack",
    "runtime.mcall",
    "runtime.morestack",
    "runtime.asmcgocall",
    "runtime.nanotime1",
    "runtime.walltime",
];

/// The sorted SVMA ranges of the stack-switching functions of a Go binary (none for other files:
/// only Go binaries have a `.gopclntab` section).
fn stack_switch_ranges(file: &object::File) -> Vec<(u64, u64)> {
    use object::ObjectSymbol;
    if file.section_by_name(".gopclntab").is_none() {
        return Vec::new();
    }
    let mut ranges: Vec<(u64, u64)> = file
        .symbols()
        .filter(|s| {
            s.name()
                .is_ok_and(|n| GO_STACK_SWITCHES.contains(&n.strip_suffix(".abi0").unwrap_or(n)))
        })
        .filter(|s| s.size() > 0)
        .map(|s| (s.address(), s.address().saturating_add(s.size())))
        .collect();
    ranges.sort_unstable();
    ranges
}

impl ModuleInfo {
    /// Reads the unwind information of the file at `path`. The path `[vdso]` stands for the
    /// vDSO, which has no file: this process's own vDSO is read instead (the same kernel image
    /// when recording live).
    pub fn load(path: &Path) -> Result<Self, UnwindError> {
        let io = |source| UnwindError::Io {
            path: path.to_path_buf(),
            source,
        };
        let data = if path == Path::new(VDSO) {
            let image = crate::elf::vdso::read_own_image();
            FileData::Owned(image.ok_or_else(|| {
                io(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no vDSO in this process",
                ))
            })?)
        } else {
            FileData::open(path).map_err(io)?
        };
        let map = match &data {
            FileData::Mapped(map) => Some(map),
            FileData::Owned(_) => None,
        };
        let mut info = Self::parse(&data, map).map_err(|source| UnwindError::Object {
            path: path.to_path_buf(),
            source,
        })?;
        if info.eh_frame.is_empty() && info.debug_frame.is_empty() {
            info.load_separate_debug_frame(&data);
        }
        Ok(info)
    }

    /// Parses an ELF image held in memory: `data`, which is the content of `map` if given.
    /// Uncompressed CFI sections then stay in the map (only the pages lookups read become
    /// resident) instead of being copied.
    fn parse(
        data: &[u8],
        map: Option<&std::sync::Arc<memmap2::Mmap>>,
    ) -> Result<Self, object::Error> {
        let file = object::File::parse(data)?;
        let section = |name: &str| {
            let s = file.section_by_name(name)?;
            // A compressed section claiming an absurd size is a bomb: no CFI from it.
            if !crate::elf::plausible_size(&s) {
                return None;
            }
            let bytes = match (s.uncompressed_data().ok()?, map) {
                (std::borrow::Cow::Borrowed(bytes), Some(map)) => SectionBytes::in_map(map, bytes),
                (bytes, _) => SectionBytes::Owned(bytes.into_owned()),
            };
            Some((s.address(), bytes))
        };
        let mut bases = BaseAddresses::default();
        for (name, set) in [
            (".text", BaseAddresses::set_text as fn(_, _) -> _),
            (".got", BaseAddresses::set_got),
        ] {
            if let Some(s) = file.section_by_name(name) {
                bases = set(bases, s.address());
            }
        }
        let mut info = ModuleInfo {
            seg_map: SegmentMap::from_object(&file),
            stack_switches: stack_switch_ranges(&file),
            ..Default::default()
        };
        if let Some((addr, bytes)) = section(".eh_frame") {
            info.bases = bases.set_eh_frame(addr);
            info.eh_frame = bytes;
            if let Some((hdr_addr, hdr)) = section(".eh_frame_hdr") {
                info.bases = info.bases.set_eh_frame_hdr(hdr_addr);
                if hdr_has_table(&hdr, &info.bases) {
                    info.eh_frame_hdr = Some(hdr);
                }
            }
            if info.eh_frame_hdr.is_none() {
                info.eh_index = build_index(&info.eh_section(), &info.bases);
            }
        } else {
            info.bases = bases;
        }
        if let Some((_, bytes)) = section(".debug_frame") {
            info.set_debug_frame(bytes);
        }
        Ok(info)
    }

    fn set_debug_frame(&mut self, bytes: SectionBytes) {
        self.debug_frame = bytes;
        self.debug_index = build_index(&self.debug_section(), &BaseAddresses::default());
    }

    /// Takes `.debug_frame` from the separate debug file named by the build id, if installed.
    fn load_separate_debug_frame(&mut self, data: &[u8]) {
        let Some(path) = object::File::parse(data).ok().and_then(|f| {
            let id = f.build_id().ok().flatten()?;
            crate::elf::build_id_debug_path(Path::new(crate::elf::DEFAULT_DEBUG_ROOT), id)
        }) else {
            return;
        };
        // Mapped only if it is a regular file with the same build-id (never a FIFO or device
        // planted there, never a file of another build).
        let Some(build_id) = object::File::parse(data)
            .ok()
            .and_then(|f| f.build_id().ok().flatten().map(<[u8]>::to_vec))
        else {
            return;
        };
        let Some(debug_data) = crate::symbolize::debugfile::map_with_build_id(&path, &build_id)
        else {
            return;
        };
        let Ok(file) = object::File::parse(&*debug_data) else {
            return;
        };
        let bytes = file
            .section_by_name(".debug_frame")
            .filter(crate::elf::plausible_size)
            .and_then(|s| s.uncompressed_data().ok());
        if let Some(bytes) = bytes {
            self.set_debug_frame(SectionBytes::Owned(bytes.into_owned()));
        }
    }

    /// Whether this file has any CFI.
    pub fn has_cfi(&self) -> bool {
        !self.eh_frame.is_empty() || !self.debug_frame.is_empty()
    }

    /// The SVMA of `avma`, which lies in the mapping `range` of this file.
    pub fn svma(&self, range: &MappingRange, avma: u64) -> Option<u64> {
        if !range.contains(avma) {
            return None;
        }
        self.seg_map.svma_for_file_offset(range.file_offset(avma))
    }

    fn eh_section(&self) -> EhFrame<Slice<'_>> {
        let mut s = EhFrame::new(&self.eh_frame, LittleEndian);
        s.set_address_size(8);
        s
    }

    fn debug_section(&self) -> DebugFrame<Slice<'_>> {
        let mut s = DebugFrame::new(&self.debug_frame, LittleEndian);
        s.set_address_size(8);
        s
    }

    /// The unwind rule at `svma`, or `None` when no FDE covers it (or its CFI is unusable). In a
    /// stack-switching function, a rule that ends the walk.
    pub fn find_rule<A: Arch>(
        &self,
        svma: u64,
        ctx: &mut UnwindContext<usize>,
    ) -> Option<FrameRule> {
        if self.switches_stack(svma) {
            return Some(FrameRule::stack_switch::<A>());
        }
        self.eh_frame_rule::<A>(svma, ctx)
            .or_else(|| self.debug_frame_rule::<A>(svma, ctx))
    }

    /// Whether `svma` lies in a function that switches stacks.
    fn switches_stack(&self, svma: u64) -> bool {
        let i = self
            .stack_switches
            .partition_point(|&(start, _)| start <= svma);
        i > 0 && svma < self.stack_switches[i - 1].1
    }

    fn eh_frame_rule<A: Arch>(
        &self,
        svma: u64,
        ctx: &mut UnwindContext<usize>,
    ) -> Option<FrameRule> {
        if self.eh_frame.is_empty() {
            return None;
        }
        let section = self.eh_section();
        let fde = match &self.eh_frame_hdr {
            Some(hdr) => {
                let parsed = EhFrameHdr::new(hdr, LittleEndian)
                    .parse(&self.bases, 8)
                    .ok()?;
                parsed
                    .table()?
                    .fde_for_address(&section, &self.bases, svma, EhFrame::cie_from_offset)
                    .ok()?
            }
            None => {
                let offset = lookup(&self.eh_index, svma)?;
                section
                    .fde_from_offset(&self.bases, EhFrameOffset(offset), EhFrame::cie_from_offset)
                    .ok()?
            }
        };
        rule_from_fde::<A, _>(&fde, &section, &self.bases, ctx, svma, CfiSection::EhFrame)
    }

    fn debug_frame_rule<A: Arch>(
        &self,
        svma: u64,
        ctx: &mut UnwindContext<usize>,
    ) -> Option<FrameRule> {
        let offset = lookup(&self.debug_index, svma)?;
        let section = self.debug_section();
        let bases = BaseAddresses::default();
        let fde = section
            .fde_from_offset(
                &bases,
                DebugFrameOffset(offset),
                DebugFrame::cie_from_offset,
            )
            .ok()?;
        rule_from_fde::<A, _>(&fde, &section, &bases, ctx, svma, CfiSection::DebugFrame)
    }
}

/// The rule of the row of `fde` (from `section`, `.eh_frame` or `.debug_frame`) for `svma`.
fn rule_from_fde<'a, A: Arch, S: UnwindSection<Slice<'a>>>(
    fde: &gimli::FrameDescriptionEntry<Slice<'a>>,
    section: &S,
    bases: &BaseAddresses,
    ctx: &mut UnwindContext<usize>,
    svma: u64,
    which: CfiSection,
) -> Option<FrameRule> {
    let row = fde
        .unwind_info_for_address(section, bases, ctx, svma)
        .ok()?;
    let ra = fde.cie().return_address_register();
    Some(FrameRule::from_row::<A>(
        row,
        ra,
        fde.is_signal_trampoline(),
        which,
    ))
}

impl ExprSource for ModuleInfo {
    fn expression(&self, e: Expr) -> Option<&[u8]> {
        let section = match e.section {
            CfiSection::EhFrame => &*self.eh_frame,
            CfiSection::DebugFrame => &*self.debug_frame,
        };
        let start = usize::try_from(e.offset).ok()?;
        let len = usize::try_from(e.len).ok()?;
        section.get(start..start.checked_add(len)?)
    }
}

fn hdr_has_table(hdr: &[u8], bases: &BaseAddresses) -> bool {
    EhFrameHdr::new(hdr, LittleEndian)
        .parse(bases, 8)
        .is_ok_and(|p| p.table().is_some())
}

/// Indexes every FDE of a section, sorted by start address.
fn build_index<'a, S: UnwindSection<Slice<'a>>>(section: &S, bases: &BaseAddresses) -> Vec<FdeEntry>
where
    S::Offset: gimli::UnwindOffset<usize>,
{
    let mut index = Vec::new();
    let mut entries = section.entries(bases);
    while let Ok(Some(entry)) = entries.next() {
        if let CieOrFde::Fde(partial) = entry {
            if let Ok(fde) = partial.parse(S::cie_from_offset) {
                index.push(FdeEntry {
                    start: fde.initial_address(),
                    end: fde.end_address(),
                    offset: fde.offset(),
                });
            }
        }
    }
    index.sort_unstable_by_key(|e| e.start);
    index
}

/// The section offset of the FDE covering `svma` in a sorted index.
fn lookup(index: &[FdeEntry], svma: u64) -> Option<usize> {
    let i = index.partition_point(|e| e.start <= svma).checked_sub(1)?;
    let e = index.get(i)?;
    (svma < e.end).then_some(e.offset)
}

/// The bytes of a file: mapped (the CFI sections stay in the map, see [`SectionBytes`]), or read.
enum FileData {
    Mapped(std::sync::Arc<memmap2::Mmap>),
    Owned(Vec<u8>),
}

/// A CFI section's bytes: a range of the file's map, or a copy (decompressed, or read from an
/// image in memory). Big binaries have megabytes of `.eh_frame` (7.7 MB in `libLLVM`), of which
/// unwinding reads a few pages: a copy would make all of it resident.
#[derive(Clone)]
enum SectionBytes {
    Mapped(std::sync::Arc<memmap2::Mmap>, std::ops::Range<usize>),
    Owned(Vec<u8>),
}

impl SectionBytes {
    /// `bytes`, which lie in `map`, as a range of it (a copy if they do not).
    fn in_map(map: &std::sync::Arc<memmap2::Mmap>, bytes: &[u8]) -> Self {
        let start = (bytes.as_ptr() as usize).wrapping_sub(map.as_ptr() as usize);
        match start.checked_add(bytes.len()) {
            Some(end) if end <= map.len() => {
                SectionBytes::Mapped(std::sync::Arc::clone(map), start..end)
            }
            _ => SectionBytes::Owned(bytes.to_vec()),
        }
    }
}

impl Default for SectionBytes {
    fn default() -> Self {
        SectionBytes::Owned(Vec::new())
    }
}

impl std::fmt::Debug for SectionBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SectionBytes({} bytes)", self.len())
    }
}

impl std::ops::Deref for SectionBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            SectionBytes::Mapped(map, range) => &map[range.clone()],
            SectionBytes::Owned(bytes) => bytes,
        }
    }
}

impl FileData {
    fn open(path: &Path) -> std::io::Result<Self> {
        let mut file = crate::elf::open_regular(path)?;
        // SAFETY: the map is read-only and only read (it is kept for the CFI sections in it). A
        // file truncated meanwhile by another process could fault, a risk every profiler takes
        // when reading binaries; binaries replaced by rename keep their old content mapped.
        match unsafe { memmap2::Mmap::map(&file) } {
            Ok(map) => Ok(FileData::Mapped(std::sync::Arc::new(map))),
            Err(_) => {
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut file, &mut bytes)?;
                Ok(FileData::Owned(bytes))
            }
        }
    }
}

impl std::ops::Deref for FileData {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            FileData::Mapped(map) => map,
            FileData::Owned(bytes) => bytes,
        }
    }
}

/// The name memory maps give the vDSO.
const VDSO: &str = "[vdso]";
