/* SPDX-License-Identifier: Apache-2.0
 *
 * inotrace: inotify syscalls, followed from entry to exit.
 *
 * Loaded by src/inotrace/bpf_program.py through BCC. Two interchangeable
 * front ends feed the same helpers:
 *   tp_*  syscalls:sys_enter_X / sys_exit_X tracepoints
 *   kp_*  kprobe / kr_* kretprobe on the syscall function (__x64_sys_X)
 * user space attaches whichever works, per syscall.
 *
 * Why no `task->field` anywhere: BCC compiles against whatever headers it
 * finds, and on a kernel without its own headers those describe another
 * kernel; struct task_struct differs (tgid at 1268 in 6.1, 2420 in 6.18) and
 * BCC's `->` rewriting compiles silently to reads of garbage. Every kernel
 * struct field is therefore read with bpf_probe_read_kernel() at an offset
 * resolved from /sys/kernel/btf/vmlinux at start-up and passed as -DOFF_*.
 * A start-up self-test compares what these reads return for the tracer's own
 * task with /proc before any data is trusted.
 */
#include <uapi/linux/ptrace.h>
#include "inotrace.h"

#if !defined(OFF_TASK_TGID) || !defined(OFF_TASK_REAL_PARENT) || !defined(OFF_TASK_FLAGS) || \
	!defined(OFF_TASK_CRED) || !defined(OFF_TASK_FILES) ||    \
	!defined(OFF_CRED_EUID) || !defined(OFF_FILES_FDT) ||      \
	!defined(OFF_FDTABLE_MAX_FDS) || !defined(OFF_FDTABLE_FD) || \
	!defined(OFF_FILE_PRIVATE_DATA) || !defined(OFF_FILE_F_OP) || \
	!defined(OFF_GROUP_Q_LEN) || !defined(OFF_GROUP_MAX_EVENTS) || \
	!defined(OFF_GROUP_UCOUNTS) || !defined(OFF_GROUP_IDR_NEXT) || !defined(OFF_UCOUNTS_NS) ||    \
	!defined(OFF_UCOUNTS_UID) || !defined(OFF_UCOUNTS_UCOUNT) ||   \
	!defined(UCOUNT_ELEM_SIZE) || !defined(UCOUNT_INOTIFY_INSTANCES) || \
	!defined(UCOUNT_INOTIFY_WATCHES) || !defined(OFF_USER_NS_INUM) || \
	!defined(OFF_USER_NS_UCOUNT_MAX) || !defined(UCOUNT_MAX_ELEM_SIZE)
#error "kernel struct offsets must be passed as -DOFF_*=N (see btf.py)"
#endif

#ifndef RINGBUF_PAGES
#define RINGBUF_PAGES 256
#endif
#ifndef INFLIGHT_MAX
#define INFLIGHT_MAX 10240
#endif
#ifndef COUNTS_MAX
#define COUNTS_MAX 16384
#endif
/* Wake the reader once per this many records per CPU; in between it drains
 * the ring on a short timer. A wake-up per record costs ~4.6 us (measured
 * on a 2-vCPU VM); batching keeps a storm of add_watch calls cheap. */
#ifndef WAKEUP_EVERY
#define WAKEUP_EVERY 32
#endif
/* Instances the kernel side keeps state for (16384 x ~100 bytes, preallocated):
 * far more than hosts have (max_user_instances is 128 by default). */
#ifndef GROUPS_MAX
#define GROUPS_MAX 16384
#endif
/* Overlapping add_watch calls on one instance whose new wd must be checked
 * against a sibling's: an entry matters only while both calls run. */
#ifndef OVERLAP_MAX
#define OVERLAP_MAX 16384
#endif
#ifndef OPEN_COUNTS_MAX
#define OPEN_COUNTS_MAX 16384
#endif
/* PID_MAX_LIMIT on 64-bit: the usermode-helper bitmap covers every tgid. */
#define UMH_WORDS (4194304 / 64)
#ifndef IOU_REQS_MAX
#define IOU_REQS_MAX 10240
#endif
/* 1: a record for every inotify call, for an audit stream (`trace`,
 * `serve --log-events`). 0: `serve` alone: only inits and inotrace's own
 * calls (its start-up self-test). The counts live in maps and each
 * instance's watch count in gstate, so add/rm records would serve nothing,
 * and building and draining them is most of what a recursive watcher's
 * set-up pays per call. */
#ifndef STREAM_CALLS
#define STREAM_CALLS 1
#endif
/* 1 (with STREAM_CALLS 0): still stream an add_watch that failed with
 * ENOSPC, the watch limit (`top` shows who hit it, with the holders then).
 * A client retrying at its limit fails in a loop, so only a consumer that
 * shows failures asks for them. Inits (EMFILE included) are always streamed. */
/* Which front ends of the syscall and open hooks are compiled (1 each by
 * default): a command that asked for one backend compiles only its own, a
 * third of the hooks and most of the compile time (BCC compiles the program
 * at every start; `auto` needs all three to fall back). */
#ifndef FRONT_END_TRACEPOINT
#define FRONT_END_TRACEPOINT 1
#endif
#ifndef FRONT_END_KPROBE
#define FRONT_END_KPROBE 1
#endif
#ifndef FRONT_END_FENTRY
#define FRONT_END_FENTRY 1
#endif
#ifndef STREAM_LIMIT_FAILURES
#define STREAM_LIMIT_FAILURES 0
#endif
#define ERR_ENOSPC 28
/* 1: also stream every open to the ring (`trace --opens`); the entry hooks
 * that save the path pointer are only attached then. 0: count only. */
#ifndef STREAM_OPENS
#define STREAM_OPENS 0
#endif
/* trace --pid/--uid/--comm with --opens: how many of each were asked for
 * (0: that dimension is not filtered). See trace_allowed(). */
#ifndef FILTER_PIDS
#define FILTER_PIDS 0
#endif
#ifndef FILTER_UIDS
#define FILTER_UIDS 0
#endif
#ifndef FILTER_COMMS
#define FILTER_COMMS 0
#endif
/* io_uring tracepoint field offsets, from tracefs format files (-1: absent).
 * A request is followed from submission to completion by its struct
 * io_kiocb (req). 5.10's io_uring_complete has no req (IOU_BY_USER_DATA):
 * there the ring (ctx) and the user_data the application chose name it, and
 * submission notes req -> that key for io_uring_queue_async_work, which has
 * req alone. Two opens in flight on one ring with the same user_data are
 * then one (applications give each request its own user_data to tell their
 * completions apart). */
#ifndef IOU_SUBMIT_OPCODE
#define IOU_SUBMIT_OPCODE -1
#define IOU_SUBMIT_REQ -1
#define IOU_SUBMIT_CTX -1
#define IOU_SUBMIT_USER_DATA -1
#define IOU_ASYNC_REQ -1
#define IOU_COMPLETE_REQ -1
#define IOU_COMPLETE_CTX -1
#define IOU_COMPLETE_USER_DATA -1
#define IOU_COMPLETE_RES -1
#endif
#ifndef IOU_BY_USER_DATA
#define IOU_BY_USER_DATA 0
#endif

/* task_struct->flags bits (include/linux/sched.h), unchanged since 5.12:
 * PF_IO_WORKER marks io-wq and SQPOLL threads, PF_KTHREAD kernel threads. */
#define PF_IO_WORKER 0x00000010
#define PF_KTHREAD 0x00200000
#define CLONE_THREAD 0x00010000
/* io_uring opcodes (uapi io_uring.h) */
#define IORING_OP_OPENAT 18
#define IORING_OP_OPENAT2 28

/* Arguments saved at entry, completed at exit (keyed by thread). */
struct inflight {
	__u64 path; /* user pointer, read at exit: at entry the page may not be faulted in */
	__u64 group; /* add/rm: the instance behind fd at entry (0: not an inotify fd) */
	__u64 calls; /* add/rm: the group's `calls` before this call entered */
	__s32 fd;
	__u32 flags;
	__u32 mask;
	__s32 wd;
	__u32 syscall;
	__u32 backend;
	__u32 idr_next; /* add: the group's next wd at entry; any wd >= it is new */
	__u32 overlap;  /* add/rm: another call on the group was in flight at entry */
};

/* Syscall tracepoint records: stable since the syscall tracepoints exist.
 * user space checks these offsets against tracefs' format files. */
struct sc_enter_ctx {
	__u64 common;
	__s32 nr;
	__u32 _pad;
	__u64 args[6];
};

struct sc_exit_ctx {
	__u64 common;
	__s32 nr;
	__u32 _pad;
	__s64 ret;
};

BPF_RINGBUF_OUTPUT(events, RINGBUF_PAGES);
/* Records are built here and sent with only the path bytes they use. */
BPF_PERCPU_ARRAY(scratch, struct inotrace_inotify_rec, 1);
BPF_PERCPU_ARRAY(open_scratch, struct inotrace_open_rec, 1);
BPF_HASH(gstate, __u64, struct inotrace_group_state, GROUPS_MAX);
struct wd_key {
	__u64 group;
	__s64 wd;
};
/* LRU: an entry is only needed while the overlapping calls run (microseconds). */
BPF_TABLE("lru_hash", struct wd_key, __u8, overlap_new, OVERLAP_MAX);
BPF_HASH(inflight, __u64, struct inflight, INFLIGHT_MAX);
BPF_HASH(counts, struct inotrace_count_key, __u64, COUNTS_MAX);
BPF_PERCPU_ARRAY(lost, __u64, INOTRACE_LOST__MAX);
BPF_PERCPU_ARRAY(wakeups, __u32, 1);
/* file->f_op of inotify files, learned from the first successful
 * inotify_init this program sees (the start-up self-test makes one):
 * inotify_fops is a data symbol, absent from kallsyms on many kernels. */
BPF_ARRAY(inotify_fops, __u64, 1);
/* inotrace's own tgid, set by user space after loading: its self-test's
 * calls are always recorded (see STREAM_CALLS). */
BPF_ARRAY(own_tgid, __u32, 1);
BPF_HASH(open_counts, struct inotrace_open_key, __u64, OPEN_COUNTS_MAX);
/* Thread groups started by a kernel thread (usermode helpers: core_pattern
 * pipes, modprobe, hotplug) and their descendants, one bit per tgid. Kept
 * exact at fork time (a reused tgid is overwritten), seeded from /proc at
 * start. A bitmap, not a hash: every open asks, and an array lookup is
 * inlined by the verifier while a hash lookup hashes (512 KiB in all). */
BPF_ARRAY(umh, __u64, UMH_WORDS);

static __always_inline int is_umh(__u32 tgid)
{
	__u32 word = tgid / 64;
	__u64 *w = umh.lookup(&word);

	return w && (*w >> (tgid % 64)) & 1;
}

static __always_inline void set_umh(__u32 tgid, int on)
{
	__u32 word = tgid / 64;
	__u64 *w = umh.lookup(&word), bit = 1ULL << (tgid % 64);

	if (!w)
		return;
	/* Atomic adds, not or/and: BPF has atomic or/and only since 5.12. Only
	 * this tgid's bit moves (checked first), and a tgid's task_newtask
	 * never runs twice at once (it is born once until it dies), so adds of
	 * different bits of a word never clash and set/clear stay exact. */
	if (on && !(*w & bit))
		__sync_fetch_and_add(w, bit);
	else if (!on && (*w & bit))
		__sync_fetch_and_add(w, -bit);
}

/* An io_uring open between submission and completion, keyed by request. */
struct iou_open {
	char comm[INOTRACE_COMM_LEN];
	__u32 uid;
	__u32 euid;
	__u32 tgid;
	__u32 tid;
	__u32 ppid;
	__u16 origin;
	__u16 call;
	__u64 cgroup_id;
};
/* { req, 0 }, or { ring, user_data } with IOU_BY_USER_DATA */
struct iou_key {
	__u64 id;
	__u64 user_data;
};
BPF_HASH(iou_opens, struct iou_key, struct iou_open, IOU_REQS_MAX);
#if IOU_BY_USER_DATA
/* req -> the key of the open it is (LRU: a req whose open completed is dropped in time) */
BPF_TABLE("lru_hash", __u64, struct iou_key, iou_reqs, IOU_REQS_MAX);
#endif

#if STREAM_OPENS
/* What `trace --opens` was asked to show, filled by user space before any
 * hook is attached. An open no filter admits reserves no ring space and does
 * not even save its arguments, so `trace --opens --comm X` does not carry
 * every open on the host to user space (opensnoop's trace_allowed()). The
 * counters are not filtered: they are the metrics' and the model's. */
struct comm_key {
	char comm[INOTRACE_COMM_LEN];
};
#if FILTER_PIDS
BPF_HASH(filter_pids, __u32, __u8, FILTER_PIDS);
#endif
#if FILTER_UIDS
BPF_HASH(filter_uids, __u32, __u8, FILTER_UIDS);
#endif
#if FILTER_COMMS
BPF_HASH(filter_comms, struct comm_key, __u8, FILTER_COMMS);
#endif

/* A process matches a filter by its tgid or tid, by its uid or euid, by its
 * comm (as audit.Filter does for what reaches user space). */
static __always_inline int trace_allowed(__u32 tgid, __u32 tid, __u32 uid, __u32 euid, const char *comm)
{
#if FILTER_PIDS
	if (!filter_pids.lookup(&tgid) && !filter_pids.lookup(&tid))
		return 0;
#endif
#if FILTER_UIDS
	if (!filter_uids.lookup(&uid) && !filter_uids.lookup(&euid))
		return 0;
#endif
#if FILTER_COMMS
	{
		struct comm_key k = {};

		__builtin_memcpy(k.comm, comm, sizeof(k.comm));
		if (!filter_comms.lookup(&k))
			return 0;
	}
#endif
	return 1;
}

/* Open arguments saved at entry (streaming only). */
struct open_args {
	__u64 path;
	__s32 dfd;
	__u32 flags;
	__u32 mode;
	__u32 call;
};
BPF_HASH(open_inflight, __u64, struct open_args, INFLIGHT_MAX);
#endif

static __always_inline void count_lost(__u32 reason)
{
	__u64 *v = lost.lookup(&reason);
	if (v)
		(*v)++; /* per-CPU slot: no atomic needed */
}

static __always_inline void *read_ptr(void *base, __u64 off)
{
	void *v = 0;
	bpf_probe_read_kernel(&v, sizeof(v), base + off);
	return v;
}

static __always_inline void *fd_to_file(void *task, __s32 fd)
{
	void *files, *fdt, **fds;
	__u32 max_fds = 0;

	if (fd < 0)
		return 0;
	files = read_ptr(task, OFF_TASK_FILES);
	if (!files)
		return 0;
	fdt = read_ptr(files, OFF_FILES_FDT);
	if (!fdt)
		return 0;
	bpf_probe_read_kernel(&max_fds, sizeof(max_fds), fdt + OFF_FDTABLE_MAX_FDS);
	if ((__u32)fd >= max_fds)
		return 0;
	fds = read_ptr(fdt, OFF_FDTABLE_FD);
	if (!fds)
		return 0;
	return read_ptr(fds, (__u64)fd * sizeof(void *));
}

/* For an inotify file, private_data is its struct fsnotify_group: the
 * identity of the instance, shared by every fd (fork, dup, SCM_RIGHTS) that
 * refers to it. */
static __always_inline __u64 file_group(void *file)
{
	return file ? (__u64)read_ptr(file, OFF_FILE_PRIVATE_DATA) : 0;
}

static __always_inline __u32 task_ppid(void *task)
{
	__u32 ppid = 0;
	void *parent = read_ptr(task, OFF_TASK_REAL_PARENT);

	if (parent)
		bpf_probe_read_kernel(&ppid, sizeof(ppid), parent + OFF_TASK_TGID);
	return ppid;
}

/* current_euid(): inotify charges its limits to the effective uid of the
 * task that creates the instance. kuid_t is { uid_t val }. */
static __always_inline __u32 task_euid(void *task)
{
	__u32 euid = 0;
	void *cred = read_ptr(task, OFF_TASK_CRED);

	if (cred)
		bpf_probe_read_kernel(&euid, sizeof(euid), cred + OFF_CRED_EUID);
	return euid;
}

static __always_inline __u32 task_flags(void *task)
{
	__u32 flags = 0;

	bpf_probe_read_kernel(&flags, sizeof(flags), task + OFF_TASK_FLAGS);
	return flags;
}

/* Who is making this call (enum inotrace_origin). io_uring origins are set
 * by the io_uring handlers, which know a request is behind the call. */
static __always_inline __u16 task_origin(void *task, __u32 tgid)
{
	__u32 flags = task_flags(task);

	if (flags & PF_KTHREAD)
		return INOTRACE_ORIGIN_KERNEL_THREAD;
	if (flags & PF_IO_WORKER)
		return INOTRACE_ORIGIN_IO_URING_WORKER;
	if (is_umh(tgid))
		return INOTRACE_ORIGIN_USERMODE_HELPER;
	return INOTRACE_ORIGIN_USER;
}

/* Kernel-side counters: exact even when the ring buffer overflows. */
static __always_inline void count_call(__u32 syscall, __s64 ret, __u32 euid, __u16 origin)
{
	struct inotrace_count_key key = {};
	__u64 zero = 0, *c;

	bpf_get_current_comm(&key.comm, sizeof(key.comm));
	key.uid = euid;
	key.err = ret < 0 ? (__s32)-ret : 0;
	key.syscall = syscall;
	key.origin = origin;
	c = counts.lookup(&key);
	if (!c) {
		/* NOEXIST: a racing CPU's insert wins and both add to it below */
		counts.insert(&key, &zero);
		c = counts.lookup(&key);
	}
	if (c)
		__sync_fetch_and_add(c, 1);
	else
		count_lost(INOTRACE_LOST_COUNTS);
}

static __always_inline int is_own(__u32 tgid)
{
	__u32 zero = 0, *own = own_tgid.lookup(&zero);

	return own && *own == tgid;
}

static __always_inline int is_inotify_file(void *file)
{
	__u32 zero = 0;
	__u64 *fops = inotify_fops.lookup(&zero);

	return file && fops && *fops && (__u64)read_ptr(file, OFF_FILE_F_OP) == *fops;
}

/* add_watch/rm_watch entry: find the instance and note what its exit needs
 * to classify the call without any record (see struct inotrace_group_state).
 * Order matters: `calls` is read before it is bumped (an entrant racing that
 * read bumps it too, so both exits see it moved); idr_next is read last, so
 * a call that finished before it was read allocated below it. Plain atomic
 * adds only (no fetch): they exist on every kernel with BPF ring buffers. */
static __always_inline void track_enter(struct inflight *in)
{
	void *file = fd_to_file((void *)bpf_get_current_task(), in->fd);
	struct inotrace_group_state fresh = {}, *st;
	__u64 group;

	if (!is_inotify_file(file))
		return; /* the kernel will fail the call (EBADF/EINVAL) */
	group = (__u64)read_ptr(file, OFF_FILE_PRIVATE_DATA);
	if (!group)
		return;
	st = gstate.lookup(&group);
	if (!st) {
		/* an instance older than the probes: its first traced call */
		bpf_probe_read_kernel(&fresh.floor, sizeof(fresh.floor), (void *)group + OFF_GROUP_IDR_NEXT);
		fresh.gen = bpf_ktime_get_ns();
		gstate.insert(&group, &fresh); /* NOEXIST: a racing first call's entry wins */
		st = gstate.lookup(&group);
		if (!st) {
			count_lost(INOTRACE_LOST_GROUPS);
			return;
		}
	}
	in->group = group;
	in->calls = st->calls;
	__sync_fetch_and_add(&st->calls, 1);
	__sync_fetch_and_add(&st->inflight, 1);
	in->overlap = st->inflight > 1;
	bpf_probe_read_kernel(&in->idr_next, sizeof(in->idr_next), (void *)group + OFF_GROUP_IDR_NEXT);
}

static __always_inline int enter_call(__u32 syscall, __u32 backend, __s32 fd,
				      __u64 path, __u32 flags, __u32 mask, __s32 wd)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct inflight in = {
		.path = path,
		.fd = fd,
		.flags = flags,
		.mask = mask,
		.wd = wd,
		.syscall = syscall,
		.backend = backend,
	};

	if (syscall == INOTRACE_SC_INOTIFY_ADD_WATCH || syscall == INOTRACE_SC_INOTIFY_RM_WATCH)
		track_enter(&in);
	if (inflight.update(&id, &in))
		count_lost(INOTRACE_LOST_INFLIGHT);
	return 0;
}

/* add_watch/rm_watch exit: update the instance's counts. Returns 1 when
 * add_watch made a new watch. The call stays in flight until track_done(). */
static __always_inline int track_exit(struct inflight *in, __s64 ret)
{
	struct inotrace_group_state *st = gstate.lookup(&in->group);
	struct wd_key key = { .group = in->group, .wd = ret };
	__u8 one = 1;
	int overlap, is_new;

	if (!st)
		return 0;
	overlap = in->overlap || st->calls != in->calls + 1;
	if (ret < 0)
		return 0;
	if (in->syscall == INOTRACE_SC_INOTIFY_RM_WATCH) {
		if (in->wd < st->floor)
			__sync_fetch_and_add(&st->pre_removed, 1);
		else
			__sync_fetch_and_add(&st->removed, 1);
		return 0;
	}
	/* every wd allocated during this call is >= idr_next at its entry */
	is_new = (__u64)ret >= in->idr_next;
	/* ...unless an overlapping call on the same inode got the same wd */
	if (is_new && overlap && overlap_new.insert(&key, &one))
		is_new = 0;
	if (is_new)
		__sync_fetch_and_add(&st->added, 1);
	return is_new;
}

/* The call is over, its record (if any) already in the ring: a reader that
 * sees no call in flight on an instance knows every record of its calls is
 * in the ring, below the producer position it reads next (the sampler
 * settles an instance only once it has applied those records). */
static __always_inline void track_done(struct inflight *in)
{
	struct inotrace_group_state *st = gstate.lookup(&in->group);

	if (st)
		__sync_fetch_and_add(&st->inflight, -1);
}

/* Copy a path: a user-supplied one at syscall exit (at entry the page may
 * not be faulted in yet), or with `kernel` the kernel's own copy. Flag a
 * fault or a path cut at INOTRACE_PATH_LEN. Returns the bytes copied, NUL
 * included (0 on a fault). */
static __always_inline __u32 read_path(char *dst, __u8 *rec_flags, __u64 ptr, int kernel)
{
	long n;
	char next = 0;

	*rec_flags |= INOTRACE_F_HAS_PATH | (kernel ? INOTRACE_F_KERNEL_PATH : 0);
	n = kernel ? bpf_probe_read_kernel_str(dst, INOTRACE_PATH_LEN, (void *)ptr)
		   : bpf_probe_read_user_str(dst, INOTRACE_PATH_LEN, (void *)ptr);
	if (n <= 0) {
		dst[0] = 0;
		*rec_flags |= INOTRACE_F_PATH_FAULT;
		return 0;
	}
	/* A full buffer is ambiguous: look at the byte the copy had to drop. */
	if (n == INOTRACE_PATH_LEN &&
	    (kernel ? bpf_probe_read_kernel(&next, 1, (void *)(ptr + INOTRACE_PATH_LEN - 1))
		    : bpf_probe_read_user(&next, 1, (void *)(ptr + INOTRACE_PATH_LEN - 1))) == 0 &&
	    next != 0)
		*rec_flags |= INOTRACE_F_PATH_TRUNCATED;
	return n > INOTRACE_PATH_LEN ? INOTRACE_PATH_LEN : (__u32)n;
}

static __always_inline __u32 read_user_path(char *dst, __u8 *rec_flags, __u64 uptr)
{
	return read_path(dst, rec_flags, uptr, 0);
}

/* Send a record built in scratch space with `path_len` of its path bytes,
 * rounded up to a quarter of INOTRACE_PATH_LEN: a constant size per branch
 * is what every verifier accepts for bpf_ringbuf_output. */
static __always_inline void submit(void *rec, __u64 fixed, __u64 path_len)
{
	__u32 zero = 0, *n = wakeups.lookup(&zero);
	__u64 flags = BPF_RB_NO_WAKEUP;
	long err;

	if (n && ++(*n) >= WAKEUP_EVERY) {
		*n = 0;
		flags = BPF_RB_FORCE_WAKEUP;
	}
	if (path_len == 0)
		err = events.ringbuf_output(rec, fixed, flags);
	else if (path_len <= INOTRACE_PATH_LEN / 4)
		err = events.ringbuf_output(rec, fixed + INOTRACE_PATH_LEN / 4, flags);
	else if (path_len <= INOTRACE_PATH_LEN / 2)
		err = events.ringbuf_output(rec, fixed + INOTRACE_PATH_LEN / 2, flags);
	else if (path_len <= INOTRACE_PATH_LEN * 3 / 4)
		err = events.ringbuf_output(rec, fixed + INOTRACE_PATH_LEN * 3 / 4, flags);
	else
		err = events.ringbuf_output(rec, fixed + INOTRACE_PATH_LEN, flags);
	if (err)
		count_lost(INOTRACE_LOST_RINGBUF);
}

static __always_inline void learn_inotify_fops(void *file)
{
	__u32 zero = 0;
	__u64 *slot = inotify_fops.lookup(&zero);

	if (slot && !*slot)
		*slot = (__u64)read_ptr(file, OFF_FILE_F_OP);
}

/* A new instance: its state starts empty (a reused group address's old
 * entry is replaced), so its watch count needs no fdinfo read ever. */
static __always_inline void track_init(__u64 group)
{
	struct inotrace_group_state fresh = { .gen = bpf_ktime_get_ns() };

	if (gstate.update(&group, &fresh))
		count_lost(INOTRACE_LOST_GROUPS);
}

/* The record of one inotify call, for the ring. */
static __always_inline void submit_call(struct inflight *in, __u32 syscall, __s64 ret, __u64 id, void *task,
					__u32 euid, __u16 origin, int is_new)
{
	struct inotrace_inotify_rec *rec;
	__u32 zero = 0;
	__u64 path_len = 0;
	int is_init = syscall == INOTRACE_SC_INOTIFY_INIT || syscall == INOTRACE_SC_INOTIFY_INIT1;

	rec = scratch.lookup(&zero);
	if (!rec)
		return;
	rec->rec_flags = is_new ? INOTRACE_F_NEW_WATCH : 0;
	/* init returns the new fd; add/rm name it (resolved at entry). The
	 * kernel rejected a call on a non-inotify fd, so a group only on success. */
	rec->group = 0;
	if (is_init && ret >= 0) {
		void *file = fd_to_file(task, (__s32)ret);

		rec->group = file_group(file);
		if (file)
			learn_inotify_fops(file);
		if (rec->group)
			track_init(rec->group);
	} else if (!is_init && in->group && ret >= 0) {
		rec->group = in->group;
	}
	rec->ts_ns = bpf_ktime_get_ns();
	rec->kind = INOTRACE_REC_INOTIFY;
	rec->syscall = syscall;
	rec->tgid = id >> 32;
	rec->tid = (__u32)id;
	rec->ppid = task_ppid(task);
	rec->uid = (__u32)bpf_get_current_uid_gid();
	rec->euid = euid;
	rec->cgroup_id = bpf_get_current_cgroup_id();
	rec->ret = ret;
	rec->fd = in->fd;
	rec->flags = in->flags;
	rec->mask = in->mask;
	rec->wd = in->wd;
	rec->origin = origin;
	rec->backend = in->backend;
	bpf_get_current_comm(&rec->comm, sizeof(rec->comm));
	if (syscall == INOTRACE_SC_INOTIFY_ADD_WATCH)
		path_len = read_user_path(rec->path, &rec->rec_flags, in->path);
	submit(rec, offsetof(struct inotrace_inotify_rec, path), path_len);
}

static __always_inline int exit_call(__u32 syscall, __s64 ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct inflight *inp = inflight.lookup(&id);
	struct inflight in;
	void *task;
	__u32 euid;
	__u16 origin;
	int is_init = syscall == INOTRACE_SC_INOTIFY_INIT || syscall == INOTRACE_SC_INOTIFY_INIT1;
	int is_new = 0;

	if (!inp)
		return 0; /* entered before the probes were attached */
	in = *inp;
	inflight.delete(&id);
	if (in.syscall != syscall) {
		track_done(&in); /* that call's exit was missed: it is over all the same */
		return 0;
	}
	task = (void *)bpf_get_current_task();
	euid = task_euid(task);
	origin = task_origin(task, id >> 32);
	count_call(syscall, ret, euid, origin);
	if (!is_init && in.group)
		is_new = track_exit(&in, ret);
	if (STREAM_CALLS || is_init || is_own(id >> 32) ||
	    (STREAM_LIMIT_FAILURES && syscall == INOTRACE_SC_INOTIFY_ADD_WATCH && ret == -ERR_ENOSPC))
		submit_call(&in, syscall, ret, id, task, euid, origin, is_new);
	if (!is_init && in.group)
		track_done(&in); /* last: after its record */
	return 0;
}

/* ---- tracepoint front end -------------------------------------------- */

#if FRONT_END_TRACEPOINT
int tp_enter_inotify_init(struct sc_enter_ctx *ctx)
{
	return enter_call(INOTRACE_SC_INOTIFY_INIT, INOTRACE_BACKEND_TRACEPOINT, -1, 0, 0, 0, 0);
}

int tp_enter_inotify_init1(struct sc_enter_ctx *ctx)
{
	return enter_call(INOTRACE_SC_INOTIFY_INIT1, INOTRACE_BACKEND_TRACEPOINT, -1, 0,
			  (__u32)ctx->args[0], 0, 0);
}

int tp_enter_inotify_add_watch(struct sc_enter_ctx *ctx)
{
	return enter_call(INOTRACE_SC_INOTIFY_ADD_WATCH, INOTRACE_BACKEND_TRACEPOINT,
			  (__s32)ctx->args[0], ctx->args[1], 0, (__u32)ctx->args[2], 0);
}

int tp_enter_inotify_rm_watch(struct sc_enter_ctx *ctx)
{
	return enter_call(INOTRACE_SC_INOTIFY_RM_WATCH, INOTRACE_BACKEND_TRACEPOINT,
			  (__s32)ctx->args[0], 0, 0, 0, (__s32)ctx->args[1]);
}

int tp_exit_inotify_init(struct sc_exit_ctx *ctx)
{
	return exit_call(INOTRACE_SC_INOTIFY_INIT, ctx->ret);
}

int tp_exit_inotify_init1(struct sc_exit_ctx *ctx)
{
	return exit_call(INOTRACE_SC_INOTIFY_INIT1, ctx->ret);
}

int tp_exit_inotify_add_watch(struct sc_exit_ctx *ctx)
{
	return exit_call(INOTRACE_SC_INOTIFY_ADD_WATCH, ctx->ret);
}

int tp_exit_inotify_rm_watch(struct sc_exit_ctx *ctx)
{
	return exit_call(INOTRACE_SC_INOTIFY_RM_WATCH, ctx->ret);
}

#endif

/* ---- kprobe front end ------------------------------------------------- */

/* Since 4.17 x86-64 syscall functions (__x64_sys_X) take one argument, the
 * user's saved pt_regs, and the real arguments live in it (SYSCALL_WRAPPER=1,
 * set by user space from the function name BCC resolves). Older kernels pass
 * them directly in the probe's registers. Register offsets come from BTF. */
#if FRONT_END_KPROBE
static __always_inline __u64 syscall_arg(struct pt_regs *ctx, __u64 reg_off)
{
	__u64 v = 0;
#if SYSCALL_WRAPPER
	void *regs = (void *)PT_REGS_PARM1(ctx);

	bpf_probe_read_kernel(&v, sizeof(v), regs + reg_off);
#else
	bpf_probe_read_kernel(&v, sizeof(v), (void *)ctx + reg_off);
#endif
	return v;
}

int kp_enter_inotify_init(struct pt_regs *ctx)
{
	return enter_call(INOTRACE_SC_INOTIFY_INIT, INOTRACE_BACKEND_KPROBE, -1, 0, 0, 0, 0);
}

int kp_enter_inotify_init1(struct pt_regs *ctx)
{
	return enter_call(INOTRACE_SC_INOTIFY_INIT1, INOTRACE_BACKEND_KPROBE, -1, 0,
			  (__u32)syscall_arg(ctx, OFF_PT_REGS_ARG0), 0, 0);
}

int kp_enter_inotify_add_watch(struct pt_regs *ctx)
{
	return enter_call(INOTRACE_SC_INOTIFY_ADD_WATCH, INOTRACE_BACKEND_KPROBE,
			  (__s32)syscall_arg(ctx, OFF_PT_REGS_ARG0),
			  syscall_arg(ctx, OFF_PT_REGS_ARG1), 0,
			  (__u32)syscall_arg(ctx, OFF_PT_REGS_ARG2), 0);
}

int kp_enter_inotify_rm_watch(struct pt_regs *ctx)
{
	return enter_call(INOTRACE_SC_INOTIFY_RM_WATCH, INOTRACE_BACKEND_KPROBE,
			  (__s32)syscall_arg(ctx, OFF_PT_REGS_ARG0), 0, 0, 0,
			  (__s32)syscall_arg(ctx, OFF_PT_REGS_ARG1));
}

int kr_exit_inotify_init(struct pt_regs *ctx)
{
	return exit_call(INOTRACE_SC_INOTIFY_INIT, (__s64)PT_REGS_RC(ctx));
}

int kr_exit_inotify_init1(struct pt_regs *ctx)
{
	return exit_call(INOTRACE_SC_INOTIFY_INIT1, (__s64)PT_REGS_RC(ctx));
}

int kr_exit_inotify_add_watch(struct pt_regs *ctx)
{
	return exit_call(INOTRACE_SC_INOTIFY_ADD_WATCH, (__s64)PT_REGS_RC(ctx));
}

int kr_exit_inotify_rm_watch(struct pt_regs *ctx)
{
	return exit_call(INOTRACE_SC_INOTIFY_RM_WATCH, (__s64)PT_REGS_RC(ctx));
}

#endif

/* ---- fentry front end (BPF trampolines) ------------------------------- */

/* fentry/fexit programs are called from a trampoline patched into the
 * function: no breakpoint as a kprobe takes, and unlike a syscall tracepoint
 * no TIF_SYSCALL_TRACEPOINT on every task, which sends every syscall of every
 * process on the host down the slow path. They see the function's arguments
 * as an array of u64 (the return value follows them at fexit). The syscall
 * functions take the user's saved pt_regs (x86-64, since 4.17), read at the
 * offsets BTF gives, as the kprobe front end reads them. BCC loads a
 * function named kfunc__F (kretfunc__F) as fentry (fexit) on F; inotrace
 * attaches each one itself (never BCC's autoload), so a kernel without
 * trampolines fails per probe and `auto` falls back. */
#if FRONT_END_FENTRY
/* A pointer argument of a traced function, as a plain number: read through a
 * helper, never loaded from ctx. The verifier types ctx from BTF, and before
 * 5.16 it refuses a load of any pointer argument that does not point to a
 * struct (5.10: "func '__x64_sys_inotify_init1' arg0 type FWD is not a
 * struct", pt_regs being a forward declaration there; a char * likewise). */
static __always_inline __u64 fentry_ctx(unsigned long long *ctx, int i)
{
	__u64 v = 0;

	bpf_probe_read_kernel(&v, sizeof(v), &ctx[i]);
	return v;
}

/* A syscall argument from the saved user registers (regs: fentry_ctx(ctx, 0)). */
static __always_inline __u64 reg_arg(__u64 regs, __u64 reg_off)
{
	__u64 v = 0;

	bpf_probe_read_kernel(&v, sizeof(v), (void *)regs + reg_off);
	return v;
}

int kfunc____x64_sys_inotify_init(unsigned long long *ctx)
{
	return enter_call(INOTRACE_SC_INOTIFY_INIT, INOTRACE_BACKEND_FENTRY, -1, 0, 0, 0, 0);
}

int kfunc____x64_sys_inotify_init1(unsigned long long *ctx)
{
	return enter_call(INOTRACE_SC_INOTIFY_INIT1, INOTRACE_BACKEND_FENTRY, -1, 0,
			  (__u32)reg_arg(fentry_ctx(ctx, 0), OFF_PT_REGS_ARG0), 0, 0);
}

int kfunc____x64_sys_inotify_add_watch(unsigned long long *ctx)
{
	__u64 regs = fentry_ctx(ctx, 0);

	return enter_call(INOTRACE_SC_INOTIFY_ADD_WATCH, INOTRACE_BACKEND_FENTRY,
			  (__s32)reg_arg(regs, OFF_PT_REGS_ARG0), reg_arg(regs, OFF_PT_REGS_ARG1), 0,
			  (__u32)reg_arg(regs, OFF_PT_REGS_ARG2), 0);
}

int kfunc____x64_sys_inotify_rm_watch(unsigned long long *ctx)
{
	__u64 regs = fentry_ctx(ctx, 0);

	return enter_call(INOTRACE_SC_INOTIFY_RM_WATCH, INOTRACE_BACKEND_FENTRY,
			  (__s32)reg_arg(regs, OFF_PT_REGS_ARG0), 0, 0, 0, (__s32)reg_arg(regs, OFF_PT_REGS_ARG1));
}

/* fexit of long F(const struct pt_regs *): the return value is ctx[1]. */
int kretfunc____x64_sys_inotify_init(unsigned long long *ctx)
{
	return exit_call(INOTRACE_SC_INOTIFY_INIT, (__s64)ctx[1]);
}

int kretfunc____x64_sys_inotify_init1(unsigned long long *ctx)
{
	return exit_call(INOTRACE_SC_INOTIFY_INIT1, (__s64)ctx[1]);
}

int kretfunc____x64_sys_inotify_add_watch(unsigned long long *ctx)
{
	return exit_call(INOTRACE_SC_INOTIFY_ADD_WATCH, (__s64)ctx[1]);
}

int kretfunc____x64_sys_inotify_rm_watch(unsigned long long *ctx)
{
	return exit_call(INOTRACE_SC_INOTIFY_RM_WATCH, (__s64)ctx[1]);
}

#endif

/* ---- opens: counted in the kernel, streamed only on request ------------ */

static __always_inline void count_open(struct inotrace_open_key *key)
{
	__u64 zero = 0, *c = open_counts.lookup(key);

	if (!c) {
		open_counts.insert(key, &zero);
		c = open_counts.lookup(key);
	}
	if (c)
		__sync_fetch_and_add(c, 1);
	else
		count_lost(INOTRACE_LOST_OPEN_COUNTS);
}

/* The open counter's key for the current task: comm and effective uid.
 * Returns the task's tgid. */
static __always_inline __u32 open_key_of_current(struct inotrace_open_key *key)
{
#if HAVE_TASK_BTF
	/* Loaded straight through the task's BTF-typed pointer, at BTF's
	 * offsets (the verifier checks each load against BTF): a plain load
	 * each, where bpf_get_current_comm and the two bpf_probe_read_kernel
	 * of cred->euid cost ~250 ns an open on this project's VMs. */
	char *task = (char *)bpf_get_current_task_btf();
	char *cred = *(char **)(task + OFF_TASK_CRED);

	__u64 *comm = (__u64 *)key->comm;

	/* two 8-byte loads: memcpy from a char * would load it byte by byte,
	 * and the JIT guards every load through such a pointer */
	comm[0] = *(__u64 *)(task + OFF_TASK_COMM);
	comm[1] = *(__u64 *)(task + OFF_TASK_COMM + 8);
	key->uid = *(__u32 *)(cred + OFF_CRED_EUID);
	return *(__u32 *)(task + OFF_TASK_TGID);
#else
	bpf_get_current_comm(&key->comm, sizeof(key->comm));
	key->uid = task_euid((void *)bpf_get_current_task());
	return bpf_get_current_pid_tgid() >> 32;
#endif
}

#if OPEN_SLOTS_PER_CPU
/* Successful opens by syscall are the hot path, and past the key, the
 * cost of counting one was its hash lookup (~100 ns: jhash of 28 bytes).
 * So each key of a successful open gets a slot in a per-CPU array, found
 * through a one-entry per-CPU cache of the last key counted on that CPU: a
 * run of opens by one process does no lookup at all. The cache only says
 * where to count, never holds a count, and every open compares its whole
 * key with it, so a rename, a setuid or another process misses and finds
 * its own slot: counts stay exact. A slot, once given, is its key's for the
 * program's lifetime (never freed or reused), so counters only grow. A CPU
 * gives slots from its own range (no atomic that returns a value is
 * available to BCC's compiler); a CPU whose range is used up counts in the
 * hash. Only programs that cannot be preempted use it (syscall tracepoints,
 * kretprobes): a trampoline's program can be, between reading the cache and
 * using it. */
struct slot_cache {
	struct inotrace_open_key key;
	__u32 slot;
	__u32 valid;
};
BPF_HASH(open_slots, struct inotrace_open_key, __u32, OPEN_COUNTS_MAX);
BPF_PERCPU_ARRAY(open_slot_counts, __u64, OPEN_COUNTS_MAX);
BPF_PERCPU_ARRAY(open_slot_cache, struct slot_cache, 1);
BPF_PERCPU_ARRAY(open_slots_given, __u32, 1); /* of this CPU's range */

static __always_inline int same_open_key(const struct inotrace_open_key *a, const struct inotrace_open_key *b)
{
	const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;

	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && *(const __u32 *)&x[3] == *(const __u32 *)&y[3];
}

/* The key's slot: given before, or given now from this CPU's range. */
static __always_inline int find_slot(const struct inotrace_open_key *key, __u32 *slot)
{
	__u32 zero = 0, *s = open_slots.lookup(key), *given, n;

	if (s) {
		*slot = *s;
		return 1;
	}
	given = open_slots_given.lookup(&zero);
	if (!given || *given >= OPEN_SLOTS_PER_CPU)
		return 0;
	n = bpf_get_smp_processor_id() * OPEN_SLOTS_PER_CPU + *given;
	if (n >= OPEN_COUNTS_MAX)
		return 0;
	if (open_slots.insert(key, &n)) {
		s = open_slots.lookup(key); /* another CPU gave it one first */
		if (!s)
			return 0; /* the map is full */
		n = *s;
	} else {
		(*given)++;
	}
	*slot = n;
	return 1;
}

static __always_inline void count_open_ok(struct inotrace_open_key *key)
{
	__u32 zero = 0, slot;
	struct slot_cache *c = open_slot_cache.lookup(&zero);
	__u64 *v;

	if (!c)
		return count_open(key);
	if (c->valid && same_open_key(&c->key, key)) {
		slot = c->slot;
	} else {
		if (!find_slot(key, &slot))
			return count_open(key);
		__builtin_memcpy(&c->key, key, sizeof(c->key));
		c->slot = slot;
		c->valid = 1;
	}
	v = open_slot_counts.lookup(&slot);
	if (v)
		(*v)++; /* this CPU's copy; the program cannot be preempted */
	else
		count_open(key);
}
#endif

#if STREAM_OPENS
static __always_inline struct inotrace_open_rec *open_rec(__u32 call, __s64 ret, __u16 origin, __u32 backend)
{
	__u32 zero = 0;
	struct inotrace_open_rec *rec = open_scratch.lookup(&zero);

	if (!rec)
		return 0;
	rec->ts_ns = bpf_ktime_get_ns();
	rec->_reserved = 0;
	rec->ret = ret;
	rec->kind = INOTRACE_REC_OPEN;
	rec->call = call;
	rec->origin = origin;
	rec->backend = backend;
	rec->rec_flags = 0;
	rec->dfd = -100;
	rec->flags = 0;
	rec->mode = 0;
	rec->_pad = 0;
	rec->path[0] = 0;
	return rec;
}

/* Whether trace's filters admit the current task's opens. */
static __always_inline int open_traced(__u64 id)
{
#if FILTER_PIDS || FILTER_UIDS || FILTER_COMMS
	struct comm_key c = {};

	bpf_get_current_comm(&c.comm, sizeof(c.comm));
	return trace_allowed(id >> 32, (__u32)id, (__u32)bpf_get_current_uid_gid(),
			     task_euid((void *)bpf_get_current_task()), c.comm);
#else
	return 1;
#endif
}

static __always_inline int open_enter(__u32 call, __s32 dfd, __u64 path, __u32 flags, __u32 mode)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct open_args a = { .path = path, .dfd = dfd, .flags = flags, .mode = mode, .call = call };

	if (!open_traced(id))
		return 0; /* no saved arguments: its exit streams nothing */
	if (open_inflight.update(&id, &a))
		count_lost(INOTRACE_LOST_INFLIGHT);
	return 0;
}

/* A do_filp_open's path is the kernel's own copy (struct filename), not
 * the caller's memory: exec copied it in, or the kernel made it up. */
static __always_inline __u32 read_kernel_path(char *dst, __u8 *rec_flags, __u64 kptr)
{
	return read_path(dst, rec_flags, kptr, 1);
}

/* Stream one counted open, with the arguments saved for it. */
static __always_inline void stream_open(struct open_args *a, struct inotrace_open_key *key, __s64 ret, __u32 backend)
{
	__u64 id = bpf_get_current_pid_tgid(), path_len = 0;
	struct inotrace_open_rec *rec = open_rec(a->call, ret, key->origin, backend);

	if (!rec)
		return;
	rec->tgid = id >> 32;
	rec->tid = (__u32)id;
	rec->ppid = task_ppid((void *)bpf_get_current_task());
	rec->uid = (__u32)bpf_get_current_uid_gid();
	rec->euid = key->uid;
	rec->cgroup_id = bpf_get_current_cgroup_id();
	rec->dfd = a->dfd;
	rec->flags = a->flags;
	rec->mode = a->mode;
	__builtin_memcpy(rec->comm, key->comm, sizeof(rec->comm));
	if (a->call == INOTRACE_OC_DO_FILP_OPEN)
		path_len = read_kernel_path(rec->path, &rec->rec_flags, a->path);
	else if (a->path)
		path_len = read_user_path(rec->path, &rec->rec_flags, a->path);
	submit((void *)rec, offsetof(struct inotrace_open_rec, path), path_len);
}
#endif

/* The common exit of every open syscall (or of do_sys_openat2). */
static __always_inline int open_exit(__u32 call, __s64 ret, __u32 backend)
{
	struct inotrace_open_key key = {};
	/* the euid, as for inotify calls */
	__u32 tgid = open_key_of_current(&key);

	key.err = ret < 0 ? (__s32)-ret : 0;
	/* Only syscalls reach here (io_uring and kernel threads open through
	 * do_filp_open): the origin is user or usermode_helper, and the hot
	 * path skips reading task flags. */
	key.origin = is_umh(tgid) ? INOTRACE_ORIGIN_USERMODE_HELPER : INOTRACE_ORIGIN_USER;
#if OPEN_SLOTS_PER_CPU
	if (!key.err && backend != INOTRACE_BACKEND_FENTRY)
		count_open_ok(&key);
	else
#endif
		count_open(&key);
#if STREAM_OPENS
	{
		__u64 id = bpf_get_current_pid_tgid();
		struct open_args *a = open_inflight.lookup(&id);

		if (!a)
			return 0;
		if (!a->call)
			a->call = call;
		stream_open(a, &key, ret, backend);
		open_inflight.delete(&id);
	}
#endif
	return 0;
}

/* Tracepoint front end: the exit alone counts; entries only when streaming. */
#if FRONT_END_TRACEPOINT
int tp_exit_open(struct sc_exit_ctx *ctx) { return open_exit(INOTRACE_OC_OPEN, ctx->ret, INOTRACE_BACKEND_TRACEPOINT); }
int tp_exit_openat(struct sc_exit_ctx *ctx) { return open_exit(INOTRACE_OC_OPENAT, ctx->ret, INOTRACE_BACKEND_TRACEPOINT); }
int tp_exit_openat2(struct sc_exit_ctx *ctx) { return open_exit(INOTRACE_OC_OPENAT2, ctx->ret, INOTRACE_BACKEND_TRACEPOINT); }
int tp_exit_creat(struct sc_exit_ctx *ctx) { return open_exit(INOTRACE_OC_CREAT, ctx->ret, INOTRACE_BACKEND_TRACEPOINT); }
int tp_exit_open_by_handle_at(struct sc_exit_ctx *ctx)
{
	return open_exit(INOTRACE_OC_OPEN_BY_HANDLE_AT, ctx->ret, INOTRACE_BACKEND_TRACEPOINT);
}

#endif

/* Kprobe front end: open, openat, openat2 and creat all reach
 * do_sys_openat2 (>= 5.6). do_sys_open is inlined there on 6.1: a kprobe on
 * it attaches and never fires, so it is not used. */
#if FRONT_END_KPROBE
int kr_exit_do_sys_openat2(struct pt_regs *ctx)
{
	return open_exit(0, (__s64)(int)PT_REGS_RC(ctx), INOTRACE_BACKEND_KPROBE);
}

int kr_exit_open_by_handle_at(struct pt_regs *ctx)
{
	return open_exit(INOTRACE_OC_OPEN_BY_HANDLE_AT, (__s64)PT_REGS_RC(ctx), INOTRACE_BACKEND_KPROBE);
}

#endif

/* fentry front end: do_sys_openat2(int dfd, const char __user *filename,
 * struct open_how *how) returns long, after its three arguments. */
#if FRONT_END_FENTRY
int kretfunc__do_sys_openat2(unsigned long long *ctx)
{
	return open_exit(0, (__s64)(int)ctx[3], INOTRACE_BACKEND_FENTRY);
}

int kretfunc____x64_sys_open_by_handle_at(unsigned long long *ctx)
{
	return open_exit(INOTRACE_OC_OPEN_BY_HANDLE_AT, (__s64)ctx[1], INOTRACE_BACKEND_FENTRY);
}

#endif

#if STREAM_OPENS
#if FRONT_END_TRACEPOINT
int tp_enter_open(struct sc_enter_ctx *ctx)
{
	return open_enter(INOTRACE_OC_OPEN, -100, ctx->args[0], (__u32)ctx->args[1], (__u32)ctx->args[2]);
}
int tp_enter_openat(struct sc_enter_ctx *ctx)
{
	return open_enter(INOTRACE_OC_OPENAT, (__s32)ctx->args[0], ctx->args[1], (__u32)ctx->args[2], (__u32)ctx->args[3]);
}
int tp_enter_openat2(struct sc_enter_ctx *ctx)
{
	__u64 how[2] = {}; /* struct open_how { u64 flags; u64 mode; ... } (uapi) */

	bpf_probe_read_user(how, sizeof(how), (void *)ctx->args[2]);
	return open_enter(INOTRACE_OC_OPENAT2, (__s32)ctx->args[0], ctx->args[1], (__u32)how[0], (__u32)how[1]);
}
int tp_enter_creat(struct sc_enter_ctx *ctx)
{
	/* creat(p, m) == open(p, O_CREAT|O_WRONLY|O_TRUNC, m) */
	return open_enter(INOTRACE_OC_CREAT, -100, ctx->args[0], 01 | 0100 | 01000, (__u32)ctx->args[1]);
}
int tp_enter_open_by_handle_at(struct sc_enter_ctx *ctx)
{
	return open_enter(INOTRACE_OC_OPEN_BY_HANDLE_AT, (__s32)ctx->args[0], 0, (__u32)ctx->args[2], 0);
}
#endif

#if FRONT_END_KPROBE
/* do_sys_openat2(int dfd, const char __user *filename, struct open_how *how) */
int kp_enter_do_sys_openat2(struct pt_regs *ctx)
{
	__u64 how[2] = {};

	bpf_probe_read_kernel(how, sizeof(how), (void *)PT_REGS_PARM3(ctx));
	return open_enter(INOTRACE_OC_DO_SYS_OPENAT2, (__s32)PT_REGS_PARM1(ctx), PT_REGS_PARM2(ctx),
			  (__u32)how[0], (__u32)how[1]);
}
int kp_enter_open_by_handle_at(struct pt_regs *ctx)
{
	return open_enter(INOTRACE_OC_OPEN_BY_HANDLE_AT, (__s32)syscall_arg(ctx, OFF_PT_REGS_ARG0), 0,
			  (__u32)syscall_arg(ctx, OFF_PT_REGS_ARG2), 0);
}
#endif

#if FRONT_END_FENTRY
int kfunc__do_sys_openat2(unsigned long long *ctx)
{
	__u64 how[2] = {};

	bpf_probe_read_kernel(how, sizeof(how), (void *)fentry_ctx(ctx, 2));
	return open_enter(INOTRACE_OC_DO_SYS_OPENAT2, (__s32)ctx[0], fentry_ctx(ctx, 1), (__u32)how[0], (__u32)how[1]);
}
int kfunc____x64_sys_open_by_handle_at(unsigned long long *ctx)
{
	__u64 regs = fentry_ctx(ctx, 0);

	return open_enter(INOTRACE_OC_OPEN_BY_HANDLE_AT, (__s32)reg_arg(regs, OFF_PT_REGS_ARG0), 0,
			  (__u32)reg_arg(regs, OFF_PT_REGS_ARG2), 0);
}
#endif
#endif

/* ---- opens the kernel makes itself (fentry and kprobe backends) --------- */

#if HAVE_KERNEL_OPENS
/* Every open of a path passes do_filp_open: the open syscalls' (through
 * do_sys_openat2), io_uring's, exec's binary and interpreter
 * (do_open_execat), a core-dump file, a kernel thread's filp_open. The first
 * two are counted where they are asked for: at do_sys_openat2, which also
 * sees the failures do_filp_open never does (EMFILE, EFAULT), and by
 * io_uring's tracepoints. Only the rest are counted here. Which is which is
 * read from the task's saved user registers: from syscall entry until the
 * syscall returns, ax holds -ENOSYS and orig_ax the syscall's number; a core
 * dump runs on the way back to user space, after ax took the result. */
#define ENOSYS_RET ((__u64)-38)
#define X32_SYSCALL_BIT 0x40000000ULL

/* x86-64 and ia32 numbers of the calls that count their own opens. No
 * number of one table is, in the other, a call that opens a path. */
static __always_inline int counts_own_opens(__u64 nr)
{
	switch (nr & ~X32_SYSCALL_BIT) {
	case 2:   /* x86-64 open */
	case 85:  /* x86-64 creat */
	case 257: /* x86-64 openat */
	case 437: /* openat2, both tables */
	case 426: /* io_uring_enter, both tables: an inline io_uring request */
	case 5:   /* ia32 open */
	case 8:   /* ia32 creat */
	case 295: /* ia32 openat */
		return 1;
	}
	return 0;
}

/* The origin of this do_filp_open if it is counted here, else -1. */
static __always_inline int kernel_open_origin(void)
{
	__u32 flags = task_flags((void *)bpf_get_current_task());
	__u64 regs, ax = 0, nr = 0;

	if (flags & PF_IO_WORKER)
		return -1; /* an io-wq or SQPOLL thread runs io_uring requests only */
	if (flags & PF_KTHREAD)
		return INOTRACE_ORIGIN_KERNEL_THREAD;
	regs = (__u64)bpf_task_pt_regs(bpf_get_current_task_btf());
	bpf_probe_read_kernel(&ax, sizeof(ax), (void *)(regs + OFF_PT_REGS_AX));
	bpf_probe_read_kernel(&nr, sizeof(nr), (void *)(regs + OFF_PT_REGS_ORIG_AX));
	if (ax == ENOSYS_RET && counts_own_opens(nr))
		return -1;
	return INOTRACE_ORIGIN_KERNEL;
}

/* do_filp_open returns a struct file * or an ERR_PTR. */
static __always_inline __s64 filp_ret(__u64 file)
{
	return file >= (__u64)-4095 ? (__s64)file : 0;
}

static __always_inline int kernel_open(int origin, __s64 ret, struct inotrace_open_key *key)
{
	open_key_of_current(key);
	key->err = ret < 0 ? (__s32)-ret : 0;
	key->origin = origin;
	count_open(key);
	return 0;
}

#if STREAM_OPENS
/* What do_filp_open(dfd, struct filename *, const struct open_flags *) was asked. */
static __always_inline void filp_args(struct open_args *a, __s32 dfd, __u64 name, __u64 op)
{
	__u16 mode = 0;

	a->path = (__u64)read_ptr((void *)name, OFF_FILENAME_NAME);
	a->dfd = dfd;
	a->flags = 0;
	bpf_probe_read_kernel(&a->flags, sizeof(a->flags), (void *)(op + OFF_OPEN_FLAGS_OPEN_FLAG));
	bpf_probe_read_kernel(&mode, sizeof(mode), (void *)(op + OFF_OPEN_FLAGS_MODE));
	a->mode = mode;
	a->call = INOTRACE_OC_DO_FILP_OPEN;
}
#endif

#if FRONT_END_FENTRY
/* fexit do_filp_open: the arguments are still there beside the result. */
int kretfunc__do_filp_open(unsigned long long *ctx)
{
	struct inotrace_open_key key = {};
	int origin = kernel_open_origin();
	__u64 file = 0;

	if (origin < 0)
		return 0;
	/* copied out as a plain number: BTF types ctx[3] as a struct file *,
	 * and the verifier refuses 32-bit arithmetic on a pointer */
	bpf_probe_read_kernel(&file, sizeof(file), &ctx[3]);
	kernel_open(origin, filp_ret(file), &key);
#if STREAM_OPENS
	if (open_traced(bpf_get_current_pid_tgid())) {
		struct open_args a = {};

		filp_args(&a, (__s32)ctx[0], fentry_ctx(ctx, 1), fentry_ctx(ctx, 2));
		stream_open(&a, &key, filp_ret(file), INOTRACE_BACKEND_FENTRY);
	}
#endif
	return 0;
}

#endif

#if FRONT_END_KPROBE
int kr_exit_do_filp_open(struct pt_regs *ctx)
{
	struct inotrace_open_key key = {};
	int origin = kernel_open_origin();
	__s64 ret = filp_ret(PT_REGS_RC(ctx));

	if (origin < 0)
		return 0;
	kernel_open(origin, ret, &key);
#if STREAM_OPENS
	{
		__u64 id = bpf_get_current_pid_tgid();
		struct open_args *a = open_inflight.lookup(&id);

		if (a && a->call == INOTRACE_OC_DO_FILP_OPEN) {
			stream_open(a, &key, ret, INOTRACE_BACKEND_KPROBE);
			open_inflight.delete(&id);
		}
	}
#endif
	return 0;
}

#if STREAM_OPENS
/* A kretprobe sees no arguments: they are saved here, for the opens the
 * exit will count (an open syscall's own entry is in flight otherwise). */
int kp_enter_do_filp_open(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct open_args a = {};

	if (kernel_open_origin() < 0 || !open_traced(id))
		return 0;
	filp_args(&a, (__s32)PT_REGS_PARM1(ctx), PT_REGS_PARM2(ctx), PT_REGS_PARM3(ctx));
	if (open_inflight.update(&id, &a))
		count_lost(INOTRACE_LOST_INFLIGHT);
	return 0;
}
#endif
#endif
#endif

/* ---- io_uring opens: they bypass the open syscalls ----------------------- */

/* Field offsets come from the tracepoints' format files (-DIOU_*). */
static __always_inline __u64 tp_u64(void *ctx, int off)
{
	__u64 v = 0;

	bpf_probe_read_kernel(&v, sizeof(v), ctx + off);
	return v;
}

/* The key of the request a submission or completion record is about. */
static __always_inline void iou_key_of(void *ctx, struct iou_key *k, int req_off, int ring_off, int user_data_off)
{
#if IOU_BY_USER_DATA
	k->id = tp_u64(ctx, ring_off);
	k->user_data = tp_u64(ctx, user_data_off);
#else
	k->id = tp_u64(ctx, req_off);
#endif
}

/* io_uring:io_uring_submit_req (io_uring_submit_sqe before 6.2). An open is
 * remembered until it completes; any other request clears its slot (request
 * memory is recycled). */
int tp_iou_submit_req(void *ctx)
{
	struct iou_key key = {};
	__u64 id;
	__u8 opcode = 0;
	struct iou_open o = {};
	void *task;

	iou_key_of(ctx, &key, IOU_SUBMIT_REQ, IOU_SUBMIT_CTX, IOU_SUBMIT_USER_DATA);
	bpf_probe_read_kernel(&opcode, 1, ctx + IOU_SUBMIT_OPCODE);
	if (opcode != IORING_OP_OPENAT && opcode != IORING_OP_OPENAT2) {
		iou_opens.delete(&key);
		return 0;
	}
	id = bpf_get_current_pid_tgid();
	task = (void *)bpf_get_current_task();
	bpf_get_current_comm(&o.comm, sizeof(o.comm));
	o.uid = (__u32)bpf_get_current_uid_gid();
	o.euid = task_euid(task);
	o.tgid = id >> 32;
	o.tid = (__u32)id;
	o.ppid = task_ppid(task);
	o.cgroup_id = bpf_get_current_cgroup_id();
	/* submitted by the SQPOLL thread: a worker already */
	o.origin = task_flags(task) & PF_IO_WORKER ? INOTRACE_ORIGIN_IO_URING_WORKER : INOTRACE_ORIGIN_IO_URING;
	o.call = opcode == IORING_OP_OPENAT ? INOTRACE_OC_IO_URING_OPENAT : INOTRACE_OC_IO_URING_OPENAT2;
	if (iou_opens.update(&key, &o))
		count_lost(INOTRACE_LOST_IO_URING);
#if IOU_BY_USER_DATA && IOU_SUBMIT_REQ >= 0
	{
		__u64 req = tp_u64(ctx, IOU_SUBMIT_REQ);

		iou_reqs.update(&req, &key);
	}
#endif
	return 0;
}

/* io_uring:io_uring_queue_async_work: the request goes to an io-wq worker. */
int tp_iou_queue_async_work(void *ctx)
{
	__u64 req = IOU_ASYNC_REQ >= 0 ? tp_u64(ctx, IOU_ASYNC_REQ) : 0;
	struct iou_open *o;
#if IOU_BY_USER_DATA
	struct iou_key *key = iou_reqs.lookup(&req);

	if (!key)
		return 0;
	o = iou_opens.lookup(key);
#else
	struct iou_key key = { .id = req };

	o = iou_opens.lookup(&key);
#endif
	if (o)
		o->origin = INOTRACE_ORIGIN_IO_URING_WORKER;
	return 0;
}

/* io_uring:io_uring_complete: res is the new fd or -errno. */
int tp_iou_complete(void *ctx)
{
	struct iou_key req = {};
	struct iou_open *o;
	struct inotrace_open_key key = {};
	__s32 res = 0;

	iou_key_of(ctx, &req, IOU_COMPLETE_REQ, IOU_COMPLETE_CTX, IOU_COMPLETE_USER_DATA);
	o = iou_opens.lookup(&req);
	if (!o)
		return 0;
	bpf_probe_read_kernel(&res, sizeof(res), ctx + IOU_COMPLETE_RES);
	__builtin_memcpy(key.comm, o->comm, sizeof(key.comm));
	key.uid = o->euid;
	key.err = res < 0 ? -res : 0;
	key.origin = o->origin;
	count_open(&key);
#if STREAM_OPENS
	if (trace_allowed(o->tgid, o->tid, o->uid, o->euid, o->comm)) {
		struct inotrace_open_rec *rec = open_rec(o->call, res, o->origin, INOTRACE_BACKEND_TRACEPOINT);

		if (rec) {
			rec->tgid = o->tgid;
			rec->tid = o->tid;
			rec->ppid = o->ppid;
			rec->uid = o->uid;
			rec->euid = o->euid;
			rec->cgroup_id = o->cgroup_id;
			__builtin_memcpy(rec->comm, o->comm, sizeof(rec->comm));
			submit((void *)rec, offsetof(struct inotrace_open_rec, path), 0);
		}
	}
#endif
	iou_opens.delete(&req);
	return 0;
}

/* ---- origins: usermode helpers -------------------------------------------- */

/* raw tracepoint task:task_newtask(struct task_struct *task, u64 clone_flags),
 * in the parent's context. A new thread group whose parent is a kernel
 * thread is a usermode helper (call_usermodehelper: kworker -> exec) or a
 * kernel thread, and every process a helper forks is a helper. Any other new thread group clears its tgid, so
 * a reused pid never inherits a dead helper's mark. */
int raw_task_newtask(struct bpf_raw_tracepoint_args *ctx)
{
	void *child = (void *)ctx->args[0];
	__u64 clone_flags = ctx->args[1];
	__u32 child_tgid = 0, parent_tgid = bpf_get_current_pid_tgid() >> 32;

	if (clone_flags & CLONE_THREAD)
		return 0;
	bpf_probe_read_kernel(&child_tgid, sizeof(child_tgid), child + OFF_TASK_TGID);
	/* The child's own PF_KTHREAD is not asked: before 5.17 (user_mode_thread)
	 * a helper starts as a kernel thread and loses the flag only at exec. A
	 * real kernel thread marked so is still origin kernel_thread (task_origin
	 * asks PF_KTHREAD first), and its tgid is cleared when it is reused. */
	if ((task_flags((void *)bpf_get_current_task()) & PF_KTHREAD) || is_umh(parent_tgid)) {
		set_umh(child_tgid, 1);
		return 0;
	}
	set_umh(child_tgid, 0);
	return 0;
}

/* ---- kernel state: task_file iterator ------------------------------------ */

/* Context of the task_file iterator (kernel/bpf/task_iter.c, not in any
 * header). The verifier checks these offsets against the kernel's BTF. */
struct bpf_iter_meta {
	void *seq;
	__u64 session_id;
	__u64 seq_num;
};

struct bpf_iter__task_file {
	struct bpf_iter_meta *meta;
	void *task;
	__u32 fd;
	void *file;
};

static __always_inline __s64 read_counter(void *base, __u64 off, __u32 size)
{
	__s64 v = 0;

	/* atomic_long_t (8 bytes) since 5.14's ucounts rework, atomic_t before */
	if (size == 4) {
		__s32 v32 = 0;

		bpf_probe_read_kernel(&v32, 4, base + off);
		return v32;
	}
	bpf_probe_read_kernel(&v, 8, base + off);
	return v;
}

int bpf_iter__task_file(struct bpf_iter__task_file *ctx)
{
	struct inotrace_instance_rec r = {};
	void *seq = ctx->meta->seq, *file = ctx->file, *task = ctx->task;
	void *group, *uc, *ns;
	struct inotrace_group_state *st;

	if (!task || !is_inotify_file(file))
		return 0;
	group = read_ptr(file, OFF_FILE_PRIVATE_DATA);
	if (!group)
		return 0;
	r.group = (__u64)group;
	r.fd = ctx->fd;
	st = gstate.lookup(&r.group);
	if (st) {
		r.has_state = 1;
		r.state = *st;
	}
	bpf_probe_read_kernel(&r.idr_next, sizeof(r.idr_next), group + OFF_GROUP_IDR_NEXT);
	bpf_probe_read_kernel(&r.tgid, sizeof(r.tgid), task + OFF_TASK_TGID);
	bpf_probe_read_kernel(&r.q_len, sizeof(r.q_len), group + OFF_GROUP_Q_LEN);
	bpf_probe_read_kernel(&r.max_events, sizeof(r.max_events), group + OFF_GROUP_MAX_EVENTS);
	uc = read_ptr(group, OFF_GROUP_UCOUNTS);
	r.ucounts = (__u64)uc;
	if (uc) {
		bpf_probe_read_kernel(&r.uid, sizeof(r.uid), uc + OFF_UCOUNTS_UID);
		r.ucount_instances = read_counter(uc, OFF_UCOUNTS_UCOUNT +
			UCOUNT_INOTIFY_INSTANCES * UCOUNT_ELEM_SIZE, UCOUNT_ELEM_SIZE);
		r.ucount_watches = read_counter(uc, OFF_UCOUNTS_UCOUNT +
			UCOUNT_INOTIFY_WATCHES * UCOUNT_ELEM_SIZE, UCOUNT_ELEM_SIZE);
		ns = read_ptr(uc, OFF_UCOUNTS_NS);
		if (ns) {
			bpf_probe_read_kernel(&r.user_ns, sizeof(r.user_ns), ns + OFF_USER_NS_INUM);
			r.max_instances = read_counter(ns, OFF_USER_NS_UCOUNT_MAX +
				UCOUNT_INOTIFY_INSTANCES * UCOUNT_MAX_ELEM_SIZE, UCOUNT_MAX_ELEM_SIZE);
			r.max_watches = read_counter(ns, OFF_USER_NS_UCOUNT_MAX +
				UCOUNT_INOTIFY_WATCHES * UCOUNT_MAX_ELEM_SIZE, UCOUNT_MAX_ELEM_SIZE);
		}
	}
	bpf_seq_write(seq, &r, sizeof(r));
	return 0;
}
