"""Summarize the lane's junit files as a kernel x backend matrix.

    python3 kernels/matrix.py RESULTS_DIR
    python3 kernels/matrix.py --markdown MATRIX_JSON    the README's "Kernels tested" table

Reads RESULTS_DIR/junit-<kernel>-<backend>.xml (written by pytest, in the VM
or on the host), RESULTS_DIR/status* (the guests' and the host's progress
logs) and RESULTS_DIR/plan (every cell kernels/run meant to run), prints the table, writes RESULTS_DIR/matrix.json, and exits 0 only
when every planned cell ran and passed everything. Standard library only: it runs with the
distribution's python3, before or without the project's venv.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

BACKENDS = ("fentry", "kprobe", "tracepoint", "auto")


def version_key(kernel: str) -> tuple[int, ...]:
    """"6.12.117+deb13-amd64" -> (6, 12, 117): kernels in version order."""
    head = kernel.split("-")[0].split("+")[0]
    return tuple(int(p) for p in head.split(".") if p.isdigit())


def cell_order(kernel: str, backend: str) -> tuple[tuple[int, ...], int]:
    return version_key(kernel), BACKENDS.index(backend) if backend in BACKENDS else len(BACKENDS)


def markdown(matrix: dict[str, Any]) -> str:
    """The matrix as the README shows it: one row per kernel, a column per backend
    (on the host, fentry and kprobe are the checks that they fail in one line)."""
    by_kernel: dict[str, dict[str, dict[str, Any]]] = {}
    for cell in matrix["cells"]:
        by_kernel.setdefault(cell["kernel"], {})[cell["backend"]] = cell
    lines = ["| kernel | " + " | ".join(BACKENDS) + " |", "|---|" + "---|" * len(BACKENDS)]
    for kernel in sorted(by_kernel, key=version_key):
        row = []
        for backend in BACKENDS:
            cell = by_kernel[kernel].get(backend)
            if cell is None:
                row.append("-")
            elif "broken" in cell:
                row.append("no result")
            else:
                bad = cell["failed"] + cell["errors"] + cell["skipped"]
                row.append(f"{cell['passed']} passed" if not bad else f"FAIL ({bad} of {cell['passed'] + bad})")
        where = " (this project's host: no kprobes, no trampolines)" if any(
            c.get("host") for c in by_kernel[kernel].values()
        ) else ""
        lines.append(f"| {kernel}{where} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


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


def collect(results: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """Every cell of the run: its junit file, or why there is none."""
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
    # every cell kernels/run planned ("<kernel> <backend>" lines): one never started shows too
    plan = results / "plan"
    for line in plan.read_text().splitlines() if plan.exists() else ():
        kernel, _, backend = line.partition(" ")
        if backend and (kernel, backend) not in cells:
            cells[(kernel, backend)] = {"broken": "not run (its kernel did not boot, or the lane ran out of time)"}
    return cells


def passed(cell: dict[str, Any]) -> bool:
    return "broken" not in cell and cell["failed"] + cell["errors"] + cell["skipped"] == 0 and cell["passed"] > 0


def print_table(ordered: list[tuple[tuple[str, str], dict[str, Any]]]) -> None:
    rows = []
    for (kernel, backend), cell in ordered:
        if "broken" in cell:
            rows.append((kernel, backend, "-", "-", "-", "-", "-", "NO RESULT: " + cell["broken"]))
            continue
        counts = [str(cell[k]) for k in ("passed", "failed", "errors", "skipped")]
        rows.append((kernel, backend, *counts, f"{cell['seconds']:.0f}s", "ok" if passed(cell) else "FAIL"))
    header = ("kernel", "backend", "passed", "failed", "errors", "skipped", "time", "result")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(col.ljust(w) for col, w in zip(row, widths, strict=True)).rstrip())
    for (kernel, backend), cell in ordered:
        for problem in cell.get("problems", []):
            print(f"  [{kernel} {backend}] {problem}")


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[1] == "--markdown":
        print(markdown(json.loads(Path(argv[2]).read_text())), end="")
        return 0
    if len(argv) != 2 or not Path(argv[1]).is_dir():
        print("usage: matrix.py RESULTS_DIR | --markdown MATRIX_JSON", file=sys.stderr)
        return 2
    results = Path(argv[1])
    ordered = sorted(collect(results).items(), key=lambda kv: cell_order(*kv[0]))
    ok = bool(ordered) and all(passed(cell) for _, cell in ordered)
    print_table(ordered)
    host = results / "status-host"
    host_kernel = next((k for k, _, _ in planned(host)), None) if host.exists() else None
    matrix = [{"kernel": k, "backend": b, "host": k == host_kernel, **cell} for (k, b), cell in ordered]
    (results / "matrix.json").write_text(json.dumps({"ok": ok, "cells": matrix}, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
