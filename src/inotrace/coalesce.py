"""Callers that arrive together share one run of the same work.

The rule (one place for it): a caller may take the result of a run that
started after it arrived, since that run saw everything the caller could ask
about; otherwise it waits for the run in progress and then does the work
itself, or takes the result of whoever started the next one first. A storm of
N callers costs about two runs, not N, and no caller gets a result older than
its arrival.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar, cast

T = TypeVar("T")


class Coalesced(Generic[T]):
    def __init__(self, work: Callable[[], T]) -> None:
        self._work = work
        self._lock = threading.Lock()
        self._started = -1  # monotonic ns of the last run's start
        self._result: T | None = None

    def __call__(self) -> T:
        arrived = time.monotonic_ns()
        with self._lock:
            if self._started >= arrived:
                return cast(T, self._result)  # set by that run
            self._started = -1  # a run that raises leaves nothing to share
            started = time.monotonic_ns()
            self._result = self._work()
            self._started = started
            return self._result
