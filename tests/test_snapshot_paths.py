"""snapshot --paths (no BPF: procfs only): paths on a real mount whose path needs decoding,
and the prefixes a real recursive watcher's watches aggregate to."""

from __future__ import annotations

import contextlib
import json
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from conftest import INOTRACE, terminate, tmpfs_on, wait_until
from inotrace import snapshot


@contextlib.contextmanager
def tmpfs_at(name: str) -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="inotrace-mnt-"))
    point = base / name
    point.mkdir()
    try:
        with tmpfs_on(point):
            yield point
    finally:
        point.rmdir()
        base.rmdir()


def test_paths_under_a_non_ascii_mount_point_with_a_space() -> None:
    """mountinfo writes "/…/café ü" as "/…/café\\040ü": decoding must give the
    bytes back (an earlier unicode_escape turned é into Ã©: "unknown")."""
    with tmpfs_at("café ü") as point:
        watched = point / "d"
        watched.mkdir()
        w = subprocess.Popen(["inotifywait", "-m", str(watched)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            assert b"Watches established" in w.stderr.readline() + w.stderr.readline()  # type: ignore[union-attr]
            res = subprocess.run(
                [*INOTRACE, "snapshot", "--json", "--paths"], check=False, capture_output=True, text=True
            )
            assert res.returncode == 0, res.stderr
            (mine,) = [i for i in json.loads(res.stdout)["instances"] if i["owner"] == w.pid]
            assert [x["path"] for x in mine["watch_list"]] == [str(watched)]
        finally:
            terminate(w)


def make_tree(root: Path) -> dict[str, int]:
    """/root with big/ (40 directories below) and small/ (3, one with 2 files): the
    number of directories, and of directories and files, at or under each prefix."""
    for name in [*(f"big/d{i}" for i in range(40)), "small/s0", "small/s1", "small/s2"]:
        (root / name).mkdir(parents=True)
    for f in ("small/s1/f1", "small/s1/f2"):
        (root / f).touch()
    return {"dirs": 1 + 41 + 4, "entries": 1 + 41 + 4 + 2, "big": 41, "small": 4, "small_entries": 6}


def watched_of(pid: int, want: int) -> dict[str, object] | None:
    rep = snapshot.report([i for i in snapshot.take() if i.owner == pid], paths=True, top_prefixes=3)
    (proc,) = rep["processes"] or [{"watches": 0}]
    return proc.get("watched") if proc["watches"] == want else None  # type: ignore[return-value]


def test_prefix_counts_equal_the_trees_for_inotifywait_and_node(tmp_path: Path) -> None:
    """inotifywait -r watches every directory, node's recursive fs.watch every
    directory and file: each prefix's count is exactly that of the tree below it."""
    n = make_tree(tmp_path)
    iw = subprocess.Popen(["inotifywait", "-qmr", str(tmp_path)], stdout=subprocess.DEVNULL)
    node = subprocess.Popen(
        ["node", "-e", "require('fs').watch(process.argv[1], {recursive: true}, () => {})", str(tmp_path)]
    )
    try:
        got = wait_until(lambda: watched_of(iw.pid, n["dirs"]), f"inotifywait holds {n['dirs']} watches")
        assert got == {
            "prefixes": [
                {"path": str(tmp_path), "watches": n["dirs"]},
                {"path": f"{tmp_path}/big", "watches": n["big"]},
                {"path": f"{tmp_path}/small", "watches": n["small"]},
            ],
            "unknown": 0,
        }
        got = wait_until(lambda: watched_of(node.pid, n["entries"]), f"node holds {n['entries']} watches")
        assert [p["watches"] for p in got["prefixes"]] == [n["entries"], n["big"], n["small_entries"]]
        text = subprocess.run(
            [*INOTRACE, "snapshot", "--paths", "--top-prefixes", "2"], check=True, capture_output=True, text=True
        ).stdout
        assert f"{iw.pid} inotifywait: watches at or under each prefix\n" in text
        assert f"\n  {n['dirs']:>9,}  {tmp_path}\n  {n['big']:>9,}  {tmp_path}/big\n" in text
    finally:
        terminate(iw)
        terminate(node)
