/* io_uring opens under a fixed comm: one inline, one forced async (an io-wq
 * worker runs it), one failing. Usage: iou_open COMM FILE MISSING
 * Prints {"inline": fd-or-errno, "async": ..., "missing": ...}. */
#include <liburing.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

static int open_one(struct io_uring *ring, const char *path, int async)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
	struct io_uring_cqe *cqe;
	int res;

	io_uring_prep_openat(sqe, AT_FDCWD, path, O_RDONLY, 0);
	if (async)
		sqe->flags |= IOSQE_ASYNC;
	io_uring_submit(ring);
	if (io_uring_wait_cqe(ring, &cqe) < 0)
		return -9999;
	res = cqe->res;
	io_uring_cqe_seen(ring, cqe);
	if (res >= 0)
		close(res);
	return res;
}

int main(int argc, char **argv)
{
	struct io_uring ring;
	struct stat st;
	int a, b, c;

	if (argc != 4 || io_uring_queue_init(8, &ring, 0) < 0)
		return 2;
	stat(argv[2], &st); /* the dentry is cached: the inline attempt succeeds */
	prctl(PR_SET_NAME, argv[1], 0, 0, 0);
	a = open_one(&ring, argv[2], 0);
	b = open_one(&ring, argv[2], 1);
	c = open_one(&ring, argv[3], 0);
	prctl(PR_SET_NAME, "iou-done", 0, 0, 0);
	printf("{\"inline\": %d, \"async\": %d, \"missing\": %d}\n", a, b, c);
	return 0;
}
