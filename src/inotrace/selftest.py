"""Start-up self-test: what BPF reads at BTF offsets must match /proc.

The tracer makes a few inotify calls of its own and compares the records
BPF produced (pid, tid, ppid, uid, euid, comm, and the fsnotify group read
through task->files->fdt->fd[]->private_data) with what the kernel reports
through ordinary interfaces. A wrong offset shows up here, before it can
corrupt any data.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from . import libc
from .records import InotifyCall, Syscall

IN_ATTRIB = 0x4


@dataclass(frozen=True)
class Expected:
    pid: int
    tid: int
    ppid: int
    uid: int
    euid: int
    comm: bytes
    fd_a: int  # instance A
    fd_b: int  # instance B
    fd_a_dup: int  # a dup of A: same instance, other fd


@dataclass
class Probe:
    """The calls the self-test makes; close() undoes them."""

    expected: Expected

    @classmethod
    def run(cls, as_euid: int | None = None) -> Probe:
        """Make the calls; with as_euid, charged to that user (seteuid around them).

        The fallback matters on the hosts inotrace is for: when root is at
        its instance limit, the self-test's instances go to another user.
        """
        tid = threading.get_native_id()
        with open(f"/proc/self/task/{tid}/comm", "rb") as f:
            comm = f.read().rstrip(b"\n")
        saved = os.geteuid()
        if as_euid is not None:
            os.seteuid(as_euid)
        try:
            a = libc.inotify_init1(libc.IN_CLOEXEC)
            try:
                b = libc.inotify_init1(libc.IN_CLOEXEC)
            except OSError:
                os.close(a)
                raise
            a2 = os.dup(a)
            libc.inotify_add_watch(a2, "/", IN_ATTRIB)
            exp = Expected(os.getpid(), tid, os.getppid(), os.getuid(), os.geteuid(), comm, a, b, a2)
        finally:
            if as_euid is not None:
                os.seteuid(saved)
        return cls(exp)

    def close(self) -> None:
        for fd in (self.expected.fd_a, self.expected.fd_b, self.expected.fd_a_dup):
            os.close(fd)


def mine(call: InotifyCall, exp: Expected) -> bool:
    # failed attempts (e.g. EMFILE before the fallback) are not the self-test's
    return call.tid == exp.tid and call.ok and call.syscall in (Syscall.INOTIFY_INIT1, Syscall.INOTIFY_ADD_WATCH)


def complete(calls: list[InotifyCall]) -> bool:
    inits = sum(1 for c in calls if c.syscall == Syscall.INOTIFY_INIT1)
    adds = sum(1 for c in calls if c.syscall == Syscall.INOTIFY_ADD_WATCH)
    return inits >= 2 and adds >= 1


def check(calls: list[InotifyCall], exp: Expected) -> list[str]:
    """Every way the records disagree with the truth; empty when all is well."""
    problems: list[str] = []
    if not complete(calls):
        return [f"saw {len(calls)} of the 3 self-test calls"]
    c = calls[0]
    for name, got, want in (
        ("pid", c.tgid, exp.pid),
        ("ppid", c.ppid, exp.ppid),
        ("uid", c.uid, exp.uid),
        ("euid", c.euid, exp.euid),
        ("comm", c.comm, exp.comm),
    ):
        if got != want:
            problems.append(f"{name}: BPF read {got!r}, /proc says {want!r}")
    group: dict[int, int] = {}
    for call in calls:
        fd = call.ret if call.syscall == Syscall.INOTIFY_INIT1 else call.fd
        group[fd] = call.group
    a, b, a2 = group.get(exp.fd_a, 0), group.get(exp.fd_b, 0), group.get(exp.fd_a_dup, 0)
    if not (a and b):
        problems.append("instance identity: BPF read a null fsnotify group")
    elif a == b:
        problems.append("instance identity: two instances read as the same group")
    elif a != a2:
        problems.append("instance identity: a dup of an instance read as another group")
    return problems
