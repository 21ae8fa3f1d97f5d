"""The Grafana dashboards follow the conventions of shareable dashboards.

Grafana's dashboard linter cannot be installed here, so its rules are
checked in pytest, with a small PromQL scanner (also used by test_rules.py
and test_prometheus_e2e.py): the real Prometheus evaluates every expression
in test_prometheus_e2e.py.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import ROOT, http_get, run_workload, unique_comm

DASHBOARDS = ROOT / "dashboards"
# uid -> file: a stable, hand-set uid is what links and bookmarks point at.
UIDS = {"inotrace-overview": "inotrace-overview.json", "inotrace-health": "inotrace-health.json"}
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
FILTER = {"job": ("=~", "$job"), "instance": ("=~", "$instance")}
# Series Prometheus makes itself for every target: not in any exposition.
PROMETHEUS_SERIES = {"up", "scrape_duration_seconds"}
RATE_FUNCS = {"rate", "irate", "increase"}

# ---------------------------------------------------------------- PromQL scanner

_TOKEN = re.compile(
    r"""
      (?P<ws>\s+|\#[^\n]*)
    | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
    | (?P<num>\d[\w.]*)
    | (?P<var>\$\{?\w+\}?)
    | (?P<ident>[A-Za-z_:][\w:]*)
    | (?P<op>=~|!~|!=|==|>=|<=|[=<>+\-*/%^@,(){}\[\]])
    """,
    re.VERBOSE,
)
_LABEL_LIST = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_KEYWORDS = _LABEL_LIST | {"and", "or", "unless", "offset", "bool", "atan2"}
_AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk",
                 "quantile"}  # fmt: skip


@dataclass
class Selector:
    """One vector selector of an expression and where it sits."""

    name: str | None
    matchers: dict[str, tuple[str, str]] = field(default_factory=dict)
    range: str | None = None
    offset: str | None = None
    func: str | None = None  # innermost enclosing function or aggregation
    start: int = 0  # token span, to recognise idioms
    end: int = 0
    born: bool = False  # part of `S unless S offset W` (series created within W)


def tokens(expr: str) -> list[str]:
    out: list[str] = []
    pos = 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m:
            raise ValueError(f"cannot scan PromQL at {expr[pos : pos + 20]!r} in {expr!r}")
        pos = m.end()
        if m.lastgroup != "ws":
            out.append(m.group())
    return out


def selectors(expr: str) -> list[Selector]:
    """Every vector selector in expr, with its matchers, range, offset and function."""
    toks = tokens(expr)
    found: list[Selector] = []
    stack: list[str | None] = []
    pending: str | None = None  # an aggregation waiting for its `(` after `by (...)`
    i = 0

    def matchers(j: int, sel: Selector) -> int:
        j += 1  # past "{"
        while toks[j] != "}":
            if toks[j] == ",":
                j += 1
                continue
            label, op, value = toks[j], toks[j + 1], toks[j + 2]
            sel.matchers[label] = (op, json.loads(value) if value.startswith('"') else value[1:-1])
            j += 3
        return j + 1

    while i < len(toks):
        t = toks[i]
        nxt = toks[i + 1] if i + 1 < len(toks) else ""
        if t == "(":
            prev = toks[i - 1] if i else ""
            if prev in _LABEL_LIST:
                i = toks.index(")", i) + 1  # a label list: names, not series
                continue
            if pending is not None and prev == ")":
                stack.append(pending)
                pending = None
            elif prev and re.fullmatch(r"[A-Za-z_]\w*", prev) and prev not in _KEYWORDS:
                stack.append(prev)
            else:
                stack.append(None)
            i += 1
        elif t == ")":
            stack.pop()
            i += 1
        elif t in _AGGREGATIONS and nxt in ("by", "without"):
            pending = t
            i += 1
        elif t == "{" or (re.fullmatch(r"[A-Za-z_:][\w:]*", t) and t not in _KEYWORDS and nxt != "("):
            if i and toks[i - 1] == "offset":
                i += 1
                continue
            func = next((f for f in reversed(stack) if f), None)
            sel = Selector(None if t == "{" else t, func=func, start=i)
            j = i if t == "{" else i + 1
            if j < len(toks) and toks[j] == "{":
                j = matchers(j, sel)
            if j < len(toks) and toks[j] == "[":
                close = toks.index("]", j)
                sel.range = "".join(toks[j + 1 : close])
                j = close + 1
            if j < len(toks) and toks[j] == "offset":
                sel.offset = toks[j + 1]
                j += 2
            sel.end = j
            found.append(sel)
            i = j
        else:
            i += 1
    for a, b in itertools.pairwise(found):
        # Counters appear at their first increment; `S unless S offset W` keeps
        # the series born within W, whose samples increase() cannot see.
        if (
            a.end < len(toks)
            and toks[a.end] == "unless"
            and b.start == a.end + 1
            and (a.name, a.matchers, a.range) == (b.name, b.matchers, b.range)
            and a.offset is None
            and b.offset is not None
        ):
            a.born = b.born = True
    return found


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


@pytest.mark.parametrize("uid", sorted(UIDS))
def test_every_query_is_filtered_and_uses_grafana_intervals(uid: str) -> None:
    problems: list[str] = []
    for where, expr in dashboard_exprs():
        if not where.startswith(uid):
            continue
        sels = selectors(expr)
        assert sels, where
        for s in sels:
            if any(s.matchers.get(k) != v for k, v in FILTER.items()):
                problems.append(f'{where}: {s.name} lacks {{job=~"$job",instance=~"$instance"}}')
            if s.func in ("rate", "irate") and s.range != "$__rate_interval":
                problems.append(f"{where}: {s.func}({s.name}[{s.range}]) must use $__rate_interval")
            if s.range not in (None, "$__rate_interval", "$__range"):
                problems.append(f"{where}: hard-coded range [{s.range}]")
            if s.offset not in (None, "$__range"):
                problems.append(f"{where}: hard-coded offset {s.offset}")
            # The static rule: only counters end in _total (conventions); the
            # BPF test below checks that against the exposition's TYPE lines.
            counters = {s.name} if s.name and s.name.endswith("_total") else set()
            problems += [f"{where}: {p}" for p in counter_problems(s, counters)]
    assert not problems, "\n".join(problems)


def test_scanner_sees_what_it_must() -> None:
    """The checks above are only as good as the scanner: pin its reading of the idioms used."""
    sels = selectors(
        'sum by (job, instance) (rate(a_total{job=~"$job"}[$__rate_interval])) / on (job, instance) '
        'group_left b{x="1"} or sum by (c) (d_total{e="f"} unless d_total{e="f"} offset $__range) '
        "or topk(3, delta(g[5m]) > 0) or h"
    )
    got = [(s.name, s.func, s.range, s.offset, s.born) for s in sels]
    assert got == [
        ("a_total", "rate", "$__rate_interval", None, False),
        ("b", None, None, None, False),
        ("d_total", "sum", None, None, True),
        ("d_total", "sum", None, "$__range", True),
        ("g", "delta", "5m", None, False),
        ("h", None, None, None, False),
    ]
    assert counter_problems(selectors("sum(x_total)")[0], {"x_total"})
    assert counter_problems(selectors("x_total unless y_total offset 5m")[0], {"x_total"})


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
