"""BTF offsets from the running kernel (readable without root)."""

from __future__ import annotations

import platform
import re
import struct
import subprocess
from pathlib import Path

import pytest

from conftest import assert_one_line_error, run_cli
from inotrace.btf import FIELDS, KERNEL_OPEN_FIELDS, Btf, check_kernel, inotify_watch_cost, resolve_offsets
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
}
# Helpers some kernels lack, and what their presence switches on: the kernel
# opens' registers need bpf_task_pt_regs (5.15; 5.10 has neither).
_HELPERS = {"HAVE_KERNEL_OPENS": "BPF_FUNC_task_pt_regs", "HAVE_TASK_BTF": "BPF_FUNC_get_current_task_btf"}


def compiler_offsets(tmp_path: Path) -> dict[str, int]:
    header = tmp_path / "vmlinux.h"
    with header.open("w") as out:
        subprocess.run(["bpftool", "btf", "dump", "file", VMLINUX, "format", "c"], stdout=out, check=True, timeout=120)
    enums = set(re.findall(r"\b(BPF_FUNC_\w+) = ", header.read_text()))
    helpers = {macro: str(int(name in enums)) for macro, name in _HELPERS.items()}
    fields = FIELDS + (KERNEL_OPEN_FIELDS if helpers["HAVE_KERNEL_OPENS"] == "1" else ())
    exprs = {f.macro: f"__builtin_offsetof(struct {f.struct}, {f.path})" for f in fields}
    exprs |= _EXTRA_C | helpers
    lines = "".join(f'    __builtin_printf("{k} %lu\\n", (unsigned long)({v}));\n' for k, v in exprs.items())
    (tmp_path / "off.c").write_text(f'#include "vmlinux.h"\nint main(void) {{\n{lines}    return 0;\n}}\n')
    exe = tmp_path / "off"
    subprocess.run(["gcc", "-w", "-o", str(exe), str(tmp_path / "off.c")], check=True, timeout=300)
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True, timeout=30).stdout
    return {k: int(v) for k, v in (line.split() for line in out.splitlines())}


def test_every_offset_matches_a_c_compiler(tmp_path: Path) -> None:
    want = compiler_offsets(tmp_path)
    opens = len(KERNEL_OPEN_FIELDS) if want["HAVE_KERNEL_OPENS"] else 0
    assert len(want) == len(FIELDS) + opens + len(_EXTRA_C) + len(_HELPERS)
    assert resolve_offsets(VMLINUX) == want


def bpftool_struct_sizes(*names: str) -> list[int]:
    # bpftool's raw dump, not its C: the C loses sized enums (6.18's inode holds
    # a one-byte `enum rw_hint`, which gcc lays out in four, 8 bytes too many)
    dump = subprocess.run(
        ["bpftool", "btf", "dump", "file", VMLINUX], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    sizes = []
    for name in names:
        (size,) = re.findall(rf"^\[\d+\] STRUCT '{name}' size=(\d+) ", dump, re.MULTILINE)
        sizes.append(int(size))
    return sizes


def test_watch_cost_is_the_kernels_own() -> None:
    # INOTIFY_WATCH_COST, behind inotrace_user_inotify_watch_memory_bytes
    mark, inode = bpftool_struct_sizes("inotify_inode_mark", "inode")
    assert inotify_watch_cost(VMLINUX) == mark + 2 * inode > 0
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


def tiny_btf(enum_values: list[str]) -> bytes:
    """A raw BTF blob holding only `enum bpf_func_id { <enum_values> }` (what
    an old kernel's BTF looks like to the minimum check)."""
    strings = b"\0bpf_func_id\0" + b"".join(v.encode() + b"\0" for v in enum_values)
    offs, at = [], len(b"\0bpf_func_id\0")
    for v in enum_values:
        offs.append(at)
        at += len(v) + 1
    types = struct.pack("<III", 1, (6 << 24) | len(enum_values), 4)  # BTF_KIND_ENUM, 4 bytes
    types += b"".join(struct.pack("<Ii", off, i) for i, off in enumerate(offs))
    header = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    return header + types + strings


def test_a_kernel_older_than_the_minimum_is_one_clear_line(tmp_path) -> None:
    """5.7 has BTF but no ring buffer and no task_file iterator: refused at start, saying which."""
    btf = tmp_path / "kernel/btf/vmlinux"
    btf.parent.mkdir(parents=True)
    btf.write_bytes(tiny_btf(["BPF_FUNC_unspec", "BPF_FUNC_map_lookup_elem"]))
    with Btf(str(btf)) as b, pytest.raises(InotraceError, match=r"has no BPF ring buffer.*Linux 5\.8 or newer"):
        check_kernel(b, "5.7.0-test")
    btf.write_bytes(tiny_btf(["BPF_FUNC_unspec", "BPF_FUNC_ringbuf_output"]))
    with Btf(str(btf)) as b, pytest.raises(InotraceError, match="has no BPF task_file iterator"):
        check_kernel(b, "5.7.0-test")
    with Btf(VMLINUX) as b:
        check_kernel(b, platform.release())  # this kernel has both
    res = run_cli("trace", f"--path.sysfs={tmp_path}")
    assert_one_line_error(res, "has no BPF task_file iterator, which inotrace needs: Linux 5.8 or newer")
