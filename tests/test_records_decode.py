"""Decoding ring-buffer records from synthetic bytes."""

from __future__ import annotations

import pytest

from inotrace import records


def raw(**fields: object) -> bytes:
    r = records.InotifyRecC()
    r.kind = records.REC_INOTIFY
    r.syscall = records.Syscall.INOTIFY_ADD_WATCH
    r.backend = records.Backend.TRACEPOINT
    for k, v in fields.items():
        setattr(r, k, v)
    return bytes(r)


def test_decodes_every_field() -> None:
    call = records.decode(
        raw(
            ts_ns=5,
            group=0xFFFF888012345678,
            cgroup_id=77,
            ret=4,
            tgid=10,
            tid=11,
            ppid=1,
            uid=1000,
            euid=0,
            fd=3,
            mask=0x102,
            comm=b"node",
            path=b"/srv/a",
            rec_flags=records.F_HAS_PATH,
        )
    )
    assert call.syscall is records.Syscall.INOTIFY_ADD_WATCH
    assert (call.tgid, call.tid, call.ppid, call.uid, call.euid) == (10, 11, 1, 1000, 0)
    assert (call.fd, call.mask, call.ret, call.group, call.cgroup_id) == (3, 0x102, 4, 0xFFFF888012345678, 77)
    assert call.comm == b"node" and call.path == b"/srv/a"
    assert call.ok and call.errno == 0 and not call.path_truncated


def test_error_and_flags() -> None:
    call = records.decode(raw(ret=-28, rec_flags=records.F_HAS_PATH | records.F_PATH_TRUNCATED, path=b"x" * 255))
    assert not call.ok and call.errno == 28 and call.path_truncated and call.path == b"x" * 255
    fault = records.decode(raw(ret=-14, rec_flags=records.F_HAS_PATH | records.F_PATH_FAULT))
    assert fault.path is None and fault.path_fault
    init = records.decode(raw(syscall=records.Syscall.INOTIFY_INIT1, ret=3))
    assert init.path is None


def test_full_length_comm_is_not_overrun() -> None:
    call = records.decode(raw(comm=b"0123456789abcdef"))
    assert call.comm == b"0123456789abcdef"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\0" * 10,
        raw(kind=9),
        raw(syscall=99),
        raw(backend=7),
    ],
)
def test_foreign_records_are_rejected(data: bytes) -> None:
    with pytest.raises(records.DecodeError):
        records.decode(data)


def test_longer_record_is_accepted() -> None:
    """A newer BPF side may append fields: the known prefix decodes as before."""
    assert records.decode(raw(ret=1) + b"\xff" * 8) == records.decode(raw(ret=1))
