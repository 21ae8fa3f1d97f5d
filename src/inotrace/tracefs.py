"""tracefs: make sure it is mounted, and check syscall tracepoint layouts."""

from __future__ import annotations

import ctypes
import logging
import os
import re

from .errors import InotraceError
from .libc import LIBC

log = logging.getLogger(__name__)

CANDIDATES = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")

# Layout the BPF C assumes for syscalls:sys_enter_* / sys_exit_* records
# (struct sc_enter_ctx / sc_exit_ctx in bpf/inotrace.bpf.c).
ENTER_ARG_OFFSETS = (16, 24, 32, 40, 48, 56)
EXIT_RET_OFFSET = 16


def _mount_tracefs(target: str) -> None:
    if LIBC.mount(b"tracefs", target.encode(), b"tracefs", 0, None) != 0:
        err = ctypes.get_errno()
        raise InotraceError(f"tracefs is not mounted and mounting it at {target} failed: {os.strerror(err)}")


def ensure_mounted(sysfs: str = "/sys") -> str:
    """Return the tracefs root, mounting tracefs if nothing is there yet.

    Some hosts (this project's CI among them) boot without tracefs mounted;
    BCC needs it to find tracepoint ids and to create kprobe events.
    """
    roots = [os.path.join(sysfs, c.removeprefix("/sys/")) for c in CANDIDATES]
    for root in roots:
        if os.path.isdir(os.path.join(root, "events")):
            return root
    target = roots[0]
    if not os.path.isdir(target):
        raise InotraceError(f"no tracefs mount point at {target}: is this a Linux kernel with tracing?")
    _mount_tracefs(target)
    log.info("mounted tracefs at %s", target)
    return target


_FIELD = re.compile(r"field:(?P<decl>[^;]+);\s*offset:(?P<off>\d+);\s*size:(?P<size>\d+);")


def format_fields(root: str, category: str, event: str) -> dict[str, tuple[int, int]] | None:
    """Field name -> (offset, size) of a tracepoint, or None if it does not exist."""
    try:
        with open(os.path.join(root, "events", category, event, "format")) as f:
            text = f.read()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise InotraceError(f"cannot read tracepoint {category}:{event} format: {e.strerror}") from e
    fields = {}
    for m in _FIELD.finditer(text):
        name = re.split(r"[\s*]", m.group("decl").strip().rstrip("]").split("[")[0])[-1]
        fields[name] = (int(m.group("off")), int(m.group("size")))
    return fields


def check_syscall_layout(fields: dict[str, tuple[int, int]], enter: bool) -> str | None:
    """Why a syscall tracepoint's record does not match what the BPF C reads, or None."""
    if "__syscall_nr" not in fields:
        return "no __syscall_nr field"
    own = [(off, size) for name, (off, size) in fields.items() if not name.startswith(("common_", "__syscall_nr"))]
    if enter:
        for i, (off, size) in enumerate(sorted(own)):
            if i >= len(ENTER_ARG_OFFSETS) or off != ENTER_ARG_OFFSETS[i] or size != 8:
                return f"argument {i} at offset {off} size {size}, expected {ENTER_ARG_OFFSETS[min(i, 5)]}/8"
        return None
    if fields.get("ret") != (EXIT_RET_OFFSET, 8):
        return f"ret at {fields.get('ret')}, expected ({EXIT_RET_OFFSET}, 8)"
    return None
