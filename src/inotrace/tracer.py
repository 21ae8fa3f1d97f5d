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
from .derived import LifetimeEvent, LimitFailure, RecordsLost
from .drain import Drain
from .errors import InotraceError
from .limits import LimitAnnotator
from .names import errno_name
from .records import DecodeError, InotifyCall, InstanceFile, OpenCall, decode_instances
from .schedule import Schedule
from .untrusted import comm_text

log = logging.getLogger(__name__)

Record = InotifyCall | OpenCall | LimitFailure | LifetimeEvent | RecordsLost
Sink = Callable[[Record], None]

SELFTEST_TIMEOUT_S = 5.0
NOBODY = 65534


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
        self.program_fds = program.program_fds  # whose kernel cost the exporter shows
        self.procfs = procfs
        self.drain = Drain(self.maps)
        self._backlog: list[InotifyCall | OpenCall] = []
        self._applied = 0  # ring position up to which every record has been applied to the model
        self.accounting = Accounting(max_instances)
        self.lock = threading.Lock()  # guards accounting
        self.refresh = Coalesced(self._sample)  # one sample at a time; scrapes arriving together share it
        self.schedule = Schedule(sample_interval, reconcile_interval)
        self.comms = proc.CommCache(procfs)
        self._limits = LimitAnnotator(self.accounting, procfs, self._guarded_reconcile, self.comms.raw)
        self.turned_at = time.monotonic()  # the main loop's last step (for /-/healthy)
        self.sample_errors: dict[str, int] = {}  # errno name or "undecodable" -> failed samples
        self._pool = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="fdinfo")
        self.maps.open_ring()

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def poll(self, timeout_ms: int, final: bool = False) -> list[Record]:
        """Main loop step: new calls (applied to the model), then what sampling
        found. `final`: the last steps before detaching (every loss said)."""
        self.turned_at = time.monotonic()
        calls = self._backlog + self.drain.take(timeout_ms)
        taken = self.maps.ring_consumed()
        self._backlog = []
        gaps = self.drain.gaps(force=final)
        with self.lock:
            applied = self._limits.apply(calls)
            self._applied = taken
        if self.schedule.sample_due(time.monotonic()):
            self.refresh()
        with self.lock:
            self.accounting.name_events(self._named)
            events = self.accounting.take_events()
        return [*applied, *gaps, *events]

    def _sample(self) -> None:
        """Compare the model with the kernel now (as `refresh()`: the main loop
        and each scrape, sharing with callers that arrive together)."""
        with self.lock:
            self._guarded_reconcile(full=self.schedule.full_due(time.monotonic()))

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
            self.schedule.sampled(time.monotonic(), full)

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
        # Every record of a call that was over at the read lies below this.
        reserved = self.maps.ring_reserved()
        # Stamped after the kernel read: an init record older than this, still
        # in flight, describes an instance this read already found.
        now_ns = time.monotonic_ns()
        acc = self.accounting
        acc.reconcile(
            files,
            self._read_watches,
            self._kernel,
            full=full,
            seeding=seeding,
            now_ns=now_ns,
            ring=(reserved, self._applied),
        )
        self.schedule.sampled(now_ns / 1e9, full)
        self._forget_dead(now_ns / 1e9)
        # Name the owners of what this found before forgetting exited ones.
        acc.name_events(self._named)
        self.comms.keep({inst.owner for inst in acc.instances.values()}, refresh=full)

    def _forget_dead(self, now: float) -> None:
        """Drop the kernel side's state of destroyed instances (a live one
        at a reused address is spared: init gave it a new gen)."""
        acc = self.accounting
        for group, gen in acc.destroyed:
            self.maps.forget_group(group, gen)
        acc.destroyed = []
        if self.schedule.sweep_due(now):
            live = acc.instances.keys()
            self.maps.sweep_groups(lambda group: group in live)

    def _named(self, ev: LifetimeEvent) -> LifetimeEvent:
        return replace(ev, comm=self.comms.raw(ev.pid)) if ev.pid and not ev.comm else ev

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
                for call in self.drain.take(50):
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
        return comm_text(self.comms.raw(tgid))
