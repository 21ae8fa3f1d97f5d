"""The serving path under faults: an audit log on a full disk, logrotate."""

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


def test_full_disk_drops_counted_and_writing_resumes(serve) -> None:
    with tiny_tmpfs(64) as d:
        log = d / "events.jsonl"
        proc, url = serve(f"--log-events={log}")
        filler = d / "filler"
        filler.write_bytes(b"x" * (60 << 10))  # tmpfs counts pages: a few left for the log
        comm = unique_comm("full")
        calls(comm, 400)  # ~400 records of ~500 bytes: far more than fits
        deadline = time.monotonic() + 10
        while dropped(url) == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        lost = dropped(url)
        assert lost > 0
        proc.assert_alive()
        err = proc.err_text()
        assert "Traceback" not in err
        assert err.count("write failed (ENOSPC)") == 1, err  # one line per episode
        # every line that made it still parses (a cut record is ended by a newline)
        kept = log_records(log)
        assert kept
        filler.unlink()
        comm2 = unique_comm("back")
        calls(comm2, 5)  # an init and 5 add_watch: written again
        wait_for_records(log, 6, comm=comm2, event="syscall")
        deadline = time.monotonic() + 20  # the episode ends after 5 s of writes without a failure
        while "writable again" not in proc.err_text() and time.monotonic() < deadline:
            calls(unique_comm("tick"), 1)
            time.sleep(0.5)
        assert "writable again" in proc.err_text()
        assert dropped(url) == lost  # no more drops once there is room
        assert proc.stop() == 0  # before the unmount: it holds the log open


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
