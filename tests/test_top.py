"""`inotrace top` in a real terminal: tmux runs it against real inotify
clients; the screen is read back with capture-pane and its numbers compared
with fdinfo (groundtruth); keys are sent as a person types them."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import groundtruth
from conftest import INOTRACE, NOBODY, ROOT, terminate
from tmux import Tmux

pytestmark = pytest.mark.bpf

# Holds 7 instances with one watch each (sorts first by instances, last by watches).
MANY = """
import ctypes, sys, time
libc = ctypes.CDLL(None)
open("/proc/self/comm", "w").write("manyinst")
fds = [libc.inotify_init1(0) for _ in range(7)]
for fd in fds:
    libc.inotify_add_watch(fd, sys.argv[1].encode(), 0x100)
print("ready", flush=True)
time.sleep(3600)
"""
# Watches a new directory every 50 ms: its watches grow.
GROWER = """
import ctypes, os, sys, time
libc = ctypes.CDLL(None)
open("/proc/self/comm", "w").write("grower")
fd = libc.inotify_init1(0)
print("ready", flush=True)
for i in range(100000):
    d = os.path.join(sys.argv[1], f"g{i}")
    os.mkdir(d)
    libc.inotify_add_watch(fd, d.encode(), 0x100)
    time.sleep(0.05)
"""
# Watches one directory after another until the kernel says ENOSPC, then holds them.
FILLER = """
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.inotify_init1(0)
for name in sorted(os.listdir(sys.argv[1])):
    if libc.inotify_add_watch(fd, os.path.join(sys.argv[1], name).encode(), 0x100) < 0:
        print("failed", ctypes.get_errno(), flush=True)
        break
time.sleep(3600)
"""
TREE_DIRS = 57  # the tree's root and 56 below it: what inotifywait -r watches


@pytest.fixture
def shared() -> Iterator[Path]:
    """A directory every uid can enter (pytest's tmp_path is root's alone)."""
    d = Path(tempfile.mkdtemp(prefix="inotrace-top-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def term() -> Iterator[Tmux]:
    t = Tmux()
    try:
        yield t
    finally:
        t.kill()


def make_tree(root: Path) -> None:
    for i in range(8):
        for j in range(6):
            (root / f"d{i}" / f"s{j}").mkdir(parents=True)
    assert sum(1 for _ in root.rglob("*")) + 1 == TREE_DIRS


def start_py(code: str, arg: Path) -> subprocess.Popen:
    p = subprocess.Popen(["/usr/bin/python3", "-c", code, str(arg)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"  # type: ignore[union-attr]
    return p


def start_inotifywait(tree: Path, *prefix: str) -> subprocess.Popen:
    w = subprocess.Popen(
        [*prefix, "inotifywait", "-m", "-r", str(tree)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    assert b"Watches established" in w.stderr.readline() + w.stderr.readline()  # type: ignore[operator]
    return w


@pytest.fixture
def clients(tmp_path: Path) -> Iterator[dict[str, subprocess.Popen]]:
    tree = tmp_path / "tree"
    make_tree(tree)
    (tmp_path / "grow").mkdir()
    procs: dict[str, subprocess.Popen] = {}
    try:
        procs["inotifywait"] = start_inotifywait(tree)
        procs["manyinst"] = start_py(MANY, tree)
        procs["grower"] = start_py(GROWER, tmp_path / "grow")
        yield procs
    finally:
        for p in procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGCONT)
            terminate(p)


def rows(screen: str) -> dict[int, list[str]]:
    """The process table (from its header to the blank line after it), in order:
    pid -> [comm, user, container, inst, watches, +w/min, queue, memory...]."""
    out: dict[int, list[str]] = {}
    lines = iter(screen.splitlines())
    for line in lines:
        if line.split()[:2] == ["PID", "COMM"]:
            break
    for line in lines:
        parts = line.split()
        if not parts or not parts[0].isdigit():
            break
        out[int(parts[0])] = parts[1:]
    return out


def counts(screen: str, pid: int) -> tuple[int, int] | None:
    row = rows(screen).get(pid)
    return (int(row[3]), int(row[4].replace(",", ""))) if row else None


def user_row(screen: str, name: str) -> str | None:
    return next((ln for ln in screen.splitlines() if ln.startswith(f"{name} ")), None)


def top_argv(*extra: str) -> list[str]:
    return [*INOTRACE, "top", "--interval=0.5", *extra]


def start_top(term: Tmux, *extra: str, size: tuple[int, int] = (80, 24), env: dict[str, str] | None = None) -> None:
    term.start(top_argv(*extra), *size, env={"PYTHONPATH": str(ROOT / "src"), **(env or {})})
    term.wait_for(lambda s: "inotrace top  live" in s, "top shows the live model", timeout=90)


def order(screen: str, *pids: int) -> list[int]:
    at = {pid: i for i, pid in enumerate(rows(screen))}
    return sorted(pids, key=lambda p: at.get(p, 1 << 30))


SGR_COLOUR = re.compile(r"\x1b\[[0-9;]*(?:3[0-7]|9[0-7]|38;5;\d+)[0-9;]*m")


def test_live_screen_at_80x24_matches_fdinfo_and_keys_work(term: Tmux, clients: dict[str, subprocess.Popen]) -> None:
    iw, many, grower = clients["inotifywait"].pid, clients["manyinst"].pid, clients["grower"].pid
    start_top(term, env={"NO_COLOR": "1"})
    term.wait_for(lambda s: counts(s, iw) == (1, TREE_DIRS), f"inotifywait shows 1 instance, {TREE_DIRS} watches")
    term.wait_for(lambda s: counts(s, many) == (7, 7), "manyinst shows 7 instances, 7 watches")
    growth = term.wait_for(
        lambda s: grower in rows(s) and rows(s)[grower][5].startswith("+") and rows(s)[grower][5],
        "the grower's watches grow per minute",
    )
    assert 200 <= int(growth.strip("+").replace(",", "")) <= 1300  # 20 a second at most
    # frozen, everything on screen must equal fdinfo: per process, and root's kernel counters
    os.kill(grower, signal.SIGSTOP)
    truth = groundtruth.summary()
    want = truth["pid"][grower]
    term.wait_for(lambda s: counts(s, grower) == tuple(want), f"the stopped grower shows {want}")
    ri, rw = truth["uid"][0]
    screen = term.wait_for(
        lambda s: (row := user_row(s, "root")) and f" {ri}/" in row and f" {rw}/" in row and s,
        f"root's row shows {ri} instances and {rw} watches",
    )
    assert not SGR_COLOUR.search(term.screen(escapes=True)), "NO_COLOR: no colour"
    lines = screen.splitlines()
    assert len(lines) <= 24 and max(map(len, lines)) <= 80
    assert order(screen, iw, many) == [iw, many]  # by watches
    term.send("i")
    term.wait_for(lambda s: "sort: instances" in s and order(s, iw, many) == [many, iw], "i sorts by instances")
    term.send("c")
    term.type("inotifyw")
    term.send("Enter")
    term.wait_for(lambda s: "comm ~inotifyw" in s and set(rows(s)) >= {iw} and many not in rows(s), "the comm filter")
    term.send("Enter")  # what the selected (first) row watches
    want_root = f"{TREE_DIRS:>9,}  {clients['inotifywait'].args[-1]}"
    screen = term.wait_for(lambda s: "read from fdinfo" in s and s, "the process view's paths")
    assert f"process {iw}" in screen and want_root in screen.splitlines(), screen
    assert f"{TREE_DIRS} watches read from fdinfo, paths from their file handles" in screen
    term.send("Escape")
    term.wait_for(lambda s: "sort: instances" in s, "Esc goes back")
    term.send("q")
    assert term.wait_exit("q quits top") == 0


@contextlib.contextmanager
def watch_limit(limit: int) -> Iterator[None]:
    path = Path("/proc/sys/fs/inotify/max_user_watches")
    saved = path.read_text()
    try:
        path.write_text(f"{limit}\n")
        yield
    finally:
        path.write_text(saved)
    assert path.read_text() == saved


LIMIT_UID = 42426  # a uid nothing else on the host uses


def test_limit_failure_in_a_large_colour_terminal(term: Tmux, shared: Path) -> None:
    """A user at its watch limit: the failure, the user at 100 %, its holder, in red."""
    start_top(term, size=(160, 50))
    busiest = max((w for _, w in groundtruth.summary()["uid"].values()), default=0)
    limit = busiest + 17
    tree = shared / "big"
    for i in range(limit + 5):
        (tree / f"d{i}").mkdir(parents=True)
    user = ["setpriv", f"--reuid={LIMIT_UID}", f"--regid={LIMIT_UID}", "--clear-groups"]
    with watch_limit(limit):
        filler = subprocess.Popen(
            [*user, "/usr/bin/python3", "-c", FILLER, str(tree)], stdout=subprocess.PIPE, text=True
        )
        try:
            assert filler.stdout.readline().strip() == "failed 28"  # type: ignore[union-attr]
            screen = term.wait_for(lambda s: "ENOSPC" in s and s, "the failure is on screen")
        finally:
            terminate(filler)
    line = next(ln for ln in screen.splitlines() if "ENOSPC" in ln)
    assert f"ENOSPC {LIMIT_UID} at {limit:,}/{limit:,} watches: python3 {filler.pid}" in line
    assert f"holders: python3 {filler.pid} ({limit:,})" in line
    row = user_row(screen, str(LIMIT_UID))
    assert row is not None and f" {limit}/{limit} " in row and "100%" in row, screen
    assert "LIMIT FAILURES  1 since start" in screen
    head = next(ln for ln in screen.splitlines() if ln.lstrip().startswith("PID"))
    assert len(head) > 100 and "CONTAINER" in head  # columns widen with the terminal
    assert SGR_COLOUR.search(term.screen(escapes=True)), "colours where the terminal has them"


def test_without_bpf_it_says_so_and_shows_procfs(term: Tmux, tmp_path: Path) -> None:
    """uid 0 stripped of its capabilities (a container without privileges): no
    BPF, and only processes as unprivileged as itself can be read (ptrace rules)."""
    tree = tmp_path / "tree"
    make_tree(tree)
    no_caps = ["setpriv", "--inh-caps=-all", "--bounding-set=-all"]
    w = start_inotifywait(tree, *no_caps)
    try:
        argv = [*no_caps, *top_argv()]
        term.start(argv, env={"PYTHONPATH": str(ROOT / "src"), "NO_COLOR": "1"})
        screen = term.wait_for(lambda s: counts(s, w.pid) == (1, TREE_DIRS) and s, "the snapshot shows inotifywait")
        assert "procfs snapshot" in screen and "not live: root without CAP_BPF or CAP_SYS_ADMIN" in screen
        assert "not seen by a procfs snapshot" in screen
        term.send("q")
        assert term.wait_exit("q quits") == 0
    finally:
        terminate(w)


def test_as_a_plain_user_it_shows_its_own_processes(term: Tmux, shared: Path) -> None:
    """Not root: the snapshot of what this user can read, and why it is not live."""
    code = Path(tempfile.mkdtemp(prefix="inotrace-src-"))
    try:
        # a copy the user can read (CI's clone may sit in a 0700 directory)
        shutil.copytree(ROOT / "src/inotrace", code / "inotrace", symlinks=False)
        for p in [code, *code.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        tree = shared / "tree"
        make_tree(tree)
        mine = start_inotifywait(tree, "setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups")
        root_w = start_inotifywait(tree)
        try:
            user = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
            term.start([*user, "/usr/bin/python3", "-m", "inotrace", "top", "-d", "0.5"], env={"PYTHONPATH": str(code)})
            screen = term.wait_for(lambda s: counts(s, mine.pid) == (1, TREE_DIRS) and s, "its own inotifywait")
            assert "not live: must run as root" in screen
            assert root_w.pid not in rows(screen)  # another user's fds are not readable
            term.send("q")
            assert term.wait_exit("q quits") == 0
        finally:
            terminate(mine)
            terminate(root_w)
    finally:
        shutil.rmtree(code)


def test_plain_tables_when_not_a_terminal(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    make_tree(tree)
    w = start_inotifywait(tree)
    try:
        res = subprocess.run(
            [*top_argv(), "--count=2", "--rows=5000"],
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
        )
        assert res.returncode == 0, res.stderr
        frames = [f for f in res.stdout.split("inotrace top  ") if f]
        assert len(frames) == 2
        for frame in frames:
            assert counts(frame, w.pid) == (1, TREE_DIRS)
            assert "\x1b" not in frame
    finally:
        terminate(w)
