"""snapshot on a fixture procfs (no kcmp possible there: every fd its own instance)."""

from __future__ import annotations

import os
from pathlib import Path

from inotrace import paths, proc, snapshot

FDINFO = """pos:\t0
flags:\t00
mnt_id:\t17
ino:\t1038
inotify wd:2 ino:264 sdev:fe00000 mask:fff ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:6402000000000000
inotify wd:1 ino:55327 sdev:fe00003 mask:80000004 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 \
f_handle:2753050000000000
"""


def make_proc(root: Path, pid: int, uid: int, comm: str, fds: dict[int, str]) -> None:
    d = root / str(pid)
    (d / "fd").mkdir(parents=True)
    (d / "fdinfo").mkdir()
    (d / "comm").write_text(comm + "\n")
    (d / "status").write_text(f"Name:\t{comm}\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n")
    for fd, info in fds.items():
        os.symlink("anon_inode:inotify" if info else "/dev/null", d / "fd" / str(fd))
        (d / "fdinfo" / str(fd)).write_text(info or "pos:\t0\n")


def test_fdinfo_parse() -> None:
    ws = proc.parse(FDINFO)
    assert [(w.wd, w.ino, w.mask) for w in ws] == [(2, 0x264, 0xFFF), (1, 0x55327, 0x80000004)]
    assert ws[1].dev_major_minor == (254, 3) and ws[0].handle == bytes.fromhex("6402000000000000")
    assert proc.parse("inotify wd:1 ino:2 sdev:3 mask:4 ignored_mask:0\n")[0].handle == b""


def test_report_from_fixture(tmp_path: Path) -> None:
    (tmp_path / "sys" / "fs" / "inotify").mkdir(parents=True)
    for name, v in (("max_user_instances", 128), ("max_user_watches", 8192), ("max_queued_events", 16384)):
        (tmp_path / "sys" / "fs" / "inotify" / name).write_text(f"{v}\n")
    make_proc(tmp_path, 4000000, 1000, "code\x1b[1m", {3: FDINFO, 4: "", 5: "pos:\t0\n"})
    make_proc(tmp_path, 4000001, 0, "tail", {7: FDINFO.split("inotify", maxsplit=1)[0]})
    rep = snapshot.report(snapshot.take(str(tmp_path)), str(tmp_path))
    assert rep["limits"] == {"max_user_instances": 128, "max_user_watches": 8192, "max_queued_events": 16384}
    assert {u["uid"]: (u["instances"], u["watches"]) for u in rep["users"]} == {1000: (2, 2), 0: (1, 0)}
    procs = {p["pid"]: p for p in rep["processes"]}
    assert procs[4000000]["comm"] == "code\\x1b[1m" and procs[4000000]["watches"] == 2
    # the comm escaped on the terminal too: a traced process cannot send it escape sequences
    assert snapshot.render_text(rep).splitlines() == [
        "USER      INSTANCES          WATCHES",
        "1000          2 / 128            2 / 8192",
        "0             1 / 128            0 / 8192",
        "",
        "PID      UID     INSTANCES   WATCHES  COMM",
        "4000000  1000            2         2  code\\x1b[1m",
        "4000001  0               1         0  tail",
    ]
    # with the kernel's per-watch cost (from BTF), the memory the watches hold
    rep = snapshot.report(snapshot.take(str(tmp_path)), str(tmp_path), watch_cost=1312)
    assert rep["watch_cost_bytes"] == 1312
    assert {u["uid"]: u["watch_memory_bytes"] for u in rep["users"]} == {1000: 2624, 0: 0}
    assert snapshot.render_text(rep).splitlines() == [
        "USER      INSTANCES          WATCHES          KERNEL MEMORY",
        "1000          2 / 128            2 / 8192          2.6 KiB",
        "0             1 / 128            0 / 8192              0 B",
        "",
        "PID      UID     INSTANCES   WATCHES  KERNEL MEM  COMM",
        "4000000  1000            2         2     2.6 KiB  code\\x1b[1m",
        "4000001  0               1         0         0 B  tail",
    ]


def test_iec_bytes() -> None:
    assert [snapshot.iec_bytes(n) for n in (0, 1023, 1024, 1536, 200_000 * 1312, 3 << 40)] == [
        "0 B",
        "1023 B",
        "1.0 KiB",
        "1.5 KiB",
        "250.2 MiB",
        "3.0 TiB",
    ]


def test_unreadable_or_vanished_processes_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "123").mkdir()
    assert snapshot.take(str(tmp_path)) == []


def test_read_first_falls_back_to_the_next_holder(tmp_path: Path) -> None:
    make_proc(tmp_path, 10, 0, "a", {})
    make_proc(tmp_path, 12, 0, "b", {3: FDINFO})
    assert proc.read_first(str(tmp_path), ((10, 3), (12, 3))) == {2: 0xFFF, 1: 0x80000004}
    assert proc.read_first(str(tmp_path), ((10, 3),)) is None
    assert proc.read_wd_masks(str(tmp_path), 12, 3) == {w.wd: w.mask for w in proc.parse(FDINFO)}


def test_mount_points_decode_octal_escapes_only() -> None:
    # the kernel escapes space, tab, newline and backslash; UTF-8 passes through
    assert paths.unescape_mount_path("/mnt/café".encode()) == "/mnt/café".encode()
    assert paths.unescape_mount_path(rb"/mnt/a\040b\134c\011d\012e") == b"/mnt/a b\\c\td\ne"
    assert paths.unescape_mount_path(rb"/mnt/\xff\0401") == b"/mnt/\\xff 1"  # the text \xff, not a byte
