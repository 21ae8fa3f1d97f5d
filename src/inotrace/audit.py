"""The audit stream: one JSON object (or table row) per inotify call, and per
lifetime event the accounting found (instance destroyed, watch removed by the
kernel, queue overflow).

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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .derived import LifetimeEvent, LimitFailure, LimitHit, RecordsLost
from .names import INIT1_FLAG_BITS, INOTIFY_MASK_BITS, bit_names, errno_name, open_flag_names
from .records import InotifyCall, OpenCall, Syscall
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

    def __call__(self, rec: InotifyCall | OpenCall | LimitFailure | LifetimeEvent | RecordsLost) -> bool:
        if isinstance(rec, RecordsLost):
            return True  # a gap concerns every reader, whatever it selects
        if isinstance(rec, LimitFailure):
            rec = rec.call
        if isinstance(rec, LifetimeEvent):
            pids, uids = {rec.pid}, {rec.uid}
        else:
            pids, uids = {rec.tgid, rec.tid}, {rec.uid, rec.euid}
        if self.pids and not pids & self.pids:
            return False
        if self.comms and rec.comm not in self.comms:
            return False
        return not (self.uids and not uids & self.uids)


class Formatter:
    """Renders records as JSON lines or table rows, with one clock and one id key."""

    def __init__(self, table: bool = False, container_of: Callable[[int], tuple[str, str]] | None = None) -> None:
        self.clock, self.ids, self.table = Clock(), InstanceIds(), table
        self.container_of = container_of  # --labels.container

    def header(self) -> str | None:
        return table_header() if self.table else None

    def __call__(self, rec: InotifyCall | OpenCall | LimitFailure | LifetimeEvent | RecordsLost) -> str:
        hit = rec.hit if isinstance(rec, LimitFailure) else None
        if isinstance(rec, LimitFailure):
            rec = rec.call
        if isinstance(rec, RecordsLost):
            return lost_row(rec, self.clock) if self.table else _dumps(lost_obj(rec, self.clock))
        if self.table:
            if isinstance(rec, LifetimeEvent):
                return lifetime_row(rec, self.clock, self.ids)
            if isinstance(rec, OpenCall):
                return open_row(rec, self.clock)
            return table_row(rec, self.clock, self.ids)
        if isinstance(rec, LifetimeEvent):
            obj, pid = lifetime_obj(rec, self.clock, self.ids), rec.pid
        elif isinstance(rec, OpenCall):
            obj, pid = open_obj(rec, self.clock), rec.tgid
        else:
            obj, pid = to_json_obj(rec, self.clock, self.ids, hit), rec.tgid
        if self.container_of is not None:
            obj["container_id"], obj["pod_uid"] = self.container_of(pid) if pid else ("", "")
        return _dumps(obj)


def _dumps(obj: dict[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=True, separators=(",", ":"))


def _limit_obj(hit: LimitHit) -> dict[str, Any]:
    """The user at its limit: `used` from the model as of this call, `limit` from the kernel."""
    return {
        "resource": hit.resource,
        "uid": hit.uid,
        "used": hit.used,
        "limit": hit.limit,
        "top_holders": [
            {"pid": h.pid, "comm": escape(h.comm, COMM_LIMIT)[0], "instances": h.instances, "watches": h.watches}
            for h in hit.top
        ],
    }


def lost_obj(gap: RecordsLost, clock: Clock) -> dict[str, Any]:
    """A gap: records the kernel could not deliver between `since` and `time`."""
    return {
        "time": clock.iso(gap.ts_ns),
        "ts_ns": gap.ts_ns,
        "event": "records_lost",
        "lost": gap.lost,
        "reason": gap.reason,
        "since": clock.iso(gap.since_ns),
        "since_ns": gap.since_ns,
    }


def lost_row(gap: RecordsLost, clock: Clock) -> str:
    obj = lost_obj(gap, clock)
    cells = (obj["time"][11:23], "-", "-", "-", "-", "records_lost", "-", "-")
    return _row(cells, f"lost={gap.lost} reason={gap.reason} since={obj['since'][11:23]}")


def lifetime_obj(ev: LifetimeEvent, clock: Clock, ids: InstanceIds) -> dict[str, Any]:
    """A lifetime event: found by comparing the kernel with the model, no syscall."""
    comm, comm_cut = escape(ev.comm, COMM_LIMIT)
    obj: dict[str, Any] = {
        "time": clock.iso(ev.ts_ns),
        "ts_ns": ev.ts_ns,
        "event": ev.kind.value,
        "pid": ev.pid or None,
        "uid": ev.uid,
        "comm": comm,
        "instance": ids(ev.group),
    }
    if ev.kind.value == "watch_removed":
        obj["wd"] = ev.wd
        obj["mask"] = ev.mask
        obj["mask_names"] = bit_names(ev.mask, INOTIFY_MASK_BITS)
        obj["cause"] = "kernel"  # inode deleted, filesystem unmounted or IN_ONESHOT fired
    elif ev.kind.value == "instance_destroyed":
        obj["watches"] = ev.watches
    else:
        obj["q_len"] = ev.q_len
        obj["max_events"] = ev.max_events
    obj["untrusted"] = ["comm"]
    obj["user_memory"] = []
    if comm_cut:
        obj["truncated"] = ["comm"]
    return obj


def _call_obj(call: InotifyCall | OpenCall, clock: Clock, event: str, syscall: str, comm: str) -> dict[str, Any]:
    """The fields every syscall record shares, in their order, up to errno."""
    return {
        "time": clock.iso(call.ts_ns),
        "ts_ns": call.ts_ns,
        "event": event,
        "syscall": syscall,
        "pid": call.tgid,
        "tid": call.tid,
        "ppid": call.ppid,
        "uid": call.uid,
        "euid": call.euid,
        "comm": comm,
        "cgroup_id": call.cgroup_id,
        "args": {},
        "ret": call.ret,
        "errno": errno_name(call.errno) if call.errno else None,
    }


def _row(cells: Iterable[str], detail: str) -> str:
    return " ".join(c.ljust(w) for c, w in zip(cells, _WIDTHS, strict=True)) + " " + detail


def open_obj(call: OpenCall, clock: Clock) -> dict[str, Any]:
    """An open: the kernel's view (ret, ids, origin) plus the caller's path, copied from its memory."""
    comm, comm_cut = escape(call.comm, COMM_LIMIT)
    truncated = ["comm"] if comm_cut else []
    args: dict[str, Any] = {"dfd": call.dfd, "flags": call.flags, "flags_names": open_flag_names(call.flags)}
    user_memory: list[str] = []
    untrusted = ["comm"]
    if call.path is not None:
        path, cut = escape(call.path, PATH_LIMIT)
        args["pathname"] = path
        untrusted.append("args.pathname")
        if not call.path_from_kernel:
            user_memory.append("args.pathname")
        if cut or call.path_truncated:
            truncated.append("args.pathname")
    else:
        # io_uring and open_by_handle_at carry no path; EFAULT: unreadable
        args["pathname"] = None
        if call.path_fault:
            args["pathname_error"] = "EFAULT"
    if call.flags & 0o100:
        args["mode"] = call.mode
    obj = _call_obj(call, clock, "open", call.call.label, comm)
    obj["args"] = args
    obj["origin"] = call.origin.label
    obj["backend"] = call.backend.label
    obj["untrusted"] = untrusted
    obj["user_memory"] = user_memory
    if truncated:
        obj["truncated"] = truncated
    return obj


def open_row(call: OpenCall, clock: Clock) -> str:
    obj = open_obj(call, clock)
    cells = (
        obj["time"][11:23],
        str(call.tgid),
        str(call.tid),
        str(call.euid),
        obj["comm"],
        call.call.label,
        obj["errno"] or str(call.ret),
        call.origin.label,
    )
    return _row(cells, f"flags={'|'.join(obj['args']['flags_names'])} path={obj['args']['pathname']}")


def lifetime_row(ev: LifetimeEvent, clock: Clock, ids: InstanceIds) -> str:
    obj = lifetime_obj(ev, clock, ids)
    if "wd" in obj:
        detail = f"wd={ev.wd} mask={'|'.join(obj['mask_names']) or '0'}"
    elif "watches" in obj:
        detail = f"watches={ev.watches}"
    else:
        detail = f"q_len={ev.q_len} max_events={ev.max_events}"
    return _row(
        (obj["time"][11:23], str(ev.pid), "-", str(ev.uid), obj["comm"], ev.kind.value, "-", obj["instance"]), detail
    )


def to_json_obj(call: InotifyCall, clock: Clock, ids: InstanceIds, hit: LimitHit | None = None) -> dict[str, Any]:
    """hit: the limit this call failed on (LimitFailure), said under "limit"."""
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
    obj = _call_obj(call, clock, "syscall", call.syscall.label, comm)
    obj["args"] = args
    obj["instance"] = ids(call.group)
    obj["origin"] = call.origin.label
    obj["backend"] = call.backend.label
    obj["untrusted"] = untrusted
    obj["user_memory"] = user_memory
    if hit is not None:
        obj["limit"] = _limit_obj(hit)
        untrusted.append("limit.top_holders.comm")
    if truncated:
        obj["truncated"] = truncated
    return obj


def to_json_line(call: InotifyCall, clock: Clock, ids: InstanceIds) -> str:
    return _dumps(to_json_obj(call, clock, ids))


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
    return _row(cells, detail)
