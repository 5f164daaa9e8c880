//! What the unwinder needs to know about a CPU architecture: DWARF register numbers, the sampled
//! registers, and the frame-pointer frame layout.
//!
//! Every architecture compiles everywhere (so aarch64 code is linted and tested on x86_64); only
//! [`NativeArch`] depends on the build target.

use std::fmt::Debug;

/// The registers the unwinder tracks while walking a stack, in an architecture-neutral form.
///
/// `sp` is always known; the frame pointer and the link register may be unknown after a frame
/// whose CFI leaves them undefined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegFile {
    /// The stack pointer.
    pub sp: u64,
    /// The frame pointer (x86_64 `rbp`, aarch64 `x29`).
    pub fp: Option<u64>,
    /// The link register (aarch64 `x30`); always `None` on x86_64.
    pub lr: Option<u64>,
}

/// A CPU architecture the unwinder can walk stacks of.
pub trait Arch: 'static {
    /// The user registers a sample carries.
    type Regs: Copy + Debug;

    /// DWARF register number of the stack pointer.
    const SP: u16;
    /// DWARF register number of the frame pointer.
    const FP: u16;
    /// DWARF register number of the link register, if the architecture has one.
    const LR: Option<u16>;
    /// DWARF register number that stands for the instruction pointer in CFI expressions
    /// (x86_64's return-address column 16 is `rip`).
    const PC: Option<u16>;
    /// Whether the return address of the first (leaf) frame may still be in the link register, so
    /// the leaf frame may not move the stack pointer.
    const RA_IN_LINK_REGISTER: bool;
    /// In a frame-pointer frame, the saved frame pointer is at `[fp]` and the return address at
    /// `[fp + FP_RA_OFFSET]`; the caller's stack pointer is `fp + FP_SP_OFFSET`.
    const FP_RA_OFFSET: u64 = 8;
    /// See [`Arch::FP_RA_OFFSET`].
    const FP_SP_OFFSET: u64 = 16;

    /// The sampled instruction pointer and the tracked registers.
    fn entry(regs: &Self::Regs) -> (u64, RegFile);

    /// Removes bits that are not part of a code address (aarch64 pointer authentication).
    fn strip_code_address(addr: u64) -> u64 {
        addr
    }

    /// The value of DWARF register `reg` in a frame whose instruction pointer is `pc`.
    fn register(file: &RegFile, pc: u64, reg: u16) -> Option<u64> {
        if reg == Self::SP {
            Some(file.sp)
        } else if reg == Self::FP {
            file.fp
        } else if Some(reg) == Self::LR {
            file.lr
        } else if Some(reg) == Self::PC {
            Some(pc)
        } else {
            None
        }
    }
}

/// x86_64 (System V): DWARF registers 6 = `rbp`, 7 = `rsp`, 16 = return address (`rip`).
#[derive(Clone, Copy, Debug, Default)]
pub struct X86_64;

/// The user registers of an x86_64 sample.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct X86_64Regs {
    pub ip: u64,
    pub sp: u64,
    pub bp: u64,
}

impl Arch for X86_64 {
    type Regs = X86_64Regs;
    const SP: u16 = 7;
    const FP: u16 = 6;
    const LR: Option<u16> = None;
    const PC: Option<u16> = Some(16);
    const RA_IN_LINK_REGISTER: bool = false;

    fn entry(regs: &X86_64Regs) -> (u64, RegFile) {
        let file = RegFile {
            sp: regs.sp,
            fp: Some(regs.bp),
            lr: None,
        };
        (regs.ip, file)
    }
}

/// aarch64 (AAPCS64): DWARF registers 29 = frame pointer, 30 = link register, 31 = `sp`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Aarch64;

/// The user registers of an aarch64 sample.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Aarch64Regs {
    pub pc: u64,
    pub lr: u64,
    pub sp: u64,
    pub x29: u64,
}

impl Arch for Aarch64 {
    type Regs = Aarch64Regs;
    const SP: u16 = 31;
    const FP: u16 = 29;
    const LR: Option<u16> = Some(30);
    const PC: Option<u16> = None;
    const RA_IN_LINK_REGISTER: bool = true;

    fn entry(regs: &Aarch64Regs) -> (u64, RegFile) {
        let file = RegFile {
            sp: regs.sp,
            fp: Some(regs.x29),
            lr: Some(regs.lr),
        };
        (regs.pc, file)
    }

    /// Keeps the low 48 bits: pointer-authentication codes live in the high bits of signed
    /// return addresses, and user space addresses fit in 48 bits.
    fn strip_code_address(addr: u64) -> u64 {
        addr & 0x0000_ffff_ffff_ffff
    }
}

/// The architecture this crate is built for.
#[cfg(target_arch = "x86_64")]
pub type NativeArch = X86_64;
/// The architecture this crate is built for.
#[cfg(target_arch = "aarch64")]
pub type NativeArch = Aarch64;
