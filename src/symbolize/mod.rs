//! Symbolization: addresses → function names, with `object` + `gimli` for ELF files and the
//! vdso, `/proc/kallsyms` for the kernel, and `/tmp/perf-PID.map` for JIT code.
//!
//! The caller symbolizes each unique address once; a [`Symbolizer`] caches the parsed state of
//! every binary (one memory map, one DWARF name index and one symbol table, each built on first use),
//! never the results. Lookups never fail: what cannot be named gets a placeholder.
//!
//! # Names
//!
//! Frames are pushed outermost first, as in a folded stack (`root;...;leaf`): for one address, the
//! function that contains it, then the functions inlined into it, the innermost last.
//!
//! - **User code**: as `perf script` does, the function containing the address is named by the
//!   symbol table (`.symtab`, else the debug file's, plus `.dynsym`; among aliases the global,
//!   sized one with the fewest leading underscores, so `malloc` rather than `__libc_malloc`), or
//!   by DWARF where no symbol covers it. With inline frames on (the default), the functions DWARF
//!   shows inlined at the address follow, innermost last, under their DWARF names. Turning inline
//!   frames off only drops those: the outermost name stays the same.
//! - **Names** follow the rules of `names.rs`, the same for every backend: demangled (on by
//!   default), no symbol version, no C++ return type or parameter list, no Rust generic
//!   arguments (unless `full_names`). PLT stubs are `NAME@plt`, from the PLT relocations.
//! - **Unresolved user address**: `FILE_NAME+0xOFFSET`, the file's base name and, in hex, the
//!   file offset of the start of the function containing it (from the `.eh_frame` FDE that
//!   covers it), else of the address itself (`libfoo.so+0x1234`); the vdso gives
//!   `[vdso]+0xOFFSET`. The entry point of an executable is `_start` even when stripped.
//! - **Kernel**: `NAME_[k]`, the suffix inferno's perf collapser gives kernel frames (the module of
//!   a module symbol is not shown). Unresolved: `[kernel.kallsyms]+0xADDRESS_[k]`, with the
//!   absolute address, since kallsyms has no base to subtract.
//! - **JIT**: the perf map's name as written (demangled if it is a mangled name).
//!
//! Source lines (`--lines`) are a separate entry point,
//! [`Symbolizer::symbolize_file_with_lines`]: the same names, each with its file and line from
//! the DWARF line tables (`lines.rs`, `addr2line` over the sections the name index loaded),
//! parsed per binary on its first such lookup, never on the default path.
//!
//! Separate debug files are found by build-id under `/usr/lib/debug/.build-id/` (another root can
//! be given) and by
//! `.gnu_debuglink` (CRC-checked), with dwz supplementary files (`.gnu_debugaltlink`), see
//! `debugfile.rs`, and last from debuginfod servers when `DEBUGINFOD_URLS` is set and
//! [`debuginfod::configure`] turned them on (`debuginfod.rs`). Not supported: split DWARF (`.dwo`), MiniDebugInfo (`.gnu_debugdata`).

mod binary;
pub(crate) mod debugfile;
pub mod debuginfod;
mod demangle;
mod dwarf;
mod fde;
mod inflate;
mod kallsyms;
mod kallsyms_cache;
mod lines;
pub mod locate;
pub mod names;
mod perfmap;
mod private_dir;
mod symtab;
#[cfg(all(test, target_os = "linux"))]
pub(crate) mod tests;

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use binary::Binary;
use kallsyms::Kallsyms;
pub use lines::SourceLocation;

/// One frame at an address with its source location (see
/// [`Symbolizer::symbolize_file_with_lines`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SymbolFrame {
    /// The frame's name, as [`Symbolizer::symbolize_file`] gives it.
    pub name: String,
    /// Where the frame's code is: for the innermost frame the line of the address, for each
    /// outer frame the call site of the inlined call it contains. `None` without line info.
    pub location: Option<SourceLocation>,
}

/// The kernel's symbol table from `/proc/kallsyms`, loaded ahead of symbolization (for instance
/// on a thread while recording).
pub struct KernelSymbols(Kallsyms);

impl KernelSymbols {
    /// The running kernel's symbols: its own text's from the cache when there, else all of
    /// `/proc/kallsyms` (an empty table when it cannot be read); see `kallsyms_cache.rs`.
    pub fn load() -> Self {
        KernelSymbols(kallsyms_cache::running_kernel())
    }

    /// Reads a kallsyms file saved elsewhere (`--kallsyms FILE`); an empty table when it is not
    /// a readable regular file.
    pub fn from_file(path: &Path) -> Self {
        // Read from the file checked, not opened again by path.
        match crate::elf::open_regular(path) {
            Ok(file) => KernelSymbols(Kallsyms::from_reader(file)),
            Err(_) => KernelSymbols(Kallsyms::default()),
        }
    }
}
use perfmap::PerfMap;

/// Why a binary could not be used; kept per file, see [`Symbolizer::failed_files`].
#[derive(Debug, thiserror::Error)]
pub enum SymbolizeError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot parse {path} as an object file: {source}")]
    Object {
        path: PathBuf,
        #[source]
        source: object::Error,
    },
    #[error("cannot decompress section {section}: {source}")]
    Section {
        section: &'static str,
        #[source]
        source: object::Error,
    },
    #[error(
        "section {section} claims {size} bytes once decompressed from {compressed}: not debug info"
    )]
    SectionSize {
        section: &'static str,
        size: u64,
        compressed: usize,
    },
    #[error("bad DWARF: {0}")]
    Dwarf(#[from] gimli::Error),
    #[error("no vdso image in this process")]
    NoVdso,
}

/// How names are produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SymbolizeOptions {
    /// Show functions inlined at an address, each as its own frame. Default: `true`.
    pub inline: bool,
    /// Demangle Rust and C++ names. Default: `true`.
    pub demangle: bool,
    /// Keep the generic arguments of Rust names (`fold<usize, …>`). Default: `false`.
    pub full_names: bool,
}

impl Default for SymbolizeOptions {
    fn default() -> Self {
        SymbolizeOptions {
            inline: true,
            demangle: true,
            full_names: false,
        }
    }
}

impl SymbolizeOptions {
    /// Options with both switches given.
    pub fn new(inline: bool, demangle: bool) -> Self {
        SymbolizeOptions {
            inline,
            demangle,
            full_names: false,
        }
    }

    /// These options with [`SymbolizeOptions::full_names`] set to `full`.
    pub fn with_full_names(mut self, full: bool) -> Self {
        self.full_names = full;
        self
    }
}

/// A binary as the cache keeps it: its display name and its parsed state, or why there is none.
struct Module {
    name: Box<str>,
    binary: Result<Binary, SymbolizeError>,
}

impl Module {
    /// Opens the file at `path`, named after `display` (the path the recording gave it).
    fn open(path: &Path, display: &Path, debug_root: &Path) -> Self {
        let name = display
            .file_name()
            .map_or_else(|| path.to_string_lossy(), |n| n.to_string_lossy());
        Module {
            name: name.into(),
            binary: Binary::open(path, display, debug_root),
        }
    }

    fn vdso() -> Self {
        Module {
            name: "[vdso]".into(),
            binary: crate::elf::vdso::read_own_image()
                .ok_or(SymbolizeError::NoVdso)
                .and_then(Binary::from_bytes),
        }
    }

    /// Pushes the frames at `file_offset`, or the `NAME+0xOFFSET` placeholder: the offset of the
    /// start of the function (from `.eh_frame`) if known, else of the address.
    fn symbolize(&mut self, file_offset: u64, options: SymbolizeOptions, out: &mut Vec<String>) {
        let mut offset = file_offset;
        if let Ok(binary) = &mut self.binary {
            if let Some(svma) = binary.svma(file_offset) {
                if binary.push_frames(svma, options, out) {
                    return;
                }
                offset = binary.function_start(svma).unwrap_or(file_offset);
            }
        }
        out.push(format!("{}+{offset:#x}", self.name));
    }
}

/// A binary read apart from any [`Symbolizer`], by a [`FilePreparer`]: ready to be
/// [`Symbolizer::adopt`]ed.
pub struct PreparedFile {
    path: OsString,
    module: Module,
}

/// Reads binaries for a [`Symbolizer`] that another thread owns meanwhile (see
/// [`Symbolizer::preparer`]).
pub struct FilePreparer {
    options: SymbolizeOptions,
    debug_root: PathBuf,
}

impl FilePreparer {
    /// Reads the file at `path` (recorded as `display`) and does the work of a first lookup
    /// at `file_offset` in it (its symbol table, its DWARF index and the unit there), as
    /// [`Symbolizer::symbolize_file_as`] would.
    pub fn prepare(&self, path: &Path, display: &Path, file_offset: u64) -> PreparedFile {
        let mut module = Module::open(path, display, &self.debug_root);
        module.symbolize(file_offset, self.options, &mut Vec::new());
        PreparedFile {
            path: path.as_os_str().to_owned(),
            module,
        }
    }
}

/// Turns addresses into function names, caching the parsed state of every binary it reads.
pub struct Symbolizer {
    options: SymbolizeOptions,
    files: HashMap<OsString, Module>,
    vdso: Option<Module>,
    kallsyms: Option<Kallsyms>,
    perf_maps: HashMap<u32, Option<PerfMap>>,
    perf_map_dir: PathBuf,
    /// Per pid: its perf map in its own mount namespace, looked at before `perf_map_dir`'s.
    own_perf_maps: HashMap<u32, PathBuf>,
    debug_root: PathBuf,
    /// One-line notes for the user (perf maps skipped or cut), see [`Symbolizer::notes`].
    notes: Vec<String>,
    /// Reused by [`Symbolizer::symbolize_file_with_lines`].
    scratch_names: Vec<String>,
    scratch_locations: Vec<Option<SourceLocation>>,
}

impl Symbolizer {
    /// A symbolizer with nothing loaded yet.
    pub fn new(options: SymbolizeOptions) -> Self {
        Symbolizer {
            options,
            files: HashMap::new(),
            vdso: None,
            kallsyms: None,
            perf_maps: HashMap::new(),
            perf_map_dir: PathBuf::from("/tmp"),
            own_perf_maps: HashMap::new(),
            debug_root: PathBuf::from(crate::elf::DEFAULT_DEBUG_ROOT),
            notes: Vec::new(),
            scratch_names: Vec::new(),
            scratch_locations: Vec::new(),
        }
    }

    /// Reads perf maps (`perf-PID.map`) from `dir` instead of `/tmp`.
    pub fn with_perf_map_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.perf_map_dir = dir.into();
        self
    }

    /// Looks for process `pid`'s perf map at `path` (in its own mount namespace, see
    /// `Processes::perf_maps_elsewhere`) before `/tmp/perf-PID.map`, as perf does.
    pub fn add_perf_map(&mut self, pid: u32, path: PathBuf) {
        self.own_perf_maps.insert(pid, path);
    }

    /// Searches separate debug files under `dir` (its `.build-id/` tree, and the binary's
    /// directory below it for `.gnu_debuglink`) instead of `/usr/lib/debug`.
    pub fn with_debug_root(mut self, dir: impl Into<PathBuf>) -> Self {
        self.debug_root = dir.into();
        self
    }

    /// The options this symbolizer was built with.
    pub fn options(&self) -> SymbolizeOptions {
        self.options
    }

    /// A reader of binaries for this symbolizer, to use on another thread.
    pub fn preparer(&self) -> FilePreparer {
        FilePreparer {
            options: self.options,
            debug_root: self.debug_root.clone(),
        }
    }

    /// Whether the file at `path` was read already (or failed to be).
    pub fn has_file(&self, path: &Path) -> bool {
        self.files.contains_key(path.as_os_str())
    }

    /// Takes a file read by a [`FilePreparer`] into the cache, unless it is there already.
    pub fn adopt(&mut self, file: PreparedFile) {
        self.files.entry(file.path).or_insert(file.module);
    }

    /// Pushes the frames at `file_offset` in the file at `path`, outermost first.
    ///
    /// `file_offset` is the offset in the file of the lookup address (`ra - 1` already applied to
    /// return addresses: `avma - mapping start + mapping pgoff`). Never fails: an address that
    /// cannot be named, or a file that cannot be read (tried only once), gives `NAME+0xOFFSET`.
    pub fn symbolize_file(&mut self, path: &Path, file_offset: u64, out: &mut Vec<String>) {
        self.symbolize_file_as(path, path, file_offset, out)
    }

    /// [`Symbolizer::symbolize_file`] for the file at `path` standing for the file recorded at
    /// `display` (a copy found by build-id elsewhere): placeholders use `display`'s name. A file
    /// is named after the `display` of its first lookup.
    pub fn symbolize_file_as(
        &mut self,
        path: &Path,
        display: &Path,
        file_offset: u64,
        out: &mut Vec<String>,
    ) {
        let options = self.options;
        let module = match self.files.get_mut(path.as_os_str()) {
            Some(module) => module,
            None => self
                .files
                .entry(path.as_os_str().to_owned())
                .or_insert_with(|| Module::open(path, display, &self.debug_root)),
        };
        module.symbolize(file_offset, options, out);
    }

    /// [`Symbolizer::symbolize_file`] with each frame's source file and line, read lazily from
    /// the DWARF line tables (built per file on its first call; the default path never reads
    /// them). Frames without line info (no DWARF, placeholders) get no location.
    pub fn symbolize_file_with_lines(
        &mut self,
        path: &Path,
        file_offset: u64,
        out: &mut Vec<SymbolFrame>,
    ) {
        self.symbolize_file_as_with_lines(path, path, file_offset, out)
    }

    /// [`Symbolizer::symbolize_file_with_lines`] for a file standing for the one recorded at
    /// `display` (see [`Symbolizer::symbolize_file_as`]).
    pub fn symbolize_file_as_with_lines(
        &mut self,
        path: &Path,
        display: &Path,
        file_offset: u64,
        out: &mut Vec<SymbolFrame>,
    ) {
        let mut names = std::mem::take(&mut self.scratch_names);
        names.clear();
        self.symbolize_file_as(path, display, file_offset, &mut names);
        let mut locations = std::mem::take(&mut self.scratch_locations);
        locations.clear();
        if let Some(Ok(binary)) = self.files.get_mut(path.as_os_str()).map(|m| &mut m.binary) {
            if let Some(svma) = binary.svma(file_offset) {
                binary.push_locations(svma, &mut locations);
            }
        }
        // Both lists are outermost first and come from the same DWARF entries; with inline
        // frames off only the outermost name is there, and it takes the outermost location.
        let mut locations_iter = locations.drain(..);
        for name in names.drain(..) {
            out.push(SymbolFrame {
                name,
                location: locations_iter.next().flatten(),
            });
        }
        drop(locations_iter);
        self.scratch_names = names;
        self.scratch_locations = locations;
    }

    /// Pushes the frames at `offset` into the vdso image (the AVMA minus the `[vdso]` mapping's
    /// start). The image is read once from this process's memory; it is the same kernel image in
    /// every process.
    pub fn symbolize_vdso(&mut self, offset: u64, out: &mut Vec<String>) {
        let options = self.options;
        self.vdso
            .get_or_insert_with(Module::vdso)
            .symbolize(offset, options, out);
    }

    /// Uses kernel symbols loaded beforehand (see [`KernelSymbols::load`]), so reading
    /// `/proc/kallsyms` (slow: the kernel formats ~200k lines) can overlap the recording.
    pub fn set_kernel_symbols(&mut self, symbols: KernelSymbols) {
        self.kallsyms = Some(symbols.0);
    }

    /// Pushes `NAME_[k]` for the kernel function containing `address`, from `/proc/kallsyms`
    /// (read once; the kernel's own text may come from the cache, and then an address outside
    /// it has the whole file read), or `[kernel.kallsyms]+0xADDRESS_[k]`.
    pub fn symbolize_kernel(&mut self, address: u64, out: &mut Vec<String>) {
        let kallsyms = (self.kallsyms).get_or_insert_with(kallsyms_cache::running_kernel);
        if !kallsyms.covers(address) {
            *kallsyms = Kallsyms::load(Path::new("/proc/kallsyms"));
        }
        out.push(match kallsyms.lookup(address) {
            Some(name) => format!("{name}_[k]"),
            None => format!("[kernel.kallsyms]+{address:#x}_[k]"),
        });
    }

    /// Pushes the name of the JIT region containing `avma` from `perf-PID.map` (read once per
    /// pid). Returns false, pushing nothing, if the map is missing or has no such region. A
    /// process in another mount namespace writes it in its own `/tmp` under its own pid (see
    /// [`Symbolizer::add_perf_map`]): that one is looked at first.
    ///
    /// The map is used only if it is a regular file (not a symlink) owned by root, by this
    /// process's user, or by the owner of `/proc/PID` if the process still runs; otherwise it is
    /// skipped with a note (see [`Symbolizer::notes`]).
    pub fn symbolize_jit(&mut self, pid: u32, avma: u64, out: &mut Vec<String>) -> bool {
        let (dir, notes) = (&self.perf_map_dir, &mut self.notes);
        let own = self.own_perf_maps.get(&pid);
        let map = self.perf_maps.entry(pid).or_insert_with(|| {
            let here = dir.join(format!("perf-{pid}.map"));
            let paths = own.into_iter().chain(std::iter::once(&here));
            PerfMap::load_first(paths, &owners(pid), notes)
        });
        let Some(name) = map.as_ref().and_then(|m| m.lookup(avma)) else {
            return false;
        };
        out.push(names::display(
            name,
            None,
            self.options.demangle,
            self.options.full_names,
        ));
        true
    }

    /// Lets go of what was read of the file at `path` (its symbols and debug info), unless it
    /// could not be read (the reason is kept for [`Symbolizer::failed_files`]); a later lookup
    /// reads it again. The end of a recording names each module's addresses together and then
    /// lets the module go, so that memory holds one module's debug info at a time, not all.
    pub fn release(&mut self, path: &Path) {
        if (self.files.get(path.as_os_str())).is_some_and(|m| m.binary.is_ok()) {
            self.files.remove(path.as_os_str());
        }
    }

    /// One line per problem the user should know of: perf maps skipped (not a regular file,
    /// owned by another user) or only partly read.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// The files that could not be read or parsed so far, with the reason.
    pub fn failed_files(&self) -> impl Iterator<Item = (&Path, &SymbolizeError)> {
        self.files
            .iter()
            .filter_map(|(path, m)| Some((Path::new(path), m.binary.as_ref().err()?)))
    }
}

/// The users whose perf map for `pid` is trusted (root always is): this process's effective
/// user, and the owner of `/proc/PID` while the process exists.
fn owners(pid: u32) -> Vec<u32> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let mut owners = vec![unsafe { libc::geteuid() }];
    if let Ok(meta) = std::fs::metadata(format!("/proc/{pid}")) {
        owners.push(meta.uid());
    }
    owners
}

/// Symbolizes `file_offsets` in an object file held in memory (no separate debug file is searched),
/// as [`Symbolizer::symbolize_file`] does for a file on disk. For the fuzz targets.
pub(crate) fn symbolize_image(
    bytes: Vec<u8>,
    file_offsets: &[u64],
    options: SymbolizeOptions,
) -> Vec<String> {
    let mut module = Module {
        name: "image".into(),
        binary: Binary::from_bytes(bytes),
    };
    let mut out = Vec::new();
    for &offset in file_offsets {
        module.symbolize(offset, options, &mut out);
    }
    out
}

impl Default for Symbolizer {
    fn default() -> Self {
        Self::new(SymbolizeOptions::default())
    }
}
