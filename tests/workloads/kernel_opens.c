/* Opens the kernel makes for a process, never through an open syscall.
 * Statically linked, so it makes no opens of its own:
 *   kernel_opens exec   execve of a missing file (do_filp_open fails with
 *                       ENOENT), then of /bin/true: the kernel opens the
 *                       binary and its interpreter, under this comm
 *   kernel_opens crash  a write through NULL with RLIMIT_CORE raised: the
 *                       kernel opens the core file core_pattern names */
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	char *const args[] = { "true", NULL };

	if (argc == 2 && !strcmp(argv[1], "exec")) {
		execv("/nonexistent/inotrace-test", args);
		execv("/bin/true", args);
		return 1;
	}
	if (argc == 2 && !strcmp(argv[1], "crash")) {
		struct rlimit unlimited = { RLIM_INFINITY, RLIM_INFINITY };

		if (setrlimit(RLIMIT_CORE, &unlimited))
			return 1;
		*(volatile int *)0 = 1;
	}
	return 2;
}
