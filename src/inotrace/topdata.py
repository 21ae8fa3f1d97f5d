"""What `inotrace top` shows, as plain data: a Frame of users, processes and
recent limit failures, built from the live model (BPF) or from a procfs
snapshot. No terminal here: toprender.py draws a Frame, top.py runs the loop.

Users' counts are the kernel's own counters where the live model has them
(struct ucounts), else the snapshot's fdinfo sums; a process's are its
owner share (an instance shared by several processes counts once, for the
lowest pid), as in the metrics and `snapshot`.
"""

from __future__ import annotations

import collections
import pwd
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from .accounting import Accounting
from .derived import LimitFailure
from .limits import Limits
from .names import errno_name
from .untrusted import comm_text

GROWTH_WINDOW_S = 60.0  # watch growth is measured over at most this long
FAILURES_KEPT = 50  # recent limit failures held for the screen


@dataclass(frozen=True)
class UserRow:
    uid: int
    name: str  # the login name where this host knows the uid, else the number
    instances: int
    watches: int
    max_instances: int | None
    max_watches: int | None
    memory: int | None  # bytes the watches hold (the kernel's own per-watch cost), None unknown
    other_ns: bool = False  # charged in another user namespace (its own limits)


@dataclass(frozen=True)
class ProcRow:
    pid: int
    comm: str  # escaped
    uid: int
    instances: int
    watches: int
    queue: int | None  # the deepest instance's queued events (None: a snapshot cannot tell)
    memory: int | None
    growth: float | None = None  # watches per minute (None: not seen long enough)
    container: str = ""


@dataclass(frozen=True)
class Holding:
    pid: int
    comm: str
    instances: int
    watches: int


@dataclass(frozen=True)
class FailureRow:
    wall: float  # time.time() when seen
    error: str  # ENOSPC / EMFILE
    resource: str  # watches / instances
    uid: int
    pid: int
    comm: str
    used: int
    limit: int  # -1 unknown
    top: tuple[Holding, ...]


@dataclass(frozen=True)
class Frame:
    live: bool  # the BPF model (else a procfs snapshot)
    source: str  # what the screen says it shows, e.g. "live (BPF, fentry)"
    users: tuple[UserRow, ...]
    procs: tuple[ProcRow, ...]
    failures: tuple[FailureRow, ...]  # newest first
    failures_total: int = 0
    taken: float = field(default_factory=time.time)
    notes: tuple[str, ...] = ()  # e.g. why it is not live


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except (KeyError, OverflowError):
        return str(uid)


class Growth:
    """Watches per minute of each process, from what successive frames saw:
    (now - oldest sample within GROWTH_WINDOW_S) scaled to a minute."""

    def __init__(self, window: float = GROWTH_WINDOW_S) -> None:
        self.window = window
        self._seen: dict[int, collections.deque[tuple[float, int]]] = {}

    def observe(self, now: float, watches: dict[int, int]) -> dict[int, float | None]:
        out: dict[int, float | None] = {}
        for pid in self._seen.keys() - watches.keys():
            del self._seen[pid]
        for pid, n in watches.items():
            hist = self._seen.setdefault(pid, collections.deque())
            while hist and now - hist[0][0] > self.window:
                hist.popleft()
            hist.append((now, n))
            t0, n0 = hist[0]
            out[pid] = (n - n0) * 60.0 / (now - t0) if now > t0 else None
        return out


class Failures:
    """The newest limit failures, kept for the screen (and how many in all)."""

    def __init__(self, keep: int = FAILURES_KEPT, clock: Callable[[], float] = time.time) -> None:
        self.rows: collections.deque[FailureRow] = collections.deque(maxlen=keep)
        self.total = 0
        self._clock = clock

    def add(self, f: LimitFailure) -> None:
        call, hit = f.call, f.hit
        top = tuple(Holding(h.pid, comm_text(h.comm), h.instances, h.watches) for h in hit.top)
        self.rows.appendleft(
            FailureRow(
                self._clock(),
                errno_name(call.errno),
                hit.resource,
                hit.uid,
                call.tgid,
                comm_text(call.comm),
                hit.used,
                hit.limit,
                top,
            )
        )
        self.total += 1


def users_live(acc: Accounting, limits: Limits, watch_cost: int | None) -> list[UserRow]:
    rows = []
    for u in acc.users.values():
        mi, mw = limits.of(u)
        mem = u.watches * watch_cost if watch_cost is not None else None
        rows.append(UserRow(u.uid, user_name(u.uid), u.instances, u.watches, mi, mw, mem, u.user_ns != limits.user_ns))
    return rows


def procs_live(acc: Accounting, comm_of: Callable[[int], str], watch_cost: int | None) -> list[ProcRow]:
    rows = []
    for (pid, uid), (inst, watches, depth) in acc.per_owner().items():
        mem = watches * watch_cost if watch_cost is not None else None
        rows.append(ProcRow(pid, comm_of(pid), uid, inst, watches, depth, mem))
    return rows


def users_snapshot(rep: dict[str, Any], limits: Limits) -> list[UserRow]:
    cost = rep.get("watch_cost_bytes")
    return [
        UserRow(
            u["uid"],
            user_name(u["uid"]),
            u["instances"],
            u["watches"],
            limits.max_user_instances,
            limits.max_user_watches,
            u["watches"] * cost if cost is not None else None,
        )
        for u in rep["users"]
    ]


def procs_snapshot(rep: dict[str, Any]) -> list[ProcRow]:
    cost = rep.get("watch_cost_bytes")
    return [
        ProcRow(
            p["pid"],
            p["comm"] or "?",
            p["uid"],
            p["instances"],
            p["watches"],
            None,
            p["watches"] * cost if cost is not None else None,
        )
        for p in rep["processes"]
    ]


def with_growth(rows: list[ProcRow], growth: Growth, now: float) -> list[ProcRow]:
    """The rows with their watch growth, this frame's counts observed."""
    rate = growth.observe(now, {r.pid: r.watches for r in rows})
    return [replace(r, growth=rate.get(r.pid)) for r in rows]
