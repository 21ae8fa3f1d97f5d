"""What each probe backend costs the host, measured in one boot: ns added to an
unrelated syscall (getppid: the tax a syscall tracepoint puts on every task)
and to open()+close(), with `inotrace serve --probes B` attached, against no
tracer measured in the same run.

    sudo .venv/bin/python bench/backends.py [--backends fentry,tracepoint,kprobe] [--rounds 3] [--path DIR] [--out F]

Made for the kernel-matrix lane's VM (`LANE_BENCH=1 kernels/run`), where
fentry, kprobes and tracepoints all exist; under software emulation (TCG) the
absolute numbers mean little, so it reports ratios: each backend's added cost
over the tracepoint backend's. A backend that cannot attach on this kernel
(fentry on this project's host) is reported as such and left out.

Same loop as bench/opens.py (bench/oploop.c, pinned, fastest of --chunks
chunks); each round samples none, then every backend (rotating order), then
none again. The opens run on --path (default /dev/shm, a tmpfs: in the lane's
guest /tmp is 9p, ~145 us an open). Writes JSON (every sample) to --out.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from opens import BenchError, InotraceServe, compile_loop, run_loop

METRICS = ("getppid_cpu", "open_cpu")


def measure(exe: Path, path: Path, args: argparse.Namespace) -> dict[str, float]:
    r = run_loop(exe, args.cpu, path, args.opens, args.getppids, args.chunks)
    return {m: float(r[m]) for m in METRICS}


def sample_round(exe: Path, path: Path, args: argparse.Namespace, tracers: list[InotraceServe], n: int) -> list[dict]:
    out = [{"config": "none", "round": n, **measure(exe, path, args)}]
    for t in tracers[n % len(tracers) :] + tracers[: n % len(tracers)]:
        t.start()
        try:
            out.append({"config": t.name, "round": n, **measure(exe, path, args)})
        finally:
            t.stop()
    out.append({"config": "none", "round": n, **measure(exe, path, args)})
    return out


def attachable(inotrace: str, workdir: Path, backend: str) -> str | None:
    """None if `serve --probes backend` starts here, else why not (its one line)."""
    t = InotraceServe([inotrace], workdir, ("--probes", backend), backend)
    try:
        t.start()
    except BenchError as e:
        return str(e)
    t.stop()
    return None


def report(samples: list[dict], backends: list[str]) -> dict[str, Any]:
    configs = ["none", *backends]
    med = {(c, m): statistics.median(s[m] for s in samples if s["config"] == c) for c in configs for m in METRICS}
    added = {b: {m: med[(b, m)] - med[("none", m)] for m in METRICS} for b in backends}
    print(f"{'config':<12} {'getppid ns':>11} {'added':>8} {'open ns':>9} {'added':>8}")
    print(f"{'none':<12} {med[('none', 'getppid_cpu')]:>11.0f} {'':>8} {med[('none', 'open_cpu')]:>9.0f}")
    for b in backends:
        g, o = added[b]["getppid_cpu"], added[b]["open_cpu"]
        print(f"{b:<12} {med[(b, 'getppid_cpu')]:>11.0f} {g:>+8.0f} {med[(b, 'open_cpu')]:>9.0f} {o:>+8.0f}")
    ratios = {}
    if "tracepoint" in added:
        base = added["tracepoint"]
        for b in backends:
            ratios[b] = {m: added[b][m] / base[m] if base[m] > 0 else None for m in METRICS}
            g = ratios[b]["getppid_cpu"]
            if b != "tracepoint" and g is not None:
                print(f"{b}: getppid tax {g:.2f}x the tracepoint backend's (target for fentry: <= 0.1x)")
    return {"median_ns": {f"{c}/{m}": v for (c, m), v in med.items()}, "added_ns": added, "vs_tracepoint": ratios}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", default="fentry,tracepoint,kprobe")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--opens", type=int, default=20000)
    ap.add_argument("--getppids", type=int, default=200000)
    ap.add_argument("--chunks", type=int, default=10)
    ap.add_argument("--cpu", type=int, default=1)
    ap.add_argument("--path", default="/dev/shm")
    ap.add_argument("--inotrace", default=str(Path(sys.executable).parent / "inotrace"))
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "backends.json"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.path) as d:
        workdir = Path(d)
        target = workdir / "opened"
        target.write_text("x")
        exe = compile_loop(workdir)
        skipped = {b: why for b in args.backends.split(",") if (why := attachable(args.inotrace, workdir, b))}
        for b, why in skipped.items():
            print(f"{b}: cannot attach here, left out: {why}")
        backends = [b for b in args.backends.split(",") if b not in skipped]
        tracers = [InotraceServe([args.inotrace], workdir, ("--probes", b), b) for b in backends]
        samples = [s for n in range(args.rounds) for s in sample_round(exe, target, args, tracers, n)]
    result = {"kernel": platform.release(), "skipped": skipped, "samples": samples, **report(samples, backends)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"backends: {e}", file=sys.stderr)
        sys.exit(1)
