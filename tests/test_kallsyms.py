"""Kernel symbol lookups (kallsyms.py): synthetic tables, then the real one against BCC's."""

from __future__ import annotations

from pathlib import Path

import pytest

from inotrace.kallsyms import KernelSymbols

TABLE = (
    b"ffffffff81000000 T _stext\n"
    b"ffffffff81234560 T do_sys_openat2\n"
    b"ffffffff81234000 t do_filp_open\n"
    b"ffffffffc0001000 t nf_tables_thing\t[nf_tables]\n"
    b"ffffffff81ffff00 T __x64_sys_inotify_init1\n"
)


def test_whole_names_only(tmp_path: Path) -> None:
    path = tmp_path / "kallsyms"
    path.write_bytes(TABLE)
    syms = KernelSymbols(str(path))
    assert syms.has(b"do_sys_openat2") and syms.has(b"do_filp_open")
    assert syms.has(b"nf_tables_thing"), "a module's symbol ends in a tab"
    assert syms.has(b"__x64_sys_inotify_init1")
    # prefixes and suffixes of real names are not names
    assert not syms.has(b"do_sys_open")
    assert not syms.has(b"sys_openat2")
    assert not syms.has(b"inotify_init1")
    assert not syms.has(b"nf_tables")


def test_released_text_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "kallsyms"
    path.write_bytes(TABLE)
    syms = KernelSymbols(str(path))
    assert syms.has(b"_stext")
    path.write_bytes(b"ffffffff81000000 T other\n")
    assert syms.has(b"_stext"), "read once per start"
    syms.release()
    assert syms.has(b"other") and not syms.has(b"_stext")


def test_unreadable_table_has_nothing(tmp_path: Path) -> None:
    assert not KernelSymbols(str(tmp_path / "absent")).has(b"do_sys_openat2")


@pytest.mark.bpf
def test_agrees_with_bcc_on_this_kernel() -> None:
    from bcc import BPF  # noqa: PLC0415 - a BPF test

    syms = KernelSymbols()
    for name in (b"do_sys_openat2", b"do_filp_open", b"__x64_sys_inotify_init1", b"do_sys_open", b"no_such_fn_x"):
        assert syms.has(name) == (BPF.ksymname(name) != -1), name
