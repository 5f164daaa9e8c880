#!/usr/bin/env python3
"""Benchmark flamegraph against the perf pipeline (flamegraph 0.6) and samply, side by side.

    python3 bench/run.py            # full: 3 repetitions, ~10-20 s workloads, a 60 s RSS run
    python3 bench/run.py --quick    # 1 repetition, short workloads (a smoke run, not the targets)

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

# Frames that mean "this stack was unwound to its bottom".
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
    "main",
)

CONTENDERS = ["bare", "native", "perf-cli", "perf-cli --no-inline", "samply"]


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
    rustload = BENCH / "workloads" / "rustload"
    run(["cargo", "build", "--release"], cwd=rustload)
    shutil.copy(rustload / "target" / "release" / "rustload", OUT / "bin" / "rustload")
    if not args.no_samply:
        find_samply(install=True)


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

    def __init__(self, name, argv, timed, work_re=None, threads=1):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.timed = timed
        self.work_re = work_re
        self.threads = threads

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


def workloads(args):
    secs = 3 if args.quick else 10
    rust_secs = 5 if args.quick else 20
    lines = rustload_lines(rust_secs)
    return [
        Workload("split", [OUT / "bin" / "split", "serial", secs], True, r"rounds=(\d+)"),
        Workload("rustload", [OUT / "bin" / "rustload", 2, lines], False, threads=2),
        Workload("recurse", [OUT / "bin" / "recurse", 300, secs], True),
    ]


# ---------------------------------------------------------------------------------------------
# One run


def contender_cmd(contender, workload, samply):
    """The command line of `contender` profiling `workload`, and its output file."""
    fg = [str(FLAMEGRAPH), "-v", "--post-process", "tee stacks.folded", "-o", "out.svg"]
    if contender == "bare":
        return workload.argv, None
    if contender == "native":
        return fg + ["--"] + workload.argv, "out.svg"
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
    if contender == "native":
        m = re.search(r"recorded (\d+) samples", stderr)
        samples = int(m.group(1)) if m else None
        m = re.search(r"lost (\d+) of (\d+) samples", stderr)
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


def run_one(contender, workload, rep, args, samply):
    run_dir = OUT / "runs" / f"{workload.name}-{contender.replace(' ', '')}-{rep}"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    stamp_file = OUT / "runs" / f"{run_dir.name}.stamps"
    stamp_file.unlink(missing_ok=True)
    cmd, output = contender_cmd(contender, workload, samply)
    env = dict(os.environ, LD_PRELOAD=str(STAMP_SO), BENCH_STAMP_FILE=str(stamp_file))
    log(f"{workload.name} / {contender} / rep {rep}")
    t0 = time.monotonic_ns()
    timed_out = False
    proc = subprocess.Popen(cmd, cwd=run_dir, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=args.timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
    t1 = time.monotonic_ns()
    (run_dir.parent / f"{run_dir.name}.stderr").write_text(stderr)
    if proc.returncode != 0 and not timed_out:
        log(f"  exit {proc.returncode}: {stderr.strip()[-500:]}")
    stamps = read_stamps(stamp_file)
    prog_name = Path(workload.argv[0]).name
    prog = [s for s in stamps if s["comm"] == prog_name]
    others = [s for s in stamps if s["comm"] != prog_name and s["comm"] != "tee"]
    result = dict(contender=contender, workload=workload.name, timed_out=timed_out,
                  total=(t1 - t0) / 1e9)
    if prog:
        p = max(prog, key=lambda s: s["end"] - s["start"])
        result["wall"] = (p["end"] - p["start"]) / 1e9
        result["post"] = max(0.0, (t1 - p["end"]) / 1e9) if not timed_out else None
        result["cpu"] = sum(s["cpu"] for s in prog)
    result["work"] = workload.work(stdout)
    if contender != "bare":
        folded = run_dir / "stacks.folded"
        result["samples"], result["lost"] = count_samples(contender, run_dir, stderr, folded)
        result["root_share"] = root_share(folded) if contender != "samply" else None
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
                         if k not in ("contender", "workload")))
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
    contenders = [c for c in CONTENDERS if not (c == "samply" and not samply)]
    results = []
    paranoid = Paranoid()
    try:
        for rep in range(args.reps):
            for w in loads:
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
        for c in CONTENDERS[1:]:
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
        for c in CONTENDERS:
            if not any(r["contender"] == c and r["workload"] == w.name for r in results):
                continue
            timed_out = any(r["timed_out"] for r in results
                            if r["contender"] == c and r["workload"] == w.name)
            post = med(results, c, w.name, "post")
            post_cell = f">{args_timeout:.0f} (timeout)" if timed_out else cell(post)
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
        p_val = args_timeout if p_to else p
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
                f"perf-cli: {cell(cp)} s", cn < cs)
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
    ap.add_argument("--only", help="comma-separated workloads (split,rustload,recurse)")
    ap.add_argument("--no-samply", action="store_true", help="skip samply")
    ap.add_argument("--no-long", action="store_true", help="skip the 60 s RSS run (full mode)")
    ap.add_argument("--keep", action="store_true", help="keep perf.data files")
    args = ap.parse_args()
    args.reps = args.reps or (1 if args.quick else 3)
    args.timeout = args.timeout or (240.0 if args.quick else 600.0)
    args_timeout = args.timeout

    build(args)
    samply = None if args.no_samply else find_samply()
    loads = workloads(args)
    if args.only:
        loads = [w for w in loads if w.name in args.only.split(",")]
    results = run_all(args, loads, samply)
    long_run = None if args.quick or args.no_long else long_native_run(args, samply)
    perfdata = perfdata_comparison(args)
    (OUT / "results.json").write_text(json.dumps(
        dict(results=results, long_run=long_run, perfdata=perfdata), indent=1))

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
        "## Targets (issue 6)",
        "",
        *targets_table(results, loads, slow, long_run, perfdata, args.quick),
        "",
        "Method: see bench/README.md. Workloads: `split serial` (60/30/10 C fixture, timed, "
        "work counted in rounds), `rustload 2 N` (2 threads, fixed work), `recurse 300` "
        "(timed, no work figure). perf-cli = flamegraph 0.6's pipeline (`perf record -F 997 "
        "--call-graph dwarf,64000`, `perf script`, inferno); native copies 32768 stack bytes.",
        "",
    ]
    text = "\n".join(md)
    (BENCH / "results.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
