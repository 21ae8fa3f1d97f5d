"""Processes that hold inotify instances in the shapes the accounting must follow.

    python scenarios.py NAME DIR

Each sets up its state under DIR, prints one JSON line ("ready" plus what it
made) and then waits (sleeps, or execs a sleeper) until killed. Independent
of inotrace's code: raw libc calls only.
"""

import ctypes
import json
import os
import random
import signal
import sys
import time

libc = ctypes.CDLL(None, use_errno=True)
libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]

IN_MODIFY, IN_ATTRIB, IN_CREATE, IN_DELETE = 0x2, 0x4, 0x100, 0x200
IN_ONESHOT, IN_CLOEXEC = 0x80000000, 0o2000000


def init(flags=0):
    fd = libc.inotify_init1(flags)
    assert fd >= 0, ctypes.get_errno()
    return fd


def add(fd, path, mask=IN_MODIFY | IN_CREATE | IN_DELETE):
    wd = libc.inotify_add_watch(fd, path.encode(), mask)
    assert wd >= 0, (path, ctypes.get_errno())
    return wd


def tree(base, n, prefix="d"):
    paths = []
    for i in range(n):
        p = os.path.join(base, f"{prefix}{i:03d}")
        os.makedirs(p, exist_ok=True)
        paths.append(p)
    return paths


def ready(**info):
    print(json.dumps({"ready": True, "pid": os.getpid(), **info}), flush=True)


def wait():
    while True:
        time.sleep(3600)


def fork_holder():
    """Fork a child that keeps every fd and waits; return once it is running."""
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(r)
        os.write(w, b"x")
        wait()
    os.close(w)
    os.read(r, 1)
    os.close(r)
    return child


def fork_shared(base):
    """Parent makes an instance with 7 watches, forks, then closes its fd: the child holds it."""
    fd = init()
    for p in tree(base, 7):
        add(fd, p)
    child = fork_holder()
    os.close(fd)
    ready(child=child, watches=7)
    wait()


def dup2_over(base):
    """Instance A (5 watches) dup2'd over instance B's fd (3 watches): B dies, A has two fds."""
    a, b = init(), init()
    for p in tree(base, 5, "a"):
        add(a, p)
    for p in tree(base, 3, "b"):
        add(b, p)
    os.dup2(a, b)
    ready(fds=[a, b], watches=5)
    wait()


def exec_cloexec(base):
    """An IN_CLOEXEC instance (4 watches) dies at exec; a plain one (6 watches) survives it."""
    gone, kept = init(IN_CLOEXEC), init()
    for p in tree(base, 4, "c"):
        add(gone, p)
    for p in tree(base, 6, "k"):
        add(kept, p)
    os.set_inheritable(kept, True)
    ready(kept=kept, watches=6)
    os.execv("/bin/sleep", ["sleep", "3600"])


def dirs(base):
    """One instance watching 11 directories (for rmdir), a oneshot watch, a hard link."""
    fd = init()
    paths = tree(base, 11)
    for p in paths:
        add(fd, p)
    f = os.path.join(base, "oneshot-file")
    open(f, "w").close()
    add(fd, f, IN_ATTRIB | IN_ONESHOT)
    g = os.path.join(base, "linked-file")
    open(g, "w").close()
    os.link(g, g + ".link")
    w1 = add(fd, g, IN_MODIFY)
    w2 = add(fd, g + ".link", IN_ATTRIB)  # same inode: the same watch, modified
    assert w1 == w2
    ready(dirs=paths, oneshot=f, watches=13)
    wait()


def many(base):
    """Adds watches until the kernel says no; reports how many failed with which errno."""
    fd = init()
    ok, errors = 0, {}
    for p in tree(base, int(sys.argv[3])):
        wd = libc.inotify_add_watch(fd, p.encode(), IN_MODIFY)
        if wd >= 0:
            ok += 1
        else:
            e = ctypes.get_errno()
            errors[e] = errors.get(e, 0) + 1
    ready(ok=ok, errors=errors)
    wait()


def random_mix(base):
    """Seeded random inotify operations in batches; waits for a line on stdin between batches."""
    rng = random.Random(int(sys.argv[3]))
    dirs = tree(base, 30)
    fds, children = [], []
    for batch in range(int(sys.argv[4])):
        for _ in range(25):
            op = rng.choice(
                ["init", "add", "add", "add", "readd", "rm", "close", "dup", "dup2", "fork", "kill", "rmdir", "oneshot"]
            )
            if op == "init" or not fds:
                if len(fds) < 12:
                    fds.append(init())
            elif op in ("add", "readd"):
                d = rng.choice(dirs)
                if os.path.isdir(d):
                    add(rng.choice(fds), d, rng.choice([IN_MODIFY, IN_CREATE, IN_DELETE | IN_ATTRIB]))
            elif op == "rm":
                libc.inotify_rm_watch(rng.choice(fds), rng.randint(1, 40))  # may fail: EINVAL counts too
            elif op == "close" and len(fds) > 1:
                os.close(fds.pop(rng.randrange(len(fds))))
            elif op == "dup" and len(fds) < 12:
                fds.append(os.dup(rng.choice(fds)))
            elif op == "dup2" and len(fds) > 1:
                a, b = rng.sample(range(len(fds)), 2)
                os.dup2(fds[a], fds[b])
            elif op == "fork" and len(children) < 4:
                children.append(fork_holder())
                if len(fds) > 1:  # the parent lets go of one; the child still holds it
                    os.close(fds.pop(rng.randrange(len(fds))))
            elif op == "kill" and children:
                pid = children.pop(rng.randrange(len(children)))
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            elif op == "rmdir":
                d = rng.choice(dirs)
                if os.path.isdir(d):
                    os.rmdir(d)
                else:
                    os.mkdir(d)
            elif op == "oneshot":
                f = os.path.join(base, f"one{batch}")
                open(f, "w").close()
                add(rng.choice(fds), f, IN_ATTRIB | IN_ONESHOT)
                os.utime(f)
        print(json.dumps({"batch": batch, "pid": os.getpid(), "children": children}), flush=True)
        sys.stdin.readline()
    for pid in children:
        os.kill(pid, signal.SIGKILL)


if __name__ == "__main__":
    globals()[sys.argv[1]](sys.argv[2])
