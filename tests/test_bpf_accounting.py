"""Exact live accounting against real programs, compared with the kernel's truth.

After each step the exporter's per-user gauges (the kernel's own counters)
and per-process gauges (the live model) must equal the de-duplicated fdinfo
ground truth computed here without inotrace's code, exactly.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

import groundtruth
from conftest import (
    INOTRACE,
    NOBODY,
    WORKLOADS,
    Running,
    SharedExporter,
    exporter_running,
    free_port,
    http_get,
    log_records,
    run_cli,
    wait_for_records,
    wait_until,
)
from inotrace import snapshot
from inotrace.btf import inotify_watch_cost

pytestmark = pytest.mark.bpf


def exported(url: str) -> tuple[dict[str, dict], dict[str, float]]:
    _status, text = http_get(url + "/metrics")
    per_uid: dict[int, list[int]] = {}
    per_pid: dict[int, list[int]] = {}
    other: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name in ("inotrace_user_inotify_instances", "inotrace_user_inotify_watches"):
                row = per_uid.setdefault(int(s.labels["uid"]), [0, 0])
                row[s.name.endswith("watches")] += int(s.value)
            elif s.name == "inotrace_user_inotify_watch_memory_bytes":
                key = f"watch_memory_bytes uid={s.labels['uid']}"
                other[key] = other.get(key, 0) + s.value  # summed over user namespaces, as per_uid is
            elif s.name in ("inotrace_process_inotify_instances", "inotrace_process_inotify_watches"):
                row = per_pid.setdefault(int(s.labels["pid"]), [0, 0])
                row[s.name.endswith("watches")] += int(s.value)
            elif not s.labels or set(s.labels) == {"kind"} or set(s.labels) == {"resource"}:
                other[s.name + json.dumps(s.labels, sort_keys=True)] = s.value
    return {"uid": per_uid, "pid": per_pid}, other


def metric_value(url: str, name: str, **labels: str) -> float | None:
    _status, text = http_get(url + "/metrics")
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and s.labels == labels:
                return s.value
    return None


def snapshot_summary() -> dict[str, dict]:
    """inotrace's procfs snapshot (what `snapshot --json` prints; called here,
    not run: a Python start per comparison is seconds in the lane's guests) in
    the same shape as groundtruth.summary()."""
    rep = snapshot.report(snapshot.take("/proc"), "/proc")
    per_uid = {u["uid"]: [u["instances"], u["watches"]] for u in rep["users"]}
    per_pid = {p["pid"]: [p["instances"], p["watches"]] for p in rep["processes"]}
    return {"uid": per_uid, "pid": per_pid}


def settled_truth(timeout: float = 15) -> dict[str, dict]:
    """The fdinfo ground truth once it stops moving (two reads 0.1 s apart agree)."""
    deadline = time.monotonic() + timeout
    prev = groundtruth.summary()
    while True:
        time.sleep(0.1)
        cur = groundtruth.summary()
        if cur == prev:
            return cur
        assert time.monotonic() < deadline, "the ground truth kept moving"
        prev = cur


MISSED = (
    'inotrace_accounting_corrections_total{"kind": "instance_missed"}',
    'inotrace_accounting_corrections_total{"kind": "watch_missed"}',
)


def assert_exact(url: str) -> dict[str, float]:
    """Exporter == snapshot == settled ground truth, in one look, and the event
    path needed no correction: nothing it should have seen was missed."""
    truth = settled_truth()
    got, other = exported(url)
    assert got == truth, f"exporter != ground truth:\n{got}\n{truth}"
    assert snapshot_summary() == truth
    assert other['inotrace_accounting_drift{"resource": "watches"}'] == 0
    assert other['inotrace_accounting_drift{"resource": "instances"}'] == 0
    # the kernel's own per-watch cost (test_btf checks it against bpftool), per user
    cost = inotify_watch_cost("/sys/kernel/btf/vmlinux")
    assert cost
    memory = {k: v for k, v in other.items() if k.startswith("watch_memory_bytes ")}
    assert memory == {f"watch_memory_bytes uid={uid}": watches * cost for uid, (_, watches) in got["uid"].items()}
    missed = [other[k] for k in MISSED]
    if missed != [0, 0] and SHARED:
        said = [ln for ln in SHARED[0].err_text().splitlines() if "correction" in ln]
        raise AssertionError(f"the event path missed instances or watches {missed}:\n" + "\n".join(said))
    assert missed == [0, 0], "the event path missed instances or watches"
    return other


SHARED: list[Running] = []  # the shared exporter, whose debug log says what each correction was


@pytest.fixture(scope="module")
def shared(shared_exporter: SharedExporter) -> tuple[Running, str, Path]:
    assert groundtruth.kcmp_works()
    SHARED[:] = [shared_exporter.proc]
    return shared_exporter.proc, shared_exporter.url, shared_exporter.log


@pytest.fixture
def exporter(shared: tuple[Running, str, Path]) -> str:
    """The file's one exporter, still running: each test's workload adds to
    what it has already seen, as on a real host, and it must stay exact."""
    proc, url, _log = shared
    proc.assert_alive()
    return url


@pytest.fixture
def events_log(shared: tuple[Running, str, Path]) -> Path:
    """The shared exporter's --log-events file (tests select their own pids)."""
    return shared[2]


@pytest.fixture
def workdir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="inotrace-acct-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


class Scenario:
    def __init__(self, name: str, base: Path, *extra: str) -> None:
        self.proc = subprocess.Popen(
            ["/usr/bin/python3", str(WORKLOADS / "scenarios.py"), name, str(base), *extra],
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        assert line, f"scenario {name} died"
        self.info = json.loads(line)

    def kill(self) -> None:
        for pid in (self.info.get("child"), self.proc.pid):
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.proc.wait()


@pytest.fixture
def scenarios() -> Iterator[callable]:
    made: list[Scenario] = []

    def start(name: str, base: Path, *extra: str) -> Scenario:
        s = Scenario(name, base, *extra)
        made.append(s)
        return s

    yield start
    for s in made:
        s.kill()


WATCHDOG = """
import sys, time
from watchdog.observers.inotify import InotifyObserver
from watchdog.events import FileSystemEventHandler
o = InotifyObserver()
o.schedule(FileSystemEventHandler(), sys.argv[1], recursive=True)
o.start()
print("ready", flush=True)
time.sleep(3600)
"""


def test_real_clients(exporter: str, workdir: Path) -> None:
    for i in range(40):
        (workdir / "tree" / f"d{i}" / "sub").mkdir(parents=True)
    (workdir / "log").write_text("x\n")
    procs = [
        subprocess.Popen(
            ["inotifywait", "-m", "-r", str(workdir / "tree")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        ),
        subprocess.Popen(["tail", "-F", str(workdir / "log")], stdout=subprocess.DEVNULL),
        subprocess.Popen([sys.executable, "-c", WATCHDOG, str(workdir / "tree")], stdout=subprocess.PIPE, text=True),
    ]
    try:
        assert procs[1].poll() is None
        assert procs[2].stdout.readline().strip() == "ready"  # type: ignore[union-attr]
        # inotifywait -r says "Setting up watches..." then "Watches established." on stderr
        for _ in range(3):
            if "Watches established" in procs[0].stderr.readline():  # type: ignore[union-attr]
                break
        else:
            raise AssertionError("inotifywait never established its watches")
        time.sleep(0.3)
        assert_exact(exporter)
        summary = groundtruth.summary()["pid"]
        assert summary[procs[0].pid] == [1, 81], "inotifywait -r: the tree's 81 directories"
        # the tree changes: new directories are watched by the clients, a removed one is dropped by the kernel
        (workdir / "tree" / "new").mkdir()
        shutil.rmtree(workdir / "tree" / "d0")
        time.sleep(0.5)
        assert_exact(exporter)
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert_exact(exporter)


def test_fork_shared_instance_counts_once(exporter: str, workdir: Path, scenarios) -> None:
    s = scenarios("fork_shared", workdir)
    assert_exact(exporter)
    truth = groundtruth.summary()["pid"]
    assert truth[s.info["child"]] == [1, 7] and s.proc.pid not in truth
    os.kill(s.info["child"], signal.SIGKILL)  # kill -9 of the last holder
    time.sleep(0.2)
    assert_exact(exporter)
    assert s.info["child"] not in groundtruth.summary()["pid"]


def test_dup2_over_an_inotify_fd(exporter: str, workdir: Path, scenarios) -> None:
    s = scenarios("dup2_over", workdir)
    assert_exact(exporter)
    assert groundtruth.summary()["pid"][s.proc.pid] == [1, 5]


def test_exec_closes_cloexec_instance(exporter: str, workdir: Path, scenarios) -> None:
    s = scenarios("exec_cloexec", workdir)
    time.sleep(0.3)  # let exec happen
    assert_exact(exporter)
    assert groundtruth.summary()["pid"][s.proc.pid] == [1, 6]


def test_kernel_removals_are_corrected(exporter: str, workdir: Path, scenarios) -> None:
    s = scenarios("dirs", workdir)
    before = assert_exact(exporter)
    assert groundtruth.summary()["pid"][s.proc.pid] == [1, 13]  # 11 dirs, oneshot, file (its hard link: same watch)
    os.rmdir(s.info["dirs"][0])
    os.rmdir(s.info["dirs"][1])
    os.utime(s.info["oneshot"])  # IN_ATTRIB fires the oneshot watch: the kernel removes it
    time.sleep(0.2)
    after = assert_exact(exporter)
    assert groundtruth.summary()["pid"][s.proc.pid] == [1, 10]
    key = 'inotrace_accounting_corrections_total{"kind": "watch_removed_by_kernel"}'
    assert after[key] - before[key] == 3


def test_watch_limit_hit(exporter: str, events_log: Path, workdir: Path) -> None:
    log = events_log
    path = Path("/proc/sys/fs/inotify/max_user_watches")
    saved = path.read_text()
    os.chmod(workdir, 0o777)
    # A root holder the exporter has counted dies just before the failures:
    # only a sample of the kernel tells the model, and `used` must not count it.
    gone = subprocess.Popen(["inotifywait", "-m", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert b"Watches established" in gone.stderr.readline() + gone.stderr.readline()  # type: ignore[operator]
    assert_exact(exporter)
    gone.kill()
    gone.wait()
    try:
        path.write_text("50\n")
        s = Scenario("many", workdir, "61")  # as root: root's other watches count too
        try:
            assert s.info["errors"] and set(s.info["errors"]) == {"28"}  # ENOSPC
            assert_exact(exporter)
            mine = groundtruth.summary()["pid"][s.proc.pid]
            hits = wait_for_records(log, s.info["errors"]["28"], pid=s.proc.pid, errno="ENOSPC")
            # each failure names the user at its limit and who holds its watches
            for hit in hits:
                limit = hit["limit"]
                assert (limit["resource"], limit["uid"], limit["used"], limit["limit"]) == ("watches", 0, 50, 50)
                top = {h["pid"]: (h["comm"], h["instances"], h["watches"]) for h in limit["top_holders"]}
                assert top[s.proc.pid] == ("python3", *mine)
                assert "limit.top_holders.comm" in hit["untrusted"]
            # the failures were at the limit: twice it, and never below the kernel's floor
            res = run_cli("snapshot", "--advise", "--json", f"--exporter={exporter}/metrics")
            assert res.returncode == 0, res.stderr
            watches = json.loads(res.stdout)["limits"][0]
            assert watches["failures"] == len(log_records(log, errno="ENOSPC"))
            assert (watches["limit"], watches["advised"], watches["action"]) == (50, 8192, "raise")
        finally:
            s.kill()
    finally:
        path.write_text(saved)
    assert path.read_text() == saved


PEAK_UID = 42424  # a uid nothing else on the host uses: its peak is this test's alone


def _watch_tree_as(uid: int, root: Path) -> subprocess.Popen:
    w = subprocess.Popen(
        ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "inotifywait", "-rm", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert b"Watches established" in w.stderr.readline() + w.stderr.readline()  # type: ignore[operator]
    return w


def _user_gauge(url: str, name: str) -> float | None:
    return metric_value(url, name, uid=str(PEAK_UID), user_ns=str(os.stat("/proc/self/ns/user").st_ino))


def test_peaks_outlive_the_holder_and_advise_uses_them(exporter: str, workdir: Path) -> None:
    """A user's peak is kept after its watcher exits, and `snapshot --advise`
    sizes the limits from the exporter's peaks, or from a snapshot without one."""
    os.chmod(workdir, 0o755)
    for i in range(40):
        for j in range(9):
            (workdir / f"d{i}" / f"e{j}").mkdir(parents=True)
    big = 1 + 40 * 10  # the tree's directories, each one watch
    w = _watch_tree_as(PEAK_UID, workdir)
    try:
        wait_until(lambda: _user_gauge(exporter, "inotrace_user_inotify_watches_peak") == big, "the peak is sampled")
    finally:
        w.kill()
        w.wait()
    small = _watch_tree_as(PEAK_UID, workdir / "d0")  # 10 watches
    try:
        wait_until(lambda: _user_gauge(exporter, "inotrace_user_inotify_watches") == 10, "the smaller watcher is seen")
        assert _user_gauge(exporter, "inotrace_user_inotify_watches_peak") == big
        assert _user_gauge(exporter, "inotrace_user_inotify_instances_peak") == 1
        assert_exact(exporter)
        res = run_cli("snapshot", "--advise", "--json", f"--exporter={exporter}/metrics")
        assert res.returncode == 0, res.stderr
        adv = json.loads(res.stdout)
        assert (adv["source"], adv["peaks_known"]) == (f"the exporter at {exporter}/metrics", True)
        assert adv["limits"][0]["limit"] == int(Path("/proc/sys/fs/inotify/max_user_watches").read_text())
        mine = [u for u in adv["top_users"] if u["uid"] == PEAK_UID]
        assert [(u["watches"], u["peak_watches"], u["instances"]) for u in mine] == [(10, big, 1)]
        # no exporter there: the snapshot, current use only, and it says why
        gone = f"http://127.0.0.1:{free_port()}/metrics"
        res = run_cli("snapshot", "--advise", "--json", f"--exporter={gone}")
        assert res.returncode == 0, res.stderr
        adv = json.loads(res.stdout)
        assert (adv["source"], adv["peaks_known"]) == ("a procfs snapshot", False)
        assert adv["source_notes"][0].startswith(f"no exporter at {gone}: ")
        truth = groundtruth.summary()["uid"][PEAK_UID]
        mine = [u for u in adv["top_users"] if u["uid"] == PEAK_UID]
        assert truth == [1, 10]
        assert [(u["instances"], u["watches"], u["peak_watches"]) for u in mine] == [(1, 10, 10)]
    finally:
        small.kill()
        small.wait()


def test_queue_overflow_of_a_stalled_consumer(exporter: str, events_log: Path, workdir: Path) -> None:
    """inotifywait stops reading (SIGSTOP) while events pour in: twice, two overflows.

    The stall lasts until a scrape has seen it, and every scrape samples the
    queues, so the default --sample-interval is enough here."""
    log = events_log
    url = exporter
    path = Path("/proc/sys/fs/inotify/max_queued_events")
    saved = path.read_text()
    watched = workdir / "w"
    watched.mkdir()
    consumer = None
    try:
        path.write_text("64\n")  # copied into each instance at creation
        consumer = subprocess.Popen(
            ["inotifywait", "-m", "-e", "create,delete", str(watched)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert "Setting up" in consumer.stderr.readline()  # type: ignore[union-attr]
        assert "Watches established" in consumer.stderr.readline()  # type: ignore[union-attr]
        who = {"comm": "inotifywait", "uid": "0"}

        def depth() -> float | None:
            return metric_value(url, "inotrace_process_inotify_queue_depth", pid=str(consumer.pid), **who)

        def total() -> float:
            return metric_value(url, "inotrace_inotify_queue_overflows_total", **who) or 0

        before = total()  # the shared exporter has seen other root inotifywaits

        def overflows() -> float:
            return total() - before

        for episode, op in ((1, "touch"), (2, "unlink")):
            os.kill(consumer.pid, signal.SIGSTOP)
            for i in range(100):  # 100 events > 64
                f = watched / f"f{i}"
                f.touch() if op == "touch" else f.unlink()
            wait_until(lambda n=episode: overflows() == n, f"{episode} overflow episodes are counted")
            assert depth() == 65  # 64 events + IN_Q_OVERFLOW
            os.kill(consumer.pid, signal.SIGCONT)
            wait_until(lambda: depth() == 0, "the resumed consumer has read its queue")
        assert overflows() == 2
        recs = wait_for_records(log, 2, event="queue_overflow", pid=consumer.pid)
        assert [(r["comm"], r["uid"], r["q_len"], r["max_events"]) for r in recs] == [("inotifywait", 0, 65, 64)] * 2
        assert len({r["instance"] for r in recs}) == 1
    finally:
        path.write_text(saved)
        if consumer is not None:
            consumer.kill()
            consumer.wait()
    assert path.read_text() == saved


def test_lifetime_events_are_streamed(events_log: Path, workdir: Path, scenarios) -> None:
    """What no syscall says, in the audit stream: the kernel's removals of a
    deleted directory's watch and of a fired IN_ONESHOT watch (named, with
    their masks), and the instance's end at kill -9 of its only holder."""
    s = scenarios("dirs", workdir)
    pid = s.proc.pid
    os.rmdir(s.info["dirs"][0])
    os.utime(s.info["oneshot"])  # fires the IN_ONESHOT watch
    # the kernel's removals are seen by a calm sample; kill only after both are out,
    # or the instance's end would take them along
    removed = wait_for_records(events_log, 2, timeout=15, event="watch_removed", pid=pid)
    s.kill()  # kill -9 of the only holder: the instance ends with 11 watches
    (gone,) = wait_for_records(events_log, 1, timeout=15, event="instance_destroyed", pid=pid)
    calls = wait_for_records(
        events_log, 15, event="syscall", pid=pid
    )  # init1 + 14 add_watch (the hard link modifies one)
    (instance,) = {r["instance"] for r in calls if r["syscall"] == "inotify_init1"}
    masks = sorted(sorted(r["mask_names"]) for r in removed)
    assert masks == [["IN_ATTRIB", "IN_ONESHOT"], ["IN_CREATE", "IN_DELETE", "IN_MODIFY"]]
    assert all(r["cause"] == "kernel" and r["instance"] == instance for r in removed)
    assert (gone["instance"], gone["watches"], gone["comm"], gone["uid"]) == (instance, 11, "python3", 0)


def test_snapshot_paths(workdir: Path, scenarios) -> None:
    s = scenarios("dirs", workdir)
    res = subprocess.run([*INOTRACE, "snapshot", "--json", "--paths"], capture_output=True, text=True, check=True)
    rep = json.loads(res.stdout)
    (mine,) = [i for i in rep["instances"] if i["owner"] == s.proc.pid]
    paths = {w["path"] for w in mine["watch_list"]}
    assert set(s.info["dirs"]) <= paths
    # a hard-linked inode may resolve to either of its names
    linked = {str(workdir / "linked-file"), str(workdir / "linked-file.link")}
    assert len(paths - set(s.info["dirs"]) - linked) <= 1 and paths & linked
    assert paths - set(s.info["dirs"]) - linked <= {s.info["oneshot"], "unknown"}
    text = subprocess.run([*INOTRACE, "snapshot"], capture_output=True, text=True, check=True).stdout
    assert f"{s.proc.pid}" in text and "python3" in text


@pytest.mark.parametrize("seed", [7, 1013])
def test_randomized_mix(exporter: str, workdir: Path, seed: int) -> None:
    batches = 6
    proc = subprocess.Popen(
        ["/usr/bin/python3", str(WORKLOADS / "scenarios.py"), "random_mix", str(workdir), str(seed), str(batches)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(batches):
            line = proc.stdout.readline()  # type: ignore[union-attr]
            assert line, "random_mix died"
            time.sleep(0.1)
            assert_exact(exporter)
            proc.stdin.write("\n")  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert_exact(exporter)


@contextlib.contextmanager
def root_at_its_instance_limit() -> Iterator[None]:
    """Root holds as many inotify instances as fs.inotify.max_user_instances
    allows (lowered for the block, and restored whatever happens)."""
    path = Path("/proc/sys/fs/inotify/max_user_instances")
    saved = path.read_text()
    held: list[int] = []
    try:
        # uid 65534 (the fallback) must stay under the limit root is held at
        in_use = max(sum(1 for i in groundtruth.instances() if i.uid == u) for u in (0, NOBODY))
        path.write_text(f"{in_use + 4}\n")
        libc = ctypes.CDLL(None, use_errno=True)
        while (fd := libc.inotify_init1(0)) >= 0:
            held.append(fd)
        yield
    finally:
        for fd in held:
            os.close(fd)
        path.write_text(saved)
    assert path.read_text() == saved


@pytest.fixture(scope="module")
def lossy_exporter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Running, str, Path]]:
    """An exporter with a one-page ring (~30 records), started while root is
    at its instance limit: one start (~20 s under the lane's emulation) for
    the two tests of how it copes."""
    log = tmp_path_factory.mktemp("lossy") / "events.jsonl"
    with contextlib.ExitStack() as stack:
        with root_at_its_instance_limit():
            proc, url = stack.enter_context(
                exporter_running("--ringbuf-pages=1", "--top-processes=100000", f"--log-events={log}")
            )
        yield proc, url, log


def test_starts_when_root_is_at_its_instance_limit(lossy_exporter: tuple[Running, str, Path]) -> None:
    """The operator's host is at the limit: inotrace must still start."""
    proc, _url, _log = lossy_exporter
    assert "self-test instances charged to uid 65534" in proc.err_text()


def fdinfo_watches(pid: int) -> int:
    return sum(i.watches for i in groundtruth.instances() if i.owner == pid)


def test_small_ring_loses_records_says_so_and_counts_stay_exact(
    lossy_exporter: tuple[Running, str, Path], workdir: Path
) -> None:
    """A one-page ring (~30 records) under a 3000-directory recursive set-up
    while the exporter is stopped (SIGSTOP: a stalled consumer): nearly every
    record is lost, the stream says how many, and no count is wrong."""
    proc, url, log = lossy_exporter
    tree = workdir / "tree"
    for i in range(60):
        for j in range(50):
            (tree / f"d{i}" / f"e{j}").mkdir(parents=True)
    proc.proc.send_signal(signal.SIGSTOP)
    try:
        w = subprocess.Popen(["inotifywait", "-m", "-r", str(tree)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert "Watches established" in (w.stderr.readline() + w.stderr.readline()).decode()  # type: ignore[union-attr]
    finally:
        proc.proc.send_signal(signal.SIGCONT)
    try:
        assert fdinfo_watches(w.pid) == 3061
        assert (
            metric_value(url, "inotrace_process_inotify_watches", pid=str(w.pid), comm="inotifywait", uid="0") == 3061
        )
        lost = metric_value(url, "inotrace_events_lost_total", reason="ringbuf_full") or 0
        assert lost > 3000, "the ring was meant to overflow"  # 3062 calls, a page of ring
        gaps = wait_until(
            lambda: (g := log_records(log, event="records_lost")) and sum(r["lost"] for r in g) == lost and g,
            "records_lost records account for every lost record",
        )
        assert {r["reason"] for r in gaps} == {"ringbuf_full"}  # type: ignore[union-attr]
        # the kernel removes watches (rmdir): counted exactly, though their records may be gone
        removed_before = metric_value(url, "inotrace_accounting_corrections_total", kind="watch_removed_by_kernel")
        for j in range(7):
            (tree / "d0" / f"e{j}").rmdir()
        wait_until(lambda: fdinfo_watches(w.pid) == 3054, "the kernel has removed the 7 watches")
        assert (
            metric_value(url, "inotrace_process_inotify_watches", pid=str(w.pid), comm="inotifywait", uid="0") == 3054
        )
        key = "inotrace_accounting_corrections_total"
        assert metric_value(url, key, kind="watch_removed_by_kernel") - removed_before == 7
        assert metric_value(url, key, kind="watch_missed") == metric_value(url, key, kind="instance_missed") == 0
    finally:
        w.kill()
        w.wait()
