"""Coalesced: callers that arrive together share a run, never an older one."""

from __future__ import annotations

import threading
import time

import pytest

from inotrace.coalesce import Coalesced

WAITERS = 10


def test_callers_during_a_run_share_the_next_one() -> None:
    started, release = threading.Event(), threading.Event()
    runs: list[int] = []

    def work() -> int:
        runs.append(len(runs) + 1)
        if len(runs) == 1:  # the first run is held until the waiters are queued behind it
            started.set()
            assert release.wait(10)
        return runs[-1]

    shared = Coalesced(work)
    got: dict[str, int] = {}
    first = threading.Thread(target=lambda: got.__setitem__("first", shared()))
    first.start()
    assert started.wait(10)
    calling = threading.Barrier(WAITERS + 1)

    def waiter(i: int) -> None:
        calling.wait()
        got[f"w{i}"] = shared()

    waiters = [threading.Thread(target=waiter, args=(i,)) for i in range(WAITERS)]
    for t in waiters:
        t.start()
    calling.wait()
    time.sleep(0.1)  # each waiter is past its arrival stamp, blocked on the run in progress
    release.set()
    for t in [first, *waiters]:
        t.join(10)
    # the first run started before they arrived: none of them takes it; one
    # runs again and the rest take that run
    assert runs == [1, 2]
    assert got == {"first": 1, **{f"w{i}": 2 for i in range(WAITERS)}}


def test_a_caller_after_a_run_runs_again() -> None:
    n = iter(range(1, 100))
    shared = Coalesced(lambda: next(n))
    assert [shared(), shared(), shared()] == [1, 2, 3]


def test_a_failed_run_is_not_shared() -> None:
    calls: list[int] = []

    def work() -> int:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("first run fails")
        return len(calls)

    shared = Coalesced(work)
    with pytest.raises(OSError, match="first run fails"):
        shared()
    assert shared() == 2
