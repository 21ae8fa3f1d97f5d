"""The audit stream: one JSON object (or table row) per inotify call.

Strings chosen by the traced process are escaped and bounded, and listed in
`untrusted`; those copied out of the caller's memory (and so racy: the caller
may change them after the kernel read its own copy) are listed in
`user_memory`. Kernel pointers are never printed (they would defeat KASLR):
an instance is named by a keyed hash of its fsnotify group, stable for the
life of one inotrace process.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .names import INIT1_FLAG_BITS, INOTIFY_MASK_BITS, bit_names, errno_name
from .records import InotifyCall, Syscall
from .untrusted import escape

PATH_LIMIT = 1024  # escaped characters
COMM_LIMIT = 64


class Clock:
    """Maps bpf_ktime_get_ns() (CLOCK_MONOTONIC) to wall-clock time."""

    def __init__(self) -> None:
        self._offset_ns = time.time_ns() - time.monotonic_ns()

    def iso(self, mono_ns: int) -> str:
        ns = mono_ns + self._offset_ns
        dt = datetime.fromtimestamp(ns // 1_000_000_000, tz=UTC)
        return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{ns % 1_000_000_000:09d}Z"


class InstanceIds:
    """Opaque, per-run ids for kernel fsnotify group pointers."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key if key is not None else os.urandom(16)

    def __call__(self, group: int) -> str | None:
        if not group:
            return None
        digest = hashlib.blake2b(group.to_bytes(8, "little"), key=self._key, digest_size=8)
        return "i-" + digest.hexdigest()


@dataclass(frozen=True)
class Filter:
    pids: frozenset[int] = frozenset()
    comms: frozenset[bytes] = frozenset()
    uids: frozenset[int] = frozenset()

    def __call__(self, call: InotifyCall) -> bool:
        if self.pids and call.tgid not in self.pids and call.tid not in self.pids:
            return False
        if self.comms and call.comm not in self.comms:
            return False
        return not (self.uids and call.uid not in self.uids and call.euid not in self.uids)


def to_json_obj(call: InotifyCall, clock: Clock, ids: InstanceIds) -> dict[str, Any]:
    comm, comm_cut = escape(call.comm, COMM_LIMIT)
    untrusted = ["comm"]
    user_memory: list[str] = []
    truncated: list[str] = []
    if comm_cut:
        truncated.append("comm")
    args: dict[str, Any] = {}
    if call.syscall == Syscall.INOTIFY_INIT1:
        args["flags"] = call.flags
        args["flags_names"] = bit_names(call.flags, INIT1_FLAG_BITS)
    elif call.syscall == Syscall.INOTIFY_ADD_WATCH:
        args["fd"] = call.fd
        if call.path is None:
            args["pathname"] = None
            args["pathname_error"] = "EFAULT"
        else:
            path, cut = escape(call.path, PATH_LIMIT)
            args["pathname"] = path
            if cut or call.path_truncated:
                truncated.append("args.pathname")
        untrusted.append("args.pathname")
        user_memory.append("args.pathname")
        args["mask"] = call.mask
        args["mask_names"] = bit_names(call.mask, INOTIFY_MASK_BITS)
    elif call.syscall == Syscall.INOTIFY_RM_WATCH:
        args["fd"] = call.fd
        args["wd"] = call.wd
    obj: dict[str, Any] = {
        "time": clock.iso(call.ts_ns),
        "ts_ns": call.ts_ns,
        "event": "syscall",
        "syscall": call.syscall.label,
        "pid": call.tgid,
        "tid": call.tid,
        "ppid": call.ppid,
        "uid": call.uid,
        "euid": call.euid,
        "comm": comm,
        "cgroup_id": call.cgroup_id,
        "args": args,
        "ret": call.ret,
        "errno": errno_name(call.errno) if call.errno else None,
        "instance": ids(call.group),
        "origin": call.origin.label,
        "backend": call.backend.label,
        "untrusted": untrusted,
        "user_memory": user_memory,
    }
    if truncated:
        obj["truncated"] = truncated
    return obj


def to_json_line(call: InotifyCall, clock: Clock, ids: InstanceIds) -> str:
    return json.dumps(to_json_obj(call, clock, ids), ensure_ascii=True, separators=(",", ":"))


TABLE_COLUMNS = ("TIME", "PID", "TID", "EUID", "COMM", "SYSCALL", "RET", "INSTANCE")
_WIDTHS = (12, 7, 7, 6, 16, 17, 8, 19)


def table_header() -> str:
    return " ".join(c.ljust(w) for c, w in zip(TABLE_COLUMNS, _WIDTHS, strict=True)) + " DETAIL"


def table_row(call: InotifyCall, clock: Clock, ids: InstanceIds) -> str:
    obj = to_json_obj(call, clock, ids)
    ret = obj["errno"] or str(call.ret)
    args = obj["args"]
    if call.syscall == Syscall.INOTIFY_ADD_WATCH:
        detail = f"fd={args['fd']} mask={'|'.join(args['mask_names']) or '0'} path={args['pathname']}"
    elif call.syscall == Syscall.INOTIFY_RM_WATCH:
        detail = f"fd={args['fd']} wd={args['wd']}"
    elif call.syscall == Syscall.INOTIFY_INIT1:
        detail = f"flags={'|'.join(args['flags_names']) or '0'}"
    else:
        detail = ""
    cells: Iterable[str] = (
        obj["time"][11:23],
        str(call.tgid),
        str(call.tid),
        str(call.euid),
        obj["comm"],
        call.syscall.label,
        ret,
        obj["instance"] or "-",
    )
    return " ".join(c.ljust(w) for c, w in zip(cells, _WIDTHS, strict=True)) + " " + detail
