//! Frame keys → profile frames: each unique key is symbolized once, into the function that
//! contains the address followed by the functions inlined there (innermost last).

use std::sync::Arc;

use super::sample::FrameKey;
use crate::process::{ModuleKind, Processes};
use crate::profile::{fold::KERNEL_SUFFIX, Frame, FrameId, FrameKind, ProfileBuilder};
use crate::symbolize::Symbolizer;

/// Symbolizes frame keys into the profile's frame table, caching each key's frames.
pub(super) struct Resolver<'a> {
    pub symbolizer: &'a mut Symbolizer,
    pub processes: &'a Processes,
    names: Vec<String>,
}

impl<'a> Resolver<'a> {
    pub(super) fn new(symbolizer: &'a mut Symbolizer, processes: &'a Processes) -> Self {
        Resolver {
            symbolizer,
            processes,
            names: Vec::new(),
        }
    }

    /// Pushes the frames of `key`, outermost first, interned in `builder`.
    pub(super) fn frames(
        &mut self,
        key: FrameKey,
        builder: &mut ProfileBuilder,
        out: &mut Vec<FrameId>,
    ) {
        self.names.clear();
        let (kind, module, address) = match key {
            FrameKey::Thread(_) => return,
            FrameKey::Kernel(address) => {
                self.symbolizer.symbolize_kernel(address, &mut self.names);
                (FrameKind::Kernel, None, Some(address))
            }
            FrameKey::Module { module, offset } => {
                let mut file = None;
                let path = match self.processes.modules.get(module) {
                    ModuleKind::File(path) => {
                        self.symbolizer
                            .symbolize_file(path, offset, &mut self.names);
                        file = Some(path);
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
                let build_id = || file.and_then(|f| crate::elf::build_id_hex(f));
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
            out.push(builder.frame(Frame {
                function,
                module,
                address,
                file: None,
                line: None,
                inline: i > 0,
                kind,
            }));
        }
    }
}
