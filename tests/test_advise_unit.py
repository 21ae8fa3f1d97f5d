"""snapshot --advise on synthetic evidence: the rules, the parse of an exporter's metrics, the text."""

from __future__ import annotations

import pytest

from inotrace import advise

METRICS = """\
# TYPE inotrace_user_inotify_watches gauge
inotrace_user_inotify_watches{uid="1000",user_ns="4026531837"} 40000
inotrace_user_inotify_watches{uid="0",user_ns="4026531837"} 12
inotrace_user_inotify_watches{uid="0",user_ns="4026532999"} 7
# TYPE inotrace_user_inotify_instances gauge
inotrace_user_inotify_instances{uid="1000",user_ns="4026531837"} 3
inotrace_user_inotify_instances{uid="0",user_ns="4026531837"} 1
inotrace_user_inotify_instances{uid="0",user_ns="4026532999"} 1
# TYPE inotrace_user_inotify_watches_peak gauge
inotrace_user_inotify_watches_peak{uid="1000",user_ns="4026531837"} 150000
inotrace_user_inotify_watches_peak{uid="0",user_ns="4026531837"} 12
inotrace_user_inotify_watches_peak{uid="0",user_ns="4026532999"} 7
inotrace_user_inotify_watches_peak{uid="33",user_ns="4026531837"} 900
# TYPE inotrace_user_inotify_instances_peak gauge
inotrace_user_inotify_instances_peak{uid="1000",user_ns="4026531837"} 9
# TYPE inotrace_inotify_max_user_watches gauge
inotrace_inotify_max_user_watches{user_ns="4026531837"} 192546
inotrace_inotify_max_user_watches{user_ns="4026532999"} 8192
# TYPE inotrace_inotify_max_user_instances gauge
inotrace_inotify_max_user_instances{user_ns="4026531837"} 128
inotrace_inotify_max_user_instances{user_ns="4026532999"} 128
# TYPE inotrace_inotify_add_watch_errors_total counter
inotrace_inotify_add_watch_errors_total{comm="node",uid="1000",errno="ENOSPC"} 3
inotrace_inotify_add_watch_errors_total{comm="node",uid="1000",errno="EACCES"} 5
# TYPE inotrace_inotify_init_errors_total counter
inotrace_inotify_init_errors_total{comm="x",uid="1000",errno="EMFILE"} 2
"""


def test_exporter_metrics_parse() -> None:
    ev = advise.from_metrics(METRICS, "the exporter")
    assert (ev.max_watches, ev.max_instances, ev.enospc, ev.emfile, ev.peaks_known) == (192546, 128, 3, 2, True)
    users = {(u.uid, u.user_ns): u for u in ev.users}
    assert users[(1000, 4026531837)] == advise.Use(1000, 4026531837, 3, 40000, 9, 150000)
    # a user gone since its peak: current 0, the peak kept
    assert users[(33, 4026531837)] == advise.Use(33, 4026531837, 0, 0, 0, 900)
    assert users[(0, 4026532999)].peak_watches == 7


def test_not_an_inotrace_exporter() -> None:
    with pytest.raises(ValueError, match="not an inotrace exporter"):
        advise.from_metrics("# TYPE node_load1 gauge\nnode_load1 0.5\n", "x")


def test_failures_at_the_limit_double_it() -> None:
    adv = advise.advise(advise.from_metrics(METRICS, "the exporter"))
    watches, instances = adv["limits"]
    # ENOSPC seen: twice the limit, rounded up to a multiple of 8192
    assert (watches["peak"], watches["advised"], watches["action"]) == (150000, 393216, "raise")
    # EMFILE seen, but no user at 128 instances: the fd limit, not this one
    assert (instances["peak"], instances["advised"], instances["action"]) == (9, 128, "keep")
    assert "fd limit" in instances["note"]
    assert adv["sysctl"] == {"fs.inotify.max_user_watches": 393216, "fs.inotify.max_user_instances": 128}
    assert adv["other_user_namespaces"] is True
    assert [u["uid"] for u in adv["top_users"]] == [1000, 33, 0, 0]


def ev(peak_watches: int, peak_instances: int = 1, limit: int = 192546, **kw: int) -> advise.Evidence:
    use = advise.Use(1000, 1, peak_instances, peak_watches, peak_instances, peak_watches)
    return advise.Evidence("test", 128, limit, users=[use], peaks_known=True, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("peak", "limit", "headroom", "advised", "action"),
    [
        (150000, 192546, 1.5, 229376, "raise"),  # 225000 rounded up to 8192s
        (100000, 192546, 1.5, 192546, "keep"),  # never lowered: use not seen may need it
        (10, 50, 1.5, 8192, "raise"),  # never below the kernel's own floor
        (150000, 192546, 2.0, 303104, "raise"),
    ],
)
def test_headroom_floor_and_never_lower(peak: int, limit: int, headroom: float, advised: int, action: str) -> None:
    (watches, _) = advise.advise(ev(peak, limit=limit), headroom)["limits"]
    assert (watches["advised"], watches["action"]) == (advised, action)


def test_instances_at_the_limit_with_emfile() -> None:
    (_, instances) = advise.advise(ev(10, peak_instances=128, emfile=4))["limits"]
    assert (instances["advised"], instances["failures"], "note" in instances) == (256, 4, False)


def test_memory_and_the_lines_to_paste() -> None:
    e = ev(150000)
    e.watch_cost, e.mem_total = 1312, 8 << 30
    adv = advise.advise(e)
    assert adv["memory_per_user_bytes"] == 229376 * 1312
    assert adv["memory_in_use_bytes"] == 150000 * 1312
    text = advise.render(adv)
    assert "At the advised limit one user may pin 287.0 MiB (3.5 % of 8.0 GiB RAM)." in text
    assert "  fs.inotify.max_user_watches = 229376" in text.splitlines()
    assert "  sysctl -w fs.inotify.max_user_watches=229376 fs.inotify.max_user_instances=128" in text.splitlines()
    assert max(len(line) for line in text.splitlines()) <= 80  # an 80-column SSH session


def test_snapshot_evidence_has_no_peaks() -> None:
    rep = {
        "limits": {"max_user_instances": 128, "max_user_watches": 8192, "max_queued_events": 16384},
        "users": [{"uid": 1000, "instances": 2, "watches": 8000}],
    }
    e = advise.from_snapshot(rep, "a procfs snapshot")
    assert e.users == [advise.Use(1000, None, 2, 8000, 2, 8000)] and not e.peaks_known
    adv = advise.advise(e)
    assert adv["limits"][0]["advised"] == 16384
    assert "current use only, no peak known" in advise.render(adv)


@pytest.mark.parametrize("cost", [None, 1312])
def test_every_rendering_fits_80_columns(cost: int | None) -> None:
    e = advise.from_metrics(METRICS, "the exporter at http://127.0.0.1:9842/metrics")
    e.watch_cost, e.mem_total = cost, 8 << 30
    text = advise.render(advise.advise(e))
    assert "copy of these limits." in text  # the other user namespace is named
    assert "PEAK" in text.splitlines()[3]
    assert max(len(line) for line in text.splitlines()) <= 80
