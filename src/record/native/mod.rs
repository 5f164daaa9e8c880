//! The built-in Linux sampler: perf_event_open, ring buffers, launch and attach.
//!
//! [`record`] opens one sampling event (`cpu-clock` unless [`NativeOptions::event`] says
//! otherwise) per online CPU for the target (inherited by every thread and child it creates),
//! maps one ring buffer per CPU, and delivers every record, merged across CPUs in timestamp
//! order, to a callback. No `perf` binary and no perf.data file are involved.
//!
//! The stream a callback sees:
//! - Attach mode starts with synthesized COMM (one per thread) and MMAP2 (one per executable
//!   mapping) records from `/proc`, before any sample; so does system-wide mode, for every
//!   process running when it starts.
//! - Launch mode starts at the exec of the program: its COMM (with `exec` set) and the MMAP2 of the
//!   executable and the dynamic loader come from the kernel.
//! - Records are delivered in non-decreasing time order (CLOCK_MONOTONIC nanoseconds): each poll
//!   round sorts everything read from all CPUs and holds back records younger than 2 ms before
//!   the round's start, so a CPU that is still writing cannot deliver an older record later.
//! - Samples carry the kernel's callchain (kernel part only when [`RecordSummary::kernel_frames`]),
//!   cut at `perf_event_max_stack` (127 by default) entries; with [`CallGraph::Dwarf`] they also
//!   carry the user registers (`perf::regs_x86_64::UNWIND_MASK` or `perf::regs_aarch64::UNWIND_MASK`)
//!   and the user stack copy.
//! - Samples carry their period (nanoseconds for the clocks, events otherwise): a software count
//!   event at a fixed period records none, and its samples are given that period.
//! - LOST and THROTTLE records are delivered and also counted in [`RecordSummary`].

mod attach;
mod blocked;
mod launch;
mod perf_event;
mod ring;
mod session;
mod sys;
mod system;

use std::collections::HashSet;
use std::ffi::OsString;
use std::io;
use std::process::ExitStatus;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::perf::{Record, SampleFormat};
use crate::record::stop::{StopRequests, Stopper};
use perf_event::{EventOpener, EventSettings, SwitchStacks};
use ring::Ring;
use session::Session;

/// What to profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// Start `program` with `args` (found in `$PATH` like `execvp`) and follow all its threads and
    /// children until it exits.
    Launch {
        program: OsString,
        args: Vec<OsString>,
    },
    /// Attach to running processes (all their threads, and threads they create) until they all
    /// exit or a stop is requested; they keep running afterwards.
    Attach { pids: Vec<u32> },
    /// Every process on every CPU (the idle task's samples are delivered too, with pid 0),
    /// until a stop is requested ([`NativeOptions::duration`], a signal, the stop flag), or
    /// while `command` (program, arguments) runs when given: it is started once recording has
    /// begun, and a stop request stops it as in [`Target::Launch`]. Needs root, CAP_PERFMON or
    /// `perf_event_paranoid` <= 0.
    SystemWide {
        command: Option<(OsString, Vec<OsString>)>,
    },
}

/// How the kernel collects stacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallGraph {
    /// Kernel-walked frame-pointer callchains only.
    FramePointer,
    /// Callchains plus a copy of the user stack (at most [`crate::options::MAX_STACK_SIZE`] bytes)
    /// and the registers needed to unwind it with DWARF CFI.
    Dwarf { stack_size: u32 },
}

/// Options of [`record`]. Build with [`NativeOptions::new`], then set fields.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct NativeOptions {
    /// What to profile.
    pub target: Target,
    /// Samples per second per CPU, unless `period` is set. Default: 997.
    pub frequency: u32,
    /// The sampled event. Default: cpu-clock.
    pub event: crate::event::Event,
    /// Sample every this many events instead of at `frequency`. Default: none.
    pub period: Option<u64>,
    /// Default: `CallGraph::Dwarf` with [`crate::options::DEFAULT_STACK_SIZE`] (48 KiB), the
    /// default of the `flamegraph` command's `--stack-size`.
    pub call_graph: CallGraph,
    /// Print what was chosen (event, buffer sizes) to stderr. Default: false.
    pub verbose: bool,
    /// Stop when this becomes true, like a SIGINT sent to us (the program gets a SIGINT, then
    /// escalation as for signals). Default: none.
    pub stop: Option<Arc<AtomicBool>>,
    /// Catch SIGINT, SIGTERM and SIGHUP while recording and treat them as stop requests (those
    /// ignored at the start stay ignored; default actions come back afterwards). A launched
    /// program gets the signal from us, in its process and its process group if that is not
    /// ours, unless the terminal already sent it there; a second signal, or a program still
    /// running 3 s after the last one, escalates to SIGTERM and then SIGKILL. Only one `record`
    /// call at a time should use this. Default: true.
    pub handle_signals: bool,
    /// Data pages per ring buffer (a power of two), halved while locked-memory limits refuse it.
    /// Default: none, meaning 128 for frame pointers and 2048 for DWARF.
    pub buffer_pages: Option<usize>,
    /// Give a launched program our stderr as its stdout (for `-o -`). Default: false.
    pub stdout_to_stderr: bool,
    /// Launch mode: run the program as this user (uid, gid), with the user's groups, while the
    /// recorder keeps its own privileges (the recorder runs under sudo for `--root`).
    /// Default: none, the program runs as we do.
    pub run_as: Option<(u32, u32)>,
    /// Also record context switches, delivered as [`Record::Switch`]; each switch-out carries
    /// the blocked thread's user stack read from `/proc` and `process_vm_readv` when it was
    /// read from the ring (at most the DWARF stack size), or the context-switch sample taken
    /// with it where the kernel allows those. Attach mode starts with a synthesized switch-out
    /// for each thread found waiting in a system call. Default: false.
    pub off_cpu: bool,
    /// Stop after this long, as a Ctrl-C would (`--duration`): a launched program gets a
    /// SIGINT (then escalation), attached processes keep running. Default: none.
    pub duration: Option<std::time::Duration>,
}

impl NativeOptions {
    /// At `frequency`, or every `period` events.
    fn sampling(&self) -> crate::event::Sampling {
        match self.period {
            Some(period) => crate::event::Sampling::Period(period),
            None => crate::event::Sampling::Frequency(self.frequency),
        }
    }

    /// Options with every default for `target`.
    pub fn new(target: Target) -> Self {
        NativeOptions {
            target,
            frequency: 997,
            event: crate::event::Event::CpuClock,
            period: None,
            call_graph: CallGraph::Dwarf {
                stack_size: crate::options::DEFAULT_STACK_SIZE,
            },
            verbose: false,
            stop: None,
            handle_signals: true,
            buffer_pages: None,
            stdout_to_stderr: false,
            run_as: None,
            off_cpu: false,
            duration: None,
        }
    }
}

/// What happened during [`record`].
#[derive(Clone, Debug)]
pub struct RecordSummary {
    /// Samples delivered.
    pub samples: u64,
    /// Records or samples the kernel dropped (full buffers), from LOST and LOST_SAMPLES records.
    pub lost: u64,
    /// THROTTLE records: the kernel lowered the rate because sampling took too long.
    pub throttled: u64,
    /// Records that could not be parsed (skipped).
    pub malformed: u64,
    /// The sampled event's name (`cpu-clock`, `page-faults`, ...).
    pub event: String,
    /// Whether kernel frames are included (false when `perf_event_paranoid` forbids them).
    pub kernel_frames: bool,
    /// The launched program's exit status (launch mode only).
    pub exit_status: Option<ExitStatus>,
    /// True if a stop was requested (Ctrl-C, SIGTERM, SIGHUP, the `stop` flag or the duration).
    pub interrupted: bool,
    /// True if [`NativeOptions::duration`] ran out (and stopped the recording).
    pub duration_elapsed: bool,
    /// With [`NativeOptions::off_cpu`]: where the off-CPU stacks came from.
    pub off_cpu_stacks: Option<OffCpuStacks>,
}

/// Where off-CPU stacks come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffCpuStacks {
    /// `context-switches` samples with kernel access (root, CAP_PERFMON, paranoid <= 1).
    ContextSwitchSamples,
    /// `/proc/PID/task/TID/syscall` and `process_vm_readv` at each switch-out (no kernel access).
    ProcReads,
}

impl From<SwitchStacks> for OffCpuStacks {
    fn from(stacks: SwitchStacks) -> Self {
        match stacks {
            SwitchStacks::Samples => OffCpuStacks::ContextSwitchSamples,
            SwitchStacks::Records => OffCpuStacks::ProcReads,
        }
    }
}

/// Errors of the native recorder.
#[derive(Debug, thiserror::Error)]
pub enum NativeError {
    #[error("sampling frequency must be at least 1 Hz")]
    InvalidFrequency,
    #[error("the sampling period must be at least 1 event")]
    InvalidPeriod,
    #[error(
        "--off-cpu weighs waits in time, and -e {0} counts events: one graph has one unit; use \
         cpu-clock or task-clock"
    )]
    OffCpuEvent(String),
    #[error(
        "sampling frequency {requested} Hz is above the kernel limit of {max} Hz \
         (/proc/sys/kernel/perf_event_max_sample_rate): use -F {max} or lower, or raise the limit \
         with `sudo sysctl kernel.perf_event_max_sample_rate={requested}`"
    )]
    FrequencyTooHigh { requested: u32, max: u64 },
    #[error("DWARF stack size {0} is out of range: use 8 to 65528 bytes")]
    InvalidStackSize(u32),
    #[error(
        "permission denied to use perf events (kernel.perf_event_paranoid is {paranoid}): allow \
         profiling with `sudo sysctl kernel.perf_event_paranoid=1`, or record as root (--root)"
    )]
    PermissionDenied { paranoid: String },
    #[error("-e {event}: {reason}; sample -e cpu-clock instead")]
    NoHardwareCounter { event: String, reason: String },
    #[error(
        "-e {event} counts in the kernel, which kernel.perf_event_paranoid {paranoid} hides from \
         this user, so it would record nothing: allow it with `sudo sysctl \
         kernel.perf_event_paranoid=1` or record as root (--root), or sample -e cpu-clock"
    )]
    KernelOnlyEvent { event: String, paranoid: String },
    #[error("cannot open perf event {event} for pid {pid} on cpu {cpu}: {source}")]
    Open {
        event: String,
        pid: i32,
        cpu: i32,
        source: io::Error,
    },
    #[error(
        "--off-cpu: the kernel refuses context-switch records here: allow them with \
         `sudo sysctl kernel.perf_event_paranoid=1`, or record as root (--root)"
    )]
    OffCpuDenied,
    #[error(
        "--off-cpu -p {pid}: this user may neither sample context switches \
         (kernel.perf_event_paranoid) nor read the waiting threads' stacks of pid {pid} (that \
         needs ptrace access: same user, dumpable, kernel.yama.ptrace_scope 0): record as root \
         (--root), or allow it with `sudo sysctl kernel.perf_event_paranoid=1`"
    )]
    OffCpuAttachDenied { pid: u32 },
    #[error("cannot map a perf ring buffer: {0}")]
    Mmap(io::Error),
    #[error("cannot run {program}: {source}")]
    Exec { program: String, source: io::Error },
    #[error(
        "-a/--all-cpus records every process, which needs root, CAP_PERFMON or \
         kernel.perf_event_paranoid <= 0 (it is {paranoid}): run flamegraph as root (sudo), or \
         allow it with `sudo sysctl kernel.perf_event_paranoid=0`"
    )]
    SystemWideDenied { paranoid: String },
    #[error("no process to attach to")]
    NoProcess,
    #[error(
        "cannot attach to pid {pid}: {problem}, and only root may profile it: add --root, \
         or run flamegraph with sudo"
    )]
    AttachDenied {
        pid: u32,
        problem: attach::AccessProblem,
    },
    #[error(
        "attaching to {threads} threads on {cpus} CPUs needs about {needed} open files, more than \
         the limit of {limit}: raise it with `ulimit -n {needed}` (above the hard limit as root, \
         or in /etc/security/limits.conf) before running flamegraph"
    )]
    TooManyOpenFiles {
        threads: usize,
        cpus: usize,
        needed: u64,
        limit: u64,
    },
    #[error("cannot attach to pid {pid}: {source}")]
    Attach { pid: u32, source: io::Error },
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: io::Error,
    },
}

/// Records `options.target`, calling `on_record` for every record in time order, and returns a
/// summary once the target exited or a stop was requested (remaining records are delivered first).
///
/// A launched program is forked from the calling thread and gets SIGKILL when that thread exits
/// (PR_SET_PDEATHSIG), so it never outlives a killed profiler: call this from a thread that lives
/// as long as the recording (the binaries use the main thread).
pub fn record(
    options: &NativeOptions,
    on_record: &mut dyn FnMut(&SampleFormat, Record<'_>),
) -> Result<RecordSummary, NativeError> {
    perf_event::validate(options.sampling(), options.call_graph)?;
    if options.off_cpu && !options.event.is_time() {
        return Err(NativeError::OffCpuEvent(options.event.name()));
    }
    let cpus = sys::online_cpus().map_err(|source| NativeError::Io {
        what: "cannot read the online CPUs",
        source,
    })?;
    let mut stop = StopRequests::new(options.handle_signals, options.stop.clone())
        .map_err(|source| NativeError::Io {
            what: "cannot install signal handlers",
            source,
        })?
        .with_duration(options.duration);
    let recorder = Recorder {
        options,
        cpus,
        format: sample_format_of(options),
    };
    // Samples without a period field stand for the fixed period: give it to them.
    let fixed = perf_event::fixed_period(options.event, options.sampling());
    let on_record = &mut |format: &SampleFormat, mut record: Record<'_>| {
        if let (Record::Sample(sample), Some(period)) = (&mut record, fixed) {
            sample.period = period;
        }
        on_record(format, record)
    };
    let summary = match &options.target {
        Target::Launch { program, args } => recorder.launch(program, args, &mut stop, on_record),
        Target::Attach { pids } => recorder.attach(pids, &mut stop, on_record),
        Target::SystemWide { command } => recorder.system_wide(command, &mut stop, on_record),
    }?;
    Ok(RecordSummary {
        duration_elapsed: stop.duration_elapsed(),
        ..summary
    })
}

/// The parse format of the sampling events of `options`.
fn sample_format_of(options: &NativeOptions) -> SampleFormat {
    let period = perf_event::fixed_period(options.event, options.sampling()).is_none();
    perf_event::sample_format(options.call_graph, period)
}

/// The largest power of two not above `n` (`n` >= 1).
fn prev_power_of_two(n: usize) -> usize {
    1 << (usize::BITS - 1 - n.max(1).leading_zeros())
}

/// Shared state of one [`record`] call.
struct Recorder<'o> {
    options: &'o NativeOptions,
    cpus: Vec<u32>,
    format: SampleFormat,
}

/// Data pages of each ring of context-switch records (tens of bytes each, read at every wakeup).
const SWITCH_RING_PAGES: usize = 8;

/// Data pages of each ring of context-switch samples (each with its stack copy; root only, so
/// not limited by the locked-memory budget).
const SWITCH_SAMPLE_RING_PAGES: usize = 512;

/// How long one poll waits before checking stop requests and the target.
const POLL_MS: i32 = 100;

/// How long a launched program may take to stop after a signal before the next, stronger one.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

impl Recorder<'_> {
    fn pages(&self) -> (usize, usize) {
        let (default, min) = match self.options.call_graph {
            CallGraph::FramePointer => (128, 8),
            // Stack copies need room: 16 MiB in all, shared by the CPUs' rings, between 512 KiB
            // and 8 MiB each (8 MiB holds ~170 ms of 48 KiB samples at 997 Hz: 64 busy threads
            // on 2 CPUs lost samples in 2 of 4 six-second runs with 4 MiB, none with 8). Ring
            // pages are not in the profiler's RSS (the kernel's pages, mapped shared), but an
            // unprivileged user's locked-memory budget limits them (below).
            CallGraph::Dwarf { .. } => {
                let per_cpu = (4096 / self.cpus.len().max(1)).clamp(128, 2048);
                (prev_power_of_two(per_cpu), 32)
            }
        };
        let mut pages = self.options.buffer_pages.unwrap_or(default).max(1);
        // Unprivileged users may lock `perf_event_mlock_kb` per CPU plus RLIMIT_MEMLOCK for perf
        // buffers; ask for no more than that up front, so the wakeup watermark (set at open time, a quarter of
        // the buffer) matches the buffer we actually get and samples are drained in time.
        if let Some(mut budget) = sys::unprivileged_ring_budget(self.cpus.len()) {
            if self.options.off_cpu {
                budget = budget.saturating_sub((SWITCH_RING_PAGES + 1) * sys::page_size());
            }
            let fit = (budget / sys::page_size()).saturating_sub(1).max(1);
            pages = pages.min(prev_power_of_two(fit));
        }
        (
            pages.next_power_of_two(),
            min.min(pages.next_power_of_two()),
        )
    }

    fn settings(&self, enable_on_exec: bool) -> EventSettings {
        let (pages, _) = self.pages();
        EventSettings {
            event: self.options.event,
            sampling: self.options.sampling(),
            call_graph: self.options.call_graph,
            inherit: true,
            enable_on_exec,
            wakeup_bytes: u32::try_from(pages * sys::page_size() / 4).unwrap_or(u32::MAX),
        }
    }

    fn map(&self, fd: std::os::fd::OwnedFd) -> Result<Ring, NativeError> {
        let (pages, min) = self.pages();
        let ring = Ring::map(fd, pages, min).map_err(NativeError::Mmap)?;
        if self.options.verbose {
            eprintln!("flamegraph: ring buffer of {} KiB", ring.data_size() / 1024);
        }
        Ok(ring)
    }

    fn summary(&self, session: &Session, opener: &EventOpener) -> RecordSummary {
        let c = session.counts;
        RecordSummary {
            samples: c.samples,
            lost: c.lost,
            throttled: c.throttled,
            malformed: c.malformed,
            event: opener.event_name(),
            kernel_frames: opener.kernel_frames(),
            exit_status: None,
            interrupted: false,
            duration_elapsed: false,
            off_cpu_stacks: None,
        }
    }

    fn report_choice(&self, opener: &EventOpener) {
        if self.options.verbose {
            let rate = match self.options.sampling() {
                crate::event::Sampling::Frequency(hz) => format!("{hz} Hz"),
                crate::event::Sampling::Period(n) => format!("every {n} events"),
            };
            eprintln!(
                "flamegraph: sampling {} at {rate} on {} CPUs, kernel frames {}",
                opener.event_name(),
                self.cpus.len(),
                if opener.kernel_frames() {
                    "included"
                } else {
                    "excluded"
                }
            );
        }
    }

    /// Launch mode: fork, open the per-CPU events on the waiting child, release it, record.
    fn launch(
        &self,
        program: &std::ffi::OsStr,
        args: &[OsString],
        stop: &mut StopRequests,
        on_record: &mut dyn FnMut(&SampleFormat, Record<'_>),
    ) -> Result<RecordSummary, NativeError> {
        let child = self.spawn(program, args)?;
        let mut opener = EventOpener::new(self.settings(true));
        let mut session = Session::new(self.format);
        for &cpu in &self.cpus {
            let ring = opener
                .open(child.pid, cpu as i32)
                .and_then(|fd| self.map(fd));
            match ring {
                Ok(ring) => session.add_ring(ring),
                Err(err) => {
                    child.abort();
                    return Err(err);
                }
            };
        }
        let mut off_cpu = None;
        if self.options.off_cpu {
            match self.open_switches(child.pid, &mut session) {
                Ok(stacks) => off_cpu = Some(stacks),
                Err(err) => {
                    child.abort();
                    return Err(err);
                }
            }
        }
        self.report_choice(&opener);
        let pid = child.pid;
        child.release()?;
        let (status, interrupted) = self.launch_loop(pid, &mut session, stop, on_record)?;
        session.finish(on_record);
        Ok(RecordSummary {
            exit_status: Some(status),
            interrupted,
            off_cpu_stacks: off_cpu.map(OffCpuStacks::from),
            ..self.summary(&session, &opener)
        })
    }

    /// Opens and maps one context-switch ring per CPU for the launched `pid`: context-switch
    /// samples where the kernel allows them, else switch records whose threads' stacks are read
    /// from `/proc` at each switch-out.
    fn open_switches(&self, pid: i32, session: &mut Session) -> Result<SwitchStacks, NativeError> {
        let settings = self.settings(true);
        let mut stacks = SwitchStacks::Samples;
        for (i, &cpu) in self.cpus.iter().enumerate() {
            let mut opened = perf_event::open_switch_event(&settings, stacks, pid, cpu as i32);
            if i == 0 && opened.as_ref().is_err_and(is_permission) {
                stacks = SwitchStacks::Records;
                opened = perf_event::open_switch_event(&settings, stacks, pid, cpu as i32);
            }
            let fd = opened.map_err(|err| match err {
                err if is_permission(&err) => NativeError::OffCpuDenied,
                err => err,
            })?;
            let (pages, capture) = match stacks {
                // Every switch-out carries a stack copy: room for a few hundred.
                SwitchStacks::Samples => (SWITCH_SAMPLE_RING_PAGES, None),
                SwitchStacks::Records => (SWITCH_RING_PAGES, Some(self.blocked_stack_size())),
            };
            let ring = Ring::map(fd, pages, 1).map_err(NativeError::Mmap)?;
            session.add_switch_ring(ring, capture);
        }
        Ok(stacks)
    }

    /// Bytes of a blocked thread's stack read at its switch-out: the DWARF stack size.
    fn blocked_stack_size(&self) -> usize {
        match self.options.call_graph {
            CallGraph::Dwarf { stack_size } => stack_size as usize,
            CallGraph::FramePointer => 32 * 1024,
        }
    }

    fn launch_loop(
        &self,
        pid: i32,
        session: &mut Session,
        stop: &mut StopRequests,
        on_record: &mut dyn FnMut(&SampleFormat, Record<'_>),
    ) -> Result<(ExitStatus, bool), NativeError> {
        let mut interrupted = false;
        let mut stopper = Stopper::new(pid, STOP_GRACE);
        let _priority = sys::DrainPriority::raise();
        loop {
            session.wait(POLL_MS);
            session.round(on_record);
            while let Some(request) = stop.take() {
                interrupted = true;
                stopper.request(request);
            }
            stopper.tick();
            let status = launch::wait(pid, true).map_err(|source| NativeError::Io {
                what: "cannot wait for the profiled program",
                source,
            })?;
            if let Some(status) = status {
                return Ok((status, interrupted || stop.stopped_with(status)));
            }
        }
    }

    /// Attach mode: per (thread, CPU) events sharing one ring per CPU, seeded from /proc.
    fn attach(
        &self,
        pids: &[u32],
        stop: &mut StopRequests,
        on_record: &mut dyn FnMut(&SampleFormat, Record<'_>),
    ) -> Result<RecordSummary, NativeError> {
        if pids.is_empty() {
            return Err(NativeError::NoProcess);
        }
        let fd_limit = sys::raise_nofile_limit();
        let mut opener = EventOpener::new(self.settings(false));
        let mut session = Session::new(self.format);
        let mut opened = HashSet::new();
        let mut all_tids = Vec::new();
        for &pid in pids {
            let tids = attach::threads(pid).map_err(|err| attach_error(pid, err))?;
            all_tids.push((pid, tids));
        }
        let threads = all_tids.iter().map(|(_, tids)| tids.len()).sum();
        let fds_error = |err: NativeError| self.explain_attach_error(err, threads, fd_limit);
        for (pid, tids) in &all_tids {
            self.open_threads(*pid, tids, &mut opened, &mut opener, &mut session)
                .map_err(fds_error)?;
        }
        // Threads created while we were opening: a second pass (later ones are inherited).
        for &pid in pids {
            let tids = attach::threads(pid).unwrap_or_default();
            self.open_threads(pid, &tids, &mut opened, &mut opener, &mut session)
                .map_err(fds_error)?;
        }
        let off_cpu = match self.options.off_cpu {
            true => Some(self.attach_switches(pids, &opened, &mut session)?),
            false => None,
        };
        self.report_choice(&opener);
        session.enable_all().map_err(|source| NativeError::Io {
            what: "cannot enable perf events",
            source,
        })?;
        let started = sys::monotonic_ns();
        for &pid in pids {
            attach::synthesize(pid, &mut |record| on_record(&self.format, record));
            if off_cpu.is_some() {
                let max = self.blocked_stack_size();
                let emit = &mut |record: Record<'_>| on_record(&self.format, record);
                blocked::synthesize_waiting(pid, max, started, emit);
            }
        }
        let mut interrupted = false;
        let _priority = sys::DrainPriority::raise();
        while pids.iter().any(|&pid| attach::is_alive(pid)) {
            session.wait(POLL_MS);
            session.round(on_record);
            if stop.take().is_some() {
                interrupted = true;
                break;
            }
        }
        session.disable_all();
        session.finish(on_record);
        Ok(RecordSummary {
            interrupted,
            off_cpu_stacks: off_cpu.map(OffCpuStacks::from),
            ..self.summary(&session, &opener)
        })
    }

    /// Attach mode, `--off-cpu`: a context-switch event per (thread, CPU), all CPU `i` events
    /// writing to one switch ring: context-switch samples where the kernel allows them, else
    /// switch records whose threads' stacks are read from `/proc`, where this user may read
    /// them (ptrace access to every target); otherwise [`NativeError::OffCpuAttachDenied`].
    fn attach_switches(
        &self,
        pids: &[u32],
        tids: &HashSet<u32>,
        session: &mut Session,
    ) -> Result<SwitchStacks, NativeError> {
        let settings = self.settings(false);
        let mut stacks = SwitchStacks::Samples;
        let mut rings: Vec<usize> = Vec::new();
        let mut tids: Vec<u32> = tids.iter().copied().collect();
        tids.sort_unstable();
        for (n, &tid) in tids.iter().enumerate() {
            for (i, &cpu) in self.cpus.iter().enumerate() {
                let mut opened =
                    perf_event::open_switch_event(&settings, stacks, tid as i32, cpu as i32);
                if n == 0 && i == 0 && opened.as_ref().is_err_and(is_permission) {
                    if let Some(&pid) = pids.iter().find(|&&pid| !blocked::may_read(pid)) {
                        return Err(NativeError::OffCpuAttachDenied { pid });
                    }
                    stacks = SwitchStacks::Records;
                    opened =
                        perf_event::open_switch_event(&settings, stacks, tid as i32, cpu as i32);
                }
                let fd = match opened {
                    Ok(fd) => fd,
                    Err(NativeError::Open { source, .. })
                        if source.raw_os_error() == Some(libc::ESRCH) =>
                    {
                        break;
                    }
                    Err(err) if is_permission(&err) => return Err(NativeError::OffCpuDenied),
                    Err(err) => return Err(err),
                };
                if let Some(&ring) = rings.get(i) {
                    session
                        .add_follower(fd, ring)
                        .map_err(|source| NativeError::Io {
                            what: "cannot share a ring buffer (PERF_EVENT_IOC_SET_OUTPUT)",
                            source,
                        })?;
                    continue;
                }
                let (pages, capture) = match stacks {
                    SwitchStacks::Samples => (SWITCH_SAMPLE_RING_PAGES, None),
                    SwitchStacks::Records => (SWITCH_RING_PAGES, Some(self.blocked_stack_size())),
                };
                rings.push(session.rings().len());
                let ring = Ring::map(fd, pages, 1).map_err(NativeError::Mmap)?;
                session.add_switch_ring(ring, capture);
            }
        }
        Ok(stacks)
    }

    /// System-wide mode: one event per CPU for every task (pid -1), enabled, then the running
    /// processes described from `/proc`, then records until a stop is requested.
    fn system_wide(
        &self,
        command: &Option<(OsString, Vec<OsString>)>,
        stop: &mut StopRequests,
        on_record: &mut dyn FnMut(&SampleFormat, Record<'_>),
    ) -> Result<RecordSummary, NativeError> {
        let denied = |paranoid| NativeError::SystemWideDenied { paranoid };
        if let system::Permission::Denied(paranoid) = system::permission() {
            return Err(denied(paranoid));
        }
        // The collector holds the files of short-lived programs open (see collect/opened.rs).
        sys::raise_nofile_limit();
        // Inheritance is a per-task notion: a CPU-wide event sees every task anyway.
        let settings = EventSettings {
            inherit: false,
            ..self.settings(false)
        };
        let mut opener = EventOpener::new(settings);
        let mut session = Session::new(self.format);
        for &cpu in &self.cpus {
            let fd = opener.open(-1, cpu as i32).map_err(|err| match err {
                NativeError::PermissionDenied { paranoid } => denied(paranoid),
                err if is_permission(&err) => denied("unknown".into()),
                err => err,
            })?;
            session.add_ring(self.map(fd)?);
        }
        self.report_choice(&opener);
        session.enable_all().map_err(|source| NativeError::Io {
            what: "cannot enable perf events",
            source,
        })?;
        system::synthesize(&mut |record| on_record(&self.format, record));
        let (exit_status, interrupted) = match command {
            Some((program, args)) => {
                let pid = self.start(program, args)?;
                let (status, interrupted) = self.launch_loop(pid, &mut session, stop, on_record)?;
                (Some(status), interrupted)
            }
            None => {
                let _priority = sys::DrainPriority::raise();
                loop {
                    session.wait(POLL_MS);
                    session.round(on_record);
                    if stop.take().is_some() {
                        break;
                    }
                }
                (None, true)
            }
        };
        session.disable_all();
        session.finish(on_record);
        Ok(RecordSummary {
            exit_status,
            interrupted,
            ..self.summary(&session, &opener)
        })
    }

    /// Forks `program`, held before its exec, as the invoking user under sudo.
    fn spawn(
        &self,
        program: &std::ffi::OsStr,
        args: &[OsString],
    ) -> Result<launch::Launched, NativeError> {
        let run_as = (self.options.run_as).map(|(uid, gid)| sys::Credentials::of_user(uid, gid));
        launch::spawn_stopped(
            program,
            args,
            run_as.as_ref(),
            self.options.stdout_to_stderr,
        )
    }

    /// Starts `program` with no events of its own (the CPU-wide events see it); its pid.
    fn start(&self, program: &OsString, args: &[OsString]) -> Result<i32, NativeError> {
        let child = self.spawn(program, args)?;
        let pid = child.pid;
        child.release()?;
        Ok(pid)
    }

    /// Turns running out of file descriptors into the `ulimit -n` advice, with the count needed
    /// for `threads` threads (one fd per thread and CPU, plus room for the rest of the tool).
    fn explain_attach_error(&self, err: NativeError, threads: usize, limit: u64) -> NativeError {
        match err {
            NativeError::Open { ref source, .. } if sys::is_out_of_fds(source) => {
                let cpus = self.cpus.len();
                let needed = (threads * cpus + 64).next_multiple_of(64) as u64;
                NativeError::TooManyOpenFiles {
                    threads,
                    cpus,
                    needed,
                    limit,
                }
            }
            other => other,
        }
    }

    /// Opens one event per CPU for each thread not yet `opened`, all CPU `i` events writing to
    /// ring `i`. Threads that exit meanwhile are skipped; a refusal names its cause when
    /// `/proc` shows one (another user's process, setuid, not dumpable).
    fn open_threads(
        &self,
        pid: u32,
        tids: &[u32],
        opened: &mut HashSet<u32>,
        opener: &mut EventOpener,
        session: &mut Session,
    ) -> Result<(), NativeError> {
        for &tid in tids {
            if !opened.insert(tid) {
                continue;
            }
            for (index, &cpu) in self.cpus.iter().enumerate() {
                let fd = match opener.open(tid as i32, cpu as i32) {
                    Ok(fd) => fd,
                    Err(NativeError::Open { source, .. })
                        if source.raw_os_error() == Some(libc::ESRCH) =>
                    {
                        break;
                    }
                    Err(err) if is_permission(&err) => {
                        return Err(attach::access_problem(tid)
                            .map_or(err, |problem| NativeError::AttachDenied { pid, problem }))
                    }
                    Err(err) => return Err(err),
                };
                if session.rings().len() <= index {
                    session.add_ring(self.map(fd)?);
                } else {
                    session
                        .add_follower(fd, index)
                        .map_err(|source| NativeError::Io {
                            what: "cannot share a ring buffer (PERF_EVENT_IOC_SET_OUTPUT)",
                            source,
                        })?;
                }
            }
        }
        Ok(())
    }
}

/// Whether the kernel refused an event for lack of privileges.
fn is_permission(err: &NativeError) -> bool {
    match err {
        NativeError::PermissionDenied { .. } => true,
        NativeError::Open { source, .. } => {
            matches!(source.raw_os_error(), Some(libc::EACCES | libc::EPERM))
        }
        _ => false,
    }
}

/// How the collector reads the recorded processes' stacks past the copy of a sample.
pub fn live_memory() -> crate::collect::LiveMemory {
    crate::collect::LiveMemory {
        read: blocked::try_read_memory,
        now: blocked::monotonic_now,
    }
}

/// The error for a refused attach to `pid` when `/proc` shows why this user may not profile it
/// (another user's, setuid or non-dumpable process); `None` when it shows no such reason.
pub fn attach_denied(pid: u32) -> Option<NativeError> {
    attach::access_problem(pid).map(|problem| NativeError::AttachDenied { pid, problem })
}

fn attach_error(pid: u32, err: io::Error) -> NativeError {
    let source = if err.kind() == io::ErrorKind::NotFound {
        io::Error::from_raw_os_error(libc::ESRCH)
    } else {
        err
    };
    NativeError::Attach { pid, source }
}
