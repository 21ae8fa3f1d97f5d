"""`inotrace snapshot`: who holds what right now, from procfs alone (no BPF).

procfs lists an instance once per fd that refers to it: a forked or dup'd
instance shows up in several places. kcmp(KCMP_FILE) says
whether two fds are the same open file, and orders them consistently, so
sorting every inotify fd with it groups the holders of each instance in
O(n log n) comparisons. Where kcmp is refused (another user's process,
without root) the fd is kept as an instance of its own.
"""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass, field
from typing import Any

from . import proc
from .libc import LIBC
from .limits import Limits
from .paths import MountFds, resolve_path, shown, watched_rows
from .untrusted import comm_text
from .watched import DEFAULT_TOP, aggregate

_libc = LIBC
_SYS_KCMP = {"x86_64": 312, "aarch64": 272}.get(platform.machine(), -1)
KCMP_FILE = 0


class _Unordered(Exception):
    pass


def _kcmp(a: tuple[int, int], b: tuple[int, int]) -> int:
    if a == b:
        return 0
    ret = _libc.syscall(_SYS_KCMP, a[0], b[0], KCMP_FILE, a[1], b[1]) if _SYS_KCMP > 0 else -1
    if ret < 0 or ret == 3:
        raise _Unordered
    return {0: 0, 1: -1, 2: 1}[ret]


def group_holders(fds: list[tuple[int, int]]) -> list[list[tuple[int, int]]]:
    """(pid, fd) pairs grouped by the open file they refer to."""
    try:
        ordered = sorted(fds, key=functools.cmp_to_key(_kcmp))
    except _Unordered:
        return _group_pairwise(sorted(fds))
    groups: list[list[tuple[int, int]]] = []
    for item in ordered:
        if groups and _kcmp(groups[-1][0], item) == 0:
            groups[-1].append(item)
        else:
            groups.append([item])
    return [sorted(g) for g in groups]


def _group_pairwise(fds: list[tuple[int, int]]) -> list[list[tuple[int, int]]]:
    groups: list[list[tuple[int, int]]] = []
    for item in fds:
        for g in groups:
            try:
                if _kcmp(g[0], item) == 0:
                    g.append(item)
                    break
            except _Unordered:
                continue
        else:
            groups.append([item])
    return groups


@dataclass
class SnapInstance:
    holders: list[tuple[int, int]]
    uid: int
    watches: list[proc.Watch] = field(default_factory=list)

    @property
    def owner(self) -> int:
        return self.holders[0][0]


def _status_euid(procfs: str, pid: int) -> int | None:
    try:
        with open(f"{procfs}/{pid}/status") as f:
            for line in f:
                if line.startswith("Uid:"):
                    return int(line.split()[2])
    except (OSError, ValueError, IndexError):
        return None
    return None


def take(procfs: str = "/proc") -> list[SnapInstance]:
    fds: list[tuple[int, int]] = []
    for name in os.listdir(procfs):
        if name.isdigit():
            fds.extend((int(name), fd) for fd in proc.inotify_fds(procfs, int(name)))
    out = []
    for holders in group_holders(fds):
        for pid, fd in holders:
            watches = proc.read_watches(procfs, pid, fd)
            uid = _status_euid(procfs, holders[0][0])
            if watches is not None and uid is not None:
                out.append(SnapInstance(holders, uid, watches))
                break
    return out


# -- report --------------------------------------------------------------------


def report(
    instances: list[SnapInstance],
    procfs: str = "/proc",
    paths: bool = False,
    watch_cost: int | None = None,
    top_prefixes: int = DEFAULT_TOP,
) -> dict[str, Any]:
    """Users, processes and instances; with watch_cost (the kernel's bytes per
    watch, btf.inotify_watch_cost) also the kernel memory their watches hold;
    with paths each watch's path and each process's top_prefixes prefixes."""
    rep = _report(instances, procfs, paths, top_prefixes)
    if watch_cost is not None:
        rep["watch_cost_bytes"] = watch_cost
        for row in (*rep["users"], *rep["processes"]):
            row["watch_memory_bytes"] = row["watches"] * watch_cost
    return rep


def _watch_row(w: proc.Watch, path: str | None) -> dict[str, Any]:
    return {"wd": w.wd, "ino": w.ino, "dev": "{}:{}".format(*w.dev_major_minor), "mask": w.mask, "path": shown(path)}


def _report(instances: list[SnapInstance], procfs: str, paths: bool, top_prefixes: int) -> dict[str, Any]:
    limits = Limits.read(procfs)
    max_instances, max_watches = limits.of(None)  # snapshot reads no ucounts: the users of our namespace
    users: dict[int, dict[str, int]] = {}
    procs: dict[int, dict[str, Any]] = {}
    out_instances = []
    owner_paths: dict[int, list[str | None]] = {}
    mounts = MountFds(procfs)
    try:
        for inst in instances:
            u = users.setdefault(inst.uid, {"uid": inst.uid, "instances": 0, "watches": 0})
            u["instances"] += 1
            u["watches"] += len(inst.watches)
            p = procs.get(inst.owner)
            if p is None:
                comm = proc.read_comm(procfs, inst.owner)
                p = procs[inst.owner] = {
                    "pid": inst.owner,
                    "comm": comm_text(comm) if comm is not None else None,
                    "uid": inst.uid,
                    "instances": 0,
                    "watches": 0,
                }
            p["instances"] += 1
            p["watches"] += len(inst.watches)
            item: dict[str, Any] = {
                "owner": inst.owner,
                "holders": [{"pid": pid, "fd": fd} for pid, fd in inst.holders],
                "uid": inst.uid,
                "watches": len(inst.watches),
            }
            if paths:
                resolved = [resolve_path(w, mounts.get(inst.owner, w.sdev)) for w in inst.watches]
                item["watch_list"] = [_watch_row(w, path) for w, path in zip(inst.watches, resolved, strict=True)]
                owner_paths.setdefault(inst.owner, []).extend(resolved)
            out_instances.append(item)
    finally:
        mounts.close()
    for pid, resolved in owner_paths.items():
        procs[pid]["watched"] = watched_rows(aggregate(resolved, top_prefixes))
    for u in users.values():
        u["max_instances"] = max_instances or 0
        u["max_watches"] = max_watches or 0
    return {
        "limits": {
            "max_user_instances": limits.max_user_instances,
            "max_user_watches": limits.max_user_watches,
            "max_queued_events": limits.max_queued_events,
        },
        "users": sorted(users.values(), key=lambda u: -u["watches"]),
        "processes": sorted(procs.values(), key=lambda p: (-p["watches"], -p["instances"], p["pid"])),
        "instances": sorted(out_instances, key=lambda i: (-i["watches"], i["owner"])),
    }


def iec_bytes(n: int) -> str:
    """1536 -> "1.5 KiB": what a person reads at a glance."""
    if n < 1024:
        return f"{n} B"
    value = n / 1024
    for unit in ("KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def render_text(rep: dict[str, Any]) -> str:
    mem = "watch_cost_bytes" in rep  # the kernel memory column, where BTF gave the cost

    def kmem(row: dict[str, Any]) -> str:
        return f"  {iec_bytes(row['watch_memory_bytes']):>10}" if mem else ""

    lines = ["USER      INSTANCES          WATCHES" + ("          KERNEL MEMORY" if mem else "")]
    for u in rep["users"]:
        watches = f"{u['watches']:>9} / {u['max_watches']:<9}" if mem else f"{u['watches']:>9} / {u['max_watches']}"
        lines.append(f"{u['uid']:<9} {u['instances']:>5} / {u['max_instances']:<6} {watches}{kmem(u)}".rstrip())
    lines += ["", f"{'PID':<8} {'UID':<7} {'INSTANCES':>9} {'WATCHES':>9}" + ("  KERNEL MEM" if mem else "") + "  COMM"]
    for p in rep["processes"]:
        lines.append(f"{p['pid']:<8} {p['uid']:<7} {p['instances']:>9} {p['watches']:>9}{kmem(p)}  {p['comm'] or '?'}")
    lines += _watched_text(rep["processes"])
    shared = [i for i in rep["instances"] if len(i["holders"]) > 1]
    if shared:
        lines += ["", "shared instances (counted once, for the lowest pid):"]
        for i in shared:
            holders = ", ".join(f"{h['pid']}:{h['fd']}" for h in i["holders"])
            lines.append(f"  {i['watches']} watches held by {holders}")
    return "\n".join(lines)


def _watched_text(processes: list[dict[str, Any]]) -> list[str]:
    """Each process's top prefixes (--paths): count first, so a long path cannot push it off."""
    lines: list[str] = []
    for p in processes:
        w = p.get("watched")
        if not w or not (w["prefixes"] or w["unknown"]):
            continue
        lines += ["", f"{p['pid']} {p['comm'] or '?'}: watches at or under each prefix"]
        lines += [f"  {x['watches']:>9,}  {x['path']}" for x in w["prefixes"]]
        if w["unknown"]:
            lines.append(f"  {w['unknown']:>9,}  unknown (no path can be told for sure)")
    return lines
