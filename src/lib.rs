//! flamegraph: a profiler whose pipeline reads from the folder names:
//! record → unwind → symbolize → fold → render.
//!
//! See `DESIGN.md` in the shared docs and `README.md` for the data flow.

pub mod cargo;
pub mod elf;
pub mod frame;
pub mod perf;
pub mod record;
pub mod symbolize;
pub mod unwind;
