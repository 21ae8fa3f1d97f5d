"""The Grafana dashboards follow the conventions of shareable dashboards.

Grafana's dashboard-linter (a Go tool) is not packaged here, so its rules are
checked in pytest, with PromQL read by a real parser (tests/promql.py, also
used by test_rules.py) and its exclusions read from dashboards/.lint, the
linter's own file. The real Prometheus evaluates every expression in
test_prometheus_e2e.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from conftest import ROOT, http_get, run_workload, unique_comm
from promql import Selector, selectors

DASHBOARDS = ROOT / "dashboards"
# uid -> file: a stable, hand-set uid is what links and bookmarks point at.
UIDS = {"inotrace-overview": "inotrace-overview.json", "inotrace-health": "inotrace-health.json"}
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
FILTER = {"job": ("=~", "$job"), "instance": ("=~", "$instance")}
# Series Prometheus makes itself for every target: not in any exposition.
PROMETHEUS_SERIES = {"up", "scrape_duration_seconds"}
RATE_FUNCS = {"rate", "irate", "increase"}


def counter_problems(sel: Selector, counters: set[str]) -> list[str]:
    """A counter may only be read through rate/irate/increase, or in the born-within idiom."""
    if sel.name not in counters or sel.born:
        return []
    if sel.func in RATE_FUNCS and sel.range:
        return []
    return [f"counter {sel.name} outside rate/increase (in {sel.func or 'top level'})"]


# ------------------------------------------------------------------- dashboards


def load(uid: str) -> dict[str, Any]:
    return json.loads((DASHBOARDS / UIDS[uid]).read_text())


def panels(dash: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for p in dash["panels"]:
        yield p
        yield from p.get("panels", [])  # a collapsed row keeps its panels inside


def data_panels(dash: dict[str, Any]) -> Iterator[dict[str, Any]]:
    return (p for p in panels(dash) if p["type"] != "row")


def targets(dash: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for p in data_panels(dash):
        for t in p["targets"]:
            yield p, t


def variable_queries(dash: dict[str, Any]) -> list[str]:
    return [v["definition"] for v in dash["templating"]["list"] if v["type"] == "query"]


def label_values(query: str) -> tuple[str, str]:
    """label_values(SELECTOR, LABEL) -> (SELECTOR, LABEL)."""
    m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
    assert m, query
    return m.group(1), m.group(2)


def dashboard_exprs() -> list[tuple[str, str]]:
    """(where, expr) for every panel target of every dashboard."""
    return [(f"{uid} / {p['title']} / {t['refId']}", t["expr"]) for uid in UIDS for p, t in targets(load(uid))]


def walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield f"{path}.{k}", v
            yield from walk(v, f"{path}.{k}")
    elif isinstance(node, list):
        for n, v in enumerate(node):
            yield from walk(v, f"{path}[{n}]")


def test_every_dashboard_file_has_its_stable_uid() -> None:
    files = {p.name for p in DASHBOARDS.glob("*.json")}
    assert files == set(UIDS.values()), "a new dashboard needs its uid in UIDS"
    for uid in UIDS:
        dash = load(uid)
        assert dash["uid"] == uid
        assert dash["id"] is None  # a numeric id is one Grafana's database; import assigns one
        assert dash["title"].startswith("inotrace / ") and dash["description"]
        assert "inotrace" in dash["tags"]


@pytest.mark.parametrize("uid", sorted(UIDS))
def test_variables(uid: str) -> None:
    variables = {v["name"]: v for v in load(uid)["templating"]["list"]}
    assert list(variables) == ["datasource", "job", "instance"]
    ds = variables["datasource"]
    assert (ds["type"], ds["query"]) == ("datasource", "prometheus")
    for name in ("job", "instance"):
        v = variables[name]
        assert v["type"] == "query" and v["datasource"] == DATASOURCE
        assert v["multi"] is True and v["includeAll"] is True and v["allValue"] == ".+", name
        assert v["query"]["query"] == v["definition"]
        assert label_values(v["definition"])[1] == name
    # instance follows the chosen job
    (sel,) = selectors(label_values(variables["instance"]["definition"])[0])
    assert sel.matchers == {"job": ("=~", "$job")}


@pytest.mark.parametrize("uid", sorted(UIDS))
def test_no_hard_coded_datasource(uid: str) -> None:
    dash = load(uid)
    assert "__inputs" not in dash and "${DS_" not in json.dumps(dash)
    for path, value in walk(dash):
        if path.endswith(".datasource") and not path.startswith(".templating.list[0]"):
            assert value == DATASOURCE, f"{path}: {value}"


@pytest.mark.parametrize("uid", sorted(UIDS))
def test_every_panel_has_title_description_unit(uid: str) -> None:
    dash = load(uid)
    ids = [p["id"] for p in panels(dash)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for p in panels(dash):
        assert p["title"].strip(), p
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        if p["type"] == "row":
            assert "targets" not in p
            continue
        assert p["description"].strip(), p["title"]
        assert p["fieldConfig"]["defaults"]["unit"].strip(), p["title"]
        assert p["datasource"] == DATASOURCE, p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert refs and len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            assert t["expr"].strip() and t["datasource"] == DATASOURCE, p["title"]
            assert t["legendFormat"], p["title"]  # a legend that names the series


def lint_exclusions(rule: str) -> set[tuple[str, str]]:
    """(dashboard title, panel title) excused from a dashboard-linter rule by dashboards/.lint."""
    spec = yaml.safe_load((DASHBOARDS / ".lint").read_text())["exclusions"][rule]
    assert spec["reason"].strip(), f"{rule}: an exclusion says why"
    return {(e["dashboard"], e["panel"]) for e in spec["entries"]}


def selector_problems(s: Selector, rate_interval_excused: bool) -> list[str]:
    """What Grafana's linter (and our conventions) reject in one selector of a panel query."""
    problems = []
    if any(s.matchers.get(k) != v for k, v in FILTER.items()):
        problems.append(f'{s.name} lacks {{job=~"$job",instance=~"$instance"}}')  # target-job/instance-rule
    if s.func in RATE_FUNCS and s.range != "$__rate_interval" and not rate_interval_excused:
        problems.append(f"{s.func}({s.name}[{s.range}]) must use $__rate_interval")  # target-rate-interval-rule
    for what, value in (("range", s.range), ("offset", s.offset), ("subquery range", s.subquery)):
        if value not in (None, "$__rate_interval", "$__range"):
            problems.append(f"hard-coded {what} {value}: the dashboard's time picker cannot change it")
    if s.at:
        problems.append(f"{s.name} pinned with @: it would not follow the time picker")
    # The static rule: only counters end in _total (conventions); the BPF test
    # below checks that against the exposition's TYPE lines.
    return problems + counter_problems(s, {s.name} if s.name and s.name.endswith("_total") else set())


@pytest.mark.parametrize("uid", sorted(UIDS))
def test_every_query_is_filtered_and_uses_grafana_intervals(uid: str) -> None:
    dash = load(uid)
    excused = lint_exclusions("target-rate-interval-rule")
    problems: list[str] = []
    for p, t in targets(dash):
        sels = selectors(t["expr"])  # target-promql-rule: raises on what is not PromQL
        assert sels, f"{p['title']}: a query without a series"
        for s in sels:
            problems += [
                f"{p['title']} / {t['refId']}: {m}"
                for m in selector_problems(s, (dash["title"], p["title"]) in excused)
            ]
    assert not problems, "\n".join(problems)


def test_every_lint_exclusion_is_needed() -> None:
    """An exclusion names a real panel that would fail the rule without it."""
    titles = {(load(uid)["title"], p["title"]): p for uid in UIDS for p in data_panels(load(uid))}
    for key in lint_exclusions("target-rate-interval-rule"):
        assert key in titles, f"{key}: no such panel"
        sels = [s for t in titles[key]["targets"] for s in selectors(t["expr"])]
        assert any(selector_problems(s, False) for s in sels), f"{key}: passes without its exclusion"


def test_the_checks_catch_what_they_must() -> None:
    """The checks above are only as good as their reading of PromQL: pin it,
    including what a hand scanner missed (subqueries, @, unary minus)."""
    sels = selectors(
        'sum by (job, instance) (rate(a_total{job=~"$job"}[$__rate_interval])) / on (job, instance) '
        'group_left b{x="1"} or sum by (c) (d_total{e="f"} unless d_total{e="f"} offset $__range) '
        "or topk(3, delta(g[5m]) > 0) or -h or max_over_time(rate(i_total[1m])[1h:]) or j @ 100"
    )
    got = [(s.name, s.func, s.range, s.offset, s.subquery, s.at, s.born) for s in sels]
    assert got == [
        ("a_total", "rate", "$__rate_interval", None, None, False, False),
        ("b", None, None, None, None, False, False),
        ("d_total", "sum", None, None, None, False, True),
        ("d_total", "sum", None, "$__range", None, False, True),
        ("g", "delta", "5m", None, None, False, False),
        ("h", None, None, None, None, False, False),
        ("i_total", "rate", "1m", None, "1h", False, False),
        ("j", None, None, None, None, True, False),
    ]
    ok = 'rate(x_total{job=~"$job",instance=~"$instance"}[$__rate_interval])'
    assert [selector_problems(s, False) for s in selectors(ok)] == [[]]
    bad = {
        "rate(x_total[$__rate_interval])": "lacks",
        'increase(x_total{job=~"$job",instance=~"$instance"}[$__range])': "must use $__rate_interval",
        'max_over_time(rate(x_total{job=~"$job",instance=~"$instance"}[$__rate_interval])[1h:])': "subquery",
        'x{job=~"$job",instance=~"$instance"} @ 100': "pinned",
        'sum(x_total{job=~"$job",instance=~"$instance"})': "outside rate",
    }
    for expr, why in bad.items():
        (s,) = selectors(expr)
        assert any(why in m for m in selector_problems(s, False)), expr
    assert counter_problems(selectors("x_total unless y_total offset 5m")[0], {"x_total"})
    with pytest.raises(ValueError, match="not PromQL"):
        selectors("rate(x[5m]")


# ------------------------------------------------------- against a real exposition


def used_metrics() -> dict[str, set[str]]:
    """metric -> where it is used, over dashboards (panels and variables) and rules."""
    from test_rules import rule_exprs  # noqa: PLC0415 - shared with test_rules, one reader

    used: dict[str, set[str]] = {}
    exprs = dashboard_exprs() + rule_exprs()
    exprs += [(f"{uid} variable", label_values(q)[0]) for uid in UIDS for q in variable_queries(load(uid))]
    for where, expr in exprs:
        for s in selectors(expr):
            assert s.name, f"{where}: selector without a metric name"
            if not s.name.count(":"):  # recording rules' outputs are made by the rules
                used.setdefault(s.name, set()).add(where)
    return used


@pytest.mark.bpf
def test_metrics_exist_in_a_real_exposition(serve) -> None:
    _proc, url = serve()
    run_workload(unique_comm("dash"))
    status, text = http_get(url + "/metrics")
    assert status == 200
    types = {f.name + ("_total" if f.type == "counter" else ""): f.type for f in text_string_to_metric_families(text)}
    used = used_metrics()
    missing = {m: sorted(w) for m, w in used.items() if m not in types}
    for m in PROMETHEUS_SERIES:
        missing.pop(m, None)
    assert not missing, f"used but not exported: {json.dumps(missing, indent=1)}"
    # _total names only on counters, every counter read through rate/increase
    counters = {m for m, t in types.items() if t == "counter"}
    assert {m for m in types if m.endswith("_total")} == counters
    problems = [
        f"{where}: {p}" for where, e in dashboard_exprs() for s in selectors(e) for p in counter_problems(s, counters)
    ]
    assert not problems, problems
