//! Hints computed from what was recorded: advice that only the result can justify.

use crate::profile::{FrameKind, Profile};

/// Outermost frames that mean a stack was walked all the way up: program entry points, thread
/// and process starts of glibc, musl, Rust's std and Go. Compared with the last `::` segment of a
/// frame's name.
const ROOT_FRAMES: &[&str] = &[
    "_start",
    "__libc_start_main",
    "__libc_start_call_main",
    "__libc_start_main_impl",
    "_dl_start",
    "_dl_start_user",
    "main",
    "clone",
    "clone3",
    "__clone",
    "__clone3",
    "__clone_internal",
    "start_thread",
    "thread_start",
    "lang_start",
    "lang_start_internal",
    "runtime.goexit",
    "runtime.rt0_go",
    "runtime.mstart",
];

/// Share of samples whose outermost user frame is not a root, above which the hint is given.
const UNROOTED_SHARE: f64 = 0.5;

/// For `--call-graph fp`: when most samples' stacks stop short of an entry point, the code has
/// no frame pointers and the graph is cut into fragments; returns a one-line hint suggesting
/// `--call-graph dwarf`.
pub fn frame_pointer_hint(profile: &Profile) -> Option<String> {
    let (mut rooted, mut unrooted) = (0u64, 0u64);
    for sample in &profile.samples {
        let count = sample.count;
        let outermost = profile
            .stack_frames(sample.stack)
            .find(|frame| frame.kind != FrameKind::Kernel);
        match outermost {
            Some(frame) if is_root(&frame.function) => rooted += count,
            Some(_) => unrooted += count,
            None => {} // kernel only: says nothing about user frame pointers
        }
    }
    let total = rooted + unrooted;
    if total == 0 || (unrooted as f64) <= UNROOTED_SHARE * total as f64 {
        return None;
    }
    Some(format!(
        "{:.0}% of the stacks stop before reaching main or a thread start: the code seems built \
         without frame pointers, so --call-graph fp cuts its stacks; use --call-graph dwarf \
         (the default), or rebuild with frame pointers (-C force-frame-pointers=yes, \
         -fno-omit-frame-pointer)",
        unrooted as f64 * 100.0 / total as f64
    ))
}

/// Whether `frame` (a symbolized name, perhaps with an `_[i]` inline marker or a Rust path) is
/// an entry point or a thread start.
fn is_root(frame: &str) -> bool {
    let name = frame.strip_suffix("_[i]").unwrap_or(frame);
    // Rust paths and generic arguments: keep the last path segment of the function itself.
    let name = name.split('<').next().unwrap_or(name);
    let last = name.rsplit("::").next().unwrap_or(name);
    ROOT_FRAMES.contains(&last) || ROOT_FRAMES.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folded(text: &str) -> Profile {
        Profile::from_folded(&crate::fold::Folded::parse(text).unwrap(), false)
    }

    #[test]
    fn rooted_stacks_give_no_hint() {
        let f = folded(
            "p;__libc_start_call_main;main;work 90\n\
             p;start_thread;worker 5\n\
             p;[unknown];work 5\n\
             p;do_syscall_64_[k] 100\n",
        );
        assert_eq!(frame_pointer_hint(&f), None);
        let rust = folded(
            "p;std::sys::pal::unix::thread::Thread::new::thread_start;f 10\n\
             p;std::rt::lang_start_internal;main;f 10\n",
        );
        assert_eq!(frame_pointer_hint(&rust), None);
    }

    #[test]
    fn unrooted_stacks_suggest_dwarf() {
        let f = folded(
            "p;[unknown];work_a 60\n\
             p;[unknown];[unknown];work_b 30\n\
             p;__libc_start_call_main;main;work_c 10\n",
        );
        let hint = frame_pointer_hint(&f).unwrap();
        assert!(hint.starts_with("90% of the stacks"), "{hint}");
        assert!(hint.contains("--call-graph dwarf"), "{hint}");
        assert!(!hint.contains('\n'));
    }
}
