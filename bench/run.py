#!/usr/bin/env python3
"""Benchmark flamegraph against the perf pipeline (flamegraph 0.6) and samply, side by side.

    python3 bench/run.py            # full: 3 repetitions, ~10-20 s workloads, a 60 s RSS run
    python3 bench/run.py --quick    # 1 repetition, short workloads (a smoke run, not the targets)
    python3 bench/run.py --prepare  # once: builds ripgrep and the RocksDB workload (cached)
    python3 bench/run.py --scale    # how the profiler's costs grow (plots in bench/)
    python3 bench/run.py --soak     # a 10-minute, 4-thread profile: RSS series, lost samples

Builds everything it runs (flamegraph in release, the C fixtures with gcc -O2 -g, the Rust
workload in bench/workloads/rustload, samply with `cargo install` if missing), runs every
contender on every workload in alternating order, and prints a table of medians with the issue's
targets as PASS/MISS; the same table goes to bench/results.md.

How the figures are measured (see bench/README.md):
- Every process started by a run has bench/workloads/stamp.c preloaded (LD_PRELOAD). At exit it
  appends its pid, name, CLOCK_MONOTONIC start and end, VmHWM (its own peak RSS) and write_bytes
  to a stamp file.
- program wall: the workload's own start -> exit, from its stamp.
- post-processing: workload exit (its stamp) -> profiler exit (the script's clock, also
  CLOCK_MONOTONIC): what the user waits for after the program ends.
- slowdown: the workload's own CPU time (all threads, user + system; the kernel's sampling work
  is charged to it) per unit of work, against the bare run's: rustload does fixed work, split
  counts rounds; recurse has no work figure. CPU time, not wall, so other load on the machine
  does not show as slowdown.
- added wall: profiler wall - bare-equivalent program wall (program wall / (1 + slowdown)).
- added CPU: the CPU time of the profiler's processes + the workload's extra CPU time.
- peak RSS: the max VmHWM over the processes that are not the workload (flamegraph; perf record,
  perf script and its addr2line children; samply).
- disk: bytes left in the run's empty working directory (output, perf.data, samply's files).
"""

import argparse
import gzip
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
OUT = BENCH / "out"
FLAMEGRAPH = ROOT / "target" / "release" / "flamegraph"
STAMP_SO = OUT / "bin" / "stamp.so"
PARANOID = Path("/proc/sys/kernel/perf_event_paranoid")

CACHE = BENCH / "cache"
SCRATCH = OUT / "scratch"
RG_VERSION = "15.2.0"
RG_CACHED = CACHE / f"ripgrep-{RG_VERSION}" / "bin" / "rg"
ROCKS_SRC = BENCH / "workloads" / "rocks"
ROCKS_TARGET = CACHE / "rocks-target"
ROCKS_BIN = ROCKS_TARGET / "release" / "rocks"
REGISTRY_SRC = Path.home() / ".cargo" / "registry" / "src"

# Frames that mean "this stack was unwound to its bottom" (issue 11 item 4: the outermost user
# frame is one of these; `main` is not one: a stack ending there lost _start).
ROOT_FRAMES = (
    "_start",
    "__libc_start_main",
    "__libc_start_call_main",
    "start_thread",
    "clone",
    "clone3",
    "__clone",
    "__clone3",
    "__GI___clone",
    "__GI___clone3",
    "runtime.goexit",
    "runtime.mstart",
    "runtime.rt0_go",
)

# The contenders of the side-by-side run; a workload may take a subset (Workload.contenders).
CONTENDERS = ["bare", "native", "perf-cli", "perf-cli --no-inline", "samply"]
ALL_CONTENDERS = CONTENDERS + ["native --off-cpu"]


def log(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def run(cmd, **kw):
    log("$ " + " ".join(str(c) for c in cmd))
    return subprocess.run([str(c) for c in cmd], check=True, **kw)


# ---------------------------------------------------------------------------------------------
# Building


def build(args):
    (OUT / "bin").mkdir(parents=True, exist_ok=True)
    run(["cargo", "build", "--release", "--bin", "flamegraph"], cwd=ROOT)
    run(["gcc", "-O2", "-shared", "-fPIC", "-o", STAMP_SO, BENCH / "workloads" / "stamp.c"])
    for name in ["split", "recurse"]:
        src = ROOT / "fixtures" / "c" / f"{name}.c"
        run(["gcc", "-O2", "-g", "-pthread", "-o", OUT / "bin" / name, src])
    for name in ["pingpong", "spin", "execloop"]:
        src = BENCH / "workloads" / f"{name}.c"
        run(["gcc", "-O2", "-g", "-pthread", "-o", OUT / "bin" / name, src])
    rustload = BENCH / "workloads" / "rustload"
    run(["cargo", "build", "--release"], cwd=rustload)
    shutil.copy(rustload / "target" / "release" / "rustload", OUT / "bin" / "rustload")
    if not (args.no_samply or args.scale or args.soak):
        find_samply(install=True)


def prepare():
    """`--prepare`: the cached builds the default run uses, made once, outside any timed run:
    ripgrep from crates.io with full debug info, and the RocksDB workload (librocksdb-sys
    compiles RocksDB's C++ with -g: well over 100 MB of DWARF). Both pinned (version, lock file)
    so every machine profiles the same binaries."""
    env = dict(os.environ, CARGO_INCREMENTAL="0", CARGO_PROFILE_RELEASE_DEBUG="true")
    if not RG_CACHED.exists():
        run(["cargo", "install", "--locked", "ripgrep", "--version", f"={RG_VERSION}",
             "--root", RG_CACHED.parent.parent, "--target-dir", CACHE / "rg-target"], env=env)
        shutil.rmtree(CACHE / "rg-target", ignore_errors=True)
    if not ROCKS_BIN.exists():
        log("building RocksDB with debug info: ~40-60 min on 2 cores")
        run(["cargo", "build", "--release", "--locked", "--target-dir", ROCKS_TARGET],
            cwd=ROCKS_SRC, env=env)
    log(f"ripgrep: {RG_CACHED} ({debug_info_mib(RG_CACHED):.0f} MiB of .debug_*)")
    log(f"rocks: {ROCKS_BIN} ({debug_info_mib(ROCKS_BIN):.0f} MiB of .debug_*)")


def debug_info_mib(path):
    """Size of the .debug_* sections of an ELF file, in MiB (readelf's section table)."""
    p = subprocess.run(["readelf", "-SW", str(path)], capture_output=True, text=True)
    total = 0
    for m in re.finditer(r"\]\s+(\.debug_\w+)\s+\w+\s+[0-9a-f]+\s+[0-9a-f]+\s+([0-9a-f]+)",
                         p.stdout):
        total += int(m.group(2), 16)
    return total / (1 << 20)


def real_rustc():
    """The rustc binary itself (not rustup's proxy, which would be the profiled program)."""
    sysroot = subprocess.run(["rustc", "--print", "sysroot"], capture_output=True, text=True,
                             check=True).stdout.strip()
    return Path(sysroot) / "bin" / "rustc"


def find_samply(install=False):
    path = shutil.which("samply") or str(Path.home() / ".cargo" / "bin" / "samply")
    if Path(path).exists():
        return path
    if install:
        run(["cargo", "install", "--locked", "samply"])
        return find_samply()
    return None


# ---------------------------------------------------------------------------------------------
# Workloads


class Workload:
    """A program to profile; `rate(stdout)` is its work done per second when it runs for a fixed
    time, None when it does a fixed amount of work (its wall time then shows the slowdown)."""

    def __init__(self, name, argv, timed, work_re=None, threads=1, contenders=None,
                 comms=None, perf_timeout=None):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.timed = timed
        self.work_re = work_re
        self.threads = threads
        self.contenders = contenders or CONTENDERS
        # Process names that belong to the workload (rustc's linker, execloop's children).
        self.comms = set(comms or []) | {Path(self.argv[0]).name}
        # A shorter limit for perf-cli, whose post-processing takes minutes on big binaries.
        self.perf_timeout = perf_timeout

    def is_workload(self, comm):
        return comm in self.comms or any(c.endswith("*") and comm.startswith(c[:-1])
                                         for c in self.comms)

    def work(self, stdout):
        if not self.work_re:
            return None
        m = re.search(self.work_re, stdout)
        return float(m.group(1)) if m else None


def rustload_lines(seconds):
    """Lines per thread for a ~`seconds` run on 2 threads, from a short calibration run's CPU
    time (its wall time would depend on the other load on the machine)."""
    probe = 300_000
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([OUT / "bin" / "rustload", "2", str(probe)], check=True, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    elapsed = cpu / 2
    lines = int(probe * seconds / max(elapsed, 0.05))
    log(f"rustload: {probe} lines/thread took {elapsed:.2f} s -> {lines} lines for {seconds} s")
    return lines


def rg_copies(rg, seconds):
    """How many times to pass the registry to rg for a ~`seconds` search (each path is searched
    in turn), from a warm-up search's CPU time (2 threads)."""
    subprocess.run(rg_argv(rg, 1), capture_output=True)  # warm the page cache
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(rg_argv(rg, 1), capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    copies = max(1, round(seconds * 2 / max(cpu, 0.05)))
    log(f"ripgrep: one search of {REGISTRY_SRC} took {cpu:.2f} CPU s -> {copies} copies")
    return copies


def rg_argv(rg, copies):
    return [str(rg), "-j2", "-c", "-i", r"fn\s+\w+_(new|with)\w*"] + [str(REGISTRY_SRC)] * copies


def find_rg():
    """The cached ripgrep of --prepare, else the machine's one if it has debug info."""
    if RG_CACHED.exists():
        return RG_CACHED
    tools = Path("/work/tools/bin/rg")
    if tools.exists() and debug_info_mib(tools) > 1:
        log(f"ripgrep: {RG_CACHED} not prepared, using {tools}")
        return tools
    return None


def want(args, name):
    """Whether `--only` (if given) selects workload `name`."""
    return not args.only or name in args.only.split(",")


def workloads(args):
    secs = 3 if args.quick else 10
    rust_secs = 5 if args.quick else 20
    lines = rustload_lines(rust_secs)
    loads = [
        Workload("split", [OUT / "bin" / "split", "serial", secs], True, r"rounds=(\d+)"),
        Workload("rustload", [OUT / "bin" / "rustload", 2, lines], False, threads=2),
        Workload("recurse", [OUT / "bin" / "recurse", 300, secs], True),
    ]
    # perf-cli takes minutes on rustc's and RocksDB's DWARF (286 s on rustc): stopped at 60 s
    # and reported as more than that, which keeps the full run near 30 minutes.
    slow = 60.0
    SCRATCH.mkdir(parents=True, exist_ok=True)
    loads.append(Workload(
        "rustc", [real_rustc(), "-O", "-o", SCRATCH / "hello", BENCH / "workloads" / "hello.rs"],
        False, comms=["cc", "collect2", "ld", "ld.bfd", "ld.gold", "rustc"], perf_timeout=slow))
    rg = find_rg() if want(args, "ripgrep") else None
    if rg:
        loads.append(Workload("ripgrep", rg_argv(rg, rg_copies(rg, 5 if args.quick else 10)),
                              False, threads=2, perf_timeout=slow))
    elif want(args, "ripgrep"):
        log("ripgrep: not prepared (python3 bench/run.py --prepare); skipped")
    loads.append(Workload("spin64", [OUT / "bin" / "spin", 64, secs], True, r"rounds=(\d+)",
                          threads=64, perf_timeout=slow))
    if ROCKS_BIN.exists():
        loads.append(Workload("rocks", [ROCKS_BIN, SCRATCH, secs], True, r"ops=(\d+)",
                              threads=2, perf_timeout=slow))
    elif want(args, "rocks"):
        log("rocks: not prepared (python3 bench/run.py --prepare, ~40-60 min); skipped")
    offcpu = ["bare", "native", "native --off-cpu"]
    if not args.only or "pingpong" in args.only:
        # 190 us of work per hop + the pipe's wake-up: ~5k switches/s on an idle machine (a
        # loaded one gives fewer; the bare run's rate is printed with the targets).
        for us, name in [(190, "pingpong-5k"), (0, "pingpong-max")]:
            loads.append(Workload(name, [OUT / "bin" / "pingpong", us, secs], True,
                                  r"hops=(\d+)", threads=2, contenders=offcpu))
    return loads


# ---------------------------------------------------------------------------------------------
# One run


def contender_cmd(contender, workload, samply):
    """The command line of `contender` profiling `workload`, and its output file."""
    fg = [str(FLAMEGRAPH), "-v", "--post-process", "tee stacks.folded", "-o", "out.svg"]
    if contender == "bare":
        return workload.argv, None
    if contender == "native":
        return fg + ["--"] + workload.argv, "out.svg"
    if contender == "native --off-cpu":
        return fg + ["--off-cpu", "--"] + workload.argv, "out.svg"
    if contender == "perf-cli":
        return fg + ["--backend", "perf-cli", "--"] + workload.argv, "out.svg"
    if contender == "perf-cli --no-inline":
        return fg + ["--backend", "perf-cli", "--no-inline", "--"] + workload.argv, "out.svg"
    if contender == "samply":
        cmd = [samply, "record", "-s", "-n", "--unstable-presymbolicate", "-r", "997"]
        return cmd + ["-o", "profile.json.gz", "--"] + workload.argv, "profile.json.gz"
    raise ValueError(contender)


def read_stamps(path):
    stamps = []
    if not path.exists():
        return stamps
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) != 7:
            continue
        pid, comm, start, end, hwm, wbytes, cpu = parts
        stamps.append(
            dict(pid=int(pid), comm=comm, start=int(start), end=int(end), hwm_kib=int(hwm),
                 write_bytes=int(wbytes), cpu=int(cpu) / 1e9)
        )
    return stamps


def root_share(folded_path):
    """Share of the sample weight whose first frame after the thread name is a root frame."""
    total = rooted = 0
    if not folded_path.exists():
        return None
    for line in folded_path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        if len(frames) > 1:
            first = re.sub(r"_\[[a-z]\]$", "", frames[1])
            if first in ROOT_FRAMES or first.startswith("__libc_start"):
                rooted += n
    return rooted / total if total else None


def count_samples(contender, run_dir, stderr, folded):
    """(samples, lost) as the tool reports them."""
    lost = None
    samples = None
    if contender.startswith("native"):
        m = re.search(r"recorded (\d+) samples", stderr)
        samples = int(m.group(1)) if m else None
        m = re.search(r"lost (\d+) of (\d+) samples", stderr) or re.search(
            r"\d+ samples, (\d+) lost", stderr)  # the summary line of newer builds
        lost = int(m.group(1)) if m else 0
    elif contender.startswith("perf-cli"):
        m = re.search(r"perf record: Captured and wrote .*\((\d+) samples\)", stderr)
        samples = int(m.group(1)) if m else None
        lost = perf_lost(run_dir / "perf.data")
    elif contender == "samply":
        samples = samply_samples(run_dir / "profile.json.gz")
    if samples is None and folded is not None and folded.exists():
        samples = sum(int(l.rpartition(" ")[2]) for l in folded.read_text().splitlines() if l)
    return samples, lost


def perf_lost(data):
    """LOST_SAMPLES + samples in LOST records, from `perf report --stats` (not timed)."""
    if not data.exists():
        return None
    p = subprocess.run(["perf", "report", "--stats", "-i", str(data)], capture_output=True,
                       text=True)
    lost = 0
    for m in re.finditer(r"LOST(?:_SAMPLES)? events:\s+(\d+)", p.stdout):
        lost += int(m.group(1))
    return lost


def samply_samples(path):
    try:
        with gzip.open(path, "rt") as f:
            profile = json.load(f)
    except (OSError, ValueError):
        return None
    total = 0
    for thread in profile.get("threads", []):
        samples = thread.get("samples", {})
        total += samples.get("length", len(samples.get("stack", [])))
    return total


def dir_bytes(path):
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def folded_lines(path):
    """Unique stacks in a folded file (one per line)."""
    if not path.exists():
        return None
    with open(path, "rb") as f:
        return sum(1 for _ in f)


class HwmSampler:
    """Samples VmRSS and VmHWM of one process (the profiler: children are other processes)
    from /proc/PID/status every `every` seconds on a thread: the series of a long run."""

    def __init__(self, pid, every=5.0):
        import threading
        self.pid, self.every, self.series = pid, every, []
        self.t0 = time.monotonic()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        while not self.done.wait(self.every):
            try:
                status = Path(f"/proc/{self.pid}/status").read_text()
            except OSError:
                return
            rss = re.search(r"VmRSS:\s+(\d+)", status)
            hwm = re.search(r"VmHWM:\s+(\d+)", status)
            if rss and hwm:
                self.series.append((round(time.monotonic() - self.t0, 1),
                                    int(rss.group(1)) / 1024, int(hwm.group(1)) / 1024))

    def stop(self):
        self.done.set()
        self.thread.join()
        return self.series


def run_one(contender, workload, rep, args, samply, sample_rss=False):
    run_dir = OUT / "runs" / f"{workload.name}-{contender.replace(' ', '')}-{rep}"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    stamp_file = OUT / "runs" / f"{run_dir.name}.stamps"
    stamp_file.unlink(missing_ok=True)
    cmd, output = contender_cmd(contender, workload, samply)
    env = dict(os.environ, LD_PRELOAD=str(STAMP_SO), BENCH_STAMP_FILE=str(stamp_file))
    log(f"{workload.name} / {contender} / rep {rep}")
    limit = args.timeout
    if contender.startswith("perf-cli") and workload.perf_timeout:
        limit = min(limit, workload.perf_timeout)
    t0 = time.monotonic_ns()
    timed_out = False
    proc = subprocess.Popen(cmd, cwd=run_dir, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    sampler = HwmSampler(proc.pid) if sample_rss else None
    try:
        stdout, stderr = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
    t1 = time.monotonic_ns()
    series = sampler.stop() if sampler else None
    (run_dir.parent / f"{run_dir.name}.stderr").write_text(stderr)
    if proc.returncode != 0 and not timed_out:
        log(f"  exit {proc.returncode}: {stderr.strip()[-500:]}")
    stamps = read_stamps(stamp_file)
    prog = [s for s in stamps if workload.is_workload(s["comm"])]
    others = [s for s in stamps if not workload.is_workload(s["comm"]) and s["comm"] != "tee"]
    result = dict(contender=contender, workload=workload.name, timed_out=timed_out,
                  total=(t1 - t0) / 1e9, limit=limit)
    if proc.returncode != 0 and not timed_out:
        result["error"] = (stderr.strip().splitlines() or ["exit %d" % proc.returncode])[-1]
    if series:
        result["rss_series"] = series
    if prog:
        first = min(s["start"] for s in prog)
        last = max(s["end"] for s in prog)
        result["wall"] = (last - first) / 1e9
        result["post"] = max(0.0, (t1 - last) / 1e9) if not timed_out else None
        result["cpu"] = sum(s["cpu"] for s in prog)
    result["work"] = workload.work(stdout)
    m = re.search(r"rate=(\d+)", stdout)
    if m:
        result["rate"] = int(m.group(1))
    if contender != "bare":
        folded = run_dir / "stacks.folded"
        result["samples"], result["lost"] = count_samples(contender, run_dir, stderr, folded)
        result["root_share"] = root_share(folded) if contender != "samply" else None
        result["stacks"] = folded_lines(folded)
        m = re.search(r"(\d+(?:\.\d+)?)\s*(KiB|kB|MiB|MB)\s*\(VmHWM\)", stderr) or re.search(
            r"VmHWM\D{0,20}(\d+(?:\.\d+)?)\s*(KiB|kB|MiB|MB)", stderr)
        if m:  # the profiler's own report, if a build prints one (-v)
            result["vmhwm_reported_mib"] = float(m.group(1)) / (
                1024 if m.group(2) in ("KiB", "kB") else 1)
        result["prof_cpu"] = sum(s["cpu"] for s in others)
        result["rss_mib"] = max((s["hwm_kib"] for s in others), default=0) / 1024 or None
        result["disk"] = dir_bytes(run_dir) - (
            (run_dir / "stacks.folded").stat().st_size if (run_dir / "stacks.folded").exists()
            else 0)
        result["other_disk"] = result["disk"] - (
            (run_dir / output).stat().st_size if (run_dir / output).exists() else 0)
    if not args.keep:
        for big in ["perf.data", "perf.data.old"]:
            (run_dir / big).unlink(missing_ok=True)
    log("  " + ", ".join(f"{k}={fmt(v)}" for k, v in result.items()
                         if k not in ("contender", "workload", "rss_series")))
    return result


def fmt(v):
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


# ---------------------------------------------------------------------------------------------
# Orchestration


class Paranoid:
    """Lowers kernel.perf_event_paranoid to 1 for samply's runs, and restores it."""

    def __init__(self):
        self.saved = PARANOID.read_text().strip()

    def set(self, value):
        try:
            PARANOID.write_text(str(value))
        except OSError as e:
            log(f"cannot set perf_event_paranoid to {value}: {e}")

    def restore(self):
        self.set(self.saved)


def run_all(args, loads, samply):
    results = []
    paranoid = Paranoid()
    try:
        for rep in range(args.reps):
            for w in loads:
                contenders = [c for c in w.contenders if not (c == "samply" and not samply)]
                order = contenders if rep % 2 == 0 else list(reversed(contenders))
                # Rotate too, so no contender always runs right after the same one.
                k = rep % len(order)
                order = order[k:] + order[:k]
                for c in order:
                    if c == "samply":
                        paranoid.set(1)
                    try:
                        results.append(run_one(c, w, rep, args, samply))
                    finally:
                        if c == "samply":
                            paranoid.restore()
    finally:
        paranoid.restore()
    return results


def long_native_run(args, samply):
    """The RSS / lost-samples target: native on 2 threads for 60 s at default settings."""
    lines = rustload_lines(60)
    w = Workload("rustload-60s", [OUT / "bin" / "rustload", 2, lines], False, threads=2)
    return run_one("native", w, 0, args, samply)


def perfdata_comparison(args):
    """`--perfdata` (native) vs `perf script | inferno collapse` on one perf.data."""
    d = OUT / "runs" / "perfdata"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    lines = rustload_lines(2 if args.quick else 5)
    run(["perf", "record", "-F", "997", "--call-graph", "dwarf", "-g", "-o", d / "perf.data",
         "--", OUT / "bin" / "rustload", "2", lines], capture_output=True)
    timings = {}
    for name, extra in [("native", ["--backend", "native"]),
                        ("perf script + inferno", ["--backend", "perf-cli"])]:
        cmd = [FLAMEGRAPH] + extra + ["--perfdata", d / "perf.data", "-o", d / f"{name[:6]}.folded"]
        t0 = time.monotonic()
        try:
            subprocess.run([str(c) for c in cmd], check=True, capture_output=True,
                           timeout=args.timeout)
            timings[name] = (time.monotonic() - t0, False)
        except subprocess.TimeoutExpired:
            timings[name] = (time.monotonic() - t0, True)
        log(f"--perfdata {name}: {timings[name][0]:.2f} s")
    return dict(size=(d / "perf.data").stat().st_size, timings=timings)


# ---------------------------------------------------------------------------------------------
# System-wide: `flamegraph -a --duration S` while `make -j2` builds a generated C project


def make_project(d, files=120):
    """A C project of `files` generated sources (a few mid-sized functions each) and a Makefile:
    ~30-60 s of `make -j2` on 2 cores; the profile spans make, gcc's cc1, as and ld."""
    d.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        body = []
        for j in range(6):
            body.append(f"""
long f{i}_{j}(long *v, int n) {{
    long acc = {i * 7 + j};
    for (int k = 0; k < n; k++) {{
        switch ((v[k] + k) % 5) {{
        case 0: acc += v[k] * {j + 3}; break;
        case 1: acc ^= v[k] << {j % 7}; break;
        case 2: acc -= v[k] / {j + 1}; break;
        case 3: acc = acc * 31 + {i}; break;
        default: acc += k;
        }}
        v[k] = acc & 0xffff;
    }}
    return acc;
}}""")
        (d / f"m{i}.c").write_text("\n".join(body) + "\n")
    decls = "".join(f"long f{i}_0(long *v, int n);\n" for i in range(files))
    calls = "".join(f"    acc += f{i}_0(v, 64);\n" for i in range(files))
    (d / "main.c").write_text(
        f"#include <stdio.h>\n{decls}int main(void) {{\n    long v[64] = {{0}}, acc = 0;\n"
        f"{calls}    printf(\"%ld\\n\", acc);\n    return 0;\n}}\n")
    objs = " ".join(f"m{i}.o" for i in range(files))
    (d / "Makefile").write_text(
        f"OBJS = main.o {objs}\nprog: $(OBJS)\n\t$(CC) -o $@ $(OBJS)\n"
        "%.o: %.c\n\t$(CC) -O2 -g -c -o $@ $<\nclean:\n\trm -f prog *.o\n")


def system_wide_run(args):
    """Issue 13's system-wide figure: a `-a --duration S` recording while make -j2 loops."""
    secs = 10 if args.quick else 30
    d = OUT / "runs" / "system-wide"
    shutil.rmtree(d, ignore_errors=True)
    project = d / "project"
    make_project(project)
    stamp_file = OUT / "runs" / "system-wide.stamps"
    stamp_file.unlink(missing_ok=True)
    builder = subprocess.Popen(["sh", "-c", "while :; do make -s clean; make -s -j2; done"],
                               cwd=project, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    cmd = [str(FLAMEGRAPH), "-v", "-a", "--duration", str(secs), "--post-process",
           "tee stacks.folded", "-o", "out.svg"]
    env = dict(os.environ, LD_PRELOAD=str(STAMP_SO), BENCH_STAMP_FILE=str(stamp_file))
    log(f"system-wide: make -j2 loop under `flamegraph -a --duration {secs}`")
    try:
        t0 = time.monotonic_ns()
        p = subprocess.run(cmd, cwd=d, env=env, capture_output=True, text=True,
                           timeout=secs + args.timeout)
        t1 = time.monotonic_ns()
    except subprocess.TimeoutExpired:
        return dict(seconds=secs, error=f"no graph {args.timeout:.0f} s after the duration")
    finally:
        os.killpg(builder.pid, signal.SIGKILL)
        builder.wait()
    (d / "flamegraph.stderr").write_text(p.stderr)
    if p.returncode != 0:
        lines = p.stderr.strip().splitlines() or [f"exit {p.returncode}"]
        last = next((l for l in lines if l.startswith("error")), lines[-1])
        if (t1 - t0) / 1e9 < secs / 2:
            log(f"system-wide: not supported by this build: {last}")
            return dict(seconds=secs, error=f"not supported by this build ({last})")
        return dict(seconds=secs, error=last)
    fg = [s for s in read_stamps(stamp_file) if s["comm"] == "flamegraph"]
    result = dict(seconds=secs, total=(t1 - t0) / 1e9)
    if fg:
        result["rss_mib"] = max(s["hwm_kib"] for s in fg) / 1024
        result["prof_cpu"] = sum(s["cpu"] for s in fg)
        start = min(s["start"] for s in fg)
        result["post"] = max(0.0, (t1 - start) / 1e9 - secs)
    _, result["lost"] = count_samples("native", d, p.stderr, None)
    m = re.search(r"recorded (\d+) samples", p.stderr)
    result["samples"] = int(m.group(1)) if m else None
    result["processes"] = len({l.split(";")[0] for l in
                               (d / "stacks.folded").read_text(errors="replace").splitlines()}
                              ) if (d / "stacks.folded").exists() else None
    log("  " + ", ".join(f"{k}={fmt(v)}" for k, v in result.items()))
    return result


def system_wide_rows(sw):
    if sw is None:
        return []
    rows = ["| target | measured | vs perf-cli (same run) | result |", "|---|---|---|---|"]
    if "error" in sw:
        rows.append(f"| `-a --duration {sw['seconds']}`, make -j2: peak RSS <= 64 MiB (issue 14) "
                    f"| {sw['error']} | | n/a |")
        return rows
    rss = sw.get("rss_mib")
    rows.append(f"| `-a --duration {sw['seconds']}`, make -j2: peak RSS <= 64 MiB (issue 14) | "
                f"{cell(rss, ' MiB', 1)}; {cell(sw.get('samples'), digits=0)} samples, "
                f"{cell(sw.get('lost'), digits=0)} lost, {cell(sw.get('processes'), digits=0)} "
                f"roots, {cell(sw.get('post'))} s from the end of the duration to the graph, "
                f"{cell(sw.get('prof_cpu'))} s profiler CPU | | "
                f"{verdict(None if rss is None else rss <= 64)} |")
    return rows


# ---------------------------------------------------------------------------------------------
# Scaling (issue 14 item 5): how each cost grows with duration, threads, binaries, perf.data size


def build_small_binaries(n):
    """DIR with small_0 .. small_{n-1}: one source, n builds with different -DID (distinct code,
    symbols and build-ids). Cached: built once per count."""
    d = OUT / "bin" / "small"
    d.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        if not (d / f"small_{i}").exists():
            subprocess.run(["gcc", "-O2", "-g", f"-DID={i}", "-o", str(d / f"small_{i}"),
                            str(BENCH / "workloads" / "small.c")], check=True)
    return d


def scale_points(args):
    """(dimension, x, Workload) for every point of the scaling run."""
    q = args.quick
    durations = [3, 6, 12] if q else [10, 30, 60, 120]
    threads = [1, 4, 16] if q else [1, 4, 16, 64]
    binaries = [1, 10] if q else [1, 10, 100]
    per_point = 3 if q else 20
    points = []
    base = rustload_lines(1)
    for secs in durations:
        points.append(("duration", secs, Workload(f"scale-duration-{secs}", [
            OUT / "bin" / "rustload", 2, base * secs], False, threads=2)))
    for t in threads:
        points.append(("threads", t, Workload(f"scale-threads-{t}", [
            OUT / "bin" / "spin", t, per_point], True, r"rounds=(\d+)", threads=t)))
    small = build_small_binaries(max(binaries))
    for n in binaries:
        points.append(("binaries", n, Workload(f"scale-binaries-{n}", [
            OUT / "bin" / "execloop", small, n, 20, per_point], True, r"execs=(\d+)",
            comms=["small_*"])))
    return points


def perfdata_points(args):
    """Reads perf.data files of growing size (--call-graph dwarf, 64 KiB stacks, rustload on 2
    threads; perf record --max-size caps each): one at a time, deleted after its read."""
    sizes = [50, 100] if args.quick else [100, 300, 1000, 2000]
    d = OUT / "runs" / "scale-perfdata"
    results = []
    per_sec = rustload_lines(1)
    for mb in sizes:
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        # ~130 MB/s of 64 KiB samples on 2 threads at 997 Hz: run long enough, then cap.
        secs = mb / 100 + 2
        # perf stops at --max-size and ends the workload (SIGTERM): its exit status is not 0.
        subprocess.run(["perf", "record", "-F", "997", "--call-graph", "dwarf,65528", "-g",
                        "--max-size", f"{mb}M", "-o", str(d / "perf.data"), "--",
                        str(OUT / "bin" / "rustload"), "2", str(int(per_sec * secs))],
                       capture_output=True)
        if not (d / "perf.data").exists():
            log(f"scale / perfdata: perf record wrote nothing for {mb} MB; skipped")
            continue
        size = (d / "perf.data").stat().st_size
        stamp_file = d / "stamps"
        env = dict(os.environ, LD_PRELOAD=str(STAMP_SO), BENCH_STAMP_FILE=str(stamp_file))
        cmd = [str(FLAMEGRAPH), "-v", "--perfdata", "perf.data", "--post-process",
               "tee stacks.folded", "-o", "out.svg"]
        log(f"scale / perfdata {size >> 20} MiB")
        t0 = time.monotonic_ns()
        p = subprocess.run(cmd, cwd=d, env=env, capture_output=True, text=True)
        t1 = time.monotonic_ns()
        fg = [s for s in read_stamps(stamp_file) if s["comm"] == "flamegraph"]
        r = dict(dimension="perfdata", x=size / 1e6, post=(t1 - t0) / 1e9,
                 rss_mib=max((s["hwm_kib"] for s in fg), default=0) / 1024 or None,
                 prof_cpu=sum(s["cpu"] for s in fg) if fg else None,
                 stacks=folded_lines(d / "stacks.folded"))
        m = re.search(r"lost (\d+) events", p.stderr) or re.search(
            r"\d+ samples, (\d+) lost", p.stderr)
        r["lost"] = int(m.group(1)) if m else 0
        r["samples"] = sum(int(l.rpartition(" ")[2]) for l in
                           (d / "stacks.folded").read_text().splitlines() if l) if (
            d / "stacks.folded").exists() else None
        if p.returncode != 0:
            r["error"] = (p.stderr.strip().splitlines() or ["?"])[-1]
        log("  " + ", ".join(f"{k}={fmt(v)}" for k, v in r.items()))
        results.append(r)
    shutil.rmtree(d, ignore_errors=True)
    return results


SCALE_LABELS = {
    "duration": "recording length (s), rustload on 2 threads",
    "threads": "threads (spin THREADS)",
    "binaries": "distinct binaries exec'd (execloop N)",
    "perfdata": "perf.data size (MB), --perfdata",
}


def scale_run(args):
    results = []
    for dim, x, w in scale_points(args):
        r = run_one("native", w, 0, args, None)
        r.update(dimension=dim, x=x)
        results.append(r)
    results += perfdata_points(args)
    (OUT / "scale.json").write_text(json.dumps(results, indent=1))
    return results


def scale_checks(results):
    """The model's checks: no figure but CPU grows with the number of samples."""
    rows = ["| check | measured | result |", "|---|---|---|"]
    dur = sorted((r for r in results if r["dimension"] == "duration"), key=lambda r: r["x"])
    if len(dur) >= 2 and dur[0].get("rss_mib") and dur[-1].get("rss_mib"):
        a, b = dur[0], dur[-1]
        growth = b["rss_mib"] / a["rss_mib"] - 1
        rows.append(f"| peak RSS flat with recording length ({a['x']} -> {b['x']} s, "
                    f"{cell(a.get('samples'), digits=0)} -> {cell(b.get('samples'), digits=0)} "
                    f"samples): within 10% | {a['rss_mib']:.1f} -> {b['rss_mib']:.1f} MiB "
                    f"({100 * growth:+.1f} %) | {verdict(growth <= 0.10)} |")
        pa, pb = a.get("post"), b.get("post")
        if pa is not None and pb is not None:
            rows.append(f"| post-processing flat with recording length: within 0.1 s | "
                        f"{pa:.2f} -> {pb:.2f} s | {verdict(pb <= pa + 0.1)} |")
        ca, cb = a.get("prof_cpu"), b.get("prof_cpu")
        if ca and cb and a.get("samples") and b.get("samples"):
            per_a, per_b = 1e6 * ca / a["samples"], 1e6 * cb / b["samples"]
            rows.append(f"| profiler CPU per sample constant (it is the per-sample work): "
                        f"within 25% | {per_a:.0f} -> {per_b:.0f} us/sample | "
                        f"{verdict(per_b <= 1.25 * per_a)} |")
        lost = sum(r.get("lost") or 0 for r in dur)
        rows.append(f"| 0 lost samples at every length | {lost} | {verdict(lost == 0)} |")
    pd = sorted((r for r in results if r["dimension"] == "perfdata" and r.get("rss_mib")),
                key=lambda r: r["x"])
    if len(pd) >= 2:
        # The model: RSS = base + per unique stack (+ per binary). A small file holds fewer of
        # the workload's stacks than a big one, so flatness with the number of samples is
        # checked among the files whose unique stacks are within 10% of the biggest file's.
        a, b = pd[0], pd[-1]
        growth = b["rss_mib"] / a["rss_mib"] - 1
        rows.append(f"| --perfdata peak RSS from {a['x']:.0f} to {b['x']:.0f} MB "
                    f"({cell(a.get('stacks'), digits=0)} -> {cell(b.get('stacks'), digits=0)} "
                    f"unique stacks; reported) | {a['rss_mib']:.1f} -> {b['rss_mib']:.1f} MiB "
                    f"({100 * growth:+.1f} %) | n/a |")
        # A file of more samples also holds more of the workload's rare stacks (each new stack
        # costs its frames and, for new code, its names): the check is on the growth per
        # doubling of the number of samples, which a cost per sample would make about 100%.
        if a.get("samples") and b.get("samples") and b["samples"] > a["samples"]:
            doublings = math.log2(b["samples"] / a["samples"])
            per = (b["rss_mib"] / a["rss_mib"]) ** (1 / doublings) - 1
            rows.append(f"| --perfdata peak RSS does not grow with the number of samples "
                        f"({cell(a.get('samples'), digits=0)} -> {cell(b.get('samples'), digits=0)}"
                        f", {doublings:.1f} doublings): at most 5% per doubling | "
                        f"{100 * per:+.1f} % per doubling | {verdict(per <= 0.05)} |")
    return rows


def scale_model(results):
    """Least-squares slopes per dimension: the marginal cost of a thread, a binary, a minute,
    a GB of perf.data."""
    lines = []
    units = {"duration": "min", "threads": "thread", "binaries": "binary", "perfdata": "GB"}
    scale = {"duration": 60, "threads": 1, "binaries": 1, "perfdata": 1000}
    for dim in ["duration", "threads", "binaries", "perfdata"]:
        pts = [r for r in results if r["dimension"] == dim and r.get("rss_mib")]
        if len(pts) < 2:
            continue
        xs = [r["x"] / scale[dim] for r in pts]
        parts = []
        for key, unit in [("rss_mib", "MiB"), ("post", "s"), ("prof_cpu", "CPU s"),
                          ("stacks", "stacks")]:
            ys = [r.get(key) for r in pts]
            if None in ys:
                continue
            slope, icept = linear_fit(xs, ys)
            parts.append(f"{key}: {icept:.3g} {unit} + {slope:.3g} {unit}/{units[dim]}")
        lines.append(f"- {dim}: " + "; ".join(parts))
    return lines


def linear_fit(xs, ys):
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    var = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var if var else 0.0
    return slope, my - slope * mx


def scale_table(results):
    rows = ["| dimension | x | samples | unique stacks | peak RSS MiB | post-processing s | "
            "profiler CPU s | lost |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        x = f"{r['x']:.0f}"
        err = f" ({r['error']})" if r.get("error") else ""
        rows.append(f"| {r['dimension']} | {x} | {cell(r.get('samples'), digits=0)} | "
                    f"{cell(r.get('stacks'), digits=0)} | {cell(r.get('rss_mib'), digits=1)} | "
                    f"{cell(r.get('post'))} | {cell(r.get('prof_cpu'))} | "
                    f"{cell(r.get('lost'), digits=0)}{err} |")
    return rows


def scale_plots(results):
    """One PNG per dimension: peak RSS, post-processing, profiler CPU and lost samples against
    the dimension. Returns the files written, or [] with a line saying how to get matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        system = Path("/usr/bin/python3")
        if system.exists() and sys.executable != str(system) and subprocess.run(
                [str(system), "-c", "import matplotlib"], capture_output=True).returncode == 0:
            log(f"matplotlib: not in {sys.executable}; plotting with {system}")
            subprocess.run([str(system), __file__, "--plot", str(OUT / "scale.json")],
                           check=True)
            return sorted(BENCH.glob("scale-*.png"))
        log("matplotlib is missing: `apt-get install -y python3-matplotlib` (then run with "
            "/usr/bin/python3) or `python3 -m pip install matplotlib`; no plots written")
        return []
    files = []
    for dim, label in SCALE_LABELS.items():
        pts = sorted((r for r in results if r["dimension"] == dim), key=lambda r: r["x"])
        if not pts:
            continue
        fig, axes = plt.subplots(2, 2, figsize=(9, 6.5))
        xs = [r["x"] for r in pts]
        for ax, (key, title) in zip(axes.flat, [
                ("rss_mib", "peak RSS (MiB, VmHWM of flamegraph)"),
                ("post", "post-processing (s)" if dim != "perfdata" else "time to graph (s)"),
                ("prof_cpu", "profiler CPU (s)"), ("lost", "lost samples")]):
            ys = [r.get(key) if r.get(key) is not None else float("nan") for r in pts]
            ax.plot(xs, ys, "o-")
            ax.set_title(title, fontsize=10)
            ax.set_xlabel(label, fontsize=9)
            ax.set_ylim(bottom=0)
            if dim in ("threads", "binaries"):
                ax.set_xscale("log")
                ax.minorticks_off()
            ax.set_xticks(xs)
            ax.set_xticklabels([f"{x:.0f}" for x in xs])
            ax.grid(alpha=0.3)
        fig.suptitle(f"flamegraph native backend: cost against {dim}")
        fig.tight_layout()
        path = BENCH / f"scale-{dim}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        files.append(path)
        log(f"wrote {path}")
    return files


def scale_report(results, args):
    files = scale_plots(results)
    md = ["# Scaling results", "",
          f"Machine: {machine()}.",
          f"Command: `python3 bench/run.py --scale{' --quick' if args.quick else ''}` "
          "(native backend, default settings, 1 run per point).", "",
          *scale_table(results), "",
          "## Checks", "", *scale_checks(results), "",
          "## Model (least-squares fit per dimension: value at 0 + slope)", "",
          *scale_model(results), ""]
    md += [f"![{f.stem}]({f.name})" for f in files]
    text = "\n".join(md) + "\n"
    (BENCH / "scale.md").write_text(text)
    print(text)


# ---------------------------------------------------------------------------------------------
# Soak (issue 14 item 6): 10 minutes, 4 threads, RSS flat after the first minute, nothing lost


def soak_run(args):
    secs = args.soak_seconds or 600
    # rustload does a fixed amount of work calibrated to `secs` bare: profiled on a busy machine
    # it runs longer, and the default limit (600 s) would cut a 600 s soak short.
    args.timeout = max(args.timeout, 2 * secs)
    per_thread = rustload_lines(secs)  # lines for 2 threads on 2 cores ...
    w = Workload(f"soak-{secs}s", [OUT / "bin" / "rustload", 4, per_thread // 2], False,
                 threads=4)  # ... halved: 4 threads share the 2 cores
    r = run_one("native", w, 0, args, None, sample_rss=True)
    series = r.get("rss_series") or []
    # The baseline: the RSS at 1 minute (at a tenth of the run when it lasted under 2 minutes).
    t_base = 60 if series and series[-1][0] >= 120 else (series[-1][0] / 10 if series else 0)
    warm = [s for s in series if s[0] >= t_base]
    soak_arg = f" --soak-seconds {secs}" if secs != 600 else ""
    md = ["# Soak results", "", f"Machine: {machine()}.",
          f"Command: `python3 bench/run.py --soak{soak_arg}`"
          f" (native, `rustload 4 N`: 4 threads, ~{secs} s).", "",
          "| t s | VmRSS MiB | VmHWM MiB |", "|---|---|---|"]
    md += [f"| {t:.0f} | {rss:.1f} | {hwm:.1f} |" for t, rss, hwm in series]
    md += [""]
    if warm:
        base = warm[0][1]
        top = max(s[1] for s in warm)
        growth = top / base - 1
        ok = growth <= 0.05 and r.get("lost") == 0
        md.append(f"RSS after {warm[0][0]:.0f} s: {base:.1f} MiB, largest after it {top:.1f} MiB "
                  f"({100 * growth:+.1f} %); peak (VmHWM at exit) "
                  f"{cell(r.get('rss_mib'), ' MiB', 1)}; {cell(r.get('samples'), digits=0)} "
                  f"samples, {cell(r.get('lost'), digits=0)} lost "
                  f"in {cell(r.get('wall'))} s; post-processing {cell(r.get('post'))} s. "
                  f"Target (RSS within 5% after the first minute, 0 lost): {verdict(ok)}.")
    else:
        md.append(f"no RSS series (the run ended early: {r.get('error', '?')})")
    text = "\n".join(md) + "\n"
    (BENCH / "soak.md").write_text(text)
    print(text)


# ---------------------------------------------------------------------------------------------
# Report


def med(results, contender, workload, key):
    values = [r.get(key) for r in results
              if r["contender"] == contender and r["workload"] == workload]
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def cpu_per_work(results, contender, workload):
    """Median workload CPU seconds per unit of work (per run for fixed-work workloads)."""
    values = []
    for r in results:
        if r["contender"] != contender or r["workload"] != workload.name or not r.get("cpu"):
            continue
        if workload.timed:
            if r.get("work"):
                values.append(r["cpu"] / r["work"])
        else:
            values.append(r["cpu"])
    return statistics.median(values) if values else None


def slowdowns(results, loads):
    """Median slowdown per (contender, workload) in the workload's own CPU time per unit of work
    (the kernel's sampling work is charged to it; time stolen by other processes on the machine
    is not), None where the workload has no work figure."""
    out = {}
    for w in loads:
        bare = cpu_per_work(results, "bare", w) if (w.work_re or not w.timed) else None
        for c in ALL_CONTENDERS[1:]:
            prof = cpu_per_work(results, c, w) if bare else None
            out[c, w.name] = prof / bare - 1 if bare and prof else None
    return out


def cost(results, c, w, slow):
    """Wall seconds on top of the bare run: profiler wall - bare-equivalent program wall."""
    total, wall = med(results, c, w, "total"), med(results, c, w, "wall")
    if total is None or wall is None:
        return None
    return total - wall / (1 + (slow or 0.0))


def cpu_cost(results, c, w, slow):
    """CPU seconds on top of the bare run: the profiler's processes + the workload's extra."""
    prof, cpu = med(results, c, w, "prof_cpu"), med(results, c, w, "cpu")
    if prof is None or cpu is None:
        return None
    return prof + cpu - cpu / (1 + (slow or 0.0))


def cell(v, unit="", digits=2):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}{unit}"
    return f"{v}{unit}"


def figures_table(results, loads, slow):
    rows = ["| workload | contender | program wall s | slowdown | post-processing s | "
            "added wall s | profiler CPU s | added CPU s | samples | lost | rooted | "
            "peak RSS MiB | disk bytes |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for w in loads:
        for c in ALL_CONTENDERS:
            if not any(r["contender"] == c and r["workload"] == w.name for r in results):
                continue
            timed_out = any(r["timed_out"] for r in results
                            if r["contender"] == c and r["workload"] == w.name)
            post = med(results, c, w.name, "post")
            limit = med(results, c, w.name, "limit") or args_timeout
            post_cell = f">{limit:.0f} (timeout)" if timed_out else cell(post)
            s = slow.get((c, w.name))
            share = med(results, c, w.name, "root_share")
            rows.append("| " + " | ".join([
                w.name, c, cell(med(results, c, w.name, "wall")),
                "" if c == "bare" else cell(None if s is None else 100 * s, " %", 1),
                "" if c == "bare" else post_cell,
                "" if c == "bare" else cell(cost(results, c, w.name, s)),
                "" if c == "bare" else cell(med(results, c, w.name, "prof_cpu")),
                "" if c == "bare" else cell(cpu_cost(results, c, w.name, s)),
                "" if c == "bare" else cell(med(results, c, w.name, "samples"), digits=0),
                "" if c == "bare" else cell(med(results, c, w.name, "lost"), digits=0),
                "" if c == "bare" else cell(None if share is None else 100 * share, " %", 1),
                "" if c == "bare" else cell(med(results, c, w.name, "rss_mib"), digits=1),
                "" if c == "bare" else cell(med(results, c, w.name, "disk"), digits=0),
            ]) + " |")
    return rows


def verdict(ok):
    return "n/a" if ok is None else ("PASS" if ok else "MISS")


# Issue 14 item 1 (peak RSS), item 2 (big binaries) and issue 11 item 4 (rooted share), by
# workload.
RSS_TARGET = {"rustc", "ripgrep", "spin64", "rocks"}
BIG_BINARY = {"rustc", "rocks"}
ROOTED_TARGET = {"ripgrep": 0.995, "rustc": 0.95}


def new_targets(add, results, w, n, p_val, p_to):
    """The targets of issues 11, 13 and 14 for workload `w`; n / p_val: native's and perf-cli's
    post-processing (p_to: perf-cli timed out, p_val is then a floor)."""
    if w.name in BIG_BINARY and n is not None:
        ratio = f"{'<' if p_to else ''}{100 * n / p_val:.2f} %" if p_val else "n/a"
        add(f"{w.name}: exit to graph <= 0.5 s and <= 1% of perf-cli's (issue 14)",
            f"{n:.2f} s vs {'>' if p_to else ''}{cell(p_val)} s", ratio,
            n <= 0.5 and (p_val is None or n <= 0.01 * p_val))
    rss = med(results, "native", w.name, "rss_mib")
    if w.name in RSS_TARGET and rss is not None:
        add(f"{w.name}: peak RSS <= 64 MiB (issue 14)", f"{rss:.1f} MiB",
            f"samply: {cell(med(results, 'samply', w.name, 'rss_mib'), ' MiB', 1)}", rss <= 64)
    share = med(results, "native", w.name, "root_share")
    if w.name in ROOTED_TARGET and share is not None:
        want = ROOTED_TARGET[w.name]
        add(f"{w.name}: rooted >= {100 * want:g}% (issue 11)", f"{100 * share:.1f} %",
            f"perf-cli: {cell(pct(med(results, 'perf-cli', w.name, 'root_share')), ' %', 1)}",
            share >= want)
    if w.name.startswith("pingpong"):
        c = "native --off-cpu"
        sl = slowdown_of(results, c, w)
        lost, rss = med(results, c, w.name, "lost"), med(results, c, w.name, "rss_mib")
        rate = med(results, "bare", w.name, "rate")
        strict = w.name == "pingpong-5k"
        measured = (f"slowdown {cell(pct(sl), ' %', 1)}, {cell(lost, digits=0)} lost, "
                    f"{cell(rss, ' MiB', 1)} (bare: {cell(rate, '/s', 0)} switches)")
        ok = None
        if strict and None not in (sl, lost, rss):
            ok = sl <= 0.05 and lost == 0 and rss <= 64
        add(f"{w.name}: --off-cpu slowdown <= 5%, 0 lost, <= 64 MiB (issue 13)"
            if strict else f"{w.name}: --off-cpu figures (issue 13: reported, no target)",
            measured, f"on-CPU only: {cell(pct(slowdown_of(results, 'native', w)), ' %', 1)}",
            ok)


def pct(v):
    return None if v is None else 100 * v


def slowdown_of(results, c, w):
    bare, prof = cpu_per_work(results, "bare", w), cpu_per_work(results, c, w)
    return prof / bare - 1 if bare and prof else None


def targets_table(results, loads, slow, long_run, perfdata, quick):
    rows = ["| target | measured | vs perf-cli (same run) | result |", "|---|---|---|---|"]

    def add(name, measured, ratio, ok):
        rows.append(f"| {name} | {measured} | {ratio} | {verdict(ok)} |")

    def timed_out(c, w):
        return any(r["timed_out"] for r in results if r["contender"] == c and r["workload"] == w)

    for w in loads:
        n, p, pn = (med(results, c, w.name, "post") for c in
                    ["native", "perf-cli", "perf-cli --no-inline"])
        p_to = timed_out("perf-cli", w.name)
        if p_to:  # post-processing took more than the limit minus the program's run
            p_val = (med(results, "perf-cli", w.name, "limit") or args_timeout) - (
                med(results, "perf-cli", w.name, "wall") or 0.0)
        else:
            p_val = p
        if n is not None and p_val:
            ratio = n / p_val
            add(f"{w.name}: post-processing (inline) <= 5% of perf-cli's",
                f"{n:.2f} s vs {'>' if p_to else ''}{p_val:.2f} s",
                f"{'<' if p_to else ''}{100 * ratio:.1f} %", ratio <= 0.05)
        if n is not None and pn is not None:
            add(f"{w.name}: post-processing <= perf script --no-inline",
                f"{n:.2f} s vs {pn:.2f} s", f"{100 * n / pn:.1f} % of --no-inline", n <= pn)
        sn, sp = slow.get(("native", w.name)), slow.get(("perf-cli", w.name))
        if sn is not None:
            add(f"{w.name}: slowdown <= 5% and <= perf record's (+1 point of noise)",
                f"{100 * sn:.1f} % (perf record: {cell(None if sp is None else 100 * sp, ' %', 1)})",
                "", sn <= 0.05 and (sp is None or sn <= sp + 0.01))
        ss = slow.get(("samply", w.name))
        cn, cs = cost(results, "native", w.name, sn), cost(results, "samply", w.name, ss)
        cp = cost(results, "perf-cli", w.name, sp)
        if cn is not None and cs is not None:
            add(f"{w.name}: added wall time < samply's", f"{cn:.2f} s vs samply {cs:.2f} s",
                f"perf-cli: {'>' if p_to else ''}{cell(cp)} s", cn < cs)
        cn, cs = cpu_cost(results, "native", w.name, sn), cpu_cost(results, "samply", w.name, ss)
        cp = cpu_cost(results, "perf-cli", w.name, sp)
        if cn is not None and cs is not None:
            add(f"{w.name}: added CPU time < samply's", f"{cn:.2f} s vs samply {cs:.2f} s",
                "perf-cli: timed out" if p_to else f"perf-cli: {cell(cp)} s", cn < cs)
        if cn is not None and cs:
            add(f"{w.name}: added CPU <= 33% of samply's (issue 14)",
                f"{cn:.2f} s vs samply {cs:.2f} s", f"{100 * cn / cs:.0f} % of samply's",
                cn <= 0.33 * cs)
        new_targets(add, results, w, n, p_val, p_to)
        other = med(results, "native", w.name, "other_disk")
        if other is not None:
            add(f"{w.name}: nothing on disk but the output", f"{other:.0f} extra bytes",
                f"perf-cli: {cell(med(results, 'perf-cli', w.name, 'disk'), digits=0)} bytes",
                other == 0)
    rust = [w for w in loads if w.name == "rustload"]
    if rust:
        lost = med(results, "native", "rustload", "lost")
        wall = med(results, "native", "rustload", "wall")
        add(f"0 lost samples, 2 threads, 20 s{' (quick: shorter)' if quick else ''}",
            f"{cell(lost, digits=0)} lost in {cell(wall)} s",
            f"perf-cli lost: {cell(med(results, 'perf-cli', 'rustload', 'lost'), digits=0)}",
            None if lost is None else lost == 0)
    if long_run:
        rss = long_run.get("rss_mib")
        add("peak RSS <= 64 MiB, 60 s, 2 threads",
            f"{cell(rss, ' MiB', 1)} ({cell(long_run.get('wall'))} s, "
            f"{cell(long_run.get('samples'))} samples, {cell(long_run.get('lost'))} lost)",
            "", None if rss is None else rss <= 64)
    elif rust:
        rss = med(results, "native", "rustload", "rss_mib")
        add("peak RSS <= 64 MiB (quick: the rustload run, not 60 s)", cell(rss, " MiB", 1),
            f"perf-cli: {cell(med(results, 'perf-cli', 'rustload', 'rss_mib'), ' MiB', 1)}",
            None if rss is None else rss <= 64)
    if perfdata:
        (tn, ton), (tp, top) = perfdata["timings"]["native"], perfdata["timings"][
            "perf script + inferno"]
        add(f"--perfdata >= 20x faster than perf script + inferno ({perfdata['size'] >> 20} MiB)",
            f"{tn:.2f} s{' (timeout)' if ton else ''} vs {'>' if top else ''}{tp:.2f} s",
            f"{'>' if top else ''}{tp / tn:.1f}x", tp / tn >= 20)
    return rows


def machine():
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    load = Path("/proc/loadavg").read_text().split()[:3]
    return (f"{os.cpu_count()} CPUs ({cpu}), Linux {platform.release()}, "
            f"load average at the end {' '.join(load)}, "
            f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}")


args_timeout = 0.0


def main():
    global args_timeout
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 repetition, short workloads")
    ap.add_argument("--reps", type=int, help="repetitions (default 3, quick 1)")
    ap.add_argument("--timeout", type=float, help="per-run limit in seconds (default 600, "
                    "quick 240); a run over it counts as 'more than' the limit")
    ap.add_argument("--only", help="comma-separated workloads (split, rustload, recurse, rustc, "
                    "ripgrep, spin64, rocks, pingpong-5k, pingpong-max, system-wide)")
    ap.add_argument("--no-samply", action="store_true", help="skip samply")
    ap.add_argument("--no-long", action="store_true", help="skip the 60 s RSS run (full mode)")
    ap.add_argument("--keep", action="store_true", help="keep perf.data files")
    ap.add_argument("--prepare", action="store_true",
                    help="build the cached ripgrep and RocksDB workloads "
                    "(once; ~40-60 min) and exit")
    ap.add_argument("--scale", action="store_true", help="the scaling run (issue 14 item 5): "
                    "figures and plots into bench/scale.md and bench/scale-*.png")
    ap.add_argument("--soak", action="store_true", help="the soak run (issue 14 item 6): "
                    "a 10-minute, 4-thread profile; RSS series into bench/soak.md")
    ap.add_argument("--soak-seconds", type=int, help="length of the soak run (default 600)")
    ap.add_argument("--plot", metavar="JSON", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.reps = args.reps or (1 if args.quick else 3)
    args.timeout = args.timeout or (240.0 if args.quick else 600.0)
    args_timeout = args.timeout

    if args.plot:  # internal: plots with another interpreter that has matplotlib
        scale_plots(json.loads(Path(args.plot).read_text()))
        return
    if args.prepare:
        prepare()
        return
    build(args)
    if args.scale or args.soak:
        if args.scale:
            scale_report(scale_run(args), args)
        if args.soak:
            soak_run(args)
        return
    samply = None if args.no_samply else find_samply()
    loads = workloads(args)
    if args.only:
        loads = [w for w in loads if w.name in args.only.split(",")]
    results = run_all(args, loads, samply)
    long_run = None if args.quick or args.no_long else long_native_run(args, samply)
    perfdata = perfdata_comparison(args)
    sw = system_wide_run(args) if not args.only or "system-wide" in args.only else None
    (OUT / "results.json").write_text(json.dumps(
        dict(results=results, long_run=long_run, perfdata=perfdata, system_wide=sw), indent=1))

    slow = slowdowns(results, loads)
    mode = "quick (1 repetition, short workloads)" if args.quick else f"{args.reps} repetitions"
    md = [
        "# Benchmark results",
        "",
        f"Machine: {machine()}.",
        f"Command: `python3 bench/run.py{' --quick' if args.quick else ''}` ({mode}; medians).",
        "",
        "## Figures",
        "",
        *figures_table(results, loads, slow),
        "",
        "## Targets (issues 6, 11, 13, 14)",
        "",
        *targets_table(results, loads, slow, long_run, perfdata, args.quick),
        *system_wide_rows(sw)[2:],
        "",
        "Method and workloads: see bench/README.md. perf-cli = flamegraph 0.6's pipeline "
        "(`perf record -F 997 --call-graph dwarf,64000`, `perf script`, inferno); native copies "
        "49152 stack bytes (the default). `>N (timeout)`: the run was stopped at its limit.",
        "",
    ]
    text = "\n".join(md)
    (BENCH / "results.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
