//! flamegraph: a profiler whose pipeline reads from the folder names:
//! record → unwind → symbolize → fold → render.
//!
//! The README ("How the native backend works") shows the data flow; each module's doc comment
//! describes its stage.

pub mod cargo;
pub mod collect;
pub mod elf;
pub mod error;
pub mod event;
pub mod fold;
pub mod frame;
#[doc(hidden)]
pub mod fuzzing;
pub mod options;
pub mod output;
pub mod perf;
pub mod process;
pub mod profile;
pub mod progress;
pub mod record;
pub mod sink;
pub mod symbolize;
pub mod unwind;

pub use error::{Error, Result};
pub mod cli;
pub mod run;
