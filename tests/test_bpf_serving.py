"""The serving path under faults: a full disk, logrotate, a scrape storm, a stalled loop, name cycling."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import http_get, log_records, tmpfs_on, unique_comm, wait_for_records

pytestmark = pytest.mark.bpf


@contextlib.contextmanager
def tiny_tmpfs(kib: int) -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="inotrace-full-"))
    try:
        with tmpfs_on(d, "-o", f"size={kib}k"):
            yield d
    finally:
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
        # Free the space only once the main loop is past the burst: its records
        # still to come would fill the room again (the cause of an earlier flake).
        deadline = time.monotonic() + 30
        while len(log_records(log, comm=comm, event="syscall")) + dropped(url) < 401:
            assert time.monotonic() < deadline, f"burst not written or dropped in 30 s: {dropped(url)} dropped"
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
        text = log.read_text()  # the writer is gone: every line is whole and parses
        assert text.endswith("\n") and all(json.loads(line) for line in text.splitlines())


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


def counter(text: str, name: str) -> float:
    return sum(s.value for fam in text_string_to_metric_families(text) for s in fam.samples if s.name == name)


def scrape(url: str) -> tuple[int, str]:
    return http_get(url, timeout=60)  # a storm's slowest answer can take seconds


STORM = 400


@pytest.mark.parametrize("cap", [40, 1])
def test_scrape_storm_is_answered_or_refused(serve, cap: int) -> None:
    """400 scrapes at once: each one gets a whole exposition or a 503 saying
    why, and every 503 is counted (40: the default; 1: the 503s for sure)."""
    proc, url = serve(f"--web.max-requests={cap}")
    go = threading.Barrier(STORM)
    answers: list[tuple[int, str] | BaseException] = [OSError("not run")] * STORM

    def one(i: int) -> None:
        go.wait()
        try:
            answers[i] = scrape(url + "/metrics")
        except BaseException as e:
            answers[i] = e

    threads = [threading.Thread(target=one, args=(i,)) for i in range(STORM)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    errors = [a for a in answers if isinstance(a, BaseException)]
    assert not errors, f"{len(errors)} scrapes failed, e.g. {errors[:3]}"
    codes = [a[0] for a in answers if not isinstance(a, BaseException)]
    assert set(codes) <= {200, 503} and 200 in codes, sorted(set(codes))
    if cap == 1:
        assert 503 in codes
    for code, body in answers:  # type: ignore[misc]
        if code == 200:
            assert counter(body, "inotrace_build_info") == 1
        else:
            assert body == f"limit of {cap} concurrent requests reached\n"
    _status, text = scrape(url + "/metrics")
    assert counter(text, "inotrace_http_requests_rejected_total") == codes.count(503)
    proc.assert_alive()


def test_healthy_fails_while_the_loop_is_stuck(serve, tmp_path: Path) -> None:
    """The audit log is a pipe nobody reads: the main loop blocks writing to it.
    /-/healthy says so (503) while /metrics still answers, and recovers once
    the pipe is read again."""
    fifo = tmp_path / "events.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # so serve's open does not block
    draining = threading.Event()
    drainer = threading.Thread(target=_drain, args=(reader, draining), daemon=True)
    try:
        proc, url = serve(f"--log-events={fifo}", "--sample-interval=0.05")
        assert scrape(url + "/-/healthy") == (200, "ok\n")
        calls(unique_comm("stuck"), 2000)  # ~400 KiB of records: far more than the pipe holds
        deadline = time.monotonic() + 30
        while (health := scrape(url + "/-/healthy"))[0] == 200:
            assert time.monotonic() < deadline, "/-/healthy still 200 after 30 s of a stuck loop"
            time.sleep(0.2)
        assert health[0] == 503 and health[1].startswith("main loop has not turned for "), health
        assert scrape(url + "/metrics")[0] == 200  # serving goes on; only the loop is stuck
        drainer.start()
        deadline = time.monotonic() + 30
        while scrape(url + "/-/healthy")[0] != 200:
            assert time.monotonic() < deadline, "/-/healthy not back to 200 30 s after the pipe was read"
            time.sleep(0.2)
        proc.assert_alive()
    finally:
        draining.set()  # the reader closes: a loop still writing gets EPIPE (dropped, counted), never blocks
        if drainer.is_alive():
            drainer.join()
        else:
            os.close(reader)


def _drain(fd: int, done: threading.Event) -> None:
    try:
        while not done.is_set():
            if select.select([fd], [], [], 0.1)[0]:
                with contextlib.suppress(BlockingIOError):
                    os.read(fd, 1 << 16)
    finally:
        os.close(fd)


def add_watch_series(url: str) -> dict[str, float]:
    """inotrace_inotify_add_watch_total by comm (summed over uid and origin)."""
    _status, text = scrape(url + "/metrics")
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == "inotrace_inotify_add_watch_total":
                out[s.labels["comm"]] = out.get(s.labels["comm"], 0.0) + s.value
    return out


CYCLE = (
    "import ctypes,sys; l=ctypes.CDLL(None); fd=l.inotify_init1(0)\n"
    "for i in range(int(sys.argv[2])):\n"
    "    l.prctl(15, f'{sys.argv[1]}{i}'.encode(), 0, 0, 0)\n"
    "    for _ in range(int(sys.argv[3])): l.inotify_add_watch(fd, b'/tmp', 2)"
)


def test_name_cycling_does_not_take_the_comm_slots_for_good(serve) -> None:
    """A process cycles through 30 names (prctl), 100 add_watch calls each, and
    takes all 5 slots; a comm that comes later and is busier still gets its
    own series, exact, and no series goes down."""
    proc, url = serve("--metrics.max-comms=5")
    hostile = unique_comm("cy")[:10]
    subprocess.run(["/usr/bin/python3", "-c", CYCLE, hostile, "30", "100"], check=True)
    before = add_watch_series(url)
    assert len(before.keys() - {"other"}) == 5 and all(c.startswith(hostile) for c in before.keys() - {"other"})
    late = unique_comm("late")
    calls(late, 300)
    after = add_watch_series(url)
    assert after.get(late) == 300, after
    assert len(after.keys() - {"other"}) <= 5
    for comm in before.keys() & after.keys():
        assert after[comm] >= before[comm], comm
    assert sum(after.values()) >= sum(before.values()) + 300  # the evicted one's count moved into other
    proc.assert_alive()


def test_name_filter_returns_just_the_families_asked_for(serve) -> None:
    """`?name[]=` (Prometheus' and client_python's filter) works: the collector describes its families."""
    proc, url = serve()
    status, text = scrape(url + "/metrics?name[]=inotrace_build_info&name[]=inotrace_inotify_add_watch_total")
    assert status == 200
    names = {fam.name for fam in text_string_to_metric_families(text)}
    assert names == {"inotrace_build_info", "inotrace_inotify_add_watch"}, names
    assert counter(text, "inotrace_build_info") == 1
    proc.assert_alive()
