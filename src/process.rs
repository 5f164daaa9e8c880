//! The process model: which files are mapped where in each process, and what each thread is
//! called, as told by MMAP2 / COMM / FORK records (and `/proc` when attaching).
//!
//! Modules (mapped files) are interned once for the whole profile, so a stack frame can be keyed
//! by `(module, file offset)` — independent of where and when the file was mapped — and each
//! unique address is symbolized once at the end.

use rustc_hash::FxHashMap as HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::elf::MappingRange;
use crate::symbolize::locate::Locator;

/// Index of a module in the [`ModuleTable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModuleId(pub u32);

/// What kind of thing a mapping maps.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ModuleKind {
    /// A file on disk.
    File(PathBuf),
    /// The kernel's vDSO image.
    Vdso,
    /// Anonymous executable memory (JIT code), named by `/tmp/perf-PID.map` if anything.
    Anonymous,
}

/// Every module seen in the profile.
#[derive(Debug, Default)]
pub struct ModuleTable {
    modules: Vec<ModuleKind>,
    index: HashMap<ModuleKind, ModuleId>,
    /// For a recording made elsewhere (a perf.data file): finds each file by its build-id.
    locator: Option<Arc<Locator>>,
    /// With a locator, per module: the file found for it (`None`: no file matches).
    files: Vec<Option<PathBuf>>,
    /// Per module: the file opened when its mapping appeared (live recordings), read through
    /// its `/proc/self/fd` link from then on, even once deleted or replaced on disk.
    opened: Vec<Option<OpenedFile>>,
}

/// A file held open for the profile's lifetime, and a path that reads it.
#[derive(Debug)]
struct OpenedFile {
    _file: std::fs::File,
    path: PathBuf,
}

impl ModuleTable {
    /// The id of `kind`, interning it on first sight.
    pub fn intern(&mut self, kind: ModuleKind) -> ModuleId {
        self.intern_with_build_id(kind, None)
    }

    /// [`ModuleTable::intern`], with the build-id its MMAP2 record carried, if any: with a
    /// locator, a new file module is looked up by that build-id (else the recorded table's).
    pub fn intern_with_build_id(&mut self, kind: ModuleKind, build_id: Option<&[u8]>) -> ModuleId {
        if let Some(&id) = self.index.get(&kind) {
            return id;
        }
        if let Some(locator) = &self.locator {
            self.files.push(match &kind {
                ModuleKind::File(path) => locator.locate(path, build_id),
                _ => None,
            });
        }
        let id = ModuleId(self.modules.len() as u32);
        self.modules.push(kind.clone());
        self.index.insert(kind, id);
        id
    }

    pub fn get(&self, id: ModuleId) -> &ModuleKind {
        &self.modules[id.0 as usize]
    }

    /// The file path of a file-backed module, as recorded.
    pub fn path(&self, id: ModuleId) -> Option<&Path> {
        match self.get(id) {
            ModuleKind::File(p) => Some(p),
            _ => None,
        }
    }

    /// The file to read for a file-backed module: the file opened for it
    /// ([`ModuleTable::set_opened`]), else its path, or with a locator the file found with the
    /// recorded build-id (`None` when none matches, see [`ModuleTable::unmatched`]).
    pub fn file(&self, id: ModuleId) -> Option<&Path> {
        if let Some(Some(opened)) = self.opened.get(id.0 as usize) {
            return Some(&opened.path);
        }
        match &self.locator {
            None => self.path(id),
            Some(_) => self.files.get(id.0 as usize)?.as_deref(),
        }
    }

    /// Whether a file was opened for `id` ([`ModuleTable::set_opened`]).
    pub fn is_opened(&self, id: ModuleId) -> bool {
        matches!(self.opened.get(id.0 as usize), Some(Some(_)))
    }

    /// Keeps `file`, the file module `id` maps, open until the table is dropped; `path` reads
    /// it (`/proc/self/fd/N`) and replaces the module's path as the file to read, so a binary
    /// deleted or replaced after it was mapped is still read as it was.
    pub fn set_opened(&mut self, id: ModuleId, file: std::fs::File, path: PathBuf) {
        let i = id.0 as usize;
        if self.opened.len() <= i {
            self.opened.resize_with(i + 1, || None);
        }
        self.opened[i] = Some(OpenedFile { _file: file, path });
    }

    /// A file-backed module for which no file carries the recorded build-id.
    pub fn unmatched(&self, id: ModuleId) -> bool {
        self.locator.is_some() && self.path(id).is_some() && self.file(id).is_none()
    }
}

/// One executable mapping in a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub range: MappingRange,
    pub module: ModuleId,
}

/// The address space of one process; shared between its threads.
#[derive(Clone, Debug, Default)]
pub struct AddressSpace {
    /// Sorted by start, non-overlapping.
    mappings: Vec<Mapping>,
}

impl AddressSpace {
    /// Adds a mapping, replacing whatever it overlaps (as mmap does).
    pub fn insert(&mut self, mapping: Mapping) {
        let (start, end) = (mapping.range.start, mapping.range.end);
        let mut kept: Vec<Mapping> = Vec::with_capacity(self.mappings.len() + 2);
        for m in self.mappings.drain(..) {
            if m.range.end <= start || m.range.start >= end {
                kept.push(m);
                continue;
            }
            // Keep the parts of `m` outside the new mapping.
            if m.range.start < start {
                kept.push(Mapping {
                    range: MappingRange {
                        start: m.range.start,
                        end: start,
                        pgoff: m.range.pgoff,
                    },
                    module: m.module,
                });
            }
            if m.range.end > end {
                kept.push(Mapping {
                    range: MappingRange {
                        start: end,
                        end: m.range.end,
                        pgoff: m.range.pgoff + (end - m.range.start),
                    },
                    module: m.module,
                });
            }
        }
        kept.push(mapping);
        kept.sort_by_key(|m| m.range.start);
        self.mappings = kept;
    }

    /// The mapping containing `avma`.
    pub fn find(&self, avma: u64) -> Option<&Mapping> {
        let i = self.mappings.partition_point(|m| m.range.start <= avma);
        let m = self.mappings.get(i.checked_sub(1)?)?;
        m.range.contains(avma).then_some(m)
    }

    pub fn mappings(&self) -> &[Mapping] {
        &self.mappings
    }
}

/// Thread names and process address spaces, keyed by tid and pid.
#[derive(Debug, Default)]
pub struct Processes {
    pub modules: ModuleTable,
    spaces: HashMap<u32, AddressSpace>,
    names: HashMap<u32, Arc<str>>,
}

impl Processes {
    /// A process model for a recording made elsewhere: files are found by `locator`.
    pub fn with_locator(locator: Arc<Locator>) -> Self {
        let mut processes = Processes::default();
        processes.modules.locator = Some(locator);
        processes
    }

    /// The address space of process `pid` (empty if unknown).
    pub fn space(&self, pid: u32) -> Option<&AddressSpace> {
        self.spaces.get(&pid)
    }

    /// The name of thread `tid`, falling back to its process's, then to `[pid]`.
    pub fn name(&self, pid: u32, tid: u32) -> Arc<str> {
        self.names
            .get(&tid)
            .or_else(|| self.names.get(&pid))
            .cloned()
            .unwrap_or_else(|| Arc::from(format!("[{pid}]")))
    }

    /// An executable mapping appeared in `pid`.
    pub fn on_mmap(&mut self, pid: u32, range: MappingRange, filename: &[u8]) {
        self.on_mmap_with_build_id(pid, range, filename, None)
    }

    /// [`Processes::on_mmap`] for an MMAP2 record that carries the file's build-id.
    pub fn on_mmap_with_build_id(
        &mut self,
        pid: u32,
        range: MappingRange,
        filename: &[u8],
        build_id: Option<&[u8]>,
    ) {
        let kind = module_kind(filename);
        let module = self.modules.intern_with_build_id(kind, build_id);
        self.spaces
            .entry(pid)
            .or_default()
            .insert(Mapping { range, module });
    }

    /// A thread was named; `exec` means the process replaced its image, so its old mappings go.
    pub fn on_comm(&mut self, pid: u32, tid: u32, name: &[u8], exec: bool) {
        let name: Arc<str> = Arc::from(String::from_utf8_lossy(name).as_ref());
        if exec {
            self.spaces.insert(pid, AddressSpace::default());
            // Every thread of the process now runs the new image under the new name.
            self.names.insert(pid, Arc::clone(&name));
        }
        self.names.insert(tid, name);
    }

    /// A process or thread was created: a new process inherits its parent's address space, a new
    /// thread its creator's name.
    pub fn on_fork(&mut self, pid: u32, ppid: u32, tid: u32, ptid: u32) {
        if pid != ppid {
            if let Some(space) = self.spaces.get(&ppid).cloned() {
                self.spaces.insert(pid, space);
            }
        }
        if let Some(name) = self
            .names
            .get(&ptid)
            .or_else(|| self.names.get(&ppid))
            .cloned()
        {
            self.names.insert(tid, name);
        }
    }
}

fn module_kind(filename: &[u8]) -> ModuleKind {
    match filename {
        b"[vdso]" => ModuleKind::Vdso,
        b"" | b"//anon" | b"[anon]" | b"/dev/zero" => ModuleKind::Anonymous,
        name if name.starts_with(b"[anon:") || name.starts_with(b"/memfd:") => {
            ModuleKind::Anonymous
        }
        name if name.starts_with(b"/") => {
            let s = String::from_utf8_lossy(name);
            // A binary replaced or deleted while it runs: the kernel appends " (deleted)".
            let s = s.strip_suffix(" (deleted)").unwrap_or(&s);
            ModuleKind::File(PathBuf::from(s))
        }
        _ => ModuleKind::Anonymous,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(start: u64, end: u64, pgoff: u64) -> MappingRange {
        MappingRange { start, end, pgoff }
    }

    #[test]
    fn mappings_replace_what_they_overlap() {
        let mut p = Processes::default();
        p.on_mmap(1, range(0x1000, 0x5000, 0), b"/bin/a");
        p.on_mmap(1, range(0x2000, 0x3000, 0), b"/bin/b");
        let space = p.space(1).unwrap();
        let names: Vec<_> = space
            .mappings()
            .iter()
            .map(|m| {
                (
                    m.range.start,
                    m.range.end,
                    m.range.pgoff,
                    p.modules.path(m.module).unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            names,
            vec![
                (0x1000, 0x2000, 0, PathBuf::from("/bin/a")),
                (0x2000, 0x3000, 0, PathBuf::from("/bin/b")),
                (0x3000, 0x5000, 0x2000, PathBuf::from("/bin/a")),
            ]
        );
        assert_eq!(
            p.space(1).unwrap().find(0x3fff).unwrap().range.start,
            0x3000
        );
        assert!(p.space(1).unwrap().find(0x5000).is_none());
        assert!(p.space(1).unwrap().find(0x0fff).is_none());
    }

    #[test]
    fn fork_exec_and_names() {
        let mut p = Processes::default();
        p.on_comm(10, 10, b"sh", false);
        p.on_mmap(10, range(0x1000, 0x2000, 0), b"/bin/sh");
        p.on_fork(11, 10, 11, 10);
        assert_eq!(&*p.name(11, 11), "sh");
        assert!(p.space(11).unwrap().find(0x1800).is_some());
        p.on_comm(11, 11, b"prog", true);
        assert!(p.space(11).unwrap().find(0x1800).is_none());
        p.on_fork(11, 11, 12, 11); // a thread of prog
        assert_eq!(&*p.name(11, 12), "prog");
        assert_eq!(&*p.name(99, 99), "[99]");
        p.on_mmap(11, range(0x7000, 0x8000, 0), b"/tmp/x (deleted)");
        let m = p.space(11).unwrap().find(0x7000).unwrap();
        assert_eq!(p.modules.path(m.module), Some(Path::new("/tmp/x")));
    }
}
