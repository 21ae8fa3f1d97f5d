"""snapshot --paths on a real mount whose path needs decoding (no BPF: procfs only)."""

from __future__ import annotations

import contextlib
import json
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from conftest import INOTRACE, terminate, tmpfs_on


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
