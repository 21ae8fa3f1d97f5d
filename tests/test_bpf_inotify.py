"""Real kernel, real BPF: a known workload must be counted and traced exactly."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections import Counter

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import (
    NOBODY,
    Running,
    expected_backend,
    http_get,
    run_workload,
    unique_comm,
    wait_until,
)
from inotrace.bpf_program import Program

pytestmark = pytest.mark.bpf

# What tests/workloads/inotify_calls.py does (see its docstring).
EXPECTED = {
    ("inotrace_inotify_init_total", "origin", "user"): 23,
    ("inotrace_inotify_init_errors_total", "errno", "EINVAL"): 1,
    ("inotrace_inotify_add_watch_total", "origin", "user"): 37,
    ("inotrace_inotify_add_watch_errors_total", "errno", "ENOENT"): 1,
    ("inotrace_inotify_rm_watch_total", "origin", "user"): 5,
    ("inotrace_inotify_rm_watch_errors_total", "errno", "EINVAL"): 1,
}


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, s.labels, s.value) for fam in text_string_to_metric_families(text) for s in fam.samples]


def counts_for(text: str, comm: str) -> dict[tuple[str, str, str], float]:
    out: dict[tuple[str, str, str], float] = {}
    for name, labels, value in samples(text):
        if labels.get("comm") != comm or not name.startswith("inotrace_inotify_"):
            continue  # the workload's opens are counted too, elsewhere
        kind = "errno" if "errno" in labels else "origin"
        out[(name, kind, labels[kind])] = out.get((name, kind, labels[kind]), 0) + value
        assert labels["uid"] == str(NOBODY), labels
    return out


def test_workload_counts_are_exact_over_http(serve) -> None:
    _proc, url = serve()
    comm = unique_comm("inowl-")
    done = run_workload(comm, as_user=NOBODY)
    assert Counter(c["syscall"] for c in done["calls"]) == {
        "inotify_init1": 24,
        "inotify_add_watch": 38,
        "inotify_rm_watch": 6,
    }
    status, text = http_get(url + "/metrics")
    assert status == 200
    assert counts_for(text, comm) == EXPECTED
    attached = {(lb["probe"], lb["backend"]): v for n, lb, v in samples(text) if n == "inotrace_probe_attached"}
    for probe in ("inotify_init1", "inotify_add_watch", "inotify_rm_watch"):
        assert attached[(probe, expected_backend(probe))] == 1
    lost = sum(v for n, _lb, v in samples(text) if n == "inotrace_events_lost_total")
    assert lost == 0


def test_exposition_passes_promtool(serve) -> None:
    _proc, url = serve()
    run_workload(unique_comm("inoprom-"))
    _status, text = http_get(url + "/metrics")
    res = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip() == "" and res.stderr.strip() == "", res.stdout + res.stderr


def test_landing_page_and_health(serve) -> None:
    _proc, url = serve()
    status, body = http_get(url + "/")
    assert status == 200 and 'href="/metrics"' in body
    assert http_get(url + "/-/ready")[0] == 200
    assert http_get(url + "/-/healthy")[0] == 200
    assert http_get(url + "/nope")[0] == 404


def test_trace_shows_exactly_the_workload_records() -> None:
    comm = unique_comm("inotr-")
    tr = Running(["trace", "--comm", comm])
    try:
        tr.wait_for_log("tracing inotify calls")
        done = run_workload(comm, as_user=NOBODY)
        want = done["calls"]
        lines = [tr.proc.stdout.readline() for _ in want]  # type: ignore[union-attr]
    finally:
        assert tr.stop() == 0, tr.err_text()
    rest = tr.proc.stdout.read()  # type: ignore[union-attr]
    assert rest == "", f"records beyond the workload's: {rest[:500]}"
    got = [json.loads(line) for line in lines]
    instance_of_fd: dict[int, str] = {}
    for rec, call in zip(got, want, strict=True):
        assert rec["syscall"] == call["syscall"]
        assert rec["comm"] == comm and rec["pid"] == done["pid"] and rec["tid"] == done["pid"]
        assert rec["uid"] == NOBODY and rec["euid"] == NOBODY
        assert rec["origin"] == "user" and rec["backend"] == expected_backend(rec["syscall"])
        assert rec["ret"] == (call["ret"] if call["ret"] >= 0 else -call["errno"])
        if call["ret"] < 0:
            assert rec["errno"] == {2: "ENOENT", 22: "EINVAL"}[call["errno"]]
            assert rec["instance"] is None
        else:
            assert rec["errno"] is None and rec["instance"].startswith("i-")
        if call["syscall"] == "inotify_init1":
            assert rec["args"]["flags"] == call["flags"]
            if call["ret"] >= 0:
                instance_of_fd[call["ret"]] = rec["instance"]
        elif call["syscall"] == "inotify_add_watch":
            assert rec["args"] == {**rec["args"], "fd": call["fd"], "pathname": call["path"], "mask": call["mask"]}
            assert rec["untrusted"] == ["comm", "args.pathname"] and rec["user_memory"] == ["args.pathname"]
        else:
            assert rec["args"] == {"fd": call["fd"], "wd": call["wd"]}
        if call["syscall"] != "inotify_init1" and call["ret"] >= 0:
            assert rec["instance"] == instance_of_fd[call["fd"]], "same fd, same instance"
    assert len(set(instance_of_fd.values())) == 23, "23 live instances, 23 identities"


def test_trace_table_format() -> None:
    comm = unique_comm("inotb-")
    tr = Running(["trace", "--format", "table", "--comm", comm])
    try:
        tr.wait_for_log("tracing inotify calls")
        header = tr.proc.stdout.readline()  # type: ignore[union-attr]
        run_workload(comm)
        first = tr.proc.stdout.readline()  # type: ignore[union-attr]
    finally:
        assert tr.stop() == 0, tr.err_text()
    assert header.split()[:3] == ["TIME", "PID", "TID"]
    assert comm in first and "inotify_init1" in first


def test_log_events_appends_json(serve, tmp_path) -> None:
    log = tmp_path / "events.jsonl"
    proc, _url = serve(f"--log-events={log}")
    comm = unique_comm("inolog-")
    done = run_workload(comm)
    assert proc.stop() == 0
    mine = [json.loads(x) for x in log.read_text().splitlines() if f'"comm":"{comm}"' in x]
    assert len(mine) == len(done["calls"])


def test_kprobe_programs_pass_the_verifier() -> None:
    program = Program()
    try:
        names = program.attacher.load_only("kprobe")
        assert {f"{p}_{c}" for p in ("kp_enter", "kr_exit") for c in ("inotify_init", "inotify_init1")} <= set(names)
        opens = {"kr_exit_do_sys_openat2", "kr_exit_open_by_handle_at", "kr_exit_do_filp_open"}
        assert opens <= set(names) and len(names) == 11
        assert program.attacher.load_only("tracepoint")
    finally:
        program.close()


def _prog_ids_of(pid: int) -> set[int]:
    """BPF programs a process holds an fd to (bpftool here cannot show owner pids)."""
    ids = set()
    for fd in os.listdir(f"/proc/{pid}/fdinfo"):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/fdinfo/{fd}") as f:
            ids |= {int(line.split()[1]) for line in f if line.startswith("prog_id:")}
    return ids


def test_sigint_detaches_and_exits_zero() -> None:
    tr = Running(["trace"])
    tr.wait_for_log("tracing inotify calls")
    ours = _prog_ids_of(tr.proc.pid)
    assert len(ours) >= 8  # enter+exit of every inotify syscall, the iterator
    tr.proc.send_signal(2)
    assert tr.proc.wait(timeout=30) == 0

    # Nothing of ours stays loaded (other inotrace processes may run meanwhile). The
    # kernel frees a program after its last reference goes, from deferred work (RCU,
    # perf event teardown): one can still be listed for a moment after the exit.
    def ours_loaded() -> set[int]:
        res = subprocess.run(["bpftool", "--json", "prog", "show"], capture_output=True, text=True, check=True)
        return ours & {p["id"] for p in json.loads(res.stdout)}

    wait_until(lambda: not ours_loaded(), "none of the exited tracer's programs is loaded")
