"""The lane's plan (kernels/run) runs what the host cannot.

A test that branches on what the kernel offers (`kernel_has_kprobes()`, the
backend asked for in INOTRACE_TEST_PROBES) does only half its job on any one
machine: this host has no kprobes, so its kprobe half would pass here without
running. Such tests must live in a file the lane runs under every backend in
its VM (Debian's 6.1, kprobes), and the host's row of the lane runs the same
file under every backend natively. kernels/run's LANE_* lists are the one place
that says what runs there; this file is where CI checks them.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import subprocess

from conftest import ROOT

TESTS = ROOT / "tests"
# Names whose use in a test means "this test behaves differently per kernel or backend".
KERNEL_BRANCHES = {"kernel_has_kprobes", "kernel_has_fentry", "kernel_has_task_pt_regs", "PROBES"}


def lane_plan() -> dict[str, list[str]]:
    """kernels/run's LANE_* assignments, evaluated by bash itself."""
    text = (ROOT / "kernels/run").read_text()
    block = text[text.index("LANE_TESTS=(") : text.index("\ntimeout_s=")]
    show = (
        'printf "tests %s\\n" "${LANE_TESTS[@]}"; printf "deselect %s\\n" "${LANE_DESELECT[@]}"; '
        'printf "backends %s\\n" "${LANE_BACKENDS[@]}"; printf "host %s\\n" "${LANE_HOST_TESTS[@]}"; '
        'for b in "${!LANE_PLAN[@]}"; do printf "plan %s=%s\\n" "$b" "${LANE_PLAN[$b]}"; done'
    )
    out = subprocess.run(["bash", "-c", f"{block}\n{show}"], capture_output=True, text=True, check=True).stdout
    plan: dict[str, list[str]] = {}
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        if value:
            plan.setdefault(key, []).append(value)
    return plan


def kernel_branching_tests() -> dict[str, list[str]]:
    """test file -> its test functions that use a name in KERNEL_BRANCHES."""
    found: dict[str, list[str]] = {}
    for path in sorted(TESTS.glob("test_*.py")):
        for node in ast.parse(path.read_text()).body:
            if not (isinstance(node, ast.FunctionDef) and node.name.startswith("test_")):
                continue
            names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
            if names & KERNEL_BRANCHES:
                found.setdefault(f"tests/{path.name}", []).append(node.name)
    return found


def test_every_test_that_branches_on_the_kernel_runs_in_the_lane() -> None:
    plan = lane_plan()
    files = {t.split("::")[0] for t in plan["tests"]}
    deselected = plan.get("deselect", [])
    branching = kernel_branching_tests()
    assert branching, "the scan found nothing: it no longer sees how tests branch on the kernel"
    for file, tests in branching.items():
        assert file in files, f"{file} ({', '.join(tests)}) branches on the kernel but the lane does not run it"
        for test in tests:
            node = f"{file}::{test}"
            assert not any(node.startswith(d) or d.startswith(node) for d in deselected), f"{node} is deselected"


def test_the_lane_runs_its_list_with_kprobes_and_every_backend() -> None:
    plan = lane_plan()
    assert set(plan["backends"]) >= {"fentry", "kprobe", "tracepoint", "auto"}
    for backend in ("fentry", "kprobe", "tracepoint", "auto"):
        assert f"{backend}=all" in plan["plan"], f"{backend} does not run the whole list"
    assert sorted(p.split("=")[0] for p in plan["plan"]) == sorted(plan["backends"])
    # the host's row runs the kernel-branching checks under every backend too
    assert "tests/test_kernel_lane.py" in plan["host"]
    for entry in plan["tests"] + plan["host"] + [p.split("=", 1)[1] for p in plan["plan"] if not p.endswith("=all")]:
        assert (ROOT / entry.split("::")[0]).is_file(), f"the lane lists {entry}, which does not exist"


def _matrix_module():  # kernels/matrix.py is a script (the distribution's python3 runs it): load it by path
    spec = importlib.util.spec_from_file_location("lane_matrix", ROOT / "kernels/matrix.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def default_kernels() -> list[str]:
    """The kernel series kernels/run boots when LANE_KERNELS is unset."""
    (found,) = re.findall(r"LANE_KERNELS:-([0-9. ]+)\}", (ROOT / "kernels/run").read_text())
    return found.split()


def test_readme_kernels_table_is_the_committed_full_run() -> None:
    """The README's "Kernels tested" table is kernels/matrix.json (a real run's, copied from
    kernels/results), and that run covers every kernel and backend the lane plans, all passed."""
    matrix_py = _matrix_module()
    matrix = json.loads((ROOT / "kernels/matrix.json").read_text())
    readme = (ROOT / "README.md").read_text()
    table = readme.split("<!-- kernels-table:", 1)[1].split("-->", 1)[1].split("<!-- end kernels-table -->")[0]
    assert table.strip() == matrix_py.markdown(matrix).strip()
    assert matrix["ok"]
    cells = {(c["kernel"], c["backend"]): c for c in matrix["cells"]}
    backends = set(lane_plan()["backends"])
    for series in default_kernels():
        kernels = {k for k, _ in cells if matrix_py.version_key(k)[:2] == tuple(map(int, series.split(".")))}
        assert len(kernels) == 1, f"series {series}: {kernels}"
        (kernel,) = kernels
        assert {b for k, b in cells if k == kernel} == backends, kernel
    for (kernel, backend), cell in cells.items():
        assert cell["passed"] > 0 and cell["failed"] + cell["errors"] + cell["skipped"] == 0, (kernel, backend)
