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
import subprocess

from conftest import ROOT

TESTS = ROOT / "tests"
# Names whose use in a test means "this test behaves differently per kernel or backend".
KERNEL_BRANCHES = {"kernel_has_kprobes", "kernel_has_fentry", "PROBES"}


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
    for backend in ("fentry", "kprobe"):
        assert f"{backend}=all" in plan["plan"], f"{backend}, which the host lacks, runs the whole list"
    assert sorted(p.split("=")[0] for p in plan["plan"]) == sorted(plan["backends"])
    # the host's row runs the kernel-branching checks under every backend too
    assert "tests/test_kernel_lane.py" in plan["host"]
    for entry in plan["tests"] + plan["host"] + [p.split("=", 1)[1] for p in plan["plan"] if not p.endswith("=all")]:
        assert (ROOT / entry.split("::")[0]).is_file(), f"the lane lists {entry}, which does not exist"
