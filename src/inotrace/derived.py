"""Records derived from the model, as opposed to the syscalls it saw: lifetime
events, limit failures with who holds what, and gaps in the stream.

inotify instances and watches also end without any inotify call (last fd
closed, watched inode deleted, unmount, IN_ONESHOT), and queues overflow
silently. There is no fsnotify tracepoint, so these are
found by comparing the kernel's state with the model: each is stamped with
the time it was *observed*, which is at most one sample interval after it
happened.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .records import InotifyCall


class Lifetime(enum.Enum):
    INSTANCE_DESTROYED = "instance_destroyed"  # its last fd reference is gone
    WATCH_REMOVED = "watch_removed"  # by the kernel: inode deleted, unmount, IN_ONESHOT
    QUEUE_OVERFLOW = "queue_overflow"  # q_len went past max_events: events are being dropped


@dataclass(frozen=True)
class LifetimeEvent:
    kind: Lifetime
    ts_ns: int  # CLOCK_MONOTONIC when observed
    group: int  # the instance (fsnotify group)
    pid: int  # its owner (lowest-numbered holder) when last seen; 0 if none
    uid: int  # the uid it is charged to
    wd: int = -1  # WATCH_REMOVED
    mask: int = 0  # WATCH_REMOVED: the watch's mask
    watches: int = 0  # INSTANCE_DESTROYED: watches it still had
    q_len: int = 0  # QUEUE_OVERFLOW
    max_events: int = 0  # QUEUE_OVERFLOW
    comm: bytes = b""  # the owner's comm, filled in by the tracer: untrusted


@dataclass(frozen=True)
class Holder:
    """One process's share of a user's instances and watches (owner attribution)."""

    pid: int
    instances: int
    watches: int
    comm: bytes = b""  # filled in by the tracer: untrusted


@dataclass(frozen=True)
class LimitHit:
    """Attached to an ENOSPC / EMFILE failure: the user at its limit, and who holds what."""

    resource: str  # "watches" | "instances"
    uid: int
    used: int  # the model's count for the user at the failure (sampled first when due: limits.LIMIT_SAMPLE_S)
    limit: int  # its user namespace's limit (-1 unknown)
    top: tuple[Holder, ...]


@dataclass(frozen=True)
class LimitFailure:
    """An add_watch that failed with ENOSPC, or an init with EMFILE, and the
    state of its user at that point (the call as the kernel side saw it)."""

    call: InotifyCall
    hit: LimitHit


@dataclass(frozen=True)
class RecordsLost:
    """Records the kernel side could not deliver: a gap in the audit stream.

    Counts and gauges do not depend on records, so they stay exact; what
    is missing is the detail of the calls in the gap."""

    ts_ns: int  # CLOCK_MONOTONIC when the loss was seen
    since_ns: int  # the check before: the gap lies between the two
    lost: int
    reason: str  # LostReason label: ringbuf_full, inflight_full
