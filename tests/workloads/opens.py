"""A known mix of opens, under a fixed comm; prints what it did as JSON.

Run as an unprivileged user (EACCES needs it). Usage: opens.py COMM DIR
Everything is imported and resolved before the comm is set, so nothing
else opens a file under that name.
"""

import ctypes
import errno
import json
import os
import sys

SYS_OPEN, SYS_CREAT, SYS_OPENAT2 = 2, 85, 437  # x86-64
PR_SET_NAME = 15
O_RDONLY, O_CREAT, O_EXCL = os.O_RDONLY, os.O_CREAT, os.O_EXCL

libc = ctypes.CDLL(None, use_errno=True)


class OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def sys_open(path: bytes, flags: int) -> int:
    return libc.syscall(SYS_OPEN, path, flags, 0o644)


def sys_creat(path: bytes) -> int:
    return libc.syscall(SYS_CREAT, path, 0o644)


def sys_openat2(path: bytes, flags: int) -> int:
    how = OpenHow(flags, 0, 0)
    return libc.syscall(SYS_OPENAT2, -100, path, ctypes.byref(how), ctypes.sizeof(how))


def py_openat(path: bytes, flags: int) -> int:
    try:
        return os.open(path, flags, 0o644)
    except OSError as e:
        ctypes.set_errno(e.errno)
        return -1


def main() -> None:
    comm, base = sys.argv[1].encode(), sys.argv[2].encode()
    plain = os.path.join(base, b"plain")
    with open(plain, "wb"):
        pass
    secret = b"/etc/shadow"  # 0640 root: EACCES for nobody
    missing = os.path.join(base, b"missing")
    under_file = os.path.join(plain, b"x")  # ENOTDIR
    plan = (
        [("openat", py_openat, plain, O_RDONLY)] * 13
        + [("open", sys_open, plain, O_RDONLY)] * 5
        + [("creat", sys_creat, os.path.join(base, b"made%d" % i), None) for i in range(3)]
        + [("openat2", sys_openat2, plain, O_RDONLY)] * 2
        + [("openat", py_openat, missing, O_RDONLY)] * 11
        + [("open", sys_open, under_file, O_RDONLY)] * 3
        + [("openat2", sys_openat2, secret, O_RDONLY)] * 2
        + [("openat", py_openat, plain, O_CREAT | O_EXCL)]
    )
    ok, errors, calls = 0, {}, {}
    libc.prctl(PR_SET_NAME, comm, 0, 0, 0)
    for name, fn, path, flags in plan:
        fd = fn(path) if flags is None else fn(path, flags)
        calls[name] = calls.get(name, 0) + 1
        if fd >= 0:
            ok += 1
            os.close(fd)
        else:
            e = errno.errorcode[ctypes.get_errno()]
            errors[e] = errors.get(e, 0) + 1
    libc.prctl(PR_SET_NAME, b"opens-done", 0, 0, 0)
    print(json.dumps({"pid": os.getpid(), "ok": ok, "errors": errors, "calls": calls}), flush=True)


main()
