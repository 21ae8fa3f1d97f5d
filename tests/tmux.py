"""A real terminal for tests: a tmux server of the test's own (its own socket),
a program in a window of a given size, keys sent, the screen read back with
capture-pane. Never left behind: kill() ends the server and its programs."""

from __future__ import annotations

import os
import re
import secrets
import shlex
import subprocess
import time
from collections.abc import Callable
from typing import Any


class Tmux:
    def __init__(self) -> None:
        self.socket = f"inotrace-test-{secrets.token_hex(4)}"

    def _run(self, *args: str) -> str:
        res = subprocess.run(["tmux", "-L", self.socket, *args], check=True, capture_output=True, text=True)
        return res.stdout

    def start(self, argv: list[str], width: int = 80, height: int = 24, env: dict[str, str] | None = None) -> None:
        """Run argv in a window width x height. A shell waits for it and writes
        its exit status on the screen ("[exit N]"): tmux's own record of a
        pane's status was seen missing (the program a zombie it never reaped)."""
        wrapped = ["sh", "-c", 'env "$@"; rc=$?; printf "\\n[exit %d]\\n" $rc; exec sleep 3600', "sh"]
        wrapped += [f"{k}={v}" for k, v in (env or {}).items()] + argv
        self._run(
            "-f", "/dev/null", "new-session", "-d", "-s", "t", "-x", str(width), "-y", str(height), shlex.join(wrapped)
        )

    def screen(self, escapes: bool = False) -> str:
        """The visible screen; with `escapes`, its colours and attributes as SGR sequences."""
        return self._run("capture-pane", "-t", "t", "-p", *(["-e"] if escapes else []))

    def send(self, *keys: str) -> None:
        """tmux key names (Enter, Escape, Down, ...) or literal text."""
        for key in keys:
            self._run("send-keys", "-t", "t", key)

    def type(self, text: str) -> None:
        self._run("send-keys", "-t", "t", "-l", text)

    def exit_status(self) -> int | None:
        """The program's exit status once it has exited (None until then)."""
        found = re.search(r"^\[exit (\d+)\]$", self.screen(), re.M)
        return int(found.group(1)) if found else None

    def wait_exit(self, what: str, timeout: float = 30) -> int:
        """Wait until the program has exited (a deadline): its status."""
        deadline = time.monotonic() + timeout
        while (status := self.exit_status()) is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting until {what}; the screen:\n{self.screen()}")
            time.sleep(0.1)
        return status

    def wait_for(self, cond: Callable[[str], Any], what: str, timeout: float = 30) -> Any:
        """Wait until cond(screen) is truthy (a named condition, a deadline): its value."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            got = cond(screen)
            if got:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting until {what}; the screen:\n{screen}")
            time.sleep(0.1)

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], check=False, capture_output=True)
        sock = f"/tmp/tmux-{os.getuid()}/{self.socket}"
        if os.path.exists(sock):
            os.unlink(sock)
