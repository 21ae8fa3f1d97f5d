"""Exact live accounting of inotify instances and watches.

The model follows every inotify call from the ring buffer (a new wd is a new
watch, an existing wd a modification, rm_watch a removal) and is reconciled
against the kernel at every scrape:

- which instances exist and who holds them (every fd in every process that
  refers to an instance, after fork, dup, SCM_RIGHTS, close, exec, exit) is
  read from the kernel itself by a BPF task_file iterator: exact by
  construction, and an instance shared by many holders is one instance;
- watches the kernel removes without any syscall (watched inode deleted,
  unmount, IN_ONESHOT fired) show up as a difference between the model and
  the kernel's own per-user counter (struct ucounts); the instances charged
  to that user are then re-read from fdinfo and the model corrected.

Every correction is counted by kind, so drift is visible, never hidden.
What reconciling finds that no syscall said (an instance destroyed, a watch
removed by the kernel, a queue that overflowed) is also queued in `events`
for the audit stream.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .lifetime import Holder, Lifetime, LifetimeEvent
from .records import InotifyCall, InstanceFile, Syscall

# Reads the current watches (wd -> mask) of several instances, each through
# the first of its holders (tgid, fd) that still has it; None where none does.
WatchReader = Callable[[list[tuple[tuple[int, int], ...]]], list[dict[int, int] | None]]


@dataclass
class Instance:
    group: int
    uid: int  # charged uid (euid at inotify_init)
    watches: dict[int, int] = field(default_factory=dict)  # wd -> mask
    holders: tuple[tuple[int, int], ...] = ()  # (tgid, fd), sorted; from the kernel
    ucounts: int = 0
    user_ns: int = 0
    q_len: int = 0
    max_events: int = 0
    overflowed: bool = False  # q_len > max_events at the last sample
    found_ns: int = 0  # when reconciling found it without having seen its init (0: seen)

    @property
    def owner(self) -> int:
        """The tgid an instance is attributed to: its lowest-numbered holder."""
        return self.holders[0][0] if self.holders else 0


@dataclass(frozen=True)
class UserCounts:
    """The kernel's own counters for one (user namespace, uid)."""

    uid: int
    user_ns: int
    instances: int
    watches: int
    max_instances: int
    max_watches: int


class Accounting:
    def __init__(self, max_instances: int = 1 << 20) -> None:
        self.instances: dict[int, Instance] = {}
        self.users: dict[int, UserCounts] = {}  # by ucounts pointer
        self.corrections: Counter[str] = Counter()
        self.drift = {"instances": 0, "watches": 0}
        self.max_instances = max_instances
        self.overflow = 0  # instances not tracked because of max_instances
        self.events: list[LifetimeEvent] = []  # found by reconciling; the caller drains it
        self._now_ns = 0

    # -- events --------------------------------------------------------------

    def _get(self, group: int, uid: int) -> Instance | None:
        inst = self.instances.get(group)
        if inst is None:
            if len(self.instances) >= self.max_instances:
                self.overflow += 1
                return None
            inst = self.instances[group] = Instance(group, uid)
        return inst

    def apply(self, call: InotifyCall) -> None:
        if not call.ok or not call.group:
            return
        if call.syscall in (Syscall.INOTIFY_INIT, Syscall.INOTIFY_INIT1):
            old = self.instances.get(call.group)
            if old is not None and old.found_ns and call.ts_ns <= old.found_ns:
                return  # the kernel state read after this init already holds it
            if old is not None:
                # A dead instance's group memory reused before a reconcile saw it go.
                del self.instances[call.group]
                self.events.append(
                    LifetimeEvent(
                        Lifetime.INSTANCE_DESTROYED, call.ts_ns, old.group, old.owner, old.uid, watches=len(old.watches)
                    )
                )
            inst = self._get(call.group, call.euid)
            if inst is not None:
                # until the kernel's fd tables are read: the creator holds it
                inst.holders = ((call.tgid, int(call.ret)),)
        elif call.syscall == Syscall.INOTIFY_ADD_WATCH:
            inst = self._get(call.group, call.euid)
            if inst is not None:
                if not inst.holders:
                    inst.holders = ((call.tgid, call.fd),)
                # ret is the wd; an existing wd means the watch was modified
                inst.watches[int(call.ret)] = call.mask
        elif call.syscall == Syscall.INOTIFY_RM_WATCH:
            inst = self.instances.get(call.group)
            if inst is not None:
                inst.watches.pop(call.wd, None)

    # -- queries -------------------------------------------------------------

    def top_holders(self, uid: int, by: str, n: int = 5) -> tuple[Holder, ...]:
        """The processes holding most of a user's instances or watches (by="instances"|"watches")."""
        per: dict[int, list[int]] = {}
        for inst in self.instances.values():
            if inst.uid == uid and inst.holders:
                row = per.setdefault(inst.owner, [0, 0])
                row[0] += 1
                row[1] += len(inst.watches)
        key = 1 if by == "watches" else 0
        ranked = sorted(per.items(), key=lambda kv: (-kv[1][key], -kv[1][1 - key], kv[0]))[:n]
        return tuple(Holder(pid, v[0], v[1]) for pid, v in ranked)

    def user(self, uid: int) -> UserCounts | None:
        """The kernel's counters for uid (in any user namespace), as of the last reconcile."""
        return next((u for u in self.users.values() if u.uid == uid), None)

    # -- reconciling -----------------------------------------------------------

    def _sample_queue(self, inst: Instance) -> None:
        """An overflow episode starts when q_len passes max_events.

        On overflow the kernel queues one IN_Q_OVERFLOW event, counted in
        q_len (so q_len == max_events + 1) and drops every later event until
        the reader drains the queue. Nothing in the kernel counts episodes,
        so they are found by sampling: one drained within a sample is missed.
        """
        over = inst.max_events > 0 and inst.q_len > inst.max_events
        if over and not inst.overflowed:
            self.events.append(
                LifetimeEvent(
                    Lifetime.QUEUE_OVERFLOW,
                    self._now_ns,
                    inst.group,
                    inst.owner,
                    inst.uid,
                    q_len=inst.q_len,
                    max_events=inst.max_events,
                )
            )
        inst.overflowed = over

    def _reread(self, insts: list[Instance], read: WatchReader, count: bool = True) -> None:
        """Replace instances' watches with what fdinfo says; count the differences."""
        for inst, truth in zip(insts, read([i.holders for i in insts]), strict=True):
            if truth is None:
                continue
            if count:
                gone = sorted(inst.watches.keys() - truth.keys())
                self.corrections["watch_removed_by_kernel"] += len(gone)
                self.corrections["watch_missed"] += len(truth.keys() - inst.watches.keys())
                self.events.extend(
                    LifetimeEvent(
                        Lifetime.WATCH_REMOVED, self._now_ns, inst.group, inst.owner, inst.uid, wd, inst.watches[wd]
                    )
                    for wd in gone
                )
            inst.watches = truth

    def reconcile(
        self,
        files: Iterable[InstanceFile],
        read: WatchReader,
        full: bool = False,
        seeding: bool = False,
        now_ns: int = 0,
    ) -> None:
        """Bring the model in line with the kernel (see the module docstring).

        full: re-read every instance's watches, not only those of users whose
        counts differ (periodic reconcile, or after lost events).
        seeding: the first reconcile; what it finds is not a correction.
        now_ns: the time stamped on the lifetime events this finds.
        """
        self._now_ns = now_ns
        holders: dict[int, list[tuple[int, int]]] = {}
        facts: dict[int, InstanceFile] = {}
        users: dict[int, UserCounts] = {}
        for f in files:
            holders.setdefault(f.group, []).append((f.tgid, f.fd))
            facts[f.group] = f
            users[f.ucounts] = UserCounts(
                f.uid, f.user_ns, f.ucount_instances, f.ucount_watches, f.max_instances, f.max_watches
            )
        for group in sorted(self.instances.keys() - holders.keys()):
            gone = self.instances.pop(group)  # its last fd was closed: destroyed
            self.events.append(
                LifetimeEvent(
                    Lifetime.INSTANCE_DESTROYED, now_ns, group, gone.owner, gone.uid, watches=len(gone.watches)
                )
            )
        fresh_insts: list[Instance] = []
        for group, held in holders.items():
            f = facts[group]
            inst = self.instances.get(group)
            fresh = inst is None
            if fresh:
                if len(self.instances) >= self.max_instances:
                    self.overflow += 1
                    continue
                inst = self.instances[group] = Instance(group, f.uid, found_ns=now_ns)
                if not seeding:
                    self.corrections["instance_missed"] += 1
            assert inst is not None
            inst.holders = tuple(sorted(held))
            inst.uid, inst.ucounts, inst.user_ns = f.uid, f.ucounts, f.user_ns
            inst.q_len, inst.max_events = f.q_len, f.max_events
            self._sample_queue(inst)
            if fresh:
                fresh_insts.append(inst)
        self._reread(fresh_insts, read, count=not seeding)
        fresh_groups = {i.group for i in fresh_insts}
        self.users = users
        by_user: dict[int, list[Instance]] = {}
        for inst in self.instances.values():
            by_user.setdefault(inst.ucounts, []).append(inst)
        stale: list[Instance] = []
        for uc, insts in by_user.items():
            kernel = users.get(uc)
            if kernel is None:
                continue
            if full or sum(len(i.watches) for i in insts) != kernel.watches:
                stale.extend(i for i in insts if i.group not in fresh_groups)
        self._reread(stale, read)
        self.drift = {
            "instances": sum(abs(k.instances - len(by_user.get(uc, ()))) for uc, k in users.items()),
            "watches": sum(
                abs(k.watches - sum(len(i.watches) for i in by_user.get(uc, ()))) for uc, k in users.items()
            ),
        }
