"""Reads of /proc: inotify fds and their watches (/proc/PID/fd, /proc/PID/fdinfo), comm, the inotify sysctls.

fdinfo has one line per watch, every number in hex:
``inotify wd:c8 ino:20c2aa sdev:fe00000 mask:382 ignored_mask:0 fhandle-bytes:8 ...``
`sdev` is the kernel's dev_t (major << 20 | minor), not st_dev.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

INOTIFY_LINK = "anon_inode:inotify"

_LINE = re.compile(
    r"^inotify wd:(?P<wd>[0-9a-f]+) ino:(?P<ino>[0-9a-f]+) sdev:(?P<sdev>[0-9a-f]+) mask:(?P<mask>[0-9a-f]+)"
    r"(?: ignored_mask:[0-9a-f]+)?(?: fhandle-bytes:(?P<hb>[0-9a-f]+) fhandle-type:(?P<ht>[0-9a-f]+)"
    r" f_handle:(?P<fh>[0-9a-f]+))?"
)


@dataclass(frozen=True)
class Watch:
    wd: int
    ino: int
    sdev: int
    mask: int
    handle_type: int = -1
    handle: bytes = b""

    @property
    def dev_major_minor(self) -> tuple[int, int]:
        return self.sdev >> 20, self.sdev & 0xFFFFF


def parse(text: str) -> list[Watch]:
    out = []
    for line in text.splitlines():
        m = _LINE.match(line)
        if m:
            out.append(
                Watch(
                    wd=int(m["wd"], 16),
                    ino=int(m["ino"], 16),
                    sdev=int(m["sdev"], 16),
                    mask=int(m["mask"], 16),
                    handle_type=int(m["ht"], 16) if m["ht"] else -1,
                    handle=bytes.fromhex(m["fh"]) if m["fh"] else b"",
                )
            )
    return out


def _inotify_fdinfo(procfs: str, tgid: int, fd: int) -> str | None:
    """fdinfo text of an inotify fd, or None if that fd is gone or not inotify."""
    try:
        with open(f"{procfs}/{tgid}/fdinfo/{fd}") as f:
            text = f.read()
    except OSError:
        return None
    if "inotify wd:" not in text and not _is_inotify(procfs, tgid, fd):
        return None
    return text


def read_watches(procfs: str, tgid: int, fd: int) -> list[Watch] | None:
    """The watches of an inotify fd, or None if that fd is gone or not inotify."""
    text = _inotify_fdinfo(procfs, tgid, fd)
    return None if text is None else parse(text)


def read_wd_masks(procfs: str, tgid: int, fd: int) -> dict[int, int] | None:
    """wd -> mask of an inotify fd (the hot path of seeding: no regex, no objects)."""
    text = _inotify_fdinfo(procfs, tgid, fd)
    if text is None:
        return None
    out = {}
    for line in text.splitlines():
        if line.startswith("inotify wd:"):
            # inotify wd:<hex> ino:<hex> sdev:<hex> mask:<hex> ...
            parts = line.split(" ", 5)
            out[int(parts[1][3:], 16)] = int(parts[4][5:], 16)
    return out


def read_first(procfs: str, holders: tuple[tuple[int, int], ...]) -> dict[int, int] | None:
    """An instance's watches through the first holder (tgid, fd) that still has it."""
    for tgid, fd in holders:
        watches = read_wd_masks(procfs, tgid, fd)
        if watches is not None:
            return watches
    return None  # every holder closed it meanwhile


def _is_inotify(procfs: str, tgid: int, fd: int) -> bool:
    try:
        return os.readlink(f"{procfs}/{tgid}/fd/{fd}") == INOTIFY_LINK
    except OSError:
        return False


def inotify_fds(procfs: str, tgid: int) -> list[int]:
    """The fds of a process that are inotify instances ([] if it is gone or unreadable)."""
    base = f"{procfs}/{tgid}/fd"
    try:
        names = os.listdir(base)
    except OSError:
        return []
    out = []
    for name in names:
        try:
            if os.readlink(f"{base}/{name}") == INOTIFY_LINK:
                out.append(int(name))
        except (OSError, ValueError):
            continue
    return sorted(out)


def read_comm(procfs: str, tgid: int) -> bytes | None:
    try:
        with open(f"{procfs}/{tgid}/comm", "rb") as f:
            return f.read().rstrip(b"\n")
    except OSError:
        return None


INOTIFY_LIMITS = ("max_user_instances", "max_user_watches", "max_queued_events")


def read_inotify_limits(procfs: str) -> dict[str, int | None]:
    """fs.inotify.* limits of the reader's user namespace (None where unreadable)."""
    out: dict[str, int | None] = {}
    for name in INOTIFY_LIMITS:
        try:
            with open(f"{procfs}/sys/fs/inotify/{name}") as f:
                out[name] = int(f.read().strip())
        except (OSError, ValueError):
            out[name] = None
    return out


def mem_total(procfs: str) -> int | None:
    """Bytes of RAM (MemTotal), None if unreadable."""
    try:
        with open(f"{procfs}/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024  # the kernel writes kB (KiB)
    except (OSError, ValueError, IndexError):
        pass
    return None


def user_ns_inode(procfs: str) -> int:
    """The reader's user namespace (the inode number its ns link names); 0 if unreadable."""
    try:
        link = os.readlink(f"{procfs}/self/ns/user")  # "user:[4026531837]"
        return int(link[link.index("[") + 1 : -1])
    except (OSError, ValueError):
        return 0


class CommCache:
    """Raw comms of the processes the model holds, read once each: a process
    read while it lives is named even after it exits. Forgotten for the
    processes no longer held, and all re-read after `refresh` (exec renames)."""

    def __init__(self, procfs: str) -> None:
        self.procfs = procfs
        self._comms: dict[int, bytes] = {}  # raw, as the process set it (untrusted)

    def raw(self, tgid: int) -> bytes:
        comm = self._comms.get(tgid)
        if comm is None:
            comm = self._comms[tgid] = read_comm(self.procfs, tgid) or b""
        return comm

    def keep(self, tgids: set[int], refresh: bool = False) -> None:
        if refresh:
            self._comms.clear()
        for tgid in self._comms.keys() - tgids:
            del self._comms[tgid]
