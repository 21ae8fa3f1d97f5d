"""The start-up self-test's judgement, on synthetic records."""

from __future__ import annotations

from dataclasses import replace

from factories import make_call
from inotrace import selftest
from inotrace.records import InotifyCall, Syscall

EXP = selftest.Expected(pid=100, tid=100, ppid=1, uid=0, euid=0, comm=b"inotrace", fd_a=3, fd_b=4, fd_a_dup=5)


def rec(syscall: Syscall, ret: int, fd: int, group: int) -> InotifyCall:
    return make_call(syscall=syscall, tgid=100, tid=100, comm=b"inotrace", ret=ret, fd=fd, group=group)


GOOD = [
    rec(Syscall.INOTIFY_INIT1, 3, -1, 0xA0),
    rec(Syscall.INOTIFY_INIT1, 4, -1, 0xB0),
    rec(Syscall.INOTIFY_ADD_WATCH, 1, 5, 0xA0),
]


def test_good_records_pass() -> None:
    assert selftest.complete(GOOD)
    assert selftest.check(GOOD, EXP) == []


def test_wrong_reads_are_caught() -> None:
    bad_ppid = [replace(c, ppid=4242) for c in GOOD]
    assert any("ppid" in p for p in selftest.check(bad_ppid, EXP))
    bad_euid = [replace(c, euid=7) for c in GOOD]
    assert any("euid" in p for p in selftest.check(bad_euid, EXP))
    same_group = [GOOD[0], replace(GOOD[1], group=0xA0), GOOD[2]]
    assert any("same group" in p for p in selftest.check(same_group, EXP))
    dup_differs = [GOOD[0], GOOD[1], replace(GOOD[2], group=0xC0)]
    assert any("dup" in p for p in selftest.check(dup_differs, EXP))
    null = [replace(c, group=0) for c in GOOD]
    assert any("null" in p for p in selftest.check(null, EXP))


def test_missing_records_fail() -> None:
    assert not selftest.complete(GOOD[:2])
    assert selftest.check(GOOD[:2], EXP) == ["saw 2 of the 3 self-test calls"]


def test_mine_selects_own_thread() -> None:
    assert selftest.mine(GOOD[0], EXP)
    assert not selftest.mine(replace(GOOD[0], tid=101), EXP)
    assert not selftest.mine(replace(GOOD[0], ret=-24), EXP)
