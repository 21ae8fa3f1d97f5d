"""The running tracer: BPF program + decoding + self-test, feeding sinks."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from prometheus_client.core import Metric

from . import selftest
from .bpf_program import Program
from .errors import InotraceError
from .labels import LabelCap
from .metrics import CallCount, ProbeRow, render_calls, render_self
from .records import DecodeError, InotifyCall, LostReason, decode

log = logging.getLogger(__name__)

Sink = Callable[[InotifyCall], None]

SELFTEST_TIMEOUT_S = 5.0


class Tracer:
    def __init__(self, program: Program) -> None:
        self.program = program
        self.records = 0
        self.invalid = 0
        self._raw: list[bytes] = []
        self._backlog: list[InotifyCall] = []
        program.open_ring(self._raw.append)

    def _drain(self, timeout_ms: int) -> list[InotifyCall]:
        self.program.poll(timeout_ms)
        raw, self._raw[:] = list(self._raw), []
        calls = []
        for data in raw:
            self.records += 1
            try:
                calls.append(decode(data))
            except DecodeError as e:
                self.invalid += 1
                log.warning("undecodable ring buffer record: %s", e)
        return calls

    def poll(self, timeout_ms: int) -> list[InotifyCall]:
        calls = self._backlog + self._drain(timeout_ms)
        self._backlog = []
        return calls

    def self_test(self) -> None:
        """Refuse to run if BPF's reads of our own task disagree with /proc."""
        probe = selftest.Probe.run()
        try:
            exp = probe.expected
            mine: list[InotifyCall] = []
            deadline = time.monotonic() + SELFTEST_TIMEOUT_S
            while not selftest.complete(mine) and time.monotonic() < deadline:
                for call in self._drain(50):
                    (mine if selftest.mine(call, exp) else self._backlog).append(call)
        finally:
            probe.close()
        problems = selftest.check(mine, exp)
        if problems:
            hint = " (inotrace must run in the host PID namespace)" if any("pid" in p for p in problems) else ""
            raise InotraceError(
                "start-up self-test failed, kernel struct offsets are wrong: " + "; ".join(problems) + hint
            )
        log.info("self-test passed: BPF reads of pid/ppid/uid/euid/comm/instance match /proc")

    # -- metric sources ------------------------------------------------------

    def calls_source(self, comms: LabelCap) -> Callable[[], list[Metric]]:
        def collect() -> list[Metric]:
            rows = [CallCount.from_key(k, v) for k, v in self.program.read_counts()]
            return render_calls(rows, comms)

        return collect

    def self_source(self) -> list[Metric]:
        probes = []
        for status in self.program.probes:
            for backend, err in status.tried.items():
                if status.absent:
                    continue
                probes.append(ProbeRow(status.probe, backend, err is None))
        lost = {LostReason(i).label: v for i, v in enumerate(self.program.read_lost())}
        entries = {
            name: (len(self.program.bpf[name.encode()]), self.program.map_capacity(name))
            for name in ("counts", "inflight")
        }
        return render_self(probes, lost, self.records, self.invalid, entries)
