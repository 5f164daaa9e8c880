//! A symbolizer working on a thread while samples arrive: it loads `/proc/kallsyms` and parses
//! each module's debug info as soon as a first sample lands in it, so that little is left to do
//! when recording ends (what the user waits for).
//!
//! The threads read each module apart and only then add it to the shared symbolizer, so that at
//! the end the modules they finished are taken over even when a module is still being read (at
//! nice 19 on a busy machine that can take long): only that one module is read twice, and no
//! finished work is thrown away and redone while its memory is still held.
//!
//! For a perf.data file (not `background`) the threads run at normal priority and are waited
//! for, and the module thread also names the addresses of new stacks while records are read
//! ([`Warmer::presymbolize`]), so the end only collects the names.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};

use rustc_hash::FxHashMap;

use crate::process::ModuleId;
use crate::symbolize::{FilePreparer, KernelSymbols, SymbolizeOptions, Symbolizer};

/// How long the end of a recording waits for the symbolizer thread to finish its work before
/// doing the rest itself at normal priority.
const WARMER_GRACE: std::time::Duration = std::time::Duration::from_millis(100);

/// Names of `(module, file offset)`s the thread symbolized ahead of the end (outermost first,
/// as [`Symbolizer::symbolize_file_as`] gives them).
pub(super) type Presymbolized = FxHashMap<(ModuleId, u64), Vec<String>>;

/// File to read, path as recorded, file offset; and the module whose names to keep, if any.
type Request = (PathBuf, PathBuf, u64, Option<ModuleId>);

/// What the threads fill and the end of the recording takes.
struct Shared {
    symbolizer: Mutex<Symbolizer>,
    /// Set when the symbolizer was taken: the threads stop and keep nothing more.
    taken: AtomicBool,
    presymbolized: Mutex<Presymbolized>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Symbolizer> {
        // A panic of a warming thread leaves a usable cache: every insertion is one call.
        self.symbolizer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `add` on the symbolizer unless it was taken.
    fn add(&self, add: impl FnOnce(&mut Symbolizer)) {
        let mut symbolizer = self.lock();
        if !self.taken.load(Ordering::Acquire) {
            add(&mut symbolizer);
        }
    }

    /// Serves one request of the module thread: reads the module once, and names the address
    /// when asked to keep its names.
    fn serve(&self, preparer: &FilePreparer, (file, path, offset, keep): Request) {
        if !self.lock().has_file(&file) {
            let prepared = preparer.prepare(&file, &path, offset);
            self.add(|symbolizer| symbolizer.adopt(prepared));
        }
        if let Some(module) = keep {
            let mut names = Vec::new();
            self.add(|symbolizer| symbolizer.symbolize_file_as(&file, &path, offset, &mut names));
            let mut kept = self.presymbolized.lock().unwrap_or_else(|e| e.into_inner());
            kept.insert((module, offset), names);
        }
    }
}

pub(super) struct Warmer {
    requests: Option<mpsc::Sender<Request>>,
    /// The module thread and the kallsyms thread.
    threads: Vec<std::thread::JoinHandle<()>>,
    shared: Option<Arc<Shared>>,
    /// The threads yield to everything else, and the end does not wait long for them (live
    /// recordings); otherwise (a file is read) they run at normal priority and are waited for.
    background: bool,
    /// Per module: whether it was sent to the thread already.
    sent: Vec<bool>,
}

impl Warmer {
    /// Starts the threads; they load `/proc/kallsyms` too when `load_kallsyms`. `background`
    /// threads run at nice 19 (a live recording: the profiled program comes first); otherwise
    /// (a perf.data file: nothing to yield to) at normal priority, on the other core while
    /// records are read.
    pub(super) fn start(symbolizer: Symbolizer, load_kallsyms: bool, background: bool) -> Self {
        let (tx, rx) = mpsc::channel::<Request>();
        let preparer = symbolizer.preparer();
        let shared = Arc::new(Shared {
            symbolizer: Mutex::new(symbolizer),
            taken: AtomicBool::new(false),
            presymbolized: Mutex::new(Presymbolized::default()),
        });
        let mut threads = Vec::new();
        let modules = Arc::clone(&shared);
        let spawned = std::thread::Builder::new()
            .name("flamegraph-symbolizer".into())
            .spawn(move || {
                if background {
                    lower_priority();
                }
                for request in rx {
                    if modules.taken.load(Ordering::Acquire) {
                        break;
                    }
                    modules.serve(&preparer, request);
                }
            });
        let Ok(thread) = spawned else {
            return Self::idle();
        };
        threads.push(thread);
        // Reading /proc/kallsyms is slow in the kernel: overlap it with debug info too.
        if load_kallsyms {
            let kernel = Arc::clone(&shared);
            threads.extend(std::thread::Builder::new().spawn(move || {
                if background {
                    lower_priority();
                }
                let symbols = KernelSymbols::load();
                kernel.add(|symbolizer| symbolizer.set_kernel_symbols(symbols));
            }));
        }
        Warmer {
            requests: Some(tx),
            threads,
            shared: Some(shared),
            background,
            sent: Vec::new(),
        }
    }

    /// A warmer that does nothing (its symbolizer is made fresh at the end).
    pub(super) fn idle() -> Self {
        Warmer {
            requests: None,
            threads: Vec::new(),
            shared: None,
            background: true,
            sent: Vec::new(),
        }
    }

    /// Whether [`Warmer::warm`] would still do anything for `module` (checked at every frame).
    #[inline]
    pub(super) fn wants(&self, module: ModuleId) -> bool {
        !self.sent.get(module.0 as usize).is_some_and(|&sent| sent)
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
    /// caller asks once per address). Only for threads that are waited for (not `background`):
    /// a live recording's threads may be abandoned.
    pub(super) fn presymbolize(&mut self, module: ModuleId, file: &Path, path: &Path, offset: u64) {
        if let (Some(tx), false) = (&self.requests, self.background) {
            let request = (file.to_path_buf(), path.to_path_buf(), offset, Some(module));
            let _ = tx.send(request);
        }
    }

    /// The warmed symbolizer and the names found by [`Warmer::presymbolize`]. Threads that are
    /// not `background` run at normal priority and are waited for. Background threads get up to
    /// [`WARMER_GRACE`] to finish, then what they finished is taken as it is: at nice 19 on a
    /// machine whose cores are busy they get almost no CPU (a 0.3 s program took 148 s to draw
    /// at load 27), and waiting for them would make the tool's normal-priority thread wait for
    /// the lowest priority there is. A thread still reading a module drops it when done (its
    /// request channel is closed) and ends.
    pub(super) fn finish(mut self, options: SymbolizeOptions) -> (Symbolizer, Presymbolized) {
        self.requests = None;
        if !self.background {
            for thread in std::mem::take(&mut self.threads) {
                let _ = thread.join();
            }
        }
        let Some(shared) = self.shared.take() else {
            return (Symbolizer::new(options), Presymbolized::default());
        };
        let presymbolized = || {
            let mut kept = shared
                .presymbolized
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            std::mem::take(&mut *kept)
        };
        let symbolizer = self.take_symbolizer(&shared, options);
        (symbolizer, presymbolized())
    }

    /// Takes the symbolizer from `shared` once the threads are done or the grace is over.
    fn take_symbolizer(&self, shared: &Shared, options: SymbolizeOptions) -> Symbolizer {
        let deadline = std::time::Instant::now() + WARMER_GRACE;
        let busy =
            |threads: &[std::thread::JoinHandle<()>]| threads.iter().any(|t| !t.is_finished());
        while busy(&self.threads) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        // The threads hold the lock only to look up or add a module; give a thread that was
        // preempted while holding it the same grace.
        loop {
            let locked = match shared.symbolizer.try_lock() {
                Ok(symbolizer) => Some(symbolizer),
                Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
                Err(std::sync::TryLockError::WouldBlock) => None,
            };
            if let Some(mut symbolizer) = locked {
                shared.taken.store(true, Ordering::Release);
                return std::mem::replace(&mut *symbolizer, Symbolizer::new(options));
            }
            if std::time::Instant::now() >= deadline + WARMER_GRACE {
                shared.taken.store(true, Ordering::Release);
                return Symbolizer::new(options);
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
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
