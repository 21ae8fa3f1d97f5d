"""Parsing tracefs format files and checking the syscall record layout."""

from __future__ import annotations

from pathlib import Path

from inotrace import tracefs

ENTER = """name: sys_enter_inotify_add_watch
ID: 1055
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;
\tfield:int fd;\toffset:16;\tsize:8;\tsigned:0;
\tfield:const char * pathname;\toffset:24;\tsize:8;\tsigned:0;
\tfield:u32 mask;\toffset:32;\tsize:8;\tsigned:0;
"""

EXIT = """format:
\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;
\tfield:long ret;\toffset:16;\tsize:8;\tsigned:1;
"""


def write(root: Path, event: str, text: str) -> None:
    d = root / "events" / "syscalls" / event
    d.mkdir(parents=True)
    (d / "format").write_text(text)


def test_parses_fields(tmp_path: Path) -> None:
    write(tmp_path, "sys_enter_inotify_add_watch", ENTER)
    fields = tracefs.format_fields(str(tmp_path), "syscalls", "sys_enter_inotify_add_watch")
    assert fields is not None
    assert fields["pathname"] == (24, 8) and fields["mask"] == (32, 8) and fields["__syscall_nr"] == (8, 4)
    assert tracefs.check_syscall_layout(fields, enter=True) is None
    assert tracefs.format_fields(str(tmp_path), "syscalls", "sys_enter_nope") is None


def test_layout_mismatch_is_reported(tmp_path: Path) -> None:
    write(tmp_path, "sys_enter_x", ENTER.replace("offset:24", "offset:20"))
    fields = tracefs.format_fields(str(tmp_path), "syscalls", "sys_enter_x")
    assert fields is not None
    assert "argument 1" in (tracefs.check_syscall_layout(fields, enter=True) or "")
    write(tmp_path, "sys_exit_x", EXIT)
    exit_fields = tracefs.format_fields(str(tmp_path), "syscalls", "sys_exit_x")
    assert exit_fields is not None and tracefs.check_syscall_layout(exit_fields, enter=False) is None
    assert tracefs.check_syscall_layout({"__syscall_nr": (8, 4), "ret": (24, 8)}, enter=False)


def test_finds_mounted_tracefs(tmp_path: Path) -> None:
    (tmp_path / "kernel" / "tracing" / "events").mkdir(parents=True)
    assert tracefs.ensure_mounted(str(tmp_path)) == str(tmp_path / "kernel" / "tracing")
