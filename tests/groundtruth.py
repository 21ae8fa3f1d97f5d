"""Ground truth for the accounting tests, computed without inotrace's code.

Walks /proc for inotify fds, de-duplicates fds that refer to the same open
file (the same instance) with kcmp(KCMP_FILE), counts fdinfo watch lines.
"""

from __future__ import annotations

import ctypes
import functools
import os
from dataclasses import dataclass

_libc = ctypes.CDLL(None, use_errno=True)
SYS_KCMP, KCMP_FILE = 312, 0  # x86-64


def _kcmp(p1: int, p2: int, fd1: int, fd2: int) -> int:
    return int(_libc.syscall(SYS_KCMP, p1, p2, KCMP_FILE, fd1, fd2))


@dataclass
class TrueInstance:
    holders: list[tuple[int, int]]
    watches: int
    uid: int  # euid of the owner (lowest pid holder)

    @property
    def owner(self) -> int:
        return min(self.holders)[0]


def _euid(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Uid:"):
                return int(line.split()[2])
    raise LookupError(pid)


def instances() -> list[TrueInstance]:
    fds: list[tuple[int, int]] = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:inotify":
                    fds.append((pid, int(fd)))
        except OSError:
            continue
    groups: list[list[tuple[int, int]]] = []
    for pid, fd in sorted(fds):
        for g in groups:
            if _kcmp(g[0][0], pid, g[0][1], fd) == 0:
                g.append((pid, fd))
                break
        else:
            groups.append([(pid, fd)])
    out = []
    for g in groups:
        pid, fd = min(g)
        try:
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                n = sum(1 for line in f if line.startswith("inotify wd:"))
            out.append(TrueInstance(sorted(g), n, _euid(pid)))
        except OSError:
            continue
    return out


def summary() -> dict[str, dict]:
    """Per uid and per owner pid: [instances, watches]."""
    per_uid: dict[int, list[int]] = {}
    per_pid: dict[int, list[int]] = {}
    for inst in instances():
        for key, table in ((inst.uid, per_uid), (inst.owner, per_pid)):
            row = table.setdefault(key, [0, 0])
            row[0] += 1
            row[1] += inst.watches
    return {"uid": per_uid, "pid": per_pid}


@functools.cache
def kcmp_works() -> bool:
    return _kcmp(os.getpid(), os.getpid(), 0, 0) >= 0
