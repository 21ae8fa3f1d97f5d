"""`inotrace top`: the live view for an operator at a console.

The terminal is stdlib curses: it ships with every Python, needs nothing from
PyPI or the distribution, drives any terminal terminfo knows (an SSH session,
tmux, the Linux console) and redraws only what changed, which matters over a
slow link. rich would draw nicer tables but adds a dependency and has no
keyboard input of its own. Colours only where the terminal has them and
NO_COLOR is not set; every meaning is also in the text (bars, percentages).

Where the data comes from: a Source. LiveSource reads the running tracer's
model (BPF, as root); SnapshotSource reads procfs each refresh (no BPF, no
root), and the screen says which, and why not live.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Protocol, cast

from . import snapshot
from .containers import ContainerResolver
from .derived import LimitFailure
from .errors import InotraceError
from .limits import Limits
from .paths import WatchedBy, watched_by
from .topdata import (
    Failures,
    Frame,
    Growth,
    procs_live,
    procs_snapshot,
    user_name,
    users_live,
    users_snapshot,
    with_growth,
)
from .toprender import Drawing, ProcessPaths, Screen, draw, plain
from .topterm import CursesTerm, PlainTerm
from .topview import ViewState, press, shown_procs

if TYPE_CHECKING:
    from .tracer import Record, Tracer

RESOLVE_LIMIT = 200_000  # watches the process view resolves to paths at most (~9 us each)
PREFIXES = 50  # prefixes the process view keeps (it shows what fits)

Holders = list[tuple[tuple[int, int], ...]]


class Source(Protocol):
    def frame(self) -> Frame: ...

    def holders(self, pid: int) -> Holders: ...


class LiveSource:
    """The tracer's live model: the kernel's per-user counters, each
    process's owner share, and the limit failures the tracer annotated."""

    def __init__(self, tracer: Tracer, watch_cost: int | None) -> None:
        self.tracer = tracer
        self.watch_cost = watch_cost
        self.failures = Failures()
        self.growth = Growth()
        backends = sorted({s.backend for s in tracer.probes if s.backend and s.probe.startswith("inotify")})
        self.name = f"live (BPF, {'+'.join(backends) or '?'})"

    def sink(self, rec: Record) -> None:
        if isinstance(rec, LimitFailure):
            self.failures.add(rec)

    def frame(self) -> Frame:
        t = self.tracer
        t.refresh()  # a sample of the kernel now, as a scrape takes one
        limits = Limits.read(t.procfs)
        with t.lock:
            users = users_live(t.accounting, limits, self.watch_cost)
            procs = procs_live(t.accounting, t.comm_of, self.watch_cost)
        procs = with_growth(procs, self.growth, time.monotonic())
        fails = self.failures
        return Frame(True, self.name, tuple(users), tuple(procs), tuple(fails.rows), fails.total)

    def holders(self, pid: int) -> Holders:
        with self.tracer.lock:
            return [i.holders for i in self.tracer.accounting.instances.values() if i.owner == pid]


class SnapshotSource:
    """procfs each refresh: what `inotrace snapshot` reads."""

    def __init__(self, procfs: str, watch_cost: int | None, why: str) -> None:
        self.procfs = procfs
        self.watch_cost = watch_cost
        self.why = why
        self.growth = Growth()
        self._last: list[snapshot.SnapInstance] = []

    def frame(self) -> Frame:
        self._last = snapshot.take(self.procfs)
        rep = snapshot.report(self._last, self.procfs, watch_cost=self.watch_cost)
        limits = Limits.read(self.procfs)
        procs = with_growth(procs_snapshot(rep), self.growth, time.monotonic())
        notes = (f"not live: {self.why}",)
        return Frame(False, "procfs snapshot", tuple(users_snapshot(rep, limits)), tuple(procs), (), notes=notes)

    def holders(self, pid: int) -> Holders:
        return [tuple(i.holders) for i in self._last if i.owner == pid]


def container_name(resolver: ContainerResolver) -> Callable[[int], str]:
    def name(pid: int) -> str:
        found = resolver.labels(pid)
        if found.container_id:
            return found.container_id[:12]
        return f"pod {found.pod_uid[:8]}" if found.pod_uid else ""

    return name


class Session:
    """One `top` run: the state, the current frame, the process view's paths,
    and when the next frame is due. A Terminal shows it."""

    def __init__(self, source: Source, procfs: str, interval: float) -> None:
        self.source = source
        self.procfs = procfs
        self.interval = interval
        self.state = ViewState()
        self.frame: Frame | None = None
        self.next_at = 0.0
        self.screen = Screen(functools.cache(user_name), container_name(ContainerResolver(procfs)))
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="paths")
        self._paths: Future[WatchedBy] | None = None
        self._paths_at = 0.0

    def due(self) -> bool:
        return time.monotonic() >= self.next_at

    def refresh(self) -> Frame:
        self.frame = self.source.frame()
        self.next_at = time.monotonic() + self.interval
        return self.frame

    def open_paths(self) -> None:
        pid = self.state.pid
        if pid is None:
            return
        held = self.source.holders(pid)
        self._paths = self._pool.submit(watched_by, self.procfs, pid, held, PREFIXES, RESOLVE_LIMIT)
        self._paths_at = time.monotonic()

    def paths(self) -> ProcessPaths:
        f = self._paths
        if f is None or not f.done():
            return ProcessPaths(None)
        return ProcessPaths(f.result(), time.monotonic() - self._paths_at)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class Runner:
    """Turns of a Session on a terminal: keys, a new frame when due, a
    redraw when anything changed. `count` frames at most (0: until quit)."""

    def __init__(self, session: Session, term: CursesTerm | PlainTerm, count: int = 0, rows: int = 20) -> None:
        self.session = session
        self.term = term
        self.count = count
        self.rows = rows  # processes in a plain frame
        self.frames = 0
        self._drawn_paths: ProcessPaths | None = None

    def turn(self) -> bool:
        """One step; False when it is time to stop."""
        s, st = self.session, self.session.state
        changed = False
        for key in self.term.pressed():
            changed = True
            rows = shown_procs(s.frame.procs, st) if s.frame and key != "RESIZE" else []
            if press(st, key, rows) == "open":
                s.open_paths()
            if st.quit:
                return False
        if s.due():
            if self.count and self.frames >= self.count:
                return False
            frame = s.refresh()
            self.frames += 1
            changed = True
            if isinstance(self.term, PlainTerm):
                self.term.write(plain(Drawing(frame, st, s.screen, s.interval), self.term.width, self.rows))
                return not self.count or self.frames < self.count
        pp = s.paths()
        if st.mode == "process" and pp.paths is not None and self._drawn_paths != pp:
            changed = True
        if changed and isinstance(self.term, CursesTerm) and s.frame is not None:
            self._drawn_paths = pp
            self.term.show(draw(Drawing(s.frame, st, s.screen, s.interval), self.term.size(), pp))
        return True


# Runs the tracer until a signal or until `turn` says stop (cli._run_tracer).
RunTracer = Callable[..., None]
SNAPSHOT_TURN_S = 0.05  # how often the snapshot loop looks at the keys


def main(args: argparse.Namespace, run_tracer: RunTracer, watch_cost: int | None) -> int:
    """Live where BPF can be had (as root), else the procfs snapshot with the
    reason on screen (`--source` forces one)."""
    term: CursesTerm | PlainTerm = CursesTerm() if _interactive(args) else PlainTerm()
    with term:
        why = "--source procfs"
        if args.source != "procfs":
            if isinstance(term, CursesTerm):
                term.show([[("inotrace top: loading the BPF probes (compiling takes a few seconds)...", "title")]])
            runner: list[Runner] = []

            def started(tracer: Tracer) -> None:
                live = LiveSource(tracer, watch_cost)
                runner.append(Runner(Session(live, args.procfs, args.interval), term, args.count, args.rows))

            def sink(rec: Record) -> None:
                cast(LiveSource, runner[0].session.source).sink(rec)

            try:
                run_tracer(args, started, sink, lambda: runner[0].turn())  # noqa: PLW0108 - runner is filled at start
                return 0
            except InotraceError as e:
                if args.source == "bpf" or runner:
                    raise
                why = str(e)
            finally:
                for r in runner:
                    r.session.close()
        return _snapshot_loop(args, term, watch_cost, why)


def _interactive(args: argparse.Namespace) -> bool:
    return not args.batch and sys.stdout.isatty() and sys.stdin.isatty()


def _snapshot_loop(args: argparse.Namespace, term: CursesTerm | PlainTerm, watch_cost: int | None, why: str) -> int:
    session = Session(SnapshotSource(args.procfs, watch_cost, why), args.procfs, args.interval)
    runner = Runner(session, term, args.count, args.rows)
    try:
        while runner.turn():
            time.sleep(SNAPSHOT_TURN_S)
    finally:
        session.close()
    return 0
