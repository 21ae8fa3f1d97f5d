"""Drawing `inotrace top`: a Frame and the view state to lines of styled
segments, fitted to a width and a height. Pure: curses (top.py) maps the
styles to attributes, plain output joins the text.

Styles: "" plain, "title", "head", "sel" (the selected row), "ok", "warn",
"crit" (a bar's fill by how full: < 70 %, < 90 %, else: the alerts'
thresholds), "dim".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .paths import WatchedBy, shown
from .snapshot import iec_bytes
from .topdata import FailureRow, Frame, ProcRow, UserRow
from .topview import ViewState, shown_procs

Segment = tuple[str, str]
Line = list[Segment]

WARN, CRIT = 0.70, 0.90
KEYS_HELP = "q quit  w/i/g sort  u user  c comm  Up/Down select  Enter paths  ? help"


def text_of(line: Line) -> str:
    return "".join(t for t, _ in line)


def fit(line: Line, width: int) -> Line:
    """Cut a line at `width` columns (text from traced processes is escaped ASCII-safe already)."""
    out: Line = []
    left = width
    for text, style in line:
        if left <= 0:
            break
        out.append((text[:left], style))
        left -= len(text[:left])
    return out


def _level(frac: float | None) -> str:
    if frac is None:
        return "dim"
    return "crit" if frac >= CRIT else "warn" if frac >= WARN else "ok"


def bar(used: int, limit: int | None, inner: int) -> Line:
    """[####----] 42% : a bar `inner` wide and the percentage."""
    if not limit or limit <= 0:
        return [("[" + "?" * inner + "]", "dim"), ("    ?", "dim")]
    frac = used / limit
    filled = min(inner, round(frac * inner))
    if used and not filled:
        filled = 1  # something is used: show it
    return [
        ("[", ""),
        ("#" * filled, _level(frac)),
        ("-" * (inner - filled), "dim"),
        ("]", ""),
        (f"{min(frac * 100, 999):4.0f}%", _level(frac)),
    ]


def _count(n: int, limit: int | None, w: int) -> str:
    return f"{n}/{limit if limit else '?'}".rjust(w)


def _mem(n: int | None, w: int = 10) -> str:
    return (iec_bytes(n) if n is not None else "-").rjust(w)


# A user line: name, instances used/limit, a bar, watches used/limit, a bar,
# memory; what the fixed fields leave goes to the bars (3/8 instances).
USER_FIXED = 8 + 1 + 9 + 1 + 2 + 5 + 2 + 15 + 1 + 2 + 5 + 1 + 10


def user_lines(users: Sequence[UserRow], width: int) -> list[Line]:
    room = max(width - USER_FIXED, 10)
    bi = max(4, room * 3 // 8)
    bw = max(6, room - bi)
    head = f"{'USER':<8} {'INSTANCES':>9} {'':{bi + 7}}  {'WATCHES':>15} {'':{bw + 7}} {'MEMORY':>10}"
    lines: list[Line] = [[(head, "head")]]
    for u in users:
        name = (u.name + ("*" if u.other_ns else ""))[:8]
        lines.append(
            [
                (f"{name:<8} {_count(u.instances, u.max_instances, 9)} ", ""),
                *bar(u.instances, u.max_instances, bi),
                (f"  {_count(u.watches, u.max_watches, 15)} ", ""),
                *bar(u.watches, u.max_watches, bw),
                (f" {_mem(u.memory)}", ""),
            ]
        )
    return lines


@dataclass(frozen=True)
class Columns:
    comm: int
    user: int
    container: int

    @classmethod
    def for_width(cls, width: int) -> Columns:
        extra = max(0, width - 80)
        container = 10 + min(extra, 14)
        extra -= container - 10
        comm = 15 + min(max(extra, 0), 17)
        extra -= comm - 15
        return cls(comm, 6 + min(max(extra, 0), 6), container)


def _growth(g: float | None) -> str:
    if g is None:
        return "-"
    return f"{g:+,.0f}" if round(g) else "0"


def proc_head(c: Columns) -> str:
    return (
        f"{'PID':>7} {'COMM':<{c.comm}} {'USER':<{c.user}} {'CONTAINER':<{c.container}} {'INST':>4} "
        f"{'WATCHES':>8} {'+W/MIN':>7} {'QUEUE':>5} {'MEMORY':>8}"
    )


def proc_line(r: ProcRow, c: Columns, user: Callable[[int], str], container: str) -> str:
    queue = str(r.queue) if r.queue is not None else "-"
    return (
        f"{r.pid:>7} {r.comm[: c.comm]:<{c.comm}} {user(r.uid)[: c.user]:<{c.user}} "
        f"{(container or '-')[: c.container]:<{c.container}} {r.instances:>4} {r.watches:>8,} "
        f"{_growth(r.growth):>7} {queue:>5} {_mem(r.memory, 8)}"
    )


def failure_text(f: FailureRow, user: Callable[[int], str]) -> tuple[str, str]:
    """What failed, and who held the user's watches or instances then."""
    when = time.strftime("%H:%M:%S", time.localtime(f.wall))
    limit = f"{f.limit:,}" if f.limit >= 0 else "?"
    held = ", ".join(f"{h.comm} {h.pid} ({h.watches if f.resource == 'watches' else h.instances:,})" for h in f.top)
    return f"{when} {f.error} {user(f.uid)} at {f.used:,}/{limit} {f.resource}: {f.comm} {f.pid}", f"holders: {held}"


@dataclass
class Screen:
    """What one draw needs besides the frame: who a uid is, a container's name."""

    user: Callable[[int], str]
    container: Callable[[int], str]


@dataclass(frozen=True)
class Drawing:
    """One frame to draw, with the view's state and the helpers."""

    frame: Frame
    st: ViewState
    scr: Screen
    interval: float


@dataclass(frozen=True)
class ProcessPaths:
    """The process view's paths: None while they are resolved; how old they are."""

    paths: WatchedBy | None
    age: float | None = None


def title(frame: Frame, st: ViewState, interval: float) -> Line:
    """What is shown and how, most telling first (a narrow terminal cuts the end)."""
    filters = "".join(
        [f"  user {st.uid}" if st.uid is not None else "", f"  comm ~{st.comm}" if st.comm is not None else ""]
    )
    clock = time.strftime("%H:%M:%S", time.localtime(frame.taken))
    return [
        ("inotrace top", "title"),
        (f"  {frame.source}  sort: {st.sort}{filters}  every {interval:g}s  {clock}", ""),
    ]


def main_lines(d: Drawing, width: int, height: int) -> list[Line]:
    """The main screen, `height` lines at most (the last one the key line)."""
    frame, st, scr = d.frame, d.st, d.scr
    procs = shown_procs(frame.procs, st)
    st.selected = max(0, min(st.selected, len(procs) - 1))
    users = sorted(frame.users, key=lambda u: (-u.watches, -u.instances, u.uid))
    if st.uid is not None:
        users = [u for u in users if u.uid == st.uid]
    n_users = min(len(users), max(1, height // 6))
    top = [title(frame, st, d.interval), *[[(n, "dim")] for n in frame.notes]]
    top += user_lines(users[:n_users], width)
    if len(users) > n_users:
        top.append([(f"  ... {len(users) - n_users} more users", "dim")])
    bottom = failure_lines(frame, max(2, height // 4), width, scr.user)
    room = height - len(top) - len(bottom) - 4  # blank, process header, blank, key line
    lines = [*top, [], *proc_lines(procs, st, max(room, 1), width, scr), [], *bottom]
    return screen_of(lines, width, height, key_line(st, width))


def screen_of(lines: list[Line], width: int, height: int, last: Line) -> list[Line]:
    """`height` lines: the body cut to fit, blank lines, `last` at the bottom (where the keys are)."""
    body = [fit(ln, width) for ln in lines[: height - 1]]
    return [*body, *([[]] * (height - 1 - len(body))), fit(last, width)]


def proc_lines(procs: Sequence[ProcRow], st: ViewState, room: int, width: int, scr: Screen) -> list[Line]:
    c = Columns.for_width(width)
    start = max(0, st.selected - room + 1)
    out: list[Line] = [[(proc_head(c), "head")]]
    for i, r in enumerate(procs[start : start + room], start):
        out.append([(proc_line(r, c, scr.user, scr.container(r.pid)).ljust(width), "sel" if i == st.selected else "")])
    if not procs:
        out.append(
            [
                (
                    "  no process holds an inotify instance"
                    + (" (filtered)" if st.uid is not None or st.comm is not None else ""),
                    "dim",
                )
            ]
        )
    return out


def failure_lines(frame: Frame, room: int, width: int, user: Callable[[int], str]) -> list[Line]:
    """The newest failures in `room` lines: one each where it fits, else two."""
    if not frame.live:
        return [[("LIMIT FAILURES", "head"), ("  not seen by a procfs snapshot (they need BPF: run as root)", "dim")]]
    if not frame.failures:
        return [[("LIMIT FAILURES", "head"), ("  none since start", "dim")]]
    out: list[Line] = [[("LIMIT FAILURES", "head"), (f"  {frame.failures_total:,} since start, newest first", "")]]
    for f in frame.failures:
        what, held = failure_text(f, user)
        one = f"{what}; {held}"
        rows = [[(one, "crit")]] if len(one) <= width else [[(what, "crit")], [(f"         {held}", "")]]
        if len(out) - 1 + len(rows) > room:
            break
        out += rows
    return out


def key_line(st: ViewState, width: int) -> Line:
    if st.prompt is not None:
        ask = "uid or user name" if st.prompt == "uid" else "comm contains"
        return [(f"{ask} (Enter: apply, empty: all, Esc: cancel): {st.typed}_"[-width:], "title")]
    if st.message:
        return [(st.message, "warn")]
    return [(KEYS_HELP, "dim")]


def process_lines(d: Drawing, width: int, height: int, pp: ProcessPaths) -> list[Line]:
    frame, st, scr = d.frame, d.st, d.scr
    row = next((r for r in frame.procs if r.pid == st.pid), None)
    lines: list[Line] = [[("inotrace top", "title"), (f"  process {st.pid}  {frame.source}", "")]]
    if row is None:
        lines.append([(f"process {st.pid} holds no inotify instance now", "warn")])
    else:
        c = Columns.for_width(width)
        lines += [[(proc_head(c), "head")], [(proc_line(row, c, scr.user, scr.container(row.pid)), "")]]
    lines.append([])
    if pp.paths is None:
        lines.append([("resolving its watches from their file handles...", "dim")])
    else:
        lines += watched_lines(pp.paths, height - len(lines) - 2, pp.age)
    return screen_of(lines, width, height, [("r refresh paths  q/Esc back  Q quit", "dim")])


def watched_lines(paths: WatchedBy, room: int, age: float | None) -> list[Line]:
    w = paths.watched
    out: list[Line] = [[(f"{'WATCHES':>9}  PATH PREFIX (watches at or under it; counts nest)", "head")]]
    out += [[(f"{p.watches:>9,}  {shown(p.path)}", "")] for p in w.prefixes[: max(room - 4, 1)]]
    if w.unknown:
        out.append([(f"{w.unknown:>9,}  unknown (no path can be told for sure)", "dim")])
    if paths.not_resolved:
        out.append([(f"{paths.not_resolved:>9,}  not resolved (over the per-view limit)", "dim")])
    if not w.prefixes and not w.unknown and not paths.not_resolved:
        out.append([("no watches", "dim")])
    when = f"{age:.0f}s ago" if age is not None else "now"
    out.append([(f"{paths.watches:,} watches read from fdinfo, paths from their file handles, {when}", "dim")])
    return out


HELP = [
    "inotrace top: who holds inotify instances and watches, against users' limits",
    "",
    "  w  i  g   sort processes by watches, instances, watch growth per minute",
    "  s         next sort",
    "  u         only one user (uid or name; empty: all)",
    "  c         only comms containing a text (empty: all)",
    "  Up/Down   select a process (PgUp/PgDn, Home/End)",
    "  Enter, p  what the selected process watches: its directory prefixes",
    "  r         (process view) resolve its paths again",
    "  q, Esc    back; q on the main screen quits (Q quits anywhere)",
    "",
    "USER rows: the kernel's own per-user counters (live) or fdinfo sums (snapshot).",
    "A shared instance counts once, for its lowest pid. MEMORY: the kernel's own",
    "per-watch cost (INOTIFY_WATCH_COST) times the watches. +W/MIN: watches gained",
    "per minute over the last minute. QUEUE: events queued in the deepest instance.",
    "A * after a user: charged in another user namespace, against its limits.",
]


def help_lines(width: int, height: int) -> list[Line]:
    lines: list[Line] = [[(t, "title" if i == 0 else "")] for i, t in enumerate(HELP)]
    return screen_of(lines, width, height, [("q/Esc back", "dim")])


def draw(d: Drawing, size: tuple[int, int], pp: ProcessPaths) -> list[Line]:
    """The whole screen for a terminal of `size` (width, height)."""
    width, height = size
    if d.st.mode == "help":
        return help_lines(width, height)
    if d.st.mode == "process":
        return process_lines(d, width, height, pp)
    return main_lines(d, width, height)


def plain(d: Drawing, width: int, n_procs: int) -> list[str]:
    """A frame as plain text for output that is not a terminal (bcc's no-clear
    mode): every user, the top `n_procs` processes, the newest failures."""
    frame, st, scr = d.frame, d.st, d.scr
    users = sorted(frame.users, key=lambda u: (-u.watches, -u.instances, u.uid))
    procs = shown_procs(frame.procs, st)[:n_procs]
    c = Columns.for_width(width)
    lines = [title(frame, st, d.interval), *[[(n, "")] for n in frame.notes], *user_lines(users, width), []]
    lines += [[(proc_head(c), "")], *[[(proc_line(r, c, scr.user, scr.container(r.pid)), "")] for r in procs]]
    lines += [[], *failure_lines(frame, 10, width, scr.user)]
    return [text_of(fit(ln, width)).rstrip() for ln in lines]
