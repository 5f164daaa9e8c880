//! Folded stacks from a profile: `root;caller;leaf value` lines, inferno's collapsed format.
//!
//! The root frame names the thread: its name by default (as perf + inferno give it),
//! `comm-PID/TID` per thread or `comm-PID` per process (inferno's `--tid` / `--pid` spelling).
//! Kernel frames carry inferno's `_[k]` annotation so that palettes colour them apart.

use std::collections::HashMap;

use super::{Frame, FrameKind, Measure, Profile, Thread};
use crate::fold::Folded;

/// inferno's annotation of kernel frames.
pub const KERNEL_SUFFIX: &str = "_[k]";

/// What the root frame of each stack names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Roots {
    /// The thread's name (`comm`): threads of the same name merge. The default.
    #[default]
    ThreadName,
    /// `comm-PID/TID`: one root per thread.
    PerThread,
    /// `comm-PID` (the process's name): one root per process.
    PerProcess,
}

/// Options of [`fold`].
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
pub struct FoldOptions {
    /// Which value to fold. Default: none, meaning the profile's own [`Profile::measure`].
    pub measure: Option<Measure>,
    /// What the root frame names. Default: [`Roots::ThreadName`].
    pub roots: Roots,
}

/// Folds `profile`: stacks merged and sorted, or in time order for a time-ordered profile
/// (consecutive equal stacks merged), as a flame chart needs.
pub fn fold(profile: &Profile, options: &FoldOptions) -> Folded {
    let measure = options.measure.unwrap_or(profile.measure);
    let mut frame_text: Vec<Option<String>> = vec![None; profile.frames.len()];
    let mut stack_text: Vec<Option<String>> = vec![None; profile.stacks.len()];
    let mut root_text: Vec<Option<String>> = vec![None; profile.threads.len()];
    let mut lines = Vec::with_capacity(profile.samples.len());
    for sample in &profile.samples {
        let value = sample.value(measure);
        if value == 0 {
            continue;
        }
        let root = root_text[sample.thread.0 as usize]
            .get_or_insert_with(|| root_name(profile.thread(sample.thread), options.roots))
            .clone();
        let stack = stack_text[sample.stack.0 as usize].get_or_insert_with(|| {
            let mut s = String::new();
            for id in profile.stacks[sample.stack.0 as usize].frames.iter() {
                let text = frame_text[id.0 as usize]
                    .get_or_insert_with(|| frame_name(&profile.frames[id.0 as usize]));
                s.push(';');
                s.push_str(text);
            }
            s
        });
        lines.push((root + stack, value));
    }
    if profile.time_ordered {
        Folded::from_sequence(lines)
    } else {
        let mut merged: HashMap<String, u64> = HashMap::with_capacity(lines.len());
        for (line, value) in lines {
            *merged.entry(line).or_default() += value;
        }
        Folded::from_counts(merged)
    }
}

/// A frame's name in folded text: `;` would split it, so it becomes `:`.
pub fn frame_name(frame: &Frame) -> String {
    let mut name = frame.function.replace(';', ":");
    if frame.kind == FrameKind::Kernel {
        name.push_str(KERNEL_SUFFIX);
    }
    name
}

/// The root frame for a thread.
pub fn root_name(thread: &Thread, roots: Roots) -> String {
    let name = match roots {
        Roots::ThreadName => thread.name.to_string(),
        Roots::PerThread => match (thread.pid, thread.tid) {
            (Some(pid), Some(tid)) => format!("{}-{pid}/{tid}", thread.name),
            _ => thread.name.to_string(),
        },
        Roots::PerProcess => match thread.pid {
            Some(pid) => format!("{}-{pid}", thread.process_name),
            None => thread.process_name.to_string(),
        },
    };
    name.replace(';', ":")
}
