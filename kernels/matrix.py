"""Summarize the lane's junit files as a kernel x backend matrix.

    python3 kernels/matrix.py RESULTS_DIR

Reads RESULTS_DIR/junit-<kernel>-<backend>.xml (written by pytest, in the VM
or on the host) and RESULTS_DIR/status* (the guest's and the host's progress
logs), prints the table, writes RESULTS_DIR/matrix.json, and exits 0 only
when every planned cell ran and passed everything. Standard library only: it runs with the
distribution's python3, before or without the project's venv.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

BACKENDS = ("kprobe", "tracepoint", "auto")


def read_cell(path: Path) -> dict[str, Any]:
    """Counts and the names of failed tests from one junit file."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    cell: dict[str, Any] = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0, "seconds": 0.0, "problems": []}
    for suite in suites:
        cell["seconds"] += float(suite.get("time", 0))
        for case in suite.iter("testcase"):
            name = f"{case.get('classname', '')}::{case.get('name', '')}"
            kinds = {child.tag for child in case}
            if "error" in kinds:
                cell["errors"] += 1
                cell["problems"].append(f"ERROR {name}: {first_line(case, 'error')}")
            elif "failure" in kinds:
                cell["failed"] += 1
                cell["problems"].append(f"FAILED {name}: {first_line(case, 'failure')}")
            elif "skipped" in kinds:
                cell["skipped"] += 1
                cell["problems"].append(f"SKIPPED {name}: {first_line(case, 'skipped')}")
            else:
                cell["passed"] += 1
    return cell


def first_line(case: ET.Element, tag: str) -> str:
    el = case.find(tag)
    if el is None:
        return ""
    text = (el.get("message") or el.text or "").strip()
    return text.splitlines()[0][:200] if text else ""


def planned(status: Path) -> list[tuple[str, str, str]]:
    """(kernel, backend, state) for every backend a status file says was started."""
    out: list[tuple[str, str, str]] = []
    kernel = "?"
    for line in status.read_text().splitlines():
        parts = line.split()
        if parts[:1] == ["booted"] and len(parts) > 1:
            kernel = parts[1]
        elif parts[:1] == ["start"] and len(parts) > 1:
            out.append((kernel, parts[1], "started"))
        elif parts[:1] == ["end"] and len(parts) > 1 and out:
            out[-1] = (out[-1][0], out[-1][1], "ended")
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not Path(argv[1]).is_dir():
        print("usage: matrix.py RESULTS_DIR", file=sys.stderr)
        return 2
    results = Path(argv[1])
    cells: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(results.glob("junit-*.xml")):
        kernel, _, backend = path.stem.removeprefix("junit-").rpartition("-")
        try:
            cells[(kernel, backend)] = read_cell(path)
        except (ET.ParseError, OSError) as e:
            cells[(kernel, backend)] = {"broken": f"unreadable junit file {path.name}: {e}"}
    for kernel, backend, state in (p for status in sorted(results.glob("status*")) for p in planned(status)):
        if (kernel, backend) not in cells:
            why = "did not finish (timed out or crashed)" if state == "started" else "wrote no results"
            cells[(kernel, backend)] = {"broken": why}
    ok = bool(cells)
    rows = []
    for (kernel, backend), cell in sorted(
        cells.items(), key=lambda kv: (kv[0][0], BACKENDS.index(kv[0][1]) if kv[0][1] in BACKENDS else 9)
    ):
        if "broken" in cell:
            ok = False
            rows.append((kernel, backend, "-", "-", "-", "-", "-", "NO RESULT: " + cell["broken"]))
            continue
        bad = cell["failed"] + cell["errors"] + cell["skipped"]
        ok = ok and bad == 0 and cell["passed"] > 0
        verdict = "ok" if bad == 0 and cell["passed"] > 0 else "FAIL"
        rows.append(
            (
                kernel,
                backend,
                str(cell["passed"]),
                str(cell["failed"]),
                str(cell["errors"]),
                str(cell["skipped"]),
                f"{cell['seconds']:.0f}s",
                verdict,
            )
        )
    header = ("kernel", "backend", "passed", "failed", "errors", "skipped", "time", "result")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(col.ljust(w) for col, w in zip(row, widths, strict=True)).rstrip())
    for (kernel, backend), cell in sorted(cells.items()):
        for problem in cell.get("problems", []):
            print(f"  [{kernel} {backend}] {problem}")
    matrix = [{"kernel": k, "backend": b, **cell} for (k, b), cell in sorted(cells.items())]
    (results / "matrix.json").write_text(json.dumps({"ok": ok, "cells": matrix}, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
