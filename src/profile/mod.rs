//! The profile model: what every backend produces and every output reads.
//!
//! Between recording and output there is one shape, modelled on pprof's `profile.proto` and
//! samply's processed profile: tables of interned things, pointed into by index.
//!
//! - [`Frame`]: one function activation as shown to the user: its name, the module and address
//!   it was found at, `file:line` where known, whether it was inlined into its caller, and what
//!   kind of frame it is (user, kernel, JIT, or a marker such as `[truncated]`).
//! - [`Stack`]: frames from the root (outermost caller) to the leaf, as indices into the frame
//!   table. The thread is *not* part of the stack: it is a property of the sample.
//! - [`Thread`]: a thread's process id, thread id and name (`comm`).
//! - [`Sample`]: a stack on a thread, with the number of sample records it stands for
//!   (`count`), their summed weight in the profile's [`WeightUnit`] (`weight`: nanoseconds of
//!   cpu-clock, event counts, off-CPU time), and the time of the record when the profile keeps
//!   time order (flame charts, speedscope); aggregated samples have no time.
//!
//! Backends that only know folded text (perf-cli, dtrace, xctrace) fill the model through
//! [`Profile::from_folded`]; the native sampler and the perf.data reader fill it frame by frame
//! through [`ProfileBuilder`]. Folded text is one output among others: see [`fold`].

pub mod fold;

use std::sync::Arc;

use std::hash::{BuildHasher, Hash};

use hashbrown::HashTable;
use rustc_hash::{FxBuildHasher, FxHashMap, FxHashSet};

/// Index of a [`Frame`] in [`Profile::frames`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FrameId(pub u32);

/// Index of a [`Stack`] in [`Profile::stacks`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StackId(pub u32);

/// Index of a [`Thread`] in [`Profile::threads`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ThreadId(pub u32);

/// Index of a [`Module`] in [`Profile::modules`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModuleIndex(pub u32);

/// What kind of code a frame is in; outputs colour and annotate by it (inferno's `_[k]`, `_[j]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FrameKind {
    /// User-space code in a file (or the vDSO).
    User,
    /// Kernel code.
    Kernel,
    /// JIT-compiled code (anonymous executable memory).
    Jit,
    /// Not code: a marker the pipeline adds, such as `[truncated]` (the stack copy ran out) or
    /// `[unknown]` (an address in no mapping).
    Marker,
}

/// One frame as shown to the user.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Frame {
    /// The function's display name (already demangled and tidied).
    pub function: Arc<str>,
    /// The module (file) the code lives in, if known.
    pub module: Option<ModuleIndex>,
    /// The lookup address: a file offset in `module` for user frames (`ra - 1` applied to
    /// return addresses), the kernel address for kernel frames. Frames that share an address
    /// (a function and the functions inlined at that address) share it.
    pub address: Option<u64>,
    /// Source file, when line information was asked for and found.
    pub file: Option<Arc<str>>,
    /// Source line, with `file`.
    pub line: Option<u32>,
    /// True when this function was inlined into the frame rootward of it (same address).
    pub inline: bool,
    /// What kind of code this is.
    pub kind: FrameKind,
}

impl Frame {
    /// A frame known only by its name (folded input), of the given kind.
    pub fn named(function: impl Into<Arc<str>>, kind: FrameKind) -> Self {
        Frame {
            function: function.into(),
            module: None,
            address: None,
            file: None,
            line: None,
            inline: false,
            kind,
        }
    }
}

/// A mapped file code was found in.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Module {
    /// Its path as recorded (`[vdso]` for the vDSO, `[kernel.kallsyms]` for the kernel).
    pub path: Arc<str>,
    /// The GNU build-id in hex, when known.
    pub build_id: Option<Arc<str>>,
}

/// Frames from the root (outermost caller) to the leaf.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Stack {
    pub frames: Box<[FrameId]>,
}

/// A thread samples were taken on.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Thread {
    /// Process id, when the backend knows it (not for folded input).
    pub pid: Option<u32>,
    /// Thread id, when the backend knows it.
    pub tid: Option<u32>,
    /// The thread's name (`comm`).
    pub name: Arc<str>,
    /// Its process's name (the main thread's `comm`).
    pub process_name: Arc<str>,
}

/// The leaf frame of an off-CPU stack: the thread waited (blocked) there.
pub const OFF_CPU_FRAME: &str = "[off-cpu]";
/// The leaf frame of time a runnable thread spent preempted (CPU taken by others, not waiting).
pub const PREEMPTED_FRAME: &str = "[preempted]";

/// What [`Sample::weight`] counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WeightUnit {
    /// One per sample record: the weight is the count.
    Samples,
    /// Nanoseconds (cpu-clock and task-clock periods).
    Nanoseconds,
    /// Microseconds: on- and off-CPU time of `--off-cpu` profiles (the folded counts).
    Microseconds,
    /// Occurrences of the named event (period × samples), e.g. `page-faults`.
    Events(String),
}

/// A stack on a thread, standing for `count` sample records of total `weight`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    pub stack: StackId,
    pub thread: ThreadId,
    /// Sample records aggregated into this one (1 when time order is kept).
    pub count: u64,
    /// Their summed weight, in [`Profile::weight_unit`].
    pub weight: u64,
    /// The record's time (CLOCK_MONOTONIC nanoseconds) when time order is kept.
    pub time: Option<u64>,
}

/// Which value of a sample a view shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Measure {
    /// Sample records ("samples").
    Count,
    /// The weight, in the profile's [`WeightUnit`].
    Weight,
}

/// A whole profile: interned tables and the samples pointing into them.
#[derive(Clone, Debug)]
pub struct Profile {
    pub frames: Vec<Frame>,
    pub stacks: Vec<Stack>,
    pub threads: Vec<Thread>,
    pub modules: Vec<Module>,
    /// In time order when [`Profile::time_ordered`], else one per unique (stack, thread).
    pub samples: Vec<Sample>,
    /// The sampled event (`cpu-clock`, `cycles`, ...), or a description of the source.
    pub event: String,
    /// What [`Sample::weight`] counts.
    pub weight_unit: WeightUnit,
    /// Which value the graph shows by default: [`Measure::Count`] for on-CPU sampling (one per
    /// sample, whatever the period), [`Measure::Weight`] where the weight is the point (off-CPU
    /// time, event counts).
    pub measure: Measure,
    /// Samples are individual records in time order (not aggregated).
    pub time_ordered: bool,
}

impl Profile {
    /// Total of `measure` over all samples.
    pub fn total(&self, measure: Measure) -> u64 {
        self.samples.iter().map(|s| s.value(measure)).sum()
    }

    /// Total sample records.
    pub fn sample_count(&self) -> u64 {
        self.total(Measure::Count)
    }

    /// True when there is nothing to draw.
    pub fn is_empty(&self) -> bool {
        self.samples.iter().all(|s| s.count == 0 && s.weight == 0)
    }

    /// The frames of a stack, root first.
    pub fn stack_frames(&self, stack: StackId) -> impl DoubleEndedIterator<Item = &Frame> + '_ {
        self.stacks[stack.0 as usize]
            .frames
            .iter()
            .map(|f| &self.frames[f.0 as usize])
    }

    /// The thread of a sample.
    pub fn thread(&self, id: ThreadId) -> &Thread {
        &self.threads[id.0 as usize]
    }

    /// Drops every frame rootward of the leafmost frame whose function is one of `names` (as
    /// `--skip-after` does for the folded output), for every output that reads the model.
    /// Stacks that contain none of the names are kept whole; stacks that become equal stay
    /// separate entries (outputs merge equal stacks when they aggregate).
    pub fn skip_after(&mut self, names: &[String]) {
        if names.is_empty() {
            return;
        }
        for stack in &mut self.stacks {
            let frames = &self.frames;
            let cut = stack.frames.iter().rposition(|f| {
                let function = &frames[f.0 as usize].function;
                names.iter().any(|n| n.as_str() == &**function)
            });
            if let Some(cut) = cut.filter(|&c| c > 0) {
                stack.frames = stack.frames[cut..].into();
            }
        }
    }

    /// Builds a profile from folded stacks (`root;caller;leaf count` lines): the first frame is
    /// the thread (or process) name; a frame annotated `_[k]` (inferno's kernel annotation) is a
    /// kernel frame. Other annotations stay part of the name. Counts are sample records.
    pub fn from_folded(folded: &crate::fold::Folded, time_ordered: bool) -> Profile {
        let mut builder = ProfileBuilder::new(WeightUnit::Samples, Measure::Count);
        builder.set_time_ordered(time_ordered);
        let mut frames = Vec::new();
        for (line, count) in folded.stacks() {
            let mut parts = line.split(';');
            let name = parts.next().unwrap_or_default();
            let name: Arc<str> = name.into();
            let thread = builder.thread(Thread {
                pid: None,
                tid: None,
                process_name: Arc::clone(&name),
                name,
            });
            frames.clear();
            for part in parts {
                let frame = match part.strip_suffix(fold::KERNEL_SUFFIX) {
                    Some(name) => Frame::named(name, FrameKind::Kernel),
                    None => Frame::named(part, FrameKind::User),
                };
                frames.push(builder.frame(frame));
            }
            let stack = builder.stack(&frames);
            builder.add(stack, thread, *count, *count, None);
        }
        builder.finish()
    }
}

impl Sample {
    /// The value of this sample for `measure`.
    pub fn value(&self, measure: Measure) -> u64 {
        match measure {
            Measure::Count => self.count,
            Measure::Weight => self.weight,
        }
    }
}

/// The hash the builder's interning tables use.
fn hash_of<T: Hash + ?Sized>(value: &T) -> u64 {
    FxBuildHasher.hash_one(value)
}

/// Fills a [`Profile`], interning frames, stacks, threads and modules, and aggregating samples
/// of the same stack on the same thread unless time order is kept.
pub struct ProfileBuilder {
    profile: Profile,
    /// Indices into `profile.frames` and `profile.stacks` by the hash of what they index: each
    /// frame and stack is kept once, in the profile (a big profile has ~100k of each).
    frame_ids: HashTable<u32>,
    stack_ids: HashTable<u32>,
    /// Function names, once each: a function sampled at many addresses is many frames.
    names: FxHashSet<Arc<str>>,
    thread_ids: FxHashMap<Thread, ThreadId>,
    module_ids: FxHashMap<Arc<str>, ModuleIndex>,
    sample_ids: FxHashMap<(StackId, ThreadId), usize>,
}

impl ProfileBuilder {
    /// An empty profile whose weights are in `unit`, shown by default as `measure`.
    pub fn new(unit: WeightUnit, measure: Measure) -> Self {
        ProfileBuilder {
            profile: Profile {
                frames: Vec::new(),
                stacks: Vec::new(),
                threads: Vec::new(),
                modules: Vec::new(),
                samples: Vec::new(),
                event: String::new(),
                weight_unit: unit,
                measure,
                time_ordered: false,
            },
            frame_ids: HashTable::new(),
            stack_ids: HashTable::new(),
            names: FxHashSet::default(),
            thread_ids: FxHashMap::default(),
            module_ids: FxHashMap::default(),
            sample_ids: FxHashMap::default(),
        }
    }

    /// Keep every sample in the order added, with its time, instead of aggregating.
    pub fn set_time_ordered(&mut self, on: bool) {
        self.profile.time_ordered = on;
    }

    /// Names the sampled event.
    pub fn set_event(&mut self, event: impl Into<String>) {
        self.profile.event = event.into();
    }

    /// The id of `frame`, interned.
    pub fn frame(&mut self, mut frame: Frame) -> FrameId {
        let hash = hash_of(&frame);
        let frames = &self.profile.frames;
        if let Some(&id) = self
            .frame_ids
            .find(hash, |&id| frames[id as usize] == frame)
        {
            return FrameId(id);
        }
        match self.names.get(&frame.function) {
            Some(name) => frame.function = Arc::clone(name),
            None => {
                self.names.insert(Arc::clone(&frame.function));
            }
        }
        let id = self.profile.frames.len() as u32;
        self.profile.frames.push(frame);
        let frames = &self.profile.frames;
        (self.frame_ids).insert_unique(hash, id, |&id| hash_of(&frames[id as usize]));
        FrameId(id)
    }

    /// The id of the module at `path`, interned; `build_id` is called once, on first sight.
    pub fn module(&mut self, path: &str, build_id: impl FnOnce() -> Option<String>) -> ModuleIndex {
        if let Some(&id) = self.module_ids.get(path) {
            return id;
        }
        let path: Arc<str> = path.into();
        let id = ModuleIndex(self.profile.modules.len() as u32);
        self.profile.modules.push(Module {
            path: Arc::clone(&path),
            build_id: build_id().map(Arc::from),
        });
        self.module_ids.insert(path, id);
        id
    }

    /// The id of the stack with these frames (root first), interned.
    pub fn stack(&mut self, frames: &[FrameId]) -> StackId {
        let hash = hash_of(frames);
        let stacks = &self.profile.stacks;
        if let Some(&id) = (self.stack_ids).find(hash, |&id| *stacks[id as usize].frames == *frames)
        {
            return StackId(id);
        }
        let id = self.profile.stacks.len() as u32;
        self.profile.stacks.push(Stack {
            frames: frames.into(),
        });
        let stacks = &self.profile.stacks;
        (self.stack_ids).insert_unique(hash, id, |&id| hash_of(&*stacks[id as usize].frames));
        StackId(id)
    }

    /// The id of `thread`, interned.
    pub fn thread(&mut self, thread: Thread) -> ThreadId {
        if let Some(&id) = self.thread_ids.get(&thread) {
            return id;
        }
        let id = ThreadId(self.profile.threads.len() as u32);
        self.profile.threads.push(thread.clone());
        self.thread_ids.insert(thread, id);
        id
    }

    /// Adds `count` sample records of total `weight` on `stack` and `thread`.
    pub fn add(
        &mut self,
        stack: StackId,
        thread: ThreadId,
        count: u64,
        weight: u64,
        time: Option<u64>,
    ) {
        if self.profile.time_ordered {
            self.profile.samples.push(Sample {
                stack,
                thread,
                count,
                weight,
                time,
            });
            return;
        }
        match self.sample_ids.get(&(stack, thread)) {
            Some(&i) => {
                let s = &mut self.profile.samples[i];
                s.count += count;
                s.weight += weight;
            }
            None => {
                self.sample_ids
                    .insert((stack, thread), self.profile.samples.len());
                self.profile.samples.push(Sample {
                    stack,
                    thread,
                    count,
                    weight,
                    time: None,
                });
            }
        }
    }

    /// The profile.
    pub fn finish(self) -> Profile {
        self.profile
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fold::Folded;

    #[test]
    fn folded_round_trip_keeps_kinds_and_counts() {
        let text = "prog;main;work_a 6\nprog;main;read_[k] 2\nprog;main;inl_[i] 1\n";
        let profile = Profile::from_folded(&Folded::parse(text).unwrap(), false);
        assert_eq!(profile.sample_count(), 9);
        assert_eq!(profile.threads.len(), 1);
        let kinds: Vec<_> = profile.frames.iter().map(|f| (f.kind, f.inline)).collect();
        assert!(kinds.contains(&(FrameKind::Kernel, false)));
        assert!(profile.frames.iter().any(|f| &*f.function == "inl_[i]"));
        let back = fold::fold(&profile, &fold::FoldOptions::default());
        assert_eq!(
            back.to_text(),
            "prog;main;inl_[i] 1\nprog;main;read_[k] 2\nprog;main;work_a 6\n"
        );
    }

    #[test]
    fn aggregates_unless_time_ordered() {
        for ordered in [false, true] {
            let mut b = ProfileBuilder::new(WeightUnit::Nanoseconds, Measure::Count);
            b.set_time_ordered(ordered);
            let f = b.frame(Frame::named("f", FrameKind::User));
            let s = b.stack(&[f]);
            let t = b.thread(Thread {
                pid: Some(1),
                tid: Some(1),
                name: "p".into(),
                process_name: "p".into(),
            });
            b.add(s, t, 1, 1000, Some(5));
            b.add(s, t, 1, 1000, Some(6));
            let p = b.finish();
            assert_eq!(p.samples.len(), if ordered { 2 } else { 1 });
            assert_eq!(p.total(Measure::Weight), 2000);
            assert_eq!(p.total(Measure::Count), 2);
        }
    }

    #[test]
    fn skip_after_cuts_rootward_frames_in_the_model() {
        let text = "prog;start;init;work 3\nprog;start;other 2\nprog;init 1\n";
        let mut profile = Profile::from_folded(&Folded::parse(text).unwrap(), false);
        profile.skip_after(&["init".to_string()]);
        let names = |p: &Profile, i: usize| -> Vec<String> {
            p.stack_frames(p.samples[i].stack)
                .map(|f| f.function.to_string())
                .collect()
        };
        let all: Vec<Vec<String>> = (0..profile.samples.len())
            .map(|i| names(&profile, i))
            .collect();
        assert!(all.contains(&vec!["init".to_string(), "work".to_string()]));
        assert!(all.contains(&vec!["start".to_string(), "other".to_string()]));
        assert!(all.contains(&vec!["init".to_string()]));
        assert_eq!(profile.sample_count(), 6);
    }
}
