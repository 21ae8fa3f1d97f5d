"""`inotrace top`'s pure parts on synthetic frames: keys, sorting and
filtering, growth, and what an 80x24 screen holds (no terminal, no BPF)."""

from __future__ import annotations

import errno
import io

from factories import make_call
from inotrace import topdata, toprender
from inotrace.derived import Holder, LimitFailure, LimitHit
from inotrace.records import Syscall
from inotrace.topdata import Frame, ProcRow, UserRow
from inotrace.topterm import PlainTerm, key_name
from inotrace.topview import ViewState, press, shown_procs

USERS = (
    UserRow(0, "root", 3, 120, 128, 8192, 120 * 1312),
    UserRow(1000, "alice", 2, 8100, 128, 8192, 8100 * 1312),
)
PROCS = (
    ProcRow(4242, "node", 1000, 1, 8000, 0, 8000 * 1312, growth=600.0, container="0123456789abcdef"),
    ProcRow(77, "manyinst", 0, 7, 7, 3, 7 * 1312, growth=0.0),
    ProcRow(900, "inotifywait", 0, 1, 57, 65, 57 * 1312),
    ProcRow(901, "code", 1000, 1, 100, 0, None, growth=None),
)


def scr() -> toprender.Screen:
    names = {0: "root", 1000: "alice"}
    by_pid = {p.pid: p.container for p in PROCS}
    return toprender.Screen(lambda uid: names.get(uid, str(uid)), lambda pid: by_pid.get(pid, ""))


def frame(**kw: object) -> Frame:
    args: dict = {"live": True, "source": "live (BPF, tracepoint)", "users": USERS, "procs": PROCS, "failures": ()}
    args.update(kw)
    return Frame(**args, taken=0.0)


def pids(st: ViewState) -> list[int]:
    return [r.pid for r in shown_procs(PROCS, st)]


def test_sort_keys_and_filters() -> None:
    st = ViewState()
    assert pids(st) == [4242, 901, 900, 77]
    press(st, "i", [])
    assert (st.sort, pids(st)) == ("instances", [77, 4242, 901, 900])  # ties by watches
    press(st, "g", [])
    assert pids(st) == [4242, 77, 901, 900]  # unknown growth last (then by watches)
    press(st, "s", [])
    assert st.sort == "watches"  # s cycles
    for key in ("u", "1", "0", "0", "0", "ENTER"):
        press(st, key, [])
    assert (st.uid, pids(st)) == (1000, [4242, 901])
    for key in ("c", "c", "o", "ENTER"):
        press(st, key, [])
    assert (st.comm, pids(st)) == ("co", [901])
    for key in ("u", "ENTER", "c", "x", "BACKSPACE", "ENTER"):  # empty: all again
        press(st, key, [])
    assert (st.uid, st.comm) == (None, None)
    press(st, "u", [])
    for key in ("no-such-user-here", "ENTER"):
        press(st, key if key == "ENTER" else key[0], [])
    assert st.message.startswith("no such user") and st.uid is None


def test_prompt_escape_cancels_and_root_filter() -> None:
    st = ViewState()
    for key in ("u", "5", "ESC"):
        press(st, key, [])
    assert (st.prompt, st.uid) == (None, None)
    for key in ("u", "r", "o", "o", "t", "ENTER"):
        press(st, key, [])
    assert st.uid == 0 and pids(st) == [900, 77]


def test_selection_and_process_view() -> None:
    st = ViewState()
    rows = shown_procs(PROCS, st)
    assert press(st, "DOWN", rows) == "" and st.selected == 1
    press(st, "END", rows)
    assert st.selected == 3
    press(st, "DOWN", rows)
    assert st.selected == 3  # stays on the last row
    press(st, "UP", rows)
    assert press(st, "ENTER", rows) == "open" and (st.mode, st.pid) == ("process", 900)
    assert press(st, "r", rows) == "open"
    press(st, "ESC", rows)
    assert (st.mode, st.pid) == ("main", None)
    press(st, "?", rows)
    assert st.mode == "help"
    press(st, "q", rows)
    assert st.mode == "main" and not st.quit
    press(st, "q", rows)
    assert st.quit


def test_growth_over_the_window() -> None:
    g = topdata.Growth(window=60)
    assert g.observe(0, {1: 100}) == {1: None}  # one sample: unknown
    assert g.observe(10, {1: 200, 2: 5}) == {1: 600.0, 2: None}
    assert g.observe(70, {1: 200})[1] == 0.0  # t=0 fell out: (200 - 200) over 10..70
    assert g.observe(80, {2: 7}) == {2: None}  # 1 gone; 2 is seen anew


def test_screen_80x24() -> None:
    fail = LimitFailure(
        make_call(
            syscall=Syscall.INOTIFY_ADD_WATCH, tgid=4242, tid=4242, uid=1000, euid=1000, comm=b"node", ret=-errno.ENOSPC
        ),
        LimitHit("watches", 1000, 8192, 8192, (Holder(4242, 1, 8000, b"node"), Holder(901, 1, 100, b"code"))),
    )
    fails = topdata.Failures(clock=lambda: 0.0)
    fails.add(fail)
    f = frame(failures=tuple(fails.rows), failures_total=fails.total)
    lines = toprender.draw(toprender.Drawing(f, ViewState(), scr(), 2.0), (80, 24), toprender.ProcessPaths(None))
    text = [toprender.text_of(ln).rstrip() for ln in lines]
    assert len(text) == 24 and max(map(len, text)) <= 80
    clock = text[0].split()[-1]
    assert text[:11] == [
        f"inotrace top  live (BPF, tracepoint)  sort: watches  every 2s  {clock}",
        "USER     INSTANCES                        WATCHES                         MEMORY",
        "alice        2/128 [#-----]   2%        8100/8192 [############]  99%   10.1 MiB",
        "root         3/128 [#-----]   2%         120/8192 [#-----------]   1%  153.8 KiB",
        "",
        "    PID COMM            USER   CONTAINER  INST  WATCHES  +W/MIN QUEUE   MEMORY",
        "   4242 node            alice  0123456789    1    8,000    +600     0 10.0 MiB",
        "    901 code            alice  -             1      100       -     0        -",
        "    900 inotifywait     root   -             1       57       -    65 73.0 KiB",
        "     77 manyinst        root   -             7        7       0     3  9.0 KiB",
        "",
    ]
    assert text[11] == "LIMIT FAILURES  1 since start, newest first"
    assert text[12:14] == [
        "00:00:00 ENOSPC alice at 8,192/8,192 watches: node 4242".replace("00:00:00", text[12][:8]),
        "         holders: node 4242 (8,000), code 901 (100)",
    ]
    assert text[-1] == toprender.KEYS_HELP
    assert lines[6][0][1] == "sel"  # the first process is selected
    assert [seg for seg in lines[2] if seg[0].startswith("#")][1][1] == "crit"  # 99 %: the critical colour


def test_wide_screen_and_snapshot_notes() -> None:
    f = frame(live=False, source="procfs snapshot", notes=("not live: must run as root",))
    lines = toprender.draw(toprender.Drawing(f, ViewState(), scr(), 2.0), (160, 50), toprender.ProcessPaths(None))
    text = [toprender.text_of(ln).rstrip() for ln in lines]
    assert text[1] == "not live: must run as root"
    head = next(t for t in text if t.lstrip().startswith("PID"))
    assert "CONTAINER" in head and len(head) > 100
    row = next(t for t in text if t.lstrip().startswith("4242"))
    assert "0123456789abcdef"[:12] in row
    assert any("not seen by a procfs snapshot" in t for t in text)


def test_plain_output_has_every_user_and_the_rows_asked() -> None:
    out = io.StringIO()
    term = PlainTerm(out)
    term.width = 100
    d = toprender.Drawing(frame(), ViewState(), scr(), 1.0)
    term.write(toprender.plain(d, term.width, 2))
    text = out.getvalue().splitlines()
    assert sum(1 for t in text if t.startswith(("alice", "root"))) == 2
    assert [t.split()[0] for t in text if t.strip()[:1].isdigit()] == ["4242", "901"]
    assert "LIMIT FAILURES  none since start" in text


def test_key_names() -> None:
    import curses  # noqa: PLC0415

    assert [key_name(k) for k in (curses.KEY_UP, "\n", "\x1b", "\x7f", "q", "\x01", curses.KEY_F1)] == [
        "UP",
        "ENTER",
        "ESC",
        "BACKSPACE",
        "q",
        None,
        None,
    ]


def test_bars() -> None:
    assert toprender.text_of(toprender.bar(0, 100, 10)) == "[----------]   0%"
    assert toprender.text_of(toprender.bar(1, 1000, 10)) == "[#---------]   0%"  # used: never an empty bar
    assert toprender.text_of(toprender.bar(95, 100, 10)) == "[##########]  95%"
    assert toprender.text_of(toprender.bar(5, None, 4)) == "[????]    ?"
    assert [toprender.bar(n, 100, 10)[1][1] for n in (69, 70, 90)] == ["ok", "warn", "crit"]
