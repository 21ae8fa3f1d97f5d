"""The running tracer: BPF program + decoding + self-test, feeding sinks."""

from __future__ import annotations

import errno
import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from . import proc, selftest
from .accounting import Accounting
from .bpf_program import Program
from .coalesce import Coalesced
from .derived import LifetimeEvent, LimitFailure, LimitHit, RecordsLost
from .errors import InotraceError
from .names import errno_name
from .records import DecodeError, InotifyCall, InstanceFile, LostReason, OpenCall, Syscall, decode_any, decode_instances
from .untrusted import comm_text

log = logging.getLogger(__name__)

Record = InotifyCall | OpenCall | LimitFailure | LifetimeEvent | RecordsLost
Sink = Callable[[Record], None]

# errno -> the per-user limit it can mean (EMFILE is also RLIMIT_NOFILE: the
# record's used/limit tell the two apart).
LIMIT_ERRNOS = {errno.ENOSPC: "watches", errno.EMFILE: "instances"}
TOP_HOLDERS = 5
# A limit failure samples the kernel first (at most this often): holders that
# exited since the last sample would otherwise still count in `used` and
# top_holders. Rate-limited because a client retrying at its limit can fail
# thousands of times a second.
LIMIT_SAMPLE_S = 0.1

SELFTEST_TIMEOUT_S = 5.0
NOBODY = 65534
# Losses that leave a gap in the audit stream (said there as records_lost).
GAP_REASONS = (LostReason.RINGBUF, LostReason.INFLIGHT)
# How often the kernel side's per-instance state is swept of dead instances
# (those gone between two samples, never seen by one).
SWEEP_S = 10.0
# Records taken per ring drain at most (~10 ms of work), and how often the
# kernel's loss counters are looked at for records_lost (each look is a few
# map reads).
DRAIN_BATCH = 8192
GAP_CHECK_S = 0.05


def user_ns_inode(procfs: str) -> int:
    try:
        link = os.readlink(f"{procfs}/self/ns/user")  # "user:[4026531837]"
        return int(link[link.index("[") + 1 : -1])
    except (OSError, ValueError):
        return 0


class Tracer:
    """Owns the ring buffer (main thread only) and the live accounting model.

    The ring is drained by the main loop only. A scrape does not need it
    drained: the counts come from the kernel side, so it samples the kernel
    itself (refresh()), sharing samples with scrapes that arrive together.
    """

    def __init__(
        self,
        program: Program,
        *,
        procfs: str = "/proc",
        reconcile_interval: float = 0,
        max_instances: int = 1 << 20,
        sample_interval: float = 1.0,
    ) -> None:
        """Every sample_interval the model is compared with the kernel (cheap:
        one iterator run; fdinfo only for users whose counts differ), which
        is when instance ends, kernel-removed watches and queue overflows
        are found; every reconcile_interval all watches are re-read.
        """
        self.maps = program.maps  # what the tracer reads
        self.probes = program.probes  # what attached, for the exporter's own metrics
        self.procfs = procfs
        self.records = 0
        self.invalid = 0
        self._backlog: list[InotifyCall | OpenCall] = []
        self.accounting = Accounting(max_instances)
        self.lock = threading.Lock()  # guards accounting
        self.refresh = Coalesced(self._sample)  # one sample at a time; scrapes arriving together share it
        self._reconcile_interval = reconcile_interval  # 0: never a full re-read
        self._next_full = reconcile_interval or float("inf")
        self._next_sweep = 0.0
        self._gaps: list[RecordsLost] = []
        self._gap_seen = [0] * len(GAP_REASONS)
        self._gap_checked = time.monotonic_ns()
        self._sample_interval = sample_interval
        self._next_sample = 0.0
        self.turned_at = time.monotonic()  # the main loop's last step (for /-/healthy)
        self._limit_sampled = 0.0
        self._comms: dict[int, bytes] = {}  # raw, as the process set it
        self._own_user_ns = user_ns_inode(procfs)
        self.sample_errors: dict[str, int] = {}  # errno name or "undecodable" -> failed samples
        self._pool = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="fdinfo")
        self.maps.open_ring()

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def _drain(self, timeout_ms: int) -> list[InotifyCall | OpenCall]:
        raw = self.maps.poll(timeout_ms, DRAIN_BATCH)
        calls: list[InotifyCall | OpenCall] = []
        for data in raw:
            self.records += 1
            try:
                calls.append(decode_any(data))
            except DecodeError as e:
                self.invalid += 1
                log.warning("undecodable ring buffer record: %s", e)
        return calls

    def poll(self, timeout_ms: int, final: bool = False) -> list[Record]:
        """Main loop step: new calls (applied to the model), then what sampling
        found. `final`: the last steps before detaching (every loss said)."""
        self.turned_at = time.monotonic()
        calls = self._backlog + self._drain(timeout_ms)
        self._backlog = []
        self._check_gaps(force=final)
        with self.lock:
            applied = self._apply(calls)
        now = time.monotonic()
        if now >= self._next_sample or now >= self._next_full:
            self.refresh()
        with self.lock:
            events: list[Record] = [*self._gaps, *self._take_events()]
            self._gaps = []
        return [*applied, *events]

    def _check_gaps(self, force: bool = False) -> None:
        """A records_lost record for each new loss, where the stream has the gap."""
        now = time.monotonic_ns()
        if not force and now - self._gap_checked < GAP_CHECK_S * 1e9:
            return
        for i, (reason, n) in enumerate(zip(GAP_REASONS, self.maps.read_lost(GAP_REASONS), strict=True)):
            if n > self._gap_seen[i]:
                self._gaps.append(RecordsLost(now, self._gap_checked, n - self._gap_seen[i], reason.label))
                self._gap_seen[i] = n
        self._gap_checked = now

    def _sample(self) -> None:
        """Compare the model with the kernel now (as `refresh()`: the main loop
        and each scrape, sharing with callers that arrive together)."""
        with self.lock:
            self._guarded_reconcile(full=time.monotonic() >= self._next_full)

    def _guarded_reconcile(self, full: bool = False) -> None:
        """A sample that fails (the iterator's read, output it cannot decode)
        is counted by kind and logged the first time; the model waits for the
        next sample, one interval later, and serving goes on."""
        try:
            self._reconcile(full=full)
        except (OSError, DecodeError) as e:
            kind = errno_name(e.errno or 0) if isinstance(e, OSError) else "undecodable"
            self.sample_errors[kind] = self.sample_errors.get(kind, 0) + 1
            if self.sample_errors[kind] == 1:
                log.warning("sampling the kernel's inotify state failed (%s): %s; retrying each interval", kind, e)
            now = time.monotonic()
            self._next_sample = now + self._sample_interval
            if full and self._reconcile_interval:
                self._next_full = now + self._reconcile_interval

    def _apply(self, calls: list[InotifyCall | OpenCall]) -> list[InotifyCall | OpenCall | LimitFailure]:
        """Apply calls in order; a limit failure comes with the model's state at
        that point, sampled from the kernel first (see LIMIT_SAMPLE_S)."""
        out: list[InotifyCall | OpenCall | LimitFailure] = []
        hits: dict[tuple[str, int], LimitHit] = {}  # a storm of failures: one look per user per batch
        for call in calls:
            if isinstance(call, OpenCall):
                out.append(call)
                continue
            self.accounting.apply(call)
            resource = LIMIT_ERRNOS.get(call.errno)
            if resource and (call.syscall == Syscall.INOTIFY_ADD_WATCH) == (resource == "watches"):
                key = (resource, call.euid)
                if key not in hits:
                    now = time.monotonic()
                    if now - self._limit_sampled >= LIMIT_SAMPLE_S:
                        self._limit_sampled = now
                        self._guarded_reconcile()  # under self.lock, as every sample
                    hits[key] = self._limit_hit(resource, call.euid)
                out.append(LimitFailure(call, hits[key]))
                continue
            if call.ok:
                hits.clear()
            out.append(call)
        return out

    def _limit_hit(self, resource: str, uid: int) -> LimitHit:
        acc = self.accounting
        used = acc.used(uid, resource)
        kernel = acc.user(uid)
        if kernel is None or kernel.user_ns == self._own_user_ns:
            # the sysctl now: the kernel's copy is as old as the last sample
            limit = proc.read_inotify_limits(self.procfs)[f"max_user_{resource}"] or -1
        else:
            limit = kernel.max_instances if resource == "instances" else kernel.max_watches
        top = tuple(replace(h, comm=self._comm_raw(h.pid)) for h in acc.top_holders(uid, resource, TOP_HOLDERS))
        return LimitHit(resource, uid, used, limit, top)

    def _take_events(self) -> list[LifetimeEvent]:
        """The model's lifetime events, their owners named."""
        self.accounting.name_events(self._named)
        return self.accounting.take_events()

    def _read_watches(self, instances: list[tuple[tuple[int, int], ...]]) -> list[dict[int, int] | None]:
        # The kernel formats fdinfo (a file handle per watch) with the GIL
        # released: a few threads overlap that work on several CPUs.
        read_one = functools.partial(proc.read_first, self.procfs)
        if len(instances) < 8:
            return [read_one(h) for h in instances]
        return list(self._pool.map(read_one, instances))

    def _kernel(self) -> list[InstanceFile]:
        return decode_instances(self.maps.read_instances())

    def _reconcile(self, full: bool = False, seeding: bool = False) -> None:
        files = self._kernel()
        # Stamped after the kernel read: an init record older than this, still
        # in flight, describes an instance this read already found.
        now_ns = time.monotonic_ns()
        acc = self.accounting
        acc.reconcile(files, self._read_watches, self._kernel, full=full, seeding=seeding, now_ns=now_ns)
        if full and self._reconcile_interval:
            self._next_full = now_ns / 1e9 + self._reconcile_interval
        self._next_sample = now_ns / 1e9 + self._sample_interval
        self._forget_dead(now_ns / 1e9)
        # Name the owners of what this found before forgetting exited ones.
        acc.name_events(self._named)
        if full:
            self._comms.clear()  # exec changes a process's comm; re-read them
        owners = {inst.owner for inst in acc.instances.values()}
        for tgid in self._comms.keys() - owners:
            del self._comms[tgid]

    def _forget_dead(self, now: float) -> None:
        """Drop the kernel side's state of destroyed instances (a live one
        at a reused address is spared: init gave it a new gen)."""
        acc = self.accounting
        for group, gen in acc.destroyed:
            self.maps.forget_group(group, gen)
        acc.destroyed = []
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_S
            live = acc.instances.keys()
            self.maps.sweep_groups(lambda group: group in live)

    def _named(self, ev: LifetimeEvent) -> LifetimeEvent:
        return replace(ev, comm=self._comm_raw(ev.pid)) if ev.pid and not ev.comm else ev

    def seed(self) -> None:
        """Probes are attached: take the kernel's state, then follow events."""
        with self.lock:
            self._reconcile(full=True, seeding=True)
        self.turned_at = time.monotonic()  # a long seed is not a stalled loop

    def self_test(self) -> None:
        """Refuse to run if BPF's reads of our own task disagree with /proc."""
        try:
            probe = selftest.Probe.run()
        except OSError as e:
            if e.errno != errno.EMFILE or os.geteuid() != 0:
                raise InotraceError(f"start-up self-test cannot create an inotify instance: {e.strerror}") from e
            log.warning("uid 0 is at its inotify instance limit; self-test instances charged to uid %d", NOBODY)
            try:
                probe = selftest.Probe.run(as_euid=NOBODY)
            except OSError as e2:
                raise InotraceError(
                    "start-up self-test cannot create an inotify instance: uid 0 and uid "
                    f"{NOBODY} are at their limit (raise fs.inotify.max_user_instances): {e2.strerror}"
                ) from e2
        try:
            exp = probe.expected
            mine: list[InotifyCall] = []
            deadline = time.monotonic() + SELFTEST_TIMEOUT_S
            while not selftest.complete(mine) and time.monotonic() < deadline:
                for call in self._drain(50):
                    if isinstance(call, InotifyCall) and selftest.mine(call, exp):
                        mine.append(call)
                    else:
                        self._backlog.append(call)
        finally:
            probe.close()
        problems = selftest.check(mine, exp)
        if problems:
            hint = " (inotrace must run in the host PID namespace)" if any("pid" in p for p in problems) else ""
            raise InotraceError(
                "start-up self-test failed, kernel struct offsets are wrong: " + "; ".join(problems) + hint
            )
        log.info("self-test passed: BPF reads of pid/ppid/uid/euid/comm/instance match /proc")

    def comm_of(self, tgid: int) -> str:
        """The escaped comm of a process the model holds (cached until it exits)."""
        return comm_text(self._comm_raw(tgid))

    def _comm_raw(self, tgid: int) -> bytes:
        comm = self._comms.get(tgid)
        if comm is None:
            comm = self._comms[tgid] = proc.read_comm(self.procfs, tgid) or b""
        return comm
