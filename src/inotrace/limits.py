"""The per-user limits, read in one place, and the limit failures annotated
with them: which limit a user is under, and who holds what when it is hit.

A user's limits are those of the user namespace its instances are charged
in. In inotrace's own namespace they are the fs.inotify sysctls, read now;
in another the kernel's copy (struct ucounts), as of the last sample.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from . import proc
from .accounting import Accounting, UserCounts
from .derived import LimitFailure, LimitHit
from .records import InotifyCall, OpenCall, Syscall

# errno -> the per-user limit it can mean (EMFILE is also RLIMIT_NOFILE: the
# record's used/limit tell the two apart).
LIMIT_ERRNOS = {errno.ENOSPC: "watches", errno.EMFILE: "instances"}
TOP_HOLDERS = 5
# A limit failure samples the kernel first (at most this often): holders that
# exited since the last sample would otherwise still count in `used` and
# top_holders. Rate-limited because a client retrying at its limit can fail
# thousands of times a second.
LIMIT_SAMPLE_S = 0.1


@dataclass(frozen=True)
class Limits:
    """The limits of inotrace's own user namespace (its fs.inotify sysctls; None where unreadable)."""

    user_ns: int
    max_user_instances: int | None
    max_user_watches: int | None
    max_queued_events: int | None

    @classmethod
    def read(cls, procfs: str) -> Limits:
        sysctl = proc.read_inotify_limits(procfs)
        return cls(
            proc.user_ns_inode(procfs),
            sysctl["max_user_instances"],
            sysctl["max_user_watches"],
            sysctl["max_queued_events"],
        )

    def of(self, user: UserCounts | None) -> tuple[int | None, int | None]:
        """(max instances, max watches) for a user: ours if it is in our namespace (or unknown)."""
        if user is None or user.user_ns == self.user_ns:
            return self.max_user_instances, self.max_user_watches
        return user.max_instances, user.max_watches


def limit_resource(call: InotifyCall) -> str | None:
    """The per-user limit a failed call hit, if its errno can mean one for its syscall."""
    resource = LIMIT_ERRNOS.get(call.errno)
    if resource and (call.syscall == Syscall.INOTIFY_ADD_WATCH) == (resource == "watches"):
        return resource
    return None


class LimitAnnotator:
    """Applies calls to the model in order; a limit failure comes with the
    model's state at that point, sampled from the kernel first (see LIMIT_SAMPLE_S)."""

    def __init__(self, acc: Accounting, procfs: str, sample: Callable[[], None], comm: Callable[[int], bytes]) -> None:
        self._acc = acc
        self._procfs = procfs
        self._sample = sample  # a guarded sample, under the caller's lock
        self._comm = comm
        self._sampled = 0.0

    def apply(self, calls: list[InotifyCall | OpenCall]) -> list[InotifyCall | OpenCall | LimitFailure]:
        out: list[InotifyCall | OpenCall | LimitFailure] = []
        hits: dict[tuple[str, int], LimitHit] = {}  # a storm of failures: one look per user per batch
        for call in calls:
            if isinstance(call, OpenCall):
                out.append(call)
                continue
            self._acc.apply(call)
            resource = limit_resource(call)
            if resource is None:
                if call.ok:
                    hits.clear()
                out.append(call)
                continue
            key = (resource, call.euid)
            if key not in hits:
                now = time.monotonic()
                if now - self._sampled >= LIMIT_SAMPLE_S:
                    self._sampled = now
                    self._sample()
                hits[key] = self.hit(resource, call.euid)
            out.append(LimitFailure(call, hits[key]))
        return out

    def hit(self, resource: str, uid: int) -> LimitHit:
        acc = self._acc
        max_instances, max_watches = Limits.read(self._procfs).of(acc.user(uid))
        limit = max_instances if resource == "instances" else max_watches
        top = tuple(replace(h, comm=self._comm(h.pid)) for h in acc.top_holders(uid, resource, TOP_HOLDERS))
        return LimitHit(resource, uid, acc.used(uid, resource), -1 if limit is None else limit, top)
