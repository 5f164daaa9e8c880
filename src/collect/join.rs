//! Completing truncated stacks from an earlier sample of the same thread (the idea of
//! simpleperf's callchain joiner).
//!
//! A DWARF walk stops at the end of the copied stack bytes. The frames rootward of that point
//! are usually still the same activations as in an earlier sample of the same thread: a frame is
//! identified by its code address *and* its stack pointer, and an activation that is still on
//! the stack keeps both. So when the outermost frame of a truncated walk, `(address, sp)`, also
//! appears in the thread's last complete stack, the callers that stack had below it are the
//! truncated stack's callers too, and the stack is completed with them.
//!
//! Matching on the stack pointer makes this exact where matching on names cannot be: in a deep
//! recursion every frame has the same address, and only `sp` tells which activation is which.
//! An activation that returned and was replaced by another at the same address and the same
//! stack pointer (same code called again from the same depth) is indistinguishable, but its
//! callers are then the same too, unless the stack below was rewritten in between by a return
//! into a caller and a new call chain that reached exactly the same `(address, sp)`; that is the
//! accepted, rare error of the method.
//!
//! A few recent complete stacks of each thread are kept, not only the last one: when a thread
//! sweeps up and down a deep recursion, the last complete sample may be shallower than the point
//! where the next deep one was cut, while the one before it reaches that point.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;

/// Complete stacks kept per thread (searched newest first).
const RECENT: usize = 4;

/// One user frame of a walk: its key (anything comparable) and the stack pointer it ran at.
pub(super) type Step<K> = (K, u64);

/// What [`Joiner::join`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum JoinOutcome {
    /// The walk was complete; it is remembered for later joins.
    Complete,
    /// The walk was truncated and completed with this many frames of an earlier stack.
    Joined(usize),
    /// The walk was truncated and no earlier stack of the thread shares its outermost frame.
    Truncated,
}

/// The last few complete user stacks of each thread (newest first), each outermost frame last.
pub(super) struct Joiner<K> {
    threads: FxHashMap<u32, VecDeque<Vec<Step<K>>>>,
}

impl<K: Copy + PartialEq> Joiner<K> {
    pub(super) fn new() -> Self {
        Joiner {
            threads: FxHashMap::default(),
        }
    }

    /// Completes `steps` (leaf first) of thread `tid` if it was `truncated` and can be joined;
    /// remembers it when it is (or became) complete.
    pub(super) fn join(
        &mut self,
        tid: u32,
        steps: &mut Vec<Step<K>>,
        truncated: bool,
    ) -> JoinOutcome {
        let outcome = match (truncated, steps.last()) {
            (false, _) => JoinOutcome::Complete,
            (true, None) => return JoinOutcome::Truncated,
            (true, Some(&outermost)) => {
                let mut recent = self.threads.get(&tid).into_iter().flatten();
                let Some(rest) = recent.find_map(|earlier| callers_of(earlier, outermost)) else {
                    return JoinOutcome::Truncated;
                };
                steps.extend_from_slice(rest);
                JoinOutcome::Joined(rest.len())
            }
        };
        let recent = self.threads.entry(tid).or_default();
        let mut remembered = match recent.len() {
            RECENT.. => recent.pop_back().unwrap_or_default(),
            _ => Vec::new(),
        };
        remembered.clear();
        remembered.extend_from_slice(steps);
        recent.push_front(remembered);
        outcome
    }

    /// Forgets a thread that exited (its tid may be reused).
    pub(super) fn forget(&mut self, tid: u32) {
        self.threads.remove(&tid);
    }
}

/// The frames of `earlier` (outermost last) rootward of the activation `frame`, if it has it.
fn callers_of<K: Copy + PartialEq>(earlier: &[Step<K>], frame: Step<K>) -> Option<&[Step<K>]> {
    // Stack pointers grow toward the root: only frames at or above `frame`'s sp can be it.
    let start = earlier.partition_point(|&(_, sp)| sp < frame.1);
    let i = earlier[start..].iter().position(|&step| step == frame)?;
    Some(&earlier[start + i + 1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_on_address_and_stack_pointer() {
        let mut j = Joiner::new();
        // main at 1000, a recursion of f at 900, 800, 700, leaf g at 600.
        let mut full = vec![('g', 600), ('f', 700), ('f', 800), ('f', 900), ('m', 1000)];
        assert_eq!(j.join(1, &mut full, false), JoinOutcome::Complete);
        // A later sample, cut after the f at 800: joined to the f at 900 and main.
        let mut cut = vec![('h', 650), ('f', 700), ('f', 800)];
        assert_eq!(j.join(1, &mut cut, true), JoinOutcome::Joined(2));
        assert_eq!(
            cut,
            vec![('h', 650), ('f', 700), ('f', 800), ('f', 900), ('m', 1000)]
        );
        // Same address, another stack pointer: not the same activation.
        let mut other = vec![('f', 750)];
        assert_eq!(j.join(1, &mut other, true), JoinOutcome::Truncated);
        assert_eq!(other, vec![('f', 750)]);
        // Another thread knows nothing.
        let mut t2 = vec![('f', 800)];
        assert_eq!(j.join(2, &mut t2, true), JoinOutcome::Truncated);
        j.forget(1);
        let mut again = vec![('f', 800)];
        assert_eq!(j.join(1, &mut again, true), JoinOutcome::Truncated);
    }

    #[test]
    fn joins_to_an_earlier_stack_than_the_last_when_the_last_is_too_shallow() {
        let mut j = Joiner::new();
        let mut deep = vec![('g', 600), ('f', 700), ('f', 800), ('f', 900), ('m', 1000)];
        assert_eq!(j.join(1, &mut deep, false), JoinOutcome::Complete);
        let mut shallow = vec![('g', 850), ('f', 900), ('m', 1000)];
        assert_eq!(j.join(1, &mut shallow, false), JoinOutcome::Complete);
        // Cut at the f at 800, which only the deep stack had.
        let mut cut = vec![('h', 500), ('f', 700), ('f', 800)];
        assert_eq!(j.join(1, &mut cut, true), JoinOutcome::Joined(2));
        assert_eq!(cut[3..], [('f', 900), ('m', 1000)]);
        // Only the last few are kept: after enough shallow stacks the deep one is gone.
        for _ in 0..RECENT {
            let mut shallow = vec![('g', 850), ('f', 900), ('m', 1000)];
            j.join(1, &mut shallow, false);
        }
        let mut cut = vec![('h', 500), ('f', 700), ('f', 800)];
        assert_eq!(j.join(1, &mut cut, true), JoinOutcome::Truncated);
    }
}
