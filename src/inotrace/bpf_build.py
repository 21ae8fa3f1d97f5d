"""What the BPF program is built from: the C source and the defines that fit
it to this kernel (struct offsets from BTF, io_uring tracepoint fields from
tracefs, the syscall wrapper) and to the command (ring size, whether opens
and inotify calls are streamed). One resolution serves both the compile and
`--ebpf`, so what `--ebpf` prints is exactly what loads.
"""

from __future__ import annotations

import importlib.resources
import os
from dataclasses import dataclass
from typing import Any

from . import tracefs
from .btf import resolve_offsets
from .errors import InotraceError
from .kallsyms import KernelSymbols
from .probes import BACKENDS

# io_uring tracepoint fields the C reads, passed as -D offsets from tracefs
# (-1 where a kernel has no such field). io_uring_submit_sqe before 6.2.
IOU_SUBMIT = "io_uring_submit_req|io_uring_submit_sqe"
IOU_FIELDS = (
    ("IOU_SUBMIT_OPCODE", IOU_SUBMIT, "opcode"),
    ("IOU_SUBMIT_REQ", IOU_SUBMIT, "req"),
    ("IOU_SUBMIT_CTX", IOU_SUBMIT, "ctx"),
    ("IOU_SUBMIT_USER_DATA", IOU_SUBMIT, "user_data"),
    ("IOU_ASYNC_REQ", "io_uring_queue_async_work", "req"),
    ("IOU_COMPLETE_REQ", "io_uring_complete", "req"),
    ("IOU_COMPLETE_CTX", "io_uring_complete", "ctx"),
    ("IOU_COMPLETE_USER_DATA", "io_uring_complete", "user_data"),
    ("IOU_COMPLETE_RES", "io_uring_complete", "res"),
)

# x86-64 and arm64 syscall function prefixes; with them the probe sees a
# pt_regs wrapper (since 4.17), without them the arguments directly.
SYSCALL_PREFIXES = (b"__x64_sys_", b"__arm64_sys_", b"__s390x_sys_", b"sys_")

HEADER = "inotrace.h"


@dataclass(frozen=True)
class BuildOptions:
    """What the command asks of the program."""

    sysfs: str = "/sys"
    ringbuf_pages: int = 4096
    stream_opens: bool = False  # every open to the ring (`trace --opens`)
    stream_calls: bool = True  # a record per inotify call (an audit stream is written)
    stream_limit_failures: bool = False  # without stream_calls: still each add_watch failing with ENOSPC
    # the backends whose syscall and open hooks are compiled: the one asked
    # for, or every one for `auto` (a third of the hooks each)
    front_ends: tuple[str, ...] = BACKENDS
    # trace's --pid/--uid/--comm, applied in the kernel to streamed opens
    filter_pids: tuple[int, ...] = ()
    filter_uids: tuple[int, ...] = ()
    filter_comms: tuple[bytes, ...] = ()


def bpf_dir() -> Any:
    """The BPF sources shipped inside the package."""
    return importlib.resources.files("inotrace") / "bpf"


def _syscall_prefix(symbols: KernelSymbols) -> bytes:
    for prefix in SYSCALL_PREFIXES:
        if symbols.has(prefix + b"inotify_init1"):
            return prefix
    return SYSCALL_PREFIXES[0]


def _io_uring_offsets(tracefs_root: str) -> dict[str, int]:
    """-D offsets for the io_uring hooks; {} when these tracepoints cannot
    follow a request (absent, or a layout the C does not know). A request is
    followed by req where submission and completion both have it, else (5.10:
    no req at completion) by the ring and user_data (IOU_BY_USER_DATA)."""
    out: dict[str, int] = {}
    for macro, events, name in IOU_FIELDS:
        fields: dict[str, tuple[int, int]] = {}
        for event in events.split("|"):
            fields = tracefs.format_fields(tracefs_root, "io_uring", event) or {}
            if fields:
                break
        out[macro] = fields[name][0] if name in fields else -1
    have = {m for m, off in out.items() if off >= 0}
    by_req = {"IOU_SUBMIT_REQ", "IOU_COMPLETE_REQ"} <= have
    by_user_data = {"IOU_SUBMIT_CTX", "IOU_SUBMIT_USER_DATA", "IOU_COMPLETE_CTX", "IOU_COMPLETE_USER_DATA"} <= have
    if not {"IOU_SUBMIT_OPCODE", "IOU_COMPLETE_RES"} <= have or not (by_req or by_user_data):
        return {}
    out["IOU_BY_USER_DATA"] = int(not by_req)
    return out


# Keys of the open counters (the BPF C's OPEN_COUNTS_MAX); successful
# syscall opens count in per-CPU slots, each CPU giving an equal share.
OPEN_COUNTS_MAX = 16384


def possible_cpus(sysfs: str) -> int:
    """nr_cpu_ids: one more than the highest possible CPU ("0-3,8-11" -> 12)."""
    try:
        with open(os.path.join(sysfs, "devices/system/cpu/possible")) as f:
            text = f.read().strip()
        return max(int(part.split("-")[-1]) for part in text.split(",")) + 1
    except (OSError, ValueError) as e:
        raise InotraceError(f"cannot read the possible CPUs from {sysfs}: {e}") from None


@dataclass(frozen=True)
class Build:
    opts: BuildOptions
    defines: tuple[tuple[str, int], ...]  # every -D, in order
    tracefs: str
    syscall_prefix: bytes
    has_io_uring: bool  # tracepoints present, with the fields the C reads
    has_kernel_opens: bool  # bpf_task_pt_regs and do_filp_open's argument types (btf.KERNEL_OPEN_FIELDS)

    @classmethod
    def resolve(cls, symbols: KernelSymbols, opts: BuildOptions) -> Build:
        offsets = resolve_offsets(os.path.join(opts.sysfs, "kernel/btf/vmlinux"))
        # BCC looks for tracefs under the real /sys whatever --path.sysfs says
        root = tracefs.ensure_mounted("/sys")
        iou = _io_uring_offsets(root)
        prefix = _syscall_prefix(symbols)
        defines = [
            *sorted({**offsets, **iou}.items()),
            ("SYSCALL_WRAPPER", 0 if prefix == b"sys_" else 1),
            ("RINGBUF_PAGES", opts.ringbuf_pages),
            ("OPEN_COUNTS_MAX", OPEN_COUNTS_MAX),
            ("OPEN_SLOTS_PER_CPU", OPEN_COUNTS_MAX // possible_cpus(opts.sysfs)),
            ("STREAM_OPENS", int(opts.stream_opens)),
            ("STREAM_CALLS", int(opts.stream_calls)),
            ("STREAM_LIMIT_FAILURES", int(opts.stream_limit_failures)),
            *((f"FRONT_END_{b.upper()}", int(b in opts.front_ends)) for b in BACKENDS),
            ("FILTER_PIDS", len(opts.filter_pids)),
            ("FILTER_UIDS", len(opts.filter_uids)),
            ("FILTER_COMMS", len(opts.filter_comms)),
        ]
        return cls(opts, tuple(defines), root, prefix, bool(iou), offsets["HAVE_KERNEL_OPENS"] == 1)

    def source(self) -> str:
        return str((bpf_dir() / "inotrace.bpf.c").read_text())

    def cflags(self, extra: tuple[str, ...] = ()) -> list[str]:
        return [*(f"-D{name}={value}" for name, value in self.defines), *extra, f"-I{bpf_dir()}"]

    def text(self) -> str:
        """The program as one file: the defines spelled out, the header inlined."""
        header = str((bpf_dir() / HEADER).read_text())
        body = self.source().replace(f'#include "{HEADER}"', f"/* {HEADER} */\n{header}", 1)
        return "".join(f"#define {name} {value}\n" for name, value in self.defines) + body
