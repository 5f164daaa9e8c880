/*
 * spin.c: THREADS threads computing for SECONDS of wall time, for the thread-count scaling run
 * and the 64-thread workload.
 *
 * Usage: spin THREADS SECONDS
 *
 * Each thread loops over three functions of different cost (work_a, work_b, work_c under
 * step()), so the profile has a handful of distinct stacks whatever its length: the number of
 * unique stacks grows with the number of threads only (each thread is its own root). Prints
 * rounds=N, the rounds all threads did (the work figure).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static volatile int stop;
static volatile unsigned long sink;

static unsigned long mix(unsigned long x, long n) {
    for (long i = 0; i < n; i++) x = x * 6364136223846793005UL + 1442695040888963407UL;
    return x;
}

__attribute__((noinline, noclone)) unsigned long work_a(unsigned long x) { return mix(x, 60000); }
__attribute__((noinline, noclone)) unsigned long work_b(unsigned long x) { return mix(x, 30000); }
__attribute__((noinline, noclone)) unsigned long work_c(unsigned long x) { return mix(x, 10000); }

__attribute__((noinline, noclone)) unsigned long step(unsigned long x) {
    return work_c(work_b(work_a(x)));
}

static void *worker(void *arg) {
    long *rounds = arg;
    unsigned long x = (unsigned long)rounds;
    while (!stop) {
        x = step(x);
        ++*rounds;
    }
    sink = x;
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: spin THREADS SECONDS\n");
        return 2;
    }
    int n = atoi(argv[1]);
    double secs = atof(argv[2]);
    if (n < 1 || n > 1024) {
        fprintf(stderr, "spin: THREADS must be 1..1024\n");
        return 2;
    }
    pthread_t *t = calloc(n, sizeof *t);
    long *rounds = calloc(n, sizeof *rounds);
    for (int i = 0; i < n; i++) pthread_create(&t[i], NULL, worker, &rounds[i]);
    struct timespec ts = {(time_t)secs, (long)((secs - (time_t)secs) * 1e9)};
    nanosleep(&ts, NULL);
    stop = 1;
    long total = 0;
    for (int i = 0; i < n; i++) {
        pthread_join(t[i], NULL);
        total += rounds[i];
    }
    printf("rounds=%ld\n", total);
    return 0;
}
