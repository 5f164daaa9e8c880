//! Stopping a recording like a shell would.
//!
//! While a backend records, SIGINT, SIGTERM and SIGHUP are caught (with `signal-hook`) and become
//! [`StopRequest`]s; a signal that was ignored when we started (`nohup`, a background job of a
//! script) stays ignored. A [`Stopper`] then stops the launched program (or the external
//! recorder): the first request forwards the signal to its process and to its process group when
//! that is not ours (a program that called `setsid` never sees the terminal's Ctrl-C); a second
//! request, or a program still alive a grace period after the last signal, escalates to SIGTERM
//! and then SIGKILL. After the recording, the signals that had their default action get it back.
//!
//! `--duration SECS` is a stop request too: when the time is up, [`StopRequests::take`] returns a
//! SIGINT request as if the user had typed Ctrl-C (a launched program is stopped, an attached or
//! system-wide recording just ends), so every backend stops by one mechanism.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::{getpgid, getpgrp, Pid};
use signal_hook::iterator::exfiltrator::WithRawSiginfo;
use signal_hook::iterator::SignalsInfo;
use signal_hook::SigId;

/// The signals that stop a recording.
const STOP_SIGNALS: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

/// `si_code` of a signal the Linux kernel sent on its own behalf; the terminal's Ctrl-C and
/// hangup arrive with it.
const SI_KERNEL: i32 = 0x80;

/// A request to stop recording.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StopRequest {
    /// The signal received; SIGINT for the caller's stop flag.
    pub signal: Signal,
    /// A Ctrl-C typed on the terminal: the terminal's foreground process group received it too,
    /// so a program still in our process group already has it.
    pub from_terminal: bool,
}

impl StopRequest {
    /// A SIGINT sent by us (the stop flag, `--duration`), handled as a Ctrl-C.
    const SIGINT_FROM_US: StopRequest = StopRequest {
        signal: Signal::SIGINT,
        from_terminal: false,
    };
}

/// The hooks alive in this process, and the actions that give the stop signals their default
/// disposition back while none is (the registry of `signal-hook` never uninstalls its handler,
/// so "default" is emulated).
#[derive(Default)]
struct Registry {
    active: usize,
    /// Whether each signal had its default action before we first caught it (only those get
    /// it back: a caller's own handler keeps running through signal-hook's chain).
    was_default: HashMap<i32, bool>,
    defaults: HashMap<i32, SigId>,
}

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    static REGISTRY: std::sync::OnceLock<Mutex<Registry>> = std::sync::OnceLock::new();
    let registry = REGISTRY.get_or_init(Default::default);
    registry.lock().unwrap_or_else(|e| e.into_inner())
}

/// The current action of `signal` (`SIG_DFL`, `SIG_IGN` or a handler): a query only, which
/// signal-hook does not offer; handlers are installed through signal-hook alone.
fn disposition(signal: i32) -> libc::sighandler_t {
    // SAFETY: a query (null new action) into a zeroed sigaction, which is a valid value.
    unsafe {
        let mut current: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(signal, std::ptr::null(), &mut current) != 0 {
            return libc::SIG_DFL;
        }
        current.sa_sigaction
    }
}

/// Whether the terminal sent `signal` to its whole foreground process group: a Ctrl-C (the
/// kernel's own SIGINT on Linux; other systems code it differently, so we forward there). Not a
/// hangup: the kernel sends that SIGHUP to the session leader alone (the foreground group gets
/// one only when the session leader exits), so a kernel SIGHUP is always forwarded.
fn from_terminal(signal: i32, code: i32) -> bool {
    cfg!(target_os = "linux") && signal == libc::SIGINT && code == SI_KERNEL
}

/// The stop signals caught for the hooks' lifetime.
struct Hooks {
    signals: Option<SignalsInfo<WithRawSiginfo>>,
    caught: Vec<i32>,
}

impl Hooks {
    fn install() -> io::Result<Hooks> {
        let mut registry = registry();
        let caught: Vec<i32> = STOP_SIGNALS
            .iter()
            .map(|&s| s as i32)
            .filter(|&s| disposition(s) != libc::SIG_IGN)
            .collect();
        for &signal in &caught {
            let default = || disposition(signal) == libc::SIG_DFL;
            registry.was_default.entry(signal).or_insert_with(default);
        }
        let signals = SignalsInfo::with_exfiltrator(&caught, WithRawSiginfo)?;
        registry.active += 1;
        for signal in &caught {
            if let Some(id) = registry.defaults.remove(signal) {
                signal_hook::low_level::unregister(id);
            }
        }
        Ok(Hooks {
            signals: Some(signals),
            caught,
        })
    }

    fn pending(&mut self) -> impl Iterator<Item = StopRequest> + '_ {
        let infos = self.signals.as_mut().map(|s| s.pending());
        infos.into_iter().flatten().filter_map(|info| {
            Some(StopRequest {
                signal: Signal::try_from(info.si_signo).ok()?,
                from_terminal: from_terminal(info.si_signo, info.si_code),
            })
        })
    }
}

impl Drop for Hooks {
    fn drop(&mut self) {
        // Unregisters our actions; the signals are then no-ops until the default comes back.
        drop(self.signals.take());
        let mut registry = registry();
        registry.active -= 1;
        if registry.active > 0 {
            return;
        }
        for &signal in &self.caught {
            if registry.was_default.get(&signal) != Some(&true) {
                continue;
            }
            let restore = move || {
                let _ = signal_hook::low_level::emulate_default_handler(signal);
            };
            // SAFETY: emulate_default_handler is async-signal-safe (it resets the action and
            // re-raises the signal); the closure captures only a copied integer.
            if let Ok(id) = unsafe { signal_hook::low_level::register(signal, restore) } {
                registry.defaults.insert(signal, id);
            }
        }
    }
}

/// Where stop requests come from: the stop signals and a caller's flag.
pub struct StopRequests {
    hooks: Option<Hooks>,
    external: Option<Arc<AtomicBool>>,
    external_seen: bool,
    /// When `--duration` is up (`None`: no duration, or already requested).
    deadline: Option<Instant>,
    /// Whether the duration's request was made.
    elapsed: bool,
    queue: VecDeque<StopRequest>,
}

impl StopRequests {
    /// Catches the stop signals if `handle_signals` (until dropped; only one `StopRequests` may
    /// catch them at a time), and watches `external` if given.
    pub fn new(handle_signals: bool, external: Option<Arc<AtomicBool>>) -> io::Result<Self> {
        let hooks = if handle_signals {
            Some(Hooks::install()?)
        } else {
            None
        };
        Ok(StopRequests {
            hooks,
            external,
            external_seen: false,
            deadline: None,
            elapsed: false,
            queue: VecDeque::new(),
        })
    }

    /// Also requests a stop (a SIGINT, as Ctrl-C) once `duration` has passed from now
    /// (`--duration`); `None` sets no time limit.
    pub fn with_duration(mut self, duration: Option<Duration>) -> Self {
        self.deadline = duration.map(|d| Instant::now() + d);
        self
    }

    /// Whether the stop came from `--duration` running out (its request was returned by
    /// [`StopRequests::take`]).
    pub fn duration_elapsed(&self) -> bool {
        self.elapsed
    }

    /// The next request: each signal received, and the external flag's first `true`.
    pub fn take(&mut self) -> Option<StopRequest> {
        if let Some(hooks) = &mut self.hooks {
            self.queue.extend(hooks.pending());
        }
        let external = self
            .external
            .as_ref()
            .is_some_and(|flag| flag.load(Ordering::SeqCst));
        if external && !self.external_seen {
            self.external_seen = true;
            self.queue.push_back(StopRequest::SIGINT_FROM_US);
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            self.deadline = None;
            self.elapsed = true;
            self.queue.push_back(StopRequest::SIGINT_FROM_US);
        }
        self.queue.pop_front()
    }

    /// Whether a process that ended with `status` was stopped with us although no request was
    /// seen yet: the terminal's Ctrl-C or hangup reaches it and us at once, and another of our
    /// threads may still be handling our copy. Waits up to 100 ms, for deaths by a stop signal
    /// only.
    pub fn stopped_with(&mut self, status: std::process::ExitStatus) -> bool {
        use std::os::unix::process::ExitStatusExt;
        let stop_signal = |s| STOP_SIGNALS.iter().any(|&stop| stop as i32 == s);
        if !status.signal().is_some_and(stop_signal) {
            return false;
        }
        let deadline = Instant::now() + Duration::from_millis(100);
        loop {
            if self.take().is_some() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// How hard a [`Stopper`] has pushed so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Running,
    Asked,
    Terminated,
    Killed,
}

/// Stops one process (and its process group when it left ours) in steps: the requested signal,
/// then SIGTERM, then SIGKILL.
#[derive(Debug)]
pub struct Stopper {
    pid: Pid,
    grace: Duration,
    level: Level,
    /// When the next step is due without a new request.
    deadline: Option<Instant>,
    /// The last signal sent.
    last: Option<Signal>,
}

impl Stopper {
    /// A stopper for our child `pid`, escalating `grace` after each signal.
    pub fn new(pid: i32, grace: Duration) -> Stopper {
        Stopper {
            pid: Pid::from_raw(pid),
            grace,
            level: Level::Running,
            deadline: None,
            last: None,
        }
    }

    /// Handles a stop request: the first one forwards the signal, the next ones escalate.
    pub fn request(&mut self, request: StopRequest) {
        if self.level == Level::Running {
            self.level = Level::Asked;
            self.send(request.signal, request.from_terminal);
        } else {
            self.escalate();
        }
    }

    /// Escalates when the grace period after the last signal has passed; call it regularly
    /// while the process runs.
    pub fn tick(&mut self) {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            self.escalate();
        }
    }

    /// The next step: SIGTERM, unless that is what the process already got, then SIGKILL.
    fn escalate(&mut self) {
        let next = match self.level {
            Level::Running | Level::Asked if self.last != Some(Signal::SIGTERM) => {
                (Level::Terminated, Signal::SIGTERM)
            }
            _ => (Level::Killed, Signal::SIGKILL),
        };
        self.level = next.0;
        self.send(next.1, false);
    }

    /// Sends `signal` to the process and to its process group if that is not ours; with
    /// `from_terminal`, only where the terminal's signal did not already arrive. SIGKILL also
    /// goes to every descendant (a recorder waiting for a stubborn workload, a shell's children
    /// still in our group).
    fn send(&mut self, signal: Signal, from_terminal: bool) {
        if signal == Signal::SIGKILL {
            for pid in descendants(self.pid) {
                let _ = kill(pid, signal);
            }
        }
        self.deadline = Some(Instant::now() + self.grace);
        self.last = Some(signal);
        let group = getpgid(Some(self.pid)).ok();
        let own_group = getpgrp();
        let in_our_group = group == Some(own_group);
        if !(from_terminal && in_our_group) {
            // The process is our unreaped child, so its pid cannot name another process.
            let _ = kill(self.pid, signal);
        }
        if let Some(group) = group.filter(|&g| g != own_group && g.as_raw() > 1) {
            let _ = killpg(group, signal);
        }
    }
}

/// At most this many descendants are collected (a fork bomb must not keep us busy).
const MAX_DESCENDANTS: usize = 4096;

/// The descendants of `pid` from `/proc/PID/task/TID/children`, best effort (Linux).
fn descendants(pid: Pid) -> Vec<Pid> {
    let mut found = Vec::new();
    let mut next = 0;
    let mut parent = pid;
    loop {
        for child in children(parent) {
            if found.len() < MAX_DESCENDANTS && !found.contains(&child) {
                found.push(child);
            }
        }
        let Some(&pid) = found.get(next) else {
            return found;
        };
        parent = pid;
        next += 1;
    }
}

/// The children of every thread of `pid`.
fn children(pid: Pid) -> Vec<Pid> {
    use std::io::Read;
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for task in tasks.flatten() {
        let mut text = String::new();
        let file = std::fs::File::open(task.path().join("children"));
        // Kernel-generated, but still read with a bound.
        if file
            .and_then(|f| f.take(64 * 1024).read_to_string(&mut text))
            .is_ok()
        {
            let parsed = text.split_ascii_whitespace().filter_map(|p| p.parse().ok());
            pids.extend(parsed.map(Pid::from_raw));
        }
    }
    pids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_external_flag_is_one_request() {
        let flag = Arc::new(AtomicBool::new(false));
        let mut stop = StopRequests::new(false, Some(flag.clone())).unwrap();
        assert_eq!(stop.take(), None);
        flag.store(true, Ordering::SeqCst);
        let request = stop.take().unwrap();
        assert_eq!(request.signal, Signal::SIGINT);
        assert!(!request.from_terminal);
        assert_eq!(stop.take(), None);
    }

    #[test]
    fn a_duration_is_one_sigint_request_when_it_is_up() {
        let mut stop = StopRequests::new(false, None)
            .unwrap()
            .with_duration(Some(Duration::from_millis(50)));
        assert_eq!(stop.take(), None);
        assert!(!stop.duration_elapsed());
        std::thread::sleep(Duration::from_millis(60));
        let request = stop.take().unwrap();
        assert_eq!(request.signal, Signal::SIGINT);
        assert!(!request.from_terminal);
        assert!(stop.duration_elapsed());
        assert_eq!(stop.take(), None);
    }

    #[test]
    fn descendants_are_found_through_proc() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & sleep 30 & wait"])
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let pid = Pid::from_raw(child.id() as i32);
        while descendants(pid).len() < 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let found = descendants(pid);
        for &pid in &found {
            let _ = kill(pid, Signal::SIGKILL);
        }
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(found.len(), 2, "{found:?}");
    }

    #[test]
    fn a_stopper_escalates_to_sigterm_then_sigkill() {
        // A child that ignores SIGINT and SIGTERM.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "trap '' INT TERM; while :; do sleep 0.05; done"])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let mut stopper = Stopper::new(child.id() as i32, Duration::from_millis(200));
        let request = StopRequest {
            signal: Signal::SIGINT,
            from_terminal: false,
        };
        stopper.request(request);
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "the child outlived the stopper");
            stopper.tick();
            std::thread::sleep(Duration::from_millis(20));
        };
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        assert_eq!(stopper.level, Level::Killed);
    }
}
