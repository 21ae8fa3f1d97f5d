"""The serving path under faults: logrotate of the audit log."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import http_get, log_records, unique_comm, wait_for_records

pytestmark = pytest.mark.bpf


@contextlib.contextmanager
def tiny_tmpfs(kib: int) -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="inotrace-full-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k", "inotrace-full", str(d)], check=True)
    try:
        yield d
    finally:
        if subprocess.run(["umount", str(d)], check=False).returncode:
            subprocess.run(["umount", "-l", str(d)], check=False)  # never leave a mount behind
        d.rmdir()


def dropped(url: str) -> float:
    _status, text = http_get(url + "/metrics")
    return sum(
        s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name == "inotrace_audit_records_dropped_total" and s.labels == {"reason": "ENOSPC"}
    )


def calls(comm: str, n: int) -> None:
    """n add_watch calls from a process named comm."""
    code = (
        "import ctypes,sys; l=ctypes.CDLL(None); l.prctl(15, sys.argv[1].encode(), 0, 0, 0); fd=l.inotify_init1(0)\n"
        "for _ in range(int(sys.argv[2])): l.inotify_add_watch(fd, b'/tmp', 2)"
    )
    subprocess.run(["/usr/bin/python3", "-c", code, comm, str(n)], check=True)


def test_sighup_reopens_the_log(serve, tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    proc, _url = serve(f"--log-events={log}")
    first = unique_comm("rot")
    calls(first, 3)
    wait_for_records(log, 4, comm=first)
    os.rename(log, tmp_path / "events.jsonl.1")  # logrotate: move, then HUP
    proc.proc.send_signal(signal.SIGHUP)
    second = unique_comm("rot")
    deadline = time.monotonic() + 10
    while not log_records(log, comm=second) and time.monotonic() < deadline:
        calls(second, 1)  # the first write after the signal reopens
        time.sleep(0.2)
    assert log_records(log, comm=second) and not log_records(log, comm=first)
    assert log_records(tmp_path / "events.jsonl.1", comm=first)
    proc.assert_alive()
