//! Recording backends: each turns a target program into folded stacks or a record stream.

#[cfg(target_os = "linux")]
pub mod native;
