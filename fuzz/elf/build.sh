#!/bin/sh
# Builds the ELF files of the fuzz seeds from seed.c (run from any directory; gcc and g++).
# unwind_seed*: the modules the unwind target walks over, committed so that the corpus of that
# target keeps its meaning (built only when missing). The others go to the symbolize seed corpus.
set -eu
cd "$(dirname "$0")"
if [ ! -e unwind_seed ]; then
    gcc -O2 -g -fno-omit-frame-pointer -o unwind_seed seed.c
    strip unwind_seed                          # .eh_frame only
fi
if [ ! -e unwind_seed_debug_frame ]; then
    gcc -O2 -g -fomit-frame-pointer -fno-asynchronous-unwind-tables -fno-unwind-tables \
        -o unwind_seed_debug_frame seed.c      # .debug_frame only
    objcopy --remove-section=.eh_frame --remove-section=.eh_frame_hdr unwind_seed_debug_frame
fi
out=${1:-/tmp/fuzz-elf}
mkdir -p "$out"
gcc -O2 -g -o "$out/c_g" seed.c
gcc -O0 -gdwarf-4 -o "$out/c_dwarf4" seed.c
gcc -O2 -g -gz=zlib -o "$out/c_gz" seed.c
gcc -O2 -o "$out/c_stripped" seed.c && strip "$out/c_stripped"
gcc -O2 -g -shared -fPIC -o "$out/c_shared.so" seed.c
g++ -O1 -g -x c++ -o "$out/cpp_g" - <<'CPP'
namespace ns { template <typename T> struct Box { __attribute__((noinline)) T get(T v) { return v * 3; } }; }
int main(int argc, char **) { ns::Box<long> b; return (int)b.get(argc); }
CPP
