/*
 * seed.c: a tiny program for the fuzz seeds. Built by build.sh into the ELF files the unwind
 * target walks over (`unwind_seed*`) and the symbolize target's seed corpus, and recorded with
 * `perf record` for the perf_data target's seed corpus. Its shapes are the ones the unwinder
 * must handle: a frame-pointer frame, a frameless leaf, a large frame, alloca (CFA from rbp),
 * recursion, calls through the PLT, an inlined function and a signal handler.
 */
#include <alloca.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile unsigned long sink;

static inline __attribute__((always_inline)) unsigned long hot_inlined(unsigned long n) {
    unsigned long acc = 0;
    for (unsigned long i = 0; i < n; i++)
        acc += i ^ 0x5aUL;
    return acc;
}

__attribute__((noinline)) unsigned long leaf(unsigned long n) {
    return hot_inlined(n);
}

__attribute__((noinline)) unsigned long big_frame(unsigned long n) {
    volatile char buf[4096];
    memset((char *)buf, (int)n, sizeof buf);
    return leaf(n) + buf[n % sizeof buf];
}

__attribute__((noinline)) unsigned long with_alloca(unsigned long n) {
    char *p = alloca(n % 512 + 16);
    memset(p, 1, n % 512 + 16);
    return big_frame(n) + p[0];
}

__attribute__((noinline)) unsigned long recurse(unsigned long depth, unsigned long n) {
    if (depth == 0)
        return with_alloca(n);
    return recurse(depth - 1, n) + 1;
}

static void on_signal(int sig) {
    sink += leaf((unsigned long)sig * 1000);
}

int main(int argc, char **argv) {
    unsigned long rounds = argc > 1 ? strtoul(argv[1], NULL, 10) : 1;
    signal(SIGUSR1, on_signal);
    for (unsigned long r = 0; r < rounds; r++) {
        sink += recurse(8, 200000);
        if (r % 64 == 0)
            raise(SIGUSR1);
    }
    printf("seed %lu\n", (unsigned long)sink);
    return 0;
}
