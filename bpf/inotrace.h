/* SPDX-License-Identifier: Apache-2.0
 *
 * Every record and map key that crosses from BPF to user space.
 *
 * This header is the single source of truth; src/inotrace/records.py mirrors it
 * once with ctypes, and tests/test_records_layout.py compiles this header with
 * the host C compiler and compares every size and offset with the mirror.
 * Only fixed-width types and explicit padding, so BPF, gcc and ctypes agree.
 */
#ifndef INOTRACE_H
#define INOTRACE_H

#ifdef __BCC__
/* BCC already has the kernel's __u64 & co. */
#else
#include <linux/types.h>
#endif

#define INOTRACE_COMM_LEN 16
/* Bounded copy of a user-supplied path; longer ones are marked truncated. */
#define INOTRACE_PATH_LEN 256

enum inotrace_rec_kind {
	INOTRACE_REC_INOTIFY = 1,
};

enum inotrace_syscall {
	INOTRACE_SC_INOTIFY_INIT = 1,
	INOTRACE_SC_INOTIFY_INIT1 = 2,
	INOTRACE_SC_INOTIFY_ADD_WATCH = 3,
	INOTRACE_SC_INOTIFY_RM_WATCH = 4,
};

enum inotrace_origin {
	INOTRACE_ORIGIN_USER = 0,
};

enum inotrace_backend {
	INOTRACE_BACKEND_TRACEPOINT = 1,
	INOTRACE_BACKEND_KPROBE = 2,
};

/* Index into the `lost` per-CPU array: why a record or count never made it. */
enum inotrace_lost_reason {
	INOTRACE_LOST_RINGBUF = 0,  /* ring buffer full: record dropped */
	INOTRACE_LOST_INFLIGHT = 1, /* entry map full: call not followed */
	INOTRACE_LOST_COUNTS = 2,   /* counter map full: call not counted */
	INOTRACE_LOST__MAX = 3,
};

/* Flags in inotrace_inotify_rec.rec_flags */
#define INOTRACE_F_PATH_TRUNCATED 0x1 /* path longer than INOTRACE_PATH_LEN - 1 */
#define INOTRACE_F_PATH_FAULT 0x2     /* path could not be read from user memory */
#define INOTRACE_F_HAS_PATH 0x4       /* the call takes a path argument */

/* One completed inotify syscall. */
struct inotrace_inotify_rec {
	__u64 ts_ns;     /* bpf_ktime_get_ns() at exit (CLOCK_MONOTONIC) */
	__u64 group;     /* struct fsnotify_group * behind the fd: the instance's identity */
	__u64 cgroup_id; /* bpf_get_current_cgroup_id() */
	__s64 ret;       /* return value; -errno on failure */
	__u32 kind;      /* enum inotrace_rec_kind */
	__u32 syscall;   /* enum inotrace_syscall */
	__u32 tgid;
	__u32 tid;
	__u32 ppid;      /* real_parent->tgid */
	__u32 uid;       /* real uid, init user namespace */
	__u32 euid;      /* effective uid: the identity inotify limits are charged to */
	__s32 fd;        /* add_watch / rm_watch: the instance fd; init: -1 */
	__u32 flags;     /* inotify_init1 flags */
	__u32 mask;      /* inotify_add_watch mask */
	__s32 wd;        /* inotify_rm_watch wd */
	__u16 origin;    /* enum inotrace_origin */
	__u8 backend;    /* enum inotrace_backend that saw the call */
	__u8 rec_flags;  /* INOTRACE_F_* */
	char comm[INOTRACE_COMM_LEN];
	char path[INOTRACE_PATH_LEN]; /* add_watch pathname, read at exit */
};

/* Key of the in-kernel call counters, read (never cleared) at scrape time. */
struct inotrace_count_key {
	char comm[INOTRACE_COMM_LEN];
	__u32 uid;     /* effective uid */
	__s32 err;     /* 0 on success, else the positive errno */
	__u16 syscall; /* enum inotrace_syscall */
	__u16 origin;  /* enum inotrace_origin */
	__u32 _pad;
};

/* One inotify file in one process's fd table, written by the task_file
 * iterator (bpf_iter__task_file): the kernel's own state, read on demand.
 * Threads sharing a file table are visited once (the kernel skips them). */
struct inotrace_instance_rec {
	__u64 group;            /* struct fsnotify_group *: instance identity */
	__u64 ucounts;          /* struct ucounts * the instance is charged to */
	__s64 ucount_instances; /* that user's instance count, kernel's own */
	__s64 ucount_watches;   /* that user's watch count, kernel's own */
	__s64 max_instances;    /* its user namespace's limits */
	__s64 max_watches;
	__u32 tgid;
	__s32 fd;
	__u32 uid;              /* charged uid (euid at inotify_init), init namespace */
	__u32 user_ns;          /* inode number of that user namespace */
	__u32 q_len;            /* events queued now (max_events + 1 = overflowed) */
	__u32 max_events;       /* max_queued_events when the instance was created */
};

#endif /* INOTRACE_H */
