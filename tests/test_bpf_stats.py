"""inotrace's own kernel cost: the per-program run counters it exports are the
kernel's (bpftool reads the same struct bpf_prog_info), cover every program it
holds, and `--bpf-stats` turns the kernel's counting on only while it runs."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import http_get, run_workload, unique_comm
from test_bpf_inotify import _prog_ids_of, samples

pytestmark = pytest.mark.bpf
SYSCTL = Path("/proc/sys/kernel/bpf_stats_enabled")


def bpftool_programs() -> dict[int, dict]:
    out = subprocess.run(["bpftool", "prog", "show", "--json"], capture_output=True, text=True, check=True, timeout=60)
    return {p["id"]: p for p in json.loads(out.stdout)}


def exported(url: str) -> tuple[dict[str, tuple[int, str]], dict[str, float], dict[str, float], float]:
    status, text = http_get(url + "/metrics")
    assert status == 200
    info, runs, seconds, enabled = {}, {}, {}, -1.0
    for name, labels, value in samples(text):
        if name == "inotrace_bpf_program_info":
            info[labels["program"]] = (int(labels["id"]), labels["tag"])
        elif name == "inotrace_bpf_program_runs_total":
            runs[labels["program"]] = value
        elif name == "inotrace_bpf_program_run_seconds_total":
            seconds[labels["program"]] = value
        elif name == "inotrace_bpf_stats_enabled":
            enabled = value
    return info, runs, seconds, enabled


def holds_stats_fd(pid: int) -> bool:
    """BPF_ENABLE_STATS hands out an anonymous inode named bpf-stats."""
    fds = Path(f"/proc/{pid}/fd")
    return any(os.readlink(fds / fd) == "anon_inode:bpf-stats" for fd in os.listdir(fds))


def test_program_cost_is_the_kernels_and_bpf_stats_ends_with_inotrace(serve) -> None:
    # The sysctl shows only what was written to it, not BPF_ENABLE_STATS fds:
    # 0 here means nobody else turned counting on for every program.
    assert SYSCTL.read_text().strip() == "0", "kernel.bpf_stats_enabled is on: this test cannot see --bpf-stats work"
    proc, url = serve("--bpf-stats")
    try:
        assert holds_stats_fd(proc.proc.pid)
        done = run_workload(unique_comm("cost"))
        info1, runs1, sec1, enabled = exported(url)
        kernel = bpftool_programs()
        info2, runs2, sec2, _ = exported(url)
        assert enabled == 1
        # every program inotrace holds, and nothing else, by the kernel's id
        assert {i for i, _tag in info1.values()} == _prog_ids_of(proc.proc.pid)
        assert info1 == info2 and set(runs1) == set(sec1) == set(info1)
        for program, (prog_id, tag) in info1.items():
            k = kernel[prog_id]
            assert k["tag"] == tag and k["name"] in program, (program, k)  # BCC names iterators without bpf_iter__
            # bpftool read between the two scrapes: its counts lie between theirs
            assert runs1[program] <= k.get("run_cnt", 0) <= runs2[program], program
            assert sec1[program] * 1e9 - 1 <= k.get("run_time_ns", 0) <= sec2[program] * 1e9 + 1, program
        adds = sum(1 for c in done["calls"] if c["syscall"] == "inotify_add_watch")
        assert runs1["tp_exit_inotify_add_watch"] >= adds > 0
        assert sec1["tp_exit_inotify_add_watch"] > 0
    finally:
        assert proc.stop() == 0
    # Its fd went with it: a new exporter's programs are not counted.
    proc, url = serve()
    try:
        run_workload(unique_comm("free"))
        info, runs, seconds, enabled = exported(url)
        assert enabled == 0 and info
        assert set(runs.values()) == {0} and set(seconds.values()) == {0}
    finally:
        assert proc.stop() == 0
