"""Synthetic records for unit tests."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from inotrace.records import Backend, InotifyCall, Origin, Syscall

BASE = InotifyCall(
    ts_ns=0,
    syscall=Syscall.INOTIFY_INIT1,
    tgid=10,
    tid=10,
    ppid=1,
    uid=0,
    euid=0,
    comm=b"x",
    cgroup_id=0,
    ret=0,
    fd=-1,
    flags=0,
    mask=0,
    wd=0,
    path=None,
    path_truncated=False,
    path_fault=False,
    group=0,
    origin=Origin.USER,
    backend=Backend.TRACEPOINT,
)


def make_call(**fields: Any) -> InotifyCall:
    return replace(BASE, **fields)
