"""The ctypes mirror in records.py matches bpf/inotrace.h, as the compiler lays it out."""

from __future__ import annotations

import ctypes
import json
import subprocess

import pytest

from conftest import ROOT
from inotrace import records

STRUCTS = {
    "inotrace_inotify_rec": records.InotifyRecC,
    "inotrace_count_key": records.CountKeyC,
    "inotrace_instance_rec": records.InstanceRecC,
    "inotrace_open_rec": records.OpenRecC,
    "inotrace_open_key": records.OpenKeyC,
    "inotrace_group_state": records.GroupStateC,
}


@pytest.fixture(scope="module")
def compiled_layout(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """sizeof/offsetof of every field, as gcc sees the header."""
    lines = ["#include <stdio.h>", "#include <stddef.h>", '#include "inotrace.h"', "int main(void) {", 'printf("{");']
    first = True
    for cname, pytype in STRUCTS.items():
        for fname, *_ in pytype._fields_:
            sep = "" if first else ","
            first = False
            lines.append(
                f'printf("{sep}\\"{cname}.{fname}\\": [%zu, %zu]", offsetof(struct {cname}, {fname}), '
                f"sizeof(((struct {cname} *)0)->{fname}));"
            )
        lines.append(f'printf(",\\"{cname}\\": [0, %zu]", sizeof(struct {cname}));')
    consts = [
        "INOTRACE_COMM_LEN",
        "INOTRACE_PATH_LEN",
        "INOTRACE_REC_INOTIFY",
        "INOTRACE_REC_OPEN",
        "INOTRACE_LOST__MAX",
        "INOTRACE_F_PATH_TRUNCATED",
        "INOTRACE_F_PATH_FAULT",
        "INOTRACE_F_HAS_PATH",
        "INOTRACE_F_NEW_WATCH",
        "INOTRACE_F_KERNEL_PATH",
    ]
    for c in consts:
        lines.append(f'printf(",\\"{c}\\": %d", (int){c});')
    lines += ['printf("}");', "return 0; }"]
    d = tmp_path_factory.mktemp("layout")
    (d / "layout.c").write_text("\n".join(lines))
    subprocess.run(
        ["gcc", "-Wall", "-Werror", f"-I{ROOT / 'bpf'}", "-o", str(d / "layout"), str(d / "layout.c")], check=True
    )
    return json.loads(subprocess.run([str(d / "layout")], check=True, capture_output=True, text=True).stdout)


@pytest.mark.parametrize("cname", list(STRUCTS))
def test_struct_mirror_matches_compiler(compiled_layout: dict, cname: str) -> None:
    pytype = STRUCTS[cname]
    assert compiled_layout[cname][1] == ctypes.sizeof(pytype)
    for fname, *_ in pytype._fields_:
        field = getattr(pytype, fname)
        assert compiled_layout[f"{cname}.{fname}"] == [field.offset, field.size], fname


def test_constants_match(compiled_layout: dict) -> None:
    assert compiled_layout["INOTRACE_COMM_LEN"] == records.COMM_LEN
    assert compiled_layout["INOTRACE_PATH_LEN"] == records.PATH_LEN
    assert compiled_layout["INOTRACE_REC_INOTIFY"] == records.REC_INOTIFY
    assert compiled_layout["INOTRACE_REC_OPEN"] == records.REC_OPEN
    # a reader tells the two record kinds apart by `kind`, at the same offset in both
    assert records.InotifyRecC.kind.offset == records.OpenRecC.kind.offset == records.KIND_OFFSET
    assert compiled_layout["INOTRACE_LOST__MAX"] == records.LOST_MAX == len(records.LostReason)
    assert compiled_layout["INOTRACE_F_PATH_TRUNCATED"] == records.F_PATH_TRUNCATED
    assert compiled_layout["INOTRACE_F_PATH_FAULT"] == records.F_PATH_FAULT
    assert compiled_layout["INOTRACE_F_HAS_PATH"] == records.F_HAS_PATH
    assert compiled_layout["INOTRACE_F_NEW_WATCH"] == records.F_NEW_WATCH
    assert compiled_layout["INOTRACE_F_KERNEL_PATH"] == records.F_KERNEL_PATH


def test_enums_match_header() -> None:
    text = (ROOT / "bpf" / "inotrace.h").read_text()
    for member in records.Syscall:
        assert f"INOTRACE_SC_{member.name} = {member.value}," in text
    for member in records.Backend:
        assert f"INOTRACE_BACKEND_{member.name} = {member.value}," in text
    for member in records.Origin:
        assert f"INOTRACE_ORIGIN_{member.name} = {member.value}," in text
    for member in records.OpenCallKind:
        assert f"INOTRACE_OC_{member.name} = {member.value}," in text
