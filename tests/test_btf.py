"""BTF offsets from the running kernel (readable without root)."""

from __future__ import annotations

import platform

import pytest

from inotrace.btf import FIELDS, Btf, offset_cflags, resolve_offsets
from inotrace.errors import InotraceError

VMLINUX = "/sys/kernel/btf/vmlinux"


def test_every_field_resolves() -> None:
    offsets = resolve_offsets(VMLINUX)
    assert set(offsets) >= {f.macro for f in FIELDS}
    assert offsets["UCOUNT_ELEM_SIZE"] in (4, 8) and offsets["UCOUNT_MAX_ELEM_SIZE"] in (4, 8)
    assert all(v >= 0 for v in offsets.values())
    assert offset_cflags({"OFF_B": 2, "OFF_A": 1}) == ["-DOFF_A=1", "-DOFF_B=2"]


def test_abi_fixed_offsets_are_right() -> None:
    assert platform.machine() == "x86_64", "the kprobe front end reads x86-64 argument registers"
    # struct pt_regs is user-visible ABI on x86-64 (ptrace): di/si/dx at 112/104/96.
    with Btf(VMLINUX) as btf:
        assert (btf.offsetof("pt_regs", "di"), btf.offsetof("pt_regs", "si"), btf.offsetof("pt_regs", "dx")) == (
            112,
            104,
            96,
        )
        assert btf.offsetof("cred", "euid.val") == btf.offsetof("cred", "euid")


def test_anonymous_members_and_enums() -> None:
    with Btf(VMLINUX) as btf:
        # task_struct keeps most fields inside an anonymous randomized-layout struct on some configs
        assert btf.offsetof("task_struct", "comm") > btf.offsetof("task_struct", "flags")
        assert btf.enum_value("ucount_type", "UCOUNT_INOTIFY_WATCHES") > btf.enum_value(
            "ucount_type", "UCOUNT_INOTIFY_INSTANCES"
        )


def test_bad_input_is_one_clear_error(tmp_path) -> None:
    with pytest.raises(InotraceError, match="cannot read kernel BTF"):
        Btf(str(tmp_path / "missing"))
    junk = tmp_path / "junk"
    junk.write_bytes(b"not btf at all")
    with pytest.raises(InotraceError, match="cannot parse kernel BTF"):
        Btf(str(junk))
    with Btf(VMLINUX) as btf, pytest.raises(InotraceError, match="no field"):
        btf.offsetof("task_struct", "no_such_field")
    with Btf(VMLINUX) as btf, pytest.raises(InotraceError, match="no type"):
        btf.offsetof("no_such_struct", "x")
