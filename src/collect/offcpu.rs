//! Off-CPU time from context-switch records: per thread, the pending switch-out (its time, its
//! stack, whether it was a preemption) until the thread's next switch-in closes the interval.
//!
//! - An interval is weighted by its duration in nanoseconds, like cpu-clock samples, so that on-
//!   and off-CPU time add up in one unit.
//! - Its stack is the one read when the switch-out was seen (native recorder at paranoid 2:
//!   `/proc` + `process_vm_readv`), topped by an `[off-cpu]` leaf, or `[preempted]` when the
//!   thread was still runnable (a busy machine's stolen CPU is not waiting).
//! - A switch-out whose stack could not be read (the thread already ran again when the record
//!   was read, or an unreadable thread) still counts: its interval is drawn as `[off-cpu]` alone
//!   on the thread's root, so the time is not lost.
//! - Threads still switched out at the end are closed at the last record's time; the final
//!   switch-out of an exiting thread (after its EXIT record) opens nothing.

use rustc_hash::{FxHashMap, FxHashSet};

use super::sample::FrameKey;
use crate::perf::records::Switch;

/// How long before its switch-out record a context-switch sample may be.
const STASH_MAX_NS: u64 = 1_000_000;

/// A thread off the CPU since `time`.
struct Pending {
    pid: u32,
    time: u64,
    preempt: bool,
    /// The thread's stack at the switch-out, leaf first, without marker or thread.
    frames: Box<[FrameKey]>,
}

/// A closed interval, ready to be tallied.
pub(super) struct Interval {
    pub pid: u32,
    pub tid: u32,
    /// Nanoseconds.
    pub duration: u64,
    /// Leaf first: the `[off-cpu]` or `[preempted]` marker, then the stack.
    pub frames: Vec<FrameKey>,
    /// The switch-in time (or the end).
    pub time: u64,
}

/// The per-thread state of off-CPU tracking.
#[derive(Default)]
pub(super) struct OffCpu {
    pending: FxHashMap<u32, Pending>,
    exited: FxHashSet<u32>,
    /// The latest time seen in any record.
    last_time: u64,
    /// Per thread, its last context-switch sample: time and stack. Per thread, because the
    /// records of several CPUs interleave: another thread's switch sample may come between a
    /// thread's sample and its switch-out record (it did, for the one 10 s wait of a program's
    /// main thread, in 2 of 3 benchmark runs).
    stash: FxHashMap<u32, (u64, Vec<FrameKey>)>,
    /// Waiting intervals (not preemptions) seen, and those without a stack.
    pub intervals: u64,
    pub without_stack: u64,
}

impl OffCpu {
    /// Notes the time of any record (to close threads still blocked at the end).
    pub fn saw_time(&mut self, time: u64) {
        self.last_time = self.last_time.max(time);
    }

    /// Keeps a context-switch sample's stack (leaf first) for the switch-out record after it.
    pub fn stash_sample(&mut self, tid: u32, time: u64, frames: &[FrameKey]) {
        let (sampled, stack) = self.stash.entry(tid).or_default();
        *sampled = time;
        stack.clear();
        stack.extend_from_slice(frames);
    }

    /// The stack of the context-switch sample taken for `tid`'s switch-out at `time` (at most
    /// 1 ms before it), or nothing.
    pub fn stashed_sample(&self, tid: u32, time: u64) -> &[FrameKey] {
        match self.stash.get(&tid) {
            Some((sampled, frames)) if *sampled <= time && time - *sampled <= STASH_MAX_NS => {
                frames
            }
            _ => &[],
        }
    }

    /// A thread exited: its last switch-out is no wait.
    pub fn on_exit(&mut self, tid: u32) {
        self.pending.remove(&tid);
        self.stash.remove(&tid);
        self.exited.insert(tid);
    }

    /// A thread was created (a tid may be reused).
    pub fn on_fork(&mut self, tid: u32) {
        self.exited.remove(&tid);
    }

    /// Applies a switch record; `stack` holds the switched-out thread's frames (leaf first) when
    /// they could be read. Returns the interval a switch-in closes.
    pub fn on_switch(&mut self, switch: &Switch<'_>, stack: &[FrameKey]) -> Option<Interval> {
        self.saw_time(switch.time);
        if switch.tid == 0 || self.exited.contains(&switch.tid) {
            return None;
        }
        if switch.out {
            self.pending.insert(
                switch.tid,
                Pending {
                    pid: switch.pid,
                    time: switch.time,
                    preempt: switch.preempt,
                    frames: stack.into(),
                },
            );
            return None;
        }
        let pending = self.pending.remove(&switch.tid)?;
        Some(self.close(switch.tid, pending, switch.time))
    }

    fn close(&mut self, tid: u32, pending: Pending, end: u64) -> Interval {
        if !pending.preempt {
            self.intervals += 1;
            self.without_stack += u64::from(pending.frames.is_empty());
        }
        let mut frames = Vec::with_capacity(pending.frames.len() + 1);
        frames.push(if pending.preempt {
            FrameKey::Preempted
        } else {
            FrameKey::OffCpu
        });
        frames.extend_from_slice(&pending.frames);
        Interval {
            pid: pending.pid,
            tid,
            duration: end.saturating_sub(pending.time),
            frames,
            time: end,
        }
    }

    /// Closes every thread still switched out at the last time seen.
    pub fn finish(&mut self) -> Vec<Interval> {
        let end = self.last_time;
        let mut pending: Vec<(u32, Pending)> = self.pending.drain().collect();
        pending.sort_by_key(|(tid, p)| (p.time, *tid));
        pending
            .into_iter()
            .map(|(tid, p)| self.close(tid, p, end))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn switch(tid: u32, time: u64, out: bool, preempt: bool) -> Switch<'static> {
        Switch {
            pid: 1,
            tid,
            time,
            out,
            preempt,
            blocked: None,
            sample: None,
        }
    }

    #[test]
    fn intervals_from_out_to_in_with_markers() {
        let mut off = OffCpu::default();
        let stack = [FrameKey::Unknown];
        assert!(off
            .on_switch(&switch(5, 100, true, false), &stack)
            .is_none());
        let i = off.on_switch(&switch(5, 350, false, false), &[]).unwrap();
        assert_eq!((i.tid, i.duration), (5, 250));
        assert_eq!(i.frames, vec![FrameKey::OffCpu, FrameKey::Unknown]);
        off.on_switch(&switch(5, 400, true, true), &[]);
        let i = off.on_switch(&switch(5, 410, false, false), &[]).unwrap();
        assert_eq!(i.frames, vec![FrameKey::Preempted]);
        // A switch-in without a switch-out (recording started while running) closes nothing.
        assert!(off.on_switch(&switch(6, 420, false, false), &[]).is_none());
    }

    #[test]
    fn each_thread_keeps_its_switch_sample_until_its_switch_out() {
        let mut off = OffCpu::default();
        off.stash_sample(1, 100, &[FrameKey::Unknown]);
        // Another CPU's thread switches out in between.
        off.stash_sample(2, 150, &[FrameKey::Truncated]);
        assert_eq!(off.stashed_sample(1, 200), &[FrameKey::Unknown]);
        assert_eq!(off.stashed_sample(2, 200), &[FrameKey::Truncated]);
        // Too old, or taken after the switch-out: not this switch's.
        assert!(off.stashed_sample(1, 100 + STASH_MAX_NS + 1).is_empty());
        assert!(off.stashed_sample(2, 120).is_empty());
        off.on_exit(1);
        assert!(off.stashed_sample(1, 200).is_empty());
    }

    #[test]
    fn blocked_at_end_closed_at_last_time_and_exits_ignored() {
        let mut off = OffCpu::default();
        off.on_switch(&switch(7, 1000, true, false), &[]);
        off.on_exit(8);
        off.on_switch(&switch(8, 1100, true, false), &[]);
        off.saw_time(5000);
        let closed = off.finish();
        assert_eq!(closed.len(), 1);
        assert_eq!((closed[0].tid, closed[0].duration), (7, 4000));
    }
}
