//! One sample record → one stack of frame keys, leaf first: the kernel part from the kernel's
//! callchain, the user part DWARF-unwound from the copied stack (or the kernel's frame-pointer
//! walk), each address resolved to a module and file offset (or a kernel address) so that equal
//! stacks hash equal however their modules were mapped.

use super::join::{JoinOutcome, Joiner};
use super::live::{LiveMemory, LiveReader, MAX_AGE_NS};
use crate::elf::MappingRange;
use crate::frame::{CodeAddress, Space};
use crate::perf::records::{BlockedStack, Sample, UserRegs};
use crate::process::{AddressSpace, ModuleId, ModuleKind, ModuleTable, Processes};
use crate::unwind::{
    self, LiveStack, ModuleLookup, ModuleRef, StackSnapshot, UnwindEnd, Unwinder, WalkMemo,
};

/// One frame of an aggregated stack, before symbolization.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum FrameKey {
    /// The thread the stack ran on (index into the collector's thread table); always last.
    Thread(u32),
    /// A kernel address (already adjusted for return addresses).
    Kernel(u64),
    /// A file offset in a mapped file or the vDSO (already adjusted for return addresses).
    Module { module: ModuleId, offset: u64 },
    /// Anonymous executable memory: JIT code, named by `/tmp/perf-PID.map` if at all.
    Jit { pid: u32, address: u64 },
    /// An address in no known mapping.
    Unknown,
    /// The user stack copy ran out before the outermost frame.
    Truncated,
    /// The walk reached a function that switched stacks, and the caller could not be found.
    StackSwitch,
    /// Leaf of an off-CPU interval: the thread waited.
    OffCpu,
    /// Leaf of an interval the thread spent preempted (runnable, not waiting).
    Preempted,
}

/// What became of a sample's user stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct UserWalk {
    /// The walk ran out of copied stack before the outermost frame (and could not be joined).
    pub truncated: bool,
    /// The walk ran out of copied stack, and was completed from an earlier stack of the thread.
    pub joined: bool,
    /// The walk ran out of copied stack, and was completed from the running process's stack.
    pub live: bool,
    /// User frames unwound, and among them those taken from the thread's previous walk.
    pub frames: usize,
    pub reused: usize,
}

/// Turns samples into frame keys; reusable buffers live here so the hot path does not allocate.
pub(super) struct StackWalker {
    unwinder: Unwinder<unwind::NativeArch>,
    addresses: Vec<CodeAddress>,
    /// The last complete user stack of each thread, to complete truncated walks.
    joiner: Joiner<CodeAddress>,
    /// The last walk of each thread, whose callers the next walk may take (by tid).
    memos: rustc_hash::FxHashMap<u32, WalkMemo>,
    steps: Vec<(CodeAddress, u64)>,
    /// Unwind from at most this many leading bytes of each copied stack (a testing hook, see
    /// [`super::CollectOptions::stack_prefix`]).
    stack_prefix: Option<usize>,
    /// A live recording: truncated walks may read the rest of the stack from the process.
    live: Option<LiveMemory>,
    /// Processes that could not be read (no access, or gone): not tried again.
    unreadable: rustc_hash::FxHashSet<u32>,
    /// `FLAMEGRAPH_CHECK_MEMO` is set: every memoized walk is made again without the memo, and
    /// a difference panics (a developer's check, on real programs' recordings).
    check_memo: bool,
}

impl StackWalker {
    pub(super) fn new(stack_prefix: Option<usize>, live: Option<LiveMemory>) -> Self {
        StackWalker {
            unwinder: Unwinder::new(),
            addresses: Vec::with_capacity(256),
            joiner: Joiner::new(),
            memos: Default::default(),
            steps: Vec::with_capacity(256),
            stack_prefix,
            live,
            unreadable: Default::default(),
            check_memo: std::env::var_os("FLAMEGRAPH_CHECK_MEMO").is_some(),
        }
    }

    /// Pushes `sample`'s frames onto `frames`, leaf first; `on_module` sees every user frame in a
    /// file (to warm the symbolizer).
    pub(super) fn walk(
        &mut self,
        sample: &Sample<'_>,
        processes: &Processes,
        frames: &mut Vec<FrameKey>,
        mut on_module: impl FnMut(ModuleId, u64),
    ) -> UserWalk {
        push_kernel(sample, frames);
        self.addresses.clear();
        let mut walk = UserWalk {
            truncated: false,
            joined: false,
            live: false,
            frames: 0,
            reused: 0,
        };
        let marker = match (sample.user_regs, sample.user_stack.is_empty()) {
            (Some(regs), false) => self.walk_user(sample, &regs, processes, &mut walk),
            _ => {
                push_user_callchain(sample, &mut self.addresses);
                None
            }
        };
        self.push_addresses(sample.pid, processes, frames, &mut on_module);
        if walk.truncated {
            frames.push(FrameKey::Truncated);
        }
        frames.extend(marker);
        if frames.is_empty() {
            // No callchain at all: fall back to the sampled ip.
            frames.push(match sample_space(sample) {
                Space::Kernel => FrameKey::Kernel(sample.ip),
                Space::User => resolve_user(
                    processes,
                    sample.pid,
                    CodeAddress::InstructionPointer(sample.ip),
                ),
            });
        }
        walk
    }

    /// Unwinds the user stack of `sample` into `self.addresses`, completing a cut walk where it
    /// can (from an earlier stack of the thread, the kernel's frame-pointer walk where the code
    /// keeps frame pointers, or the running process's stack); notes what happened in `walk`.
    /// Returns the marker to put at the root, if any.
    fn walk_user(
        &mut self,
        sample: &Sample<'_>,
        regs: &UserRegs<'_>,
        processes: &Processes,
        walk: &mut UserWalk,
    ) -> Option<FrameKey> {
        let end = self.unwind_user(sample, regs, processes, None);
        walk.frames = self.addresses.len();
        walk.reused = self.unwinder.reused_frames();
        match end {
            UnwindEnd::Truncated => {
                if self.join(sample.tid, true) || self.continue_with_callchain(sample, processes) {
                    walk.joined = true;
                } else if self.complete_live(sample, regs, processes) {
                    walk.live = true;
                } else {
                    walk.truncated = true;
                }
            }
            UnwindEnd::Complete => {
                self.join(sample.tid, false);
            }
            UnwindEnd::StackSwitch if !self.continue_with_callchain(sample, processes) => {
                return Some(FrameKey::StackSwitch);
            }
            UnwindEnd::BadAddress => return Some(FrameKey::Unknown),
            _ => {}
        }
        None
    }

    /// Hands the walk just made (`self.addresses` with the unwinder's stack pointers) to the
    /// joiner: a complete walk is remembered for thread `tid`; a `truncated` one is completed
    /// from the thread's last complete stack when their frames meet (returns true then).
    fn join(&mut self, tid: u32, truncated: bool) -> bool {
        let sps = self.unwinder.frame_sps();
        if sps.len() != self.addresses.len() {
            return false;
        }
        self.steps.clear();
        self.steps
            .extend(self.addresses.iter().copied().zip(sps.iter().copied()));
        let walked = self.steps.len();
        match self.joiner.join(tid, &mut self.steps, truncated) {
            JoinOutcome::Joined(_) => {
                let rest = self.steps[walked..].iter().map(|&(a, _)| a);
                self.addresses.extend(rest);
                true
            }
            JoinOutcome::Complete | JoinOutcome::Truncated => false,
        }
    }

    /// Forgets what is known of thread `tid` (it exited; its id may be reused).
    pub(super) fn forget_thread(&mut self, tid: u32) {
        self.joiner.forget(tid);
        self.memos.remove(&tid);
    }

    /// Pushes the frames of a blocked thread's stack read from outside (only ip and sp known),
    /// leaf first; returns whether the stack ran out before its root.
    pub(super) fn walk_blocked(
        &mut self,
        pid: u32,
        blocked: &BlockedStack<'_>,
        processes: &Processes,
        frames: &mut Vec<FrameKey>,
        mut on_module: impl FnMut(ModuleId, u64),
    ) -> bool {
        self.addresses.clear();
        let regs = <unwind::NativeArch as unwind::SampleRegs>::from_ip_sp(blocked.ip, blocked.sp);
        let stack = StackSnapshot::new(blocked.sp, blocked.stack);
        let lookup = SpaceLookup {
            space: processes.space(pid),
            modules: &processes.modules,
        };
        let end = self
            .unwinder
            .unwind(&regs, &stack, &lookup, &mut self.addresses);
        self.push_addresses(pid, processes, frames, &mut on_module);
        end == UnwindEnd::Truncated
    }

    fn push_addresses(
        &self,
        pid: u32,
        processes: &Processes,
        frames: &mut Vec<FrameKey>,
        on_module: &mut impl FnMut(ModuleId, u64),
    ) {
        let space = processes.space(pid);
        for a in &self.addresses {
            let frame = resolve_in(space, &processes.modules, pid, *a);
            if let FrameKey::Module { module, offset } = frame {
                on_module(module, offset);
            }
            frames.push(frame);
        }
    }

    /// Walks a truncated sample again, reading past the copy from the running process (see
    /// `collect/live.rs`); keeps the walk and remembers it for joining when it reaches the
    /// outermost frame, else leaves `self.addresses` as the truncated walk made them.
    fn complete_live(
        &mut self,
        sample: &Sample<'_>,
        regs: &UserRegs<'_>,
        processes: &Processes,
    ) -> bool {
        let Some(memory) = self.live else {
            return false;
        };
        if self.unreadable.contains(&sample.pid)
            || (memory.now)().saturating_sub(sample.time) > MAX_AGE_NS
        {
            return false;
        }
        let walked = self.addresses.len();
        let reader = LiveReader::new(memory, sample.pid);
        self.addresses.clear();
        let end = self.unwind_user(sample, regs, processes, Some(&reader));
        if reader.refused() {
            self.unreadable.insert(sample.pid);
        }
        // A zero word read where a return address should be also ends a walk as complete:
        // only a walk that found callers past the copy counts.
        if end == UnwindEnd::Complete && self.addresses.len() > walked {
            self.join(sample.tid, false);
            return true;
        }
        // The copied part of the walk is the same either way.
        self.addresses.truncate(walked);
        false
    }

    /// Unwinds the copied user stack into `self.addresses` (reading past the copy from `live`
    /// if given); returns how the walk ended.
    fn unwind_user(
        &mut self,
        sample: &Sample<'_>,
        regs: &UserRegs<'_>,
        processes: &Processes,
        live: Option<&dyn LiveStack>,
    ) -> UnwindEnd {
        let Some(regs) = unwind::regs_from_sample::<unwind::NativeArch>(regs) else {
            return UnwindEnd::Stopped;
        };
        let bytes = match self.stack_prefix {
            Some(n) => &sample.user_stack[..n.min(sample.user_stack.len())],
            None => sample.user_stack,
        };
        let stack =
            StackSnapshot::new(<unwind::NativeArch as unwind::SampleRegs>::sp(&regs), bytes);
        let lookup = SpaceLookup {
            space: processes.space(sample.pid),
            modules: &processes.modules,
        };
        if let Some(live) = live {
            let stack = stack.with_live(live);
            return (self.unwinder).unwind(&regs, &stack, &lookup, &mut self.addresses);
        }
        let version = lookup.space.map_or(0, AddressSpace::version);
        let memo = self.memos.entry(sample.tid).or_default();
        let start = self.addresses.len();
        let end = (self.unwinder).unwind_memoized(
            &regs,
            &stack,
            &lookup,
            version,
            memo,
            &mut self.addresses,
        );
        if self.check_memo {
            let (walked, sps) = (&self.addresses[start..], self.unwinder.frame_sps().to_vec());
            let mut again = Vec::new();
            let fresh = (self.unwinder).unwind(&regs, &stack, &lookup, &mut again);
            let same = (fresh, &again[..], self.unwinder.frame_sps()) == (end, walked, &sps[..]);
            assert!(
                same,
                "memoized walk of tid {} differs: {end:?} {walked:x?} vs {fresh:?} {again:x?}",
                sample.tid
            );
        }
        end
    }

    /// After a stack switch, the kernel's frame-pointer walk may know the callers: see
    /// [`unwind::continue_with_callchain`].
    fn continue_with_callchain(&mut self, sample: &Sample<'_>, processes: &Processes) -> bool {
        let lookup = SpaceLookup {
            space: processes.space(sample.pid),
            modules: &processes.modules,
        };
        unwind::continue_with_callchain(&mut self.addresses, sample.callchain.user(), &lookup)
    }
}

/// The kernel part of the callchain, leaf first: the first address is where the kernel was
/// interrupted, the others are return addresses.
fn push_kernel(sample: &Sample<'_>, frames: &mut Vec<FrameKey>) {
    for (i, address) in sample.callchain.kernel().enumerate() {
        let a = if i == 0 {
            CodeAddress::InstructionPointer(address)
        } else {
            CodeAddress::ReturnAddress(address)
        };
        frames.push(FrameKey::Kernel(a.lookup_address()));
    }
}

/// The kernel's frame-pointer walk of the user stack.
fn push_user_callchain(sample: &Sample<'_>, out: &mut Vec<CodeAddress>) {
    for (i, address) in sample.callchain.user().enumerate() {
        out.push(if i == 0 {
            CodeAddress::InstructionPointer(address)
        } else {
            CodeAddress::ReturnAddress(address)
        });
    }
}

fn sample_space(sample: &Sample<'_>) -> Space {
    if sample.misc & 7 == 1 {
        Space::Kernel
    } else {
        Space::User
    }
}

/// The frame key of a user address of process `pid`.
pub(super) fn resolve_user(processes: &Processes, pid: u32, address: CodeAddress) -> FrameKey {
    resolve_in(processes.space(pid), &processes.modules, pid, address)
}

/// [`resolve_user`] with the process's address space already looked up.
fn resolve_in(
    space: Option<&AddressSpace>,
    modules: &ModuleTable,
    pid: u32,
    address: CodeAddress,
) -> FrameKey {
    let lookup = address.lookup_address();
    let Some(mapping) = space.and_then(|s| s.find(lookup)) else {
        return FrameKey::Unknown;
    };
    match modules.get(mapping.module) {
        ModuleKind::Anonymous => FrameKey::Jit {
            pid,
            address: lookup,
        },
        ModuleKind::File(_) | ModuleKind::Vdso => FrameKey::Module {
            module: mapping.module,
            offset: mapping.range.file_offset(lookup),
        },
    }
}

/// An executable mapping from an MMAP/MMAP2 record, if it is one.
pub(super) fn exec_mapping(m: &crate::perf::records::Mmap2<'_>) -> Option<MappingRange> {
    const PROT_EXEC: u32 = 4;
    // Old MMAP records (no prot) only report executable mappings.
    let exec =
        m.prot & PROT_EXEC != 0 || matches!(m.file_id, crate::perf::records::MmapFileId::None);
    if !exec || m.length == 0 {
        return None;
    }
    Some(MappingRange {
        start: m.address,
        end: m.address.saturating_add(m.length),
        pgoff: m.pgoff,
    })
}

/// The process's maps, as the unwinder sees them (looked up once per sample).
struct SpaceLookup<'a> {
    space: Option<&'a AddressSpace>,
    modules: &'a ModuleTable,
}

impl ModuleLookup for SpaceLookup<'_> {
    /// Any executable mapping, JIT code included; every address of a process whose maps are
    /// unknown.
    fn is_code(&self, avma: u64) -> bool {
        self.space.is_none_or(|s| s.find(avma).is_some())
    }

    fn find(&self, avma: u64) -> Option<ModuleRef<'_>> {
        let mapping = self.space?.find(avma)?;
        let path = self.modules.file(mapping.module)?;
        Some(ModuleRef {
            range: mapping.range,
            path,
            key: Some(mapping.module.0),
        })
    }
}
