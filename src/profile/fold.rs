//! Folded stacks from a profile: `root;caller;leaf value` lines, inferno's collapsed format.
//!
//! The root frame names the thread: its name by default (as perf + inferno give it),
//! `comm-PID/TID` per thread or `comm-PID` per process (inferno's `--tid` / `--pid` spelling).
//! Kernel frames carry inferno's `_[k]` annotation so that palettes colour them apart.

use super::{Frame, FrameKind, Measure, Profile, Thread};
use crate::fold::{Folded, WEIGHT_ROOM};

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
    let mut root_text: Vec<Option<String>> = vec![None; profile.threads.len()];
    // A time-ordered profile repeats its stacks: their text is kept. Otherwise each sample is a
    // unique (stack, thread) and its line is written once, straight into place.
    let mut stack_text: Vec<Option<String>> = if profile.time_ordered {
        vec![None; profile.stacks.len()]
    } else {
        Vec::new()
    };
    let mut lines = Vec::with_capacity(profile.samples.len());
    for sample in &profile.samples {
        let value = sample.value(measure);
        if value == 0 {
            continue;
        }
        let root = root_text[sample.thread.0 as usize]
            .get_or_insert_with(|| root_name(profile.thread(sample.thread), options.roots));
        let frames = &profile.stacks[sample.stack.0 as usize].frames;
        for id in frames.iter() {
            let text = &mut frame_text[id.0 as usize];
            if text.is_none() {
                *text = Some(frame_name(&profile.frames[id.0 as usize]));
            }
        }
        let line = match stack_text.get_mut(sample.stack.0 as usize) {
            Some(cached) => {
                let stack = cached.get_or_insert_with(|| joined("", frames, &frame_text));
                let mut line = String::with_capacity(root.len() + stack.len());
                line.push_str(root);
                line.push_str(stack);
                line
            }
            None => joined(root, frames, &frame_text),
        };
        lines.push((line, value));
    }
    if profile.time_ordered {
        Folded::from_sequence(lines)
    } else {
        // Sorting brings equal lines (different stacks or threads of the same names) together,
        // cheaper than hashing every line; `from_counts` then finds them sorted.
        lines.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        lines.dedup_by(|next, kept| {
            let equal = next.0 == kept.0;
            if equal {
                kept.1 += next.1;
            }
            equal
        });
        Folded::from_counts(lines)
    }
}

/// `root` followed by `;NAME` for each of `frames` (named in `frame_text`), allocated once at
/// its final size (and room for its weight).
fn joined(root: &str, frames: &[super::FrameId], frame_text: &[Option<String>]) -> String {
    let text = |id: &super::FrameId| frame_text[id.0 as usize].as_deref().unwrap_or("");
    let len = WEIGHT_ROOM + root.len() + frames.iter().map(|id| text(id).len() + 1).sum::<usize>();
    let mut line = String::with_capacity(len);
    line.push_str(root);
    for id in frames {
        line.push(';');
        line.push_str(text(id));
    }
    line
}

/// A frame's name in folded text: `;` would split it, so it becomes `:`. A frame with a source
/// location (`--lines`) is `FUNCTION FILE:LINE`, the file shortened by [`short_file`].
pub fn frame_name(frame: &Frame) -> String {
    let mut name = match (&frame.file, frame.line) {
        (Some(file), Some(line)) => format!("{} {}:{line}", frame.function, short_file(file)),
        _ => frame.function.to_string(),
    };
    if name.contains(';') {
        name = name.replace(';', ":");
    }
    if frame.kind == FrameKind::Kernel {
        name.push_str(KERNEL_SUFFIX);
    }
    name
}

/// A source path as frame names show it, always a suffix of `path`: after the Rust toolchain's
/// `/rustc/HASH/library/` (`core/src/iter/range.rs`) or Cargo's
/// `.cargo/registry/src/INDEX/` and `.cargo/git/checkouts/REPO/REV/` (`regex-1.10.2/src/lib.rs`);
/// else relative to the working directory when under it (`src/main.rs`); else its last two
/// components (`bits/stl_algo.h`, `c/split.c`).
pub fn short_file(path: &str) -> &str {
    static CWD: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let cwd = CWD.get_or_init(|| {
        let dir = std::env::current_dir()
            .ok()?
            .into_os_string()
            .into_string()
            .ok()?;
        Some(dir.trim_end_matches('/').to_owned()).filter(|d| !d.is_empty())
    });
    short_file_in(path, cwd.as_deref())
}

/// [`short_file`] with the working directory given.
fn short_file_in<'a>(path: &'a str, cwd: Option<&str>) -> &'a str {
    // The part after `marker` followed by `skip` more components.
    let after = |marker: &str, skip: usize| {
        let at = path.find(marker)? + marker.len();
        let mut rest = &path[at..];
        for _ in 0..skip {
            rest = rest.split_once('/')?.1;
        }
        Some(rest).filter(|r| !r.is_empty())
    };
    if let Some(rest) = path
        .strip_prefix("/rustc/")
        .and_then(|_| after("/rustc/", 1))
    {
        return rest.strip_prefix("library/").unwrap_or(rest);
    }
    if let Some(rest) =
        after("/.cargo/registry/src/", 1).or_else(|| after("/.cargo/git/checkouts/", 2))
    {
        return rest;
    }
    if let Some(rest) = cwd.and_then(|d| path.strip_prefix(d)?.strip_prefix('/')) {
        if !rest.is_empty() {
            return rest;
        }
    }
    match path.rmatch_indices('/').nth(1) {
        Some((at, _)) => &path[at + 1..],
        None => path,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Two threads of one name, and two frames of one name (a user and an inlined `f`): their
    /// lines are equal and merge; the rest stays sorted.
    #[test]
    fn equal_lines_of_other_threads_and_frames_merge() {
        use crate::profile::{Measure, ProfileBuilder, WeightUnit};
        let mut b = ProfileBuilder::new(WeightUnit::Nanoseconds, Measure::Count);
        let main = b.frame(Frame::named("main", FrameKind::User));
        let f = b.frame(Frame::named("f", FrameKind::User));
        let mut inlined = Frame::named("f", FrameKind::User);
        inlined.inline = true;
        let f_inlined = b.frame(inlined);
        let g = b.frame(Frame::named("g", FrameKind::User));
        let thread = |b: &mut ProfileBuilder, tid| {
            b.thread(Thread {
                pid: Some(1),
                tid: Some(tid),
                name: "w".into(),
                process_name: "p".into(),
            })
        };
        let (t1, t2) = (thread(&mut b, 1), thread(&mut b, 2));
        let (s1, s2, s3) = (
            b.stack(&[main, f]),
            b.stack(&[main, f_inlined]),
            b.stack(&[g]),
        );
        b.add(s3, t1, 1, 7, None);
        b.add(s1, t1, 2, 2, None);
        b.add(s1, t2, 3, 3, None);
        b.add(s2, t2, 4, 4, None);
        let profile = b.finish();
        assert_eq!(
            fold(&profile, &FoldOptions::default()).to_text(),
            "w;g 1\nw;main;f 9\n"
        );
        let per_thread = FoldOptions {
            roots: Roots::PerThread,
            ..FoldOptions::default()
        };
        assert_eq!(
            fold(&profile, &per_thread).to_text(),
            "w-1/1;g 1\nw-1/1;main;f 2\nw-1/2;main;f 7\n"
        );
    }

    #[test]
    fn short_files_keep_the_telling_part() {
        let cases = [
            (
                "/rustc/0123456789abcdef0123456789abcdef01234567/library/core/src/iter/range.rs",
                "core/src/iter/range.rs",
            ),
            (
                "/home/u/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/regex-1.10.2/src/lib.rs",
                "regex-1.10.2/src/lib.rs",
            ),
            (
                "/home/u/.cargo/git/checkouts/gimli-0a1b2c/7d8e9f0/src/read/line.rs",
                "src/read/line.rs",
            ),
            ("/work/proj/src/collect/resolve.rs", "src/collect/resolve.rs"),
            ("/usr/include/c++/12/bits/stl_algo.h", "bits/stl_algo.h"),
            ("/elsewhere/fixtures/c/split.c", "c/split.c"),
            ("split.c", "split.c"),
            ("/split.c", "/split.c"),
        ];
        for (path, short) in cases {
            assert_eq!(short_file_in(path, Some("/work/proj")), short, "{path}");
        }
        // The working directory itself is not a file name.
        assert_eq!(short_file_in("/work/proj", Some("/work/proj")), "work/proj");
    }

    #[test]
    fn frames_with_a_location_name_it() {
        let mut frame = Frame::named("work_a", FrameKind::User);
        assert_eq!(frame_name(&frame), "work_a");
        frame.file = Some("/x/fixtures/c/split.c".into());
        frame.line = Some(49);
        assert_eq!(frame_name(&frame), "work_a c/split.c:49");
        frame.file = Some("/x/we;ird/a.c".into());
        assert_eq!(frame_name(&frame), "work_a we:ird/a.c:49");
    }
}
