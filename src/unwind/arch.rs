//! What the unwinder needs to know about a CPU architecture: DWARF register numbers, the sampled
//! registers, and the frame-pointer frame layout.
//!
//! Every architecture compiles everywhere (so aarch64 code is linted and tested on x86_64); only
//! [`NativeArch`] depends on the build target.

use std::fmt::Debug;

/// How many DWARF registers a [`RegFile`] tracks: numbers `0..MAX_REGS` (x86_64: the 16
/// general-purpose registers; aarch64: x0 to x30 and sp).
pub const MAX_REGS: usize = 32;

/// The registers the unwinder tracks while walking a stack, in an architecture-neutral form,
/// indexed by DWARF register number.
///
/// `sp` is always known; any other register may be unknown: not sampled, or lost in a frame
/// whose CFI leaves it undefined (a caller's caller-saved registers are never known).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegFile {
    /// The stack pointer.
    pub sp: u64,
    /// Register values by DWARF number; meaningful where the `known` bit is set.
    values: [u64; MAX_REGS],
    /// Bit `n`: register `n` is known.
    known: u32,
}

impl RegFile {
    /// A register file where only `sp` is known.
    pub fn new(sp: u64) -> Self {
        RegFile {
            sp,
            values: [0; MAX_REGS],
            known: 0,
        }
    }

    /// The value of DWARF register `reg` (not `sp`), if known.
    #[inline]
    pub fn get(&self, reg: u16) -> Option<u64> {
        let i = usize::from(reg);
        (i < MAX_REGS && self.known & (1 << i) != 0).then(|| self.values[i])
    }

    /// Sets (or forgets, with `None`) DWARF register `reg`; registers beyond [`MAX_REGS`] are
    /// not tracked.
    #[inline]
    pub fn set(&mut self, reg: u16, value: Option<u64>) {
        let i = usize::from(reg);
        if i >= MAX_REGS {
            return;
        }
        match value {
            Some(v) => {
                self.values[i] = v;
                self.known |= 1 << i;
            }
            None => self.known &= !(1 << i),
        }
    }

    /// `self` with register `reg` set to `value`.
    pub fn with(mut self, reg: u16, value: u64) -> Self {
        self.set(reg, Some(value));
        self
    }

    /// The known registers: bit `n` for DWARF register `n`.
    #[inline]
    pub(crate) fn known_mask(&self) -> u32 {
        self.known
    }

    /// The values of the known registers, lowest register number first.
    #[inline]
    pub(crate) fn known_values(&self) -> impl Iterator<Item = u64> + '_ {
        let mut bits = self.known;
        std::iter::from_fn(move || {
            let i = bits.trailing_zeros() as usize;
            bits &= bits.checked_sub(1)?;
            Some(self.values[i])
        })
    }

    /// Forgets every register whose bit is clear in `keep`.
    #[inline]
    pub(crate) fn retain(&mut self, keep: u32) {
        self.known &= keep;
    }
}

/// A CPU architecture the unwinder can walk stacks of.
pub trait Arch: 'static {
    /// The user registers a sample carries.
    type Regs: Copy + Debug;

    /// DWARF numbers of the registers a call preserves (bit `n` for register `n`, `sp` aside):
    /// only these keep their value in a caller without a CFI rule; the others become unknown.
    const CALLEE_SAVED: u32;

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
    #[inline]
    fn register(file: &RegFile, pc: u64, reg: u16) -> Option<u64> {
        if reg == Self::SP {
            Some(file.sp)
        } else if Some(reg) == Self::PC {
            Some(pc)
        } else {
            file.get(reg)
        }
    }
}

/// x86_64 (System V): DWARF registers 6 = `rbp`, 7 = `rsp`, 16 = return address (`rip`).
#[derive(Clone, Copy, Debug, Default)]
pub struct X86_64;

/// The user registers of an x86_64 sample: the instruction pointer and every sampled
/// general-purpose register (DWARF numbers: 0 `rax`, 1 `rdx`, 2 `rcx`, 3 `rbx`, 4 `rsi`,
/// 5 `rdi`, 6 `rbp`, 7 `rsp`, 8 to 15 `r8` to `r15`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct X86_64Regs {
    pub ip: u64,
    pub file: RegFile,
}

impl X86_64Regs {
    /// DWARF number of `rbx`.
    pub const RBX: u16 = 3;

    /// Registers with `ip`, `rsp` and `rbp` known (add others with [`RegFile::with`]).
    pub fn new(ip: u64, sp: u64, bp: u64) -> Self {
        X86_64Regs {
            ip,
            file: RegFile::new(sp).with(X86_64::FP, bp),
        }
    }
}

impl Arch for X86_64 {
    type Regs = X86_64Regs;
    const SP: u16 = 7;
    const FP: u16 = 6;
    const LR: Option<u16> = None;
    const PC: Option<u16> = Some(16);
    const RA_IN_LINK_REGISTER: bool = false;
    /// `rbx`, `rbp`, `r12` to `r15`.
    const CALLEE_SAVED: u32 = (1 << 3) | (1 << 6) | (0xf << 12);

    fn entry(regs: &X86_64Regs) -> (u64, RegFile) {
        (regs.ip, regs.file)
    }
}

/// aarch64 (AAPCS64): DWARF registers 29 = frame pointer, 30 = link register, 31 = `sp`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Aarch64;

/// The user registers of an aarch64 sample: the program counter and every sampled register
/// (DWARF numbers: `xN` is N, 29 the frame pointer, 30 the link register).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Aarch64Regs {
    pub pc: u64,
    pub file: RegFile,
}

impl Aarch64Regs {
    /// Registers with `pc`, `sp`, the link register and the frame pointer known.
    pub fn new(pc: u64, sp: u64, lr: u64, x29: u64) -> Self {
        Aarch64Regs {
            pc,
            file: RegFile::new(sp).with(Aarch64::FP, x29).with(30, lr),
        }
    }
}

impl Arch for Aarch64 {
    type Regs = Aarch64Regs;
    const SP: u16 = 31;
    const FP: u16 = 29;
    const LR: Option<u16> = Some(30);
    const PC: Option<u16> = None;
    const RA_IN_LINK_REGISTER: bool = true;
    /// `x19` to `x29` (x30, the link register, is the return address: set from it).
    const CALLEE_SAVED: u32 = 0x7ff << 19;

    fn entry(regs: &Aarch64Regs) -> (u64, RegFile) {
        (regs.pc, regs.file)
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
