//! A recording session: the ring buffers, polling them, and merging their records by time.
//!
//! Each round merges the rings by timestamp (each ring, written by one CPU, is in time order) and
//! delivers the records older than the round's start minus a small slack, parsed in place in the
//! ring; younger ones stay in their ring for the next round, since another CPU may still be
//! writing records of that time. The final round delivers everything. Nothing is copied but the
//! rare record that wraps around a ring's end, so a 32 KiB stack sample costs no memcpy and the
//! steady state allocates nothing.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::os::fd::{AsRawFd, OwnedFd};

use super::ring::Ring;
use super::sys;
use crate::perf::{
    parse_record, record_kind as kind, record_time, BlockedStack, Record, SampleFormat,
};

/// How far behind the round's start records must be to be delivered (nanoseconds).
const ORDER_SLACK_NS: u64 = 2_000_000;

/// Records delivered between two reads of the switch rings.
const SWITCH_READ_EVERY: u32 = 16;

/// Poll timeout while some ring's fd is hung up (milliseconds).
const HUNG_UP_POLL_MS: i32 = 10;

/// Counters of what went through a session.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counts {
    pub samples: u64,
    pub lost: u64,
    pub throttled: u64,
    pub malformed: u64,
}

/// Ring buffers (one per CPU) plus the fds that write into them.
pub struct Session {
    rings: Vec<Ring>,
    followers: Vec<OwnedFd>,
    format: SampleFormat,
    /// The rings' next record times during a round (kept to reuse its allocation).
    merge: BinaryHeap<Reverse<(u64, usize)>>,
    pollfds: Vec<libc::pollfd>,
    /// Rings whose fd reported POLLHUP (its task exited): polling them would return at once, so
    /// they are only read, not polled.
    hung_up: Vec<bool>,
    /// Rings of context-switch records (off-CPU): read whole at every round, ahead of delivery.
    switch_ring: Vec<bool>,
    /// Switch records read ahead, in time order, until their turn comes.
    pending: VecDeque<PendingSwitch>,
    /// Read blocked threads' stacks (at most this many bytes) at their switch-out.
    capture_stacks: Option<usize>,
    /// A context-switch sample waiting for the switch-out record that follows it.
    held_sample: Option<PendingSwitch>,
    pub counts: Counts,
}

/// A switch record read ahead of its delivery, with the blocked thread's state read at once.
struct PendingSwitch {
    time: u64,
    /// The record, header included.
    bytes: Vec<u8>,
    /// Not yet looked at for a stack capture.
    fresh: bool,
    /// (pc, sp, stack from sp up).
    blocked: Option<(u64, u64, Vec<u8>)>,
}

impl Session {
    pub fn new(format: SampleFormat) -> Self {
        Session {
            rings: Vec::new(),
            followers: Vec::new(),
            format,
            merge: BinaryHeap::new(),
            pollfds: Vec::new(),
            hung_up: Vec::new(),
            switch_ring: Vec::new(),
            pending: VecDeque::new(),
            capture_stacks: None,
            held_sample: None,
            counts: Counts::default(),
        }
    }

    /// Adds a mapped ring; returns its index.
    pub fn add_ring(&mut self, ring: Ring) -> usize {
        self.rings.push(ring);
        self.hung_up.push(false);
        self.switch_ring.push(false);
        self.rings.len() - 1
    }

    /// Adds a ring of context-switch records; with `capture_stacks`, each switch-out's thread
    /// gets its stack read (at most that many bytes) as soon as the record is seen.
    pub fn add_switch_ring(&mut self, ring: Ring, capture_stacks: Option<usize>) {
        self.add_ring(ring);
        if let Some(last) = self.switch_ring.last_mut() {
            *last = true;
        }
        self.capture_stacks = capture_stacks;
    }

    /// Whether ring `index` carries context-switch records.
    fn is_switch(&self, index: usize) -> bool {
        self.switch_ring.get(index).copied().unwrap_or(false)
    }

    /// Redirects `fd`'s records into ring `index` and keeps `fd` open.
    pub fn add_follower(&mut self, fd: OwnedFd, index: usize) -> std::io::Result<()> {
        if let Some(ring) = self.rings.get(index) {
            sys::set_output(&fd, ring.fd())?;
        }
        self.followers.push(fd);
        Ok(())
    }

    pub fn rings(&self) -> &[Ring] {
        &self.rings
    }

    fn all_fds(&self) -> impl Iterator<Item = &OwnedFd> {
        self.rings.iter().map(Ring::fd).chain(self.followers.iter())
    }

    /// Enables every event (attach mode; launch mode uses enable_on_exec).
    pub fn enable_all(&self) -> std::io::Result<()> {
        self.all_fds().try_for_each(sys::enable)
    }

    /// Disables every event, best effort.
    pub fn disable_all(&self) {
        for fd in self.all_fds() {
            let _ = sys::disable(fd);
        }
    }

    /// Waits until a ring has data or `timeout_ms` passed (or a signal arrived). While some rings
    /// are hung up, waits at most `HUNG_UP_POLL_MS` so their data is still read in time.
    pub fn wait(&mut self, timeout_ms: i32) {
        self.pollfds.clear();
        let live = self
            .rings
            .iter()
            .zip(&self.hung_up)
            .filter(|(_, hup)| !**hup);
        self.pollfds.extend(live.map(|(ring, _)| libc::pollfd {
            fd: ring.fd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }));
        let timeout = if self.hung_up.contains(&true) {
            timeout_ms.min(HUNG_UP_POLL_MS)
        } else {
            timeout_ms
        };
        // SAFETY: `pollfds` is a valid array of `len` pollfd structs owned by us (poll with no
        // fds just sleeps).
        unsafe {
            libc::poll(
                self.pollfds.as_mut_ptr(),
                self.pollfds.len() as libc::nfds_t,
                timeout,
            );
        }
        for pollfd in &self.pollfds {
            if pollfd.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
                let index = self
                    .rings
                    .iter()
                    .position(|r| r.fd().as_raw_fd() == pollfd.fd);
                if let Some(hup) = index.and_then(|i| self.hung_up.get_mut(i)) {
                    *hup = true;
                }
            }
        }
    }

    /// One round: delivers, in time order, what is old enough.
    pub fn round(&mut self, on_record: &mut dyn FnMut(&SampleFormat, Record<'_>)) {
        self.read_switches();
        let cutoff = sys::monotonic_ns().saturating_sub(ORDER_SLACK_NS);
        self.deliver(cutoff, on_record);
    }

    /// The last round: delivers every remaining record.
    pub fn finish(&mut self, on_record: &mut dyn FnMut(&SampleFormat, Record<'_>)) {
        self.read_switches();
        self.deliver(u64::MAX, on_record);
    }

    fn deliver(&mut self, cutoff: u64, on_record: &mut dyn FnMut(&SampleFormat, Record<'_>)) {
        let format = self.format;
        let time_of = move |kind: u32, body: &[u8]| record_time(&format, kind, body);
        // Rings by the time of their next record, oldest first: a heap, so that a machine with
        // many CPUs does not scan every ring for every record.
        let mut next = std::mem::take(&mut self.merge);
        next.clear();
        for (i, ring) in self.rings.iter_mut().enumerate() {
            if self.switch_ring[i] {
                continue;
            }
            ring.refresh();
            if let Some(time) = ring.next_time(&time_of).filter(|&t| t <= cutoff) {
                next.push(Reverse((time, i)));
            }
        }
        let mut delivered = 0u32;
        while let Some(Reverse((time, i))) = next.pop() {
            // Delivering (unwinding) a batch takes a while: meanwhile threads block and resume,
            // so look at the switch rings between records too.
            delivered += 1;
            if delivered % SWITCH_READ_EVERY == 0 {
                self.read_switches();
            }
            deliver_pending(
                &format,
                &mut self.pending,
                &mut self.held_sample,
                time,
                on_record,
            );
            let ring = &mut self.rings[i];
            let bytes = ring.record();
            let kind = u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
            let misc = u16::from_ne_bytes([bytes[4], bytes[5]]);
            match parse_record(&self.format, kind, misc, &bytes[8..]) {
                Ok(record) => {
                    count(&mut self.counts, &record);
                    on_record(&self.format, record);
                }
                Err(_) => self.counts.malformed += 1,
            }
            ring.consume();
            if let Some(time) = ring.next_time(&time_of).filter(|&t| t <= cutoff) {
                next.push(Reverse((time, i)));
            }
        }
        deliver_pending(
            &format,
            &mut self.pending,
            &mut self.held_sample,
            cutoff,
            on_record,
        );
        self.merge = next;
    }

    /// Reads every switch ring whole into `pending`, and the stacks of threads that switched
    /// out and have not switched in since (the reads cannot wait for the records' turn: the
    /// thread may run again any moment).
    fn read_switches(&mut self) {
        let format = self.format;
        let time_of = move |kind: u32, body: &[u8]| record_time(&format, kind, body);
        let before = self.pending.len();
        for i in 0..self.rings.len() {
            if !self.is_switch(i) {
                continue;
            }
            let ring = &mut self.rings[i];
            ring.refresh();
            while let Some(time) = ring.next_time(&time_of) {
                self.pending.push_back(PendingSwitch {
                    time,
                    bytes: ring.record().to_vec(),
                    fresh: true,
                    blocked: None,
                });
                ring.consume();
            }
        }
        if self.pending.len() == before {
            return;
        }
        // Each ring is in time order and older entries were delivered in order: a stable sort
        // of nearly sorted data.
        self.pending
            .make_contiguous()
            .sort_by_key(|pending| pending.time);
        if let Some(max) = self.capture_stacks {
            capture_blocked(&format, &mut self.pending, max);
        }
    }
}

/// Reads the stacks of the fresh switch-outs in `pending` whose thread has no later switch-in.
fn capture_blocked(format: &SampleFormat, pending: &mut VecDeque<PendingSwitch>, max: usize) {
    let mut resumed: Vec<u32> = Vec::new();
    for entry in pending.iter_mut().rev() {
        let Some(switch) = parse_switch(format, &entry.bytes) else {
            continue;
        };
        if !switch.out {
            resumed.push(switch.tid);
            continue;
        }
        // A preempted thread is runnable: /proc shows no stack for it.
        if !std::mem::take(&mut entry.fresh) || switch.preempt || resumed.contains(&switch.tid) {
            continue;
        }
        entry.blocked = super::blocked::capture(switch.pid, switch.tid, max);
        // An earlier switch-out of the same thread resumed before this one.
        resumed.push(switch.tid);
    }
}

fn parse_switch<'a>(format: &SampleFormat, bytes: &'a [u8]) -> Option<crate::perf::Switch<'a>> {
    let kind = u32::from_ne_bytes(bytes.get(0..4)?.try_into().ok()?);
    let misc = u16::from_ne_bytes(bytes.get(4..6)?.try_into().ok()?);
    match parse_record(format, kind, misc, bytes.get(8..)?) {
        Ok(Record::Switch(switch)) => Some(switch),
        _ => None,
    }
}

/// Delivers the pending switch records up to `until`, each switch-out with its blocked stack if
/// one was read, or the context-switch sample taken just before it (`held`).
fn deliver_pending(
    format: &SampleFormat,
    pending: &mut VecDeque<PendingSwitch>,
    held: &mut Option<PendingSwitch>,
    until: u64,
    on_record: &mut dyn FnMut(&SampleFormat, Record<'_>),
) {
    while pending.front().is_some_and(|p| p.time <= until) {
        let Some(entry) = pending.pop_front() else {
            break;
        };
        if entry.bytes.get(0..4) == Some(&kind::SAMPLE.to_ne_bytes()) {
            *held = Some(entry);
            continue;
        }
        let Some(mut switch) = parse_switch(format, &entry.bytes) else {
            continue;
        };
        switch.blocked = entry.blocked.as_ref().map(|(ip, sp, stack)| BlockedStack {
            ip: *ip,
            sp: *sp,
            stack,
        });
        let sample_entry = held.take();
        if switch.out {
            switch.sample = sample_entry
                .as_ref()
                .and_then(|e| parse_sample(format, &e.bytes))
                .filter(|s| s.tid == switch.tid);
        }
        on_record(format, Record::Switch(switch));
    }
}

fn parse_sample<'a>(format: &SampleFormat, bytes: &'a [u8]) -> Option<crate::perf::Sample<'a>> {
    let misc = u16::from_ne_bytes(bytes.get(4..6)?.try_into().ok()?);
    match parse_record(format, kind::SAMPLE, misc, bytes.get(8..)?) {
        Ok(Record::Sample(sample)) => Some(sample),
        _ => None,
    }
}

fn count(counts: &mut Counts, record: &Record<'_>) {
    match record {
        Record::Sample(_) => counts.samples += 1,
        Record::Lost { lost, .. } | Record::LostSamples { lost } => counts.lost += lost,
        Record::Throttle { .. } => counts.throttled += 1,
        _ => {}
    }
}
