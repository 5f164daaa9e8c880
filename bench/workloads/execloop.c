/*
 * execloop.c: runs the binaries DIR/small_0 .. DIR/small_{N-1} one after another, round robin,
 * each computing MS milliseconds, until SECONDS of wall time have passed: a profile across N
 * distinct binaries whose length does not depend on N. Prints execs=K.
 *
 * Usage: execloop DIR N MS SECONDS
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: execloop DIR N MS SECONDS\n");
        return 2;
    }
    int n = atoi(argv[2]);
    double end = mono() + atof(argv[4]);
    long execs = 0;
    char path[4096];
    while (mono() < end) {
        snprintf(path, sizeof path, "%s/small_%ld", argv[1], execs % (n > 0 ? n : 1));
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 1;
        }
        if (pid == 0) {
            execl(path, path, argv[3], (char *)NULL);
            perror(path);
            _exit(127);
        }
        int status;
        waitpid(pid, &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "execloop: %s failed\n", path);
            return 1;
        }
        execs++;
    }
    printf("execs=%ld\n", execs);
    return 0;
}
