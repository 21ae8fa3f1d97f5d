"""Bounded label values: a hostile process must not blow up the series count,
nor take the slots for good.

A process can set its comm to anything, as often as it likes (prctl), so
`comm` is capped: at most `cap` values have their own series and the rest are
folded into `other`. Which values are kept follows activity. A kept value that
has gone quiet gives its slot to a busier newcomer, so a process that cycled
through a thousand names at start-up cannot push every later comm into `other`.

Counters must stay monotonic through those changes. The kernel's counters are
per comm and only grow; CounterFold credits each one's increase since the last
scrape to the series its comm maps to now. An evicted comm's series ends and
its value moves into `other`, which only grows, so the sum of all series is
the kernel's total. Under a cap for counters an evicted comm stays in `other`
(a series that came back would restart below its old value); a cap for gauges
lets it back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

OTHER = "other"
# Activity scores halve in this time: a comm quiet for a few minutes yields
# its slot to a newcomer that is busier.
HALF_LIFE_S = 120.0
# A newcomer takes a slot only from a kept value less than half as active, so
# two comms of about the same rate never swap back and forth.
HYSTERESIS = 2.0
# Scores are kept for this many values per slot beyond the kept ones, the
# most active (a name used once and never again need not be remembered), and
# evicted values are remembered as such for this many per slot, the latest.
# One forgotten and admitted again starts its series from 0, which PromQL
# reads as a counter reset.
TRACKED_PER_SLOT = 4
EVICTED_PER_SLOT = 16


class LabelCap:
    """At most `cap` values of a label are kept; the rest read as `other`."""

    def __init__(self, cap: int, *, readmit: bool, clock: Callable[[], float] = time.monotonic) -> None:
        self.cap = cap
        self._readmit = readmit
        self._clock = clock
        self._kept: set[str] = set()
        self._score: dict[str, float] = {}
        self._evicted: dict[str, None] = {}  # ordered: the oldest first
        self._at = clock()
        self._lock = threading.Lock()

    def admit(self, activity: Iterable[tuple[str, float]]) -> list[str]:
        """What each value did since the last call (a counter's increase, or
        what a gauge holds); the most active then take the free slots and
        those of quiet values. Returns the values this evicted."""
        with self._lock:
            now = self._clock()
            decay = 0.5 ** ((now - self._at) / HALF_LIFE_S)
            self._at = now
            score = self._score
            for value in score:
                score[value] *= decay
            for value, weight in activity:
                score[value] = score.get(value, 0.0) + weight
            evicted = self._rebalance()
            self._forget()
            return evicted

    def _rank(self, value: str) -> tuple[float, str]:
        return self._score.get(value, 0.0), value  # ties broken by name: stable output

    def _rebalance(self) -> list[str]:
        score, kept = self._score, self._kept
        waiting = sorted(
            (v for v, s in score.items() if s > 0 and v not in kept and v not in self._evicted),
            key=self._rank,
            reverse=True,
        )
        free = max(self.cap - len(kept), 0)
        kept.update(waiting[:free])
        evicted: list[str] = []
        for value, victim in zip(waiting[free:], sorted(kept, key=self._rank), strict=False):
            if score[value] <= HYSTERESIS * score.get(victim, 0.0):
                break
            kept.discard(victim)
            kept.add(value)
            evicted.append(victim)
            if not self._readmit:
                self._evicted[victim] = None
        return evicted

    def _forget(self) -> None:
        if len(self._score) > (TRACKED_PER_SLOT + 1) * self.cap:
            rest = sorted((v for v in self._score if v not in self._kept), key=self._rank, reverse=True)
            for value in rest[TRACKED_PER_SLOT * self.cap :]:
                del self._score[value]
        while len(self._evicted) > EVICTED_PER_SLOT * self.cap:
            del self._evicted[next(iter(self._evicted))]

    def label(self, value: str) -> str:
        return value if value in self._kept else OTHER


class CounterFold:
    """Counter series whose first label is a comm capped by its own LabelCap.

    fold() takes the kernel's counters, each with its comm and the series'
    other labels (rows with the same ones are summed). Maps are never
    cleared, so a counter only grows: a smaller reading is an older one (a
    scrape that read the map before a concurrent one) and adds nothing.
    """

    def __init__(self, cap: int) -> None:
        self.cap = LabelCap(cap, readmit=False)
        self._last: dict[tuple[str, tuple[str, ...]], float] = {}
        self._series: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()

    def fold(self, rows: Iterable[tuple[str, tuple[str, ...], float]]) -> dict[tuple[str, ...], float]:
        """rows: (comm, other labels, value); returns (comm label, *other labels) -> value."""
        now: dict[tuple[str, tuple[str, ...]], float] = {}
        for comm, rest, value in rows:
            now[comm, rest] = now.get((comm, rest), 0.0) + value
        with self._lock:
            grown: list[tuple[str, tuple[str, ...], float]] = []
            for (comm, rest), value in now.items():
                last = self._last.get((comm, rest), 0.0)
                if value > last:
                    self._last[comm, rest] = value
                    grown.append((comm, rest, value - last))
            evicted = set(self.cap.admit((comm, d) for comm, _, d in grown))
            for labels in [k for k in self._series if k[0] in evicted]:
                into = (OTHER, *labels[1:])
                self._series[into] = self._series.get(into, 0.0) + self._series.pop(labels)
            for comm, rest, d in grown:
                labels = (self.cap.label(comm), *rest)
                self._series[labels] = self._series.get(labels, 0.0) + d
            return dict(self._series)
