"""Opens counted in the kernel, io_uring opens, and origins, on the real kernel."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import (
    NOBODY,
    PROBES,
    WORKLOADS,
    Running,
    SharedExporter,
    expected_backend,
    http_get,
    kernel_has_fentry,
    kernel_has_kprobes,
    kernel_has_task_pt_regs,
    terminate,
    unique_comm,
    wait_until,
)

pytestmark = pytest.mark.bpf


def samples(url: str, name: str, **match: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Samples of one metric whose labels include `match`, keyed by their other labels."""
    _status, text = http_get(url + "/metrics")
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in match.items()):
                out[tuple(sorted((k, v) for k, v in s.labels.items() if k not in match))] = s.value
    return out


@pytest.fixture
def url(shared_exporter: SharedExporter) -> str:
    """The shared exporter: every test counts its own unique comm, so
    counters the others added cannot leak into its exact comparisons."""
    shared_exporter.proc.assert_alive()
    return shared_exporter.url


@pytest.fixture
def workdir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="inotrace-opens-"))
    os.chmod(d, 0o777)
    yield d
    shutil.rmtree(d, ignore_errors=True)


class OpensTrace:
    """A `trace --opens` filtering in the kernel on `comms` (role -> comm) or
    on `pid`; a thread keeps every line it prints. The file shares one (a
    start costs ~20 s under the lane's emulation), one comm per test."""

    def __init__(self, comms: dict[str, str] | None = None, pid: int | None = None) -> None:
        self.comms = comms or {}
        filters = [f"--comm={c}" for c in self.comms.values()] + ([f"--pid={pid}"] if pid is not None else [])
        self.tr = Running(["trace", "--opens", *filters])
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.tr.wait_for_log("tracing inotify calls")

    def _read(self) -> None:
        for line in self.tr.proc.stdout:  # type: ignore[union-attr]
            self.lines.append(line)

    def opens(self, comm: str | None = None) -> list[dict]:
        """The open records printed so far (of `comm`)."""
        want = '"event":"open"' if comm is None else f'"comm":"{comm}"'
        recs = (json.loads(x) for x in list(self.lines) if want in x.replace(" ", ""))
        return [r for r in recs if r["event"] == "open"]

    def wait_opens(self, comm: str, count: int, timeout: float = 15) -> list[dict]:
        """Exactly `count` open records of `comm` once that many are out."""
        deadline = time.monotonic() + timeout
        while len(got := self.opens(comm)) < count and time.monotonic() < deadline:
            self.tr.assert_alive()
            time.sleep(0.05)
        assert len(got) == count, f"{len(got)} open records of {comm}, wanted {count}: {got[-5:]}"
        return got

    def stop(self) -> int:
        """Every open record the trace took off the ring, it printed: the
        kernel filtered out every other open (a noisy neighbour's among
        them). Returns how many it took."""
        assert terminate(self.tr.proc) == 0, self.tr.err_text()
        self.reader.join(timeout=30)
        err = self.tr.err_text()
        self.tr.stderr.close()
        taken = re.search(r"took (\d+) records from the kernel \((\d+) opens, 0 undecodable\)", err)
        assert taken, err
        assert int(taken.group(2)) == len(self.opens()), err
        return int(taken.group(2))


@pytest.fixture(scope="module")
def opens_trace() -> Iterator[OpensTrace]:
    tr = OpensTrace(comms={role: unique_comm(role) for role in ("op", "flt", "kop")})
    yield tr
    tr.stop()


def build(source: str, out: Path, *flags: str) -> Path:
    subprocess.run(["gcc", "-O2", "-Wall", "-o", str(out), str(WORKLOADS / source), *flags], check=True)
    return out


def test_opens_are_counted_exactly_and_streamed(url: str, opens_trace: OpensTrace, workdir: Path) -> None:
    comm = opens_trace.comms["op"]
    script = workdir / "opens.py"
    shutil.copy(WORKLOADS / "opens.py", script)
    cmd = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    out = subprocess.run(
        [*cmd, "/usr/bin/python3", str(script), comm, str(workdir)], check=False, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    did = json.loads(out.stdout)
    assert did["ok"] == 23 and did["errors"] == {"ENOENT": 11, "ENOTDIR": 3, "EACCES": 2, "EEXIST": 1}

    # the workload has exited, so every open's exit hook has run: counted, read at this scrape
    ok = samples(url, "inotrace_opens_total", comm=comm, uid=str(NOBODY))
    assert ok == {(("origin", "user"),): 23}
    errs = samples(url, "inotrace_open_errors_total", comm=comm, uid=str(NOBODY))
    assert {dict(k)["errno"]: v for k, v in errs.items()} == did["errors"]
    # the stream: one record per open, batched; the kernel's ret and the caller's path
    recs = opens_trace.wait_opens(comm, 40)
    backend = expected_backend("open")
    by_call: dict[str, int] = {}
    for r in recs:
        by_call[r["syscall"]] = by_call.get(r["syscall"], 0) + 1
        assert (r["pid"], r["uid"], r["euid"], r["origin"], r["backend"]) == (
            did["pid"],
            NOBODY,
            NOBODY,
            "user",
            backend,
        )
        assert r["user_memory"] == ["args.pathname"] and "args.pathname" in r["untrusted"]
    if backend in ("kprobe", "fentry"):
        # one exit hook on do_sys_openat2 sees open, openat, openat2 and creat alike
        assert by_call == {"do_sys_openat2": 40}
    else:
        assert by_call == did["calls"]
    # by path: under kprobe and fentry every record says do_sys_openat2
    creats = [r for r in recs if (r["args"]["pathname"] or "").startswith(str(workdir / "made"))]
    assert [r["args"]["pathname"] for r in creats] == [str(workdir / f"made{i}") for i in range(3)]
    assert all({"O_WRONLY", "O_CREAT", "O_TRUNC"} <= set(r["args"]["flags_names"]) for r in creats)
    assert sum(1 for r in recs if r["errno"] == "EACCES" and r["args"]["pathname"] == "/etc/shadow") == 2


# Renames itself, says so (its start-up's opens are over), then waits for a
# line on stdin before opening /dev/null N times.
OPENER = r"""
import ctypes, os, sys
ctypes.CDLL(None).prctl(15, sys.argv[1].encode(), 0, 0, 0)
print("ready", flush=True)
sys.stdin.readline()
for _ in range(int(sys.argv[2])):
    os.close(os.open("/dev/null", os.O_RDONLY))
print("done", flush=True)
"""


def _opener(comm: str, opens: int) -> subprocess.Popen:
    return subprocess.Popen(
        ["/usr/bin/python3", "-c", OPENER, comm, str(opens)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _opens_of(comm: str, noise: int) -> tuple[subprocess.Popen, subprocess.Popen]:
    """Two openers, each ready and waiting: `comm` (100 opens) and a noisy neighbour (`noise` opens)."""
    mine, loud = _opener(comm, 100), _opener(unique_comm("noise"), noise)
    for p in (loud, mine):
        assert p.stdout.readline() == "ready\n"  # type: ignore[union-attr]
    return mine, loud


def _go(*procs: subprocess.Popen) -> None:
    for p in procs:
        p.stdin.write("go\n")  # type: ignore[union-attr]
        p.stdin.flush()  # type: ignore[union-attr]
    for p in procs:
        assert p.stdout.readline() == "done\n"  # type: ignore[union-attr]


def _end(*procs: subprocess.Popen) -> None:
    for p in procs:
        p.kill()
        p.wait()


def test_trace_filters_opens_in_the_kernel(opens_trace: OpensTrace) -> None:
    """`trace --opens --comm X` (opensnoop's trace_allowed()): the kernel
    streams X's opens and no others, so a noisy neighbour's 2000 opens never
    reach user space. The trace prints X's 100, and when it stops, the count
    of open records it took off the ring is what it printed (OpensTrace.stop)."""
    comm = opens_trace.comms["flt"]
    mine, loud = _opens_of(comm, 2000)
    try:
        _go(loud, mine)
    finally:
        _end(mine, loud)
    opens = opens_trace.wait_opens(comm, 100)
    assert {(r["comm"], r["pid"]) for r in opens} == {(comm, mine.pid)}


def test_trace_filters_opens_by_pid_in_the_kernel() -> None:
    """`trace --opens --pid N`: the same, by pid; the trace's own count of
    open records taken off the ring is exactly N's 100."""
    comm = unique_comm("flt")
    mine, loud = _opens_of(comm, 2000)
    try:
        tr = OpensTrace(pid=mine.pid)
        try:
            _go(loud, mine)
        finally:
            taken = tr.stop()
    finally:
        _end(mine, loud)
    opens = tr.opens()
    assert len(opens) == 100 and {(r["comm"], r["pid"]) for r in opens} == {(comm, mine.pid)}
    assert taken == 100


def test_io_uring_opens_inline_and_by_a_worker(url: str, workdir: Path) -> None:
    prog = build("iou_open.c", workdir / "iou_open", "-luring")
    (workdir / "file").write_text("x")
    comm = unique_comm("iou")
    out = subprocess.run(
        [str(prog), comm, str(workdir / "file"), str(workdir / "missing")], check=False, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["inline"] >= 0 and res["async"] >= 0 and res["missing"] == -2

    # every completion was reaped before the program exited: all counted by now
    ok = samples(url, "inotrace_opens_total", comm=comm, uid="0")
    assert ok == {(("origin", "io_uring"),): 1, (("origin", "io_uring_worker"),): 1}
    assert samples(url, "inotrace_open_errors_total", comm=comm, uid="0") == {(("errno", "ENOENT"),): 1}


def test_usermode_helper_origin(url: str, workdir: Path) -> None:
    """A core_pattern pipe helper, really started by the kernel, is tagged usermode_helper."""
    name = unique_comm("umh")
    marker = workdir / "helper-ran"
    helper = build("umh_helper.c", workdir / name, "-static", f'-DMARKER="{marker}"')
    pattern = Path("/proc/sys/kernel/core_pattern")
    saved = pattern.read_text()
    victim = None
    try:
        pattern.write_text(f"|{helper} %p\n")
        victim = subprocess.Popen(["prlimit", "--core=unlimited", "sleep", "60"])
        time.sleep(0.2)
        os.kill(victim.pid, signal.SIGSEGV)
        victim.wait(timeout=10)
        deadline = time.monotonic() + 20
        while not marker.exists():
            assert time.monotonic() < deadline, "the core_pattern helper never ran"
            time.sleep(0.05)
    finally:
        pattern.write_text(saved)
        if victim is not None and victim.poll() is None:
            victim.kill()
            victim.wait()
    assert pattern.read_text() == saved

    # the helper may still be running once its marker exists: wait for its last call, then compare exactly
    wait_until(
        lambda: (
            sum(samples(url, "inotrace_opens_total", comm=name, uid="0").values()) >= 2
            and sum(samples(url, "inotrace_inotify_init_total", comm=name, uid="0").values()) >= 1
        ),
        "the helper's 2 opens and its inotify_init are counted",
    )
    assert samples(url, "inotrace_opens_total", comm=name, uid="0") == {(("origin", "usermode_helper"),): 2}
    assert samples(url, "inotrace_inotify_init_total", comm=name, uid="0") == {(("origin", "usermode_helper"),): 1}


def _kernel_open_backend() -> str | None:
    """What counts do_filp_open here: the backend asked for if it can (fentry,
    kprobe), auto's first that works, none under --probes tracepoint, and none
    on a kernel without bpf_task_pt_regs (< 5.15: which syscall is in flight
    cannot be told there, so the probe is left out)."""
    if not kernel_has_task_pt_regs():
        return None
    if PROBES in ("fentry", "kprobe"):
        return PROBES
    if PROBES == "tracepoint":
        return None
    return "fentry" if kernel_has_fentry() else "kprobe" if kernel_has_kprobes() else None


def _kernel_opens(workdir: Path, name: str) -> int:
    """Run kernel_opens.c as `name`: an exec (one failing, one of /bin/true)
    and a core dump into `workdir`. Returns the crashed process's pid."""
    prog = build("kernel_opens.c", workdir / name, "-static")
    assert subprocess.run([str(prog), "exec"], check=False).returncode == 0  # /bin/true's status
    pattern = Path("/proc/sys/kernel/core_pattern")
    saved = pattern.read_text()
    try:
        pattern.write_text(f"{workdir}/core.%p\n")
        crash = subprocess.run([str(prog), "crash"], check=False)
    finally:
        pattern.write_text(saved)
    assert pattern.read_text() == saved
    assert crash.returncode == -signal.SIGSEGV
    victim = int(next(workdir.glob("core.*")).name.split(".")[1])  # the kernel really dumped it
    return victim


def test_kernel_opens_exec_and_core_dump(url: str, opens_trace: OpensTrace, workdir: Path) -> None:
    """Opens no syscall asked for: exec's binary and interpreter (and an exec
    of a missing file), and a core-dump file. The fentry and kprobe backends
    see them at do_filp_open, origin `kernel`, once each, under the comm that
    was running (the exec's opens come before the new comm); the stream
    carries the kernel's own copy of each path. The syscall tracepoints
    cannot see them at all: the tracepoint backend counts none (its blind
    spot, as the README says). A last open of /dev/null by a process of the
    same comm closes the stream: what came before it is all there is."""
    name = opens_trace.comms["kop"]
    victim = _kernel_opens(workdir, name)
    last = _opener(name, 1)
    try:
        assert last.stdout.readline() == "ready\n"  # type: ignore[union-attr]
        _go(last)
    finally:
        _end(last)
    backend = _kernel_open_backend()
    recs = opens_trace.wait_opens(name, 1 if backend is None else 5)
    assert [(r["pid"], r["origin"], r["args"]["pathname"]) for r in recs[-1:]] == [(last.pid, "user", "/dev/null")]
    recs = recs[:-1]
    opens = samples(url, "inotrace_opens_total", comm=name, uid="0")
    errors = samples(url, "inotrace_open_errors_total", comm=name, uid="0")
    if backend is None:
        assert (opens, errors, recs) == ({(("origin", "user"),): 1}, {}, [])
        # the probe is not there at all: no row says it failed either
        assert samples(url, "inotrace_probe_attached", probe="kernel_open") == {}
        return
    assert opens == {(("origin", "kernel"),): 3, (("origin", "user"),): 1}
    assert errors == {(("errno", "ENOENT"),): 1}
    got = sorted((r["args"]["pathname"], r["errno"], r["origin"], r["syscall"], r["user_memory"]) for r in recs)
    assert got == sorted(
        [
            ("/nonexistent/inotrace-test", "ENOENT", "kernel", "do_filp_open", []),
            ("/bin/true", None, "kernel", "do_filp_open", []),
            ("/lib64/ld-linux-x86-64.so.2", None, "kernel", "do_filp_open", []),
            (f"{workdir}/core.{victim}", None, "kernel", "do_filp_open", []),
        ]
    ), recs
    assert all(r["backend"] == backend and "args.pathname" in r["untrusted"] for r in recs), recs


# Opens under three identities in turn, pinned to one CPU (yielding it
# after every open with "yield", so that two of these interleave there):
# comm A, then renamed to B, then B with euid nobody, then B as root again.
IDENTITIES = r"""
import ctypes, os, sys
cpu, a, b, nobody, n = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
yields = sys.argv[6] == "yield"
os.sched_setaffinity(0, {cpu})
prctl = ctypes.CDLL(None).prctl
print("ready", flush=True)
sys.stdin.readline()
def opens(k):
    for _ in range(k):
        os.close(os.open("/dev/null", os.O_RDONLY))
        if yields:
            os.sched_yield()
prctl(15, a.encode(), 0, 0, 0)
opens(n)
prctl(15, b.encode(), 0, 0, 0)
opens(2 * n)
os.seteuid(nobody)
opens(3 * n)
os.seteuid(0)
opens(4 * n)
print("done", flush=True)
"""


@pytest.mark.parametrize("together", [1, 2])
def test_open_counts_follow_renames_and_euid_changes(url: str, together: int) -> None:
    """The counters' per-CPU cache of the last key (successful syscall opens)
    must miss on a rename, an euid change or another process: one process
    alone on a CPU, or two interleaved there, each renaming itself and
    changing its euid between opens, are counted exactly under every identity."""
    cpu = sorted(os.sched_getaffinity(0))[-1]
    n = 50
    names = [(unique_comm("ida"), unique_comm("idb")) for _ in range(together)]
    how = "yield" if together > 1 else "run"
    procs = [
        subprocess.Popen(
            ["/usr/bin/python3", "-c", IDENTITIES, str(cpu), a, b, str(NOBODY), str(n), how],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for a, b in names
    ]
    try:
        for p in procs:
            assert p.stdout.readline() == "ready\n"  # type: ignore[union-attr]
        for p in procs:
            p.stdin.write("go\n")  # type: ignore[union-attr]
            p.stdin.flush()  # type: ignore[union-attr]
        for p in procs:
            assert p.stdout.readline() == "done\n"  # type: ignore[union-attr]
            assert p.wait(timeout=30) == 0
    finally:
        for p in procs:
            p.kill()
            p.wait()
    for a, b in names:
        assert samples(url, "inotrace_opens_total", comm=a) == {(("origin", "user"), ("uid", "0")): n}
        assert samples(url, "inotrace_opens_total", comm=b) == {
            (("origin", "user"), ("uid", "0")): 6 * n,
            (("origin", "user"), ("uid", str(NOBODY))): 3 * n,
        }
