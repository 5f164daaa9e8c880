//! Real recordings with the built-in Linux sampler (needs perf_event_open: run as root or with
//! `kernel.perf_event_paranoid` <= 2). A small C fixture covers threads, fork and spinning.
#![cfg(target_os = "linux")]

mod util;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use flamegraph::perf::{regs_x86_64, Record};
use flamegraph::record::native::{
    record, CallGraph, NativeError, NativeOptions, RecordSummary, Target,
};

const FIXTURE_C: &str = r#"
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The calling thread's CPU time: spins last that much CPU time however loaded the machine is,
   so they always give the same number of samples. */
static double thread_cpu(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static volatile unsigned long sink;

__attribute__((noinline)) static void spin(double seconds) {
    double end = thread_cpu() + seconds;
    while (thread_cpu() < end) {
        for (int i = 0; i < 10000; i++) sink += i;
    }
}

static double thread_seconds = 0.4;
static void *thread_main(void *arg) { spin(thread_seconds); return arg; }

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "spin";
    if (strcmp(mode, "threads") == 0) {
        if (argc > 2) thread_seconds = atof(argv[2]);
        pthread_t t[3];
        for (int i = 0; i < 3; i++) pthread_create(&t[i], 0, thread_main, 0);
        for (int i = 0; i < 3; i++) pthread_join(t[i], 0);
    } else if (strcmp(mode, "main-exits") == 0) {
        pthread_t t[2];
        if (argc > 2) thread_seconds = atof(argv[2]);
        if (argc > 3) spin(atof(argv[3]));
        for (int i = 0; i < 2; i++) pthread_create(&t[i], 0, thread_main, 0);
        pthread_exit(0);
    } else if (strcmp(mode, "fork") == 0) {
        pid_t child = fork();
        spin(0.4);
        if (child == 0) _exit(0);
        waitpid(child, 0, 0);
    } else {
        spin(argc > 2 ? atof(argv[2]) : 0.5);
    }
    return 0;
}
"#;

/// Builds the fixture once per process. The scenario tests run this binary again in a child
/// process, which builds it again while other tests of the parent may be executing it: gcc writes
/// to a name of this process's own and the result is renamed into place (an atomic swap; writing
/// the final path directly made a concurrent exec fail with EACCES while the linker had the file
/// open without its execute bit).
fn fixture() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let pid = std::process::id();
        let source = dir.join(format!("native_fixture.{pid}.c"));
        let built = dir.join(format!("native_fixture.{pid}.tmp"));
        let binary = dir.join("native_fixture");
        std::fs::write(&source, FIXTURE_C).unwrap();
        let status = Command::new("gcc")
            .args(["-O1", "-g", "-fno-omit-frame-pointer", "-pthread", "-o"])
            .arg(&built)
            .arg(&source)
            .status()
            .unwrap();
        assert!(status.success());
        std::fs::rename(&built, &binary).unwrap();
        let _ = std::fs::remove_file(&source);
        binary
    })
    .clone()
}

/// An owned digest of one record.
#[derive(Debug, Clone)]
enum Rec {
    Sample {
        pid: u32,
        tid: u32,
        time: u64,
        user_frames: Vec<u64>,
        stack_len: usize,
        regs_ip_sp: Option<(Option<u64>, Option<u64>)>,
    },
    Comm {
        pid: u32,
        name: String,
        exec: bool,
    },
    Mmap {
        pid: u32,
        filename: String,
        exec: bool,
    },
    Fork {
        pid: u32,
        ppid: u32,
    },
    Other,
}

fn digest(record: Record<'_>) -> Rec {
    match record {
        Record::Sample(s) => Rec::Sample {
            pid: s.pid,
            tid: s.tid,
            time: s.time,
            user_frames: s.callchain.user().collect(),
            stack_len: s.user_stack.len(),
            regs_ip_sp: s
                .user_regs
                .map(|r| (r.get(regs_x86_64::IP), r.get(regs_x86_64::SP))),
        },
        Record::Comm(c) => Rec::Comm {
            pid: c.pid,
            name: String::from_utf8_lossy(c.name).into_owned(),
            exec: c.exec,
        },
        Record::Mmap2(m) => Rec::Mmap {
            pid: m.pid,
            filename: String::from_utf8_lossy(m.filename).into_owned(),
            exec: m.prot & 4 != 0,
        },
        Record::Fork(f) => Rec::Fork {
            pid: f.pid,
            ppid: f.ppid,
        },
        _ => Rec::Other,
    }
}

fn options(target: Target, call_graph: CallGraph) -> NativeOptions {
    let mut options = NativeOptions::new(target);
    options.call_graph = call_graph;
    options.handle_signals = false;
    options
}

fn launch(program: &str, args: &[&str]) -> Target {
    Target::Launch {
        program: program.into(),
        args: args.iter().map(OsString::from).collect(),
    }
}

fn run(options: &NativeOptions) -> Result<(RecordSummary, Vec<Rec>), NativeError> {
    let mut records = Vec::new();
    let summary = record(options, &mut |_, record| records.push(digest(record)))?;
    Ok((summary, records))
}

fn samples(records: &[Rec]) -> Vec<&Rec> {
    records
        .iter()
        .filter(|r| matches!(r, Rec::Sample { .. }))
        .collect()
}

fn sample_pids(records: &[Rec]) -> BTreeMap<u32, BTreeSet<u32>> {
    let mut pids: BTreeMap<u32, BTreeSet<u32>> = BTreeMap::new();
    for r in records {
        if let Rec::Sample { pid, tid, .. } = r {
            pids.entry(*pid).or_default().insert(*tid);
        }
    }
    pids
}

fn assert_time_ordered(records: &[Rec]) {
    let times: Vec<u64> = records
        .iter()
        .filter_map(|r| match r {
            Rec::Sample { time, .. } => Some(*time),
            _ => None,
        })
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "samples out of order"
    );
}

#[test]
fn launch_shell_loop_with_frame_pointers() {
    let script = "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done";
    let (summary, records) = run(&options(
        launch("/bin/sh", &["-c", script]),
        CallGraph::FramePointer,
    ))
    .unwrap();
    assert!(summary.samples > 0, "{summary:?}");
    assert!(summary.exit_status.unwrap().success());
    assert!(!summary.interrupted);
    assert_eq!(summary.event, "cpu-clock");
    assert!(summary.kernel_frames, "root may sample the kernel");

    let comm_pid = records
        .iter()
        .find_map(|r| match r {
            Rec::Comm {
                pid,
                name,
                exec: true,
            } if name == "sh" => Some(*pid),
            _ => None,
        })
        .expect("exec COMM record for sh");
    let shell = std::fs::canonicalize("/bin/sh").unwrap();
    assert!(records.iter().any(|r| matches!(r,
        Rec::Mmap { pid, filename, exec: true } if *pid == comm_pid && *filename == shell.to_string_lossy())));
    let pids = sample_pids(&records);
    assert_eq!(
        pids.keys().copied().collect::<Vec<_>>(),
        [comm_pid],
        "{pids:?}"
    );
    assert_time_ordered(&records);
    let all = samples(&records);
    let with_user = all
        .iter()
        .filter(|r| matches!(r, Rec::Sample { user_frames, .. } if !user_frames.is_empty()))
        .count();
    assert!(
        with_user * 10 >= all.len() * 9,
        "{with_user} of {} samples have user frames",
        all.len()
    );
    assert_eq!(summary.samples as usize, all.len());
}

#[test]
fn dwarf_mode_copies_stack_and_registers() {
    let target = launch(fixture().to_str().unwrap(), &["spin", "0.3"]);
    let (summary, records) = run(&options(target, CallGraph::Dwarf { stack_size: 8192 })).unwrap();
    assert!(summary.samples > 0);
    let mut checked = 0;
    for r in samples(&records) {
        let Rec::Sample {
            user_frames,
            stack_len,
            regs_ip_sp: Some((ip, sp)),
            ..
        } = r
        else {
            continue;
        };
        assert!(*stack_len > 0 && *stack_len <= 8192);
        assert!(sp.is_some());
        // The user part comes from the copied stack; the kernel's frame-pointer walk comes too
        // (it carries a DWARF walk on past a stack switch) and starts at the sampled ip.
        assert_eq!(
            user_frames.first().copied(),
            *ip,
            "user callchain from the ip"
        );
        assert!(ip.is_some_and(|ip| ip != 0), "regs carry the user ip");
        checked += 1;
    }
    assert!(checked * 10 >= samples(&records).len() * 9, "{checked}");
}

/// An 8-page buffer with ~4 KiB records: most records wrap around its end at some point.
#[test]
fn tiny_buffers_wrap_records_without_corruption() {
    let target = launch(fixture().to_str().unwrap(), &["spin", "0.3"]);
    let mut opts = options(target, CallGraph::Dwarf { stack_size: 4000 });
    opts.buffer_pages = Some(8);
    let (summary, records) = run(&opts).unwrap();
    assert!(summary.samples > 20, "{summary:?}");
    assert_eq!(summary.malformed, 0);
    for r in samples(&records) {
        if let Rec::Sample {
            user_frames,
            stack_len,
            regs_ip_sp: Some((ip, _)),
            ..
        } = r
        {
            assert_eq!(user_frames.first().copied(), *ip);
            assert!(ip.is_some_and(|ip| ip != 0));
            assert!(*stack_len > 0);
        }
    }
    assert_time_ordered(&records);
}

#[test]
fn threads_are_followed() {
    let target = launch(fixture().to_str().unwrap(), &["threads"]);
    let (summary, records) = run(&options(target, CallGraph::FramePointer)).unwrap();
    let pids = sample_pids(&records);
    assert_eq!(pids.len(), 1, "{pids:?}");
    let tids = pids.values().next().unwrap();
    assert!(
        tids.len() >= 3,
        "samples from threads {tids:?} ({summary:?})"
    );
}

fn thread_cpu_time() -> Duration {
    // SAFETY: getrusage fills the zeroed struct we pass.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_THREAD, &mut usage);
        usage
    };
    let micros = usage.ru_utime.tv_sec * 1_000_000
        + usage.ru_utime.tv_usec
        + usage.ru_stime.tv_sec * 1_000_000
        + usage.ru_stime.tv_usec;
    Duration::from_micros(micros as u64)
}

/// Polls `done` every 10 ms until it holds; panics naming `what` after 60 s.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "waited 60 s for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `/proc/PID/stat` split after the command name (fields 3.. of proc(5)), if `pid` exists.
fn proc_stat(pid: u32) -> Option<(String, Vec<u64>)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (head, tail) = stat.rsplit_once(") ")?;
    let comm = head.split_once(" (")?.1.to_owned();
    // Field 3 (state) is a letter: keep positions by mapping it to 0.
    let fields = tail
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    Some((comm, fields))
}

/// The CPU time (user + system) process `pid` has used, 0 when it is gone.
fn cpu_seconds(pid: u32) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    proc_stat(pid).map_or(0.0, |(_, f)| (f[11] + f[12]) as f64 / ticks)
}

/// Waits until `pid` runs the fixture (its exec is done): attaching earlier would see the
/// test binary's name and maps, which a fixed sleep cannot rule out on a loaded machine.
fn wait_for_exec(pid: u32) {
    wait_until("the fixture's exec", || {
        proc_stat(pid).is_some_and(|(comm, _)| comm == "native_fixture")
    });
}

/// Waits until the `native_fixture ARGS` child of this process (the other tests running at
/// the same time start the fixture with other arguments) has used `seconds` of CPU time, so
/// it runs and has been sampled, however loaded the machine is.
fn wait_for_fixture_child_cpu(args: &[&str], seconds: f64) {
    let me = std::process::id() as u64;
    let tail: Vec<u8> = args
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    wait_until("the fixture to run", || {
        std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse().ok()) else {
                return false;
            };
            let ours =
                proc_stat(pid).is_some_and(|(comm, f)| comm == "native_fixture" && f[1] == me);
            ours && std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.ends_with(&tail))
                && cpu_seconds(pid) >= seconds
        })
    });
}

/// When the main thread exits first, its events hang up; the recorder must neither stop nor spin.
#[test]
fn main_thread_exiting_first_neither_stops_nor_spins() {
    let target = launch(fixture().to_str().unwrap(), &["main-exits"]);
    let (cpu_before, wall) = (thread_cpu_time(), std::time::Instant::now());
    let (summary, records) = run(&options(target, CallGraph::FramePointer)).unwrap();
    let (cpu, wall) = (thread_cpu_time() - cpu_before, wall.elapsed());
    assert!(summary.exit_status.unwrap().success());
    assert!(wall >= Duration::from_millis(350), "{wall:?}");
    assert!(cpu * 4 < wall, "recorder used {cpu:?} of CPU in {wall:?}");
    let tids = &sample_pids(&records).into_values().next().unwrap();
    assert!(tids.len() >= 2, "{tids:?}");
}

/// Attached while the main thread still runs; it exits first, hanging up the ring it owns.
#[test]
fn attach_survives_the_main_thread_exiting() {
    let mut child = Command::new(fixture())
        .args(["main-exits", "1.2", "0.4"])
        .spawn()
        .unwrap();
    wait_for_exec(child.id());
    let opts = options(
        Target::Attach {
            pids: vec![child.id()],
        },
        CallGraph::FramePointer,
    );
    let (cpu_before, wall) = (thread_cpu_time(), std::time::Instant::now());
    let result = run(&opts);
    let (cpu, wall) = (thread_cpu_time() - cpu_before, wall.elapsed());
    child.wait().unwrap();
    let (summary, records) = result.unwrap();
    assert!(!summary.interrupted);
    assert!(wall >= Duration::from_millis(800), "{wall:?}");
    assert!(cpu * 4 < wall, "recorder used {cpu:?} of CPU in {wall:?}");
    let tids = &sample_pids(&records).into_values().next().unwrap();
    assert!(tids.len() >= 3, "{tids:?}");
}

#[test]
fn forked_children_are_followed() {
    let target = launch(fixture().to_str().unwrap(), &["fork"]);
    let (_, records) = run(&options(target, CallGraph::FramePointer)).unwrap();
    let pids = sample_pids(&records);
    assert_eq!(pids.len(), 2, "{pids:?}");
    let (&parent, _) = pids.iter().next().unwrap();
    assert!(records
        .iter()
        .any(|r| matches!(r, Rec::Fork { pid, ppid } if *ppid == parent && *pid != parent)));
    assert_time_ordered(&records);
}

#[test]
fn exec_failure_is_a_clean_error() {
    let err = run(&options(
        launch("./definitely-not-here", &[]),
        CallGraph::FramePointer,
    ))
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot run ./definitely-not-here: No such file or directory (os error 2)"
    );
    let err = run(&options(
        launch("no-such-program-in-path", &[]),
        CallGraph::FramePointer,
    ))
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot run no-such-program-in-path: No such file or directory (os error 2)"
    );
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let not_executable = dir.join("not-executable.txt");
    std::fs::write(&not_executable, "hello").unwrap();
    let err = run(&options(
        launch(not_executable.to_str().unwrap(), &[]),
        CallGraph::FramePointer,
    ))
    .unwrap_err();
    assert!(
        err.to_string().ends_with("Permission denied (os error 13)"),
        "{err}"
    );
}

#[test]
fn frequency_above_the_kernel_limit_is_refused() {
    let max: u32 = std::fs::read_to_string("/proc/sys/kernel/perf_event_max_sample_rate")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut opts = options(launch("/bin/true", &[]), CallGraph::FramePointer);
    opts.frequency = max + 1;
    let err = run(&opts).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, NativeError::FrequencyTooHigh { .. }));
    assert!(
        text.contains(&format!("{} Hz", max + 1)) && text.contains(&format!("-F {max}")),
        "{text}"
    );
    assert!(text.contains("perf_event_max_sample_rate"), "{text}");
}

#[test]
fn attach_until_stopped_leaves_the_process_running() {
    let fixture = fixture();
    let mut child = Command::new(&fixture).args(["spin", "20"]).spawn().unwrap();
    wait_for_exec(child.id());
    let stop = Arc::new(AtomicBool::new(false));
    let flip = stop.clone();
    let pid = child.id();
    let timer = std::thread::spawn(move || {
        // A fixed 0.2 s of the target's CPU time while attached, not of wall time.
        let start = cpu_seconds(pid);
        wait_until("the attached process to run", || {
            cpu_seconds(pid) >= start + 0.2
        });
        flip.store(true, Ordering::SeqCst);
    });
    let mut opts = options(
        Target::Attach {
            pids: vec![child.id()],
        },
        CallGraph::FramePointer,
    );
    opts.stop = Some(stop);
    let result = run(&opts);
    timer.join().unwrap();
    let still_running = child.try_wait().unwrap().is_none();
    child.kill().unwrap();
    child.wait().unwrap();
    let (summary, records) = result.unwrap();
    assert!(still_running);
    assert!(summary.interrupted);
    assert!(summary.samples > 0);
    let first_sample = records
        .iter()
        .position(|r| matches!(r, Rec::Sample { .. }))
        .unwrap();
    let seeded = &records[..first_sample];
    assert!(seeded.iter().any(|r| matches!(r, Rec::Comm { pid, name, exec: false } if *pid == child.id() && name == "native_fixture")));
    assert!(seeded.iter().any(
        |r| matches!(r, Rec::Mmap { filename, .. } if *filename == fixture.to_string_lossy())
    ));
    assert_eq!(
        sample_pids(&records).keys().copied().collect::<Vec<_>>(),
        [child.id()]
    );
    assert_time_ordered(&records);
}

#[test]
fn attach_follows_every_thread() {
    let mut child = Command::new(fixture())
        .args(["threads", "1.0"])
        .spawn()
        .unwrap();
    let task_dir = format!("/proc/{}/task", child.id());
    wait_until("the fixture's 3 threads", || {
        std::fs::read_dir(&task_dir).is_ok_and(|d| d.count() == 4)
    });
    let opts = options(
        Target::Attach {
            pids: vec![child.id()],
        },
        CallGraph::FramePointer,
    );
    let result = run(&opts);
    child.wait().unwrap();
    let (_, records) = result.unwrap();
    let pids = sample_pids(&records);
    assert_eq!(pids.keys().copied().collect::<Vec<_>>(), [child.id()]);
    let tids = &pids[&child.id()];
    assert!(tids.len() >= 3, "samples from threads {tids:?}");
    let comms = records
        .iter()
        .filter(|r| matches!(r, Rec::Comm { exec: false, .. }))
        .count();
    assert_eq!(comms, 4, "one synthesized COMM per thread");
    assert_time_ordered(&records);
}

#[test]
fn attach_ends_when_the_target_exits() {
    let mut child = Command::new(fixture())
        .args(["spin", "0.5"])
        .spawn()
        .unwrap();
    let opts = options(
        Target::Attach {
            pids: vec![child.id()],
        },
        CallGraph::FramePointer,
    );
    let (summary, _) = run(&opts).unwrap();
    child.wait().unwrap();
    assert!(!summary.interrupted);
    assert!(summary.samples > 0);
    assert!(summary.exit_status.is_none());
}

#[test]
fn attach_to_a_missing_pid_fails() {
    let opts = options(
        Target::Attach {
            pids: vec![u32::MAX - 1],
        },
        CallGraph::FramePointer,
    );
    let err = run(&opts).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "cannot attach to pid {}: No such process (os error 3)",
            u32::MAX - 1
        )
    );
}

#[test]
fn stop_in_launch_mode_interrupts_the_child() {
    let stop = Arc::new(AtomicBool::new(false));
    let flip = stop.clone();
    let timer = std::thread::spawn(move || {
        wait_for_fixture_child_cpu(&["spin", "30"], 0.1);
        flip.store(true, Ordering::SeqCst);
    });
    let mut opts = options(
        launch(fixture().to_str().unwrap(), &["spin", "30"]),
        CallGraph::FramePointer,
    );
    opts.stop = Some(stop);
    let (summary, _) = run(&opts).unwrap();
    timer.join().unwrap();
    assert!(summary.interrupted);
    assert_eq!(summary.exit_status.unwrap().signal(), Some(libc::SIGINT));
    assert!(summary.samples > 0);
}

/// Runs [`unprivileged_scenario`] in a copy of this test binary as user `nobody`, where
/// `perf_event_paranoid` = 2 allows user-space sampling of one's own processes only and locked
/// memory for ring buffers is limited.
#[test]
fn unprivileged_user_gets_user_frames_and_smaller_buffers() {
    let paranoid: i32 = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    if !util::require_root("switching to user nobody") {
        return;
    }
    if paranoid != 2 {
        // A setting of the machine, not a missing tool: skipped even in CI.
        util::print_skip(&format!(
            "needs kernel.perf_event_paranoid = 2, not {paranoid}"
        ));
        return;
    }
    use std::os::unix::process::CommandExt;
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "unprivileged_scenario",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("NATIVE_RECORD_UNPRIVILEGED", "1")
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout) + String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("1 passed"), "{text}");
}

/// Only does something when started by the test above.
#[test]
fn unprivileged_scenario() {
    if std::env::var_os("NATIVE_RECORD_UNPRIVILEGED").is_none() {
        return;
    }
    let script = "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done";
    let mut opts = options(
        launch("/bin/sh", &["-c", script]),
        CallGraph::Dwarf { stack_size: 16384 },
    );
    opts.buffer_pages = Some(4096); // 16 MiB: above the locked-memory limit, so it must shrink
    opts.verbose = true;
    let mut kernel_frames = 0;
    let summary = record(&opts, &mut |_, record| {
        if let Record::Sample(s) = record {
            kernel_frames += s.callchain.kernel().count();
        }
    })
    .unwrap();
    assert!(summary.samples > 0, "{summary:?}");
    assert!(!summary.kernel_frames);
    assert_eq!(kernel_frames, 0);

    // Pid 1 belongs to root: the error names that cause, not perf_event_paranoid.
    let opts = options(Target::Attach { pids: vec![1] }, CallGraph::FramePointer);
    let err = run(&opts).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("owned by another user") && text.contains("--root"),
        "{text}"
    );
}

/// Runs [`signal_scenario`] in a copy of this test binary, so a real SIGTERM can hit the recorder;
/// the second SIGTERM, after recording, must kill it (the default action is back).
#[test]
fn sigterm_to_the_recorder_stops_it_and_interrupts_the_program() {
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "signal_scenario",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("NATIVE_RECORD_SIGNAL", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout) + String::from_utf8_lossy(&output.stderr);
    assert!(text.contains("recorded, now SIGTERM"), "{text}");
    assert_eq!(output.status.signal(), Some(libc::SIGTERM), "{text}");
}

/// Only does something when started by the test above.
#[test]
fn signal_scenario() {
    if std::env::var_os("NATIVE_RECORD_SIGNAL").is_none() {
        return;
    }
    let mut opts = NativeOptions::new(launch(fixture().to_str().unwrap(), &["spin", "20"]));
    opts.call_graph = CallGraph::FramePointer;
    let sender = std::thread::spawn(|| {
        wait_for_fixture_child_cpu(&["spin", "20"], 0.1);
        // SAFETY: signalling our own process; the recorder's handler is installed by then
        // (before the fixture is started).
        unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
    });
    let (summary, _) = run(&opts).unwrap();
    sender.join().unwrap();
    assert!(summary.interrupted);
    // The signal is forwarded as it came.
    assert_eq!(summary.exit_status.unwrap().signal(), Some(libc::SIGTERM));
    assert!(summary.samples > 0);
    // The default SIGTERM action is back: this kills the process.
    eprintln!("recorded, now SIGTERM");
    // SAFETY: signalling our own process.
    unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
    std::thread::sleep(Duration::from_secs(10));
    panic!("still alive 10 s after SIGTERM");
}
