//! Frame keys → profile frames: each unique key is symbolized once, into the function that
//! contains the address followed by the functions inlined there (innermost last).

use std::sync::Arc;

use super::sample::FrameKey;
use crate::process::{ModuleKind, Processes};
use crate::profile::{fold::KERNEL_SUFFIX, Frame, FrameId, FrameKind, ProfileBuilder};
use crate::symbolize::{SourceLocation, SymbolFrame, Symbolizer};

/// Symbolizes frame keys into the profile's frame table, caching each key's frames.
pub(super) struct Resolver<'a> {
    pub symbolizer: &'a mut Symbolizer,
    pub processes: &'a Processes,
    /// Look up source lines of frames in files (`--lines`).
    lines: bool,
    names: Vec<String>,
    /// Name every kernel frame `[kernel]` (the recording's kernel is unknown here).
    pub kernel_unnamed: bool,
    /// Some kernel frame was resolved.
    pub kernel_frames: bool,
    /// The recorded paths of modules no file with the recorded build-id was found for.
    pub unmatched: std::collections::BTreeSet<std::path::PathBuf>,
    /// With `lines`: per entry of `names`, its location if known.
    locations: Vec<Option<SourceLocation>>,
    symbol_frames: Vec<SymbolFrame>,
    /// Names found while records were read (see `warmer::Warmer::presymbolize`), taken from
    /// here instead of symbolizing again.
    pub presymbolized: super::warmer::Presymbolized,
}

impl<'a> Resolver<'a> {
    pub(super) fn new(
        symbolizer: &'a mut Symbolizer,
        processes: &'a Processes,
        lines: bool,
    ) -> Self {
        Resolver {
            symbolizer,
            processes,
            lines,
            names: Vec::new(),
            kernel_unnamed: false,
            kernel_frames: false,
            unmatched: Default::default(),
            locations: Vec::new(),
            symbol_frames: Vec::new(),
            presymbolized: Default::default(),
        }
    }

    /// Symbolizes `offset` in the file at `path`, found for the file recorded at `display`, into
    /// `names` (and `locations` with `lines`).
    fn symbolize_file(&mut self, path: &std::path::Path, display: &std::path::Path, offset: u64) {
        if !self.lines {
            self.symbolizer
                .symbolize_file_as(path, display, offset, &mut self.names);
            return;
        }
        self.symbol_frames.clear();
        self.symbolizer.symbolize_file_as_with_lines(
            path,
            display,
            offset,
            &mut self.symbol_frames,
        );
        for frame in self.symbol_frames.drain(..) {
            self.names.push(frame.name);
            self.locations.push(frame.location);
        }
    }

    /// Lets go of the symbols and debug info read for `module` (its addresses are all named).
    pub fn release(&mut self, module: crate::process::ModuleId) {
        if let Some(file) = self.processes.modules.file(module) {
            self.symbolizer.release(file);
        }
    }

    /// The frame of a module whose recorded build-id no file here has: `NAME+0xOFFSET`.
    fn unmatched_frame(&mut self, path: &std::path::Path, offset: u64) {
        let name = path.file_name().unwrap_or(path.as_os_str());
        (self.names).push(format!("{}+{offset:#x}", name.to_string_lossy()));
        self.unmatched.insert(path.to_owned());
    }

    /// Pushes the frames of `key`, outermost first, interned in `builder`.
    pub(super) fn frames(
        &mut self,
        key: FrameKey,
        builder: &mut ProfileBuilder,
        out: &mut Vec<FrameId>,
    ) {
        self.names.clear();
        self.locations.clear();
        let (kind, module, address) = match key {
            FrameKey::Thread(_) => return,
            FrameKey::Kernel(address) => {
                self.kernel_frames = true;
                if self.kernel_unnamed {
                    self.names.push("[kernel]".into());
                } else {
                    self.symbolizer.symbolize_kernel(address, &mut self.names);
                }
                (FrameKind::Kernel, None, Some(address))
            }
            FrameKey::Module { module, offset } => {
                let mut file = None;
                let path = match self.processes.modules.get(module) {
                    ModuleKind::File(path) => {
                        file = self.processes.modules.file(module);
                        let known = self.presymbolized.remove(&(module, offset));
                        match (file, known) {
                            (Some(_), Some(names)) if !self.lines => self.names = names,
                            (Some(found), _) => self.symbolize_file(found, path, offset),
                            (None, _) => self.unmatched_frame(path, offset),
                        }
                        path.to_string_lossy().into_owned()
                    }
                    ModuleKind::Vdso => {
                        self.symbolizer.symbolize_vdso(offset, &mut self.names);
                        "[vdso]".to_owned()
                    }
                    ModuleKind::Anonymous => {
                        self.names.push("[anon]".into());
                        "[anon]".to_owned()
                    }
                };
                let build_id = || file.and_then(crate::elf::build_id_hex);
                (
                    FrameKind::User,
                    Some(builder.module(&path, build_id)),
                    Some(offset),
                )
            }
            FrameKey::Jit { pid, address } => {
                if !self.symbolizer.symbolize_jit(pid, address, &mut self.names) {
                    self.names.push("[anon]".into());
                }
                (FrameKind::Jit, None, Some(address))
            }
            FrameKey::Unknown => {
                self.names.push("[unknown]".into());
                (FrameKind::Marker, None, None)
            }
            FrameKey::Truncated => {
                self.names.push("[truncated]".into());
                (FrameKind::Marker, None, None)
            }
            FrameKey::StackSwitch => {
                self.names.push("[stack switch]".into());
                (FrameKind::Marker, None, None)
            }
            FrameKey::OffCpu => {
                self.names.push(crate::profile::OFF_CPU_FRAME.into());
                (FrameKind::Marker, None, None)
            }
            FrameKey::Preempted => {
                self.names.push(crate::profile::PREEMPTED_FRAME.into());
                (FrameKind::Marker, None, None)
            }
        };
        for (i, name) in self.names.iter().enumerate() {
            let name = match kind {
                FrameKind::Kernel => name.strip_suffix(KERNEL_SUFFIX).unwrap_or(name),
                _ => name,
            };
            let function: Arc<str> = crate::symbolize::names::tidy(name).into();
            let location = self.locations.get(i).cloned().flatten();
            out.push(builder.frame(Frame {
                function,
                module,
                address,
                line: location.as_ref().map(|l| l.line),
                file: location.map(|l| l.file),
                inline: i > 0,
                kind,
            }));
        }
    }
}
