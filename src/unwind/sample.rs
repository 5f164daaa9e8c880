//! The unwinder's registers from a sample's `REGS_USER`: perf register numbers (defined once, in
//! [`crate::perf::regs_x86_64`] and [`crate::perf::regs_aarch64`]) to DWARF register numbers.

use super::arch::{Aarch64, Aarch64Regs, Arch, RegFile, X86_64Regs, X86_64};
use crate::perf::{regs_aarch64, regs_x86_64, UserRegs};

/// An architecture whose registers can be read out of a sample's `REGS_USER`.
pub trait SampleRegs: Arch {
    /// The registers, or `None` when the sample lacks the instruction pointer or `sp`.
    fn from_sample(regs: &UserRegs<'_>) -> Option<Self::Regs>;
    /// The sampled stack pointer (where the copied stack starts).
    fn sp(regs: &Self::Regs) -> u64;
    /// Registers where only the instruction and stack pointers are known (a blocked thread's
    /// stack read from outside): every other register is unknown to the walk.
    fn from_ip_sp(ip: u64, sp: u64) -> Self::Regs;
}

/// The unwinder's registers of architecture `A` from a sample's user registers; `None` when the
/// sample lacks the instruction pointer or the stack pointer. Registers the sample does not carry
/// (a perf.data file recorded with a smaller mask) are unknown.
#[inline]
pub fn regs_from_sample<A: SampleRegs>(regs: &UserRegs<'_>) -> Option<A::Regs> {
    A::from_sample(regs)
}

/// x86_64: (perf number, DWARF number) of every general-purpose register but `rsp`.
const X86_64_MAP: [(u32, u16); 15] = [
    (regs_x86_64::AX, 0),
    (regs_x86_64::DX, 1),
    (regs_x86_64::CX, 2),
    (regs_x86_64::BX, 3),
    (regs_x86_64::SI, 4),
    (regs_x86_64::DI, 5),
    (regs_x86_64::BP, 6),
    (regs_x86_64::R8, 8),
    (regs_x86_64::R8 + 1, 9),
    (regs_x86_64::R8 + 2, 10),
    (regs_x86_64::R8 + 3, 11),
    (regs_x86_64::R8 + 4, 12),
    (regs_x86_64::R8 + 5, 13),
    (regs_x86_64::R8 + 6, 14),
    (regs_x86_64::R15, 15),
];

impl SampleRegs for X86_64 {
    fn from_sample(regs: &UserRegs<'_>) -> Option<X86_64Regs> {
        let ip = regs.get(regs_x86_64::IP)?;
        let mut file = RegFile::new(regs.get(regs_x86_64::SP)?);
        for (perf, dwarf) in X86_64_MAP {
            if let Some(v) = regs.get(perf) {
                file.set(dwarf, Some(v));
            }
        }
        Some(X86_64Regs { ip, file })
    }

    fn sp(regs: &X86_64Regs) -> u64 {
        regs.file.sp
    }

    fn from_ip_sp(ip: u64, sp: u64) -> X86_64Regs {
        X86_64Regs {
            ip,
            file: RegFile::new(sp),
        }
    }
}

impl SampleRegs for Aarch64 {
    fn from_sample(regs: &UserRegs<'_>) -> Option<Aarch64Regs> {
        let pc = regs.get(regs_aarch64::PC)?;
        let mut file = RegFile::new(regs.get(regs_aarch64::SP)?);
        // perf numbers x0 to x30 as DWARF does.
        for reg in 0..=regs_aarch64::LR {
            if let Some(v) = regs.get(reg) {
                file.set(reg as u16, Some(v));
            }
        }
        Some(Aarch64Regs { pc, file })
    }

    fn sp(regs: &Aarch64Regs) -> u64 {
        regs.file.sp
    }

    fn from_ip_sp(pc: u64, sp: u64) -> Aarch64Regs {
        Aarch64Regs {
            pc,
            file: RegFile::new(sp),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(values: &[u64]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_ne_bytes()).collect()
    }

    #[test]
    fn x86_64_maps_perf_numbers_to_dwarf_numbers() {
        // Values are 100 + perf number, in mask order.
        let mask = regs_x86_64::UNWIND_MASK;
        let values: Vec<u64> = (0..64)
            .filter(|r| mask & (1 << r) != 0)
            .map(|r| 100 + r)
            .collect();
        let bytes = words(&values);
        let regs = regs_from_sample::<X86_64>(&UserRegs::new(2, mask, &bytes)).unwrap();
        assert_eq!(regs.ip, 108);
        assert_eq!(regs.file.sp, 107);
        assert_eq!(regs.file.get(0), Some(100)); // rax
        assert_eq!(regs.file.get(1), Some(103)); // rdx
        assert_eq!(regs.file.get(3), Some(101)); // rbx
        assert_eq!(regs.file.get(6), Some(106)); // rbp
        assert_eq!(regs.file.get(12), Some(120)); // r12
        assert_eq!(regs.file.get(15), Some(123)); // r15
    }

    #[test]
    fn a_smaller_mask_leaves_registers_unknown() {
        let mask = (1 << regs_x86_64::IP) | (1 << regs_x86_64::SP) | (1 << regs_x86_64::BP);
        let bytes = words(&[6, 7, 8]);
        let regs = regs_from_sample::<X86_64>(&UserRegs::new(2, mask, &bytes)).unwrap();
        assert_eq!((regs.ip, regs.file.sp, regs.file.get(6)), (8, 7, Some(6)));
        assert_eq!(regs.file.get(3), None);
        let no_ip = UserRegs::new(2, 1 << regs_x86_64::SP, &bytes[..8]);
        assert!(regs_from_sample::<X86_64>(&no_ip).is_none());
    }

    #[test]
    fn aarch64_takes_every_register() {
        let mask = regs_aarch64::UNWIND_MASK;
        let values: Vec<u64> = (0..33).map(|r| 1000 + r).collect();
        let bytes = words(&values);
        let regs = regs_from_sample::<Aarch64>(&UserRegs::new(2, mask, &bytes)).unwrap();
        assert_eq!((regs.pc, regs.file.sp), (1032, 1031));
        assert_eq!(regs.file.get(19), Some(1019));
        assert_eq!(regs.file.get(29), Some(1029));
        assert_eq!(regs.file.get(30), Some(1030));
    }
}
