/* SPDX-License-Identifier: Apache-2.0
 *
 * Tight syscall loops for bench/opens.py, which compiles this with gcc into a
 * temporary directory at run time.
 *
 *   oploop CPU PATH OPEN_ITERS GETPPID_ITERS CHUNKS
 *
 * Pins itself to CPU (a migration mid-loop costs more than what we measure),
 * warms up, then times OPEN_ITERS open(PATH, O_RDONLY)+close() pairs and
 * GETPPID_ITERS syscall(SYS_getppid) calls (through syscall(2), so no libc can
 * answer from a cache: it stands for "an unrelated syscall"), each in CHUNKS
 * equal chunks, and prints two lines:
 *   open    <wall ns per call, per chunk, comma-separated> <cpu ns ..., per chunk>
 *   getppid <wall ...> <cpu ...>
 * wall is CLOCK_MONOTONIC; cpu is this thread's CPU time
 * (CLOCK_THREAD_CPUTIME_ID: user + kernel, BPF programs run in syscall
 * context included, time spent preempted left out). Chunks let the caller
 * keep the fastest: on a shared VM, noise only ever adds time.
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

#define MAX_CHUNKS 1000

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
	if (errno || *end || v < 1) {
		fprintf(stderr, "oploop: bad %s (want an integer >= 1): %s\n", what, s);
		exit(2);
	}
	return v;
}

static const char *path;

static void open_close(long n)
{
	for (long i = 0; i < n; i++) {
		int fd = open(path, O_RDONLY);

		if (fd < 0) {
			fprintf(stderr, "oploop: open %s: %s\n", path, strerror(errno));
			exit(1);
		}
		close(fd);
	}
}

static void getppids(long n)
{
	for (long i = 0; i < n; i++)
		syscall(SYS_getppid);
}

/* Time `iters` calls of fn in `chunks` chunks; print one line. */
static void timed(const char *name, void (*fn)(long), long iters, long chunks)
{
	static double wall[MAX_CHUNKS], cpu[MAX_CHUNKS];
	long per = iters / chunks;

	for (long c = 0; c < chunks; c++) {
		long long w0 = now_ns(CLOCK_MONOTONIC);
		long long c0 = now_ns(CLOCK_THREAD_CPUTIME_ID);

		fn(per);
		cpu[c] = (double)(now_ns(CLOCK_THREAD_CPUTIME_ID) - c0) / (double)per;
		wall[c] = (double)(now_ns(CLOCK_MONOTONIC) - w0) / (double)per;
	}
	printf("%s ", name);
	for (long c = 0; c < chunks; c++)
		printf("%s%.2f", c ? "," : "", wall[c]);
	printf(" ");
	for (long c = 0; c < chunks; c++)
		printf("%s%.2f", c ? "," : "", cpu[c]);
	printf("\n");
}

int main(int argc, char **argv)
{
	cpu_set_t set;
	long cpu, n_open, n_ppid, chunks;

	if (argc != 6) {
		fprintf(stderr, "usage: oploop CPU PATH OPEN_ITERS GETPPID_ITERS CHUNKS\n");
		return 2;
	}
	errno = 0;
	cpu = strtol(argv[1], NULL, 10);
	path = argv[2];
	n_open = parse(argv[3], "open iterations");
	n_ppid = parse(argv[4], "getppid iterations");
	chunks = parse(argv[5], "chunks");
	if (chunks > MAX_CHUNKS || chunks > n_open || chunks > n_ppid) {
		fprintf(stderr, "oploop: chunks must be <= %d and <= each iteration count\n", MAX_CHUNKS);
		return 2;
	}
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set)) {
		fprintf(stderr, "oploop: sched_setaffinity(%ld): %s\n", cpu, strerror(errno));
		return 1;
	}
	/* Warm up: fault in the path, the dentry, the fd table, the caches. */
	open_close(n_open / 10 + 1);
	getppids(n_ppid / 10 + 1);

	timed("open", open_close, n_open, chunks);
	timed("getppid", getppids, n_ppid, chunks);
	return 0;
}
