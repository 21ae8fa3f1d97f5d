"""--labels.container end to end: a process in a real (cgroup v2) pod-shaped cgroup."""

from __future__ import annotations

import secrets
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import http_get, log_records, wait_for_records
from test_containers import MOUNTS, _cgroups

pytestmark = pytest.mark.bpf


def test_container_labels_on_gauges_and_audit(serve, tmp_path: Path) -> None:
    (mount,) = [m for m, v in MOUNTS if v == "v2"]
    log = tmp_path / "events.jsonl"
    _proc, url = serve("--labels.container", "--top-processes=100000", f"--log-events={log}")
    pod, cid = str(uuid.uuid4()), secrets.token_hex(32)
    parts = [
        f"inotrace-test-{secrets.token_hex(4)}",
        "kubepods.slice",
        f"kubepods-pod{pod.replace('-', '_')}.slice",
        f"cri-containerd-{cid}.scope",
    ]
    (tmp_path / "w").mkdir()
    with _cgroups(mount, parts) as created:
        # it joins the cgroup before it execs, so every call it makes is inside
        holder = subprocess.Popen(
            ["sh", "-c", f'echo $$ > {created[-1]}/cgroup.procs && exec inotifywait -m "{tmp_path / "w"}"'],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert "Setting up" in holder.stderr.readline()  # type: ignore[union-attr]
            assert "Watches established" in holder.stderr.readline()  # type: ignore[union-attr]
            deadline = time.monotonic() + 10
            while True:
                _status, text = http_get(url + "/metrics")
                rows = [
                    s.labels
                    for fam in text_string_to_metric_families(text)
                    for s in fam.samples
                    if s.name == "inotrace_process_inotify_watches" and s.labels["pid"] == str(holder.pid)
                ]
                if rows or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            assert rows == [
                {"pid": str(holder.pid), "comm": "inotifywait", "uid": "0", "container_id": cid, "pod_uid": pod}
            ]
            other = [s.labels for fam in text_string_to_metric_families(text) for s in fam.samples]
            assert all("container_id" in lb for lb in other if "pid" in lb)
        finally:
            holder.kill()
            holder.wait()
    mine = wait_for_records(log, 2, pid=holder.pid, event="syscall")
    assert mine[-1]["syscall"] == "inotify_add_watch"  # an init, a watch
    recs = log_records(log)
    assert all((r["container_id"], r["pod_uid"]) == (cid, pod) for r in mine)
    # outside any container: empty, not absent
    assert all(r["container_id"] == r["pod_uid"] == "" for r in recs if r.get("pid") not in (holder.pid, None))
