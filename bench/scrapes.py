"""Scrape-storm benchmark: 400 concurrent /metrics requests against `inotrace serve`.

    sudo .venv/bin/python bench/scrapes.py [--storm 400] [--rounds 3] [--holders 20]

A host with --holders inotifywait -r watchers (a realistic exposition: top
processes, per-comm series), then rounds interleaving the default
--web.max-requests=40 with no cap (0). Each round first takes 20 scrapes one
after another (the baseline, same run), then --storm scrapes released at
once. Reports, per configuration: answered (200), refused (503), failed
(connection errors or timeouts), latency p50/p99/max of the storm, and p99
as a ratio of the baseline's median. Writes bench/results/scrapes.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from burst import FANOUT, Inotrace, make_tree

ROOT = Path(__file__).resolve().parent.parent
BASELINE_SCRAPES = 20


def timed_scrape(url: str) -> tuple[int, float]:
    """(status, seconds); status 0 for a connection error or a timeout."""
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:
            resp.read()
            code = resp.status
    except urllib.error.HTTPError as e:
        e.read()
        code = e.code
    except OSError:
        code = 0
    return code, time.perf_counter() - t0


def storm(url: str, n: int) -> list[tuple[int, float]]:
    go = threading.Barrier(n)
    out: list[tuple[int, float]] = [(0, 0.0)] * n

    def one(i: int) -> None:
        go.wait()
        out[i] = timed_scrape(url)

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def one_round(cap: int, n: int) -> dict[str, float]:
    tracer = Inotrace.start(f"--web.max-requests={cap}")
    try:
        base = statistics.median(timed_scrape(tracer.url)[1] for _ in range(BASELINE_SCRAPES))
        got = storm(tracer.url, n)
    finally:
        tracer.stop()
    lat = sorted(s for code, s in got if code)
    codes = [code for code, _ in got]
    p99 = lat[int(0.99 * (len(lat) - 1))] if lat else float("nan")
    return {
        "answered": codes.count(200),
        "refused": codes.count(503),
        "failed": codes.count(0),
        "baseline_s": base,
        "p50_s": statistics.median(lat) if lat else float("nan"),
        "p99_s": p99,
        "max_s": lat[-1] if lat else float("nan"),
        "p99_ratio": p99 / base,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--storm", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--holders", type=int, default=20)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("scrapes.py: run as root (it loads BPF)", file=sys.stderr)
        return 1
    tree = tempfile.mkdtemp(prefix="inotrace-scrapes-")
    make_tree(tree, FANOUT * 16)
    holders = [
        subprocess.Popen(["inotifywait", "-q", "-m", "-r", tree], stdout=subprocess.DEVNULL)
        for _ in range(args.holders)
    ]
    runs: dict[str, list[dict[str, float]]] = {"max-requests=40": [], "max-requests=0": []}
    try:
        time.sleep(1)  # the watchers set up (a few hundred watches each)
        for r in range(args.rounds):
            for name, cap in (("max-requests=40", 40), ("max-requests=0", 0)):
                runs[name].append(res := one_round(cap, args.storm))
                print(f"round {r + 1} {name}: " + " ".join(f"{k}={v:.4g}" for k, v in res.items()), flush=True)
    finally:
        for h in holders:
            h.kill()
            h.wait()
        subprocess.run(["rm", "-rf", tree], check=False)
    print(f"\n{args.storm} concurrent scrapes, median of {args.rounds} rounds")
    summary = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()}
    for name, s in summary.items():
        print(
            f"{name:>16}: {s['answered']:.0f} answered, {s['refused']:.0f} refused, {s['failed']:.0f} failed; "
            f"p50 {s['p50_s'] * 1e3:.0f} ms, p99 {s['p99_s'] * 1e3:.0f} ms ({s['p99_ratio']:.1f}x one scrape "
            f"of {s['baseline_s'] * 1e3:.1f} ms), max {s['max_s'] * 1e3:.0f} ms"
        )
    out = ROOT / "bench" / "results" / "scrapes.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"storm": args.storm, "runs": runs, "summary": summary}, indent=2) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
