"""Prometheus rendering: fresh metric families built at every scrape.

Follows cloudflare/ebpf_exporter and the Prometheus "writing exporters"
rules: BPF maps are read at scrape time and never cleared; each source is
timed and a failing source is marked 0 and logged once, the rest is served.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from . import __version__
from .labels import LabelCap
from .names import errno_name
from .records import CountKeyC, Origin, Syscall
from .untrusted import escape_text

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
            comm=escape_text(key.comm, 64),
            uid=key.uid,
            err=key.err,
            syscall=Syscall(key.syscall),
            origin=Origin(key.origin),
            value=value,
        )


def render_calls(rows: Sequence[CallCount], comms: LabelCap) -> list[Metric]:
    """The inotify call counters, with comm capped through `comms`."""
    comms.admit((r.comm, r.value) for r in rows)
    ok: dict[str, dict[tuple[str, ...], int]] = {m: {} for m in CALL_HELP}
    failed: dict[str, dict[tuple[str, ...], int]] = {m: {} for m in CALL_HELP}
    for r in rows:
        metric = CALL_METRICS[r.syscall]
        comm = comms.label(r.comm)
        if r.err:
            key = (comm, str(r.uid), errno_name(r.err))
            failed[metric][key] = failed[metric].get(key, 0) + r.value
        else:
            key = (comm, str(r.uid), r.origin.label)
            ok[metric][key] = ok[metric].get(key, 0) + r.value
    out: list[Metric] = []
    for metric, help_text in CALL_HELP.items():
        fam = CounterMetricFamily(f"inotrace_{metric}", help_text, labels=["comm", "uid", "origin"])
        for labels, value in sorted(ok[metric].items()):
            fam.add_metric(list(labels), value)
        out.append(fam)
        err = CounterMetricFamily(
            f"inotrace_{metric}_errors",
            f"{metric} calls that failed, by errno",
            labels=["comm", "uid", "errno"],
        )
        for labels, value in sorted(failed[metric].items()):
            err.add_metric(list(labels), value)
        out.append(err)
    return out


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
) -> list[Metric]:
    """The exporter's own health: probes, losses, map fill, build."""
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
    return [build, attached, lost_f, rec, bad, entries, cap]


class InotraceCollector(Collector):
    """Runs every source at each scrape, timing each one."""

    def __init__(self, sources: dict[str, Source]) -> None:
        self._sources = sources
        self._failed_before: set[str] = set()

    def describe(self) -> Iterable[Metric]:
        # Registering must not call collect() before the probes are attached.
        return []

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
            except Exception:
                metrics = []
                ok = 0
                if name not in self._failed_before:
                    log.exception("collector %s failed (logged once)", name)
                    self._failed_before.add(name)
            else:
                ok = 1
            duration.add_metric([name], time.perf_counter() - start)
            success.add_metric([name], ok)
            yield from metrics
        yield duration
        yield success
