"""Usermode helpers already running when inotrace starts.

The BPF side marks a new thread group as a usermode helper when a kernel
thread creates it (task_newtask), and every process it forks after that.
Helpers that started before the probes are found here, from procfs: a
process that is not a kernel thread and whose parent is one (usermode
helpers are reparented to kthreadd, pid 2), plus all of its descendants.
"""

from __future__ import annotations

import os

PF_KTHREAD = 0x00200000


def _stat(procfs: str, pid: int) -> tuple[int, int] | None:
    """(ppid, flags) of a process, or None if it is gone."""
    try:
        with open(f"{procfs}/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    # the comm in parentheses may hold anything, ")" included: split after the last one
    rest = raw[raw.rfind(b")") + 2 :].split()
    try:
        return int(rest[1]), int(rest[6])
    except (IndexError, ValueError):
        return None


def usermode_helpers(procfs: str = "/proc") -> set[int]:
    procs: dict[int, tuple[int, int]] = {}
    for name in os.listdir(procfs):
        if name.isdigit() and (st := _stat(procfs, int(name))) is not None:
            procs[int(name)] = st
    kthreads = {pid for pid, (_, flags) in procs.items() if flags & PF_KTHREAD} | {2}
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    todo = [pid for pid, (ppid, flags) in procs.items() if ppid in kthreads and not flags & PF_KTHREAD]
    helpers: set[int] = set()
    while todo:
        pid = todo.pop()
        if pid not in helpers:
            helpers.add(pid)
            todo.extend(children.get(pid, ()))
    return helpers
