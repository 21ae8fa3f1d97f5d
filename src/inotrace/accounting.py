"""Exact live accounting of inotify instances and watches.

Where the numbers come from, so that a record lost from the ring buffer can
never make them wrong:

- which instances exist and who holds them (every fd in every process that
  refers to an instance, after fork, dup, SCM_RIGHTS, close, exec, exit) is
  read from the kernel by a BPF task_file iterator: exact by construction,
  and an instance shared by many holders is one instance;
- how many watches each instance has is kept by the BPF side itself, at
  every add_watch/rm_watch exit (struct inotrace_group_state in inotrace.h):
  a new wd is told from a modified one in the kernel, and the iterator hands
  the counts over with the instances. Only watches older than the probes
  (below the state's `floor`) are counted from fdinfo, once;
- watches the kernel removes without any syscall (watched inode deleted,
  unmount, IN_ONESHOT fired) show up as a difference between the model and
  the kernel's own per-user counter (struct ucounts). That user's instances
  are then re-read from fdinfo, but only when no call on them is in flight
  or ran during the read (the state's `inflight` and `calls`): during a
  burst the difference is the calls in flight, and nothing is re-read.

The records still feed the audit stream and each instance's wd -> mask map
(whose masks the watch_removed events carry). So that map is whole when a
read of fdinfo is compared with it, an instance is settled only once every
record of the calls before the read has been applied (Instance.quiet_since:
a call counts as over only after its record is in the ring). Every correction is counted by
kind, so drift is visible, never hidden. What reconciling finds that no
syscall said (an instance destroyed, a watch removed by the kernel, a queue
that overflowed) is queued in `events` for the audit stream.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .derived import Holder, Lifetime, LifetimeEvent
from .records import GroupState, InotifyCall, InstanceFile, Syscall

log = logging.getLogger(__name__)

# Reads the current watches (wd -> mask) of several instances, each through
# the first of its holders (tgid, fd) that still has it; None where none does.
WatchReader = Callable[[list[tuple[tuple[int, int], ...]]], list[dict[int, int] | None]]
# Runs the iterator: every inotify file in every fd table, with its state.
KernelReader = Callable[[], list[InstanceFile]]

NO_FLOOR = 1 << 62  # no state yet: every watch there is predates the probes


@dataclass
class Instance:
    group: int
    uid: int  # charged uid (euid at inotify_init)
    watches: dict[int, int] = field(default_factory=dict)  # wd -> mask, from records and fdinfo reads
    holders: tuple[tuple[int, int], ...] = ()  # (tgid, fd), sorted; from the kernel
    ucounts: int = 0
    user_ns: int = 0
    q_len: int = 0
    max_events: int = 0
    overflowed: bool = False  # q_len > max_events at the last sample
    found_ns: int = 0  # when reconciling found it without having seen its init (0: seen)
    state: GroupState | None = None  # the kernel side's counts at the last sample
    # Watches the kernel side does not count: those below its floor (plus the
    # rm_watch calls of such watches it has counted since: they cancel), and
    # those the kernel removed without a syscall (negative). From fdinfo.
    pre: int = 0
    adj: int = 0
    known: bool = True  # False until `pre` has been counted from fdinfo
    # The ring's producer position after the earliest read since which no
    # call has run on it (None: one was in flight). Every record of its calls
    # lies below it (a call is over only once its record is in the ring).
    quiet_since: int | None = 0

    @property
    def owner(self) -> int:
        """The tgid an instance is attributed to: its lowest-numbered holder."""
        return self.holders[0][0] if self.holders else 0

    @property
    def count(self) -> int:
        """Its watches now (as of the last sample)."""
        st = self.state
        if st is None:
            return self.pre + self.adj
        return self.pre - st.pre_removed + st.post + self.adj

    def settle(self, truth: dict[int, int], state: GroupState | None, calm: bool) -> None:
        """Take an fdinfo read (truth) and the state read after it: `pre` always
        (exact whatever runs: only rm_watch of an old wd moves it, and the caller
        checked none did), `adj` only when no call ran across the read."""
        floor = state.floor if state is not None else NO_FLOOR  # 0: born under the probes, all counted
        below = sum(1 for wd in truth if wd < floor)
        self.pre = below + (state.pre_removed if state is not None else 0)
        if calm:
            self.adj = len(truth) - below - (state.post if state is not None else 0)
        self.state = state
        self.known = True


@dataclass(frozen=True)
class UserCounts:
    """The kernel's own counters for one (user namespace, uid)."""

    uid: int
    user_ns: int
    instances: int
    watches: int
    max_instances: int
    max_watches: int


def _calm(a: GroupState | None, b: GroupState | None) -> bool:
    """No add_watch/rm_watch ran between two reads of an instance's state."""
    if a is None or b is None:
        return a is None and b is None
    return a.calls == b.calls and a.inflight == 0 and b.inflight == 0


def _quiet_since(old: GroupState | None, new: GroupState | None, since: int | None, mark: int) -> int | None:
    """Instance.quiet_since after a read of its state, taken with the ring's
    producer at `mark`: kept while no call has run since, else `mark`."""
    if new is None:
        return 0  # no call since the probes: no records to wait for
    if new.inflight:
        return None
    if since is not None and old is not None and (old.gen, old.calls, old.inflight) == (new.gen, new.calls, 0):
        return since
    return mark


def _pre_steady(a: GroupState | None, b: GroupState | None) -> bool:
    """No rm_watch of a pre-floor wd between two reads (the only thing that moves `pre`)."""
    return (a.pre_removed if a else 0) == (b.pre_removed if b else 0)


def _moves(a: GroupState | None, b: GroupState | None) -> int:
    """How far an instance's count can have moved between two reads of its
    state: one watch per call that ran or was in flight."""
    if a is None or b is None:
        return 0 if a is b else 1 << 30  # no state to bound it by
    return b.calls - a.calls + a.inflight + b.inflight


def _holding_the_difference(
    insts: list[Instance], users: dict[int, UserCounts], again: dict[int, GroupState | None], full: bool
) -> list[Instance]:
    """Of the instances of users whose count differs, those worth an fdinfo
    read: the calm ones (no call since this sample's read), and (unless `full`) only when the
    difference is more than the busy ones could have moved between the reads.
    The user's counter was read at another moment than each instance's state,
    so a busy instance explains a difference of up to its calls; reading its
    quiet siblings then (a 100k-line fdinfo each, at every sample of a burst
    of 10 watchers) finds nothing. A kernel removal on a quiet instance makes a
    difference no busy sibling explains for long."""
    by_user: dict[int, list[Instance]] = {}
    for inst in insts:
        by_user.setdefault(inst.ucounts, []).append(inst)
    out: list[Instance] = []
    for uc, group in by_user.items():
        calm = [i for i in group if _calm(i.state, again.get(i.group))]
        slack = sum(_moves(i.state, again.get(i.group)) for i in group if i not in calm)
        if calm and (full or abs(users[uc].watches - sum(i.count for i in group)) > slack):
            out.extend(calm)
        elif log.isEnabledFor(logging.DEBUG):
            # why a difference is left for a later sample: the next failure of
            # "the kernel removed a watch and nothing noticed" says which
            log.debug(
                "uid %d differs (kernel %d, model %d), not read: %d of %d instances calm, busy ones explain %d",
                users[uc].uid,
                users[uc].watches,
                sum(i.count for i in group),
                len(calm),
                len(group),
                slack,
            )
    return out


MAX_PEAKS = 1024  # users whose peak use is remembered (see Accounting._note_peaks)

PerOwner = dict[tuple[int, int], list[int]]  # (tgid, uid) -> [instances, watches, deepest queue]


class Accounting:
    def __init__(self, max_instances: int = 1 << 20) -> None:
        self.instances: dict[int, Instance] = {}
        self.users: dict[int, UserCounts] = {}  # by ucounts pointer
        self.corrections: Counter[str] = Counter()
        self.drift = {"instances": 0, "watches": 0}
        self.max_instances = max_instances
        self.overflow = 0  # instances not tracked because of max_instances
        self.events: list[LifetimeEvent] = []  # found by reconciling; drained by take_events()
        self.overflows: Counter[tuple[bytes, int]] = Counter()  # (owner comm, uid) -> queue overflow episodes
        self.destroyed: list[tuple[int, int | None]] = []  # (group, state gen) found gone: state can go
        self.peaks: dict[tuple[int, int], tuple[int, int]] = {}  # (user_ns, uid) -> (instances, watches)
        self._now_ns = 0
        self._applied = 0  # ring position up to which every record has been applied (see reconcile)

    # -- events --------------------------------------------------------------

    def _new(self, group: int, uid: int, known: bool, found_ns: int = 0) -> Instance | None:
        if len(self.instances) >= self.max_instances:
            self.overflow += 1
            return None
        inst = self.instances[group] = Instance(group, uid, known=known, found_ns=found_ns)
        return inst

    def _end(self, inst: Instance, ts_ns: int) -> None:
        # never sampled (born and gone between two samples): what its records said
        watches = inst.count if inst.state is not None or not inst.known else len(inst.watches)
        self.events.append(
            LifetimeEvent(Lifetime.INSTANCE_DESTROYED, ts_ns, inst.group, inst.owner, inst.uid, watches=watches)
        )

    def apply(self, call: InotifyCall) -> None:
        """A record: instances born, and the wd -> mask detail. Counts do not
        depend on it (they come from the kernel side at the next sample)."""
        if not call.ok or not call.group:
            return
        if call.syscall in (Syscall.INOTIFY_INIT, Syscall.INOTIFY_INIT1):
            old = self.instances.get(call.group)
            if old is not None and old.found_ns and call.ts_ns <= old.found_ns:
                return  # the kernel state read after this init already holds it
            if old is not None:
                # A dead instance's group memory reused before a sample saw it go.
                del self.instances[call.group]
                self._end(old, call.ts_ns)
            # born under the probes: the kernel side counts all its watches
            inst = self._new(call.group, call.euid, known=True)
            if inst is not None:
                # until the kernel's fd tables are read: the creator holds it
                inst.holders = ((call.tgid, int(call.ret)),)
            return
        inst = self.instances.get(call.group)
        if inst is None:
            return  # not seen yet: the next sample finds it
        if call.syscall == Syscall.INOTIFY_ADD_WATCH:
            inst.watches[int(call.ret)] = call.mask  # an existing wd: a modification
        elif call.syscall == Syscall.INOTIFY_RM_WATCH:
            inst.watches.pop(call.wd, None)

    def name_events(self, named: Callable[[LifetimeEvent], LifetimeEvent]) -> None:
        """Let the caller name the owners of pending events (while their
        processes can still be read: the model knows pids, not names)."""
        self.events = [named(ev) for ev in self.events]

    def take_events(self) -> list[LifetimeEvent]:
        """The pending lifetime events, oldest first; each queue overflow is
        counted by its owner's comm (named by then) and uid."""
        events, self.events = self.events, []
        for ev in events:
            if ev.kind is Lifetime.QUEUE_OVERFLOW:
                self.overflows[ev.comm, ev.uid] += 1
        return events

    # -- queries -------------------------------------------------------------

    def per_owner(self) -> PerOwner:
        """Each instance once, for its owner (the lowest-numbered holder): the
        one aggregation behind the per-comm and per-process gauges and limit hits."""
        out: PerOwner = {}
        for inst in self.instances.values():
            if not inst.holders:
                continue
            row = out.setdefault((inst.owner, inst.uid), [0, 0, 0])
            row[0] += 1
            row[1] += inst.count
            row[2] = max(row[2], inst.q_len)
        return out

    def top_holders(self, uid: int, by: str, n: int = 5) -> tuple[Holder, ...]:
        """The processes holding most of a user's instances or watches (by="instances"|"watches")."""
        per = {tgid: v for (tgid, u), v in self.per_owner().items() if u == uid}
        key = 1 if by == "watches" else 0
        ranked = sorted(per.items(), key=lambda kv: (-kv[1][key], -kv[1][1 - key], kv[0]))[:n]
        return tuple(Holder(pid, v[0], v[1]) for pid, v in ranked)

    def user(self, uid: int) -> UserCounts | None:
        """The kernel's counters for uid (in any user namespace), as of the last reconcile."""
        return next((u for u in self.users.values() if u.uid == uid), None)

    def used(self, uid: int, resource: str) -> int:
        mine = [i for i in self.instances.values() if i.uid == uid]
        return len(mine) if resource == "instances" else sum(i.count for i in mine)

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

    def _take_state(self, inst: Instance, state: GroupState | None, now_ns: int) -> Instance | None:
        """The kernel side's entry for a known instance; a new gen means a new
        lifetime (made at init: floor 0) or an entry made again (floor > 0)."""
        old = inst.state
        if old is not None and state is not None and state.gen != old.gen:
            if state.floor == 0:
                # destroyed and created again at the same address between two samples
                del self.instances[inst.group]
                self._end(inst, now_ns)
                fresh = self._new(inst.group, inst.uid, known=True, found_ns=now_ns)
                if fresh is None:
                    return None
                inst = fresh
            else:
                inst.known = False  # the entry was lost and made again: count from fdinfo
        elif old is None and state is not None and state.floor and inst.known and not inst.pre and not inst.found_ns:
            inst.known = False  # born under the probes, yet its state was made by a call: lost at init
        inst.state = state
        return inst

    def _ingest(self, files: Iterable[InstanceFile], now_ns: int, mark: int) -> None:
        holders: dict[int, list[tuple[int, int]]] = {}
        facts: dict[int, InstanceFile] = {}
        users: dict[int, UserCounts] = {}
        for f in files:
            holders.setdefault(f.group, []).append((f.tgid, f.fd))
            facts[f.group] = f
            users[f.ucounts] = UserCounts(
                f.uid, f.user_ns, f.ucount_instances, f.ucount_watches, f.max_instances, f.max_watches
            )
        self.users = users
        self._note_peaks()
        for group in sorted(self.instances.keys() - holders.keys()):
            gone = self.instances.pop(group)
            self._end(gone, now_ns)  # its last fd was closed: destroyed
            self.destroyed.append((group, gone.state.gen if gone.state else None))
        for group, held in holders.items():
            f = facts[group]
            inst: Instance | None = self.instances.get(group)
            if inst is None:
                # not seen born: counted from the state alone if the kernel side saw its init
                born = f.state is not None and f.state.floor == 0
                inst = self._new(group, f.uid, known=born, found_ns=now_ns)
                if inst is None:
                    continue
                inst.state = f.state
                inst.quiet_since = _quiet_since(None, f.state, None, mark)
            else:
                old = inst.state
                inst = self._take_state(inst, f.state, now_ns)
                if inst is None:
                    continue
                inst.quiet_since = _quiet_since(old, f.state, inst.quiet_since, mark)
            inst.holders = tuple(sorted(held))
            inst.uid, inst.ucounts, inst.user_ns = f.uid, f.ucounts, f.user_ns
            inst.q_len, inst.max_events = f.q_len, f.max_events
            self._sample_queue(inst)

    def _note_peaks(self) -> None:
        """The highest kernel counts of each user seen at a sample, kept after the
        user has gone (what `snapshot --advise` sizes the limits from). Bounded: a
        hostile process can make users in new namespaces; the smallest peaks of
        users not present now go first."""
        now = {(u.user_ns, u.uid): u for u in self.users.values()}
        for key, u in now.items():
            inst, watches = self.peaks.get(key, (0, 0))
            self.peaks[key] = (max(inst, u.instances), max(watches, u.watches))
        excess = len(self.peaks) - MAX_PEAKS
        if excess > 0:
            gone = sorted((k for k in self.peaks if k not in now), key=lambda k: self.peaks[k][::-1])
            for key in gone[:excess]:
                del self.peaks[key]

    def _by_user(self) -> dict[int, list[Instance]]:
        by_user: dict[int, list[Instance]] = {}
        for inst in self.instances.values():
            by_user.setdefault(inst.ucounts, []).append(inst)
        return by_user

    def _differing(self, full: bool) -> list[Instance]:
        """Known instances of users whose count differs from the kernel's (all with `full`)."""
        out: list[Instance] = []
        for uc, insts in self._by_user().items():
            kernel = self.users.get(uc)
            if kernel is None or not all(i.known for i in insts):
                log.debug(
                    "uid %d not compared: %d instances not yet counted",
                    kernel.uid if kernel else -1,
                    sum(not i.known for i in insts),
                )
                continue
            if full or sum(i.count for i in insts) != kernel.watches:
                out.extend(insts)
        return out

    def _read_and_settle(self, insts: list[Instance], read: WatchReader, kernel: KernelReader, seeding: bool) -> None:
        """fdinfo of `insts`, then the kernel state again: settle each one whose
        read the calls allow (see Instance.settle); count what changed."""
        before = {i.group: i.state for i in insts}
        truths = read([i.holders for i in insts])
        after = {f.group: f.state for f in kernel()}
        for inst, truth in zip(insts, truths, strict=True):
            if truth is None or inst.group not in after or self.instances.get(inst.group) is not inst:
                continue
            a, b = before[inst.group], after[inst.group]
            calm = _calm(a, b)
            if not _pre_steady(a, b) or (inst.known and not calm):
                log.debug(
                    "pid %d uid %d not settled: a call ran during the read (%s -> %s)", inst.owner, inst.uid, a, b
                )
                continue  # a call moved it during the read: next sample
            if inst.known and not seeding and not self._records_in(inst):
                # a call's record is still in the ring: settled with it, the
                # wds the kernel removed would go unnamed (or a wd its own
                # rm_watch removed would be named): the next sample does it
                log.debug("pid %d uid %d not settled: records of its calls not yet taken", inst.owner, inst.uid)
                continue
            was_known, old = inst.known, inst.count
            if not was_known and not seeding and not (b is not None and b.floor == 0):
                self.corrections["instance_missed"] += 1  # the kernel side did not see it born
                log.debug("correction instance_missed: pid %d uid %d, state %s -> %s", inst.owner, inst.uid, a, b)
            inst.settle(truth, b, calm)
            if was_known:
                self._count(inst, old, truth)
            inst.watches = truth

    def _records_in(self, inst: Instance) -> bool:
        """Has the model applied every record of the instance's calls so far?"""
        return inst.quiet_since is not None and inst.quiet_since <= self._applied

    def _count(self, inst: Instance, old: int, truth: dict[int, int]) -> None:
        diff = inst.count - old
        if diff < 0:
            self.corrections["watch_removed_by_kernel"] -= diff
        elif diff > 0:
            self.corrections["watch_missed"] += diff
            # the event path should never need this: say enough to find out why
            log.debug(
                "correction watch_missed: %d on pid %d uid %d, model wds %s, kernel wds %s, state %s",
                diff,
                inst.owner,
                inst.uid,
                sorted(inst.watches),
                sorted(truth),
                inst.state,
            )
        self.events.extend(
            LifetimeEvent(Lifetime.WATCH_REMOVED, self._now_ns, inst.group, inst.owner, inst.uid, wd, inst.watches[wd])
            for wd in sorted(inst.watches.keys() - truth.keys())
        )

    def reconcile(
        self,
        files: list[InstanceFile],
        read: WatchReader,
        kernel: KernelReader,
        *,
        full: bool = False,
        seeding: bool = False,
        now_ns: int = 0,
        ring: tuple[int, int] = (0, 0),
    ) -> None:
        """Bring the model in line with the kernel (see the module docstring).

        files: the iterator's read for this sample; kernel: reads it again
        (around an fdinfo read, to know whether any call ran meanwhile).
        full: re-read every quiet instance's watches, not only those of users
        whose counts differ. seeding: the first reconcile; what it finds is
        not a correction. now_ns: the time stamped on the events this finds.
        ring: the ring's producer position read just after `files`, and the
        position up to which every record has been applied to this model.
        """
        self._now_ns = now_ns
        mark, self._applied = ring
        self._ingest(files, now_ns, mark)
        unknown = [i for i in self.instances.values() if not i.known]
        differing = self._differing(full)
        if differing and not seeding:
            # a count differs with nothing in flight: look again before reading
            # fdinfo, so a call that ran between two files of this read is not it
            again = {f.group: f.state for f in kernel()}
            differing = _holding_the_difference(differing, self.users, again, full)
        if unknown or differing:
            self._read_and_settle(unknown + differing, read, kernel, seeding)
        self._drift()

    def _drift(self) -> None:
        by_user = self._by_user()
        self.drift = {
            "instances": sum(abs(k.instances - len(by_user.get(uc, ()))) for uc, k in self.users.items()),
            "watches": sum(abs(k.watches - sum(i.count for i in by_user.get(uc, ()))) for uc, k in self.users.items()),
        }
