"""The audit stream's JSON and table rows, from synthetic calls."""

from __future__ import annotations

import json
from dataclasses import replace

from factories import make_call
from inotrace.audit import Clock, Filter, Formatter, InstanceIds, table_header, table_row, to_json_line, to_json_obj
from inotrace.derived import Holder, LimitFailure, LimitHit
from inotrace.records import Syscall

CALL = make_call(
    ts_ns=1_000,
    syscall=Syscall.INOTIFY_ADD_WATCH,
    tgid=10,
    tid=11,
    uid=1000,
    euid=1000,
    comm=b"node\x1b[2J",
    cgroup_id=5,
    ret=3,
    fd=4,
    mask=0x102,
    path=b"/srv/\nx",
    group=0xFFFF8880DEADBEEF,
)


def test_json_fields_and_marks() -> None:
    obj = to_json_obj(CALL, Clock(), InstanceIds(b"k" * 16))
    assert obj["syscall"] == "inotify_add_watch" and obj["pid"] == 10 and obj["tid"] == 11
    assert obj["comm"] == "node\\x1b[2J"
    assert obj["args"] == {"fd": 4, "pathname": "/srv/\\x0ax", "mask": 0x102, "mask_names": ["IN_MODIFY", "IN_CREATE"]}
    assert obj["untrusted"] == ["comm", "args.pathname"] and obj["user_memory"] == ["args.pathname"]
    assert obj["errno"] is None and obj["ret"] == 3 and "truncated" not in obj
    assert obj["time"].endswith("Z") and len(obj["time"]) == 30


def test_no_kernel_pointer_is_printed_and_ids_are_stable() -> None:
    ids = InstanceIds(b"k" * 16)
    line = to_json_line(CALL, Clock(), ids)
    assert "deadbeef" not in line.lower() and str(0xFFFF8880DEADBEEF) not in line
    assert ids(CALL.group) == ids(CALL.group) != ids(CALL.group + 64)
    assert InstanceIds()(CALL.group) != InstanceIds()(CALL.group), "keyed per run"
    assert ids(0) is None


def test_failures_truncation_and_faults() -> None:
    obj = to_json_obj(replace(CALL, ret=-28, group=0, path_truncated=True), Clock(), InstanceIds())
    assert obj["errno"] == "ENOSPC" and obj["instance"] is None and obj["truncated"] == ["args.pathname"]
    fault = to_json_obj(replace(CALL, ret=-14, path=None, path_fault=True), Clock(), InstanceIds())
    assert fault["args"]["pathname"] is None and fault["args"]["pathname_error"] == "EFAULT"


def test_per_syscall_args() -> None:
    init1 = to_json_obj(
        replace(CALL, syscall=Syscall.INOTIFY_INIT1, flags=0o2004000, path=None), Clock(), InstanceIds()
    )
    assert init1["args"] == {"flags": 0o2004000, "flags_names": ["IN_NONBLOCK", "IN_CLOEXEC"]}
    assert init1["untrusted"] == ["comm"] and init1["user_memory"] == []
    rm = to_json_obj(replace(CALL, syscall=Syscall.INOTIFY_RM_WATCH, wd=7, path=None), Clock(), InstanceIds())
    assert rm["args"] == {"fd": 4, "wd": 7}
    init = to_json_obj(replace(CALL, syscall=Syscall.INOTIFY_INIT, path=None), Clock(), InstanceIds())
    assert init["args"] == {}
    json.dumps(init)


def test_table() -> None:
    assert table_header().split() == ["TIME", "PID", "TID", "EUID", "COMM", "SYSCALL", "RET", "INSTANCE", "DETAIL"]
    line = table_row(replace(CALL, ret=-2, group=0), Clock(), InstanceIds())
    assert "ENOENT" in line and "\x1b" not in line and "\n" not in line and "path=/srv/\\x0ax" in line


def test_filters() -> None:
    assert Filter()(CALL)
    assert Filter(pids=frozenset({10}))(CALL) and Filter(pids=frozenset({11}))(CALL)
    assert not Filter(pids=frozenset({12}))(CALL)
    assert Filter(comms=frozenset({b"node\x1b[2J"}))(CALL) and not Filter(comms=frozenset({b"node"}))(CALL)
    assert Filter(uids=frozenset({1000}))(CALL) and not Filter(uids=frozenset({0}))(CALL)


def test_a_limit_failure_is_its_call_with_the_user_at_its_limit() -> None:
    failed = replace(CALL, ret=-28)
    hit = LimitHit("watches", 1000, 8192, 8192, (Holder(10, 1, 8000, b"node"), Holder(12, 2, 192, b"\x1b")))
    obj = json.loads(Formatter()(LimitFailure(failed, hit)))
    assert (obj["errno"], obj["pid"], obj["args"]["fd"]) == ("ENOSPC", 10, 4)  # the call itself
    assert obj["limit"]["resource"] == "watches" and (obj["limit"]["used"], obj["limit"]["limit"]) == (8192, 8192)
    assert [h["comm"] for h in obj["limit"]["top_holders"]] == ["node", "\\x1b"]
    assert "limit.top_holders.comm" in obj["untrusted"]
    assert Filter(pids=frozenset({10}))(LimitFailure(failed, hit)) and not Filter(pids=frozenset({99}))(
        LimitFailure(failed, hit)
    )
