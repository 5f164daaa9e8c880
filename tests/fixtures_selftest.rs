//! Checks the ground-truth fixtures themselves: that every fixture builds in every variant,
//! behaves as its header comment says (output, exit status, signals), and that the real
//! `perf` (the oracle) sees the shares the fixtures promise. The profiler's own tests rely
//! on these facts, so a failure here means the fixtures, not the profiler, are wrong.

mod util;

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use util::{fixture, Folded, Variant};

const C_FIXTURES: [&str; 8] = [
    "split",
    "inline",
    "syscalls",
    "recurse",
    "plt_signal",
    "busy_forever",
    "exit_code",
    "stubborn",
];
const RUST_FIXTURES: [&str; 1] = ["split"];
const TIMEOUT: Duration = Duration::from_secs(30);

fn run(exe: &Path, args: &[&str]) -> std::process::Output {
    util::run_with_timeout(Command::new(exe).args(args), TIMEOUT)
}

fn stdout_of(exe: &Path, args: &[&str]) -> String {
    let out = run(exe, args);
    assert!(
        out.status.success(),
        "{} {args:?}\n{}",
        exe.display(),
        util::describe_output(&out)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The number after `key=` in `text`.
fn number_after(text: &str, key: &str) -> u64 {
    let start = text
        .find(key)
        .unwrap_or_else(|| panic!("no {key:?} in {text:?}"))
        + key.len();
    let digits: String = text[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().unwrap()
}

#[test]
fn every_fixture_builds_in_every_variant() {
    for name in C_FIXTURES {
        for variant in Variant::C {
            assert!(fixture(name, variant).is_file());
        }
    }
    for name in RUST_FIXTURES {
        for variant in Variant::RUST {
            assert!(fixture(name, variant).is_file());
        }
    }
}

#[test]
fn fixture_builds_are_reused_within_a_process() {
    let first = fixture("exit_code", Variant::CFramePointers);
    let modified = std::fs::metadata(&first).unwrap().modified().unwrap();
    let second = fixture("exit_code", Variant::CFramePointers);
    assert_eq!(first, second);
    assert_eq!(
        modified,
        std::fs::metadata(&second).unwrap().modified().unwrap()
    );
}

#[test]
#[should_panic(expected = "has no source")]
fn a_fixture_without_source_for_the_variant_panics() {
    fixture("busy_forever", Variant::RustFramePointers);
}

#[test]
fn split_runs_in_every_mode_and_variant() {
    for variant in Variant::ALL {
        let exe = fixture("split", variant);
        for mode in ["serial", "threads"] {
            let out = stdout_of(&exe, &[mode, "0.1"]);
            assert!(out.starts_with(&format!("split {mode} rounds=")), "{out}");
            assert!(number_after(&out, "rounds=") > 0, "{out}");
        }
        if !variant.is_rust() {
            let out = stdout_of(&exe, &["fork", "0.1"]);
            assert!(out.contains("split fork child rounds="), "{out}");
            assert!(out.contains("split fork parent rounds="), "{out}");
        }
        assert_eq!(run(&exe, &["bogus", "0.1"]).status.code(), Some(2));
    }
}

#[test]
fn small_fixtures_run_and_report() {
    for variant in Variant::C {
        let inline = stdout_of(&fixture("inline", variant), &["0.1"]);
        assert!(number_after(&inline, "rounds=") > 0, "{inline}");
        let syscalls = stdout_of(&fixture("syscalls", variant), &["0.1"]);
        assert!(number_after(&syscalls, "calls=") > 100, "{syscalls}");
        let recurse = stdout_of(&fixture("recurse", variant), &["300", "0.1"]);
        assert_eq!(recurse, "recurse depth=300\n");
        let plt = stdout_of(&fixture("plt_signal", variant), &["0.3"]);
        assert!(number_after(&plt, "signals=") > 0, "{plt}");
    }
}

#[test]
fn exit_code_exits_with_the_requested_status() {
    let exe = fixture("exit_code", Variant::CFramePointers);
    let start = Instant::now();
    assert_eq!(run(&exe, &["3"]).status.code(), Some(3));
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert_eq!(run(&exe, &["0", "0.05"]).status.code(), Some(0));
    assert_eq!(run(&exe, &["255", "0.05"]).status.code(), Some(255));
    let killed = run(&exe, &["signal", "0.05"]).status;
    assert_eq!(util::killed_by(&killed), Some(libc::SIGKILL));
}

/// Starts busy_forever with `args`, waits for its `ready` line, returns the child.
fn start_busy(args: &[&str]) -> util::KillOnDrop {
    let exe = fixture("busy_forever", Variant::CFramePointers);
    let mut child = util::KillOnDrop(
        Command::new(exe)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    child
}

fn wait_exit(child: &mut util::KillOnDrop) -> std::process::ExitStatus {
    // Generous: a loaded machine may take seconds to run a signal handler.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "the child did not exit within 30 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn busy_forever_is_ready_then_exits_0_on_sigterm() {
    let mut child = start_busy(&[]);
    std::thread::sleep(Duration::from_millis(100));
    assert!(child.0.try_wait().unwrap().is_none(), "exited on its own");
    util::send_signal(child.0.id(), libc::SIGTERM);
    assert_eq!(wait_exit(&mut child).code(), Some(0));
}

#[test]
fn busy_forever_spins_the_requested_threads() {
    let mut child = start_busy(&["3"]);
    let tasks = std::fs::read_dir(format!("/proc/{}/task", child.0.id()))
        .unwrap()
        .count();
    assert_eq!(tasks, 3);
    util::send_signal(child.0.id(), libc::SIGINT);
    assert_eq!(wait_exit(&mut child).code(), Some(0));
}

/// Starts `stubborn ARGS` and waits for its `ready PID` line (its own pid).
fn start_stubborn(args: &[&str]) -> util::KillOnDrop {
    let exe = fixture("stubborn", Variant::CFramePointers);
    let mut child = util::KillOnDrop(
        Command::new(exe)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    let stdout = child.0.stdout.as_mut().unwrap();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    assert_eq!(line, format!("ready {}\n", child.0.id()));
    child
}

#[test]
fn stubborn_ignores_what_it_is_told_and_dies_of_the_rest() {
    let mut child = start_stubborn(&["ignore-int", "ignore-hup"]);
    util::send_signal(child.0.id(), libc::SIGINT);
    util::send_signal(child.0.id(), libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(200));
    assert!(child.0.try_wait().unwrap().is_none(), "ignored signals");
    util::send_signal(child.0.id(), libc::SIGTERM);
    assert_eq!(util::killed_by(&wait_exit(&mut child)), Some(libc::SIGTERM));
}

#[test]
fn stubborn_setsid_leads_its_own_session() {
    let mut child = start_stubborn(&["setsid"]);
    let pid = child.0.id() as i32;
    // SAFETY: getsid and getpgid only read the process table.
    let (sid, pgid) = unsafe { (libc::getsid(pid), libc::getpgid(pid)) };
    assert_eq!((sid, pgid), (pid, pid));
    util::send_signal(child.0.id(), libc::SIGINT);
    assert_eq!(util::killed_by(&wait_exit(&mut child)), Some(libc::SIGINT));
}

#[test]
fn run_with_timeout_kills_a_hung_command() {
    let exe = fixture("busy_forever", Variant::CFramePointers);
    let start = Instant::now();
    // 3 s: long enough for busy_forever to start and print `ready` on a loaded machine.
    let result = std::panic::catch_unwind(|| {
        util::run_with_timeout(&mut Command::new(&exe), Duration::from_secs(3))
    });
    let message = *result.unwrap_err().downcast::<String>().unwrap();
    assert!(message.contains("timed out"), "{message}");
    assert!(message.contains("ready"), "{message}");
    assert!(start.elapsed() < Duration::from_secs(30));
}

// ---- The oracle: the real perf sees the promised shares. ----

fn perf_split(variant: Variant, mode: &str) -> Folded {
    let exe = fixture("split", variant);
    let command = [exe.as_os_str(), OsStr::new(mode), OsStr::new("1")];
    util::perf_folded(&command, &[], &[]).0
}

/// work_a/b/c are on 60/30/10% of the stacks. Frames, not leaves: with inline frames
/// expanded, a Rust leaf can be an inlined core function such as `<u64>::wrapping_mul`.
fn assert_split_shares(folded: &Folded) {
    let name = |f: &str| {
        if folded.share_of_frame(f) > 0.0 {
            f.to_owned()
        } else {
            format!("split::{f}")
        }
    };
    // A point for startup and the driver loop, and the tolerance the sample count supports.
    folded.assert_sampled_frame_share(&name("work_a"), 0.60, 1.0);
    folded.assert_sampled_frame_share(&name("work_b"), 0.30, 1.0);
    folded.assert_sampled_frame_share(&name("work_c"), 0.10, 1.0);
}

#[test]
fn perf_sees_split_60_30_10_serial() {
    if !util::require_perf() {
        return;
    }
    let folded = perf_split(Variant::CFramePointers, "serial");
    assert_split_shares(&folded);
    // Frame pointers in the work functions: the caller is main.
    let under_main = folded.share_where(|s| {
        s.windows(2)
            .any(|w| w[0] == "main" && w[1].starts_with("work_"))
    });
    folded.assert_share("work_* called by main", under_main, 1.0, 2.0);
    folded.assert_share("comm split", folded.roots()[0].1, 1.0, 2.0);
}

#[test]
fn perf_sees_split_60_30_10_threads() {
    if !util::require_perf() {
        return;
    }
    let folded = perf_split(Variant::CFramePointers, "threads");
    assert_split_shares(&folded);
    let under_thread_main = folded.stacks_reaching(|f| f == "thread_main");
    folded.assert_share("stacks through thread_main", under_thread_main, 1.0, 2.0);
}

#[test]
fn perf_sees_split_60_30_10_fork() {
    if !util::require_perf() {
        return;
    }
    assert_split_shares(&perf_split(Variant::CFramePointers, "fork"));
}

#[test]
fn perf_sees_rust_split_60_30_10() {
    if !util::require_perf() {
        return;
    }
    assert_split_shares(&perf_split(Variant::RustFramePointers, "serial"));
}

/// The share of stacks in which `caller` directly calls one of the work functions.
fn share_called_by(folded: &Folded, caller: &str) -> f64 {
    folded.share_where(|s| {
        s.windows(2).any(|w| {
            util::frame_matches(&w[0], caller)
                && ["work_a", "work_b", "work_c"]
                    .iter()
                    .any(|f| w[1].ends_with(f))
        })
    })
}

#[test]
fn perf_dwarf_unwinds_split_without_frame_pointers() {
    if !util::require_perf() {
        return;
    }
    let dwarf = ["--call-graph", "dwarf,16384"];
    let exe = fixture("split", Variant::CNoFramePointers);
    let command = [exe.as_os_str(), OsStr::new("serial"), OsStr::new("0.7")];
    let (folded, _) = util::perf_folded(&command, &dwarf, &[]);
    assert_split_shares(&folded);
    folded.assert_share("called by main", share_called_by(&folded, "main"), 1.0, 2.0);

    let exe = fixture("split", Variant::RustNoFramePointers);
    let command = [exe.as_os_str(), OsStr::new("threads"), OsStr::new("0.5")];
    let (folded, _) = util::perf_folded(&command, &dwarf, &[]);
    assert_split_shares(&folded);
    let by_run_rounds = share_called_by(&folded, "split::run_rounds");
    folded.assert_share("called by run_rounds", by_run_rounds, 1.0, 2.0);
}

#[test]
fn perf_sees_kernel_frames_dominate_syscalls() {
    if !util::require_perf() {
        return;
    }
    let exe = fixture("syscalls", Variant::CFramePointers);
    let (folded, _) = util::perf_folded(
        &[exe.as_os_str(), OsStr::new("0.5")],
        &["--call-graph", "dwarf,16384"],
        &[],
    );
    let kernel = folded.stacks_reaching(|f| f.ends_with("_[k]"));
    assert!(
        kernel >= 0.70,
        "kernel share {kernel}\n{}",
        folded.summary()
    );
    let do_syscalls = folded.share_of_frame("do_syscalls");
    assert!(do_syscalls >= 0.90, "{do_syscalls}\n{}", folded.summary());
}

#[test]
fn perf_sees_300_recurse_frames_above_burn_at_bottom() {
    if !util::require_perf() {
        return;
    }
    let exe = fixture("recurse", Variant::CFramePointers);
    let command = [exe.as_os_str(), OsStr::new("300"), OsStr::new("0.3")];
    // Frame-pointer callchains stop at kernel.perf_event_max_stack (127): use DWARF.
    let record = ["--call-graph", "dwarf,65528"];
    let (folded, _) = util::perf_folded(&command, &record, &["--max-stack", "1024"]);
    folded.assert_user_leaf_share_at_least("burn_at_bottom", 0.95);
    let exact = folded.share_where(|s| {
        // s[0] is the comm, also "recurse".
        let recurse = s[1..].iter().filter(|f| *f == "recurse").count();
        util::user_leaf(s) == Some("burn_at_bottom") && recurse == 300
    });
    folded.assert_share("300 recurse frames above burn_at_bottom", exact, 1.0, 5.0);
}

#[test]
fn perf_sees_libc_calls_and_the_signal_handler() {
    if !util::require_perf() {
        return;
    }
    let exe = fixture("plt_signal", Variant::CFramePointers);
    let (folded, _) = util::perf_folded(
        &[exe.as_os_str(), OsStr::new("0.5")],
        &["--call-graph", "dwarf,16384"],
        &[],
    );
    let handler = folded.share_of_user_leaf("handler_work");
    // The handler does a fixed number of iterations per 2 ms (or per tick) of CPU time: about
    // 5-30% on an idle machine, more when neighbours on the host slow those iterations down
    // (47.7% seen under two `yes`), never all of it.
    assert!(
        (0.03..=0.70).contains(&handler),
        "{handler}\n{}",
        folded.summary()
    );
    let in_handler = folded.share_where(|s| {
        util::user_leaf(s) == Some("handler_work") && s.iter().any(|f| f == "sig_handler")
    });
    folded.assert_share("handler_work under sig_handler", in_handler, handler, 0.5);
    let call_libc = folded.share_of_frame("call_libc");
    assert!(call_libc >= 0.60, "{call_libc}\n{}", folded.summary());
    let comparator = folded.share_where(|s| {
        let qsort = s.iter().position(|f| f.contains("qsort"));
        let cmp = s.iter().position(|f| f == "compare_ints");
        matches!((qsort, cmp), (Some(q), Some(c)) if q < c)
    });
    assert!(comparator >= 0.05, "{comparator}\n{}", folded.summary());
}

/// User leaf addresses of the samples in `script` (perf script's callchain output) that fall in
/// `exe`, as file addresses. Kernel frames on top (an interrupt) are skipped, as in
/// [`util::user_leaf`].
fn leaf_addresses_in(script: &str, exe: &Path) -> (usize, Vec<u64>) {
    let suffix = format!("({})", exe.display());
    let mut samples = 0;
    let mut addresses = Vec::new();
    for block in script.split("\n\n").filter(|b| !b.trim().is_empty()) {
        samples += 1;
        let leaf = block
            .lines()
            .skip(1)
            .find(|l| !l.contains("[kernel.kallsyms]"))
            .unwrap_or("")
            .trim();
        if leaf.ends_with(&suffix) {
            let hex = leaf.split_whitespace().next().unwrap();
            addresses.push(u64::from_str_radix(hex, 16).unwrap());
        }
    }
    (samples, addresses)
}

#[test]
fn most_inline_samples_are_in_hot_inlined_per_dwarf() {
    if !util::require_perf() {
        return;
    }
    let exe = fixture("inline", Variant::CFramePointers);
    let (folded, script) = util::perf_folded(&[exe.as_os_str(), OsStr::new("0.5")], &[], &[]);
    folded.assert_user_leaf_share_at_least("outer_caller", 0.95);
    let (samples, addresses) = leaf_addresses_in(&script, &exe);
    let loader = addr2line::Loader::new(&exe).unwrap();
    let innermost = |addr: u64| -> Option<String> {
        let mut frames = loader.find_frames(addr).ok()?;
        let frame = frames.next().ok()??;
        Some(frame.function?.raw_name().ok()?.into_owned())
    };
    let hot = addresses
        .iter()
        .filter(|&&a| innermost(a).as_deref() == Some("hot_inlined"))
        .count();
    let share = hot as f64 / samples as f64;
    assert!(share >= 0.80, "hot_inlined: {hot} of {samples} samples");
}

// ---- The fake dtrace. ----

#[test]
fn inferno_collapses_the_dtrace_sample_to_60_30_10() {
    use inferno::collapse::Collapse;
    let input = std::fs::read(util::dtrace_sample_stacks()).unwrap();
    let mut out = Vec::new();
    inferno::collapse::dtrace::Folder::default()
        .collapse(&input[..], &mut out)
        .unwrap();
    let folded = Folded::parse(&String::from_utf8(out).unwrap());
    assert_eq!(folded.total(), 1000);
    assert_eq!(folded.stacks.len(), 3, "{}", folded.summary());
    folded.assert_leaf_share("work_a", 0.60, 0.0);
    folded.assert_leaf_share("work_b", 0.30, 0.0);
    folded.assert_leaf_share("work_c", 0.10, 0.0);
    folded.assert_frame_share("main", 1.0, 0.0);
    assert_eq!(
        folded.stacks[0].0[..2],
        ["split`_start", "libc.so.6`__libc_start_main"]
    );
}

/// The dtrace arguments flamegraph 0.6.15 passes, before `-c`/`-p`.
fn dtrace_args(out: &Path) -> Command {
    let mut cmd = Command::new(util::fake_dtrace());
    cmd.args(["-x", "ustackframes=100", "-n"])
        .arg("profile-997 /pid == $target/ { @[ustack(100)] = count(); }")
        .arg("-o")
        .arg(out);
    cmd
}

#[test]
fn fake_dtrace_runs_the_command_and_writes_the_sample() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cargo-flamegraph.stacks");
    let log = dir.path().join("log.jsonl");
    // A directory with a space, escaped the way flamegraph 0.6.15 escapes it.
    let spaced = dir.path().join("a dir");
    std::fs::create_dir(&spaced).unwrap();
    std::fs::copy(
        fixture("exit_code", Variant::CFramePointers),
        spaced.join("exit_code"),
    )
    .unwrap();
    let exe = spaced.join("exit_code").display().to_string();
    let command = format!("{} 3 0.05", exe.replace(' ', "\\ "));
    let mut dtrace = dtrace_args(&out);
    dtrace.arg("-c").arg(&command).env("FAKE_DTRACE_LOG", &log);
    let result = util::run_with_timeout(&mut dtrace, TIMEOUT);
    assert_eq!(
        result.status.code(),
        Some(3),
        "{}",
        util::describe_output(&result)
    );
    assert_eq!(String::from_utf8_lossy(&result.stdout), "exit_code 3\n");
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(util::dtrace_sample_stacks()).unwrap()
    );
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("ustackframes=100"), "{logged}");
}

#[test]
fn fake_dtrace_waits_for_an_attached_pid() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.stacks");
    let mut busy = start_busy(&[]);
    let mut dtrace = dtrace_args(&out);
    dtrace.arg("-p").arg(busy.0.id().to_string());
    let mut dtrace = util::KillOnDrop(dtrace.stderr(Stdio::piped()).spawn().unwrap());
    // The fake prints its "matched 1 probe" line just before it checks the pid.
    let mut line = String::new();
    BufReader::new(dtrace.0.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("matched 1 probe"), "{line}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        dtrace.0.try_wait().unwrap().is_none(),
        "returned while the pid lives"
    );
    assert!(!out.exists());
    util::send_signal(busy.0.id(), libc::SIGTERM);
    assert_eq!(wait_exit(&mut busy).code(), Some(0));
    assert!(wait_exit(&mut dtrace).success());
    assert!(std::fs::metadata(&out).unwrap().len() > 0);
}

#[test]
fn fake_dtrace_fails_on_request_and_on_a_missing_pid() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.stacks");
    let mut failing = dtrace_args(&out);
    failing.args(["-c", "true"]).env("FAKE_DTRACE_FAIL", "boom");
    let result = util::run_with_timeout(&mut failing, TIMEOUT);
    assert_eq!(result.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&result.stderr), "dtrace: boom\n");
    let mut missing = dtrace_args(&out);
    missing.args(["-p", "999999999"]);
    assert_eq!(
        util::run_with_timeout(&mut missing, TIMEOUT).status.code(),
        Some(2)
    );
    assert!(!out.exists());
}

// ---- The harness's parsers. ----

#[test]
fn folded_shares_and_frame_matching() {
    let folded = Folded::parse(
        "split;main;work_a 6\nsplit;main;work_b 3\nsplit;main;read;entry_SYSCALL_64_[k] 1\n\n",
    );
    assert_eq!(folded.total(), 10);
    util::assert_share(folded.share_of_leaf("work_a"), 0.6, 0.0);
    util::assert_share(folded.share_of_frame("main"), 1.0, 0.0);
    util::assert_share(folded.share_of_leaf("entry_SYSCALL_64"), 0.1, 0.0);
    util::assert_share(folded.stacks_reaching(|f| f.ends_with("_[k]")), 0.1, 0.0);
    assert!(util::frame_matches("libc.so.6`memcpy", "memcpy"));
    assert!(util::frame_matches(
        "split::work_a::h0123456789abcdef",
        "split::work_a"
    ));
    assert!(!util::frame_matches("work_ab", "work_a"));
    let frames = &util::parse_folded("a b;c d 7")[0];
    assert_eq!(frames, &(vec!["a b".to_owned(), "c d".to_owned()], 7));
}

#[test]
fn svg_titles_are_parsed_and_unescaped() {
    let svg = "<g><title>all (1,234 samples, 100%)</title></g>\
               <g><title>std::vec::Vec&lt;T&gt;::push (617 samples, 50.00%)</title></g>\
               <g><title>a &amp; b (1 cycles, 0.08%; +0.01%)</title></g>";
    let titles = util::parse_svg_titles(svg);
    assert_eq!(
        titles,
        [
            ("all".to_owned(), 1234, 100.0),
            ("std::vec::Vec<T>::push".to_owned(), 617, 50.0),
            ("a & b".to_owned(), 1, 0.08),
        ]
    );
}
