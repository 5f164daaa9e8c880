//! Signals like a shell: SIGHUP, a second signal, a program that ignores signals, Ctrl-C typed on
//! a terminal to a program that left for its own session, a killed profiler and a program killed
//! by someone else. Real runs of the built binary on `fixtures/c/stubborn.c`, which prints its pid
//! and spins in `spin_stubborn` until a signal it does not ignore ends it.

mod util;

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use util::{fixture, flamegraph, Folded, KillOnDrop, Variant};

/// Deadline for anything that should take seconds; generous for a loaded machine.
const TIMEOUT: Duration = Duration::from_secs(120);

/// Profiler options when a test gives none (the native backend): cheap stacks at a low rate, so
/// that a profiler starved by a loaded machine still keeps up (these tests are about signals).
const LIGHT: [&str; 4] = ["-F", "199", "--call-graph", "fp"];

/// How long the program runs under the profiler before a test signals.
const RECORD_FOR: Duration = Duration::from_millis(1000);

/// A profiler running `stubborn`, with the program's pid.
struct Profiled {
    profiler: KillOnDrop,
    /// `stubborn`'s pid, from its `ready PID` line.
    program: i32,
    /// Everything the profiler and the program wrote to the terminal or stderr.
    output: mpsc::Receiver<String>,
    dir: tempfile::TempDir,
}

impl Profiled {
    fn folded_path(&self) -> PathBuf {
        self.dir.path().join("out.folded")
    }

    /// Waits (with [`TIMEOUT`]) until the profiler exits; asserts the program is gone too and
    /// returns the profiler's status and output.
    fn finish(&mut self) -> (ExitStatus, String) {
        let status = wait_deadline(&mut self.profiler.0, Instant::now() + TIMEOUT);
        let Some(status) = status else {
            let text: String = self.output.try_iter().collect();
            panic!("the profiler did not end within {TIMEOUT:?}\n{text}");
        };
        // The readers end once the profiler and the program closed their ends (unless the
        // program outlived the profiler: then the deadline ends this).
        let mut text = String::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Ok(line) = self
            .output
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            text.push_str(&line);
        }
        assert_gone(self.program, &text);
        (status, text)
    }

    /// Waits as [`Profiled::finish`], then asserts the exit status is `success` and the graph
    /// was written; returns the output.
    fn finish_with_graph(&mut self, success: bool) -> String {
        let (status, output) = self.finish();
        assert_eq!(status.success(), success, "{status}\n{output}");
        self.assert_graph(&output);
        output
    }

    /// Asserts the graph was written and shows the program's spinning function.
    fn assert_graph(&self, output: &str) {
        let path = self.folded_path();
        assert!(path.exists(), "no graph at {}\n{output}", path.display());
        let folded = Folded::read(&path);
        let share = folded.share_of_frame("spin_stubborn");
        assert!(
            share > 0.8,
            "spin_stubborn in {share} of the samples\n{}",
            folded.summary()
        );
    }
}

impl Drop for Profiled {
    fn drop(&mut self) {
        // A failed test must not leave the program spinning (it gives up after 120 s anyway).
        if is_running(self.program) {
            util::send_signal(self.program as u32, libc::SIGKILL);
        }
    }
}

fn wait_deadline(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `pid` names a live process (not gone, not a zombie waiting for a reaper).
fn is_running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesized command name.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X')),
        Err(_) => false,
    }
}

/// Asserts `pid` stops running within a few seconds.
fn assert_gone(pid: i32, context: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while is_running(pid) {
        assert!(
            Instant::now() < deadline,
            "the profiled program (pid {pid}) outlived the profiler\n{context}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends lines read from `reader` to `tx`, and the pid of the first `ready PID` line to `ready`.
fn read_output(
    reader: impl Read + Send + 'static,
    tx: mpsc::Sender<String>,
) -> mpsc::Receiver<i32> {
    let (ready_tx, ready) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(reader);
        let mut line = String::new();
        // A pty master reads EIO once every slave end is closed: that ends the loop too.
        while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
            if let Some(pid) = line.trim().strip_prefix("ready ") {
                let _ = ready_tx.send(pid.parse::<i32>().unwrap());
            }
            let _ = tx.send(std::mem::take(&mut line));
        }
    });
    ready
}

/// The program's pid once it printed `ready PID`.
fn wait_ready(ready: &mpsc::Receiver<i32>, output: &mpsc::Receiver<String>) -> i32 {
    ready.recv_timeout(TIMEOUT).unwrap_or_else(|_| {
        panic!(
            "the program never got ready\n{}",
            output.try_iter().collect::<String>()
        )
    })
}

/// The profiler command for `stubborn ARGS`, writing `out.folded` in `dir`.
fn command(dir: &Path, profiler_args: &[&str], program_args: &[&str]) -> Command {
    let stubborn = fixture("stubborn", Variant::CFramePointers);
    let mut cmd = flamegraph();
    let profiler_args = if profiler_args.is_empty() {
        &LIGHT[..]
    } else {
        profiler_args
    };
    cmd.current_dir(dir)
        .args(profiler_args)
        .args(["-o", "out.folded", "--"])
        .arg(stubborn)
        .args(program_args);
    cmd
}

/// Starts the profiler on `stubborn ARGS` in its own process group (as a shell starts a job),
/// and waits until the program runs.
fn start(profiler_args: &[&str], program_args: &[&str]) -> Profiled {
    let dir = tempfile::tempdir().unwrap();
    let mut child = command(dir.path(), profiler_args, program_args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let (tx, output) = mpsc::channel();
    let ready = read_output(child.stdout.take().unwrap(), tx.clone());
    let _ = read_output(child.stderr.take().unwrap(), tx);
    let profiler = KillOnDrop(child);
    let program = wait_ready(&ready, &output);
    std::thread::sleep(RECORD_FOR);
    Profiled {
        profiler,
        program,
        output,
        dir,
    }
}

fn signal_profiler(run: &Profiled, signal: i32) {
    util::send_signal(run.profiler.0.id(), signal);
}

#[test]
fn sighup_stops_the_program_and_draws() {
    let mut run = start(&[], &[]);
    signal_profiler(&run, libc::SIGHUP);
    run.finish_with_graph(true);
}

#[test]
fn a_second_sigterm_kills_a_program_that_ignores_sigint_and_sigterm() {
    let mut run = start(&[], &["ignore-int", "ignore-term", "ignore-hup"]);
    signal_profiler(&run, libc::SIGTERM);
    // Well within the grace period, so the second signal is what ends it.
    std::thread::sleep(Duration::from_millis(500));
    signal_profiler(&run, libc::SIGTERM);
    run.finish_with_graph(true);
}

#[test]
fn a_program_that_ignores_sigint_is_terminated_after_a_grace_period() {
    let mut run = start(&[], &["ignore-int"]);
    signal_profiler(&run, libc::SIGINT);
    run.finish_with_graph(true);
}

#[test]
fn a_program_that_ignores_everything_is_killed_after_two_grace_periods() {
    let mut run = start(&[], &["ignore-int", "ignore-term", "ignore-hup"]);
    signal_profiler(&run, libc::SIGINT);
    run.finish_with_graph(true);
}

#[test]
fn an_outside_sigterm_to_the_program_fails_the_run() {
    let mut run = start(&[], &[]);
    util::send_signal(run.program as u32, libc::SIGTERM);
    let output = run.finish_with_graph(false);
    assert!(
        output.contains("the profiled program was killed by signal 15 (SIGTERM)"),
        "{output}"
    );
    assert!(output.contains("--ignore-status"), "{output}");
}

#[test]
fn a_killed_profiler_takes_its_program_along() {
    let mut run = start(&[], &["ignore-int", "ignore-term", "ignore-hup"]);
    signal_profiler(&run, libc::SIGKILL);
    let (status, _) = run.finish();
    assert_eq!(status.signal(), Some(libc::SIGKILL));
}

/// Spawns the profiler on `stubborn ARGS` as the session leader of a new pseudo-terminal (as a
/// login shell's foreground job, in the terminal's foreground process group); returns it with
/// the terminal's master end (the only one) and the run's directory.
fn spawn_on_terminal(program_args: &[&str]) -> (KillOnDrop, File, tempfile::TempDir) {
    let (master, slave) = open_terminal();
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(dir.path(), &[], program_args);
    cmd.stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave);
    // SAFETY: setsid and ioctl are async-signal-safe; fd 0 is the pty's slave end by then.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()?;
            if libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = KillOnDrop(cmd.spawn().unwrap());
    // `cmd` holds the last slave end here: the profiler's copies must be the only ones left.
    drop(cmd);
    (child, master, dir)
}

/// A new pseudo-terminal: its master and slave ends, both close-on-exec from the start, so that
/// processes that other tests start meanwhile hold no copy (a copy of the master would keep the
/// terminal from hanging up).
fn open_terminal() -> (File, File) {
    use nix::fcntl::OFlag;
    let master =
        nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC).unwrap();
    nix::pty::grantpt(&master).unwrap();
    nix::pty::unlockpt(&master).unwrap();
    let slave_path = nix::pty::ptsname_r(&master).unwrap();
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(slave_path)
        .unwrap();
    let master = File::from(std::os::fd::OwnedFd::from(master));
    (master, slave)
}

/// [`spawn_on_terminal`], then waits until the program runs; returns the run and the terminal's
/// master end, where writing `\x03` types Ctrl-C.
fn start_on_terminal(program_args: &[&str]) -> (Profiled, File) {
    let (profiler, master, dir) = spawn_on_terminal(program_args);
    let (tx, output) = mpsc::channel();
    let ready = read_output(master.try_clone().unwrap(), tx);
    let program = wait_ready(&ready, &output);
    std::thread::sleep(RECORD_FOR);
    let run = Profiled {
        profiler,
        program,
        output,
        dir,
    };
    (run, master)
}

/// Closing the terminal (its master end) hangs it up: the kernel sends SIGHUP to the session
/// leader, the profiler, alone; the program must get it from the profiler.
#[test]
fn a_terminal_hangup_stops_the_program_and_draws() {
    let (profiler, master, dir) = spawn_on_terminal(&[]);
    let mut reader = BufReader::new(master);
    let mut line = String::new();
    let program = loop {
        line.clear();
        let n = reader.read_line(&mut line).unwrap_or(0);
        assert!(n > 0, "the program never got ready");
        if let Some(pid) = line.trim().strip_prefix("ready ") {
            break pid.parse().unwrap();
        }
    };
    let mut run = Profiled {
        profiler,
        program,
        output: mpsc::channel().1,
        dir,
    };
    std::thread::sleep(RECORD_FOR);
    drop(reader);
    run.finish_with_graph(true);
}

/// The program moves to its own session, so the Ctrl-C typed on the terminal reaches only the
/// profiler, which must pass it on.
#[test]
fn ctrl_c_on_a_terminal_reaches_a_program_that_called_setsid() {
    let (mut run, mut terminal) = start_on_terminal(&["setsid"]);
    terminal.write_all(b"\x03").unwrap();
    run.finish_with_graph(true);
}

/// A program in the terminal's foreground group gets the terminal's Ctrl-C itself: the profiler
/// must not send it a second one.
#[test]
fn ctrl_c_on_a_terminal_reaches_a_program_in_our_group_once() {
    let (mut run, mut terminal) = start_on_terminal(&["count-int"]);
    terminal.write_all(b"\x03").unwrap();
    let output = run.finish_with_graph(true);
    assert!(output.contains("got 1 SIGINT"), "{output}");
}

/// A SIGINT sent to the profiler alone (not by the terminal) is forwarded, once.
#[test]
fn sigint_to_the_profiler_alone_is_forwarded_once() {
    let mut run = start(&[], &["count-int"]);
    signal_profiler(&run, libc::SIGINT);
    let output = run.finish_with_graph(true);
    assert!(output.contains("got 1 SIGINT"), "{output}");
}

#[test]
fn perf_cli_stops_on_sighup_and_draws() {
    if !util::require_perf() {
        return;
    }
    let mut run = start(&["--backend", "perf-cli"], &[]);
    signal_profiler(&run, libc::SIGHUP);
    run.finish_with_graph(true);
}

#[test]
fn perf_cli_second_sigterm_ends_a_program_that_ignores_it() {
    if !util::require_perf() {
        return;
    }
    let mut run = start(
        &["--backend", "perf-cli"],
        &["ignore-int", "ignore-term", "ignore-hup"],
    );
    signal_profiler(&run, libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(500));
    signal_profiler(&run, libc::SIGTERM);
    // perf waits for its workload, which ignores perf's SIGTERM: the second signal kills perf and
    // its workload. Whether perf left a readable perf.data is up to perf; the profiler must end
    // (`finish` has a deadline) and take the program along (`finish` checks).
    run.finish();
}
