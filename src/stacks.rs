//! From a record stream to folded stacks: the OS-independent middle of the native pipeline,
//! shared by live recording and perf.data files.
//!
//! Each sample's stack is resolved at once into frames keyed by `(module, file offset)` (or a
//! kernel address) and aggregated in a hash map: memory grows with the number of *unique* stacks,
//! not samples, and the hot path allocates only when a new stack appears. Symbolization happens
//! once at the end, one unique frame at a time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};

use rustc_hash::FxHashMap;

use crate::elf::MappingRange;
use crate::fold::Folded;
use crate::frame::{CodeAddress, Space};
use crate::perf::records::{Comm, Fork, Mmap2, Record, Sample, SampleFormat, UserRegs};
use crate::process::{AddressSpace, ModuleId, ModuleKind, ModuleTable, Processes};
use crate::symbolize::{KernelSymbols, SymbolizeOptions, Symbolizer};
use crate::unwind::{self, ModuleLookup, ModuleRef, StackSnapshot, UnwindEnd, Unwinder};

/// One frame of an aggregated stack, before symbolization.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum FrameKey {
    /// The thread name at the root (index into the name table).
    Root(u32),
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
}

/// Options of the collector.
#[derive(Clone, Debug, Default)]
pub struct CollectOptions {
    /// Resolve inlined frames.
    pub inline: bool,
    /// Keep the time order of samples (for flame charts).
    pub flame_chart: bool,
}

/// Counts of what went by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CollectStats {
    pub samples: u64,
    /// Samples whose user stack ran out of copied bytes before its root.
    pub truncated: u64,
    /// Samples of the idle task (pid 0), ignored.
    pub idle: u64,
}

/// Aggregates samples into unique stacks of frame keys.
pub struct StackCollector {
    options: CollectOptions,
    processes: Processes,
    unwinder: Unwinder<unwind::NativeArch>,
    names: Vec<Arc<str>>,
    name_ids: FxHashMap<Arc<str>, u32>,
    /// Hashed once per sample over every frame: FxHash, not SipHash (keys are our own).
    stacks: FxHashMap<Box<[FrameKey]>, u32>,
    weights: Vec<u64>,
    sequence: Vec<(u32, u64)>,
    scratch: Vec<FrameKey>,
    addresses: Vec<CodeAddress>,
    stats: CollectStats,
    warmer: Warmer,
}

/// A symbolizer working on a thread while samples arrive: it loads `/proc/kallsyms` and parses
/// each module's debug info as soon as a first sample lands in it, so that little is left to do
/// when recording ends (what the user waits for).
struct Warmer {
    requests: Option<mpsc::Sender<(PathBuf, u64)>>,
    thread: Option<std::thread::JoinHandle<Symbolizer>>,
    /// Per module id: already sent.
    sent: Vec<bool>,
}

impl Warmer {
    fn start(mut symbolizer: Symbolizer) -> Self {
        let (tx, rx) = mpsc::channel::<(PathBuf, u64)>();
        let thread = std::thread::Builder::new()
            .name("flamegraph-symbolizer".into())
            .spawn(move || {
                lower_priority();
                // Reading /proc/kallsyms is slow in the kernel: overlap it with debug info too.
                let kernel = std::thread::spawn(|| {
                    lower_priority();
                    KernelSymbols::load()
                });
                let mut scratch = Vec::new();
                for (path, offset) in rx {
                    scratch.clear();
                    symbolizer.symbolize_file(&path, offset, &mut scratch);
                }
                if let Ok(kernel) = kernel.join() {
                    symbolizer.set_kernel_symbols(kernel);
                }
                symbolizer
            })
            .ok();
        Warmer {
            requests: thread.is_some().then_some(tx),
            thread,
            sent: Vec::new(),
        }
    }

    /// Asks for `module`'s debug info to be parsed, once per module.
    fn warm(&mut self, module: ModuleId, path: &Path, offset: u64) {
        let i = module.0 as usize;
        if self.sent.len() <= i {
            self.sent.resize(i + 1, false);
        }
        if self.sent[i] {
            return;
        }
        self.sent[i] = true;
        if let Some(tx) = &self.requests {
            let _ = tx.send((path.to_path_buf(), offset));
        }
    }

    /// The warmed symbolizer (a fresh one if the thread could not run).
    fn finish(mut self, inline: bool) -> Symbolizer {
        self.requests = None;
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_else(|| symbolizer(inline))
    }
}

impl StackCollector {
    /// A collector; it starts a symbolizer thread that works while samples arrive.
    pub fn new(options: CollectOptions) -> Self {
        StackCollector {
            options: options.clone(),
            processes: Processes::default(),
            unwinder: Unwinder::new(),
            names: Vec::new(),
            name_ids: FxHashMap::default(),
            stacks: FxHashMap::default(),
            weights: Vec::new(),
            sequence: Vec::new(),
            scratch: Vec::with_capacity(256),
            addresses: Vec::with_capacity(256),
            stats: CollectStats::default(),
            warmer: Warmer::start(symbolizer(options.inline)),
        }
    }

    pub fn stats(&self) -> CollectStats {
        self.stats
    }

    /// Applies one record, in timestamp order.
    pub fn on_record(&mut self, format: &SampleFormat, record: Record<'_>) {
        let _ = format;
        match record {
            Record::Sample(sample) => self.on_sample(&sample),
            Record::Mmap2(m) => self.on_mmap(&m),
            Record::Comm(Comm {
                pid,
                tid,
                name,
                exec,
            }) => self.processes.on_comm(pid, tid, name, exec),
            Record::Fork(Fork {
                pid,
                ppid,
                tid,
                ptid,
                ..
            }) => self.processes.on_fork(pid, ppid, tid, ptid),
            _ => {}
        }
    }

    fn on_mmap(&mut self, m: &Mmap2<'_>) {
        const PROT_EXEC: u32 = 4;
        // Old MMAP records (no prot) only report executable mappings.
        let exec =
            m.prot & PROT_EXEC != 0 || matches!(m.file_id, crate::perf::records::MmapFileId::None);
        if !exec || m.length == 0 {
            return;
        }
        let range = MappingRange {
            start: m.address,
            end: m.address.saturating_add(m.length),
            pgoff: m.pgoff,
        };
        self.processes.on_mmap(m.pid, range, m.filename);
    }

    fn name_id(&mut self, pid: u32, tid: u32) -> u32 {
        let name = self.processes.name(pid, tid);
        if let Some(&id) = self.name_ids.get(&name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(Arc::clone(&name));
        self.name_ids.insert(name, id);
        id
    }

    fn on_sample(&mut self, sample: &Sample<'_>) {
        if sample.pid == 0 && sample.tid == 0 {
            self.stats.idle += 1;
            return;
        }
        self.stats.samples += 1;
        let mut frames = std::mem::take(&mut self.scratch);
        let mut addresses = std::mem::take(&mut self.addresses);
        frames.clear();
        // Kernel part, leaf first: the first address is where the kernel was interrupted.
        for (i, address) in sample.callchain.kernel().enumerate() {
            let a = if i == 0 {
                CodeAddress::InstructionPointer(address)
            } else {
                CodeAddress::ReturnAddress(address)
            };
            frames.push(FrameKey::Kernel(a.lookup_address()));
        }
        // User part: DWARF-unwound from the copied stack when the sample has one, else the
        // kernel's frame-pointer walk.
        addresses.clear();
        let mut truncated = false;
        let mut marker = None;
        match (sample.user_regs, sample.user_stack.is_empty()) {
            (Some(regs), false) => match self.unwind_user(sample, &regs, &mut addresses) {
                UnwindEnd::Truncated => truncated = true,
                UnwindEnd::StackSwitch if !self.continue_with_callchain(sample, &mut addresses) => {
                    marker = Some(FrameKey::StackSwitch);
                }
                UnwindEnd::BadAddress => marker = Some(FrameKey::Unknown),
                _ => {}
            },
            _ => {
                for (i, address) in sample.callchain.user().enumerate() {
                    addresses.push(if i == 0 {
                        CodeAddress::InstructionPointer(address)
                    } else {
                        CodeAddress::ReturnAddress(address)
                    });
                }
            }
        }
        for a in &addresses {
            let frame = self.resolve_user(sample.pid, *a);
            if let FrameKey::Module { module, offset } = frame {
                if let Some(path) = self.processes.modules.path(module) {
                    self.warmer.warm(module, path, offset);
                }
            }
            frames.push(frame);
        }
        if truncated {
            self.stats.truncated += 1;
            frames.push(FrameKey::Truncated);
        }
        frames.extend(marker);
        if frames.is_empty() {
            // No callchain at all: fall back to the sampled ip.
            let space = if sample.misc & 7 == 1 {
                Space::Kernel
            } else {
                Space::User
            };
            frames.push(match space {
                Space::Kernel => FrameKey::Kernel(sample.ip),
                Space::User => {
                    self.resolve_user(sample.pid, CodeAddress::InstructionPointer(sample.ip))
                }
            });
        }
        let root = self.name_id(sample.pid, sample.tid);
        frames.push(FrameKey::Root(root));
        let weight = sample.period.max(1);
        let id = match self.stacks.get(frames.as_slice()) {
            Some(&id) => id,
            None => {
                let id = self.weights.len() as u32;
                self.weights.push(0);
                self.stacks.insert(frames.clone().into_boxed_slice(), id);
                id
            }
        };
        self.weights[id as usize] += weight;
        if self.options.flame_chart {
            self.sequence.push((id, weight));
        }
        self.scratch = frames;
        self.addresses = addresses;
    }

    /// Unwinds the copied user stack; returns how the walk ended.
    fn unwind_user(
        &mut self,
        sample: &Sample<'_>,
        regs: &UserRegs<'_>,
        out: &mut Vec<CodeAddress>,
    ) -> UnwindEnd {
        let Some(regs) = unwind::regs_from_sample::<unwind::NativeArch>(regs) else {
            return UnwindEnd::Stopped;
        };
        let stack = StackSnapshot {
            sp: <unwind::NativeArch as unwind::SampleRegs>::sp(&regs),
            bytes: sample.user_stack,
        };
        let lookup = SpaceLookup {
            space: self.processes.space(sample.pid),
            modules: &self.processes.modules,
        };
        self.unwinder.unwind(&regs, &stack, &lookup, out)
    }

    /// See [`unwind::continue_with_callchain`].
    fn continue_with_callchain(&self, sample: &Sample<'_>, out: &mut Vec<CodeAddress>) -> bool {
        let lookup = SpaceLookup {
            space: self.processes.space(sample.pid),
            modules: &self.processes.modules,
        };
        unwind::continue_with_callchain(out, sample.callchain.user(), &lookup)
    }

    fn resolve_user(&self, pid: u32, address: CodeAddress) -> FrameKey {
        let lookup = address.lookup_address();
        let Some(mapping) = self.processes.space(pid).and_then(|s| s.find(lookup)) else {
            return FrameKey::Unknown;
        };
        match self.processes.modules.get(mapping.module) {
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

    /// Symbolizes every unique frame once and folds the stacks.
    pub fn finish(mut self) -> Folded {
        let warmer = std::mem::replace(
            &mut self.warmer,
            Warmer {
                requests: None,
                thread: None,
                sent: Vec::new(),
            },
        );
        let mut symbolizer = warmer.finish(self.options.inline);
        let symbolizer = &mut symbolizer;
        let mut names: HashMap<FrameKey, String> = HashMap::new();
        let mut out = Vec::new();
        for stack in self.stacks.keys() {
            for &frame in stack.iter() {
                if names.contains_key(&frame) {
                    continue;
                }
                out.clear();
                self.symbolize(frame, symbolizer, &mut out);
                let joined = out
                    .iter()
                    .map(|n| tidy_name(n))
                    .collect::<Vec<_>>()
                    .join(";");
                names.insert(frame, joined);
            }
        }
        let mut by_id: Vec<String> = vec![String::new(); self.weights.len()];
        for (stack, &id) in &self.stacks {
            let mut s = String::new();
            for frame in stack.iter().rev() {
                let name = &names[frame];
                if name.is_empty() {
                    continue;
                }
                if !s.is_empty() {
                    s.push(';');
                }
                s.push_str(name);
            }
            by_id[id as usize] = s;
        }
        if self.options.flame_chart {
            Folded::from_sequence(
                self.sequence
                    .iter()
                    .map(|&(id, w)| (by_id[id as usize].clone(), w)),
            )
        } else {
            let mut merged: HashMap<String, u64> = HashMap::with_capacity(by_id.len());
            for (id, s) in by_id.into_iter().enumerate() {
                *merged.entry(s).or_default() += self.weights[id];
            }
            Folded::from_counts(merged)
        }
    }

    fn symbolize(&self, frame: FrameKey, symbolizer: &mut Symbolizer, out: &mut Vec<String>) {
        match frame {
            FrameKey::Root(id) => out.push(self.names[id as usize].to_string()),
            FrameKey::Kernel(address) => symbolizer.symbolize_kernel(address, out),
            FrameKey::Module { module, offset } => match self.processes.modules.get(module) {
                ModuleKind::File(path) => symbolizer.symbolize_file(path, offset, out),
                ModuleKind::Vdso => symbolizer.symbolize_vdso(offset, out),
                ModuleKind::Anonymous => out.push("[anon]".into()),
            },
            FrameKey::Jit { pid, address } => {
                if !symbolizer.symbolize_jit(pid, address, out) {
                    out.push("[anon]".into());
                }
            }
            FrameKey::Unknown => out.push("[unknown]".into()),
            FrameKey::Truncated => out.push("[truncated]".into()),
            FrameKey::StackSwitch => out.push("[stack switch]".into()),
        }
    }
}

/// Makes the calling thread yield to everything else (nice 19): the symbolizer thread must
/// never take CPU from the profiled program or from the thread draining the ring buffers; on a
/// busy machine its work simply waits for the end of the recording.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid has no preconditions; setpriority only changes this thread's nice
        // value (raising it needs no privilege) and reports failure through its return value,
        // which we may ignore: the thread then just runs at normal priority.
        unsafe {
            let tid = libc::gettid();
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19);
        }
    }
}

/// A new symbolizer for the collector's options.
pub fn symbolizer(inline: bool) -> Symbolizer {
    Symbolizer::new(SymbolizeOptions::new(inline, true))
}

/// Makes a symbol safe for the folded format and as short as perf + inferno make it: `;` would
/// split a frame, and C++ parameter lists are dropped (inferno's `tidy_generic`).
fn tidy_name(name: &str) -> std::borrow::Cow<'_, str> {
    let mut depth = 0i32;
    let mut cut = None;
    for (i, c) in name.char_indices() {
        match c {
            '<' | '{' | '[' => depth += 1,
            '>' | '}' | ']' | ')' => depth -= 1,
            '(' => {
                // A top-level parameter list starts the tail to drop; keep Go-style
                // `pkg.(*T).M` and C++ `(anonymous namespace)`.
                let keep = i == 0
                    || name[..i].ends_with('.')
                    || name[i..].starts_with("(anonymous namespace)");
                if depth == 0 && !keep {
                    cut = Some(i);
                    break;
                }
                depth += 1;
            }
            _ => {}
        }
    }
    let name = match cut {
        Some(i) => &name[..i],
        None => name,
    };
    if name.contains(';') {
        std::borrow::Cow::Owned(name.replace(';', ":"))
    } else {
        std::borrow::Cow::Borrowed(name)
    }
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
        let path = self.modules.path(mapping.module)?;
        Some(ModuleRef {
            range: mapping.range,
            path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tidy_drops_cpp_parameters_only() {
        assert_eq!(tidy_name("foo(int, char)"), "foo");
        assert_eq!(
            tidy_name("ns::Vec<int (*)(int)>::push(int)"),
            "ns::Vec<int (*)(int)>::push"
        );
        assert_eq!(
            tidy_name("(anonymous namespace)::f(int)"),
            "(anonymous namespace)::f"
        );
        assert_eq!(tidy_name("a;b"), "a:b");
        assert_eq!(
            tidy_name("core::ptr::drop_in_place<T>"),
            "core::ptr::drop_in_place<T>"
        );
    }
}
