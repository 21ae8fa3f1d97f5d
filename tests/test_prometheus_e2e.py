"""A real Prometheus scrapes a real `inotrace serve` and evaluates every dashboard and rule expression.

Debian's prometheus, on loopback with a temporary data directory and a 1 s
scrape interval, scrapes one inotrace under two instance labels (two "hosts"
that report the same user_ns inode, as every host does for its initial user
namespace) and loads rules/inotrace.rules.yml. Processes then fill a user's
limits in a user namespace of their own (the host's sysctls are never
touched), hit them (ENOSPC, EMFILE), leak watches and overflow a queue. Then
every panel query, template variable and rule expression is evaluated through
the HTTP API, and each must return data, unless listed below with the reason.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import WORKLOADS, free_port, http_get, run_workload, terminate, unique_comm
from test_dashboards import UIDS, dashboard_exprs, label_values, load, targets, variable_queries
from test_rules import RULES, alerts, rule_exprs, rule_key

pytestmark = pytest.mark.bpf

# Expressions that are rightly empty in this scenario, by rule key or
# "<dashboard uid> / <panel title> / <refId>": a healthy exporter on this kernel.
EXPECTED_EMPTY_IN_SCENARIO = {
    # every probe attaches (tracepoints here); the unit tests make it fire
    "rule alert InotraceProbeNotAttached warning": "all probes attached",
    # nothing is lost at this rate of calls; the unit tests make it fire
    "rule alert InotraceEventsLost warning": "no records lost",
    # inotrace's programs take far less than 5 % of a CPU; the unit tests make it fire
    "rule alert InotraceBpfCpuHigh warning": "inotrace is cheap",
}

PROMETHEUS = "/usr/bin/prometheus"
INSTANCES = ("inotrace-a", "inotrace-b")
RATE_INTERVAL = "30s"  # Grafana's $__rate_interval for a 1 s scrape and a short range
RANGE = "10m"  # $__range: longer than the whole test, so it covers every sample
WATCH_LIMIT, INSTANCE_LIMIT = 20, 4  # the scenario user namespace's own limits
GROW_TOTAL = 1500  # above the 1000-an-hour leak threshold


def substitute(expr: str) -> str:
    """What Grafana would send for the dashboard's variables."""
    out = (
        expr.replace("$__rate_interval", RATE_INTERVAL)
        .replace("$__range", RANGE)
        .replace("$job", ".+")
        .replace("$instance", ".+")
    )
    assert "$" not in out, out
    return out


def scenario_scrape(target_port: int) -> str:
    """The scenario's scrape_configs: one inotrace as two instances."""
    static = "\n".join(
        f'      - targets: ["127.0.0.1:{target_port}"]\n        labels: {{instance: "{name}"}}' for name in INSTANCES
    )
    return f"  - job_name: inotrace\n    static_configs:\n{static}\n"


class Prometheus:
    def __init__(self, base: Path, scrape_configs: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = base / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
            f"rule_files: [{json.dumps(str(RULES))}]\n"
            f"scrape_configs:\n{scrape_configs}"
        )
        self.log = (base / "prometheus.log").open("w")
        self.proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={base / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.started = time.time()
        deadline = time.monotonic() + 30
        while not self._ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited {self.proc.returncode}: {self.log_text()}")
            assert time.monotonic() < deadline, f"prometheus not ready in 30 s: {self.log_text()}"
            time.sleep(0.1)

    def _ready(self) -> bool:
        try:
            return http_get(self.url + "/-/ready")[0] == 200
        except OSError:  # not listening yet
            return False

    def log_text(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text()[-2000:]

    def api(self, path: str, **params: str) -> Any:
        """The HTTP API (queries POSTed: they can be long); returns "data", or raises with Prometheus's error."""
        body = urllib.parse.urlencode(params).encode() if params else None
        try:
            with urllib.request.urlopen(self.url + path, data=body, timeout=30) as resp:
                reply = json.load(resp)
        except urllib.error.HTTPError as e:
            reply = json.load(e)
        if reply["status"] != "success":
            raise PromError(f"{reply.get('errorType')}: {reply.get('error')}")
        return reply["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return list(self.api("/api/v1/query", query=expr)["result"])

    def query_range(self, expr: str, start: float) -> list[dict[str, Any]]:
        data = self.api("/api/v1/query_range", query=expr, start=str(start), end=str(time.time()), step="1")
        return [s for s in data["result"] if s["values"]]

    def stop(self) -> None:
        terminate(self.proc)
        self.log.close()


class PromError(Exception):
    pass


class Role:
    """One prom_scenario.py process, run as a uid of its own."""

    def __init__(self, base: Path, uid: int, role: str, comm: str, *args: str) -> None:
        work = base / role
        work.mkdir()
        os.chmod(work, 0o777)
        self.comm = comm
        self.proc = subprocess.Popen(
            [
                "setpriv",
                f"--reuid={uid}",
                f"--regid={uid}",
                "--clear-groups",
                "/usr/bin/python3",
                str(base / "prom_scenario.py"),
                role,
                comm,
                str(work),
                *args,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.info: dict[str, Any] = {}

    def ready(self) -> dict[str, Any]:
        if not self.info:
            line = self.proc.stdout.readline()  # type: ignore[union-attr]
            assert line, f"{self.comm} died: exit {self.proc.wait()}"
            self.info = json.loads(line)
        return self.info

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


@pytest.fixture
def scenario_dir() -> Iterator[Path]:
    # World-readable: the roles run as another uid (CI's clone may be 0700).
    base = Path(tempfile.mkdtemp(prefix="inotrace-prom-"))
    os.chmod(base, 0o777)
    shutil.copy(WORKLOADS / "prom_scenario.py", base / "prom_scenario.py")
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def roles(scenario_dir: Path) -> Iterator[list[Role]]:
    made: list[Role] = []
    yield made
    for r in made:
        r.kill()


@pytest.fixture
def prometheus(scenario_dir: Path) -> Iterator[list[Prometheus]]:
    made: list[Prometheus] = []
    yield made
    for p in made:
        p.stop()


def wait_for(prom: Prometheus, expr: str, want: float, timeout: float = 60) -> None:
    """Until expr is `want` on both instances."""
    deadline = time.monotonic() + timeout
    got: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        got = prom.query(expr)
        if len(got) == len(INSTANCES) and all(float(s["value"][1]) == want for s in got):
            return
        time.sleep(0.5)
    raise AssertionError(f"{expr}: want {want} on {INSTANCES}, got {got}")


def legend_labels(legend: str) -> set[str]:
    return set(re.findall(r"\{\{\s*(\w+)\s*\}\}", legend))


def test_every_panel_and_rule_returns_data(serve, scenario_dir: Path, roles: list[Role], prometheus) -> None:
    t0 = time.monotonic()
    _exporter, url = serve("--top-processes=100000", "--bpf-stats")  # the cost panels get real values
    prom = Prometheus(scenario_dir, scenario_scrape(int(url.rsplit(":", 1)[1])))
    prometheus.append(prom)
    # Prometheus hands new targets to its scrapers up to 5 s after start: the
    # scenario starts once both are scraped, so every step of it is seen.
    wait_for(prom, "up", 1)
    # A uid nobody else uses, so its per-user counters are ours alone.
    uid = 2_000_000 + secrets.randbelow(1_000_000)  # (the roles' processes, not a dashboard uid)
    comms = {role: unique_comm(f"pe{role[:2]}") for role in ("limits", "grow", "overflow")}
    roles.append(Role(scenario_dir, uid, "limits", comms["limits"], str(WATCH_LIMIT), str(INSTANCE_LIMIT)))
    roles.append(Role(scenario_dir, uid, "grow", comms["grow"], str(GROW_TOTAL), "100", "0.5"))
    roles.append(Role(scenario_dir, uid, "overflow", comms["overflow"]))
    did = run_workload(unique_comm("pecalls"))  # every call and its errors (EINVAL, ENOENT), as root
    assert any(c["errno"] for c in did["calls"])
    info = {r.comm: r.ready() for r in roles}
    limits = info[comms["limits"]]
    assert limits["errors"] == {"inotify_init1": [24, 24], "inotify_add_watch": [28, 28]}  # EMFILE, ENOSPC
    # Prometheus has seen the end state on both instances, then a few more scrapes for the rates.
    lim = f'comm="{comms["limits"]}"'
    wait_for(prom, f'inotrace_inotify_add_watch_errors_total{{{lim},errno="ENOSPC"}}', 2)
    wait_for(prom, f'inotrace_process_inotify_watches{{comm="{comms["grow"]}"}}', GROW_TOTAL)
    time.sleep(3)
    scenario_start = prom.started

    status, exposition = http_get(url + "/metrics")
    assert status == 200
    check = subprocess.run(
        ["promtool", "check", "metrics"], input=exposition, capture_output=True, text=True, check=False, timeout=60
    )
    assert check.returncode == 0 and not check.stdout.strip(), check.stdout + check.stderr

    def may_be_empty(where: str, expr: str) -> str | None:
        if where in EXPECTED_EMPTY_IN_SCENARIO:
            return "expected empty in this scenario"
        return None

    empty: list[str] = []
    errors: list[str] = []
    evaluated = 0

    # Every panel query, as Grafana would send it (range or instant).
    for dash in UIDS:
        for panel, t in targets(load(dash)):
            where = f"{dash} / {panel['title']} / {t['refId']}"
            expr = substitute(t["expr"])
            evaluated += 1
            try:
                result = prom.query(expr) if t.get("instant") else prom.query_range(expr, scenario_start)
            except PromError as e:
                errors.append(f"{where}: {e}")
                continue
            if not result:
                if not may_be_empty(where, t["expr"]):
                    empty.append(f"{where}: {expr}")
                continue
            wanted = legend_labels(t["legendFormat"])
            for s in result:
                assert wanted <= set(s["metric"]), f"{where}: legend wants {wanted}, series has {s['metric']}"
    # Every template variable (label_values(SELECTOR, LABEL)).
    for dash in UIDS:
        for q in variable_queries(load(dash)):
            selector, label = label_values(q)
            got = prom.query(f"count by ({label}) ({substitute(selector)})")
            evaluated += 1
            assert {s["metric"].get(label) for s in got} >= ({"inotrace"} if label == "job" else set(INSTANCES)), q
    # Every rule expression, at this instant.
    for where, expr in rule_exprs():
        evaluated += 1
        try:
            result = prom.query(expr)
        except PromError as e:
            errors.append(f"{where}: {e}")
            continue
        if not result and not may_be_empty(where, expr):
            empty.append(f"{where}: {expr}")
    assert not errors, "\n".join(errors)
    assert not empty, "no data:\n" + "\n".join(empty)
    # The listed exceptions are still true (an exception that returns data is stale).
    for where in EXPECTED_EMPTY_IN_SCENARIO:
        expr = dict(rule_exprs() + dashboard_exprs())[where]
        assert not prom.query(substitute(expr)), f"{where} now returns data: drop it from EXPECTED_EMPTY_IN_SCENARIO"

    # The data is the scenario's, not just any data.
    ratio = {
        s["metric"]["instance"]: float(s["value"][1])
        for s in prom.query(f'instance_uid_user_ns:inotrace_user_inotify_watches_per_limit:ratio{{uid="{uid}"}}')
    }
    assert ratio == dict.fromkeys(INSTANCES, 1.0)  # 20 of 20 in the scenario's user namespace
    ratio = {
        s["metric"]["instance"]: float(s["value"][1])
        for s in prom.query(f'instance_uid_user_ns:inotrace_user_inotify_instances_per_limit:ratio{{uid="{uid}"}}')
    }
    assert ratio == dict.fromkeys(INSTANCES, 1.0)
    by_alert = {rule_key(a): a["expr"] for a in alerts()}
    for key, comm, value in (
        ("alert InotraceInotifyWatchLimitHit warning", comms["limits"], 2),
        ("alert InotraceInotifyInstanceLimitHit warning", comms["limits"], 2),
        ("alert InotraceProcessInotifyWatchesGrowing warning", comms["grow"], None),
    ):
        hits = [s for s in prom.query(by_alert[key]) if s["metric"]["comm"] == comm]
        assert {s["metric"]["instance"] for s in hits} == set(INSTANCES), (key, hits)
        assert all(s["metric"]["uid"] == str(uid) for s in hits)
        if value is not None:
            assert all(float(s["value"][1]) == value for s in hits), (key, hits)
    depth = prom.query(f'inotrace_process_inotify_queue_depth{{comm="{comms["overflow"]}"}}')
    cap = info[comms["overflow"]]["max_queued_events"]
    assert [float(s["value"][1]) for s in depth] == [cap + 1] * len(INSTANCES)  # max + 1: overflowed
    # The per-user join must name job and instance: with two hosts, user_ns alone is many-to-many.
    naive = "inotrace_user_inotify_watches / on (user_ns) group_left inotrace_inotify_max_user_watches"
    with pytest.raises(PromError, match="many-to-many"):
        prom.query(naive)
    # Prometheus itself evaluated every rule without error; the limit-hit alerts fire.
    rules = [r for g in prom.api("/api/v1/rules")["groups"] for r in g["rules"]]
    assert len(rules) == len(rule_exprs())
    assert all(r["health"] == "ok" for r in rules), [(r["name"], r.get("lastError")) for r in rules]
    firing = {(a["labels"]["alertname"], a["labels"].get("comm")) for a in prom.api("/api/v1/alerts")["alerts"]}
    assert ("InotraceInotifyWatchLimitHit", comms["limits"]) in firing
    assert ("InotraceInotifyInstanceLimitHit", comms["limits"]) in firing

    print(
        f"\nevaluated {evaluated} expressions in {time.monotonic() - t0:.1f} s; "
        f"allowed empty: {sorted(EXPECTED_EMPTY_IN_SCENARIO)}"
    )
