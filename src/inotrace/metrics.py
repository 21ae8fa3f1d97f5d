"""Prometheus rendering: fresh metric families built at every scrape.

Follows cloudflare/ebpf_exporter and the Prometheus "writing exporters"
rules: BPF maps are read at scrape time and never cleared; each source is
timed and a failing source is marked 0 and logged once, the rest is served.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from . import __version__
from .accounting import Accounting, PerOwner
from .bpf_stats import ProgramStats
from .labels import CounterFold, LabelCap
from .limits import Limits
from .names import errno_name
from .records import CountKeyC, OpenKeyC, Origin, Syscall
from .untrusted import comm_text

log = logging.getLogger(__name__)

Source = Callable[[], Iterable[Metric]]

# inotify_init and inotify_init1 both create an instance: one metric.
CALL_METRICS: dict[Syscall, str] = {
    Syscall.INOTIFY_INIT: "inotify_init",
    Syscall.INOTIFY_INIT1: "inotify_init",
    Syscall.INOTIFY_ADD_WATCH: "inotify_add_watch",
    Syscall.INOTIFY_RM_WATCH: "inotify_rm_watch",
}

CALL_HELP = {
    "inotify_init": "inotify instances created (inotify_init and inotify_init1 that succeeded)",
    "inotify_add_watch": "inotify_add_watch calls that succeeded (new watches and modified ones)",
    "inotify_rm_watch": "inotify_rm_watch calls that succeeded",
}


@dataclass(frozen=True)
class CallCount:
    """One row of the in-kernel call counter map."""

    comm: str  # escaped
    uid: int
    err: int
    syscall: Syscall
    origin: Origin
    value: int

    @classmethod
    def from_key(cls, key: CountKeyC, value: int) -> CallCount:
        return cls(
            comm=comm_text(key.comm),
            uid=key.uid,
            err=key.err,
            syscall=Syscall(key.syscall),
            origin=Origin(key.origin),
            value=value,
        )


def render_calls(rows: Sequence[CallCount], fold: CounterFold) -> list[Metric]:
    """The inotify call counters, with comm capped through `fold`."""

    def labels(r: CallCount) -> tuple[str, ...]:
        metric = CALL_METRICS[r.syscall]
        return (metric, "err", str(r.uid), errno_name(r.err)) if r.err else (metric, "ok", str(r.uid), r.origin.label)

    series = fold.fold((r.comm, labels(r), r.value) for r in rows)
    fams: dict[tuple[str, str], CounterMetricFamily] = {}
    for metric, help_text in CALL_HELP.items():
        fams[metric, "ok"] = CounterMetricFamily(f"inotrace_{metric}", help_text, labels=["comm", "uid", "origin"])
        fams[metric, "err"] = CounterMetricFamily(
            f"inotrace_{metric}_errors", f"{metric} calls that failed, by errno", labels=["comm", "uid", "errno"]
        )
    for (comm, metric, kind, uid, last), value in sorted(series.items()):
        fams[metric, kind].add_metric([comm, uid, last], value)
    return list(fams.values())


CORRECTION_KINDS = ("instance_missed", "watch_missed", "watch_removed_by_kernel")


def render_accounting(
    acc: Accounting,
    comms: LabelCap,
    comm_of: Callable[[int], str],
    top_n: int,
    limits: Limits,
    *,
    overflows: Sequence[tuple[str, int, int]] = (),
    overflow_fold: CounterFold | None = None,
    container_of: Callable[[int], tuple[str, str]] | None = None,
    watch_cost: int | None = None,
) -> list[Metric]:
    """Current instances and watches: by comm/uid, per top process, per user, limits.

    watch_cost: the kernel's bytes per watch (btf.inotify_watch_cost), for the
    per-user watch memory; None leaves that family out.

    overflows: (owner comm, uid, episodes) of queue overflows seen so far, their
    comm capped through overflow_fold (a fresh one: the first scrape's view).
    container_of: pid -> (container_id, pod_uid), labels on the per-process gauges (--labels.container).
    """
    owners = acc.per_owner()
    comm = {tgid: comm_of(tgid) for tgid, _ in owners}
    return [
        *_by_comm(owners, comm, comms),
        *_top_processes(owners, comm, top_n, container_of),
        *_per_user(acc, limits, watch_cost),
        *_user_peaks(acc),
        *_model_health(acc, overflows, overflow_fold or CounterFold(comms.cap)),
    ]


def _by_comm(owners: PerOwner, comm: dict[int, str], comms: LabelCap) -> list[Metric]:
    comms.admit((comm[tgid], v[1] + v[0]) for (tgid, _), v in owners.items())
    by_comm: dict[tuple[str, str], list[int]] = {}
    for (tgid, uid), v in owners.items():
        agg = by_comm.setdefault((comms.label(comm[tgid]), str(uid)), [0, 0])
        agg[0] += v[0]
        agg[1] += v[1]
    inst_f = GaugeMetricFamily(
        "inotrace_inotify_instances", "inotify instances now, by owner comm and charged uid", labels=["comm", "uid"]
    )
    watch_f = GaugeMetricFamily(
        "inotrace_inotify_watches", "inotify watches now, by owner comm and charged uid", labels=["comm", "uid"]
    )
    for labels, (n_inst, n_watch) in sorted(by_comm.items()):
        inst_f.add_metric(list(labels), n_inst)
        watch_f.add_metric(list(labels), n_watch)
    return [inst_f, watch_f]


def _top_processes(
    owners: PerOwner, comm: dict[int, str], top_n: int, container_of: Callable[[int], tuple[str, str]] | None
) -> list[Metric]:
    top = sorted(owners.items(), key=lambda kv: (-kv[1][1], -kv[1][0], kv[0]))[:top_n]
    names = ["pid", "comm", "uid"] + (["container_id", "pod_uid"] if container_of else [])
    p_inst = GaugeMetricFamily(
        "inotrace_process_inotify_instances",
        "inotify instances owned by one of the top processes by watches",
        labels=names,
    )
    p_watch = GaugeMetricFamily(
        "inotrace_process_inotify_watches", "inotify watches of one of the top processes by watches", labels=names
    )
    p_queue = GaugeMetricFamily(
        "inotrace_process_inotify_queue_depth",
        "events queued in the deepest instance of one of the top processes",
        labels=names,
    )
    for (tgid, uid), (n_inst, n_watch, depth) in top:
        labels = [str(tgid), comm[tgid], str(uid), *(container_of(tgid) if container_of else ())]
        p_inst.add_metric(labels, n_inst)
        p_watch.add_metric(labels, n_watch)
        p_queue.add_metric(labels, depth)
    return [p_inst, p_watch, p_queue]


def _per_user(acc: Accounting, limits: Limits, watch_cost: int | None) -> list[Metric]:
    u_inst = GaugeMetricFamily(
        "inotrace_user_inotify_instances",
        "inotify instances charged to a user, from the kernel's own counter",
        labels=["uid", "user_ns"],
    )
    u_watch = GaugeMetricFamily(
        "inotrace_user_inotify_watches",
        "inotify watches charged to a user, from the kernel's own counter",
        labels=["uid", "user_ns"],
    )
    max_i = GaugeMetricFamily(
        "inotrace_inotify_max_user_instances", "per-user instance limit of a user namespace", labels=["user_ns"]
    )
    max_w = GaugeMetricFamily(
        "inotrace_inotify_max_user_watches", "per-user watch limit of a user namespace", labels=["user_ns"]
    )
    u_mem = GaugeMetricFamily(
        "inotrace_user_inotify_watch_memory_bytes",
        "kernel memory a user's inotify watches hold, by the kernel's own per-watch estimate "
        "(INOTIFY_WATCH_COST: sizeof inotify_inode_mark + 2 x sizeof inode, from BTF)",
        labels=["uid", "user_ns"],
    )
    ns_limits = {limits.user_ns: limits.of(None)}
    for u in sorted(acc.users.values(), key=lambda u: (u.user_ns, u.uid)):
        user_labels = [str(u.uid), str(u.user_ns)]
        u_inst.add_metric(user_labels, u.instances)
        u_watch.add_metric(user_labels, u.watches)
        if watch_cost is not None:
            u_mem.add_metric(user_labels, u.watches * watch_cost)
        ns_limits.setdefault(u.user_ns, limits.of(u))
    for ns, (mi, mw) in sorted(ns_limits.items()):
        max_i.add_metric([str(ns)], mi or 0)
        max_w.add_metric([str(ns)], mw or 0)
    max_q = GaugeMetricFamily(
        "inotrace_inotify_max_queued_events", "queue cap given to new inotify instances (fs.inotify.max_queued_events)"
    )
    max_q.add_metric([], limits.max_queued_events or 0)
    return [u_inst, u_watch, *([u_mem] if watch_cost is not None else []), max_i, max_w, max_q]


def _user_peaks(acc: Accounting) -> list[Metric]:
    # what `snapshot --advise` sizes limits from; users gone keep theirs (bounded: MAX_PEAKS)
    peak_i = GaugeMetricFamily(
        "inotrace_user_inotify_instances_peak",
        "highest inotify instances charged to a user at a sample since the exporter started",
        labels=["uid", "user_ns"],
    )
    peak_w = GaugeMetricFamily(
        "inotrace_user_inotify_watches_peak",
        "highest inotify watches charged to a user at a sample since the exporter started",
        labels=["uid", "user_ns"],
    )
    for (ns, uid), (inst, watches) in sorted(acc.peaks.items()):
        peak_i.add_metric([str(uid), str(ns)], inst)
        peak_w.add_metric([str(uid), str(ns)], watches)
    return [peak_i, peak_w]


def _model_health(acc: Accounting, overflows: Sequence[tuple[str, int, int]], fold: CounterFold) -> list[Metric]:
    corr = CounterMetricFamily(
        "inotrace_accounting_corrections", "corrections reconciling made to the live model, by kind", labels=["kind"]
    )
    for kind in CORRECTION_KINDS:
        corr.add_metric([kind], acc.corrections.get(kind, 0))
    drift = GaugeMetricFamily(
        "inotrace_accounting_drift",
        "model minus kernel, summed over users, after the last reconcile (0 = exact)",
        labels=["resource"],
    )
    for resource, value in sorted(acc.drift.items()):
        drift.add_metric([resource], value)
    untracked = CounterMetricFamily(
        "inotrace_accounting_untracked_instances", "instances not tracked because --max-tracked-instances was reached"
    )
    untracked.add_metric([], acc.overflow)
    q_over = CounterMetricFamily(
        "inotrace_inotify_queue_overflows",
        "times an instance's event queue was seen overflowed (IN_Q_OVERFLOW queued, later events dropped), "
        "by owner comm and charged uid; sampled, so an overflow drained within one sample can be missed",
        labels=["comm", "uid"],
    )
    for (c, uid_s), n in sorted(fold.fold((c, (str(uid),), n) for c, uid, n in overflows).items()):
        q_over.add_metric([c, uid_s], n)
    return [corr, drift, untracked, q_over]


@dataclass(frozen=True)
class OpenCount:
    """One row of the in-kernel open counter map."""

    comm: str  # escaped
    uid: int
    err: int
    origin: Origin
    value: int

    @classmethod
    def from_key(cls, key: OpenKeyC, value: int) -> OpenCount:
        return cls(comm_text(key.comm), key.uid, key.err, Origin(key.origin), value)


def render_opens(rows: Sequence[OpenCount], fold: CounterFold) -> list[Metric]:
    """Opens counted in the kernel, by comm/uid and origin (errors by errno)."""
    series = fold.fold(
        (r.comm, ("err", str(r.uid), errno_name(r.err)) if r.err else ("ok", str(r.uid), r.origin.label), r.value)
        for r in rows
    )
    opens = CounterMetricFamily(
        "inotrace_opens",
        "files opened (open, openat, openat2, creat, open_by_handle_at and io_uring opens that succeeded), "
        "by comm, effective uid and origin",
        labels=["comm", "uid", "origin"],
    )
    errors = CounterMetricFamily(
        "inotrace_open_errors", "opens that failed, by comm, effective uid and errno", labels=["comm", "uid", "errno"]
    )
    for (comm, kind, uid, last), value in sorted(series.items()):
        (errors if kind == "err" else opens).add_metric([comm, uid, last], value)
    return [opens, errors]


@dataclass(frozen=True)
class ProbeRow:
    probe: str
    backend: str
    attached: bool


def render_self(
    probes: Sequence[ProbeRow],
    lost: dict[str, int],
    records: int,
    invalid_records: int,
    map_entries: dict[str, tuple[int, int]],
    *,
    sample_errors: Mapping[str, int] | None = None,
) -> list[Metric]:
    """The exporter's own health: probes, losses, map fill, failed samples, build."""
    build = GaugeMetricFamily("inotrace_build_info", "inotrace build, value 1", labels=["version"])
    build.add_metric([__version__], 1)
    attached = GaugeMetricFamily(
        "inotrace_probe_attached",
        "1 if the probe is attached with this backend, 0 if that backend was tried and failed",
        labels=["probe", "backend"],
    )
    for p in probes:
        attached.add_metric([p.probe, p.backend], 1 if p.attached else 0)
    lost_f = CounterMetricFamily(
        "inotrace_events_lost",
        "records or counts the kernel side could not deliver, by reason",
        labels=["reason"],
    )
    for reason, value in sorted(lost.items()):
        lost_f.add_metric([reason], value)
    rec = CounterMetricFamily("inotrace_ringbuf_records", "records received from the kernel ring buffer")
    rec.add_metric([], records)
    bad = CounterMetricFamily("inotrace_ringbuf_records_invalid", "ring buffer records that could not be decoded")
    bad.add_metric([], invalid_records)
    entries = GaugeMetricFamily("inotrace_bpf_map_entries", "entries in a BPF map", labels=["map"])
    cap = GaugeMetricFamily("inotrace_bpf_map_max_entries", "capacity of a BPF map", labels=["map"])
    for name, (used, size) in sorted(map_entries.items()):
        entries.add_metric([name], used)
        cap.add_metric([name], size)
    failed = CounterMetricFamily(
        "inotrace_sample_errors",
        "samples of the kernel's inotify state that failed (the model waits for the next), by errno or 'undecodable'",
        labels=["error"],
    )
    for kind, n in sorted((sample_errors or {}).items()):
        failed.add_metric([kind], n)
    return [build, attached, lost_f, rec, bad, entries, cap, failed]


def render_bpf_programs(stats: Sequence[ProgramStats], enabled: bool | None) -> list[Metric]:
    """inotrace's own kernel cost, per BPF program, as ebpf_exporter shows it."""
    on = GaugeMetricFamily(
        "inotrace_bpf_stats_enabled",
        "1 if the kernel counts BPF program run time now (kernel.bpf_stats_enabled or serve --bpf-stats), "
        "0 if not: then the run counters stand still",
    )
    if enabled is not None:
        on.add_metric([], int(enabled))
    info = GaugeMetricFamily(
        "inotrace_bpf_program_info",
        "an inotrace BPF program loaded in the kernel, value 1",
        labels=["program", "id", "tag"],
    )
    seconds = CounterMetricFamily(
        "inotrace_bpf_program_run_seconds", "time the kernel spent running the program", labels=["program"]
    )
    runs = CounterMetricFamily("inotrace_bpf_program_runs", "times the kernel ran the program", labels=["program"])
    for s in stats:
        info.add_metric([s.program, str(s.id), s.tag], 1)
        seconds.add_metric([s.program], s.run_ns / 1e9)
        runs.add_metric([s.program], s.runs)
    return [on, info, seconds, runs]


def render_audit_log(dropped: Mapping[str, int]) -> list[Metric]:
    fam = CounterMetricFamily(
        "inotrace_audit_records_dropped",
        "audit records --log-events could not write (disk full, EIO...), by errno",
        labels=["reason"],
    )
    for reason, n in sorted(dropped.items()):
        fam.add_metric([reason], n)
    return [fam]


def render_http(rejected: int) -> list[Metric]:
    fam = CounterMetricFamily(
        "inotrace_http_requests_rejected",
        "telemetry requests answered 503 because --web.max-requests were already in flight",
    )
    fam.add_metric([], rejected)
    return [fam]


class InotraceCollector(Collector):
    """Runs every source at each scrape, timing each one."""

    def __init__(self, sources: dict[str, Source]) -> None:
        self._sources = sources
        self._failed_before: set[str] = set()

    def describe(self) -> Iterable[Metric]:
        """Every family, as one collection names them: client_python's registry
        filters `?name[]=` and checks collisions with these. `serve` registers
        the collector once the probes are attached, so that collection is real."""
        return list(self.collect())

    def collect(self) -> Iterable[Metric]:
        duration = GaugeMetricFamily(
            "inotrace_scrape_collector_duration_seconds",
            "time a collector took during this scrape",
            labels=["collector"],
        )
        success = GaugeMetricFamily(
            "inotrace_scrape_collector_success",
            "1 if the collector succeeded during this scrape",
            labels=["collector"],
        )
        for name, source in self._sources.items():
            start = time.perf_counter()
            try:
                metrics = list(source())
            except Exception as e:  # one source's failure must not fail the scrape
                metrics = []
                ok = 0
                if name not in self._failed_before:
                    log.error(
                        "collector %s failed: %s: %s (logged once, tried again each scrape)", name, type(e).__name__, e
                    )
                    log.debug("collector %s failure", name, exc_info=True)
                    self._failed_before.add(name)
            else:
                ok = 1
            duration.add_metric([name], time.perf_counter() - start)
            success.add_metric([name], ok)
            yield from metrics
        yield duration
        yield success
