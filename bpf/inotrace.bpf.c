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

#if !defined(OFF_TASK_TGID) || !defined(OFF_TASK_REAL_PARENT) || \
	!defined(OFF_TASK_CRED) || !defined(OFF_TASK_FILES) ||    \
	!defined(OFF_CRED_EUID) || !defined(OFF_FILES_FDT) ||      \
	!defined(OFF_FDTABLE_MAX_FDS) || !defined(OFF_FDTABLE_FD) || \
	!defined(OFF_FILE_PRIVATE_DATA) || !defined(OFF_FILE_F_OP) || \
	!defined(OFF_GROUP_Q_LEN) || !defined(OFF_GROUP_MAX_EVENTS) || \
	!defined(OFF_GROUP_UCOUNTS) || !defined(OFF_UCOUNTS_NS) ||    \
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
 * the ring on a short timer. A wake-up per record costs ~4.6 us (measured,
 * kernel-notes §6); batching keeps a storm of add_watch calls cheap. */
#ifndef WAKEUP_EVERY
#define WAKEUP_EVERY 32
#endif

/* Arguments saved at entry, completed at exit (keyed by thread). */
struct inflight {
	__u64 path; /* user pointer, read at exit: at entry the page may not be faulted in */
	__s32 fd;
	__u32 flags;
	__u32 mask;
	__s32 wd;
	__u32 syscall;
	__u32 backend;
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
BPF_HASH(inflight, __u64, struct inflight, INFLIGHT_MAX);
BPF_HASH(counts, struct inotrace_count_key, __u64, COUNTS_MAX);
BPF_PERCPU_ARRAY(lost, __u64, INOTRACE_LOST__MAX);
BPF_PERCPU_ARRAY(wakeups, __u32, 1);
/* file->f_op of inotify files, learned from the first successful
 * inotify_init this program sees (the start-up self-test makes one):
 * inotify_fops is a data symbol, absent from kallsyms on many kernels. */
BPF_ARRAY(inotify_fops, __u64, 1);

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
 * task that creates the instance (kernel-notes §3). kuid_t is { uid_t val }. */
static __always_inline __u32 task_euid(void *task)
{
	__u32 euid = 0;
	void *cred = read_ptr(task, OFF_TASK_CRED);

	if (cred)
		bpf_probe_read_kernel(&euid, sizeof(euid), cred + OFF_CRED_EUID);
	return euid;
}

/* Kernel-side counters: exact even when the ring buffer overflows. */
static __always_inline void count_call(__u32 syscall, __s64 ret, __u32 euid)
{
	struct inotrace_count_key key = {};
	__u64 zero = 0, *c;

	bpf_get_current_comm(&key.comm, sizeof(key.comm));
	key.uid = euid;
	key.err = ret < 0 ? (__s32)-ret : 0;
	key.syscall = syscall;
	key.origin = INOTRACE_ORIGIN_USER;
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

	if (inflight.update(&id, &in))
		count_lost(INOTRACE_LOST_INFLIGHT);
	return 0;
}

static __always_inline void read_path(struct inotrace_inotify_rec *rec, __u64 uptr)
{
	long n;
	char next = 0;

	rec->rec_flags |= INOTRACE_F_HAS_PATH;
	n = bpf_probe_read_user_str(rec->path, sizeof(rec->path), (void *)uptr);
	if (n < 0) {
		rec->path[0] = 0;
		rec->rec_flags |= INOTRACE_F_PATH_FAULT;
		return;
	}
	/* A full buffer is ambiguous: look at the byte the copy had to drop. */
	if (n == sizeof(rec->path) &&
	    bpf_probe_read_user(&next, 1, (void *)(uptr + sizeof(rec->path) - 1)) == 0 &&
	    next != 0)
		rec->rec_flags |= INOTRACE_F_PATH_TRUNCATED;
}

static __always_inline void submit(struct inotrace_inotify_rec *rec)
{
	__u32 zero = 0, *n = wakeups.lookup(&zero);
	__u64 flags = BPF_RB_NO_WAKEUP;

	if (n && ++(*n) >= WAKEUP_EVERY) {
		*n = 0;
		flags = BPF_RB_FORCE_WAKEUP;
	}
	events.ringbuf_submit(rec, flags);
}

static __always_inline void learn_inotify_fops(void *file)
{
	__u32 zero = 0;
	__u64 *slot = inotify_fops.lookup(&zero);

	if (slot && !*slot)
		*slot = (__u64)read_ptr(file, OFF_FILE_F_OP);
}

static __always_inline int exit_call(__u32 syscall, __s64 ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct inflight *inp = inflight.lookup(&id);
	struct inotrace_inotify_rec *rec;
	struct inflight in;
	void *task;
	__u32 euid;

	if (!inp)
		return 0; /* entered before the probes were attached */
	in = *inp;
	inflight.delete(&id);
	if (in.syscall != syscall)
		return 0;

	task = (void *)bpf_get_current_task();
	euid = task_euid(task);
	count_call(syscall, ret, euid);

	rec = events.ringbuf_reserve(sizeof(*rec));
	if (!rec) {
		count_lost(INOTRACE_LOST_RINGBUF);
		return 0;
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
	rec->fd = in.fd;
	rec->flags = in.flags;
	rec->mask = in.mask;
	rec->wd = in.wd;
	rec->origin = INOTRACE_ORIGIN_USER;
	rec->backend = in.backend;
	rec->rec_flags = 0;
	rec->path[0] = 0;
	bpf_get_current_comm(&rec->comm, sizeof(rec->comm));
	if (syscall == INOTRACE_SC_INOTIFY_ADD_WATCH)
		read_path(rec, in.path);
	/* init returns the new fd; add/rm name it. The kernel rejected a call
	 * on a non-inotify fd, so private_data is a group only on success. */
	rec->group = 0;
	if (ret >= 0) {
		int is_init = syscall == INOTRACE_SC_INOTIFY_INIT || syscall == INOTRACE_SC_INOTIFY_INIT1;
		void *file = fd_to_file(task, is_init ? (__s32)ret : in.fd);

		rec->group = file_group(file);
		if (is_init && file)
			learn_inotify_fops(file);
	}
	submit(rec);
	return 0;
}

/* ---- tracepoint front end -------------------------------------------- */

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

/* ---- kprobe front end ------------------------------------------------- */

/* Since 4.17 x86-64 syscall functions (__x64_sys_X) take one argument, the
 * user's saved pt_regs, and the real arguments live in it (SYSCALL_WRAPPER=1,
 * set by user space from the function name BCC resolves). Older kernels pass
 * them directly in the probe's registers. Register offsets come from BTF. */
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
	__u32 zero = 0;
	__u64 *fops = inotify_fops.lookup(&zero);

	if (!file || !task || !fops || !*fops)
		return 0;
	if ((__u64)read_ptr(file, OFF_FILE_F_OP) != *fops)
		return 0;
	group = read_ptr(file, OFF_FILE_PRIVATE_DATA);
	if (!group)
		return 0;
	r.group = (__u64)group;
	r.fd = ctx->fd;
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
