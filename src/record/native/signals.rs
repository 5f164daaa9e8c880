//! Stop requests: SIGINT/SIGTERM while recording, or a caller's flag.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Set by the signal handler; swapped back to false when a request is taken.
static SIGNALLED: AtomicBool = AtomicBool::new(false);
/// Set by the signal handler for signals sent by a process (not by the terminal's Ctrl-C, which
/// the whole foreground process group, the profiled program included, receives anyway).
static SENT_BY_PROCESS: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(
    _signal: libc::c_int,
    info: *mut libc::siginfo_t,
    _context: *mut libc::c_void,
) {
    // SAFETY: with SA_SIGINFO the kernel passes a valid siginfo_t (null checked anyway).
    let from_terminal = !info.is_null() && unsafe { (*info).si_code } == libc::SI_KERNEL;
    if !from_terminal {
        SENT_BY_PROCESS.store(true, Ordering::SeqCst);
    }
    SIGNALLED.store(true, Ordering::SeqCst);
}

/// A stop request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StopRequest {
    /// Whether a launched program should get a SIGINT from us: false when it was sent by the
    /// terminal, which already signalled the program.
    pub forward: bool,
}

/// SIGINT and SIGTERM handlers installed for the guard's lifetime; the previous ones come back on
/// drop.
struct SignalGuard {
    previous: Vec<(libc::c_int, libc::sigaction)>,
}

impl SignalGuard {
    fn install() -> io::Result<SignalGuard> {
        SIGNALLED.store(false, Ordering::SeqCst);
        SENT_BY_PROCESS.store(false, Ordering::SeqCst);
        let mut guard = SignalGuard {
            previous: Vec::new(),
        };
        for signal in [libc::SIGINT, libc::SIGTERM] {
            // SAFETY: zeroed sigaction structs are valid; the handler only stores to an atomic,
            // which is async-signal-safe; `old` receives the previous action for restoring.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_signal
                    as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void)
                    as usize;
                action.sa_flags = libc::SA_RESTART | libc::SA_SIGINFO;
                libc::sigemptyset(&mut action.sa_mask);
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(signal, &action, &mut old) != 0 {
                    return Err(io::Error::last_os_error());
                }
                guard.previous.push((signal, old));
            }
        }
        Ok(guard)
    }
}

impl Drop for SignalGuard {
    fn drop(&mut self) {
        for (signal, old) in &self.previous {
            // SAFETY: restoring an action that sigaction itself returned.
            unsafe {
                libc::sigaction(*signal, old, std::ptr::null_mut());
            }
        }
    }
}

/// Where stop requests come from.
pub struct StopRequests {
    _guard: Option<SignalGuard>,
    external: Option<Arc<AtomicBool>>,
    external_seen: bool,
}

impl StopRequests {
    /// Installs the signal handlers if `handle_signals`, and watches `external` if given.
    pub fn new(handle_signals: bool, external: Option<Arc<AtomicBool>>) -> io::Result<Self> {
        let guard = if handle_signals {
            Some(SignalGuard::install()?)
        } else {
            None
        };
        Ok(StopRequests {
            _guard: guard,
            external,
            external_seen: false,
        })
    }

    /// A request once per new stop: each signal, and the external flag's first `true`.
    pub fn take(&mut self) -> Option<StopRequest> {
        let signalled = self._guard.is_some() && SIGNALLED.swap(false, Ordering::SeqCst);
        let by_process = signalled && SENT_BY_PROCESS.swap(false, Ordering::SeqCst);
        let external = self
            .external
            .as_ref()
            .is_some_and(|flag| flag.load(Ordering::SeqCst));
        let new_external = external && !self.external_seen;
        self.external_seen |= external;
        (signalled || new_external).then_some(StopRequest {
            forward: by_process || new_external,
        })
    }
}
