/*
 * pingpong.c: two threads hand a byte back and forth over two pipes, for off-CPU profiling.
 *
 * Usage: pingpong WORK_US SECONDS
 *
 * Each thread, on receiving the byte, computes for about WORK_US microseconds (a loop calibrated
 * on the thread's CPU clock at start) in hop_work(), writes the byte to the other thread and
 * blocks in read() until it comes back. Each hand-off is one voluntary context switch of the
 * sender, so the switch rate is about 1e6 / (WORK_US + the pipe's wake-up latency) per second:
 * WORK_US 190 gives ~5k switches/s, WORK_US 0 as many as the machine does (~100k/s).
 * Runs for SECONDS of wall time, then prints
 *
 *     hops=N switches=S wall=W rate=R/s
 *
 * hops: hand-offs done (the work figure: CPU time per hop is the slowdown measure);
 * switches: voluntary context switches of the process (getrusage), rate = switches / wall.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static int ab[2], ba[2];
static long iters_per_hop;
static volatile int stop;
static volatile unsigned long sink;
static long hops[2];

static double mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double thread_cpu(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((noinline, noclone)) void hop_work(long n) {
    unsigned long x = sink;
    for (long i = 0; i < n; i++) x = x * 6364136223846793005UL + 1442695040888963407UL;
    sink = x;
}

/* Loop iterations per microsecond of this thread's CPU time. */
static double calibrate(void) {
    long n = 1000000;
    double t0 = thread_cpu();
    hop_work(n);
    double t = thread_cpu() - t0;
    return n / (t * 1e6 > 1 ? t * 1e6 : 1);
}

/* Side 0 starts the exchange; both sides stop when `stop` is set (side 0 then closes its
 * write end, so side 1's read returns 0). */
__attribute__((noinline, noclone)) void wait_for_peer(int fd, char *c, int *eof) {
    if (read(fd, c, 1) != 1) *eof = 1;
}

static void *side(void *arg) {
    long me = (long)arg;
    int in = me ? ab[0] : ba[0], out = me ? ba[1] : ab[1];
    char c = 'x';
    int eof = 0;
    if (me == 0 && write(out, &c, 1) != 1) return NULL;
    for (;;) {
        wait_for_peer(in, &c, &eof);
        if (eof) break;
        hop_work(iters_per_hop);
        hops[me]++;
        if (me == 0 && stop) {
            close(out);
            break;
        }
        if (write(out, &c, 1) != 1) break;
    }
    if (me == 1) close(out);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: pingpong WORK_US SECONDS\n");
        return 2;
    }
    double work_us = atof(argv[1]), secs = atof(argv[2]);
    iters_per_hop = (long)(work_us * calibrate());
    if (pipe(ab) || pipe(ba)) {
        perror("pipe");
        return 1;
    }
    double t0 = mono();
    pthread_t t[2];
    for (long i = 0; i < 2; i++) pthread_create(&t[i], NULL, side, (void *)i);
    struct timespec ts = {(time_t)secs, (long)((secs - (time_t)secs) * 1e9)};
    nanosleep(&ts, NULL);
    stop = 1;
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    double wall = mono() - t0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("hops=%ld switches=%ld wall=%.3f rate=%.0f/s\n", hops[0] + hops[1], ru.ru_nvcsw, wall,
           ru.ru_nvcsw / wall);
    return 0;
}
