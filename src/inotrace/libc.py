"""libc through ctypes: the one handle every module uses (LIBC), and the
inotify system calls for the self-test and tools."""

from __future__ import annotations

import ctypes
import os

LIBC = ctypes.CDLL(None, use_errno=True)
_libc = LIBC
_libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
_libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]

IN_CLOEXEC = os.O_CLOEXEC
IN_NONBLOCK = os.O_NONBLOCK
PR_SET_NAME = 15


def _check(ret: int) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def inotify_init1(flags: int = 0) -> int:
    return _check(_libc.inotify_init1(flags))


def inotify_add_watch(fd: int, path: str | bytes, mask: int) -> int:
    return _check(_libc.inotify_add_watch(fd, os.fsencode(path), mask))


def inotify_rm_watch(fd: int, wd: int) -> int:
    return _check(_libc.inotify_rm_watch(fd, wd))


def set_thread_name(name: bytes) -> None:
    """prctl(PR_SET_NAME): the calling thread's comm (first 15 bytes)."""
    _check(_libc.prctl(PR_SET_NAME, name, 0, 0, 0))
