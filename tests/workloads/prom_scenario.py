"""Processes that put data behind every dashboard panel and alert (Prometheus e2e test).

    python prom_scenario.py ROLE COMM DIR [ARGS...]

Each role sets its comm to COMM, does its work under DIR, prints one JSON
line ("ready" plus what it did) and then waits until killed. Raw libc calls
only: independent of inotrace's code.

limits WATCHES INSTANCES
    Moves into a new user namespace (the caller's uid owns it) and lowers that
    namespace's own inotify limits (/proc/sys/user/max_inotify_*) to WATCHES
    and INSTANCES: the host's sysctls, which other tests share, are never
    touched. Then fills both limits exactly and makes calls past them:
    inotify_init1 fails with EMFILE and inotify_add_watch with ENOSPC, in two
    bursts a few seconds apart (a 1 s scrape sees the counters move).
grow TOTAL STEP PERIOD
    One instance whose watches keep growing, STEP every PERIOD seconds up to
    TOTAL: a leak, for the "watches keep growing" alert.
overflow
    One instance watching a directory, never read, that gets more events than
    fs.inotify.max_queued_events: its queue overflows. Also fails three opens
    (ENOENT).
"""

import contextlib
import ctypes
import json
import os
import sys
import time

libc = ctypes.CDLL(None, use_errno=True)
libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]

CLONE_NEWUSER = 0x10000000
IN_MODIFY, IN_CREATE = 0x2, 0x100
PR_SET_NAME = 15


def files(base, n, prefix):
    paths = []
    for i in range(n):
        p = os.path.join(base, f"{prefix}{i:05d}")
        open(p, "w").close()
        paths.append(p)
    return paths


def ready(**info):
    print(json.dumps({"ready": True, "pid": os.getpid(), **info}), flush=True)


def wait():
    while True:
        time.sleep(3600)


def errno_of(ret):
    return 0 if ret >= 0 else ctypes.get_errno()


def limits(base, watches, instances):
    watches, instances = int(watches), int(instances)
    # Files first: an unmapped uid inside the new namespace may not create any.
    paths = files(base, watches + 3, "w")
    if libc.unshare(CLONE_NEWUSER) != 0:
        sys.exit(f"unshare(CLONE_NEWUSER): errno {ctypes.get_errno()}")
    # The creator holds every capability in its new namespace, CAP_SYS_RESOURCE
    # included, which is what these per-namespace limits ask for.
    for name, value in (("max_inotify_watches", watches), ("max_inotify_instances", instances)):
        with open(f"/proc/sys/user/{name}", "w") as f:
            f.write(f"{value}\n")
    fds = [libc.inotify_init1(0) for _ in range(instances)]
    assert min(fds) >= 0, ctypes.get_errno()
    for p in paths[:watches]:
        assert libc.inotify_add_watch(fds[0], p.encode(), IN_MODIFY) >= 0, ctypes.get_errno()
    errors = {"inotify_init1": [], "inotify_add_watch": []}
    for burst in range(2):
        if burst:
            time.sleep(3)
        ret = libc.inotify_init1(0)
        errors["inotify_init1"].append(errno_of(ret))
        ret = libc.inotify_add_watch(fds[-1], paths[watches + burst].encode(), IN_MODIFY)
        errors["inotify_add_watch"].append(errno_of(ret))
    ready(instances=len(fds), watches=watches, errors=errors)
    wait()


def grow(base, total, step, period):
    total, step, period = int(total), int(step), float(period)
    paths = files(base, total, "g")
    fd = libc.inotify_init1(0)
    assert fd >= 0, ctypes.get_errno()
    for i, p in enumerate(paths):
        if i and i % step == 0:
            time.sleep(period)
        assert libc.inotify_add_watch(fd, p.encode(), IN_MODIFY) >= 0, ctypes.get_errno()
    ready(watches=total)
    wait()


def overflow(base):
    with open("/proc/sys/fs/inotify/max_queued_events") as f:
        cap = int(f.read())
    fd = libc.inotify_init1(0)
    assert fd >= 0, ctypes.get_errno()
    assert libc.inotify_add_watch(fd, base.encode(), IN_CREATE) >= 0, ctypes.get_errno()
    # Distinct names: the kernel merges an event only into an identical last one.
    for i in range(cap + 16):
        p = os.path.join(base, f"o{i}")
        open(p, "w").close()
        os.unlink(p)
    # A few opens that fail (ENOENT), for the failed-opens panel.
    for i in range(3):
        with contextlib.suppress(FileNotFoundError):
            open(os.path.join(base, f"missing{i}")).close()
    ready(events=cap + 16, max_queued_events=cap)
    wait()


if __name__ == "__main__":
    role, comm, base = sys.argv[1:4]
    libc.prctl(PR_SET_NAME, comm.encode(), 0, 0, 0)
    {"limits": limits, "grow": grow, "overflow": overflow}[role](base, *sys.argv[4:])
