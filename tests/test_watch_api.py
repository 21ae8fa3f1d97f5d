"""GET /api/v1/watches?pid=N on a real exporter: what a real recursive watcher
watches, aggregated by prefix, paths from its file handles, escaped; bad
requests refused in one JSON line; behind the web config's basic auth."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest

from conftest import http_get, terminate
from inotrace.watch_api import WatchesAPI

TREE = {"a": 23, "b": 5}  # directories under each branch


@pytest.fixture
def tree() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="inotrace-api-"))
    for branch, n in TREE.items():
        for i in range(n):
            (root / branch / f"d{i}").mkdir(parents=True)
    (root / "b" / "esc\x1b[31mred").mkdir()  # a name a process chose: escaped, never raw
    yield root
    shutil.rmtree(root)


def watcher(root: Path) -> subprocess.Popen:
    w = subprocess.Popen(["inotifywait", "-m", "-r", str(root)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert b"Watches established" in w.stderr.readline() + w.stderr.readline()  # type: ignore[operator]
    return w


def get_json(url: str) -> tuple[int, dict]:
    status, body = http_get(url)
    return status, json.loads(body)


@pytest.mark.bpf
def test_a_recursive_watcher_by_prefix(serve, tree: Path) -> None:
    _proc, url = serve()
    w = watcher(tree)
    try:
        # the model learns of the instance at its next sample (a scrape takes one)
        http_get(url + "/metrics")
        status, got = get_json(f"{url}/api/v1/watches?pid={w.pid}&top=3")
        assert status == 200, got
        dirs = 1 + sum(n + 1 for n in TREE.values()) + 1  # root, branches and their dirs, the odd name
        assert (got["pid"], got["comm"], got["uid"], got["instances"], got["watches"]) == (
            w.pid,
            "inotifywait",
            0,
            1,
            dirs,
        )
        assert got["watched"] == {
            "prefixes": [
                {"path": str(tree), "watches": dirs},
                {"path": str(tree / "a"), "watches": TREE["a"] + 1},
                {"path": str(tree / "b"), "watches": TREE["b"] + 2},
            ],
            "unknown": 0,
            "not_resolved": 0,
        }
        assert got["read_from_fdinfo"] == dirs and got["watch_memory_bytes"] % dirs == 0
        _status, every = get_json(f"{url}/api/v1/watches?pid={w.pid}&top=100")
        paths = [p["path"] for p in every["watched"]["prefixes"]]
        assert str(tree / "b" / "esc\\x1b[31mred") in paths and not any("\x1b" in p for p in paths)
    finally:
        terminate(w)
    me = os.getpid()  # holds no inotify instance
    for query, status in ((f"pid={me}", 404), ("pid=x", 400), ("", 400), ("pid=5&top=101", 400), ("pid=-3", 400)):
        code, body = get_json(f"{url}/api/v1/watches?{query}")
        assert code == status and set(body) == {"error"}, (query, code, body)
    req = urllib.request.Request(f"{url}/api/v1/watches?pid={me}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 405


@pytest.mark.bpf
def test_behind_basic_auth(serve, tmp_path: Path) -> None:
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  op: {bcrypt.hashpw(b'pw', bcrypt.gensalt(4)).decode()}\n")
    _proc, url = serve(f"--web.config.file={web}")
    assert http_get(f"{url}/api/v1/watches?pid={os.getpid()}")[0] == 401
    req = urllib.request.Request(f"{url}/api/v1/watches?pid={os.getpid()}")
    req.add_header("Authorization", "Basic " + base64.b64encode(b"op:pw").decode())
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 404  # authorised: the test itself holds no instance


def test_one_request_at_a_time_and_not_before_ready() -> None:
    api = WatchesAPI("/proc", 1312)
    assert api.answer("GET", "pid=1")[0].startswith("503")
    api.tracer = object()  # type: ignore[assignment]
    api._one.acquire()
    try:
        status, body = api.answer("GET", "pid=1")
    finally:
        api._one.release()
    assert status.startswith("429") and "another" in body["error"]
    assert api.answer("DELETE", "pid=1")[0].startswith("405")
    assert api.answer("GET", "pid=1&" + "&".join(f"k{i}=v" for i in range(20)))[0].startswith("400")
