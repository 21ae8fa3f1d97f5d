"""Metric rendering in an isolated registry, from synthetic counter rows."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

from inotrace.bpf_stats import ProgramStats
from inotrace.labels import CounterFold
from inotrace.metrics import (
    CallCount,
    InotraceCollector,
    ProbeRow,
    render_bpf_programs,
    render_calls,
    render_self,
)
from inotrace.records import CountKeyC, Origin, Syscall


def row(comm: str, syscall: Syscall, value: int, err: int = 0, uid: int = 1000) -> CallCount:
    return CallCount(comm=comm, uid=uid, err=err, syscall=syscall, origin=Origin.USER, value=value)


def scrape(sources: dict) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    reg = CollectorRegistry()
    reg.register(InotraceCollector(sources))
    text = generate_latest(reg).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def test_init_and_init1_are_one_metric_and_errors_are_separate() -> None:
    rows = [
        row("node", Syscall.INOTIFY_INIT, 2),
        row("node", Syscall.INOTIFY_INIT1, 21),
        row("node", Syscall.INOTIFY_INIT1, 3, err=24),
        row("node", Syscall.INOTIFY_ADD_WATCH, 37),
        row("node", Syscall.INOTIFY_ADD_WATCH, 5, err=28),
        row("node", Syscall.INOTIFY_RM_WATCH, 1, err=9999),
    ]
    got = scrape({"calls": lambda: render_calls(rows, CounterFold(10))})
    ok = (("comm", "node"), ("origin", "user"), ("uid", "1000"))
    assert got[("inotrace_inotify_init_total", ok)] == 23
    assert got[("inotrace_inotify_init_errors_total", (("comm", "node"), ("errno", "EMFILE"), ("uid", "1000")))] == 3
    assert got[("inotrace_inotify_add_watch_total", ok)] == 37
    assert (
        got[("inotrace_inotify_add_watch_errors_total", (("comm", "node"), ("errno", "ENOSPC"), ("uid", "1000")))] == 5
    )
    rm_err = (("comm", "node"), ("errno", "unknown:9999"), ("uid", "1000"))
    assert got[("inotrace_inotify_rm_watch_errors_total", rm_err)] == 1
    assert got[("inotrace_scrape_collector_success", (("collector", "calls"),))] == 1


def calls_by_comm(got: dict) -> dict[str, float]:
    return {dict(k[1])["comm"]: v for k, v in got.items() if k[0] == "inotrace_inotify_init_total"}


def test_comm_cap_folds_the_rest_into_other_and_evicts_into_it() -> None:
    fold = CounterFold(2)
    first = [row("a", Syscall.INOTIFY_INIT1, 1), row("b", Syscall.INOTIFY_INIT1, 5), row("c", Syscall.INOTIFY_INIT1, 9)]
    assert calls_by_comm(scrape({"calls": lambda: render_calls(first, fold)})) == {"c": 9, "b": 5, "other": 1}
    # "a" grows by 99, far more than "b" (quiet): "a" takes b's slot, b's 5 move into
    # other, and from now on a's series counts what a does while it has one
    later = [row("a", Syscall.INOTIFY_INIT1, 100), *first[1:]]
    assert calls_by_comm(scrape({"calls": lambda: render_calls(later, fold)})) == {"c": 9, "a": 99, "other": 6}


def test_failing_source_is_marked_and_others_still_served() -> None:
    def broken() -> Iterable[Metric]:
        raise RuntimeError("map gone")

    got = scrape({"broken": broken, "exporter": lambda: render_self([], {}, 0, 0, {})})
    assert got[("inotrace_scrape_collector_success", (("collector", "broken"),))] == 0
    assert got[("inotrace_scrape_collector_success", (("collector", "exporter"),))] == 1
    assert ("inotrace_build_info", (("version", __import__("inotrace").__version__),)) in got


def test_self_metrics() -> None:
    probes = [ProbeRow("inotify_init1", "tracepoint", False), ProbeRow("inotify_init1", "kprobe", True)]
    lost = {"ringbuf_full": 3, "inflight_full": 0, "counter_map_full": 0}
    got = scrape({"exporter": lambda: render_self(probes, lost, 42, 1, {"counts": (7, 16384)})})
    assert got[("inotrace_probe_attached", (("backend", "kprobe"), ("probe", "inotify_init1")))] == 1
    assert got[("inotrace_probe_attached", (("backend", "tracepoint"), ("probe", "inotify_init1")))] == 0
    assert got[("inotrace_events_lost_total", (("reason", "ringbuf_full"),))] == 3
    assert got[("inotrace_ringbuf_records_total", ())] == 42
    assert got[("inotrace_bpf_map_entries", (("map", "counts"),))] == 7
    assert got[("inotrace_bpf_map_max_entries", (("map", "counts"),))] == 16384


def test_count_key_comm_is_escaped() -> None:
    key = CountKeyC(comm=b"a\nb\x1b", uid=0, err=0, syscall=Syscall.INOTIFY_INIT1, origin=Origin.USER)
    assert CallCount.from_key(key, 1).comm == "a\\x0ab\\x1b"


def test_bpf_program_cost() -> None:
    stats = [ProgramStats("tp_exit_openat", 41, "a1569c7dd3c024fe", 2_500_000_001, 7)]
    got = scrape({"bpf": lambda: render_bpf_programs(stats, True)})
    prog = (("program", "tp_exit_openat"),)
    assert got[("inotrace_bpf_program_info", (("id", "41"), *prog, ("tag", "a1569c7dd3c024fe")))] == 1
    assert got[("inotrace_bpf_program_run_seconds_total", prog)] == 2.500000001
    assert got[("inotrace_bpf_program_runs_total", prog)] == 7
    assert got[("inotrace_bpf_stats_enabled", ())] == 1
    off = scrape({"bpf": lambda: render_bpf_programs([], None)})
    assert not any(name == "inotrace_bpf_stats_enabled" for name, _ in off)  # unknown: no sample rather than a guess
