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
	INOTRACE_REC_OPEN = 2,
};

enum inotrace_syscall {
	INOTRACE_SC_INOTIFY_INIT = 1,
	INOTRACE_SC_INOTIFY_INIT1 = 2,
	INOTRACE_SC_INOTIFY_ADD_WATCH = 3,
	INOTRACE_SC_INOTIFY_RM_WATCH = 4,
};

/* Who made the call (README, "Origins"). */
enum inotrace_origin {
	INOTRACE_ORIGIN_USER = 0,            /* an ordinary user-space syscall */
	INOTRACE_ORIGIN_KERNEL_THREAD = 1,   /* current has PF_KTHREAD */
	INOTRACE_ORIGIN_USERMODE_HELPER = 2, /* spawned by a kernel thread, or a descendant */
	INOTRACE_ORIGIN_IO_URING = 3,        /* io_uring request completed inline */
	INOTRACE_ORIGIN_IO_URING_WORKER = 4, /* io_uring request run by an io-wq / SQPOLL worker */
	INOTRACE_ORIGIN_KERNEL = 5,          /* an open the kernel made in a task's context (exec, core dump) */
};

/* Which open it was. The kprobe backend sees do_sys_openat2, which open,
 * openat, openat2 and creat all reach: it cannot tell them apart. */
enum inotrace_open_call {
	INOTRACE_OC_OPEN = 1,
	INOTRACE_OC_OPENAT = 2,
	INOTRACE_OC_OPENAT2 = 3,
	INOTRACE_OC_CREAT = 4,
	INOTRACE_OC_OPEN_BY_HANDLE_AT = 5,
	INOTRACE_OC_IO_URING_OPENAT = 6,
	INOTRACE_OC_IO_URING_OPENAT2 = 7,
	INOTRACE_OC_DO_SYS_OPENAT2 = 8,
	INOTRACE_OC_DO_FILP_OPEN = 9, /* an open no open syscall or io_uring request asked for */
};

enum inotrace_backend {
	INOTRACE_BACKEND_TRACEPOINT = 1,
	INOTRACE_BACKEND_KPROBE = 2,
	INOTRACE_BACKEND_FENTRY = 3,
};

/* Index into the `lost` per-CPU array: why a record or count never made it. */
enum inotrace_lost_reason {
	INOTRACE_LOST_RINGBUF = 0,  /* ring buffer full: record dropped */
	INOTRACE_LOST_INFLIGHT = 1, /* entry map full: call not followed */
	INOTRACE_LOST_COUNTS = 2,   /* counter map full: call not counted */
	INOTRACE_LOST_OPEN_COUNTS = 3, /* open counter map full: open not counted */
	INOTRACE_LOST_IO_URING = 4,    /* io_uring request map full: open not followed */
	INOTRACE_LOST_GROUPS = 5,      /* instance state map full: an instance's watches not counted */
	INOTRACE_LOST__MAX = 6,
};

/* Flags in inotrace_inotify_rec.rec_flags */
#define INOTRACE_F_PATH_TRUNCATED 0x1 /* path longer than INOTRACE_PATH_LEN - 1 */
#define INOTRACE_F_PATH_FAULT 0x2     /* path could not be read from user memory */
#define INOTRACE_F_HAS_PATH 0x4       /* the call takes a path argument */
#define INOTRACE_F_NEW_WATCH 0x8      /* add_watch made a new watch (else it modified one) */
#define INOTRACE_F_KERNEL_PATH 0x10   /* the path is the kernel's own copy, not the caller's memory */

/* One completed inotify syscall. Sent with only as many path bytes as the
 * path has (its NUL included): the ring holds ~3x more records of a typical
 * recursive watcher than at the full size. */
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

/* One completed open (streamed only for `trace --opens`). `kind` sits at the
 * same offset as in inotrace_inotify_rec, so a reader can tell them apart. */
struct inotrace_open_rec {
	__u64 ts_ns;
	__u64 _reserved;
	__u64 cgroup_id;
	__s64 ret;       /* fd, or -errno */
	__u32 kind;      /* INOTRACE_REC_OPEN */
	__u32 call;      /* enum inotrace_open_call */
	__u32 tgid;
	__u32 tid;
	__u32 ppid;
	__u32 uid;
	__u32 euid;
	__s32 dfd;       /* -100 = AT_FDCWD; open/creat: AT_FDCWD */
	__u32 flags;     /* open flags (O_*) */
	__u32 mode;
	__u16 origin;    /* enum inotrace_origin */
	__u8 backend;    /* enum inotrace_backend */
	__u8 rec_flags;  /* INOTRACE_F_* */
	__u32 _pad;
	char comm[INOTRACE_COMM_LEN];
	char path[INOTRACE_PATH_LEN]; /* read from the caller's memory at exit */
};

/* Key of the in-kernel open counters: exited processes stay in their
 * comm/uid by construction, so a counter never goes down. */
struct inotrace_open_key {
	char comm[INOTRACE_COMM_LEN];
	__u32 uid;     /* effective uid */
	__s32 err;     /* 0 on success, else the positive errno */
	__u16 origin;  /* enum inotrace_origin */
	__u16 _pad;    /* 28 bytes: every byte hashed on every open counts */
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

/* What the kernel side keeps per instance (key: its fsnotify_group), updated
 * at every add_watch/rm_watch exit: the model's watch counts come from here,
 * so a record lost from the ring cannot make them wrong.
 *
 * A new watch is told from a modified one without any record: inotify hands
 * out wds from idr_alloc_cyclic, so every wd allocated during a call is at
 * least the group's idr_next read at that call's entry, and every existing
 * wd is below it. Two overlapping calls on one instance that return the same
 * wd (the same inode, added from two threads) are told apart in a small map.
 *
 * `floor` is idr_next when the entry was made: 0 when made at inotify_init;
 * for an instance older than the probes, made at its first traced call, so
 * the watches below the floor are exactly those that predate the entry (user
 * space counts them from fdinfo, once). */
struct inotrace_group_state {
	__s64 added;       /* new watches (wd >= floor by construction) */
	__s64 removed;     /* rm_watch of a wd >= floor */
	__s64 pre_removed; /* rm_watch of a wd < floor */
	__u64 gen;         /* a fresh value each time the entry is made (inotify_init or first call) */
	__u64 calls;       /* add_watch/rm_watch calls entered: unchanged across a read = no call ran */
	__s32 floor;
	__s32 inflight;    /* calls entered and not yet over (over: after the exit's record is in the ring) */
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
	__u32 has_state;        /* 1: `state` holds the kernel side's entry for the group */
	__u32 idr_next;         /* the group's next wd (diagnostics) */
	struct inotrace_group_state state;
};

#endif /* INOTRACE_H */
