"""`serve --log-events FILE`: the audit stream appended to a file that may fail.

A full disk, EIO or a deleted directory must never stop the exporter: a
record that cannot be written is dropped and counted by errno, one line is
logged per episode of failures, and the next record tries again. Writes go
straight to an O_APPEND fd, one record a write; a record cut short by a full
disk is cut off again (ftruncate), so the file only ever holds whole lines.
SIGHUP reopens the file (logrotate's default `create` mode).
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections import Counter

from .errors import InotraceError
from .names import errno_name

log = logging.getLogger(__name__)

# An episode ends once writes have worked for this long with no failure: a
# nearly full disk takes small records and refuses big ones, and that is one
# episode, not a line per record.
EPISODE_S = 5.0


class AuditLog:
    def __init__(self, path: str) -> None:
        self.path = path
        self.dropped: Counter[str] = Counter()  # errno name -> records not written
        self._failing: str | None = None  # the errno of the episode in progress
        self._failed_at = 0.0
        self._reopen = False
        try:
            self._fd: int | None = self._open()
        except OSError as e:
            raise InotraceError(f"cannot open event log {path}: {e.strerror}") from e

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)

    def request_reopen(self) -> None:
        """From a signal handler: reopen before the next write."""
        self._reopen = True

    def _ensure_open(self) -> int:
        if self._reopen or self._fd is None:
            self._reopen = False
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            self._fd = self._open()
            log.info("event log %s (re)opened", self.path)
        return self._fd

    def write(self, line: str) -> None:
        raw = (line + "\n").encode()
        try:
            fd = self._ensure_open()
            n = os.write(fd, raw)
            if n < len(raw):  # the disk filled during it: take the piece back
                os.ftruncate(fd, os.fstat(fd).st_size - n)
                raise OSError(errno.ENOSPC, "short write")
        except OSError as e:
            self._drop(e.errno or 0)
            return
        if self._failing is not None and time.monotonic() - self._failed_at >= EPISODE_S:
            log.info("event log %s writable again; %d records dropped so far", self.path, sum(self.dropped.values()))
            self._failing = None

    def _drop(self, err: int) -> None:
        name = errno_name(err)
        self.dropped[name] += 1
        self._failed_at = time.monotonic()
        if self._failing != name:
            self._failing = name
            log.warning("event log %s: write failed (%s); dropping records until it works again", self.path, name)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
