//! Opening the sampling event: attribute setup for the chosen event (`-e`, at a frequency or a
//! period), validation before the syscall, the fallback from kernel+user to user-only sampling,
//! and the one-line errors for events this machine or this user cannot sample.

use std::io;
use std::os::fd::OwnedFd;

use super::sys::{self, perf_event_attr};
use super::{CallGraph, NativeError};
use crate::event::{Event, Sampling};
use crate::perf::{regs_aarch64, regs_x86_64, sample_type as st, SampleFormat};

/// The user registers sampled for DWARF unwinding on this architecture.
pub const UNWIND_REGS_MASK: u64 = if cfg!(target_arch = "aarch64") {
    regs_aarch64::UNWIND_MASK
} else {
    regs_x86_64::UNWIND_MASK
};

/// Everything that shapes the `perf_event_attr`, apart from the kernel choice.
#[derive(Clone, Copy, Debug)]
pub struct EventSettings {
    /// The sampled event.
    pub event: Event,
    /// At a frequency or every N events.
    pub sampling: Sampling,
    pub call_graph: CallGraph,
    /// Follow threads and children created after opening (`inherit`).
    pub inherit: bool,
    /// Start counting at the next exec of the target (`enable_on_exec`); otherwise enabled by ioctl.
    pub enable_on_exec: bool,
    /// Bytes of ring buffer data after which poll wakes us up.
    pub wakeup_bytes: u32,
}

/// Which privilege level was chosen on the first successful open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Choice {
    kernel: bool,
}

/// Opens the same event on many (pid, cpu) pairs, deciding the event and kernel inclusion once.
pub struct EventOpener {
    settings: EventSettings,
    choice: Option<Choice>,
}

/// Checks the options against the kernel's limits before any syscall.
pub fn validate(sampling: Sampling, call_graph: CallGraph) -> Result<(), NativeError> {
    let frequency = match sampling {
        Sampling::Frequency(0) => return Err(NativeError::InvalidFrequency),
        Sampling::Period(0) => return Err(NativeError::InvalidPeriod),
        Sampling::Frequency(frequency) => Some(frequency),
        Sampling::Period(_) => None,
    };
    let max = frequency.and_then(|_| sys::read_sysctl(sys::MAX_SAMPLE_RATE_PATH));
    if let (Some(frequency), Some(max)) = (frequency, max) {
        if i64::from(frequency) > max {
            return Err(NativeError::FrequencyTooHigh {
                requested: frequency,
                max: u64::try_from(max).unwrap_or(0),
            });
        }
    }
    if let CallGraph::Dwarf { stack_size } = call_graph {
        if !(8..=sys::MAX_STACK_USER).contains(&stack_size) {
            return Err(NativeError::InvalidStackSize(stack_size));
        }
    }
    Ok(())
}

/// The period every sample of `event` stands for when its samples carry no period: a software
/// count event (faults, switches, migrations) at a fixed period. Asked for PERF_SAMPLE_PERIOD,
/// the kernel samples such an event at *every* occurrence, each a sample of period 1, whatever
/// the period (`perf_swevent_event`); so the field is left out, as perf does for `-c`, and each
/// sample weighs the period.
pub fn fixed_period(event: Event, sampling: Sampling) -> Option<u64> {
    match sampling {
        Sampling::Period(period) if !event.is_time() && !event.is_hardware() => Some(period),
        _ => None,
    }
}

impl EventSettings {
    /// The parse format of records produced by events from [`EventOpener`] with these settings.
    pub fn format(&self) -> SampleFormat {
        sample_format(
            self.call_graph,
            fixed_period(self.event, self.sampling).is_none(),
        )
    }
}

/// The parse format of sample records with stacks as `call_graph` says, with the period field
/// (`period`) or without.
pub fn sample_format(call_graph: CallGraph, period: bool) -> SampleFormat {
    let mut sample_type = st::IP | st::TID | st::TIME | st::CPU | st::CALLCHAIN;
    if period {
        sample_type |= st::PERIOD;
    }
    let mut sample_regs_user = 0;
    if let CallGraph::Dwarf { .. } = call_graph {
        sample_type |= st::REGS_USER | st::STACK_USER;
        sample_regs_user = UNWIND_REGS_MASK;
    }
    SampleFormat {
        sample_type,
        sample_regs_user,
        read_format: 0,
        branch_sample_type: 0,
        sample_id_all: true,
    }
}

fn build_attr(settings: &EventSettings, choice: Choice) -> perf_event_attr {
    let format = settings.format();
    let mut attr = perf_event_attr {
        size: std::mem::size_of::<perf_event_attr>() as u32,
        sample_type: format.sample_type,
        sample_regs_user: format.sample_regs_user,
        clockid: libc::CLOCK_MONOTONIC,
        ..Default::default()
    };
    (attr.type_, attr.config) = sys::event_type_config(settings.event);
    if let CallGraph::Dwarf { stack_size } = settings.call_graph {
        attr.sample_stack_user = stack_size & !7;
        // The user part comes from unwinding the copied stack; the kernel's frame-pointer walk of
        // user memory is kept too: where the DWARF walk meets a stack switch (Go's
        // runtime.systemstack), it carries on from there, across stacks the copy does not hold.
    }
    match settings.sampling {
        Sampling::Frequency(frequency) => {
            attr.__bindgen_anon_1.sample_freq = u64::from(frequency);
            attr.set_freq(1);
        }
        Sampling::Period(period) => attr.__bindgen_anon_1.sample_period = period,
    }
    attr.__bindgen_anon_2.wakeup_watermark = settings.wakeup_bytes.max(1);
    attr.set_disabled(1);
    attr.set_inherit(u64::from(settings.inherit));
    attr.set_enable_on_exec(u64::from(settings.enable_on_exec));
    attr.set_mmap(1);
    attr.set_mmap2(1);
    attr.set_comm(1);
    attr.set_comm_exec(1);
    attr.set_task(1);
    attr.set_sample_id_all(1);
    attr.set_use_clockid(1);
    attr.set_watermark(1);
    attr.set_exclude_hv(1);
    if !choice.kernel {
        attr.set_exclude_kernel(1);
        attr.set_exclude_callchain_kernel(1);
    }
    attr
}

fn is_permission_error(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM))
}

/// Errors that mean "this machine cannot count this hardware event": no PMU (a virtual
/// machine), one that cannot sample it, or a raw event this CPU does not have (EINVAL: the
/// rest of the attributes are the ones every other event opens with).
fn is_missing_counter(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::ENOENT | libc::EOPNOTSUPP | libc::ENODEV | libc::ENOSYS | libc::EINVAL)
    )
}

impl EventOpener {
    pub fn new(settings: EventSettings) -> Self {
        EventOpener {
            settings,
            choice: None,
        }
    }

    /// The sampled event's name (`cpu-clock`, `page-faults`, `r1c2`, ...).
    pub fn event_name(&self) -> String {
        self.settings.event.name()
    }

    /// Whether kernel samples and callchains are included, once an event was opened.
    pub fn kernel_frames(&self) -> bool {
        self.choice.is_some_and(|c| c.kernel)
    }

    /// Opens the event for `pid` on `cpu` (-1: any CPU). The first call picks the privilege
    /// level and turns a refusal into the error that names its cause and what to do; later
    /// calls reuse the choice and return plain I/O errors (e.g. ESRCH for a thread that just
    /// exited).
    pub fn open(&mut self, pid: i32, cpu: i32) -> Result<OwnedFd, NativeError> {
        let event = self.settings.event;
        let open_error = |source| NativeError::Open {
            event: event.name(),
            pid,
            cpu,
            source,
        };
        if let Some(choice) = self.choice {
            let attr = build_attr(&self.settings, choice);
            return sys::perf_event_open(&attr, pid, cpu).map_err(open_error);
        }
        match self.open_choosing_kernel(pid, cpu) {
            Ok((_, Choice { kernel: false })) if event.is_kernel_only() => {
                Err(NativeError::KernelOnlyEvent {
                    event: event.name(),
                    paranoid: paranoid(),
                })
            }
            Ok((fd, choice)) => {
                self.choice = Some(choice);
                Ok(fd)
            }
            Err(err) if is_permission_error(&err) => Err(permission_denied()),
            Err(err) if event.is_hardware() && is_missing_counter(&err) => {
                Err(NativeError::NoHardwareCounter {
                    event: event.name(),
                    reason: missing_counter_reason(&err),
                })
            }
            Err(source) => Err(open_error(source)),
        }
    }

    /// Opens with kernel samples where allowed, else user space only.
    fn open_choosing_kernel(&self, pid: i32, cpu: i32) -> io::Result<(OwnedFd, Choice)> {
        let with_kernel = Choice { kernel: true };
        match sys::perf_event_open(&build_attr(&self.settings, with_kernel), pid, cpu) {
            Err(err) if is_permission_error(&err) => {
                let user_only = Choice { kernel: false };
                let attr = build_attr(&self.settings, user_only);
                sys::perf_event_open(&attr, pid, cpu).map(|fd| (fd, user_only))
            }
            other => other.map(|fd| (fd, with_kernel)),
        }
    }
}

/// Why a hardware event cannot be opened, from the kernel's errno.
fn missing_counter_reason(err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(libc::ENOENT | libc::ENODEV) => "this machine has no hardware performance counter \
             for it (no PMU: a virtual machine without a virtual PMU?)"
            .into(),
        Some(libc::EOPNOTSUPP) => "this CPU's performance monitoring unit cannot sample it".into(),
        _ => format!("this CPU cannot count it ({err})"),
    }
}

/// `kernel.perf_event_paranoid`, as text (`unknown` if unreadable).
fn paranoid() -> String {
    sys::read_sysctl(sys::PARANOID_PATH).map_or_else(|| "unknown".to_owned(), |v| v.to_string())
}

/// The typed permission error, with the current `perf_event_paranoid` value.
pub fn permission_denied() -> NativeError {
    NativeError::PermissionDenied {
        paranoid: paranoid(),
    }
}

/// Where off-CPU stacks come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwitchStacks {
    /// `context-switches` samples (period 1, kernel included) with the samples' user stack
    /// capture: needs root, CAP_PERFMON or `perf_event_paranoid` <= 1.
    Samples,
    /// A dummy event: switch records only; stacks are read from `/proc` at each switch-out.
    Records,
}

/// Opens the event of off-CPU recording for `pid` on `cpu`: context-switch records
/// (`attr.context_switch`), stamped like the samples (same `sample_id_all` trailer), inherited,
/// and waking the reader at every record so that a blocked thread's stack can be read before it
/// runs again. With [`SwitchStacks::Samples`] the event is `context-switches` sampled at every
/// switch, with the same stack capture as CPU samples.
pub fn open_switch_event(
    settings: &EventSettings,
    stacks: SwitchStacks,
    pid: i32,
    cpu: i32,
) -> Result<OwnedFd, NativeError> {
    let format = settings.format();
    let mut attr = perf_event_attr {
        size: std::mem::size_of::<perf_event_attr>() as u32,
        type_: sys::PERF_TYPE_SOFTWARE,
        clockid: libc::CLOCK_MONOTONIC,
        ..Default::default()
    };
    match stacks {
        SwitchStacks::Samples => {
            attr.config = sys::PERF_COUNT_SW_CONTEXT_SWITCHES;
            attr.sample_type = format.sample_type;
            attr.sample_regs_user = format.sample_regs_user;
            if let CallGraph::Dwarf { stack_size } = settings.call_graph {
                attr.sample_stack_user = stack_size & !7;
                attr.set_exclude_callchain_user(1);
            }
        }
        SwitchStacks::Records => {
            // Only the fields of the sample-id trailer matter: the same as the samples', so that
            // one `SampleFormat` parses both (stack and register bits would need sizes).
            let trailer = st::TID | st::TIME | st::ID | st::STREAM_ID | st::CPU | st::IDENTIFIER;
            attr.config = sys::PERF_COUNT_SW_DUMMY;
            attr.sample_type = format.sample_type & trailer;
            attr.set_exclude_kernel(1);
        }
    }
    attr.__bindgen_anon_1.sample_period = 1;
    attr.__bindgen_anon_2.wakeup_watermark = 1;
    attr.set_watermark(1);
    attr.set_disabled(1);
    attr.set_inherit(u64::from(settings.inherit));
    attr.set_enable_on_exec(u64::from(settings.enable_on_exec));
    attr.set_context_switch(1);
    attr.set_sample_id_all(1);
    attr.set_use_clockid(1);
    attr.set_exclude_hv(1);
    sys::perf_event_open(&attr, pid, cpu).map_err(|source| {
        if is_permission_error(&source) {
            permission_denied()
        } else {
            NativeError::Open {
                event: "context switches".into(),
                pid,
                cpu,
                source,
            }
        }
    })
}
