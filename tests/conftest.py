"""Shared fixtures: a real `inotrace serve` / `trace`, a workload, scraping."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = Path(__file__).resolve().parent / "workloads"
INOTRACE = [sys.executable, "-m", "inotrace"]
NOBODY = 65534
# The kernel-matrix lane runs the same tests once per backend (`--probes`).
PROBES = os.environ.get("INOTRACE_TEST_PROBES", "")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI a skipped test is a failure: BPF tests are the point."""
    if not os.environ.get("CI"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if skipped:
        reporter.write_line(f"CI: {skipped} test(s) skipped; skips are failures here", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def rng() -> random.Random:
    """A random source a failure can replay: the seed is printed (pytest shows
    it with the failure) and INOTRACE_TEST_SEED sets it."""
    seed = int(os.environ.get("INOTRACE_TEST_SEED") or secrets.randbelow(1 << 32))
    print(f"replay with INOTRACE_TEST_SEED={seed}")
    return random.Random(seed)


def kernel_has_kprobes() -> bool:
    """CONFIG_KPROBES, read from the kernel's own symbol table (no tracefs needed)."""
    with open("/proc/kallsyms") as f:
        return any(line.rstrip().endswith(" register_kprobe") for line in f)


def tracefs_dir() -> Path:
    """Where tracefs is mounted (inotrace mounts it if nobody had)."""
    with open("/proc/mounts") as f:
        for line in f:
            fields = line.split()
            if fields[2] == "tracefs":
                return Path(fields[1])
    raise AssertionError("tracefs is not mounted, yet inotrace started")


@functools.cache
def kernel_has_fentry() -> bool:
    """Whether this kernel runs BPF trampolines, found by attaching a trivial
    fexit (BCC attaches kretfunc__* at construction). BCC's support_kfunc()
    cannot say: it answers yes on kernels where loading fails (no ftrace)."""
    from bcc import BPF  # noqa: PLC0415 - only BPF tests need bcc

    try:
        bpf = BPF(text=b"int kretfunc__do_sys_openat2(unsigned long long *ctx) { return 0; }")
    except Exception:
        return False
    bpf.cleanup()
    return True


def kernel_has_task_pt_regs() -> bool:
    """bpf_task_pt_regs (5.15), which counting the kernel's own opens needs."""
    from inotrace.btf import Btf  # noqa: PLC0415

    with Btf("/sys/kernel/btf/vmlinux") as btf:
        return btf.has_helper("task_pt_regs")


def expected_backend(probe: str) -> str:
    """The backend a running inotrace must have attached `probe` with: the one
    asked for (INOTRACE_TEST_PROBES), else auto's choice, read from the kernel:
    fentry where it has trampolines, else the syscall tracepoint where it has
    one, else a kprobe."""
    if PROBES and PROBES != "auto":
        return PROBES
    if kernel_has_fentry():
        return "fentry"
    tracefs = tracefs_dir()
    if all((tracefs / "events/syscalls" / f"sys_{p}_{probe}").is_dir() for p in ("enter", "exit")):
        return "tracepoint"
    assert kernel_has_kprobes(), f"no tracepoint for {probe} and no kprobes: auto could not have started"
    return "kprobe"


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 10) -> Any:
    """Wait for a named condition, with a deadline; the condition's (truthy) value."""
    deadline = time.monotonic() + timeout
    while not (got := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting until {what}")
        time.sleep(0.05)
    return got


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def unique_comm(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(3)}"[:15]


def run_workload(comm: str, as_user: int | None = None) -> dict:
    """Run the known inotify workload; return what it says it did."""
    # World-readable copies: CI's clone may sit in a 0700 directory that
    # another uid cannot enter. The distribution's python, not our venv.
    base = tempfile.mkdtemp(prefix="inotrace-wl-")
    os.chmod(base, 0o777)
    script = os.path.join(base, "inotify_calls.py")
    shutil.copy(WORKLOADS / "inotify_calls.py", script)
    work = os.path.join(base, "files")
    os.mkdir(work)
    os.chmod(work, 0o777)
    cmd = ["/usr/bin/python3", script, comm, work]
    if as_user is not None:
        cmd = ["setpriv", f"--reuid={as_user}", f"--regid={as_user}", "--clear-groups", *cmd]
    try:
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=60).stdout
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return json.loads(out)


class Running:
    """A background inotrace process, stopped with SIGTERM on exit."""

    def __init__(self, args: list[str]) -> None:
        self.stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in stop()
        if PROBES and args and args[0] in ("serve", "trace") and not any(a.startswith("--probes") for a in args):
            args = [args[0], f"--probes={PROBES}", *args[1:]]
        self.proc = subprocess.Popen(
            [*INOTRACE, *args], stdout=subprocess.PIPE, stderr=self.stderr, text=True, cwd=ROOT
        )

    def err_text(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read()

    def wait_for_log(self, needle: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.err_text():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"inotrace exited {self.proc.returncode}: {self.err_text()}")
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {needle!r}: {self.err_text()}")

    def assert_alive(self) -> None:
        """For a process shared by several tests: still running?"""
        assert self.proc.poll() is None, f"inotrace exited {self.proc.returncode}: {self.err_text()}"

    def stop(self) -> int:
        terminate(self.proc)
        self.stderr.close()
        return self.proc.returncode


def terminate(proc: subprocess.Popen, group: bool = False, timeout: float = 30) -> int:
    """SIGTERM (to its process group with `group`), SIGKILL after `timeout` s; the exit status."""
    if proc.poll() is None:
        send = functools.partial(os.killpg, proc.pid) if group else proc.send_signal
        send(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            send(signal.SIGKILL)
            proc.wait()
    return proc.returncode


def _serving() -> Iterator[callable]:
    started: list[Running] = []

    def start(*extra: str) -> tuple[Running, str]:
        port = free_port()
        r = Running(["serve", f"--web.listen-address=127.0.0.1:{port}", *extra])
        started.append(r)
        r.wait_for_log("serving on")
        return r, f"http://127.0.0.1:{port}"

    yield start
    for r in started:
        code = r.stop()
        assert code == 0, f"serve exited {code}: {r.err_text()}"


@pytest.fixture
def serve() -> Iterator[callable]:
    yield from _serving()


@contextlib.contextmanager
def exporter_running(*extra: str) -> Iterator[tuple[Running, str]]:
    """One exporter for the block (a wider fixture's): stopped at its end,
    where it must exit 0."""
    serving = _serving()
    start = next(serving)
    try:
        yield start(*extra)
    finally:
        with contextlib.suppress(StopIteration):
            next(serving)


@dataclass(frozen=True)
class SharedExporter:
    proc: Running
    url: str
    log: Path  # its --log-events file (tests select their own pids or comms)


@pytest.fixture(scope="session")
def shared_exporter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedExporter]:
    """One exporter for every test that can share it (the accounting, opens
    and lane files): it must stay exact across all their workloads and
    whatever else runs meanwhile, as on a real host (and under the lane's
    emulation each start costs ~20 s). At debug: its log says what each
    correction was."""
    log = tmp_path_factory.mktemp("shared-exporter") / "events.jsonl"
    with exporter_running("--top-processes=100000", f"--log-events={log}", "--log.level=debug") as (proc, url):
        yield SharedExporter(proc, url, log)


def log_records(path: Path, **match: object) -> list[dict]:
    """The JSON records of a --log-events file whose fields equal `match`
    (whole lines: the writer may be in the middle of one)."""
    if not path.exists():
        return []
    # a line being written may be read half-way: only whole lines count
    lines = path.read_text().split("\n")[:-1]
    # the shared exporter's log holds the whole session: parse only lines that can match
    needles = [json.dumps(v) for v in match.values()]
    recs = [json.loads(line) for line in lines if line.strip() and all(n in line for n in needles)]
    return [r for r in recs if all(r.get(k) == v for k, v in match.items())]


def wait_for_records(path: Path, count: int, timeout: float = 10, **match: object) -> list[dict]:
    """Wait for `count` matching records in the log (the main loop writes
    them after it drains the ring, a poll after the call); exactly `count`."""
    deadline = time.monotonic() + timeout
    while len(got := log_records(path, **match)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(got) == count, f"expected {count} records matching {match}, got {len(got)}: {got[-5:]}"
    return got


def http_get(url: str, timeout: float = 10) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def run_cli(
    *args: str, user: int | None = None, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    cmd = [*INOTRACE, *args]
    if user is not None:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    return subprocess.run(
        cmd, check=False, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})}
    )


def assert_one_line_error(res: subprocess.CompletedProcess[str], needle: str, code: int = 1) -> None:
    assert res.returncode == code, (res.returncode, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("inotrace: "), lines
    assert needle in lines[0], lines[0]
    assert "Traceback" not in res.stderr


@contextlib.contextmanager
def tmpfs_on(point: Path, *options: str) -> Iterator[Path]:
    """A tmpfs mounted on the directory `point` for the block; never left behind."""
    subprocess.run(["mount", "-t", "tmpfs", *options, "inotrace-test", str(point)], check=True)
    try:
        yield point
    finally:
        if subprocess.run(["umount", str(point)], check=False).returncode:
            subprocess.run(["umount", "-l", str(point)], check=False)
