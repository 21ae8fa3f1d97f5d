"""Accounting benchmark: seed time, scrape latency and RSS with many watches.

    sudo .venv/bin/python bench/accounting.py [--processes 2000] [--watches 100000] [--big 200000]

1. 2k processes holding 100k watches: time inotrace's seed (BPF iterator +
   fdinfo of every instance), against a baseline measured in the same run:
   just reading every /proc/PID/fdinfo/FD of those instances.
2. 200k watches: `inotrace serve`, scraped 200 times: p50/p99 latency, and
   its RSS; the baseline is a scrape of the same server's landing page.
Raises fs.inotify limits for the run and restores them. Writes JSON to
bench/results/accounting.json and prints a table.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from inotrace import proc
from inotrace.bpf_program import Program
from inotrace.tracer import Tracer

ROOT = Path(__file__).resolve().parent.parent
LIMITS = Path("/proc/sys/fs/inotify")
libc = ctypes.CDLL(None, use_errno=True)
libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]


class Farm:
    """A separate process that forks `n_procs` holders, each with one instance
    watching every path. Kept out of the benchmark process: forking a process
    that runs threads (inotrace's fdinfo pool) can deadlock the children."""

    def __init__(self, n_procs: int, paths: list[bytes]) -> None:
        cmd = [sys.executable, __file__, "--farm", str(n_procs), *map(os.fsdecode, paths)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, start_new_session=True)
        self.pids = [int(x) for x in self.proc.stdout.readline().split()]  # type: ignore[union-attr]

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def farm(n_procs: int, paths: list[bytes]) -> None:
    pids = []
    for _ in range(n_procs):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            fd = libc.inotify_init1(0)
            for p in paths:
                libc.inotify_add_watch(fd, p, 0x2)
            os.write(w, b"x")
            signal.pause()
            os._exit(0)
        os.close(w)
        os.read(r, 1)
        os.close(r)
        pids.append(pid)
    print(" ".join(map(str, pids)), flush=True)
    signal.pause()


def files(base: str, n: int) -> list[bytes]:
    out = []
    for i in range(n):
        p = os.path.join(base, f"f{i:05d}")
        open(p, "w").close()
        out.append(p.encode())
    return out


def bench_seed(n_procs: int, n_watches: int, base: str) -> dict[str, float]:
    holders = Farm(n_procs, files(base, n_watches // n_procs))
    pids = holders.pids
    program = Program()
    tracer = None
    try:
        program.attach("tracepoint")
        tracer = Tracer(program)
        tracer.self_test()
        rounds = []
        for _ in range(5):
            t0 = time.perf_counter()
            for pid in pids:
                for fd in proc.inotify_fds("/proc", pid):
                    proc.read_watches("/proc", pid, fd)
            baseline = time.perf_counter() - t0
            tracer.accounting.instances.clear()
            t0 = time.perf_counter()
            tracer.seed()
            seed = time.perf_counter() - t0
            rounds.append((seed, baseline))
        watched = sum(len(i.watches) for i in tracer.accounting.instances.values())
    finally:
        if tracer is not None:
            tracer.close()
        program.close()
        holders.stop()
    seed = statistics.median(r[0] for r in rounds)
    baseline = statistics.median(r[1] for r in rounds)
    return {
        "processes": n_procs,
        "watches_tracked": watched,
        "seed_s": seed,
        "fdinfo_read_s": baseline,
        "ratio": seed / baseline,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> float:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as r:
        r.read()
    return time.perf_counter() - t0


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def bench_scrape(n_procs: int, n_watches: int, base: str, scrapes: int) -> dict[str, float]:
    holders = Farm(n_procs, files(base, n_watches // n_procs))
    port = free_port()
    serve = subprocess.Popen(
        [sys.executable, "-m", "inotrace", "serve", f"--web.listen-address=127.0.0.1:{port}"],
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        while "serving on" not in (serve.stderr.readline() if serve.stderr else ""):
            if serve.poll() is not None:
                raise SystemExit("serve died")
        url = f"http://127.0.0.1:{port}"
        get(url + "/metrics")
        metrics, landing = [], []
        for _ in range(scrapes):
            metrics.append(get(url + "/metrics"))
            landing.append(get(url + "/"))
        rss = rss_mib(serve.pid)
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=60)
        holders.stop()

    def p(xs: list[float], q: float) -> float:
        return sorted(xs)[min(len(xs) - 1, int(q * len(xs)))]

    return {
        "processes": n_procs,
        "watches": n_watches,
        "scrape_p50_s": p(metrics, 0.5),
        "scrape_p99_s": p(metrics, 0.99),
        "landing_p50_s": p(landing, 0.5),
        "ratio_p50": p(metrics, 0.5) / p(landing, 0.5),
        "rss_mib": rss,
    }


def main() -> None:
    if sys.argv[1:2] == ["--farm"]:
        farm(int(sys.argv[2]), [os.fsencode(p) for p in sys.argv[3:]])
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--processes", type=int, default=2000)
    ap.add_argument("--watches", type=int, default=100_000)
    ap.add_argument("--big", type=int, default=200_000)
    ap.add_argument("--scrapes", type=int, default=200)
    args = ap.parse_args()
    saved = {n: (LIMITS / n).read_text() for n in ("max_user_instances", "max_user_watches")}
    out: dict[str, dict[str, float]] = {}
    try:
        (LIMITS / "max_user_instances").write_text(str(args.processes + 1000))
        (LIMITS / "max_user_watches").write_text(str(args.big + 100_000))
        with tempfile.TemporaryDirectory() as d:
            out["seed"] = bench_seed(args.processes, args.watches, d)
        with tempfile.TemporaryDirectory() as d:
            out["scrape"] = bench_scrape(args.processes, args.big, d, args.scrapes)
    finally:
        for n, v in saved.items():
            (LIMITS / n).write_text(v)
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / "accounting.json").write_text(json.dumps(out, indent=2))
    s, c = out["seed"], out["scrape"]
    print(
        f"seed    {s['watches_tracked']:>7} watches / {s['processes']} procs: {s['seed_s'] * 1000:8.1f} ms "
        f"(reading their fdinfo alone: {s['fdinfo_read_s'] * 1000:.1f} ms, ratio {s['ratio']:.2f})"
    )
    print(
        f"scrape  {c['watches']:>7} watches: p50 {c['scrape_p50_s'] * 1000:.1f} ms, "
        f"p99 {c['scrape_p99_s'] * 1000:.1f} ms "
        f"(landing page p50 {c['landing_p50_s'] * 1000:.2f} ms), RSS {c['rss_mib']:.1f} MiB"
    )


if __name__ == "__main__":
    main()
