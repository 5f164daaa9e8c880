//! Opening the sampling event: attribute setup, validation before the syscall, and the fallbacks
//! from hardware cycles to cpu-clock and from kernel+user to user-only sampling.

use std::io;
use std::os::fd::OwnedFd;

use super::sys::{self, perf_event_attr};
use super::{CallGraph, NativeError};
use crate::perf::{regs_aarch64, regs_x86_64, sample_type as st, SampleFormat};

/// The user registers sampled for DWARF unwinding on this architecture.
pub const UNWIND_REGS_MASK: u64 = if cfg!(target_arch = "aarch64") {
    regs_aarch64::UNWIND_MASK
} else {
    regs_x86_64::UNWIND_MASK
};

/// Everything that shapes the `perf_event_attr`, apart from the event and kernel choice.
#[derive(Clone, Copy, Debug)]
pub struct EventSettings {
    pub frequency: u32,
    pub call_graph: CallGraph,
    /// Follow threads and children created after opening (`inherit`).
    pub inherit: bool,
    /// Start counting at the next exec of the target (`enable_on_exec`); otherwise enabled by ioctl.
    pub enable_on_exec: bool,
    /// Bytes of ring buffer data after which poll wakes us up.
    pub wakeup_bytes: u32,
}

/// Which event and privilege level was chosen on the first successful open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Choice {
    hardware: bool,
    kernel: bool,
}

/// Opens the same event on many (pid, cpu) pairs, deciding the event and kernel inclusion once.
pub struct EventOpener {
    settings: EventSettings,
    choice: Option<Choice>,
}

/// Checks the options against the kernel's limits before any syscall.
pub fn validate(frequency: u32, call_graph: CallGraph) -> Result<(), NativeError> {
    if frequency == 0 {
        return Err(NativeError::InvalidFrequency);
    }
    if let Some(max) = sys::read_sysctl(sys::MAX_SAMPLE_RATE_PATH) {
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

/// The parse format of records produced by events from [`EventOpener`] with these settings.
pub fn sample_format(call_graph: CallGraph) -> SampleFormat {
    let mut sample_type = st::IP | st::TID | st::TIME | st::CPU | st::PERIOD | st::CALLCHAIN;
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
    let format = sample_format(settings.call_graph);
    let mut attr = perf_event_attr {
        size: std::mem::size_of::<perf_event_attr>() as u32,
        sample_type: format.sample_type,
        sample_regs_user: format.sample_regs_user,
        clockid: libc::CLOCK_MONOTONIC,
        ..Default::default()
    };
    if choice.hardware {
        attr.type_ = sys::PERF_TYPE_HARDWARE;
        attr.config = sys::PERF_COUNT_HW_CPU_CYCLES;
    } else {
        attr.type_ = sys::PERF_TYPE_SOFTWARE;
        attr.config = sys::PERF_COUNT_SW_CPU_CLOCK;
    }
    if let CallGraph::Dwarf { stack_size } = settings.call_graph {
        attr.sample_stack_user = stack_size & !7;
        // The user part comes from unwinding the copied stack; the kernel's frame-pointer walk of
        // user memory is kept too: where the DWARF walk meets a stack switch (Go's
        // runtime.systemstack), it carries on from there, across stacks the copy does not hold.
    }
    attr.__bindgen_anon_1.sample_freq = u64::from(settings.frequency);
    attr.__bindgen_anon_2.wakeup_watermark = settings.wakeup_bytes.max(1);
    attr.set_freq(1);
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

/// Errors that mean "this event does not exist here" (no PMU on a VM, ...).
fn is_unsupported_event(err: &io::Error) -> bool {
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

    /// `"cycles"` or `"cpu-clock"`, once an event was opened.
    pub fn event_name(&self) -> &'static str {
        match self.choice {
            Some(Choice { hardware: true, .. }) => "cycles",
            _ => "cpu-clock",
        }
    }

    /// Whether kernel samples and callchains are included, once an event was opened.
    pub fn kernel_frames(&self) -> bool {
        self.choice.is_some_and(|c| c.kernel)
    }

    /// Opens the event for `pid` on `cpu` (-1: any CPU). The first call picks the event and the
    /// privilege level; later calls reuse the choice and return plain I/O errors (e.g. ESRCH
    /// for a thread that just exited).
    pub fn open(&mut self, pid: i32, cpu: i32) -> Result<OwnedFd, NativeError> {
        if let Some(choice) = self.choice {
            let attr = build_attr(&self.settings, choice);
            return sys::perf_event_open(&attr, pid, cpu).map_err(|source| NativeError::Open {
                event: self.event_name(),
                pid,
                cpu,
                source,
            });
        }
        let mut last_error = None;
        for hardware in [true, false] {
            match self.open_choosing_kernel(hardware, pid, cpu) {
                Ok(fd) => return Ok(fd),
                Err(err) if hardware && is_unsupported_event(&err) => last_error = Some(err),
                Err(err) if is_permission_error(&err) => return Err(permission_denied()),
                Err(source) => {
                    let event = if hardware { "cycles" } else { "cpu-clock" };
                    return Err(NativeError::Open {
                        event,
                        pid,
                        cpu,
                        source,
                    });
                }
            }
        }
        let source = last_error.unwrap_or_else(|| io::Error::from_raw_os_error(libc::ENOENT));
        Err(NativeError::Open {
            event: "cpu-clock",
            pid,
            cpu,
            source,
        })
    }

    fn open_choosing_kernel(&mut self, hardware: bool, pid: i32, cpu: i32) -> io::Result<OwnedFd> {
        let with_kernel = Choice {
            hardware,
            kernel: true,
        };
        let result = match sys::perf_event_open(&build_attr(&self.settings, with_kernel), pid, cpu)
        {
            Err(err) if is_permission_error(&err) => {
                let user_only = Choice {
                    hardware,
                    kernel: false,
                };
                let attr = build_attr(&self.settings, user_only);
                sys::perf_event_open(&attr, pid, cpu).map(|fd| (fd, user_only))
            }
            other => other.map(|fd| (fd, with_kernel)),
        };
        let (fd, choice) = result?;
        self.choice = Some(choice);
        Ok(fd)
    }
}

/// The typed permission error, with the current `perf_event_paranoid` value.
pub fn permission_denied() -> NativeError {
    NativeError::PermissionDenied {
        paranoid: sys::read_sysctl(sys::PARANOID_PATH)
            .map_or_else(|| "unknown".to_owned(), |v| v.to_string()),
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
    let format = sample_format(settings.call_graph);
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
                event: "context switches",
                pid,
                cpu,
                source,
            }
        }
    })
}
