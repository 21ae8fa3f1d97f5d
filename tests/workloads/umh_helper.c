/* A core_pattern pipe helper: the kernel starts it from a kworker (a
 * usermode helper). Statically linked, so the only opens it makes are its
 * own: one inotify_init1, one open, one creat (the marker the test waits for).
 * Built with -DMARKER="\"/path\"". */
#include <fcntl.h>
#include <sys/inotify.h>
#include <unistd.h>

int main(void)
{
	char buf[4096];
	int in = inotify_init1(0);
	int fd = open("/etc/hostname", O_RDONLY);
	int m;

	while (read(0, buf, sizeof(buf)) > 0)
		; /* drain the core */
	m = creat(MARKER, 0644);
	if (fd >= 0)
		close(fd);
	if (in >= 0)
		close(in);
	if (m >= 0)
		close(m);
	return 0;
}
