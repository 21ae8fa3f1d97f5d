"""Bounded label values: a hostile process must not blow up the series count."""

from __future__ import annotations

import threading
from collections.abc import Iterable

OTHER = "other"


class LabelCap:
    """Keeps at most `cap` distinct values of a label; the rest become `other`.

    A value admitted once keeps its own series for the life of the exporter,
    so every counter series stays monotonic (a value moving into `other` and
    back would make both series jump). Among values first seen in the same
    scrape, the heaviest are admitted first.
    """

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._kept: set[str] = set()
        self._lock = threading.Lock()

    def admit(self, weighted: Iterable[tuple[str, int]]) -> None:
        with self._lock:
            fresh: dict[str, int] = {}
            for value, weight in weighted:
                if value not in self._kept:
                    fresh[value] = fresh.get(value, 0) + weight
            for value, _ in sorted(fresh.items(), key=lambda kv: (-kv[1], kv[0])):
                if len(self._kept) >= self.cap:
                    break
                self._kept.add(value)

    def label(self, value: str) -> str:
        return value if value in self._kept else OTHER

    @property
    def folded(self) -> bool:
        return len(self._kept) >= self.cap
