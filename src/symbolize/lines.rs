//! Source lines for `--lines`: the file and line of each frame at an address, from the DWARF
//! line tables, read with `addr2line` over the sections the name index already loaded.
//!
//! Names never come from here (see `dwarf/`); this only adds locations, and only when asked:
//! the context is built on a module's first location lookup, so the default path never parses a
//! line table. For an inline chain, the innermost frame gets the line of the address and each
//! outer frame the call site (`DW_AT_call_file`/`DW_AT_call_line`) of the inlined call it
//! contains: what `addr2line::Context::find_frames` reports.

use std::collections::HashMap;
use std::sync::Arc;

use gimli::Reader;

/// Where a frame's code is: a source file (as DWARF gives it, joined with the unit's
/// compilation directory) and a line number.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SourceLocation {
    /// The source file's path.
    pub file: Arc<str>,
    /// The line, counted from 1.
    pub line: u32,
}

/// Line lookups in one module.
pub(crate) struct SourceLines<R: Reader> {
    context: addr2line::Context<R>,
    /// Each file name once, shared by every frame in it.
    files: HashMap<String, Arc<str>>,
}

impl<R: Reader> SourceLines<R> {
    /// A context over `dwarf` (shared with the name index). `None` if its units cannot be read.
    pub(crate) fn new(dwarf: Arc<gimli::Dwarf<R>>) -> Option<Self> {
        Some(SourceLines {
            context: addr2line::Context::from_arc_dwarf(dwarf).ok()?,
            files: HashMap::new(),
        })
    }

    /// Pushes the location of each frame at `svma`, outermost first (the function, then the
    /// calls inlined into it, innermost last), `None` where a frame has no file or line.
    pub(crate) fn locations(&mut self, svma: u64, out: &mut Vec<Option<SourceLocation>>) {
        let first = out.len();
        let Ok(mut frames) = self.context.find_frames(svma).skip_all_loads() else {
            return;
        };
        // A bad entry ends the chain: the frames read so far are still right.
        while let Ok(Some(frame)) = frames.next() {
            let location = frame.location.and_then(|l| {
                let (file, line) = (l.file?, l.line.filter(|&n| n > 0)?);
                let file = match self.files.get(file) {
                    Some(f) => Arc::clone(f),
                    None => {
                        let f: Arc<str> = file.into();
                        self.files.insert(file.to_owned(), Arc::clone(&f));
                        f
                    }
                };
                Some(SourceLocation { file, line })
            });
            out.push(location);
        }
        // addr2line gives the innermost frame first.
        out[first..].reverse();
    }
}
