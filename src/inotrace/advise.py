"""What fs.inotify.max_user_watches and max_user_instances should be, from
the use seen: a running exporter's current and peak per-user counts and its
limit failures, or else a procfs snapshot (current use only).

Pure: the evidence comes in parsed (from_metrics, from_snapshot); advise()
turns it into numbers and render() into the lines an operator pastes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

# The kernel's own floor for the default max_user_watches (since 5.11 it is 1 %
# of RAM at INOTIFY_WATCH_COST, clamped to [8192, 1048576]) and the usual
# default of max_user_instances: never advise below them.
MIN_WATCHES = 8192
MIN_INSTANCES = 128
SYSCTL_FILE = "/etc/sysctl.d/60-inotify.conf"
TOP_USERS = 5  # users listed, by peak watches


@dataclass(frozen=True)
class Use:
    uid: int
    user_ns: int | None  # None: unknown (a snapshot reads no ucounts)
    instances: int
    watches: int
    peak_instances: int
    peak_watches: int


@dataclass
class Evidence:
    source: str  # where the numbers come from, said on the first line
    max_instances: int
    max_watches: int
    source_notes: list[str] = field(default_factory=list)  # e.g. why not the exporter
    users: list[Use] = field(default_factory=list)
    peaks_known: bool = False  # False: peak = current (a snapshot has no history)
    enospc: int = 0  # inotify_add_watch failures with ENOSPC (the watch limit)
    emfile: int = 0  # inotify_init failures with EMFILE (the instance limit, or RLIMIT_NOFILE)
    watch_cost: int | None = None  # bytes a watch costs the kernel (btf.inotify_watch_cost)
    mem_total: int | None = None  # bytes of RAM (MemTotal)


def from_snapshot(rep: dict[str, Any], source: str) -> Evidence:
    users = [Use(u["uid"], None, u["instances"], u["watches"], u["instances"], u["watches"]) for u in rep["users"]]
    limits = rep["limits"]
    return Evidence(source, limits["max_user_instances"] or 0, limits["max_user_watches"] or 0, users=users)


def from_metrics(text: str, source: str) -> Evidence:
    """An exporter's /metrics: per-user gauges and peaks, limits of its own
    namespace (the lowest user_ns seen with limits), the limit failures."""
    by_user: dict[tuple[int, int], dict[str, int]] = {}
    limits: dict[int, dict[str, int]] = {}
    enospc = emfile = 0
    peaks = False
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            name, labels, value = s.name, s.labels, int(s.value)
            if name.startswith("inotrace_user_inotify_"):
                key = (int(labels["uid"]), int(labels["user_ns"]))
                by_user.setdefault(key, {})[name.removeprefix("inotrace_user_inotify_")] = value
                peaks = peaks or name.endswith("_peak")
            elif name in ("inotrace_inotify_max_user_instances", "inotrace_inotify_max_user_watches"):
                limits.setdefault(int(labels["user_ns"]), {})[name.removeprefix("inotrace_inotify_")] = value
            elif name == "inotrace_inotify_add_watch_errors_total" and labels.get("errno") == "ENOSPC":
                enospc += value
            elif name == "inotrace_inotify_init_errors_total" and labels.get("errno") == "EMFILE":
                emfile += value
    if not limits:
        raise ValueError("no inotrace_inotify_max_user_* gauges: not an inotrace exporter")
    own = limits[min(limits)]
    users = [_use(uid, ns, v) for (uid, ns), v in sorted(by_user.items())]
    return Evidence(
        source,
        own.get("max_user_instances", 0),
        own.get("max_user_watches", 0),
        users=users,
        peaks_known=peaks,
        enospc=enospc,
        emfile=emfile,
    )


def _use(uid: int, ns: int, v: dict[str, int]) -> Use:
    inst, watches = v.get("instances", 0), v.get("watches", 0)
    return Use(uid, ns, inst, watches, max(inst, v.get("instances_peak", 0)), max(watches, v.get("watches_peak", 0)))


def _round_up(n: int, step: int) -> int:
    return -(-n // step) * step


def _limit(resource: str, peak: int, limit: int, *, failures: int, headroom: float, floor: int) -> dict[str, Any]:
    """One limit: what the busiest user needs with headroom, never below the
    floor, never lower than the limit now (use not seen may need it)."""
    need = peak
    why = f"{headroom:g}x the busiest user's peak"
    if failures:
        # a user hit it: what it wanted above the limit is unknown
        need = max(need, limit) * 2
        why = f"{failures} failure(s) at the limit: the demand above it is unknown, so 2x it"
    else:
        need = int(need * headroom)
    advised = max(_round_up(max(need, floor), floor), limit)
    return {
        "resource": resource,
        "peak": peak,
        "limit": limit,
        "failures": failures,
        "advised": advised,
        "action": "raise" if advised > limit else "keep",
        "why": why if advised > limit else f"the limit is at least {why}",
    }


def advise(ev: Evidence, headroom: float = 1.5) -> dict[str, Any]:
    peak_w = max((u.peak_watches for u in ev.users), default=0)
    peak_i = max((u.peak_instances for u in ev.users), default=0)
    watches = _limit(
        "max_user_watches", peak_w, ev.max_watches, failures=ev.enospc, headroom=headroom, floor=MIN_WATCHES
    )
    # EMFILE is also the process's own fd limit (RLIMIT_NOFILE): it is this limit's
    # only where a user was seen at it
    emfile = ev.emfile if ev.max_instances and peak_i >= ev.max_instances else 0
    instances = _limit(
        "max_user_instances", peak_i, ev.max_instances, failures=emfile, headroom=headroom, floor=MIN_INSTANCES
    )
    if ev.emfile and not emfile:
        instances["note"] = f"{ev.emfile} EMFILE from inotify_init below this limit: the process's fd limit"
    out: dict[str, Any] = {
        "source": ev.source,
        "source_notes": ev.source_notes,
        "peaks_known": ev.peaks_known,
        "headroom": headroom,
        "limits": [watches, instances],
        "users_holding_watches": sum(1 for u in ev.users if u.watches),
        "top_users": [asdict(u) for u in sorted(ev.users, key=lambda u: (-u.peak_watches, u.uid))[:TOP_USERS]],
        "other_user_namespaces": len({u.user_ns for u in ev.users if u.user_ns is not None}) > 1,
        "watch_cost_bytes": ev.watch_cost,
        "mem_total_bytes": ev.mem_total,
    }
    if ev.watch_cost is not None:
        out["memory_per_user_bytes"] = watches["advised"] * ev.watch_cost
        out["memory_in_use_bytes"] = sum(u.watches for u in ev.users) * ev.watch_cost
    out["sysctl_file"] = SYSCTL_FILE
    out["sysctl"] = {f"fs.inotify.{x['resource']}": x["advised"] for x in (watches, instances)}
    return out


def render(adv: dict[str, Any]) -> str:
    peaks = "current and peak use since it started" if adv["peaks_known"] else "current use only, no peak known"
    lines = [f"inotify limits, from {adv['source']}:", f"  {peaks}", *(f"  ({n})" for n in adv["source_notes"]), ""]
    used = "PEAK" if adv["peaks_known"] else "NOW"
    lines.append(f"{'':<20} {used:>10} {'LIMIT':>10} {'ADVISED':>10}")
    for x in adv["limits"]:
        lines.append(f"{x['resource']:<20} {x['peak']:>10,} {x['limit']:>10,} {x['advised']:>10,}  {x['action']}")
        lines += [f"  {x['why']}", *([f"  ({x['note']})"] if "note" in x else [])]
    if adv["top_users"]:
        lines += ["", f"{'UID':<10} {'USER_NS':<12} {'WATCHES':>10} {'PEAK':>10} {'INSTANCES':>10} {'PEAK':>6}"]
    for u in adv["top_users"]:
        ns = "?" if u["user_ns"] is None else u["user_ns"]
        lines.append(
            f"{u['uid']:<10} {ns:<12} {u['watches']:>10,} {u['peak_watches']:>10,} "
            f"{u['instances']:>10,} {u['peak_instances']:>6,}"
        )
    lines += ["", *_memory_lines(adv)]
    if adv["other_user_namespaces"]:
        lines += ["Users in other user namespaces are held to their own namespace's", "copy of these limits."]
    lines += ["", f"Persistent ({adv['sysctl_file']}, then `sysctl --system`):"]
    lines += [f"  {k} = {v}" for k, v in adv["sysctl"].items()]
    lines += ["Now:", "  sysctl -w " + " ".join(f"{k}={v}" for k, v in adv["sysctl"].items())]
    return "\n".join(lines)


def _memory_lines(adv: dict[str, Any]) -> list[str]:
    from .snapshot import iec_bytes  # noqa: PLC0415 - the one place bytes are written for people

    cost = adv["watch_cost_bytes"]
    if cost is None:
        return ["Kernel memory: unknown (no BTF, and the per-watch cost comes from", "the running kernel's types)."]
    per_user = adv["memory_per_user_bytes"]
    ram = adv["mem_total_bytes"]
    share = f" ({100 * per_user / ram:.1f} % of {iec_bytes(ram)} RAM)" if ram else ""
    return [
        f"Kernel memory: {cost:,} bytes a watch (the kernel's INOTIFY_WATCH_COST, from BTF).",
        f"Watches now hold {iec_bytes(adv['memory_in_use_bytes'])} ({adv['users_holding_watches']} user(s)).",
        f"At the advised limit one user may pin {iec_bytes(per_user)}{share}.",
    ]
