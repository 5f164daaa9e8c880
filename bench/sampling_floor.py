#!/usr/bin/env python3
"""What sampling alone costs the workload, against what each profiler adds.

    python3 bench/sampling_floor.py [REPS]      (after `python3 bench/run.py` built bench/out)

The slowdown of bench/run.py (the workload's own CPU time per unit of work, against a bare run)
charges the kernel's sampling work to the workload: the timer interrupt, the sample record, the
stack copy. This script runs spin (64 threads) and split (serial) for 5 s each, REPS times
(default 5), alternating: bare; `perf record -F 997 -e cpu-clock` with no stacks at all (the
floor any sampler at 997 Hz pays); the same with frame-pointer callchains (`-g`); the native
backend; samply. It prints each one's median slowdown. Where the floor is most of a profiler's
slowdown, no profiler at that rate can add much less CPU to the workload than another.
"""

import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "bench" / "out" / "bin"
STAMP_SO = BIN / "stamp.so"
FLAMEGRAPH = ROOT / "target" / "release" / "flamegraph"
PARANOID = Path("/proc/sys/kernel/perf_event_paranoid")
LOADS = {"spin64": [BIN / "spin", "64", "5"], "split": [BIN / "split", "serial", "5"]}
CONTENDERS = ["bare", "perf, no stacks", "perf -g", "native", "samply"]


def command(contender, argv, scratch):
    samply = shutil.which("samply") or str(Path.home() / ".cargo" / "bin" / "samply")
    return {
        "bare": [],
        "perf, no stacks": ["perf", "record", "-q", "-F", "997", "-e", "cpu-clock",
                            "-o", scratch / "perf.data", "--"],
        "perf -g": ["perf", "record", "-q", "-F", "997", "-e", "cpu-clock", "-g",
                    "-o", scratch / "perf.data", "--"],
        "native": [FLAMEGRAPH, "-o", scratch / "out.svg", "--"],
        "samply": [samply, "record", "-s", "-n", "--unstable-presymbolicate", "-r", "997",
                   "-o", scratch / "profile.json.gz", "--"],
    }[contender] + [str(a) for a in argv]


def cpu_per_round(contender, name, argv):
    """The workload's CPU seconds per round (its stamp: getrusage at exit) under `contender`."""
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        stamp = scratch / "stamp"
        env = dict(os.environ, LD_PRELOAD=str(STAMP_SO), BENCH_STAMP_FILE=str(stamp))
        out = subprocess.run([str(c) for c in command(contender, argv, scratch)], env=env,
                             capture_output=True, text=True, check=True)
        rounds = int(re.search(r"rounds=(\d+)", out.stdout).group(1))
        workload = Path(argv[0]).name
        cpu = [int(f[6]) / 1e9 for f in (l.split() for l in stamp.read_text().splitlines())
               if len(f) == 7 and f[1] == workload]
        return cpu[-1] / rounds


def main():
    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    before = PARANOID.read_text().strip()
    per_round = {}
    try:
        for _ in range(reps):
            for name, argv in LOADS.items():
                for c in CONTENDERS:
                    # samply opens its events as a user would: it needs paranoid <= 1.
                    PARANOID.write_text("1" if c == "samply" else before)
                    per_round.setdefault((name, c), []).append(cpu_per_round(c, name, argv))
    finally:
        PARANOID.write_text(before)
    for name in LOADS:
        bare = statistics.median(per_round[name, "bare"])
        cells = [f"{c}: {100 * (statistics.median(per_round[name, c]) / bare - 1):+.2f} %"
                 for c in CONTENDERS[1:]]
        print(f"{name} (median of {reps}): " + ", ".join(cells))


if __name__ == "__main__":
    main()
