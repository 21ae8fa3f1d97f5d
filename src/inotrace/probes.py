"""The probes inotrace attaches, and by which backends: data only (no bcc).

Each probe is attached whole by one backend or not at all; `required` ones
must attach for the tracer to run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# `auto` tries them in this order, per probe: fentry taxes nothing but the
# traced function; a syscall tracepoint slows every syscall on the host; a
# kprobe costs a breakpoint per call.
BACKENDS = ("fentry", "tracepoint", "kprobe")
# BCC loads kfunc__F / kretfunc__F as fentry / fexit on F. Trampolines are
# x86-64 only in BCC, whose syscall functions are __x64_sys_*.
FENTRY_SYSCALL = "__x64_sys_"


@dataclass(frozen=True)
class Hook:
    """One attachment: kind tracepoint|kprobe|kretprobe|fentry|fexit|raw_tracepoint."""

    kind: str
    target: str  # "category:event", a kernel function ("sys:" = the syscall's function), a raw tracepoint
    fn: str  # the BPF function
    layout: str = ""  # "enter"/"exit": check the syscall tracepoint record layout first
    optional: bool = False  # absent on this kernel: skip it (the probe needs one hook)
    stream: bool = False  # only when opens are streamed (trace --opens)
    kernel_opens: bool = False  # needs what btf.KERNEL_OPEN_FIELDS resolves (bpf_task_pt_regs: >= 5.15)


def _syscall_hooks(name: str) -> dict[str, tuple[Hook, ...]]:
    return {
        "tracepoint": (
            Hook("tracepoint", f"syscalls:sys_enter_{name}", f"tp_enter_{name}", layout="enter"),
            Hook("tracepoint", f"syscalls:sys_exit_{name}", f"tp_exit_{name}", layout="exit"),
        ),
        "kprobe": (
            Hook("kprobe", f"sys:{name}", f"kp_enter_{name}"),
            Hook("kretprobe", f"sys:{name}", f"kr_exit_{name}"),
        ),
        "fentry": _fentry(FENTRY_SYSCALL + name),
    }


def _fentry(function: str, stream_entry: bool = False) -> tuple[Hook, ...]:
    """fentry and fexit on a kernel function (the entry only when opens are streamed, with stream_entry)."""
    return (
        Hook("fentry", function, f"kfunc__{function}", stream=stream_entry),
        Hook("fexit", function, f"kretfunc__{function}"),
    )


def _open_tracepoints(names: tuple[str, ...]) -> tuple[Hook, ...]:
    hooks: list[Hook] = []
    for n in names:
        hooks.append(Hook("tracepoint", f"syscalls:sys_exit_{n}", f"tp_exit_{n}", layout="exit", optional=True))
        hooks.append(
            Hook("tracepoint", f"syscalls:sys_enter_{n}", f"tp_enter_{n}", layout="enter", optional=True, stream=True)
        )
    return tuple(hooks)


@dataclass(frozen=True)
class ProbeSpec:
    name: str
    required: bool
    backends: dict[str, tuple[Hook, ...]]


# Probes, in attach order; `required` ones must attach for the tracer to run.
# inotify_init does not exist on every architecture (arm64 has only init1).
# Opens are counted at syscall exit; the entry hooks (path, flags) are only
# attached when opens are streamed. The kprobe and fentry backends count opens
# at do_sys_openat2, which open/openat/openat2/creat all reach (>= 5.6): a
# kprobe on do_sys_open attaches on 6.1 and never fires (it is inlined).
PROBES: tuple[ProbeSpec, ...] = (
    ProbeSpec("inotify_init", False, _syscall_hooks("inotify_init")),
    ProbeSpec("inotify_init1", True, _syscall_hooks("inotify_init1")),
    ProbeSpec("inotify_add_watch", True, _syscall_hooks("inotify_add_watch")),
    ProbeSpec("inotify_rm_watch", True, _syscall_hooks("inotify_rm_watch")),
    ProbeSpec(
        "open",
        False,
        {
            "tracepoint": _open_tracepoints(("open", "openat", "openat2", "creat")),
            "kprobe": (
                Hook("kprobe", "do_sys_openat2", "kp_enter_do_sys_openat2", stream=True),
                Hook("kretprobe", "do_sys_openat2", "kr_exit_do_sys_openat2"),
            ),
            "fentry": _fentry("do_sys_openat2", stream_entry=True),
        },
    ),
    ProbeSpec(
        "open_by_handle_at",
        False,
        {
            "tracepoint": _open_tracepoints(("open_by_handle_at",)),
            "kprobe": (
                Hook("kprobe", "sys:open_by_handle_at", "kp_enter_open_by_handle_at", stream=True),
                Hook("kretprobe", "sys:open_by_handle_at", "kr_exit_open_by_handle_at"),
            ),
            "fentry": _fentry(FENTRY_SYSCALL + "open_by_handle_at", stream_entry=True),
        },
    ),
    # Opens the kernel makes itself (exec's binary and interpreter, a core
    # dump, a kernel thread's): at do_filp_open, which every open of a path
    # passes. The ones an open syscall or an io_uring request asked for are
    # left to the hooks that count them (the BPF C's kernel_open_origin). No
    # syscall tracepoint sees these, so the tracepoint backend has none.
    ProbeSpec(
        "kernel_open",
        False,
        {
            "fentry": (Hook("fexit", "do_filp_open", "kretfunc__do_filp_open", kernel_opens=True),),
            "kprobe": (
                Hook("kprobe", "do_filp_open", "kp_enter_do_filp_open", stream=True, kernel_opens=True),
                Hook("kretprobe", "do_filp_open", "kr_exit_do_filp_open", kernel_opens=True),
            ),
        },
    ),
    # io_uring opens bypass the open syscalls; only io_uring's tracepoints see them.
    ProbeSpec(
        "io_uring",
        False,
        {
            "tracepoint": (
                # io_uring_submit_sqe before 6.2 (same req/opcode fields)
                Hook("tracepoint", "io_uring:io_uring_submit_req|io_uring_submit_sqe", "tp_iou_submit_req"),
                # which requests went to a worker (origin): without it, every one is io_uring's
                Hook("tracepoint", "io_uring:io_uring_queue_async_work", "tp_iou_queue_async_work", optional=True),
                Hook("tracepoint", "io_uring:io_uring_complete", "tp_iou_complete"),
            )
        },
    ),
    # new thread groups: marks usermode helpers (origin) exactly at fork
    ProbeSpec("task_newtask", False, {"raw_tracepoint": (Hook("raw_tracepoint", "task_newtask", "raw_task_newtask"),)}),
)


@dataclass
class ProbeStatus:
    probe: str
    backend: str | None = None  # the one attached, if any
    tried: dict[str, str | None] = field(default_factory=dict)  # backend -> error (None = ok)
    absent: bool = False  # no backend could attach it on this kernel (no target, or no such backend here)
