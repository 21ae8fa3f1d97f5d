"""Symbolic names for numbers the kernel hands back: errnos, inotify bits."""

from __future__ import annotations

import errno

# include/uapi/linux/inotify.h
INOTIFY_MASK_BITS: tuple[tuple[int, str], ...] = (
    (0x00000001, "IN_ACCESS"),
    (0x00000002, "IN_MODIFY"),
    (0x00000004, "IN_ATTRIB"),
    (0x00000008, "IN_CLOSE_WRITE"),
    (0x00000010, "IN_CLOSE_NOWRITE"),
    (0x00000020, "IN_OPEN"),
    (0x00000040, "IN_MOVED_FROM"),
    (0x00000080, "IN_MOVED_TO"),
    (0x00000100, "IN_CREATE"),
    (0x00000200, "IN_DELETE"),
    (0x00000400, "IN_DELETE_SELF"),
    (0x00000800, "IN_MOVE_SELF"),
    (0x00002000, "IN_UNMOUNT"),
    (0x00004000, "IN_Q_OVERFLOW"),
    (0x00008000, "IN_IGNORED"),
    (0x01000000, "IN_ONLYDIR"),
    (0x02000000, "IN_DONT_FOLLOW"),
    (0x04000000, "IN_EXCL_UNLINK"),
    (0x10000000, "IN_MASK_CREATE"),
    (0x20000000, "IN_MASK_ADD"),
    (0x40000000, "IN_ISDIR"),
    (0x80000000, "IN_ONESHOT"),
)

INIT1_FLAG_BITS: tuple[tuple[int, str], ...] = (
    (0o4000, "IN_NONBLOCK"),
    (0o2000000, "IN_CLOEXEC"),
)


def errno_name(n: int) -> str:
    """`ENOSPC` for 28; `unknown:<n>` when the number has no name here."""
    return errno.errorcode.get(n, f"unknown:{n}")


def bit_names(value: int, bits: tuple[tuple[int, str], ...]) -> list[str]:
    names = [name for bit, name in bits if value & bit]
    rest = value
    for bit, _ in bits:
        rest &= ~bit
    if rest:
        names.append(f"0x{rest:x}")
    return names
