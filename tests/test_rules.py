"""The Prometheus rules: promtool's own checks and unit tests, and the mixin conventions.

promtool comes from
Debian's `prometheus` package (make setup-test installs it).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import ROOT
from promql import selectors
from test_dashboards import counter_problems

RULES = ROOT / "rules" / "inotrace.rules.yml"
RULE_TESTS = ROOT / "rules" / "inotrace.rules.test.yml"
JOB = 'job="inotrace"'  # the configurable selector: one string, rewritten in one pass (see the rules' header)
# Near-limit alerts: the NodeFileDescriptorLimit shape, 70 % warning / 90 % critical, with `for`.
NEAR_LIMIT = {"InotraceInotifyWatchesNearUserLimit", "InotraceInotifyInstancesNearUserLimit"}
# What a description must name: the user, the process or, for the exporter's own
# alerts, the probe or reason (and always the instance).
NAMES = ("$labels.uid", "$labels.comm", "$labels.pid", "$labels.probe", "$labels.reason")
# Alerts about the host as a whole (inotrace's own cost): the instance is their subject.
HOST_LEVEL = {"InotraceBpfCpuHigh"}


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    assert exe, "promtool not found: `make setup-test` installs Debian's prometheus package"
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=60, check=False, cwd=cwd)


def rule_groups(path: Path = RULES) -> list[dict[str, Any]]:
    return list(yaml.safe_load(path.read_text())["groups"])


def rules() -> list[dict[str, Any]]:
    return [r for g in rule_groups() for r in g["rules"]]


def rule_key(rule: dict[str, Any]) -> str:
    if "record" in rule:
        return f"record {rule['record']}"
    return f"alert {rule['alert']} {rule['labels']['severity']}"


def rule_exprs() -> list[tuple[str, str]]:
    """(where, expr) for every rule, recording and alerting."""
    return [(f"rule {rule_key(r)}", r["expr"]) for r in rules()]


def alerts() -> list[dict[str, Any]]:
    return [r for r in rules() if "alert" in r]


def test_promtool_check_rules() -> None:
    res = promtool("check", "rules", str(RULES))
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"SUCCESS: {len(rules())} rules found" in res.stdout


def test_promtool_unit_tests() -> None:
    res = promtool("test", "rules", str(RULE_TESTS))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    cases: dict[str, list[int]] = {}
    for group in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for case in group.get("alert_rule_test", []):
            cases.setdefault(case["alertname"], []).append(len(case.get("exp_alerts") or []))
    for name in {a["alert"] for a in alerts()}:
        assert any(n > 0 for n in cases.get(name, [])), f"{name}: no unit test where it fires"
        assert any(n == 0 for n in cases.get(name, [])), f"{name}: no unit test where it stays quiet"
    fired: set[tuple[str, str]] = set()  # (alert, severity) some case expects
    for group in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for case in group.get("alert_rule_test", []):
            fired |= {(case["alertname"], e["exp_labels"]["severity"]) for e in case.get("exp_alerts") or []}
    for a in alerts():  # every severity of a name fires in a case of its own name
        assert (a["alert"], a["labels"]["severity"]) in fired, (
            f"{a['alert']}: no case where it fires as {a['labels']['severity']}"
        )


def test_alert_conventions() -> None:
    for a in alerts():
        name = a["alert"]
        assert re.fullmatch(r"Inotrace(?:[A-Z][a-z0-9]*)+", name), f"{name}: CamelCase, prefixed Inotrace"
        assert a["labels"]["severity"] in ("warning", "critical"), name
        summary, description = a["annotations"]["summary"], a["annotations"]["description"]
        assert "$labels.instance" in summary and "$labels.instance" in description, name
        if name not in HOST_LEVEL:
            assert any(n in summary for n in NAMES) and any(n in description for n in NAMES), name
        else:
            assert "by (job, instance)" in a["expr"], f"{name}: one alert per host"
        if name in NEAR_LIMIT:
            assert a["for"] == "15m", name
    severities = {(a["alert"], a["labels"]["severity"]) for a in alerts() if a["alert"] in NEAR_LIMIT}
    assert severities == {(n, s) for n in NEAR_LIMIT for s in ("warning", "critical")}
    thresholds = {(a["alert"], a["labels"]["severity"]): a["expr"].split(">")[-1].strip() for a in alerts()}
    for n in NEAR_LIMIT:
        assert (thresholds[(n, "warning")], thresholds[(n, "critical")]) == ("0.7", "0.9")


def test_recording_rule_names() -> None:
    for r in rules():
        if "record" in r:
            level, metric, ops = r["record"].split(":")
            assert re.fullmatch(r"[a-z_]+", level) and re.fullmatch(r"inotrace_[a-z_]+", metric), r["record"]
            assert re.fullmatch(r"[a-z0-9_]+", ops), r["record"]


def test_every_selector_carries_the_job_selector_and_counters_are_rated() -> None:
    problems: list[str] = []
    for where, expr in rule_exprs():
        for s in selectors(expr):
            if s.matchers.get("job") != ("=", "inotrace"):
                problems.append(f"{where}: {s.name} lacks {JOB}")
            problems += [
                f"{where}: {p}" for p in counter_problems(s, {s.name} if str(s.name).endswith("_total") else set())
            ]
    assert not problems, "\n".join(problems)


def test_job_selector_rewrite_is_complete(tmp_path: Path) -> None:
    """The documented one-pass rewrite gives rules that still pass every unit test."""
    new = 'job="node-inotrace"'
    for src in (RULES, RULE_TESTS):
        text = src.read_text()
        # the tests' input series spell the job as a label; alerts show it as a YAML key
        text = text.replace(JOB, new).replace("job: inotrace,", "job: node-inotrace,")
        (tmp_path / src.name).write_text(text)
    assert JOB not in (tmp_path / RULES.name).read_text()
    res = promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize(
    ("good", "broken"),
    [
        # Two hosts report the same user_ns inode: matching on user_ns alone is many-to-many.
        ("/ on (job, instance, user_ns) group_left", "/ on (user_ns) group_left"),
        # Without the born-within half a single burst of ENOSPC never alerts.
        (
            "unless\n                inotrace_inotify_add_watch_errors_total",
            "and\n                inotrace_inotify_add_watch_errors_total",
        ),
    ],
    ids=["join-on-user_ns-only", "increase-only"],
)
def test_unit_tests_catch_known_mistakes(tmp_path: Path, good: str, broken: str) -> None:
    text = RULES.read_text()
    assert good in text
    (tmp_path / RULES.name).write_text(text.replace(good, broken))
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    res = promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert res.returncode != 0, "the unit tests did not notice"
