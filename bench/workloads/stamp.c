/*
 * stamp.c: an LD_PRELOAD library the benchmark loads into every process it starts (the profiler,
 * perf, samply, addr2line, the workload). At exit, each process appends one line to the file
 * named by $BENCH_STAMP_FILE:
 *
 *     pid comm start_ns end_ns vm_hwm_kib write_bytes cpu_ns
 *
 * start_ns / end_ns: CLOCK_MONOTONIC when the constructor / destructor ran (the same clock as
 * Python's time.monotonic_ns(), so the script can compute "program exit -> output written").
 * vm_hwm_kib: VmHWM from /proc/self/status, the peak RSS of this process alone (getrusage of a
 * parent would include its children, i.e. the workload). write_bytes: from /proc/self/io.
 * cpu_ns: user + system CPU time of all the process's threads (getrusage RUSAGE_SELF); the
 * kernel's sampling work (interrupts, stack copies) is charged to the interrupted workload.
 * Processes that end with _exit() or a signal write nothing.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static long long g_start_ns;

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* The first number after `key` in /proc/self/FILE, or -1. */
static long long proc_field(const char *file, const char *key) {
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/self/%s", file);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = '\0';
    char *p = strstr(buf, key);
    if (!p) return -1;
    return strtoll(p + strlen(key), NULL, 10);
}

__attribute__((constructor)) static void stamp_start(void) { g_start_ns = now_ns(); }

__attribute__((destructor)) static void stamp_end(void) {
    long long end = now_ns();
    const char *file = getenv("BENCH_STAMP_FILE");
    if (!file) return;
    int saved = errno;
    struct rusage ru;
    long long cpu = -1;
    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        cpu = ((long long)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000LL +
              ((long long)ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000LL;
    }
    char line[512];
    int len = snprintf(line, sizeof line, "%d %s %lld %lld %lld %lld %lld\n", (int)getpid(),
                       program_invocation_short_name, g_start_ns, end,
                       proc_field("status", "VmHWM:"), proc_field("io", "write_bytes:"), cpu);
    int fd = open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0) {
        if (write(fd, line, (size_t)len) < 0) { /* nothing to do */ }
        close(fd);
    }
    errno = saved;
}
