/*
 * small.c: one of the N distinct binaries execloop runs. Built N times with -DID=k (k = 0..N-1),
 * so every copy has its own constants, code bytes and build-id: N binaries for the profiler to
 * open, unwind and symbolize. Computes for about MS milliseconds of its CPU time in
 * small_work_ID (a name that differs per binary, so each copy has its own frames).
 *
 * Usage: small_K MS
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#ifndef ID
#define ID 0
#endif
#define CAT2(a, b) a##b
#define CAT(a, b) CAT2(a, b)
#define WORK CAT(small_work_, ID)

static volatile unsigned long sink;

__attribute__((noinline, noclone)) unsigned long WORK(unsigned long x, double ms) {
    struct timespec ts;
    double end;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    end = ts.tv_sec * 1e3 + ts.tv_nsec / 1e6 + ms;
    do {
        for (int i = 0; i < 20000; i++) {
            x = x * 6364136223846793005UL + (1442695040888963407UL + ID);
        }
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    } while (ts.tv_sec * 1e3 + ts.tv_nsec / 1e6 < end);
    return x;
}

int main(int argc, char **argv) {
    double ms = argc > 1 ? atof(argv[1]) : 20;
    sink = WORK(ID, ms);
    return 0;
}
