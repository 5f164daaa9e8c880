//! Addresses with meaning, shared by every pipeline stage.
//!
//! An address is either in the profiled process's virtual memory (an *AVMA*) or in a file's own
//! address space (an *SVMA*, what the ELF headers and DWARF talk about). Frames below the top of a
//! stack hold *return addresses*: the instruction after the call. Unwind rules and line info must be
//! looked up at `ra - 1` for those, except right after a signal frame. Keeping the two kinds apart
//! in the type means nobody has to remember that.

/// An address found on a stack, in the profiled process's address space (AVMA).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CodeAddress {
    /// The exact instruction being executed (the sampled `ip`, or a frame interrupted by a signal).
    InstructionPointer(u64),
    /// A return address: the instruction after a call.
    ReturnAddress(u64),
}

impl CodeAddress {
    /// The raw address as found on the stack or in the registers.
    pub fn address(self) -> u64 {
        match self {
            CodeAddress::InstructionPointer(a) | CodeAddress::ReturnAddress(a) => a,
        }
    }

    /// The address to look up unwind rules and symbols at: `ra - 1` for return addresses, so the
    /// lookup lands inside the call instruction rather than on whatever follows it.
    pub fn lookup_address(self) -> u64 {
        match self {
            CodeAddress::InstructionPointer(a) => a,
            CodeAddress::ReturnAddress(a) => a.saturating_sub(1),
        }
    }
}

/// Whether a frame runs in the kernel or in user space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Space {
    Kernel,
    User,
}
