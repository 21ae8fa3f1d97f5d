"""inotrace's own kernel cost: how often each of its BPF programs ran and for
how long, from the kernel's struct bpf_prog_info (what `bpftool prog show`
prints as run_cnt and run_time_ns).

The kernel counts only while BPF statistics are on: the sysctl
kernel.bpf_stats_enabled, or a BPF_ENABLE_STATS fd as `serve --bpf-stats`
holds. Counting costs two clock reads per program run, which is why it is off
by default; the fd turns it off again when inotrace exits, however it exits.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from . import libbpf
from .btf import Btf

STATS_SYSCTL = "sys/kernel/bpf_stats_enabled"


@dataclass(frozen=True)
class ProgramStats:
    program: str  # BCC's function name: inotrace's own programs, a bounded set
    id: int
    tag: str  # hex, as bpftool prints it
    run_ns: int
    runs: int


@dataclass(frozen=True)
class InfoLayout:
    """Offsets in struct bpf_prog_info, from the running kernel's BTF (it is
    UAPI and only grows, but reading it like every other struct costs nothing)."""

    id: int
    tag: int
    run_time_ns: int
    run_cnt: int

    @classmethod
    def read(cls, btf_path: str) -> InfoLayout:
        with Btf(btf_path) as btf:
            return cls(*(btf.offsetof("bpf_prog_info", f) for f in ("id", "tag", "run_time_ns", "run_cnt")))


def read(programs: Mapping[str, int], layout: InfoLayout) -> list[ProgramStats]:
    """One row per program fd, by name."""
    out = []
    for name, fd in sorted(programs.items()):
        info = libbpf.prog_info(fd)
        (prog_id,) = struct.unpack_from("=I", info, layout.id)
        (run_ns,) = struct.unpack_from("=Q", info, layout.run_time_ns)
        (runs,) = struct.unpack_from("=Q", info, layout.run_cnt)
        out.append(ProgramStats(name, prog_id, info[layout.tag : layout.tag + 8].hex(), run_ns, runs))
    return out


def enabled(procfs: str = "/proc") -> bool | None:
    """Whether the kernel counts run time now (None: it cannot say)."""
    try:
        with open(os.path.join(procfs, STATS_SYSCTL)) as f:
            return f.read().strip() == "1"
    except OSError:
        return None


class StatsSwitch:
    """Holds the kernel's run-time statistics on while open (BPF_ENABLE_STATS)."""

    def __init__(self) -> None:
        self._fd = libbpf.enable_stats()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
