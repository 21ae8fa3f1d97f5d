"""PromQL read through a real parser (PyPI promql-parser, Prometheus' grammar
in Rust), for the dashboard and rule checks: every vector selector with its
matchers, range, offset, `@` and the function around it.

Grafana's variables are not PromQL: `$__rate_interval` and friends stand where
a duration goes, so they are swapped for durations no one writes by hand and
mapped back after parsing. `$job` and the like only appear inside strings.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import promql_parser as pq

# Grafana's interval variables -> a sentinel duration (prime seconds, unlikely by hand).
INTERVALS = {"$__rate_interval": 7919, "$__range": 7907, "$__interval": 7901}
_BY_SECONDS = {v: k for k, v in INTERVALS.items()}
_OPS = {"MatchOp.Equal": "=", "MatchOp.NotEqual": "!=", "MatchOp.Re": "=~", "MatchOp.NotRe": "!~"}


@dataclass
class Selector:
    """One vector selector of an expression and where it sits."""

    name: str | None
    matchers: dict[str, tuple[str, str]] = field(default_factory=dict)
    range: str | None = None
    offset: str | None = None
    at: bool = False  # pinned to a time with `@`
    func: str | None = None  # innermost enclosing function or aggregation
    subquery: str | None = None  # the range of the innermost subquery around it
    born: bool = False  # part of `S unless S offset W` (series created within W)


def parse(expr: str) -> Any:
    text = expr
    for var, seconds in sorted(INTERVALS.items(), key=lambda kv: -len(kv[0])):
        text = text.replace(var, f"{seconds}s")
    try:
        return pq.parse(text)
    except Exception as e:  # the parser raises a bare Exception naming the position
        raise ValueError(f"not PromQL: {e}: {expr!r}") from None


def duration(d: datetime.timedelta | None) -> str | None:
    if d is None:
        return None
    seconds = int(d.total_seconds())
    if seconds in _BY_SECONDS and d == datetime.timedelta(seconds=seconds):
        return _BY_SECONDS[seconds]
    if d < datetime.timedelta(0):
        return "-" + str(pq.display_duration(-d))
    return str(pq.display_duration(d))


def _selector(vs: Any, func: str | None, subquery: str | None, rng: datetime.timedelta | None = None) -> Selector:
    matchers = {m.name: (_OPS[str(m.op)], m.value) for m in vs.matchers.matchers if m.name != "__name__"}
    assert not vs.matchers.or_matchers, f"`or` inside a selector is not used here: {vs}"
    return Selector(vs.name, matchers, duration(rng), duration(vs.offset), vs.at is not None, func, subquery)


def _same(a: Any, b: Any) -> bool:
    return str(a.name) == str(b.name) and str(a.matchers) == str(b.matchers)


def _walk(node: Any, func: str | None, subquery: str | None) -> Iterator[Selector]:
    if isinstance(node, pq.VectorSelector):
        yield _selector(node, func, subquery)
    elif isinstance(node, pq.MatrixSelector):
        yield _selector(node.vector_selector, func, subquery, node.range)
    elif isinstance(node, pq.Call):
        for arg in node.args:
            yield from _walk(arg, node.func.name, subquery)
    elif isinstance(node, pq.AggregateExpr):
        if node.param is not None:
            yield from _walk(node.param, str(node.op), subquery)
        yield from _walk(node.expr, str(node.op), subquery)
    elif isinstance(node, pq.SubqueryExpr):
        yield from _walk(node.expr, func, duration(node.range))
    elif isinstance(node, pq.ParenExpr | pq.UnaryExpr):
        yield from _walk(node.expr, func, subquery)
    elif isinstance(node, pq.BinaryExpr):
        lhs, rhs = list(_walk(node.lhs, func, subquery)), list(_walk(node.rhs, func, subquery))
        # Counters appear at their first increment; `S unless S offset W` keeps
        # the series born within W, whose samples increase() cannot see.
        if (
            str(node.op) == "unless"
            and isinstance(node.lhs, pq.VectorSelector)
            and isinstance(node.rhs, pq.VectorSelector)
            and _same(node.lhs, node.rhs)
            and node.lhs.offset is None
            and node.rhs.offset is not None
        ):
            lhs[0].born = rhs[0].born = True
        yield from lhs
        yield from rhs


def selectors(expr: str) -> list[Selector]:
    """Every vector selector in expr, in order of appearance."""
    return list(_walk(parse(expr), None, None))
