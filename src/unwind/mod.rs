//! Stack unwinding of copied user stacks with DWARF CFI (gimli) and frame pointers.
//!
//! # Algorithm
//!
//! A sample gives the user registers and a copy of the user stack starting at the sampled `sp`
//! ([`StackSnapshot`]). [`Unwinder::unwind`] walks it frame by frame, leaf first:
//!
//! 1. The frame's code address is pushed: the first one, and the one right after a signal frame,
//!    are exact instruction pointers; every other one is a return address, whose unwind rules are
//!    looked up at `ra - 1` (inside the call instruction), see [`CodeAddress::lookup_address`].
//! 2. The lookup address is mapped to a module ([`ModuleLookup`]) and translated to an SVMA with
//!    the file's segment map (`svma = seg_map.svma_for_file_offset(range.file_offset(avma))`),
//!    which takes care of PIE executables and shared libraries.
//! 3. The rule for `(module, svma)` comes from the rule cache, or else from the module's CFI:
//!    `.eh_frame` via the `.eh_frame_hdr` binary-search table (or our own sorted FDE index), then
//!    `.debug_frame`. The row is reduced to a small copyable [`rule::FrameRule`] and cached.
//! 4. The rule gives the CFA (register + offset, or a DWARF expression evaluated against any
//!    tracked register and the snapshot, as PLT stubs and `_dl_runtime_resolve_xsavec` need) and
//!    the caller's return address, `sp` (the CFA unless a rule says otherwise) and registers: the
//!    callee-saved ones ([`Arch::CALLEE_SAVED`]) from their save slots or unchanged, the others
//!    unknown. A save slot below the frame's `sp` (an epilogue that already popped it) means the
//!    register already holds the caller's value.
//! 5. Code without CFI (JIT code, hand-written assembly, a file that cannot be read) is unwound
//!    with frame pointers: `[fp]` is the saved frame pointer, `[fp + 8]` the return address and
//!    `fp + 16` the caller's `sp`, on x86_64 and aarch64 alike.
//!
//! A sample's callers are usually the previous sample's: [`Unwinder::unwind_memoized`] takes
//! them from the thread's last walk ([`WalkMemo`]) once the walk reaches one of that walk's
//! frames in the same state and every read the rest of it made still gives the same (see
//! `memo.rs`), so a steady stack costs a few loads per frame instead of a rule per frame.
//!
//! # Sanity rules
//!
//! - The walk is [`UnwindEnd::Complete`] when the CFI leaves the return address undefined (the
//!   outermost frame, e.g. `_start` or a thread's start) or the return address is 0.
//! - It is [`UnwindEnd::Truncated`] when a needed read falls past the copied bytes (but not absurdly
//!   far: more than [`MAX_STACK_SPAN`] above `sp` is a bogus address).
//! - It is [`UnwindEnd::Stopped`] otherwise: a read below the snapshot's `sp`, no CFI and a
//!   frame pointer that is missing, misaligned or below `sp`, a CFI rule we cannot evaluate, a
//!   stack pointer that does not strictly move up (except for the first frame on aarch64, whose
//!   return address may still be in the link register), or more than [`MAX_DEPTH`] frames. As
//!   `sp` strictly grows, the walk cannot loop.
//! - It is [`UnwindEnd::StackSwitch`] in a function that runs its callee on another stack (Go's
//!   `runtime.systemstack`, `runtime.mcall`, `runtime.morestack`, `runtime.asmcgocall`, found by
//!   symbol in Go binaries): the CFI would read a stale word of the new stack as the caller.
//! - It is [`UnwindEnd::BadAddress`] when a return address lies in no executable mapping
//!   ([`ModuleLookup::is_code`]): a wrong caller is worse than none.

pub mod arch;
mod memo;
mod module;
mod rule;
mod sample;
#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use gimli::UnwindContext;

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub use self::arch::NativeArch;
pub use self::arch::{Aarch64, Aarch64Regs, Arch, RegFile, X86_64Regs, MAX_REGS, X86_64};
pub use self::memo::WalkMemo;
use self::memo::{Cursor, Read, ReadLog, Recording};
use self::module::ModuleInfo;
use self::rule::{apply_rule_in_place, FrameRule, Step};
pub use self::sample::{regs_from_sample, SampleRegs};
use crate::elf::MappingRange;
use crate::frame::CodeAddress;
use rustc_hash::FxHashMap as FastMap;

/// The most frames one walk produces.
pub const MAX_DEPTH: usize = 4096;

/// Reads further than this above the sampled `sp` are bogus addresses, not a truncated stack (a
/// sanity bound on addresses, unlike [`crate::options::MAX_STACK_SIZE`], the kernel's limit on the
/// bytes one sample copies).
pub const MAX_STACK_SPAN: u64 = 256 << 20;

/// Rule cache entries kept before the cache is flushed.
const RULE_CACHE_CAPACITY: usize = 1 << 16;

/// Errors while loading a module's unwind information. The walk itself never fails: a module that
/// cannot be read is unwound with frame pointers.
#[derive(Debug, thiserror::Error)]
pub enum UnwindError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot parse {path} as an object file: {source}")]
    Object {
        path: PathBuf,
        source: object::Error,
    },
}

/// A copy of the user stack: `bytes[i]` is the memory at `sp + i`; optionally, the live stack
/// past the copy ([`StackSnapshot::with_live`]).
#[derive(Clone, Copy)]
pub struct StackSnapshot<'a> {
    /// The sampled stack pointer.
    pub sp: u64,
    /// The copied stack (the kernel's `dyn_size` bytes).
    pub bytes: &'a [u8],
    /// Where reads past the copied bytes go, if anywhere.
    live: Option<&'a dyn LiveStack>,
    /// Where every read is recorded, if anywhere (a memoized walk).
    log: Option<&'a ReadLog>,
}

impl std::fmt::Debug for StackSnapshot<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StackSnapshot")
            .field("sp", &self.sp)
            .field("bytes", &self.bytes.len())
            .field("live", &self.live.is_some())
            .finish()
    }
}

/// The stack memory of the sampled thread past the copied bytes, read from the running process
/// (its callers' frames, which stay put while the sampled frames are live): see
/// `collect::live`.
pub trait LiveStack {
    /// Fills `out` with the memory at `address`; false when it cannot be read.
    fn read(&self, address: u64, out: &mut [u8]) -> bool;
}

/// Why a read from a [`StackSnapshot`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReadError {
    /// Past the copied bytes: the stack was cut.
    Truncated,
    /// Below `sp` or absurdly far above it: a bogus address.
    Invalid,
}

impl<'a> StackSnapshot<'a> {
    /// The copy `bytes` of the stack at `sp`.
    pub fn new(sp: u64, bytes: &'a [u8]) -> Self {
        StackSnapshot {
            sp,
            bytes,
            live: None,
            log: None,
        }
    }

    /// This copy, with reads past its end served by `live`.
    pub fn with_live(self, live: &'a dyn LiveStack) -> Self {
        StackSnapshot {
            live: Some(live),
            ..self
        }
    }

    /// This copy, recording every read in `log`.
    fn logged(self, log: &'a ReadLog) -> Self {
        StackSnapshot {
            log: Some(log),
            ..self
        }
    }

    /// Reads the little-endian value of `size` bytes (1 to 8) at `addr`.
    pub(crate) fn read_sized(&self, addr: u64, size: u8) -> Result<u64, ReadError> {
        let result = self.read_unlogged(addr, size);
        if let Some(log) = self.log {
            log.borrow_mut().push(Read::new(addr, size, result));
        }
        result
    }

    /// [`StackSnapshot::read_sized`] without recording the read.
    fn read_unlogged(&self, addr: u64, size: u8) -> Result<u64, ReadError> {
        let size = usize::from(size);
        if size == 0 || size > 8 {
            return Err(ReadError::Invalid);
        }
        let offset = addr.checked_sub(self.sp).ok_or(ReadError::Invalid)?;
        if offset > MAX_STACK_SPAN {
            return Err(ReadError::Invalid);
        }
        let start = usize::try_from(offset).map_err(|_| ReadError::Invalid)?;
        if size == 8 {
            if let Some(word) = self.bytes.get(start..start + 8) {
                let word: [u8; 8] = word.try_into().map_err(|_| ReadError::Invalid)?;
                return Ok(u64::from_le_bytes(word));
            }
        }
        let mut word = [0u8; 8];
        match self.bytes.get(start..start + size) {
            Some(src) => word[..size].copy_from_slice(src),
            None => self.read_live(addr, &mut word[..size])?,
        }
        Ok(u64::from_le_bytes(word))
    }

    /// Reads past the copied bytes from the live stack, if there is one.
    #[cold]
    fn read_live(&self, addr: u64, out: &mut [u8]) -> Result<(), ReadError> {
        match self.live {
            Some(live) if live.read(addr, out) => Ok(()),
            _ => Err(ReadError::Truncated),
        }
    }

    /// Reads the 8-byte word at `addr`.
    pub(crate) fn read_u64(&self, addr: u64) -> Result<u64, ReadError> {
        self.read_sized(addr, 8)
    }
}

/// A file-backed executable mapping of the sampled process.
#[derive(Clone, Copy, Debug)]
pub struct ModuleRef<'a> {
    /// Where the file is mapped.
    pub range: MappingRange,
    /// The file on disk, as the mapping names it, opened in the profiler's own mount namespace
    /// (a process in another namespace, e.g. a container, may map a file the profiler cannot see
    /// at that path; reading it through `/proc/PID/root` is not implemented). `[vdso]` stands for
    /// the vDSO, read from this process's own copy.
    pub path: &'a Path,
    /// A small number the lookup gives this file and no other for as long as the unwinder is
    /// used (the collector's module id), if it has one: the unwinder then finds its parsed
    /// tables by index instead of hashing the path at every frame.
    pub key: Option<u32>,
}

/// The sampled process's memory map, as the unwinder needs it.
pub trait ModuleLookup {
    /// The file-backed mapping containing `avma`, if any.
    fn find(&self, avma: u64) -> Option<ModuleRef<'_>>;

    /// Whether `avma` lies in any executable mapping, file-backed or anonymous (JIT code). A
    /// return address for which this is false ends the walk ([`UnwindEnd::BadAddress`]). The
    /// default, for callers that do not know the anonymous mappings, accepts every address.
    fn is_code(&self, avma: u64) -> bool {
        let _ = avma;
        true
    }
}

/// How a walk ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnwindEnd {
    /// Reached the outermost frame: return address undefined by the CFI, or zero.
    Complete,
    /// Needed memory beyond the copied stack: the caller marks the stack truncated.
    Truncated,
    /// Gave up: no usable rule and no frame pointer, `sp` did not move up, a bad address, too deep.
    Stopped,
    /// Reached a function that runs its callee on another stack (Go's `runtime.systemstack`,
    /// `runtime.mcall`, ...): the caller is on a stack that was not copied. The last frame is
    /// that function; a caller found from here would be a stale word, not the real caller.
    StackSwitch,
    /// A return address outside every executable mapping: not pushed, the walk cannot be
    /// trusted beyond the last frame.
    BadAddress,
}

/// Walks copied stacks; keeps parsed unwind information per file and a rule cache, so it should
/// live as long as the recording.
pub struct Unwinder<A: Arch> {
    /// Module ids by path bytes (hashing a `Path` goes component by component: slower).
    module_ids: FastMap<Box<[u8]>, u32>,
    /// Indexed by module id; `None` for a file that could not be read.
    modules: Vec<Option<ModuleInfo>>,
    /// Module ids by [`ModuleRef::key`] ([`Unwinder::UNKEYED`] where not known yet).
    keyed: Vec<u32>,
    rules: RuleCache,
    ctx: Box<UnwindContext<usize>>,
    /// The stack pointer of each frame of the last walk (see [`Unwinder::frame_sps`]).
    sps: Vec<u64>,
    /// The lookup address, module id and rule (index into the rule cache's table) of the walk's
    /// last frame that had a rule: a recursion's frames return to one address over and over, and
    /// within one walk (one process) the same address has the same module and rule.
    repeat: Option<(u64, u32, u32)>,
    /// Bumped whenever parsed files are forgotten: walks remembered before are not reused.
    epoch: u64,
    /// How many frames of the last memoized walk were taken from the remembered one.
    reused: usize,
    /// Buffers of memoized walks, kept to be reused.
    recording: Recording,
    read_log: Vec<Read>,
    _arch: PhantomData<A>,
}

/// A walk that records itself and may take its callers from a remembered walk.
struct Memoizing<'a> {
    memo: &'a WalkMemo,
    /// Where the walk stands in `memo` (`None`: `memo` does not apply).
    cursor: Option<Cursor>,
    recording: &'a mut Recording,
    log: &'a ReadLog,
}

/// How [`Unwinder::walk`] ended.
enum Walked {
    /// On its own.
    Ended(UnwindEnd),
    /// At [`MAX_DEPTH`] frames.
    TooDeep,
    /// By taking the rest of the remembered walk from the cursor's frame on.
    Reused(Cursor),
}

impl<A: Arch> Default for Unwinder<A> {
    fn default() -> Self {
        Self::new()
    }
}

impl<A: Arch> Unwinder<A> {
    /// An unwinder with empty caches.
    pub fn new() -> Self {
        Unwinder {
            module_ids: FastMap::default(),
            modules: Vec::new(),
            keyed: Vec::new(),
            rules: RuleCache::default(),
            ctx: Box::new(UnwindContext::new()),
            sps: Vec::with_capacity(256),
            repeat: None,
            epoch: 0,
            reused: 0,
            recording: Recording::default(),
            read_log: Vec::new(),
            _arch: PhantomData,
        }
    }

    /// The stack pointer each frame of the last [`Unwinder::unwind`] ran at, one per address it
    /// pushed (the sampled `sp` for the first, the CFA of its callee for the others): with the
    /// frame's address it identifies an activation on the stack, which is what joining a
    /// truncated walk to an earlier one needs.
    pub fn frame_sps(&self) -> &[u64] {
        &self.sps
    }

    /// How many of the frames of the last [`Unwinder::unwind_memoized`] (the outermost ones)
    /// were taken from the thread's remembered walk rather than unwound.
    pub fn reused_frames(&self) -> usize {
        self.reused
    }

    /// Forgets everything parsed from files (for instance after a binary was replaced on disk).
    pub fn clear_caches(&mut self) {
        self.module_ids.clear();
        self.modules.clear();
        self.keyed.clear();
        self.rules.clear();
        self.epoch += 1;
    }

    /// Walks `stack` from `regs` and pushes the frames into `out`, leaf first: the first is
    /// `CodeAddress::InstructionPointer(ip)`, the rest are `ReturnAddress`es, except a frame right
    /// after a signal frame (CIE augmentation `S`), which is an `InstructionPointer`.
    pub fn unwind(
        &mut self,
        regs: &A::Regs,
        stack: &StackSnapshot,
        modules: &dyn ModuleLookup,
        out: &mut Vec<CodeAddress>,
    ) -> UnwindEnd {
        match self.walk(regs, stack, modules, out, None) {
            Walked::Ended(end) => end,
            Walked::TooDeep | Walked::Reused(_) => UnwindEnd::Stopped,
        }
    }

    /// [`Unwinder::unwind`] for the next sample of the thread whose last walk `memo` holds: as
    /// soon as this walk reaches one of that walk's frames in the same state and every read the
    /// rest of that walk made gives the same here, it ends as that walk did (see `memo.rs`);
    /// `memo` then holds this walk. `version` names the state of `modules` (any change to
    /// the process's maps must change it). A copy that reads on into the live stack is walked
    /// without the memo.
    pub fn unwind_memoized(
        &mut self,
        regs: &A::Regs,
        stack: &StackSnapshot,
        modules: &dyn ModuleLookup,
        version: u64,
        memo: &mut WalkMemo,
        out: &mut Vec<CodeAddress>,
    ) -> UnwindEnd {
        if stack.live.is_some() {
            return self.unwind(regs, stack, modules, out);
        }
        let version = (version, self.epoch);
        self.reused = 0;
        let mut recording = std::mem::take(&mut self.recording);
        recording.clear();
        let log = RefCell::new(std::mem::take(&mut self.read_log));
        log.borrow_mut().clear();
        let mut memoizing = Memoizing {
            memo: &*memo,
            cursor: memo.cursor(version),
            recording: &mut recording,
            log: &log,
        };
        let walked = self.walk(
            regs,
            &stack.logged(&log),
            modules,
            out,
            Some(&mut memoizing),
        );
        let mut log = log.into_inner();
        let end = match walked {
            Walked::Reused(cursor) => {
                memo.splice(&cursor, &mut recording, &mut log);
                memo.end()
            }
            Walked::Ended(end) => {
                memo.replace(version, &mut recording, &mut log, Some(end));
                end
            }
            Walked::TooDeep => {
                memo.replace(version, &mut recording, &mut log, None);
                UnwindEnd::Stopped
            }
        };
        self.recording = recording;
        self.read_log = log;
        end
    }

    /// The walk of [`Unwinder::unwind`], recording itself into `memoizing` if given.
    fn walk(
        &mut self,
        regs: &A::Regs,
        stack: &StackSnapshot,
        modules: &dyn ModuleLookup,
        out: &mut Vec<CodeAddress>,
        mut memoizing: Option<&mut Memoizing>,
    ) -> Walked {
        let (mut pc, mut regs) = A::entry(regs);
        let mut exact = true;
        let mut depth = 0;
        let first = out.len();
        self.sps.clear();
        self.repeat = None;
        loop {
            if pc == 0 {
                return Walked::Ended(UnwindEnd::Complete);
            }
            if depth >= MAX_DEPTH {
                return Walked::TooDeep;
            }
            let address = if exact {
                CodeAddress::InstructionPointer(pc)
            } else {
                CodeAddress::ReturnAddress(pc)
            };
            if let Some(m) = memoizing.as_deref_mut() {
                if let Some(cursor) = m.reuse(depth, address, &regs, stack) {
                    let before = out.len();
                    out.extend(m.memo.tail(cursor.frame()).map(|(address, _)| address));
                    self.sps
                        .extend(m.memo.tail(cursor.frame()).map(|(_, sp)| sp));
                    self.reused = out.len() - before;
                    return Walked::Reused(cursor);
                }
                m.recording.frame(address, &regs, m.log.borrow().len());
            }
            out.push(address);
            let sp = regs.sp;
            self.sps.push(sp);
            debug_assert_eq!(out.len() - first, self.sps.len());
            let step = match self.step(address, depth > 0, &mut regs, stack, modules) {
                Ok(step) => step,
                Err(UnwindEnd::BadAddress) => {
                    out.pop();
                    self.sps.pop();
                    if let Some(m) = memoizing {
                        m.recording.pop();
                    }
                    return Walked::Ended(UnwindEnd::BadAddress);
                }
                Err(end) => return Walked::Ended(end),
            };
            let first_in_lr = depth == 0 && A::RA_IN_LINK_REGISTER && regs.sp == sp;
            if regs.sp <= sp && !first_in_lr {
                return Walked::Ended(UnwindEnd::Stopped);
            }
            depth += 1;
            exact = step.signal;
            pc = step.pc;
        }
    }

    /// Computes the caller of the frame at `address`; `regs` become the caller's.
    /// `BadAddress` when `check_code` and the address lies in no executable mapping.
    fn step(
        &mut self,
        address: CodeAddress,
        check_code: bool,
        regs: &mut RegFile,
        stack: &StackSnapshot,
        modules: &dyn ModuleLookup,
    ) -> Result<Step, UnwindEnd> {
        let pc = address.address();
        let avma = address.lookup_address();
        if let Some((last, id, rule)) = self.repeat {
            if last == avma {
                if let (Some(Some(info)), Some(rule)) = (
                    self.modules.get(id as usize),
                    self.rules.table.get(rule as usize),
                ) {
                    return apply_rule_in_place::<A>(rule, pc, regs, stack, info);
                }
            }
        }
        // Set again below once this address's rule is known (the cache may be flushed first).
        self.repeat = None;
        let Some(module) = modules.find(avma) else {
            // Not in a file: JIT code (unwound with frame pointers) or no mapping at all.
            if check_code && !modules.is_code(avma) {
                return Err(UnwindEnd::BadAddress);
            }
            return frame_pointer_step::<A>(regs, stack);
        };
        let id = match module.key {
            Some(key) => self.keyed_module_id(key, module.path),
            None => self.module_id(module.path),
        };
        let Some(Some(info)) = self.modules.get(id as usize) else {
            return frame_pointer_step::<A>(regs, stack);
        };
        let Some(svma) = info.svma(&module.range, avma) else {
            return frame_pointer_step::<A>(regs, stack);
        };
        // Applied where it lies in the cache (a rule is a few hundred bytes): one hash lookup.
        let ctx = &mut self.ctx;
        match (self.rules).get_or_insert_with((id, svma), || info.find_rule::<A>(svma, ctx)) {
            Some(rule) => {
                let step = apply_rule_in_place::<A>(rule, pc, regs, stack, info);
                self.repeat = self.rules.last_index().map(|index| (avma, id, index));
                step
            }
            None => frame_pointer_step::<A>(regs, stack),
        }
    }

    /// Puts a rule into the rule cache, as if read from the module at `path` (tests of
    /// architectures we cannot assemble code for).
    #[cfg(test)]
    pub(crate) fn insert_rule(&mut self, path: &Path, svma: u64, rule: Option<FrameRule>) {
        let id = self.module_id(path);
        self.rules.get_or_insert_with((id, svma), || rule);
    }

    const UNKEYED: u32 = u32::MAX;

    /// [`Unwinder::module_id`] of the file the lookup calls `key`, by index after the first time.
    fn keyed_module_id(&mut self, key: u32, path: &Path) -> u32 {
        let slot = key as usize;
        if let Some(&id) = self.keyed.get(slot).filter(|&&id| id != Self::UNKEYED) {
            return id;
        }
        let id = self.module_id(path);
        if slot >= self.keyed.len() {
            self.keyed.resize(slot + 1, Self::UNKEYED);
        }
        self.keyed[slot] = id;
        id
    }

    /// The id of the module at `path`, loading it on first use.
    fn module_id(&mut self, path: &Path) -> u32 {
        let key = path.as_os_str().as_encoded_bytes();
        if let Some(&id) = self.module_ids.get(key) {
            return id;
        }
        let id = u32::try_from(self.modules.len()).unwrap_or(u32::MAX);
        let info = ModuleInfo::load(path).ok().filter(ModuleInfo::has_cfi);
        self.modules.push(info);
        self.module_ids.insert(key.into(), id);
        id
    }
}

impl Memoizing<'_> {
    /// The cursor at the remembered frame this walk can go on as, about to step from
    /// `address` with `regs` at `depth` (see [`WalkMemo::matching`]).
    fn reuse(
        &mut self,
        depth: usize,
        address: CodeAddress,
        regs: &RegFile,
        stack: &StackSnapshot,
    ) -> Option<Cursor> {
        let cursor = self.cursor.as_mut().filter(|_| depth > 0)?;
        let frame = self.memo.matching(cursor, address, regs, stack)?;
        // A longer walk than the remembered one would stop at the depth limit.
        (depth + self.memo.len() - frame <= MAX_DEPTH).then_some(*cursor)
    }
}

/// Unwind rules by (module id, SVMA), each distinct rule stored once: the addresses of a module
/// share few rules (every address of a function body past its prologue has the same one), and a
/// rule is ~300 bytes where an address entry is 24. Flushed whole when full.
#[derive(Default)]
struct RuleCache {
    /// Index into `table`, or [`RuleCache::NONE`] where no CFI covers the address.
    by_address: FastMap<(u32, u64), u32>,
    table: Vec<FrameRule>,
    ids: FastMap<FrameRule, u32>,
    /// The last key looked up and its entry: a recursion's frames all return to one address.
    last: Option<((u32, u64), u32)>,
}

impl RuleCache {
    const NONE: u32 = u32::MAX;

    /// The rule at `key`, computed by `find` on a miss (`None`: no CFI covers the address).
    fn get_or_insert_with(
        &mut self,
        key: (u32, u64),
        find: impl FnOnce() -> Option<FrameRule>,
    ) -> Option<&FrameRule> {
        if let Some((last, id)) = self.last {
            if last == key {
                return self.table.get(id as usize);
            }
        }
        let id = match self.by_address.get(&key) {
            Some(&id) => id,
            None => {
                if self.by_address.len() >= RULE_CACHE_CAPACITY {
                    self.clear();
                }
                let id = match find() {
                    Some(rule) => *self.ids.entry(rule).or_insert_with(|| {
                        self.table.push(rule);
                        (self.table.len() - 1) as u32
                    }),
                    None => Self::NONE,
                };
                self.by_address.insert(key, id);
                id
            }
        };
        self.last = Some((key, id));
        self.table.get(id as usize)
    }

    /// The table index of the rule the last lookup gave, if it gave one.
    fn last_index(&self) -> Option<u32> {
        self.last.map(|(_, id)| id).filter(|&id| id != Self::NONE)
    }

    fn clear(&mut self) {
        self.by_address.clear();
        self.table.clear();
        self.ids.clear();
        self.last = None;
    }
}

/// Continues a walk that ended in [`UnwindEnd::StackSwitch`] with the kernel's frame-pointer
/// callchain of the same sample (`chain`, leaf first): Go keeps frame pointers, and the kernel
/// follows them onto the goroutine's stack, which the stack copy does not hold. Appends the
/// callchain entries after the one equal to the walk's last address, up to the first that lies
/// in no executable mapping (the kernel walks on past the outermost frame into whatever the last
/// frame pointer points at). Returns false, leaving `addresses` alone, when the callchain has no
/// such entry or nothing after it.
pub fn continue_with_callchain(
    addresses: &mut Vec<CodeAddress>,
    mut chain: impl Iterator<Item = u64>,
    lookup: &dyn ModuleLookup,
) -> bool {
    let Some(last) = addresses.last().map(|a| a.address()) else {
        return false;
    };
    if chain.by_ref().position(|a| a == last).is_none() {
        return false;
    }
    let before = addresses.len();
    addresses.extend(
        chain
            .map(CodeAddress::ReturnAddress)
            .take_while(|a| lookup.is_code(a.lookup_address())),
    );
    addresses.len() > before
}

/// Unwinds one frame with the frame-pointer chain: `[fp]` = caller's fp, `[fp + 8]` = return
/// address, caller's sp = `fp + 16`; `regs` become the caller's.
fn frame_pointer_step<A: Arch>(
    regs: &mut RegFile,
    stack: &StackSnapshot,
) -> Result<Step, UnwindEnd> {
    let fp = regs.get(A::FP).ok_or(UnwindEnd::Stopped)?;
    if fp < regs.sp || fp % 8 != 0 {
        return Err(UnwindEnd::Stopped);
    }
    let saved_fp = stack.read_u64(fp)?;
    let ra = A::strip_code_address(stack.read_u64(fp.wrapping_add(A::FP_RA_OFFSET))?);
    // Without CFI, only the frame-pointer chain is known: other registers may have been used.
    regs.retain(0);
    regs.sp = fp.wrapping_add(A::FP_SP_OFFSET);
    regs.set(A::FP, Some(saved_fp));
    if let Some(lr) = A::LR {
        regs.set(lr, Some(ra));
    }
    Ok(Step {
        pc: ra,
        signal: false,
    })
}
