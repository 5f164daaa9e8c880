//! A symbolizer working on a thread while samples arrive: it loads `/proc/kallsyms` and parses
//! each module's debug info as soon as a first sample lands in it, so that little is left to do
//! when recording ends (what the user waits for).

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use rustc_hash::FxHashMap;

use crate::process::ModuleId;
use crate::symbolize::{KernelSymbols, SymbolizeOptions, Symbolizer};

/// How long the end of a recording waits for the symbolizer thread to finish its work before
/// doing that work itself at normal priority.
const WARMER_GRACE: std::time::Duration = std::time::Duration::from_millis(100);

/// Names of `(module, file offset)`s the thread symbolized ahead of the end (outermost first,
/// as [`Symbolizer::symbolize_file_as`] gives them).
pub(super) type Presymbolized = FxHashMap<(ModuleId, u64), Vec<String>>;

/// File to read, path as recorded, file offset; and the module whose names to keep, if any.
type Request = (PathBuf, PathBuf, u64, Option<ModuleId>);

pub(super) struct Warmer {
    requests: Option<mpsc::Sender<Request>>,
    thread: Option<std::thread::JoinHandle<(Symbolizer, Presymbolized)>>,
    /// Per module id: already sent.
    sent: Vec<bool>,
    /// The thread yields to everything else, and the end does not wait long for it (live
    /// recordings); otherwise (a file is read) it runs at normal priority and is waited for.
    background: bool,
}

impl Warmer {
    /// Starts the thread; it loads `/proc/kallsyms` too when `load_kallsyms`. A `background`
    /// thread runs at nice 19 (a live recording: the profiled program comes first); otherwise
    /// (a perf.data file: nothing to yield to) at normal priority, on the other core while
    /// records are read.
    pub(super) fn start(mut symbolizer: Symbolizer, load_kallsyms: bool, background: bool) -> Self {
        let (tx, rx) = mpsc::channel::<Request>();
        let thread = std::thread::Builder::new()
            .name("flamegraph-symbolizer".into())
            .spawn(move || {
                if background {
                    lower_priority();
                }
                // Reading /proc/kallsyms is slow in the kernel: overlap it with debug info too.
                let kernel = load_kallsyms.then(|| {
                    std::thread::spawn(move || {
                        if background {
                            lower_priority();
                        }
                        KernelSymbols::load()
                    })
                });
                let mut scratch = Vec::new();
                let mut names = Presymbolized::default();
                for (file, path, offset, keep) in rx {
                    scratch.clear();
                    symbolizer.symbolize_file_as(&file, &path, offset, &mut scratch);
                    if let Some(module) = keep {
                        names.insert((module, offset), std::mem::take(&mut scratch));
                    }
                }
                if let Some(Ok(kernel)) = kernel.map(|k| k.join()) {
                    symbolizer.set_kernel_symbols(kernel);
                }
                (symbolizer, names)
            })
            .ok();
        Warmer {
            requests: thread.is_some().then_some(tx),
            thread,
            sent: Vec::new(),
            background,
        }
    }

    /// A warmer that does nothing (its symbolizer is made fresh at the end).
    pub(super) fn idle() -> Self {
        Warmer {
            requests: None,
            thread: None,
            sent: Vec::new(),
            background: true,
        }
    }

    /// Asks for `module`'s debug info to be parsed, once per module.
    pub(super) fn warm(&mut self, module: ModuleId, file: &Path, path: &Path, offset: u64) {
        let i = module.0 as usize;
        if self.sent.len() <= i {
            self.sent.resize(i + 1, false);
        }
        if self.sent[i] {
            return;
        }
        self.sent[i] = true;
        if let Some(tx) = &self.requests {
            let _ = tx.send((file.to_path_buf(), path.to_path_buf(), offset, None));
        }
    }

    /// Asks for the names of `offset` in `module` to be found now and kept for the end (the
    /// caller asks once per address). Only for a thread that is waited for (not `background`):
    /// a live recording's thread may be abandoned.
    pub(super) fn presymbolize(&mut self, module: ModuleId, file: &Path, path: &Path, offset: u64) {
        if let (Some(tx), false) = (&self.requests, self.background) {
            let request = (file.to_path_buf(), path.to_path_buf(), offset, Some(module));
            let _ = tx.send(request);
        }
    }

    /// The warmed symbolizer, or a fresh one if the thread could not run or is not done within
    /// [`WARMER_GRACE`]: at nice 19 on a machine whose cores are busy it gets almost no CPU
    /// (a 0.3 s program took 148 s to draw at load 27), and waiting for it would make the
    /// tool's normal-priority thread wait for the lowest priority there is. The abandoned
    /// thread ends on its own (its request channel is closed) or with the process. A thread
    /// that is not `background` runs at normal priority and is waited for. Also gives the names
    /// found by [`Warmer::presymbolize`].
    pub(super) fn finish(mut self, options: SymbolizeOptions) -> (Symbolizer, Presymbolized) {
        self.requests = None;
        let thread = self.thread.take();
        if !self.background {
            return (thread.and_then(|t| t.join().ok()))
                .unwrap_or_else(|| (Symbolizer::new(options), Presymbolized::default()));
        }
        let deadline = std::time::Instant::now() + WARMER_GRACE;
        while thread.as_ref().is_some_and(|t| !t.is_finished())
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        thread
            .filter(|t| t.is_finished())
            .and_then(|t| t.join().ok())
            .unwrap_or_else(|| (Symbolizer::new(options), Presymbolized::default()))
    }
}

/// Makes the calling thread yield to everything else (nice 19): the symbolizer thread must
/// never take CPU from the profiled program or from the thread draining the ring buffers; on a
/// busy machine its work simply waits for the end of the recording.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid has no preconditions; setpriority only changes this thread's nice
        // value (raising it needs no privilege) and reports failure through its return value,
        // which we may ignore: the thread then just runs at normal priority.
        unsafe {
            let tid = libc::gettid();
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19);
        }
    }
}

/// A new symbolizer for the collector's options.
pub fn symbolizer(inline: bool) -> Symbolizer {
    Symbolizer::new(SymbolizeOptions::new(inline, true))
}
