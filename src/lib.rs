//! flamegraph: a profiler whose pipeline reads from the folder names:
//! record → unwind → symbolize → fold → render.
//!
//! See `DESIGN.md` in the shared docs and `README.md` for the data flow.

pub mod cargo;
pub mod elf;
pub mod error;
pub mod fold;
pub mod frame;
#[doc(hidden)]
pub mod fuzzing;
pub mod options;
pub mod perf;
pub mod process;
pub mod record;
pub mod render;
pub mod stacks;
pub mod symbolize;
pub mod unwind;

pub use error::{Error, Result};
pub mod cli;
pub mod run;
