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


# x86-64 / generic O_* bits (include/uapi/asm-generic/fcntl.h); the access
# mode (low two bits) is named separately.
OPEN_FLAG_BITS: tuple[tuple[int, str], ...] = (
    (0o100, "O_CREAT"),
    (0o200, "O_EXCL"),
    (0o400, "O_NOCTTY"),
    (0o1000, "O_TRUNC"),
    (0o2000, "O_APPEND"),
    (0o4000, "O_NONBLOCK"),
    (0o10000, "O_DSYNC"),
    (0o20000, "FASYNC"),
    (0o40000, "O_DIRECT"),
    (0o100000, "O_LARGEFILE"),
    (0o200000, "O_DIRECTORY"),
    (0o400000, "O_NOFOLLOW"),
    (0o1000000, "O_NOATIME"),
    (0o2000000, "O_CLOEXEC"),
    (0o4000000, "__O_SYNC"),
    (0o10000000, "O_PATH"),
    (0o20000000, "__O_TMPFILE"),
)


def open_flag_names(flags: int) -> list[str]:
    access = ("O_RDONLY", "O_WRONLY", "O_RDWR", "O_ACCMODE")[flags & 3]
    return [access, *bit_names(flags & ~3, OPEN_FLAG_BITS)]


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
