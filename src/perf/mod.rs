//! The perf_event record format, shared by live ring buffers and perf.data files (OS-independent).
//!
//! The constants here are the kernel ABI (`include/uapi/linux/perf_event.h`) written as plain
//! integers, so this module compiles on every OS and a perf.data file can be read anywhere.
//! [`records`] parses one record body into a borrowed [`records::Record`].

pub mod data_file;
pub mod records;

pub use records::{
    parse_record, record_time, BlockedStack, CallChain, CallChainFrames, Comm, Fork, Mmap2,
    MmapFileId, ParseError, Record, Sample, SampleFormat, Switch, UserRegs,
};

/// `perf_event_header.type` values (`enum perf_event_type`).
pub mod record_kind {
    pub const MMAP: u32 = 1;
    pub const LOST: u32 = 2;
    pub const COMM: u32 = 3;
    pub const EXIT: u32 = 4;
    pub const THROTTLE: u32 = 5;
    pub const UNTHROTTLE: u32 = 6;
    pub const FORK: u32 = 7;
    pub const READ: u32 = 8;
    pub const SAMPLE: u32 = 9;
    pub const MMAP2: u32 = 10;
    pub const LOST_SAMPLES: u32 = 13;
    /// A context switch of the event's task (`attr.context_switch`, per-task events).
    pub const SWITCH: u32 = 14;
    /// A context switch on a CPU (`attr.context_switch`, CPU-wide events): also names the other task.
    pub const SWITCH_CPU_WIDE: u32 = 15;
    /// First record type that only perf.data files use (not the kernel).
    pub const USER_TYPE_START: u32 = 64;
    /// perf.data: all records before this one were flushed from every buffer.
    pub const FINISHED_ROUND: u32 = 68;
}

/// `perf_event_attr.sample_type` bits (`enum perf_event_sample_format`).
pub mod sample_type {
    pub const IP: u64 = 1 << 0;
    pub const TID: u64 = 1 << 1;
    pub const TIME: u64 = 1 << 2;
    pub const ADDR: u64 = 1 << 3;
    pub const READ: u64 = 1 << 4;
    pub const CALLCHAIN: u64 = 1 << 5;
    pub const ID: u64 = 1 << 6;
    pub const CPU: u64 = 1 << 7;
    pub const PERIOD: u64 = 1 << 8;
    pub const STREAM_ID: u64 = 1 << 9;
    pub const RAW: u64 = 1 << 10;
    pub const BRANCH_STACK: u64 = 1 << 11;
    pub const REGS_USER: u64 = 1 << 12;
    pub const STACK_USER: u64 = 1 << 13;
    pub const WEIGHT: u64 = 1 << 14;
    pub const DATA_SRC: u64 = 1 << 15;
    pub const IDENTIFIER: u64 = 1 << 16;
}

/// `perf_event_attr.read_format` bits.
pub mod read_format {
    pub const TOTAL_TIME_ENABLED: u64 = 1 << 0;
    pub const TOTAL_TIME_RUNNING: u64 = 1 << 1;
    pub const ID: u64 = 1 << 2;
    pub const GROUP: u64 = 1 << 3;
    pub const LOST: u64 = 1 << 4;
}

/// `perf_event_attr.branch_sample_type` bit that adds a `hw_idx` word to branch stacks.
pub const BRANCH_SAMPLE_HW_INDEX: u64 = 1 << 17;

/// `perf_event_header.misc` bits.
pub mod misc {
    /// Mask of the cpumode bits.
    pub const CPUMODE_MASK: u16 = 0x7;
    pub const CPUMODE_UNKNOWN: u16 = 0;
    pub const KERNEL: u16 = 1;
    pub const USER: u16 = 2;
    pub const HYPERVISOR: u16 = 3;
    pub const GUEST_KERNEL: u16 = 4;
    pub const GUEST_USER: u16 = 5;
    /// On MMAP/MMAP2: a data (non-executable) mapping.
    pub const MMAP_DATA: u16 = 1 << 13;
    /// On COMM: the name changed because of an exec.
    pub const COMM_EXEC: u16 = 1 << 13;
    /// On MMAP2: the record carries a build id instead of device and inode numbers.
    pub const MMAP_BUILD_ID: u16 = 1 << 14;
    /// On SWITCH/SWITCH_CPU_WIDE: the task was switched out (otherwise in).
    pub const SWITCH_OUT: u16 = 1 << 13;
    /// On a switch-out: the task was preempted while runnable (it was not waiting).
    pub const SWITCH_OUT_PREEMPT: u16 = 1 << 14;
}

/// Callchain context markers (`enum perf_callchain_context`): entries at or above
/// [`callchain::CONTEXT_MAX`] are markers, not addresses.
pub mod callchain {
    pub const CONTEXT_HV: u64 = -32i64 as u64;
    pub const CONTEXT_KERNEL: u64 = -128i64 as u64;
    pub const CONTEXT_USER: u64 = -512i64 as u64;
    pub const CONTEXT_GUEST: u64 = -2048i64 as u64;
    pub const CONTEXT_GUEST_KERNEL: u64 = -2176i64 as u64;
    pub const CONTEXT_GUEST_USER: u64 = -2560i64 as u64;
    pub const CONTEXT_MAX: u64 = -4095i64 as u64;
}

/// `abi` word of a sample's user registers (`enum perf_sample_regs_abi`).
pub mod regs_abi {
    /// No registers: the sample hit a kernel thread.
    pub const NONE: u64 = 0;
    pub const ABI_32: u64 = 1;
    pub const ABI_64: u64 = 2;
}

/// Register numbers of `sample_regs_user` on x86_64 (`arch/x86/include/uapi/asm/perf_regs.h`).
pub mod regs_x86_64 {
    pub const AX: u32 = 0;
    pub const BX: u32 = 1;
    pub const CX: u32 = 2;
    pub const DX: u32 = 3;
    pub const SI: u32 = 4;
    pub const DI: u32 = 5;
    pub const BP: u32 = 6;
    pub const SP: u32 = 7;
    pub const IP: u32 = 8;
    /// `r8`; `r9` to `r15` follow (`R8 + n` is `r(8 + n)`).
    pub const R8: u32 = 16;
    pub const R15: u32 = 23;
    /// The registers a stack-copy unwinder samples: ip and the 16 general-purpose registers
    /// (as `perf record --call-graph dwarf`, without flags and segment registers), so a CFA or
    /// rule based on any of them (rbx in `_dl_runtime_resolve_xsavec`) can be evaluated.
    pub const UNWIND_MASK: u64 = 0xff | (1 << IP) | (0xff << R8);
}

/// Register numbers of `sample_regs_user` on aarch64 (`arch/arm64/include/uapi/asm/perf_regs.h`):
/// `xN` is N.
pub mod regs_aarch64 {
    /// The frame pointer.
    pub const X29: u32 = 29;
    /// The link register.
    pub const LR: u32 = 30;
    pub const SP: u32 = 31;
    pub const PC: u32 = 32;
    /// The registers a stack-copy unwinder samples: x0 to x30, sp and pc (as perf does).
    pub const UNWIND_MASK: u64 = (1 << 33) - 1;
}
