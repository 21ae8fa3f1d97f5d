"""A workload with a known, prime-numbered mix of inotify calls.

    python inotify_calls.py COMM DIR

Sets its comm to COMM, then makes, on files it creates under DIR:
  23 inotify_init1 that succeed, 1 that fails (EINVAL: bad flags)
  37 inotify_add_watch that succeed (29 new watches, 8 that modify an
     existing one: the same path again, or a hard link to a watched file),
     1 that fails (ENOENT)
  5 inotify_rm_watch that succeed, 1 that fails (EINVAL: unknown wd)
and prints, as one JSON line, every call it made with its result.
Deliberately independent of inotrace's own code: it is the ground truth.
"""

import ctypes
import json
import os
import sys

libc = ctypes.CDLL(None, use_errno=True)
libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]

IN_MODIFY, IN_ATTRIB, IN_CREATE, IN_CLOEXEC = 0x2, 0x4, 0x100, 0o2000000


def call(log, syscall, fn, *args, **shown):
    ret = fn(*args)
    err = ctypes.get_errno() if ret < 0 else 0
    log.append({"syscall": syscall, "ret": ret, "errno": err, **shown})
    return ret


def main():
    comm, base = sys.argv[1].encode(), sys.argv[2]
    libc.prctl(15, comm, 0, 0, 0)  # PR_SET_NAME
    files = []
    for i in range(29):
        p = os.path.join(base, f"f{i:02d}")
        with open(p, "w"):
            pass
        files.append(p)
    link = os.path.join(base, "hardlink-to-f00")
    os.link(files[0], link)
    log = []
    fds = [call(log, "inotify_init1", libc.inotify_init1, IN_CLOEXEC, flags=IN_CLOEXEC) for _ in range(23)]
    call(log, "inotify_init1", libc.inotify_init1, 0x7FFFFFFF, flags=0x7FFFFFFF)
    fd = fds[0]
    wds = []
    for p in files:  # 29 new watches
        wds.append(
            call(
                log,
                "inotify_add_watch",
                libc.inotify_add_watch,
                fd,
                p.encode(),
                IN_MODIFY,
                fd=fd,
                path=p,
                mask=IN_MODIFY,
            )
        )
    for p in files[:7]:  # 7 modifications of existing watches, same path, new mask
        call(log, "inotify_add_watch", libc.inotify_add_watch, fd, p.encode(), IN_ATTRIB, fd=fd, path=p, mask=IN_ATTRIB)
    # 1 modification through a hard link: same inode, so the same wd
    call(
        log, "inotify_add_watch", libc.inotify_add_watch, fd, link.encode(), IN_CREATE, fd=fd, path=link, mask=IN_CREATE
    )
    missing = os.path.join(base, "does-not-exist")
    call(
        log,
        "inotify_add_watch",
        libc.inotify_add_watch,
        fd,
        missing.encode(),
        IN_MODIFY,
        fd=fd,
        path=missing,
        mask=IN_MODIFY,
    )
    for wd in wds[:5]:
        call(log, "inotify_rm_watch", libc.inotify_rm_watch, fd, wd, fd=fd, wd=wd)
    call(log, "inotify_rm_watch", libc.inotify_rm_watch, fd, 999999, fd=fd, wd=999999)
    for f in fds:
        os.close(f)
    print(json.dumps({"pid": os.getpid(), "calls": log}))


if __name__ == "__main__":
    main()
