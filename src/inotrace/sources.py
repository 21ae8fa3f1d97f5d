"""The metric sources `serve` registers: each reads a running Tracer (BPF maps,
the live model) at scrape time and renders fresh families. Maps are never
cleared. Kept apart from the tracer so that `trace` never imports
prometheus_client."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client.core import Metric

from . import bpf_stats
from .auditlog import AuditLog
from .exporter import RequestCap
from .labels import CounterFold, LabelCap
from .limits import Limits
from .metrics import (
    CallCount,
    OpenCount,
    ProbeRow,
    Source,
    render_accounting,
    render_audit_log,
    render_bpf_programs,
    render_calls,
    render_http,
    render_opens,
    render_self,
)
from .records import LostReason
from .tracer import Tracer
from .untrusted import comm_text

# BPF maps whose fill `inotrace_bpf_map_entries` shows against their capacity.
WATCHED_MAPS = ("counts", "inflight", "open_counts", "open_slots", "iou_opens", "gstate")


def calls(tracer: Tracer, max_comms: int) -> Source:
    fold = CounterFold(max_comms)

    def collect() -> list[Metric]:
        rows = [CallCount.from_key(k, v) for k, v in tracer.maps.read_counts()]
        return render_calls(rows, fold)

    return collect


def opens(tracer: Tracer, max_comms: int) -> Source:
    fold = CounterFold(max_comms)

    def collect() -> list[Metric]:
        return render_opens([OpenCount.from_key(k, v) for k, v in tracer.maps.read_open_counts()], fold)

    return collect


def accounting(
    tracer: Tracer,
    max_comms: int,
    top_n: int,
    container_of: Callable[[int], tuple[str, str]] | None = None,
    watch_cost: int | None = None,
) -> Source:
    comms = LabelCap(max_comms, readmit=True)  # gauges: a comm back from `other` makes no counter jump
    overflow_fold = CounterFold(max_comms)

    def collect() -> list[Metric]:
        tracer.refresh()
        limits = Limits.read(tracer.procfs)
        with tracer.lock:
            overflows = [(comm_text(c), uid, n) for (c, uid), n in tracer.accounting.overflows.items()]
            return render_accounting(
                tracer.accounting,
                comms,
                tracer.comm_of,
                top_n,
                limits,
                overflows=overflows,
                overflow_fold=overflow_fold,
                container_of=container_of,
                watch_cost=watch_cost,
            )

    return collect


def exporter(tracer: Tracer) -> Source:
    def collect() -> list[Metric]:
        probes = [
            ProbeRow(status.probe, backend, err is None)
            for status in tracer.probes
            if not status.absent
            for backend, err in status.tried.items()
        ]
        lost = {LostReason(i).label: v for i, v in enumerate(tracer.maps.read_lost())}
        entries = {name: fill for name in WATCHED_MAPS if (fill := tracer.maps.map_fill(name)) is not None}
        with tracer.lock:
            failed = dict(tracer.sample_errors)
        return render_self(probes, lost, tracer.drain.records, tracer.drain.invalid, entries, sample_errors=failed)

    return collect


def bpf_cost(tracer: Tracer, btf_path: str, procfs: str, switched_on: bool) -> Source:
    """`switched_on`: inotrace holds BPF_ENABLE_STATS (the sysctl does not show it)."""
    layout: list[bpf_stats.InfoLayout] = []  # resolved at the first scrape, then kept

    def collect() -> list[Metric]:
        if not layout:
            layout.append(bpf_stats.InfoLayout.read(btf_path))
        stats = bpf_stats.read(tracer.program_fds(), layout[0])
        return render_bpf_programs(stats, True if switched_on else bpf_stats.enabled(procfs))

    return collect


def audit_log(log_file: AuditLog | None) -> Source:
    def collect() -> list[Metric]:
        return render_audit_log(log_file.dropped if log_file is not None else {})

    return collect


def http(cap: RequestCap) -> Source:
    def collect() -> list[Metric]:
        return render_http(cap.rejected)

    return collect
