"""Taking records off the ring: decoded in order, counted, and each loss the
kernel side counted said as a gap (records_lost) where the stream has it."""

from __future__ import annotations

import logging
import time
from typing import Protocol

from .derived import RecordsLost
from .records import DecodeError, InotifyCall, LostReason, OpenCall, decode_any

log = logging.getLogger(__name__)

# Losses that leave a gap in the audit stream (said there as records_lost).
GAP_REASONS = (LostReason.RINGBUF, LostReason.INFLIGHT)
# Records taken per ring drain at most (~10 ms of work), and how often the
# kernel's loss counters are looked at for records_lost (each look is a few
# map reads).
DRAIN_BATCH = 8192
GAP_CHECK_S = 0.05


class Ring(Protocol):
    """What a drain reads of the program's maps (bpf_maps.Maps)."""

    def poll(self, timeout_ms: int, limit: int) -> list[bytes]: ...
    def read_lost(self, reasons: tuple[LostReason, ...]) -> list[int]: ...


class Drain:
    def __init__(self, ring: Ring) -> None:
        self._ring = ring
        self.records = 0  # taken off the ring
        self.invalid = 0  # of which undecodable
        self.opens = 0  # of which streamed opens (trace --opens)
        self._gap_seen = [0] * len(GAP_REASONS)
        self._gap_checked = time.monotonic_ns()

    def take(self, timeout_ms: int) -> list[InotifyCall | OpenCall]:
        """Up to DRAIN_BATCH records: those waiting, else what comes within timeout_ms."""
        calls: list[InotifyCall | OpenCall] = []
        for data in self._ring.poll(timeout_ms, DRAIN_BATCH):
            self.records += 1
            try:
                call = decode_any(data)
            except DecodeError as e:
                self.invalid += 1
                log.warning("undecodable ring buffer record: %s", e)
                continue
            self.opens += isinstance(call, OpenCall)
            calls.append(call)
        return calls

    def gaps(self, force: bool = False) -> list[RecordsLost]:
        """A records_lost record for each new loss (looked at every GAP_CHECK_S, or now if `force`)."""
        now = time.monotonic_ns()
        if not force and now - self._gap_checked < GAP_CHECK_S * 1e9:
            return []
        out = []
        for i, (reason, n) in enumerate(zip(GAP_REASONS, self._ring.read_lost(GAP_REASONS), strict=True)):
            if n > self._gap_seen[i]:
                out.append(RecordsLost(now, self._gap_checked, n - self._gap_seen[i], reason.label))
                self._gap_seen[i] = n
        self._gap_checked = now
        return out
