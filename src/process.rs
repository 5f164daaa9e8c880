//! The process model: which files are mapped where in each process, and what each thread is
//! called, as told by MMAP2 / COMM / FORK records (and `/proc` when attaching).
//!
//! Modules (mapped files) are interned once for the whole profile, so a stack frame can be keyed
//! by `(module, file offset)` — independent of where and when the file was mapped — and each
//! unique address is symbolized once at the end.
//!
//! A module's file is found when its first mapping is seen, while the process still runs: a
//! process in another mount namespace (a container) has its files read through its own root
//! (see [`namespace`]), and the file is kept open so that it can still be read after the process
//! is gone.

use rustc_hash::FxHashMap as HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::elf::MappingRange;
use crate::perf::records::MmapFileId;
use crate::symbolize::locate::Locator;

#[cfg(target_os = "linux")]
mod namespace;
#[cfg(not(target_os = "linux"))]
#[path = "process/no_namespace.rs"]
mod namespace;

pub use namespace::FileId;

/// Most files kept open for modules (reached through another process's root or `map_files`,
/// or every mapped file in a live recording), whatever `RLIMIT_NOFILE` allows beyond that (half
/// of what is left after [`FDS_KEPT_FREE`]).
const MAX_HELD_FILES: usize = 2048;

/// File descriptors left to the rest of the tool (perf events, files being read).
const FDS_KEPT_FREE: u64 = 256;

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

/// What an MMAP2 record says of a mapped file besides its path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MappedFile<'a> {
    /// Its GNU build-id (kernels that set `attr.build_id`, `perf record --buildid-mmap`).
    pub build_id: Option<&'a [u8]>,
    /// Its device and inode.
    pub id: Option<FileId>,
}

impl<'a> From<&MmapFileId<'a>> for MappedFile<'a> {
    fn from(file_id: &MmapFileId<'a>) -> Self {
        match *file_id {
            MmapFileId::None => MappedFile::default(),
            MmapFileId::BuildId(id) => MappedFile {
                build_id: Some(id),
                id: None,
            },
            MmapFileId::Inode {
                major,
                minor,
                inode,
                ..
            } => MappedFile {
                build_id: None,
                id: Some(FileId {
                    major,
                    minor,
                    inode,
                }),
            },
        }
    }
}

/// Where a mapping was seen: the process and the mapping's first address.
#[derive(Clone, Copy, Debug)]
struct Origin {
    pid: u32,
    avma: u64,
}

/// Every module seen in the profile.
#[derive(Debug, Default)]
pub struct ModuleTable {
    modules: Vec<ModuleKind>,
    /// In a live recording the file's device and inode are part of the key: two containers may
    /// map different files at the same path.
    index: HashMap<(ModuleKind, Option<FileId>), ModuleId>,
    /// For a recording made elsewhere (a perf.data file): finds each file by its build-id.
    locator: Option<Arc<Locator>>,
    /// Per module: the file to read for it (`None`: none found, or not a file).
    files: Vec<Option<PathBuf>>,
    /// Files opened through another process's root or `map_files`, read as `/proc/self/fd/N`.
    held: Vec<File>,
    /// Per pid: whether it sees another file system than ours (cached until it execs).
    foreign: HashMap<u32, bool>,
    /// A file deleted or replaced after it was mapped that `map_files` refused us (not root), and
    /// how many such.
    refused: Option<(PathBuf, u32, usize)>,
    /// Files not kept open for want of descriptors.
    not_held: usize,
    /// Live recordings: every mapped file is kept open from its first mapping (not only those of
    /// other mount namespaces), so binaries deleted or rebuilt before the end are still read.
    hold_all: bool,
}

impl ModuleTable {
    /// The id of `kind`, interning it on first sight.
    pub fn intern(&mut self, kind: ModuleKind) -> ModuleId {
        self.intern_with_build_id(kind, None)
    }

    /// [`ModuleTable::intern`], with the build-id its MMAP2 record carried, if any: with a
    /// locator, a new file module is looked up by that build-id (else the recorded table's).
    pub fn intern_with_build_id(&mut self, kind: ModuleKind, build_id: Option<&[u8]>) -> ModuleId {
        let mapped = MappedFile { build_id, id: None };
        self.intern_mapped(kind, mapped, None)
    }

    /// Interns a module mapped by the process of `origin`, finding its file on first sight.
    fn intern_mapped(
        &mut self,
        kind: ModuleKind,
        mapped: MappedFile<'_>,
        origin: Option<Origin>,
    ) -> ModuleId {
        let file_id = match (&kind, &self.locator) {
            (ModuleKind::File(_), None) => mapped.id,
            _ => None,
        };
        let key = (kind, file_id);
        if let Some(&id) = self.index.get(&key) {
            return id;
        }
        let file = match &key.0 {
            ModuleKind::File(path) => match self.locator.clone() {
                Some(locator) => self.find_recorded(&locator, path, mapped.build_id, origin),
                None => self.find_live(path, file_id, origin),
            },
            _ => None,
        };
        self.files.push(file);
        let id = ModuleId(self.modules.len() as u32);
        self.modules.push(key.0.clone());
        self.index.insert(key, id);
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

    /// The file to read for a file-backed module: its path; or, for a process that sees other
    /// files, the mapped file reached through its root (`/proc/self/fd/N`); or with a locator
    /// the file found with the recorded build-id (`None` when none matches, see
    /// [`ModuleTable::unmatched`]).
    pub fn file(&self, id: ModuleId) -> Option<&Path> {
        self.files.get(id.0 as usize)?.as_deref()
    }

    /// Keeps every mapped file open from its first mapping (live recordings), so that programs
    /// whose binaries are deleted or replaced before the end are still unwound and named.
    pub fn hold_all_files(&mut self) {
        self.hold_all = true;
    }

    /// A file-backed module for which no file carries the recorded build-id.
    pub fn unmatched(&self, id: ModuleId) -> bool {
        self.locator.is_some() && self.path(id).is_some() && self.file(id).is_none()
    }

    /// One line per problem the user should know of: files deleted or replaced while mapped that
    /// only root may read, files not kept open.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if let Some((path, pid, count)) = &self.refused {
            let more = match count {
                1 => String::new(),
                n => format!(" and {} more", n - 1),
            };
            notes.push(format!(
                "{}{more} changed or was deleted after process {pid} mapped it: its frames may                  be unnamed or misnamed; as root the mapped file is read through                  /proc/PID/map_files",
                path.display()
            ));
        }
        if self.not_held > 0 {
            notes.push(format!(
                "{} mapped files were not kept open (more than {} are): frames of programs deleted                  since or in other mount namespaces may be unnamed; raise `ulimit -n`",
                self.not_held,
                self.held_limit()
            ));
        }
        notes
    }

    /// The file for `path` mapped in a live recording: the file at that path here if it is the
    /// mapped one (same inode), else the one at that path under the process's root, else the
    /// mapped file itself through `map_files` (root only), else the path as it is.
    fn find_live(
        &mut self,
        path: &Path,
        file_id: Option<FileId>,
        origin: Option<Origin>,
    ) -> Option<PathBuf> {
        let (Some(id), Some(Origin { pid, avma })) = (file_id, origin) else {
            return Some(path.to_owned());
        };
        let foreign = *(self.foreign)
            .entry(pid)
            .or_insert_with(|| namespace::sees_other_files(pid));
        // Here the device may differ for the same file (btrfs subvolumes); for a process that
        // sees other files only the same device proves it is the same file.
        if std::fs::metadata(path).is_ok_and(|m| id.is(&m, !foreign)) {
            if self.hold_all {
                let same = |f: &File| {
                    f.metadata()
                        .is_ok_and(|m| m.is_file() && id.is(&m, !foreign))
                };
                if let Some(file) = open_here(path).ok().filter(same) {
                    return self.hold(file).or_else(|| Some(path.to_owned()));
                }
            }
            return Some(path.to_owned());
        }
        let mut fallback = None;
        if foreign {
            match namespace::open_in_root(pid, path) {
                Ok(file) if file.metadata().is_ok_and(|m| id.is(&m, true)) => {
                    return self.hold(file)
                }
                Ok(file) => fallback = Some(file),
                Err(_) => {}
            }
        }
        match namespace::open_mapped(pid, avma) {
            Ok(file) if file.metadata().is_ok_and(|m| id.is(&m, true)) => return self.hold(file),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                let refused = self.refused.get_or_insert((path.to_owned(), pid, 0));
                refused.2 += 1;
            }
            _ => {}
        }
        match fallback {
            Some(file) => self.hold(file),
            None => Some(path.to_owned()),
        }
    }

    /// The file for `path` in a recording made elsewhere: the one the locator finds with the
    /// recorded build-id, else (as perf does) the one under the root of the recorded process if
    /// that pid runs here now and its file carries the recorded build-id.
    fn find_recorded(
        &mut self,
        locator: &Locator,
        path: &Path,
        build_id: Option<&[u8]>,
        origin: Option<Origin>,
    ) -> Option<PathBuf> {
        if let Some(found) = locator.locate(path, build_id) {
            return Some(found);
        }
        let expected = build_id.or_else(|| locator.recorded_build_id(path))?;
        let file = namespace::open_in_root(origin?.pid, path).ok()?;
        let found = crate::symbolize::locate::file_build_id(&fd_path(&file))?;
        if !crate::symbolize::locate::same_build_id(&found, expected) {
            return None;
        }
        self.hold(file)
    }

    /// Keeps `file` open and returns the path it is read by.
    fn hold(&mut self, file: File) -> Option<PathBuf> {
        if self.held.len() >= self.held_limit() {
            self.not_held += 1;
            return None;
        }
        let path = fd_path(&file);
        self.held.push(file);
        Some(path)
    }

    /// How many files may be kept open: [`MAX_HELD_FILES`], at most half of the soft
    /// `RLIMIT_NOFILE` left after [`FDS_KEPT_FREE`].
    fn held_limit(&self) -> usize {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one rlimit struct, which `limit` is.
        let soft = match unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } {
            0 => limit.rlim_cur,
            _ => 1024,
        };
        let spare = soft.saturating_sub(FDS_KEPT_FREE) / 2;
        MAX_HELD_FILES.min(usize::try_from(spare).unwrap_or(MAX_HELD_FILES))
    }
}

/// Opens `path` in our own mount namespace for reading: not through a symlink in its last
/// component, never blocking on a FIFO (the caller checks it is the mapped regular file).
fn open_here(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
}

/// The path by which this process reads its open `file`.
fn fd_path(file: &File) -> PathBuf {
    use std::os::fd::AsRawFd;
    PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()))
}

/// One executable mapping in a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub range: MappingRange,
    pub module: ModuleId,
}

/// The address space of one process; shared between its threads.
#[derive(Clone, Debug)]
pub struct AddressSpace {
    /// Sorted by start, non-overlapping.
    mappings: Vec<Mapping>,
    /// The index of the mapping the last [`AddressSpace::find`] found: a stack's frames are
    /// mostly in the module of the frame before.
    last: std::cell::Cell<usize>,
    /// See [`AddressSpace::version`].
    version: u64,
}

/// The last [`AddressSpace::version`] handed out.
static LAST_VERSION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn next_version() -> u64 {
    LAST_VERSION.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
}

impl Default for AddressSpace {
    fn default() -> Self {
        AddressSpace {
            mappings: Vec::new(),
            last: Default::default(),
            version: next_version(),
        }
    }
}

impl AddressSpace {
    /// A number that changes whenever the mappings do, never 0, and that no other address space
    /// of this run has had (a copy made at a fork keeps it while its mappings are the same):
    /// what a memoized walk depends on (see `unwind::WalkMemo`).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Adds a mapping, replacing whatever it overlaps (as mmap does).
    pub fn insert(&mut self, mapping: Mapping) {
        self.version = next_version();
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
        if let Some(m) = self.mappings.get(self.last.get()) {
            if m.range.contains(avma) {
                return Some(m);
            }
        }
        let i = self.mappings.partition_point(|m| m.range.start <= avma);
        let i = i.checked_sub(1)?;
        let m = self.mappings.get(i)?;
        self.last.set(i);
        m.range.contains(avma).then_some(m)
    }

    pub fn mappings(&self) -> &[Mapping] {
        &self.mappings
    }
}

/// Where the perf maps of a process in another mount namespace are: its `/tmp`, kept open.
#[derive(Debug)]
struct PerfMapDir {
    /// `/proc/self/fd/N` of the directory.
    dir: PathBuf,
    /// The process's id in its own pid namespace, which names its perf map.
    ns_pid: u32,
}

/// Thread names and process address spaces, keyed by tid and pid.
#[derive(Debug, Default)]
pub struct Processes {
    pub modules: ModuleTable,
    spaces: HashMap<u32, AddressSpace>,
    names: HashMap<u32, Arc<str>>,
    /// Per pid with JIT code that sees other files: where its perf map is (`None`: unknown).
    perf_map_dirs: HashMap<u32, Option<PerfMapDir>>,
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
        let mapped = MappedFile { build_id, id: None };
        self.on_mmap_file(pid, range, filename, mapped)
    }

    /// [`Processes::on_mmap`] with what the MMAP2 record says of the file (its build-id or its
    /// inode), so that the very file mapped is read, through the process's own root if it
    /// sees other files than we do (a container).
    pub fn on_mmap_file(
        &mut self,
        pid: u32,
        range: MappingRange,
        filename: &[u8],
        mapped: MappedFile<'_>,
    ) {
        let kind = module_kind(filename);
        if kind == ModuleKind::Anonymous && self.modules.locator.is_none() {
            self.find_perf_map_dir(pid);
        }
        let origin = Origin {
            pid,
            avma: range.start,
        };
        let module = self.modules.intern_mapped(kind, mapped, Some(origin));
        self.spaces
            .entry(pid)
            .or_default()
            .insert(Mapping { range, module });
    }

    /// For a live process with JIT code that sees other files: keeps its `/tmp` open, where its
    /// JIT writes `perf-NSPID.map` (read when symbolizing, maybe after it exits).
    fn find_perf_map_dir(&mut self, pid: u32) {
        if self.perf_map_dirs.contains_key(&pid) {
            return;
        }
        let modules = &mut self.modules;
        let foreign = *(modules.foreign)
            .entry(pid)
            .or_insert_with(|| namespace::sees_other_files(pid));
        let found = foreign
            .then(|| {
                let ns_pid = namespace::ns_pid(pid)?;
                let dir = namespace::open_dir_in_root(pid, Path::new("/tmp")).ok()?;
                let dir = modules.hold(File::from(dir))?;
                Some(PerfMapDir { dir, ns_pid })
            })
            .flatten();
        self.perf_map_dirs.insert(pid, found);
    }

    /// Processes whose perf map is in their own `/tmp` (another mount namespace): pid, the
    /// path to read it by (`/proc/self/fd/N/perf-NSPID.map`).
    pub fn perf_maps_elsewhere(&self) -> impl Iterator<Item = (u32, PathBuf)> + '_ {
        (self.perf_map_dirs.iter()).filter_map(|(&pid, found)| {
            let found = found.as_ref()?;
            Some((pid, found.dir.join(format!("perf-{}.map", found.ns_pid))))
        })
    }

    /// One line per problem with the files of the recording (see [`ModuleTable::notes`]).
    pub fn notes(&self) -> Vec<String> {
        self.modules.notes()
    }

    /// A thread was named; `exec` means the process replaced its image, so its old mappings go.
    pub fn on_comm(&mut self, pid: u32, tid: u32, name: &[u8], exec: bool) {
        let name: Arc<str> = Arc::from(String::from_utf8_lossy(name).as_ref());
        if exec {
            self.spaces.insert(pid, AddressSpace::default());
            // It may have entered a namespace (`unshare --mount CMD` does, then execs).
            self.modules.foreign.remove(&pid);
            self.perf_map_dirs.remove(&pid);
            // Every thread of the process now runs the new image under the new name.
            self.names.insert(pid, Arc::clone(&name));
        }
        self.names.insert(tid, name);
    }

    /// A process or thread was created: a new process inherits its parent's address space, a new
    /// thread its creator's name.
    pub fn on_fork(&mut self, pid: u32, ppid: u32, tid: u32, ptid: u32) {
        if pid != ppid {
            self.modules.foreign.remove(&pid);
            self.perf_map_dirs.remove(&pid);
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

    fn file_id(meta: &std::fs::Metadata) -> FileId {
        use std::os::unix::fs::MetadataExt;
        FileId {
            major: libc::major(meta.dev()),
            minor: libc::minor(meta.dev()),
            inode: meta.ino(),
        }
    }

    /// The file here with the mapped inode is read at its path; another inode at the same path
    /// is another module.
    #[cfg(target_os = "linux")]
    #[test]
    fn live_files_are_told_apart_by_inode() {
        let exe = std::env::current_exe().unwrap();
        let id = file_id(&std::fs::metadata(&exe).unwrap());
        let name = exe.as_os_str().as_encoded_bytes();
        let own = std::process::id();
        let mut p = Processes::default();
        let mapped = |id| MappedFile {
            build_id: None,
            id: Some(id),
        };
        p.on_mmap_file(own, range(0x1000, 0x2000, 0), name, mapped(id));
        let other = FileId {
            inode: id.inode + 1,
            ..id
        };
        p.on_mmap_file(own, range(0x3000, 0x4000, 0), name, mapped(other));
        let a = p.space(own).unwrap().find(0x1000).unwrap().module;
        let b = p.space(own).unwrap().find(0x3000).unwrap().module;
        assert_ne!(a, b);
        assert_eq!(p.modules.file(a), Some(exe.as_path()));
        assert_eq!(p.modules.path(b), Some(exe.as_path()));
    }

    /// A file deleted after it was mapped: as root read through `map_files` (and kept open),
    /// otherwise one note.
    #[cfg(target_os = "linux")]
    #[test]
    fn deleted_files_are_read_through_map_files_as_root() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lib.so");
        std::fs::write(&path, b"mapped bytes").unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let id = file_id(&file.metadata().unwrap());
        // SAFETY: a private read-only map of a file this test wrote and nobody else changes.
        let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
        drop(file);
        std::fs::remove_file(&path).unwrap();
        let start = map.as_ptr() as u64;
        let deleted = format!("{} (deleted)", path.display());
        let mut p = Processes::default();
        let mapped = MappedFile {
            build_id: None,
            id: Some(id),
        };
        let own = std::process::id();
        p.on_mmap_file(
            own,
            range(start, start + 4096, 0),
            deleted.as_bytes(),
            mapped,
        );
        let module = p.space(own).unwrap().find(start).unwrap().module;
        assert_eq!(p.modules.path(module), Some(path.as_path()));
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            let found = p.modules.file(module).unwrap();
            assert!(found.starts_with("/proc/self/fd/"), "{}", found.display());
            assert_eq!(std::fs::read(found).unwrap(), b"mapped bytes");
            assert!(p.notes().is_empty(), "{:?}", p.notes());
        } else {
            assert_eq!(p.modules.file(module), Some(path.as_path()));
            let notes = p.notes();
            assert!(
                notes.len() == 1 && notes[0].contains("map_files"),
                "{notes:?}"
            );
        }
        drop(map);
    }
}
