"""BTF offsets from the running kernel (readable without root)."""

from __future__ import annotations

import platform
import re
import subprocess
from pathlib import Path

import pytest

from inotrace.btf import FIELDS, KERNEL_OPEN_FIELDS, Btf, inotify_watch_cost, resolve_offsets
from inotrace.errors import InotraceError

VMLINUX = "/sys/kernel/btf/vmlinux"


# Ground truth from a C compiler: bpftool writes the kernel's BTF out as C
# (vmlinux.h) and gcc's offsetof/sizeof read the same layout independently of
# inotrace's BTF reader.
_EXTRA_C = {
    "UCOUNT_ELEM_SIZE": "sizeof(((struct ucounts *)0)->ucount[0])",
    "UCOUNT_MAX_ELEM_SIZE": "sizeof(((struct user_namespace *)0)->ucount_max[0])",
    "UCOUNT_INOTIFY_INSTANCES": "UCOUNT_INOTIFY_INSTANCES",
    "UCOUNT_INOTIFY_WATCHES": "UCOUNT_INOTIFY_WATCHES",
    # the kernel opens' registers need bpf_task_pt_regs (>= 5.15: both kernels tested here)
    "HAVE_KERNEL_OPENS": "BPF_FUNC_task_pt_regs > 0",
    "HAVE_TASK_BTF": "BPF_FUNC_get_current_task_btf > 0",
}


def compiler_offsets(tmp_path: Path) -> dict[str, int]:
    header = tmp_path / "vmlinux.h"
    with header.open("w") as out:
        subprocess.run(["bpftool", "btf", "dump", "file", VMLINUX, "format", "c"], stdout=out, check=True, timeout=120)
    exprs = {f.macro: f"__builtin_offsetof(struct {f.struct}, {f.path})" for f in FIELDS + KERNEL_OPEN_FIELDS}
    exprs |= _EXTRA_C
    lines = "".join(f'    __builtin_printf("{k} %lu\\n", (unsigned long)({v}));\n' for k, v in exprs.items())
    (tmp_path / "off.c").write_text(f'#include "vmlinux.h"\nint main(void) {{\n{lines}    return 0;\n}}\n')
    exe = tmp_path / "off"
    subprocess.run(["gcc", "-w", "-o", str(exe), str(tmp_path / "off.c")], check=True, timeout=300)
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True, timeout=30).stdout
    return {k: int(v) for k, v in (line.split() for line in out.splitlines())}


def test_every_offset_matches_a_c_compiler(tmp_path: Path) -> None:
    want = compiler_offsets(tmp_path)
    assert len(want) == len(FIELDS) + len(KERNEL_OPEN_FIELDS) + len(_EXTRA_C)
    assert resolve_offsets(VMLINUX) == want


def bpftool_struct_size(name: str) -> int:
    # bpftool's raw dump, not its C: the C loses sized enums (6.18's inode holds
    # a one-byte `enum rw_hint`, which gcc lays out in four, 8 bytes too many)
    dump = subprocess.run(
        ["bpftool", "btf", "dump", "file", VMLINUX], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    (size,) = re.findall(rf"^\[\d+\] STRUCT '{name}' size=(\d+) ", dump, re.MULTILINE)
    return int(size)


def test_watch_cost_is_the_kernels_own() -> None:
    # INOTIFY_WATCH_COST, behind inotrace_user_inotify_watch_memory_bytes
    want = bpftool_struct_size("inotify_inode_mark") + 2 * bpftool_struct_size("inode")
    assert inotify_watch_cost(VMLINUX) == want > 0
    assert inotify_watch_cost("/nonexistent") is None


def test_abi_fixed_offsets_are_right() -> None:
    assert platform.machine() == "x86_64", "the kprobe front end reads x86-64 argument registers"
    # struct pt_regs is user-visible ABI on x86-64 (ptrace): di/si/dx at 112/104/96.
    with Btf(VMLINUX) as btf:
        got = (btf.offsetof("pt_regs", "di"), btf.offsetof("pt_regs", "si"), btf.offsetof("pt_regs", "dx"))
    assert got == (112, 104, 96)


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
