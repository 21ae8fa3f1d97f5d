"""Watched paths from fdinfo's file handles, and what a process watches, aggregated.

fdinfo gives each watch's file handle; open_by_handle_at (CAP_DAC_READ_SEARCH)
on a descriptor of its mount turns it back into a path. A watched file whose
dentry was evicted resolves to "/": a path is trusted only if it stats to the
watched inode, else it is unknown, never guessed. Paths are never walked for.

`snapshot --paths`, `top`'s process view and the exporter's /api/v1/watches
all resolve through `watched_by` here.
"""

from __future__ import annotations

import ctypes
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from . import proc
from .libc import LIBC
from .untrusted import escape_text
from .watched import DEFAULT_TOP, Watched, aggregate

LIBC.open_by_handle_at.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
PATH_TEXT_MAX = 4096  # an escaped path is cut here: a traced process chose it


class _FileHandle(ctypes.Structure):
    _fields_ = [("handle_bytes", ctypes.c_uint), ("handle_type", ctypes.c_int), ("f_handle", ctypes.c_ubyte * 128)]


_OCTAL = re.compile(rb"\\([0-7]{3})")


def unescape_mount_path(field: bytes) -> bytes:
    """A mount point as /proc/PID/mountinfo writes it: the kernel escapes
    space, tab, newline and backslash as \\ooo and passes every other byte
    through (UTF-8 included), so only those escapes are decoded, as bytes."""
    return _OCTAL.sub(lambda m: bytes([int(m.group(1), 8) & 0xFF]), field)


class MountFds:
    """Open fds on mounts, by (pid, sdev), for open_by_handle_at; opened on first use."""

    def __init__(self, procfs: str) -> None:
        self.procfs = procfs
        self._points: dict[int, dict[int, bytes]] = {}
        self._fds: dict[tuple[int, int], int | None] = {}

    def _mount_points(self, pid: int) -> dict[int, bytes]:
        points = self._points.get(pid)
        if points is None:
            points = self._points[pid] = {}
            try:
                with open(f"{self.procfs}/{pid}/mountinfo", "rb") as f:
                    for line in f:
                        parts = line.split()
                        if len(parts) >= 5:
                            major, minor = (int(x) for x in parts[2].split(b":"))
                            points.setdefault((major << 20) | minor, unescape_mount_path(parts[4]))
            except (OSError, ValueError):
                pass
        return points

    def get(self, pid: int, sdev: int) -> int | None:
        key = (pid, sdev)
        if key not in self._fds:
            point = self._mount_points(pid).get(sdev)
            fd = None
            if point is not None:
                try:
                    # not O_PATH: open_by_handle_at refuses O_PATH mount fds (EBADF)
                    root = os.fsencode(f"{self.procfs}/{pid}/root")
                    fd = os.open(root + point, os.O_RDONLY | os.O_DIRECTORY)
                except OSError:
                    fd = None
            self._fds[key] = fd
        return self._fds[key]

    def close(self) -> None:
        for fd in self._fds.values():
            if fd is not None:
                os.close(fd)
        self._fds.clear()

    def __enter__(self) -> MountFds:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def resolve_path(watch: proc.Watch, mount_fd: int | None) -> str | None:
    """The path of a watched inode, or None when it cannot be told for sure."""
    if mount_fd is None or not watch.handle or watch.handle_type < 0:
        return None
    fh = _FileHandle(handle_bytes=len(watch.handle), handle_type=watch.handle_type)
    ctypes.memmove(fh.f_handle, watch.handle, len(watch.handle))
    fd = LIBC.open_by_handle_at(mount_fd, ctypes.byref(fh), os.O_PATH)
    if fd < 0:
        return None
    try:
        st = os.fstat(fd)
        path = os.readlink(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)
    if st.st_ino != watch.ino or path.endswith(" (deleted)"):
        return None
    try:
        again = os.stat(path, follow_symlinks=False)
    except OSError:
        return None
    if again.st_ino != watch.ino or stat.S_IFMT(again.st_mode) != stat.S_IFMT(st.st_mode):
        return None
    return path


def shown(path: str | None) -> str:
    """A path as text for people and JSON: escaped and bounded, or "unknown"."""
    return escape_text(os.fsencode(path), PATH_TEXT_MAX) if path is not None else "unknown"


def watched_rows(w: Watched) -> dict[str, Any]:
    """A process's aggregated watches as JSON (escaped paths)."""
    return {"prefixes": [{"path": shown(p.path), "watches": p.watches} for p in w.prefixes], "unknown": w.unknown}


@dataclass(frozen=True)
class WatchedBy:
    """What one process's instances watch: the aggregate, and how many watches
    were left unresolved because of `limit` (counted, not guessed)."""

    watched: Watched
    watches: int  # read from fdinfo now
    not_resolved: int  # beyond the limit


def _first_watches(procfs: str, holders: Iterable[tuple[int, int]]) -> list[proc.Watch]:
    for tgid, fd in holders:
        watches = proc.read_watches(procfs, tgid, fd)
        if watches is not None:
            return watches
    return []  # every holder closed it meanwhile


def watched_by(
    procfs: str, pid: int, instances: Iterable[Iterable[tuple[int, int]]], top: int = DEFAULT_TOP, limit: int = -1
) -> WatchedBy:
    """Read each instance's watches through the first holder (tgid, fd) that
    still has it and resolve at most `limit` of them (-1: all) in `pid`'s mounts."""
    resolved: list[str | None] = []
    read = skipped = 0
    with MountFds(procfs) as mounts:
        for holders in instances:
            watches = _first_watches(procfs, holders)
            read += len(watches)
            for w in watches:
                if 0 <= limit <= len(resolved):
                    skipped += 1
                    continue
                resolved.append(resolve_path(w, mounts.get(pid, w.sdev)))
    return WatchedBy(aggregate(resolved, top), read, skipped)
