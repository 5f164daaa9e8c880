//! Stack unwinding of copied user stacks with DWARF CFI (gimli) and frame pointers.
