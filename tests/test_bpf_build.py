"""`--ebpf` prints exactly the program that loads: what it prints, compiled
alone, gives the same instructions and maps as the Program the command runs."""

from __future__ import annotations

import argparse
import os
import struct

import pytest

from conftest import run_cli
from inotrace.bpf_program import Program
from inotrace.cli import build_options, build_parser
from inotrace.probes import PROBES

pytestmark = pytest.mark.bpf

LD_IMM64 = 0x18
PSEUDO_MAP_FD, PSEUDO_MAP_VALUE = 1, 2
FUNCTIONS = sorted(
    {h.fn for spec in PROBES for hooks in spec.backends.values() for h in hooks} | {"bpf_iter__task_file"}
)


def map_of(fd: int) -> tuple[str, ...]:
    """A map as the kernel describes it (type, sizes, entries, flags): fds differ between two loads."""
    with open(f"/proc/self/fdinfo/{fd}") as f:
        fields = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
    return tuple(fields[k] for k in ("map_type", "key_size", "value_size", "max_entries", "map_flags"))


def instructions(bpf: object, fn: str) -> list[tuple[object, ...]] | None:
    """fn's instructions, map fds replaced by the map they name; None if fn is not in the program."""
    try:
        code = bpf.dump_func(fn.encode())  # type: ignore[attr-defined]
    except Exception:  # BCC raises a bare Exception for an unknown function
        return None
    out: list[tuple[object, ...]] = []
    for op, regs, off, imm in struct.iter_unpack("<BBhi", code):
        src = regs >> 4
        if op == LD_IMM64 and src in (PSEUDO_MAP_FD, PSEUDO_MAP_VALUE):
            out.append((op, regs, off, map_of(imm)))
        else:
            out.append((op, regs, off, imm))
    return out


@pytest.mark.parametrize(
    "argv",
    [["serve"], ["serve", f"--log-events={os.devnull}"], ["trace", "--opens", "--ringbuf-pages=64"]],
    ids=["serve", "serve-log-events", "trace-opens"],
)
def test_ebpf_output_compiles_to_the_program_that_loads(argv: list[str]) -> None:
    res = run_cli(*argv, "--ebpf")
    assert res.returncode == 0, res.stderr
    assert '#include "inotrace.h"' not in res.stdout  # one file: the header is inlined
    args: argparse.Namespace = build_parser().parse_args(argv)
    loaded = Program(build_options(args))
    try:
        printed = Program.compile_text(res.stdout)  # bcc only through Program
        try:
            compared = 0
            for fn in FUNCTIONS:
                mine = instructions(loaded.bpf, fn)
                assert instructions(printed, fn) == mine, fn
                compared += mine is not None
            assert compared >= 20, compared  # every hook of the build, not an empty match
        finally:
            printed.cleanup()
    finally:
        loaded.close()


def test_ebpf_output_follows_the_command() -> None:
    """What differs between commands is in the defines: a record per call only for an audit stream."""
    serve = run_cli("serve", "--ebpf").stdout
    audited = run_cli("serve", f"--log-events={os.devnull}", "--ebpf").stdout
    trace = run_cli("trace", "--opens", "--ebpf").stdout
    assert "#define STREAM_CALLS 0\n" in serve and "#define STREAM_CALLS 1\n" in audited
    assert "#define STREAM_OPENS 1\n" in trace and "#define STREAM_OPENS 0\n" in serve
    # top streams no call but the watch-limit failures it shows
    top = run_cli("top", "--ebpf").stdout
    assert "#define STREAM_CALLS 0\n" in top and "#define STREAM_LIMIT_FAILURES 1\n" in top
    assert "#define STREAM_LIMIT_FAILURES 0\n" in serve and "#define STREAM_LIMIT_FAILURES 0\n" in trace
    # one backend asked for: only its front ends are compiled; auto needs all three to fall back
    fentry = run_cli("serve", "--probes=fentry", "--ebpf").stdout
    for backend in ("tracepoint", "kprobe", "fentry"):
        assert f"#define FRONT_END_{backend.upper()} 1\n" in serve
        assert f"#define FRONT_END_{backend.upper()} {int(backend == 'fentry')}\n" in fentry
