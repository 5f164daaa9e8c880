//! From a record stream to a [`Profile`]: the OS-independent middle of the native pipeline,
//! shared by live recording and perf.data files.
//!
//! - [`sample`]: one sample → a stack of frame keys (kernel callchain, user unwinding, each
//!   address resolved to `(module, file offset)`).
//! - this module: the process model fed by MMAP2/COMM/FORK records, and aggregation of equal
//!   stacks on the same thread in a hash map, so memory grows with the number of *unique*
//!   stacks, not samples, and the hot path allocates only when a new stack appears.
//! - [`warmer`]: a low-priority thread parses debug info while samples arrive.
//! - [`resolve`]: at the end, each unique frame key is symbolized once into profile frames.

mod join;
mod live;
mod offcpu;
mod resolve;
mod sample;
mod stacks;
mod warmer;

pub use self::live::LiveMemory;

use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::perf::records::{Comm, Fork, Record, Sample, SampleFormat, Switch};
use crate::process::Processes;
use crate::profile::{Measure, Profile, ProfileBuilder, Thread, WeightUnit};
use sample::{FrameKey, StackWalker};

use crate::symbolize::locate::{KernelNames, Locator};
use crate::symbolize::{SymbolizeOptions, Symbolizer};
pub use warmer::symbolizer;

fn symbolize_options(options: &CollectOptions) -> SymbolizeOptions {
    SymbolizeOptions::new(options.inline, true).with_full_names(options.full_names)
}

/// Options of the collector.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct CollectOptions {
    /// Resolve inlined frames. Default: false (the CLI turns it on).
    pub inline: bool,
    /// Keep every sample in time order, with its time (flame charts, timelines). Default: false.
    pub time_ordered: bool,
    /// Keep threads apart by pid and tid (per-thread views, exports); otherwise threads are told
    /// apart by name only, which keeps the number of unique stacks down. Default: false.
    pub split_threads: bool,
    /// Keep the generic arguments of Rust names (`--full-names`). Default: false.
    pub full_names: bool,
    /// Where kernel names come from. Default: the running kernel's `/proc/kallsyms`.
    pub kernel: KernelNames,
    /// For a recording made elsewhere (perf.data): finds each file by the build-id recorded for
    /// it. Default: none (files are read at their paths, as in a live recording).
    pub locator: Option<Arc<Locator>>,
    /// Give each user frame its source file and line (`--lines`), read from the line tables of
    /// the sampled modules only. Default: false (line tables are never read).
    pub lines: bool,
    /// Off-CPU time from context-switch records. Default: [`OffCpuMode::Off`].
    pub off_cpu: OffCpuMode,
    /// Live recordings: open each mapped file when its MMAP2 record arrives and read it through
    /// that handle, so programs whose binaries are deleted or replaced before the end are still
    /// unwound and named (see `process.rs`). Default: false (files are read by path, except
    /// those of processes in other mount namespaces).
    pub open_mapped_files: bool,
    /// Testing hook (`--replay-stack-prefix`): unwind from only this many leading bytes of each
    /// sample's copied user stack, as if the copy had been that small, to check stacks completed
    /// by joining against the full copy of the same recording. Default: none (the whole copy).
    pub stack_prefix: Option<usize>,
    /// The records come from a file, not a running program: the symbolizer thread that parses
    /// debug info while records arrive runs at normal priority and is waited for at the end
    /// (there is no program to leave the CPU to). Default: false (a live recording).
    pub from_file: bool,
    /// A live recording that may read its targets' memory: truncated walks that cannot be
    /// joined are completed from the running process's stack (see `collect/live.rs`). Default:
    /// none.
    pub live_memory: Option<LiveMemory>,
}

/// Whether and how off-CPU intervals join the profile.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OffCpuMode {
    /// Switch records are ignored; weights are the samples' periods.
    #[default]
    Off,
    /// On-CPU samples and off-CPU intervals (`[off-cpu]`, `[preempted]`) in one graph, weighted
    /// in microseconds.
    With,
    /// Only the intervals spent waiting (`[off-cpu]`): no samples, no preemptions.
    Only,
}

impl CollectOptions {
    /// Options with inline frames as given and everything else at its default.
    pub fn new(inline: bool) -> Self {
        CollectOptions {
            inline,
            ..Default::default()
        }
    }
}

/// Counts of what went by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CollectStats {
    pub samples: u64,
    /// Samples whose user stack ran out of copied bytes before its root (and could not be
    /// completed from an earlier stack of the thread).
    pub truncated: u64,
    /// Samples whose user stack ran out of copied bytes and was completed from an earlier
    /// complete stack of the same thread (see `collect/join.rs`).
    pub joined: u64,
    /// Samples whose user stack ran out of copied bytes and was completed from the running
    /// process's stack (see `collect/live.rs`).
    pub live: u64,
    /// Samples of the idle task (pid 0), ignored.
    pub idle: u64,
    /// User frames DWARF-unwound, and among them those taken from the previous walk of the
    /// same thread instead (see `unwind/memo.rs`).
    pub user_frames: u64,
    pub reused_frames: u64,
    /// Time of the first and last sample (0 when unknown).
    pub first_time: u64,
    pub last_time: u64,
    /// Off-CPU intervals tallied, and those among them whose stack could not be read.
    pub off_cpu_intervals: u64,
    pub off_cpu_without_stack: u64,
}

impl CollectStats {
    /// From the first to the last sample, when samples carry times.
    pub fn duration(&self) -> Option<std::time::Duration> {
        (self.first_time > 0 && self.last_time > self.first_time)
            .then(|| std::time::Duration::from_nanos(self.last_time - self.first_time))
    }
}

/// A thread as the aggregation tells threads apart.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ThreadKey {
    pid: Option<u32>,
    tid: Option<u32>,
    name: Arc<str>,
    process_name: Arc<str>,
}

/// One aggregated (stack, thread), or one sample when time order is kept.
#[derive(Clone, Copy, Debug)]
struct Tally {
    count: u64,
    weight: u64,
}

/// Aggregates samples into unique stacks of frame keys.
pub struct StackCollector {
    options: CollectOptions,
    processes: Processes,
    walker: StackWalker,
    threads: Vec<ThreadKey>,
    thread_ids: FxHashMap<ThreadKey, u32>,
    /// Unique stacks of frame keys, leaf first, the thread last; a stack's id indexes
    /// `tallies`.
    stacks: stacks::StackTable,
    tallies: Vec<Tally>,
    /// With time order: (stack id, period, time) per sample.
    sequence: Vec<(u32, u64, u64)>,
    scratch: Vec<FrameKey>,
    stats: CollectStats,
    event: String,
    warmer: warmer::Warmer,
    /// Addresses handed to the symbolizer thread to be named while records are read (a file
    /// without `--lines`: see [`StackCollector::presymbolize`]).
    presymbolizing: Option<rustc_hash::FxHashSet<(crate::process::ModuleId, u64)>>,
    off_cpu: offcpu::OffCpu,
}

impl StackCollector {
    /// A collector; it starts a symbolizer thread that works while samples arrive.
    pub fn new(options: CollectOptions) -> Self {
        let load_kallsyms = options.kernel == KernelNames::Running;
        let stack_prefix = options.stack_prefix;
        let live_memory = options.live_memory;
        let symbolizer = Symbolizer::new(symbolize_options(&options));
        let presymbolizing = (options.from_file && !options.lines).then(Default::default);
        let mut processes =
            (options.locator.clone()).map_or_else(Processes::default, Processes::with_locator);
        if options.open_mapped_files {
            processes.modules.hold_all_files();
        }
        StackCollector {
            warmer: warmer::Warmer::start(symbolizer, load_kallsyms, !options.from_file),
            processes,
            options,
            walker: StackWalker::new(stack_prefix, live_memory),
            threads: Vec::new(),
            thread_ids: FxHashMap::default(),
            stacks: stacks::StackTable::default(),
            tallies: Vec::new(),
            sequence: Vec::new(),
            scratch: Vec::with_capacity(256),
            stats: CollectStats::default(),
            event: "cpu-clock".into(),
            presymbolizing,
            off_cpu: offcpu::OffCpu::default(),
        }
    }

    pub fn stats(&self) -> CollectStats {
        CollectStats {
            off_cpu_intervals: self.off_cpu.intervals,
            off_cpu_without_stack: self.off_cpu.without_stack,
            ..self.stats
        }
    }

    /// Names the sampled event (default `cpu-clock`); `cpu-clock` and `task-clock` periods are
    /// nanoseconds, other events' periods are event counts.
    pub fn set_event(&mut self, event: impl Into<String>) {
        self.event = event.into();
    }

    /// Applies one record, in timestamp order.
    pub fn on_record(&mut self, format: &SampleFormat, record: Record<'_>) {
        let _ = format;
        match record {
            Record::Sample(sample) => self.on_sample(&sample),
            Record::Switch(switch) if self.options.off_cpu != OffCpuMode::Off => {
                self.on_switch(&switch)
            }
            Record::Exit(Fork { tid, .. }) => {
                self.off_cpu.on_exit(tid);
                // Its last walks serve no later sample: a system-wide recording sees thousands
                // of short-lived threads.
                self.walker.forget_thread(tid);
            }
            Record::Mmap2(m) => {
                if let Some(range) = sample::exec_mapping(&m) {
                    let mapped = crate::process::MappedFile::from(&m.file_id);
                    (self.processes).on_mmap_file(m.pid, range, m.filename, mapped);
                }
            }
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
            }) => {
                self.off_cpu.on_fork(tid);
                // A new thread: nothing of an earlier thread with its id may be joined to it.
                self.walker.forget_thread(tid);
                self.processes.on_fork(pid, ppid, tid, ptid)
            }
            _ => {}
        }
    }

    fn thread_id(&mut self, pid: u32, tid: u32) -> u32 {
        let split = self.options.split_threads;
        let key = ThreadKey {
            pid: split.then_some(pid),
            tid: split.then_some(tid),
            name: self.processes.name(pid, tid),
            process_name: self.processes.name(pid, pid),
        };
        if let Some(&id) = self.thread_ids.get(&key) {
            return id;
        }
        let id = self.threads.len() as u32;
        self.threads.push(key.clone());
        self.thread_ids.insert(key, id);
        id
    }

    fn on_sample(&mut self, sample: &Sample<'_>) {
        if sample.pid == 0 && sample.tid == 0 {
            self.stats.idle += 1;
            return;
        }
        self.off_cpu.saw_time(sample.time);
        // perf.data from `perf record -e context-switches -c 1 --switch-events`: a period-1
        // sample (period 0: a fixed `-c 1` period is not recorded) is the stack of the
        // switch-out record that follows it.
        let switch_sample = self.options.off_cpu != OffCpuMode::Off && sample.period <= 1;
        if self.options.off_cpu == OffCpuMode::Only && !switch_sample {
            return;
        }
        if !switch_sample {
            self.stats.samples += 1;
        }
        if sample.time > 0 {
            if self.stats.first_time == 0 {
                self.stats.first_time = sample.time;
            }
            self.stats.last_time = self.stats.last_time.max(sample.time);
        }
        let mut frames = std::mem::take(&mut self.scratch);
        frames.clear();
        let warmer = &mut self.warmer;
        let processes = &self.processes;
        let walk = self
            .walker
            .walk(sample, processes, &mut frames, |module, offset| {
                let modules = &processes.modules;
                if !warmer.wants(module) {
                    return;
                }
                if let (Some(file), Some(path)) = (modules.file(module), modules.path(module)) {
                    warmer.warm(module, file, path, offset);
                }
            });
        if walk.truncated {
            self.stats.truncated += 1;
        }
        if walk.joined {
            self.stats.joined += 1;
        }
        if walk.live {
            self.stats.live += 1;
        }
        self.stats.user_frames += walk.frames as u64;
        self.stats.reused_frames += walk.reused as u64;
        if switch_sample {
            self.off_cpu.stash_sample(sample.tid, sample.time, &frames);
            self.scratch = frames;
            return;
        }
        self.tally(
            frames,
            sample.pid,
            sample.tid,
            sample.period.max(1),
            sample.time,
        );
    }

    /// A switch record: a switch-out's readable stack is unwound now (with the maps of now),
    /// a switch-in closes the thread's interval.
    fn on_switch(&mut self, switch: &Switch<'_>) {
        let mut frames = std::mem::take(&mut self.scratch);
        frames.clear();
        if switch.out {
            let warmer = &mut self.warmer;
            let processes = &self.processes;
            let on_module = |module, offset| {
                let modules = &processes.modules;
                if let (Some(file), Some(path)) = (modules.file(module), modules.path(module)) {
                    warmer.warm(module, file, path, offset);
                }
            };
            let truncated = match (switch.sample, switch.blocked) {
                (Some(sample), _) => {
                    // `walk` marks a cut stack itself.
                    self.walker.walk(&sample, processes, &mut frames, on_module);
                    false
                }
                (None, Some(blocked)) => self.walker.walk_blocked(
                    switch.pid,
                    &blocked,
                    processes,
                    &mut frames,
                    on_module,
                ),
                (None, None) => {
                    frames.extend_from_slice(self.off_cpu.stashed_sample(switch.tid, switch.time));
                    false
                }
            };
            if truncated {
                frames.push(FrameKey::Truncated);
            }
        }
        let interval = self.off_cpu.on_switch(switch, &frames);
        self.scratch = frames;
        if let Some(interval) = interval {
            self.tally_interval(interval);
        }
    }

    fn tally_interval(&mut self, interval: offcpu::Interval) {
        let preempted = interval.frames.first() == Some(&FrameKey::Preempted);
        if interval.duration == 0 || (preempted && self.options.off_cpu == OffCpuMode::Only) {
            return;
        }
        let mut frames = std::mem::take(&mut self.scratch);
        frames.clear();
        frames.extend_from_slice(&interval.frames);
        let (pid, tid) = (interval.pid, interval.tid);
        self.tally(frames, pid, tid, interval.duration, interval.time);
    }

    /// Adds `frames` (leaf first, no thread yet) on thread `tid` with `weight`; gives the buffer
    /// back as the scratch buffer.
    fn tally(&mut self, mut frames: Vec<FrameKey>, pid: u32, tid: u32, period: u64, time: u64) {
        let thread = self.thread_id(pid, tid);
        frames.push(FrameKey::Thread(thread));
        let (id, new) = self.stacks.intern(&frames);
        if new {
            self.tallies.push(Tally {
                count: 0,
                weight: 0,
            });
            self.presymbolize(&frames);
        }
        let tally = &mut self.tallies[id as usize];
        tally.count += 1;
        tally.weight += period;
        if self.options.time_ordered {
            self.sequence.push((id, period, time));
        }
        self.scratch = frames;
    }

    /// Reading a file, the symbolizer thread names each new address of a new stack while the
    /// records are read, on the other core, rather than all of them after the read: the
    /// resolution at the end then finds them named.
    fn presymbolize(&mut self, frames: &[FrameKey]) {
        let Some(sent) = &mut self.presymbolizing else {
            return;
        };
        let modules = &self.processes.modules;
        for frame in frames {
            if let FrameKey::Module { module, offset } = *frame {
                if let (Some(file), Some(path)) = (modules.file(module), modules.path(module)) {
                    if sent.insert((module, offset)) {
                        self.warmer.presymbolize(module, file, path, offset);
                    }
                }
            }
        }
    }

    /// Symbolizes every unique frame once and builds the profile.
    pub fn finish(self) -> Profile {
        self.finish_with_notes().0
    }

    /// [`StackCollector::finish`], with the symbolizer's notes for the user (skipped perf maps,
    /// debuginfod's failures).
    pub fn finish_with_notes(mut self) -> (Profile, Vec<String>) {
        for interval in self.off_cpu.finish() {
            self.tally_interval(interval);
        }
        // No more stacks to walk: the unwind tables (and the mapped pages they read) go before
        // symbolization needs memory.
        self.walker = StackWalker::new(None, None);
        let warmer = std::mem::replace(&mut self.warmer, warmer::Warmer::idle());
        let (mut symbolizer, presymbolized) = warmer.finish(symbolize_options(&self.options));
        if let KernelNames::File(path) = &self.options.kernel {
            symbolizer.set_kernel_symbols(crate::symbolize::KernelSymbols::from_file(path));
        }
        for (pid, map) in self.processes.perf_maps_elsewhere() {
            symbolizer.add_perf_map(pid, map);
        }
        let (unit, measure) = match self.event.as_str() {
            _ if self.options.off_cpu != OffCpuMode::Off => {
                (WeightUnit::Microseconds, Measure::Weight)
            }
            "cpu-clock" | "task-clock" => (WeightUnit::Nanoseconds, Measure::Count),
            other => (WeightUnit::Events(other.to_owned()), Measure::Weight),
        };
        // Off-CPU profiles weigh in microseconds (nanoseconds summed first, then rounded).
        let micros = unit == WeightUnit::Microseconds;
        let scale = |weight: u64| {
            if micros {
                (weight + 500) / 1000
            } else {
                weight
            }
        };
        let mut builder = ProfileBuilder::new(unit, measure);
        builder.set_event(self.event.clone());
        builder.set_time_ordered(self.options.time_ordered);
        let mut resolver =
            resolve::Resolver::new(&mut symbolizer, &self.processes, self.options.lines);
        resolver.kernel_unnamed = matches!(self.options.kernel, KernelNames::Unnamed(_));
        resolver.presymbolized = presymbolized;
        let mut stacks = std::mem::take(&mut self.stacks);
        stacks.seal();
        let (key_frames, key_frame_ids) = name_keys(stacks.frames(), &mut resolver, &mut builder);
        // Per stack id: its profile stack and thread.
        let mut ids = vec![None; self.tallies.len()];
        let mut path = Vec::new();
        for id in 0..stacks.len() as u32 {
            let Some((&thread, keys)) = stacks.stack(id).split_last() else {
                continue;
            };
            let FrameKey::Thread(thread) = stacks.frames()[thread as usize] else {
                continue;
            };
            path.clear();
            for &key in keys.iter().rev() {
                let (start, len) = key_frames[key as usize];
                path.extend_from_slice(&key_frame_ids[start as usize..(start + len) as usize]);
            }
            let t = &self.threads[thread as usize];
            let thread = builder.thread(Thread {
                pid: t.pid,
                tid: t.tid,
                name: Arc::clone(&t.name),
                process_name: Arc::clone(&t.process_name),
            });
            ids[id as usize] = Some((builder.stack(&path), thread));
        }
        if self.options.time_ordered {
            for &(id, period, time) in &self.sequence {
                if let Some((stack, thread)) = ids[id as usize] {
                    builder.add(stack, thread, 1, scale(period), Some(time));
                }
            }
        } else {
            for (id, tally) in self.tallies.iter().enumerate() {
                if let Some((stack, thread)) = ids[id] {
                    builder.add(stack, thread, tally.count, scale(tally.weight), None);
                }
            }
        }
        let mut notes = self.elsewhere_notes(&resolver);
        drop(resolver);
        notes.extend_from_slice(symbolizer.notes());
        notes.extend(self.processes.notes());
        notes.extend(crate::symbolize::debuginfod::take_notes());
        (builder.finish(), notes)
    }

    /// For a recording made elsewhere: one note naming the files that kept `FILE+0xOFFSET`
    /// frames for want of a matching build-id, and saying why kernel frames are unnamed.
    fn elsewhere_notes(&self, resolver: &resolve::Resolver<'_>) -> Vec<String> {
        const SHOWN: usize = 5;
        let unmatched = &resolver.unmatched;
        let mut parts = Vec::new();
        let mut fixes = Vec::new();
        if !unmatched.is_empty() {
            let mut names: Vec<String> = (unmatched.iter().take(SHOWN))
                .map(|p| p.display().to_string())
                .collect();
            if unmatched.len() > SHOWN {
                names.push(format!("and {} more", unmatched.len() - SHOWN));
            }
            let one = unmatched.len() == 1;
            parts.push(format!(
                "{} file{} with the build-id the recording gives {} not found, so {} frames \
                 stay FILE+0xOFFSET: {}",
                unmatched.len(),
                if one { "" } else { "s" },
                if one { "was" } else { "were" },
                if one { "its" } else { "their" },
                names.join(", ")
            ));
            fixes.push(
                "give the recording machine's files with --symfs DIR, or unpack its \
                 `perf archive` into ~/.debug",
            );
        }
        if let (KernelNames::Unnamed(why), true) = (&self.options.kernel, resolver.kernel_frames) {
            parts.push(format!("kernel frames are [kernel]: {why}"));
            fixes.push(
                "give its kernel symbols (a copy of its /proc/kallsyms) with --kallsyms FILE",
            );
        }
        if parts.is_empty() {
            return Vec::new();
        }
        vec![format!("{}; {}", parts.join("; "), fixes.join("; "))]
    }
}

/// Names every distinct frame key once: per key id, where its profile frames are in the
/// returned vector (one key may be several frames: inlined functions). Keys are named module by
/// module, and each module's symbols and debug info are let go once its addresses are named, so
/// that memory holds one module's at a time (a system-wide recording samples hundreds).
fn name_keys(
    frames: &[FrameKey],
    resolver: &mut resolve::Resolver<'_>,
    builder: &mut ProfileBuilder,
) -> (Vec<(u32, u32)>, Vec<crate::profile::FrameId>) {
    let mut key_frames = vec![(0, 0); frames.len()];
    let module_of = |key: &FrameKey| match *key {
        FrameKey::Module { module, offset } => (Some(module), offset),
        _ => (None, 0),
    };
    let mut order: Vec<u32> = (0..frames.len() as u32)
        .filter(|&id| !matches!(frames[id as usize], FrameKey::Thread(_)))
        .collect();
    order.sort_unstable_by_key(|&id| module_of(&frames[id as usize]));
    let mut ids = Vec::new();
    let mut out = Vec::new();
    for (i, &id) in order.iter().enumerate() {
        let key = frames[id as usize];
        out.clear();
        resolver.frames(key, builder, &mut out);
        key_frames[id as usize] = (ids.len() as u32, out.len() as u32);
        ids.extend_from_slice(&out);
        let module = module_of(&key).0;
        let next = order.get(i + 1).map(|&n| module_of(&frames[n as usize]).0);
        if let Some(module) = module.filter(|_| next != Some(module)) {
            resolver.release(module);
        }
    }
    (key_frames, ids)
}
