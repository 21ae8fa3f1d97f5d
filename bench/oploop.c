/* SPDX-License-Identifier: Apache-2.0
 *
 * Tight syscall loops for bench/opens.py, which compiles this with gcc into a
 * temporary directory at run time.
 *
 *   oploop CPU PATH OPEN_ITERS GETPPID_ITERS
 *
 * Pins itself to CPU (a migration mid-loop costs more than what we measure),
 * then prints two lines, each with wall-clock (CLOCK_MONOTONIC) and this
 * thread's CPU time (CLOCK_THREAD_CPUTIME_ID: user + kernel, BPF programs
 * run in syscall context included, time spent preempted excluded):
 *   open <wall ns> <cpu ns>       per open(PATH, O_RDONLY) + close()
 *   getppid <wall ns> <cpu ns>    per syscall(SYS_getppid)
 * getppid goes through syscall(2) so no libc can answer it from a cache: it
 * stands for "an unrelated syscall" that the tracers under test never hook.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static long parse(const char *s, const char *what)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || v < 0) {
		fprintf(stderr, "oploop: bad %s: %s\n", what, s);
		exit(2);
	}
	return v;
}

static int open_close(const char *path, long n)
{
	for (long i = 0; i < n; i++) {
		int fd = open(path, O_RDONLY);

		if (fd < 0) {
			fprintf(stderr, "oploop: open %s: %s\n", path, strerror(errno));
			return -1;
		}
		close(fd);
	}
	return 0;
}

static void ppid_loop(long n)
{
	for (long i = 0; i < n; i++)
		syscall(SYS_getppid);
}

int main(int argc, char **argv)
{
	cpu_set_t set;
	long cpu, n_open, n_ppid;
	long long t0, t1, t2, c0, c1, c2;

	if (argc != 5) {
		fprintf(stderr, "usage: oploop CPU PATH OPEN_ITERS GETPPID_ITERS\n");
		return 2;
	}
	cpu = parse(argv[1], "cpu");
	n_open = parse(argv[3], "open iterations");
	n_ppid = parse(argv[4], "getppid iterations");
	if (n_open < 1 || n_ppid < 1) {
		fprintf(stderr, "oploop: iterations must be >= 1\n");
		return 2;
	}
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set)) {
		fprintf(stderr, "oploop: sched_setaffinity(%ld): %s\n", cpu, strerror(errno));
		return 1;
	}
	/* Warm up: fault in the path, the dentry, the fd table, the caches. */
	if (open_close(argv[2], n_open / 10 + 1))
		return 1;
	ppid_loop(n_ppid / 10 + 1);

	t0 = now_ns(CLOCK_MONOTONIC);
	c0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
	if (open_close(argv[2], n_open))
		return 1;
	t1 = now_ns(CLOCK_MONOTONIC);
	c1 = now_ns(CLOCK_THREAD_CPUTIME_ID);
	ppid_loop(n_ppid);
	t2 = now_ns(CLOCK_MONOTONIC);
	c2 = now_ns(CLOCK_THREAD_CPUTIME_ID);
	printf("open %.3f %.3f\n", (double)(t1 - t0) / (double)n_open, (double)(c1 - c0) / (double)n_open);
	printf("getppid %.3f %.3f\n", (double)(t2 - t1) / (double)n_ppid, (double)(c2 - c1) / (double)n_ppid);
	return 0;
}
