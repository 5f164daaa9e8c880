//! The parsed state of one binary: its bytes (mmapped once), its segment map, and, built on first
//! use, its DWARF name index (from the binary or its separate debug file) and its symbol table.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use gimli::{EndianSlice, RunTimeEndian};
use memmap2::Mmap;
use object::{Object, ObjectSection};

use super::dwarf::{DwarfNames, FrameName, Grow};
use super::fde::FunctionBounds;
use super::inflate::Inflating;
use super::lines::{SourceLines, SourceLocation};
use super::names;
use super::symtab::SymbolTable;
use super::{debugfile, SymbolizeError, SymbolizeOptions};
use crate::elf::{SegmentMap, MAX_EXPANSION};

/// A DWARF reader over bytes owned by the [`Binary`]'s [`Storage`].
type Slice = EndianSlice<'static, RunTimeEndian>;

/// Bytes that stay at the same address for as long as they are owned.
enum Bytes {
    Mapped(Mmap),
    Owned(Box<[u8]>),
}

/// Owns every buffer the parsed structures of a [`Binary`] point into: the mapped files and the
/// decompressed debug sections.
#[derive(Default)]
struct Storage {
    blocks: Vec<Bytes>,
    /// Decompressed sections by the address of their compressed bytes, each decompressed once
    /// for the name index and the line tables.
    decompressed: Vec<(usize, &'static [u8])>,
    /// Sections being decompressed as they are read, by the address of their compressed bytes.
    inflating: Vec<(usize, Arc<Mutex<Inflating>>)>,
}

impl Storage {
    /// Takes ownership of `bytes` and returns a view of them that the owning [`Binary`]'s fields
    /// may hold. The `'static` is a private fiction: see the field order of [`Binary`].
    fn keep(&mut self, bytes: Bytes) -> &'static [u8] {
        let (ptr, len) = match &bytes {
            Bytes::Mapped(map) => (map.as_ptr(), map.len()),
            Bytes::Owned(data) => (data.as_ptr(), data.len()),
        };
        self.blocks.push(bytes);
        // SAFETY: `ptr..ptr + len` is the content of a memory map or a boxed slice, which does not
        // move when its owner moves (into `blocks`, or with the `Binary`) and is never written.
        // `blocks` only grows, so the buffer lives as long as the `Storage`. The `Storage` is the
        // last field of `Binary`, so every field holding such a view is dropped before it, and
        // `Binary` never hands out a view that outlives a borrow of itself.
        unsafe { std::slice::from_raw_parts(ptr, len) }
    }

    /// The uncompressed content of `section`, decompressed (into a block kept here) on the first
    /// call for it.
    fn uncompressed(
        &mut self,
        section: &object::Section<'static, '_>,
        name: &'static str,
    ) -> Result<&'static [u8], SymbolizeError> {
        let key = section
            .compressed_data()
            .map_or(0, |c| c.data.as_ptr() as usize);
        if let Some(&(_, data)) = self.decompressed.iter().find(|(k, _)| *k == key) {
            return Ok(data);
        }
        if let Some((_, inflating)) = self.inflating.iter().find(|(k, _)| *k == key) {
            // The name index reads it lazily; the line tables read it all.
            let mut inflating = inflating.lock().unwrap_or_else(|e| e.into_inner());
            return Ok(inflating.all());
        }
        Ok(match bounded_uncompressed_data(section, name)? {
            Cow::Borrowed(data) => data,
            Cow::Owned(data) => {
                let data = self.keep(Bytes::Owned(data.into_boxed_slice()));
                self.decompressed.push((key, data));
                data
            }
        })
    }

    /// Starts decompressing `section` lazily if it is zlib-compressed (see `inflate.rs`); `None`
    /// for a section stored plain, compressed otherwise, or claiming an absurd size.
    fn inflate_lazily(
        &mut self,
        section: &object::Section<'static, '_>,
    ) -> Option<Arc<Mutex<Inflating>>> {
        let compressed = section.compressed_data().ok()?;
        if compressed.format != object::CompressionFormat::Zlib || is_bomb(&compressed) {
            return None;
        }
        let size = usize::try_from(compressed.uncompressed_size).ok()?;
        let inflating = Inflating::new(compressed.data, size);
        let key = compressed.data.as_ptr() as usize;
        self.inflating.push((key, Arc::clone(&inflating)));
        Some(inflating)
    }

    /// Drops the pages of the mapped files from this process's memory: they count in its RSS
    /// once read, and a big binary's symbol tables and debug info would otherwise stay resident.
    /// Views stay valid: a page read again comes back from the page cache (or the file).
    fn release(&self) {
        for block in &self.blocks {
            if let Bytes::Mapped(map) = block {
                // SAFETY: the map is a private, read-only file mapping that nobody writes, so
                // `MADV_DONTNEED` discards no data: the next read of a page maps the file's
                // content again. Owned (heap) blocks, which it would zero, are never passed.
                let _ = unsafe { map.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
            }
        }
    }
}

/// One binary (executable, shared library or vdso image) ready for lookups by SVMA.
///
/// Field order matters: fields are dropped in declaration order, and everything above `storage`
/// may point into it.
pub(crate) struct Binary {
    /// `None` until first needed; then `Some(None)` if there is no usable DWARF.
    dwarf: Option<Option<DwarfNames<Slice>>>,
    /// Reused for each DWARF lookup.
    frames: Vec<FrameName<Slice>>,
    symbols: Option<SymbolTable<'static>>,
    /// Function bounds from `.eh_frame`, read on the first address no symbol covers.
    fdes: Option<FunctionBounds>,
    /// Source lines (`--lines` only): `None` until first asked for; then `Some(None)` if there is
    /// no usable DWARF.
    lines: Option<Option<SourceLines<Slice>>>,
    /// `None` until first needed; then `Some(None)` if there is no separate debug file, else its
    /// path and content.
    debug_object: Option<Option<(PathBuf, object::File<'static>)>>,
    object: object::File<'static>,
    segments: SegmentMap,
    /// The binary's path and the debug root to search for its separate debug file; `None` for
    /// images without a file (vdso).
    debug_search: Option<(PathBuf, PathBuf)>,
    storage: Storage,
}

impl Binary {
    /// Maps and parses the file at `path`, which stands for the file recorded at `recorded` (the
    /// same path, an open file read through `/proc/self/fd/N`, a copy found by build-id); its
    /// debug file, if needed, is searched under `debug_root` (normally `/usr/lib/debug`) and next
    /// to `recorded`.
    pub(crate) fn open(
        path: &Path,
        recorded: &Path,
        debug_root: &Path,
    ) -> Result<Self, SymbolizeError> {
        let io_err = |source| SymbolizeError::Io {
            path: path.to_owned(),
            source,
        };
        let file = crate::elf::open_regular(path).map_err(io_err)?;
        // SAFETY: the map is read-only and only read. Binaries that run are replaced by rename,
        // which keeps the old content mapped; a file truncated in place while we read it would
        // raise SIGBUS, a risk every debugger and profiler takes.
        let map = unsafe { Mmap::map(&file) }.map_err(io_err)?;
        Self::parse(
            Bytes::Mapped(map),
            Some((recorded.to_owned(), debug_root.to_owned())),
        )
    }

    /// Parses an image held in memory, such as the vdso.
    pub(crate) fn from_bytes(bytes: Vec<u8>) -> Result<Self, SymbolizeError> {
        Self::parse(Bytes::Owned(bytes.into_boxed_slice()), None)
    }

    fn parse(
        bytes: Bytes,
        debug_search: Option<(PathBuf, PathBuf)>,
    ) -> Result<Self, SymbolizeError> {
        let mut storage = Storage::default();
        let data = storage.keep(bytes);
        let object = object::File::parse(data).map_err(|source| SymbolizeError::Object {
            path: debug_search
                .as_ref()
                .map(|(path, _)| path.clone())
                .unwrap_or_default(),
            source,
        })?;
        Ok(Binary {
            dwarf: None,
            frames: Vec::new(),
            symbols: None,
            fdes: None,
            lines: None,
            debug_object: None,
            segments: SegmentMap::from_object(&object),
            object,
            debug_search,
            storage,
        })
    }

    /// The SVMA of the byte at `file_offset`.
    pub(crate) fn svma(&self, file_offset: u64) -> Option<u64> {
        self.segments.svma_for_file_offset(file_offset)
    }

    /// Pushes the frames at `svma`, outermost first: the function containing it, named by the
    /// symbol table (as perf does) or else by DWARF, then if `inline` the functions DWARF shows
    /// inlined there. The ELF entry point is `_start` when nothing else names it. Returns false,
    /// pushing nothing, when no source knows the address.
    pub(crate) fn push_frames(
        &mut self,
        svma: u64,
        options: SymbolizeOptions,
        out: &mut Vec<String>,
    ) -> bool {
        self.release_pages();
        let first = out.len();
        let from_symtab = self.push_symbol(svma, options, out);
        if options.inline || !from_symtab {
            self.push_dwarf_frames(svma, options.inline, !from_symtab, options, out);
        }
        if out.len() == first && self.is_entry_point(svma) {
            out.push("_start".into());
        }
        out.len() > first
    }

    /// Pushes the source location of each DWARF frame at `svma`, outermost first (see
    /// `lines.rs`); nothing if the binary has no DWARF. The line tables are read on first use.
    pub(crate) fn push_locations(&mut self, svma: u64, out: &mut Vec<Option<SourceLocation>>) {
        if self.lines.is_none() {
            self.load_debug_object();
            let search = self.debug_search.as_ref();
            let lines = dwarf_object(&self.object, &self.debug_object, search)
                .and_then(|(object, search)| {
                    load_dwarf(object, search, &mut self.storage, false).ok()
                })
                .and_then(|mut dwarf| {
                    // Rust binaries have thousands of units sharing a few abbreviation tables:
                    // each shared table is parsed once instead of once per unit parsed. (This
                    // reads every unit header: the name index does it releasing pages as it
                    // goes; `--lines` keeps gimli's way.)
                    dwarf.populate_abbreviations_cache(
                        gimli::AbbreviationsCacheStrategy::Duplicates,
                    );
                    SourceLines::new(std::sync::Arc::new(dwarf))
                });
            self.storage.release();
            self.lines = Some(lines);
        }
        self.release_pages();
        if let Some(Some(lines)) = &mut self.lines {
            lines.locations(svma, out);
        }
    }

    /// The file offset of the start of the function containing `svma`, from the `.eh_frame` FDE
    /// that covers it: the name of code no symbol covers, the same for every address in it.
    pub(crate) fn function_start(&mut self, svma: u64) -> Option<u64> {
        let (start, _) = self.fdes().find(svma)?;
        self.segments.file_offset_for_svma(start)
    }

    /// True if `svma` is in the function at the ELF entry point of an executable.
    fn is_entry_point(&mut self, svma: u64) -> bool {
        let entry = self.object.entry();
        let executable = self.object.kind() == object::ObjectKind::Executable
            || self.object.section_by_name(".interp").is_some();
        executable
            && entry != 0
            && self
                .fdes()
                .find(svma)
                .is_some_and(|(start, _)| start == entry)
    }

    fn fdes(&mut self) -> &FunctionBounds {
        if self.fdes.is_none() {
            self.fdes = Some(FunctionBounds::build(&self.object));
            self.storage.release();
        }
        self.fdes.get_or_insert_with(FunctionBounds::default)
    }

    /// Drops the mapped pages read so far from memory (see [`Storage::release`]), at each
    /// lookup: DWARF lookups read all over a big binary's debug sections, and pages read once
    /// would otherwise stay resident for the rest of the run. On kernels that map a whole large
    /// folio of the page cache at a time (6.18, on ext4 with a file written or read by `read()`
    /// just before, as a linker does), each page read costs up to 2 MiB of RSS. RocksDB (302 MiB
    /// of DWARF), replaying a 3 s perf.data, peak with small folios / large folios: 36 / 79 MiB
    /// releasing every 8 lookups, 33 / 59 MiB at each, in the same time (0.2-0.3 s).
    fn release_pages(&mut self) {
        self.storage.release();
    }

    /// Pushes DWARF frames at `svma`, outermost first: the outermost function if `outermost`, the
    /// inlined ones if `inlined`.
    fn push_dwarf_frames(
        &mut self,
        svma: u64,
        inlined: bool,
        outermost: bool,
        options: SymbolizeOptions,
        out: &mut Vec<String>,
    ) {
        let mut frames = std::mem::take(&mut self.frames);
        frames.clear();
        let found = match self.dwarf() {
            Some(names) => names.frames(svma, outermost, &mut frames),
            None => false,
        };
        if !found && self.index_everything(svma) {
            if let Some(names) = self.dwarf() {
                names.frames(svma, outermost, &mut frames);
            }
        }
        // `frames` holds the function first if `outermost`, then the calls inlined into it,
        // innermost last.
        let calls = match frames.split_first() {
            Some((function, calls)) if outermost => {
                push_frame(function, options, out);
                calls
            }
            _ => &frames[..],
        };
        if inlined {
            for call in calls {
                push_frame(call, options, out);
            }
        }
        self.frames = frames;
    }

    /// When the DWARF is read lazily and no unit `.debug_aranges` lists covers `svma`, which is
    /// not a PLT stub (code the compiler never describes), indexes every unit, once; returns
    /// whether it did (then a lookup may find more).
    fn index_everything(&mut self, svma: u64) -> bool {
        if self.symbols().lookup(svma).is_some_and(|found| found.plt) {
            return false;
        }
        let storage = &self.storage;
        match &mut self.dwarf {
            Some(Some(names)) if !names.covers(svma) => {
                names.index_everything(&mut || storage.release())
            }
            _ => false,
        }
    }

    /// Pushes the name of the function symbol containing `svma` (`NAME@plt` for a PLT stub).
    /// Returns false if there is none.
    fn push_symbol(&mut self, svma: u64, options: SymbolizeOptions, out: &mut Vec<String>) -> bool {
        let Some(found) = self.symbols().lookup(svma) else {
            return false;
        };
        let raw = String::from_utf8_lossy(found.name);
        let mut name = names::display(&raw, None, options.demangle, options.full_names);
        if found.plt {
            name.push_str("@plt");
        }
        out.push(name);
        true
    }

    /// The DWARF name index, built on first use from the binary or else its debug file.
    fn dwarf(&mut self) -> Option<&mut DwarfNames<Slice>> {
        if self.dwarf.is_none() {
            if !has_dwarf(&self.object) {
                self.load_debug_object();
            }
            let search = self.debug_search.as_ref();
            let storage = &mut self.storage;
            let names = dwarf_object(&self.object, &self.debug_object, search).and_then(
                |(object, search)| {
                    let lazy = lazy_debug_info(object, storage);
                    let dwarf = load_dwarf(object, search, storage, lazy.is_some()).ok()?;
                    let release = &mut || storage.release();
                    Some(match lazy {
                        Some(grow) => DwarfNames::new_lazy(dwarf, grow, release),
                        None => DwarfNames::new(dwarf, release),
                    })
                },
            );
            self.storage.release();
            self.dwarf = Some(names);
        }
        self.dwarf.as_mut()?.as_mut()
    }

    /// The symbol table, built on first use from `.symtab` (the binary's or else its debug
    /// file's) and `.dynsym`.
    fn symbols(&mut self) -> &SymbolTable<'static> {
        if self.symbols.is_none() {
            if self.object.symbols().next().is_none() {
                self.load_debug_object();
            }
            let storage = &self.storage;
            let release = &mut || storage.release();
            let table = match &self.debug_object {
                Some(Some((_, debug))) => SymbolTable::build(&[&self.object, debug], release),
                _ => SymbolTable::build(&[&self.object], release),
            };
            self.symbols = Some(table);
        }
        self.symbols.get_or_insert_with(SymbolTable::default)
    }

    /// Looks for the separate debug file once.
    fn load_debug_object(&mut self) {
        if self.debug_object.is_some() {
            return;
        }
        let found = self.debug_search.as_ref().and_then(|(path, root)| {
            let (debug_path, map) = debugfile::find(path, &self.object, root)?;
            let data = self.storage.keep(Bytes::Mapped(map));
            Some((debug_path, object::File::parse(data).ok()?))
        });
        self.debug_object = Some(found);
    }
}

fn push_frame(frame: &FrameName<Slice>, options: SymbolizeOptions, out: &mut Vec<String>) {
    let name = frame.name.to_string_lossy();
    let name = if frame.scope.is_empty() {
        name
    } else {
        Cow::Owned(format!("{}::{name}", frame.scope.join("::")))
    };
    out.push(names::display(
        &name,
        frame.language,
        options.demangle,
        options.full_names,
    ));
}

fn has_dwarf(object: &object::File<'_>) -> bool {
    object
        .section_by_name(".debug_info")
        .is_some_and(|s| s.size() > 0 && s.kind() != object::SectionKind::UninitializedData)
}

/// The object whose DWARF is used: the binary's own if it has some, else its debug file's
/// (`debug_object`, already looked for), with the path that locates its supplementary file and
/// the debug root.
fn dwarf_object<'a>(
    object: &'a object::File<'static>,
    debug_object: &'a Option<Option<(PathBuf, object::File<'static>)>>,
    search: Option<&'a (PathBuf, PathBuf)>,
) -> Option<(&'a object::File<'static>, Option<(&'a Path, &'a Path)>)> {
    if has_dwarf(object) {
        return Some((
            object,
            search.map(|(path, root)| (path.as_path(), root.as_path())),
        ));
    }
    match (debug_object, search) {
        (Some(Some((path, debug))), Some((_, root))) if has_dwarf(debug) => {
            Some((debug, Some((path.as_path(), root.as_path()))))
        }
        _ => None,
    }
}

/// Sections name lookups never read: not loaded, to save decompressing them.
const UNUSED_SECTIONS: [gimli::SectionId; 4] = [
    gimli::SectionId::DebugLoc,
    gimli::SectionId::DebugLocLists,
    gimli::SectionId::DebugMacinfo,
    gimli::SectionId::DebugMacro,
];

/// Loads the DWARF of `object`, decompressing compressed sections into `storage` (once: the
/// name index and the line tables share them). `search` (the object's path and the debug root)
/// locates a dwz supplementary file if the object links one. (`.debug_line` is loaded for names
/// too: gimli parses a unit's line program header with the unit, and fails without it.)
fn load_dwarf(
    object: &object::File<'static>,
    search: Option<(&Path, &Path)>,
    storage: &mut Storage,
    lazy_info: bool,
) -> Result<gimli::Dwarf<Slice>, SymbolizeError> {
    let mut dwarf = gimli::Dwarf::load(|id| match id {
        // Grown by the name index as it reads it.
        gimli::SectionId::DebugInfo if lazy_info => Ok(EndianSlice::new(&[], endian(object))),
        _ => load_section(object, id, storage),
    })?;
    let supplementary = search.and_then(|(path, root)| {
        let map = debugfile::find_supplementary(path, object, root)?;
        object::File::parse(storage.keep(Bytes::Mapped(map))).ok()
    });
    if let Some(sup) = supplementary {
        dwarf.load_sup(|id| load_section(&sup, id, storage))?;
    }
    Ok(dwarf)
}

/// The uncompressed content of `section`, refused when its compression header claims more than
/// [`MAX_EXPANSION`] times the compressed bytes.
fn bounded_uncompressed_data<'data>(
    section: &object::Section<'data, '_>,
    name: &'static str,
) -> Result<Cow<'data, [u8]>, SymbolizeError> {
    let error = |source| SymbolizeError::Section {
        section: name,
        source,
    };
    let compressed = section.compressed_data().map_err(error)?;
    if compressed.format != object::CompressionFormat::None && is_bomb(&compressed) {
        return Err(SymbolizeError::SectionSize {
            section: name,
            size: compressed.uncompressed_size,
            compressed: compressed.data.len(),
        });
    }
    compressed.decompress().map_err(error)
}

/// Whether a compressed section claims more than [`MAX_EXPANSION`] times its compressed bytes.
fn is_bomb(compressed: &object::CompressedData<'_>) -> bool {
    let limit = (compressed.data.len() as u64)
        .saturating_mul(MAX_EXPANSION)
        .saturating_add(4096);
    compressed.uncompressed_size > limit
}

/// How `object`'s `.debug_info` grows when it is decompressed as it is read: when it is
/// zlib-compressed and `.debug_aranges` lists its units' addresses (without that list every
/// unit header would be read at once, all of the section).
fn lazy_debug_info(object: &object::File<'static>, storage: &mut Storage) -> Option<Grow<Slice>> {
    let aranges = object.section_by_name(".debug_aranges")?;
    if aranges.size() == 0 {
        return None;
    }
    let inflating = storage.inflate_lazily(&object.section_by_name(".debug_info")?)?;
    let endian = endian(object);
    Some(Box::new(move |end| {
        let mut inflating = inflating.lock().unwrap_or_else(|e| e.into_inner());
        EndianSlice::new(inflating.grow(end), endian)
    }))
}

fn endian(object: &object::File<'_>) -> RunTimeEndian {
    if object.is_little_endian() {
        RunTimeEndian::Little
    } else {
        RunTimeEndian::Big
    }
}

/// The content of DWARF section `id` of `object`, empty if absent or unused.
fn load_section(
    object: &object::File<'static>,
    id: gimli::SectionId,
    storage: &mut Storage,
) -> Result<Slice, SymbolizeError> {
    let endian = endian(object);
    let data = match object.section_by_name(id.name()) {
        _ if UNUSED_SECTIONS.contains(&id) => &[],
        Some(section) => storage.uncompressed(&section, id.name())?,
        None => &[],
    };
    Ok(EndianSlice::new(data, endian))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `symbolize` fuzz target: a compressed section whose header claims
    /// 0x1080_0000_0000 bytes made `object` allocate them up front.
    #[test]
    fn compressed_section_bomb_is_refused() {
        let input = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fuzz/corpus/symbolize/crash-189d8f1d0ac9f493647640d703524bbf568d04bf"
        ))
        .unwrap();
        // After the fuzz input's flags and offsets (see `crate::fuzzing`).
        let file = object::File::parse(&input[17..]).unwrap();
        let bomb = file
            .sections()
            .find(|s| {
                s.compressed_data()
                    .is_ok_and(|c| c.uncompressed_size > 1 << 40)
            })
            .unwrap();
        let result = bounded_uncompressed_data(&bomb, ".debug_info");
        assert!(
            matches!(result, Err(SymbolizeError::SectionSize { .. })),
            "{result:?}"
        );
    }
}
