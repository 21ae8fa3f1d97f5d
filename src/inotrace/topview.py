"""`inotrace top`'s screen state and keys: what is sorted, filtered, selected
and open, changed only by `press`. Pure: the terminal is top.py's."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .topdata import ProcRow

SORTS = ("watches", "instances", "growth")
SORT_KEYS = {"w": "watches", "i": "instances", "g": "growth"}


@dataclass
class ViewState:
    sort: str = "watches"
    uid: int | None = None  # only this user's processes
    comm: str | None = None  # only comms containing this
    mode: str = "main"  # main | process | help
    selected: int = 0  # row of the process list
    pid: int | None = None  # the process view's process
    prompt: str | None = None  # "uid" | "comm" while a filter is typed
    typed: str = ""
    message: str = ""  # one line of feedback, until the next key
    quit: bool = False


def sort_key(sort: str):  # type: ignore[no-untyped-def]
    if sort == "instances":
        return lambda r: (-r.instances, -r.watches, r.pid)
    if sort == "growth":
        return lambda r: (-(r.growth if r.growth is not None else float("-inf")), -r.watches, r.pid)
    return lambda r: (-r.watches, -r.instances, r.pid)


def shown_procs(rows: Sequence[ProcRow], st: ViewState) -> list[ProcRow]:
    """The process list as the state sorts and filters it."""
    out = [r for r in rows if (st.uid is None or r.uid == st.uid) and (st.comm is None or st.comm in r.comm)]
    return sorted(out, key=sort_key(st.sort))


def press(st: ViewState, key: str, rows: Sequence[ProcRow]) -> str:
    """Apply one key (a character, or UP DOWN PGUP PGDN HOME END ENTER ESC
    BACKSPACE) to the state; `rows` is the process list as shown. Returns
    "open" when the process view is to be (re)filled, else ""."""
    st.message = ""
    if st.prompt is not None:
        _typing(st, key)
        return ""
    if st.mode != "main":
        return _in_view(st, key)
    if key in ("q", "Q"):
        st.quit = True
    elif key in SORT_KEYS:
        st.sort = SORT_KEYS[key]
    elif key == "s":
        st.sort = SORTS[(SORTS.index(st.sort) + 1) % len(SORTS)]
    elif key in ("u", "c"):
        st.prompt, st.typed = ("uid" if key == "u" else "comm"), ""
    elif key in ("?", "h"):
        st.mode = "help"
    elif key in ("UP", "k", "DOWN", "j", "PGUP", "PGDN", "HOME", "END"):
        st.selected = _moved(st.selected, key, len(rows))
    elif key in ("ENTER", "p") and rows:
        st.selected = min(st.selected, len(rows) - 1)
        st.mode, st.pid = "process", rows[st.selected].pid
        return "open"
    return ""


def _moved(at: int, key: str, n: int) -> int:
    step = {"UP": -1, "k": -1, "DOWN": 1, "j": 1, "PGUP": -10, "PGDN": 10, "HOME": -n, "END": n}[key]
    return max(0, min(at + step, n - 1))


def _in_view(st: ViewState, key: str) -> str:
    if key in ("q", "ESC", "BACKSPACE", "LEFT", "?", "h"):
        st.mode, st.pid = "main", None
    elif key == "r" and st.mode == "process":
        return "open"
    elif key == "Q":
        st.quit = True
    return ""


def _typing(st: ViewState, key: str) -> None:
    if key == "ESC":
        st.prompt, st.typed = None, ""
    elif key == "BACKSPACE":
        st.typed = st.typed[:-1]
    elif key == "ENTER":
        _apply_filter(st)
    elif len(key) == 1 and key.isprintable() and len(st.typed) < 64:
        st.typed += key


def _apply_filter(st: ViewState) -> None:
    text, what = st.typed.strip(), st.prompt
    st.prompt, st.typed = None, ""
    st.selected = 0
    if what == "comm":
        st.comm = text or None
        return
    if not text:
        st.uid = None
    elif text.isdigit():
        st.uid = int(text)
    else:
        import pwd  # noqa: PLC0415

        try:
            st.uid = pwd.getpwnam(text).pw_uid
        except KeyError:
            st.message = f"no such user: {text[:32]}"
