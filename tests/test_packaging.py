"""An installed inotrace finds its BPF sources: they travel inside the wheel."""

from __future__ import annotations

import subprocess
import sys
import zipfile

from conftest import ROOT
from inotrace.bpf_build import HEADER, bpf_dir


def test_wheel_contains_bpf_sources(tmp_path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("inotrace-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "inotrace/bpf/inotrace.bpf.c" in names and "inotrace/bpf/inotrace.h" in names


def test_source_found_through_package_resources() -> None:
    src = (bpf_dir() / "inotrace.bpf.c").read_text()
    assert f'#include "{HEADER}"' in src
    assert str(bpf_dir()).endswith("inotrace/bpf") and (bpf_dir() / HEADER).is_file()


def test_snapshot_and_trace_do_not_load_prometheus_client() -> None:
    """`snapshot` runs in a second; only `serve` needs prometheus_client's HTTP side.

    Measured in the kernel lane's emulated guest: importing the exporter cost
    2-3 s per command, and the accounting tests run `snapshot` after every step.
    """
    code = (
        "import sys\n"
        "from inotrace import cli, snapshot, tracer\n"
        "cli.build_parser()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('prometheus_client', 'wsgiref', 'bcc')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"
