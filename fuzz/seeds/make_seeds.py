#!/usr/bin/env python3
"""Writes the seed inputs of the fuzz targets into fuzz/corpus/<target>/ (x86_64 Linux, perf, gcc).

- perf_data: small real perf.data files of fuzz/elf/seed.c (perf record -F 50, with -g and
  --call-graph dwarf, with and without -z, file and pipe mode, one and two events).
- record: every distinct (type, misc) record of those files, each with the SampleFormat of
  its event, in the layout of flamegraph::fuzzing::record.
- unwind: samples of fuzz/elf/unwind_seed* recorded with --call-graph dwarf, their registers,
  stack and return addresses moved to the addresses flamegraph::fuzzing::unwind maps.
- symbolize: the ELF files fuzz/elf/build.sh builds, with the file offsets of four functions.

Usage: fuzz/seeds/make_seeds.py   (from anywhere; needs perf_event_paranoid <= 2)
"""
import os
import struct
import subprocess
import sys
import tempfile

FUZZ = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ELF = os.path.join(FUZZ, "elf")
CORPUS = os.path.join(FUZZ, "corpus")
UNWIND_BASE = 0x5555_5555_4000
UNWIND_STACK = 0x7FFD_0000_0000
ROUNDS = "2500"  # about 0.2 s of CPU: ~10 samples at -F 50


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def perf_record(args, program, out):
    cmd = ["perf", "record", "-q", "-F", "50", "-o", out] + args + [program, ROUNDS]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(out, "rb") as f:
        return f.read()


def attrs(data):
    """(sample_type, read_format, sample_id_all, branch_sample_type, regs_user) per attr."""
    attr_size, (off, size) = struct.unpack_from("<Q", data, 16)[0], struct.unpack_from("<QQ", data, 24)
    out = []
    for at in range(off, off + size, attr_size):
        st, rf, flags = struct.unpack_from("<QQQ", data, at + 24)
        bst, regs = struct.unpack_from("<QQ", data, at + 72)
        out.append((st, rf, (flags >> 18) & 1, bst, regs))
    return out


def records(data):
    """(type, misc, body) of the data section of a (non-pipe, uncompressed) perf.data file."""
    off, size = struct.unpack_from("<QQ", data, 40)
    at = off
    while at + 8 <= off + size:
        kind, misc, rsize = struct.unpack_from("<IHH", data, at)
        if rsize < 8:
            return
        yield kind, misc, data[at + 8 : at + rsize]
        at += rsize


def record_seeds(name, data):
    st, rf, sid, bst, regs = attrs(data)[0]
    flags = sid | (2 if bst & (1 << 17) else 0)
    seen = set()
    for kind, misc, body in records(data):
        if (kind, misc) in seen or kind > 255:
            continue
        seen.add((kind, misc))
        head = struct.pack("<QQBBBH", st, regs, rf & 0xFF, flags, kind, misc)
        write("record", f"{name}-{kind}-{misc:x}", head + body)


def sample_fields(st, regs_mask, body):
    """ip, regs dict (perf reg number -> value), stack bytes of a sample body."""
    at = 0
    fields = {}
    for bit, name, n in [(16, "identifier", 8), (0, "ip", 8), (1, "tid", 8), (2, "time", 8),
                         (3, "addr", 8), (6, "id", 8), (9, "stream", 8), (7, "cpu", 8),
                         (8, "period", 8)]:
        if st & (1 << bit):
            fields[name] = struct.unpack_from("<Q", body, at)[0]
            at += n
    if st & (1 << 5):
        nr = struct.unpack_from("<Q", body, at)[0]
        at += 8 + 8 * nr
    regs = {}
    if st & (1 << 12):
        abi = struct.unpack_from("<Q", body, at)[0]
        at += 8
        if abi:
            for reg in range(64):
                if regs_mask & (1 << reg):
                    regs[reg] = struct.unpack_from("<Q", body, at)[0]
                    at += 8
    stack = b""
    if st & (1 << 13):
        size = struct.unpack_from("<Q", body, at)[0]
        at += 8
        if size:
            stack = body[at : at + size]
            dyn = struct.unpack_from("<Q", body, at + size)[0]
            stack = stack[:dyn]
    return regs, stack


def unwind_seeds(module_index, elf_name, data):
    st, _, _, _, regs_mask = attrs(data)[0]
    maps = []  # (start, end, pgoff) of the module's mappings
    count = 0
    for kind, misc, body in records(data):
        if kind == 10:
            pid, tid, addr, length, pgoff = struct.unpack_from("<IIQQQ", body, 0)
            if body[64:].split(b"\0")[0].endswith(elf_name.encode()):
                maps.append((addr, addr + length, pgoff))
        if kind != 9 or not maps:
            continue
        regs, stack = sample_fields(st, regs_mask, body)
        if 8 not in regs or len(stack) < 64:
            continue
        ip, sp, bp = regs[8], regs[7], regs[6]
        low = min(m[0] - m[2] for m in maps)
        high = max(m[1] for m in maps)

        def move(word):
            if low <= word < high:  # a code address of the module: to UNWIND_BASE
                return UNWIND_BASE + word - low
            if sp <= word < sp + 0x10000:  # a stack address: to UNWIND_STACK
                return UNWIND_STACK + word - sp
            return word

        words = [move(w) for w in struct.unpack_from(f"<{len(stack) // 8}Q", stack)]
        moved = struct.pack(f"<{len(words)}Q", *words)
        head = struct.pack("<BQQQQ", module_index << 1, (move(ip) - UNWIND_BASE) % 2**64, 0,
                           (move(bp) - UNWIND_STACK) % 2**64, 0)
        write("unwind", f"{elf_name}-{count}", head + moved)
        count += 1
        if count >= 6:
            return


def symbol_offsets(path, names):
    out = subprocess.run(["nm", path], check=True, capture_output=True, text=True).stdout
    table = {line.split()[2]: int(line.split()[0], 16) for line in out.splitlines()
             if len(line.split()) == 3}
    return [table.get(n, 0) for n in names]


def main():
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([os.path.join(ELF, "build.sh"), tmp], check=True)
        program = os.path.join(tmp, "c_g")
        variants = {
            "fp": ["-g"],
            "dwarf": ["--call-graph", "dwarf,1024"],
            "z-fp": ["-z", "-g"],
            "z-dwarf": ["-z", "--call-graph", "dwarf,1024"],
            "two-events": ["-e", "cpu-clock,task-clock", "-g"],
        }
        for name, args in variants.items():
            data = perf_record(args, program, os.path.join(tmp, name + ".data"))
            write("perf_data", name, data)
            if not name.startswith("z"):
                record_seeds(name, data)
        for name, args in {"pipe": ["-g"], "z-pipe": ["-z", "--call-graph", "dwarf,1024"]}.items():
            cmd = ["perf", "record", "-q", "-F", "50", "-o", "-"] + args + [program, ROUNDS]
            data = subprocess.run(cmd, check=True, capture_output=True).stdout
            write("perf_data", name, data)
        for index, elf in enumerate(["unwind_seed", "unwind_seed_debug_frame"]):
            data = perf_record(["--call-graph", "dwarf,12288"], os.path.join(ELF, elf),
                               os.path.join(tmp, elf + ".data"))
            unwind_seeds(index, elf, data)
        functions = ["leaf", "big_frame", "with_alloca", "main"]
        for elf in sorted(os.listdir(tmp)):
            path = os.path.join(tmp, elf)
            if elf.endswith(".data") or not os.path.isfile(path):
                continue
            offsets = symbol_offsets(os.path.join(tmp, "c_g"), functions)
            if elf.startswith("cpp"):
                offsets = symbol_offsets(path, ["main", "_ZN2ns3BoxIlE3getEl"] * 2)
            with open(path, "rb") as f:
                write("symbolize", elf, struct.pack("<B4I", 3, *[o + 4 for o in offsets]) + f.read())


if __name__ == "__main__":
    sys.exit(main())
