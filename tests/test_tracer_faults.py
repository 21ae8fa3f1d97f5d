"""The tracer when sampling the kernel fails: counted, logged once, never raised
into the main loop (synthetic program: the faults cannot be made on demand)."""

from __future__ import annotations

import errno
import logging
from types import SimpleNamespace

import pytest

from inotrace.tracer import Tracer


class FailingMaps:
    """Just what Tracer reads of a Program's maps; read_instances fails as told."""

    def __init__(self, outcomes: list[bytes | OSError]) -> None:
        self.outcomes = outcomes
        self.reads = 0

    def open_ring(self) -> None:
        pass

    def poll(self, _timeout_ms: int, _limit: int) -> list[bytes]:
        return []

    def ring_reserved(self) -> int:
        return 0

    def ring_consumed(self) -> int:
        return 0

    def read_lost(self, reasons: tuple[object, ...]) -> list[int]:
        return [0] * len(reasons)

    def read_instances(self) -> bytes:
        self.reads += 1
        got = self.outcomes.pop(0) if self.outcomes else b""
        if isinstance(got, OSError):
            raise got
        return got

    def forget_group(self, _group: int, _gen: int) -> None:
        pass

    def sweep_groups(self, _live: object) -> None:
        pass


def test_failed_samples_are_counted_logged_once_and_retried_an_interval_later(caplog: pytest.LogCaptureFixture) -> None:
    eio = OSError(errno.EIO, "Input/output error")
    maps = FailingMaps([eio, eio, b"\x01\x02\x03", b""])
    program = SimpleNamespace(maps=maps, probes=[], program_fds=dict)
    tracer = Tracer(program, sample_interval=3600)  # type: ignore[arg-type]
    try:
        with caplog.at_level(logging.WARNING, logger="inotrace.tracer"):
            assert tracer.poll(0) == []  # the first sample fails: no exception reaches the loop
            assert tracer.poll(0) == []  # and it is not retried at once (a tight loop of errors)
            assert (maps.reads, tracer.sample_errors) == (1, {"EIO": 1})
            tracer.refresh()  # a scrape samples on its own
            tracer.refresh()  # output the iterator never makes
            tracer.refresh()
        assert maps.reads == 4
        assert tracer.sample_errors == {"EIO": 2, "undecodable": 1}
        warnings = [r.getMessage() for r in caplog.records]
        assert len(warnings) == 2 and "(EIO)" in warnings[0] and "(undecodable)" in warnings[1], warnings
    finally:
        tracer.close()
