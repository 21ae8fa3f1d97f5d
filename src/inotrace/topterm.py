"""Where `inotrace top` draws: a curses screen with keys, or plain periodic
tables when the output is not a terminal (or --batch), as bcc's top tools do
without a terminal. Both take the same Session turns (top.Session)."""

from __future__ import annotations

import contextlib
import curses
import os
import shutil
import sys
import tempfile
from typing import IO, Any

from .toprender import Line

# curses key codes -> the names topview.press knows
_NAMED = {
    curses.KEY_UP: "UP",
    curses.KEY_DOWN: "DOWN",
    curses.KEY_LEFT: "LEFT",
    curses.KEY_PPAGE: "PGUP",
    curses.KEY_NPAGE: "PGDN",
    curses.KEY_HOME: "HOME",
    curses.KEY_END: "END",
    curses.KEY_ENTER: "ENTER",
    curses.KEY_BACKSPACE: "BACKSPACE",
    curses.KEY_RESIZE: "RESIZE",
}
_CHARS = {"\n": "ENTER", "\r": "ENTER", "\x1b": "ESC", "\x7f": "BACKSPACE", "\x08": "BACKSPACE"}
MAX_KEYS = 64  # keys taken per turn (a paste must not starve the ring's drain)


def key_name(key: int | str) -> str | None:
    if isinstance(key, int):
        return _NAMED.get(key)
    return _CHARS.get(key, key if key.isprintable() else None)


class CursesTerm:
    """The full screen. stderr goes to a file while it is up (a log line or
    BCC's compiler would write across the screen); what it got is kept for
    the caller to show after the screen is gone."""

    def __init__(self) -> None:
        self.scr: Any = None
        self.attrs: dict[str, int] = {}
        self._saved_err = -1
        self._err: IO[bytes] | None = None

    def __enter__(self) -> CursesTerm:
        sys.stderr.flush()
        self._err = tempfile.TemporaryFile()
        self._saved_err = os.dup(2)
        os.dup2(self._err.fileno(), 2)
        self.scr = curses.initscr()
        curses.noecho()
        curses.cbreak()
        self.scr.keypad(True)
        self.scr.nodelay(True)
        curses.set_escdelay(25)
        with contextlib.suppress(curses.error):  # a terminal without cursor control
            curses.curs_set(0)
        self.attrs = _attributes(color=curses.has_colors() and not os.environ.get("NO_COLOR"))
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.scr is not None:
            self.scr.keypad(False)
            curses.nocbreak()
            curses.echo()
            curses.endwin()
        sys.stderr.flush()
        if self._saved_err >= 0:
            os.dup2(self._saved_err, 2)
            os.close(self._saved_err)
        if self._err is not None:
            self._err.close()

    def size(self) -> tuple[int, int]:
        """(width, height), asked of the terminal itself: a resize whose
        SIGWINCH curses missed (it came while BCC compiled) still counts."""
        h, w = self.scr.getmaxyx()
        try:
            real = os.get_terminal_size(sys.__stdout__.fileno() if sys.__stdout__ else 1)
        except OSError:
            return w, h
        if (real.columns, real.lines) != (w, h):
            curses.resizeterm(real.lines, real.columns)
            h, w = self.scr.getmaxyx()
        return w, h

    def pressed(self) -> list[str]:
        out: list[str] = []
        while len(out) < MAX_KEYS:
            try:
                key = self.scr.get_wch()
            except curses.error:
                break  # none pending
            name = key_name(key)
            if name is not None:
                out.append(name)
        return out

    def show(self, lines: list[Line]) -> None:
        w, h = self.size()
        self.scr.erase()
        for y, line in enumerate(lines[:h]):
            x = 0
            for whole, style in line:
                if x >= w:
                    break
                text = whole[: w - x]
                if not text:
                    continue  # an empty part (a bar's empty share): the rest of the line still comes
                with contextlib.suppress(curses.error):  # the bottom-right cell: curses fails after writing it
                    self.scr.addstr(y, x, text, self.attrs.get(style, 0))
                x += len(text)
        self.scr.refresh()


def _attributes(color: bool) -> dict[str, int]:
    """Styles to curses attributes; without colour, bold and reverse carry them."""
    base = {"title": curses.A_BOLD, "head": curses.A_BOLD, "sel": curses.A_REVERSE, "crit": curses.A_BOLD}
    if not color:
        return base
    curses.start_color()
    try:
        curses.use_default_colors()
        bg = -1
    except curses.error:
        bg = curses.COLOR_BLACK
    for n, fg in enumerate((curses.COLOR_GREEN, curses.COLOR_YELLOW, curses.COLOR_RED, curses.COLOR_CYAN), 1):
        curses.init_pair(n, fg, bg)
    return {
        **base,
        "ok": curses.color_pair(1),
        "warn": curses.color_pair(2) | curses.A_BOLD,
        "crit": curses.color_pair(3) | curses.A_BOLD,
        "title": curses.color_pair(4) | curses.A_BOLD,
        "dim": curses.A_DIM,
    }


class PlainTerm:
    """Plain tables, one block per refresh, for a pipe or a log."""

    def __init__(self, out: IO[str] | None = None) -> None:
        self.out = out or sys.stdout
        self.width = shutil.get_terminal_size((120, 24)).columns

    def __enter__(self) -> PlainTerm:
        return self

    def __exit__(self, *_exc: object) -> None:
        pass

    def pressed(self) -> list[str]:
        return []

    def write(self, lines: list[str]) -> None:
        print("\n".join(lines) + "\n", file=self.out, flush=True)
