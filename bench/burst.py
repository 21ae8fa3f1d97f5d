"""Burst benchmark: a recursive watcher setting up, with and without inotrace.

    sudo .venv/bin/python bench/burst.py [--dirs 200000] [--rounds 3] [--big 1000000 --watchers 10]

`inotifywait -m -r` on a tmpfs tree of --dirs directories (the moment IDEs,
webpack, kubelet and promtail hit ENOSPC), interleaved rounds: nothing
attached, `inotrace serve` at its defaults, and (if installed) a bare
bpftrace counter of add_watch exits for scale. Set-up time is from the
watcher's start to its "Watches established." line. For inotrace it also
reports records lost, corrections by kind, the watcher's gauge against its
fdinfo, inotrace's CPU per 100k watches set up and /metrics latency (scraped every
100 ms during the burst). Then --watchers watchers on --big directories in
all, at once. Raises fs.inotify.max_user_watches for the run and restores it;
the trees live on a tmpfs that is unmounted at the end.
Writes bench/results/burst.json and prints a table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
LIMITS = Path("/proc/sys/fs/inotify")
INOTRACE = [sys.executable, "-m", "inotrace"]
BPFTRACE = "tracepoint:syscalls:sys_exit_inotify_add_watch { @n = count(); }"
FANOUT = 32


def make_tree(base: str, n: int) -> None:
    """n directories under base, FANOUT children each (heap order: parents first)."""
    paths = [base]
    for i in range(1, n + 1):
        p = f"{paths[(i - 1) // FANOUT]}/d{i}"
        os.mkdir(p)
        paths.append(p)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")


def fdinfo_watches(pid: int) -> int:
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:inotify":
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                n += sum(1 for line in f if line.startswith("inotify wd:"))
    return n


def scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=30) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            key = s.name + "".join(f",{k}={v}" for k, v in sorted(s.labels.items()) if k != "comm")
            out[key] = out.get(key, 0) + s.value
    return out


class Watchers:
    """inotifywait -m -r on each tree, started together; set-up ends when all say so."""

    def __init__(self, trees: list[str]) -> None:
        start = time.monotonic()
        self.procs = [
            subprocess.Popen(["inotifywait", "-m", "-r", t], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            for t in trees
        ]
        self.pids = [p.pid for p in self.procs]
        for p in self.procs:
            # "Setting up watches.  Beware: ...", then "Watches established." ends set-up
            for _ in range(3):
                line = p.stderr.readline()  # type: ignore[union-attr]
                if b"Watches established" in line:
                    break
            else:
                raise RuntimeError(f"inotifywait: {line!r}")
        self.seconds = time.monotonic() - start

    def stop(self) -> None:
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait()


class Scraper(threading.Thread):
    """Scrapes /metrics every 100 ms until stopped; keeps each latency."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.latencies, self.failures = url, [], 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            t0 = time.perf_counter()
            try:
                with urllib.request.urlopen(self.url, timeout=30) as resp:
                    resp.read()
                self.latencies.append(time.perf_counter() - t0)
            except OSError:
                self.failures += 1
            self._done.wait(0.1)

    def stop(self) -> None:
        self._done.set()
        self.join()


@dataclass
class Inotrace:
    proc: subprocess.Popen
    url: str
    stderr: object = field(default=None)

    @classmethod
    def start(cls, *extra: str, src: str | None = None) -> Inotrace:
        """src: another checkout's src/ to run instead of this one (--against)."""
        port = free_port()
        err = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in stop()
        env = {**os.environ, "PYTHONPATH": src} if src else None
        proc = subprocess.Popen(
            [*INOTRACE, "serve", f"--web.listen-address=127.0.0.1:{port}", *extra], stderr=err, cwd=ROOT, env=env
        )
        self = cls(proc, f"http://127.0.0.1:{port}/metrics", err)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            err.seek(0)
            if "serving on" in err.read():
                return self
            if proc.poll() is not None:
                err.seek(0)
                raise RuntimeError(f"inotrace exited: {err.read()}")
            time.sleep(0.1)
        raise RuntimeError("inotrace did not start")

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)
        self.stderr.seek(0)  # type: ignore[attr-defined]
        return self.stderr.read()  # type: ignore[attr-defined]


def gauge_of(metrics: dict[str, float], pid: int) -> float | None:
    suffix = f",pid={pid},uid=0"
    return next(
        (v for k, v in metrics.items() if k.startswith("inotrace_process_inotify_watches") and suffix in k), None
    )


def traced_burst(trees: list[str]) -> dict[str, object]:
    """One burst under `inotrace serve` (defaults): time, losses, exactness, cost."""
    tr = Inotrace.start()
    try:
        before = scrape(tr.url)
        cpu0 = cpu_seconds(tr.proc.pid)
        scraper = Scraper(tr.url)
        scraper.start()
        w = Watchers(trees)
        scraper.stop()
        # the model must equal fdinfo: wait for that, with a deadline
        truth = {pid: fdinfo_watches(pid) for pid in w.pids}
        settle0, exact, after = time.monotonic(), False, before
        while time.monotonic() - settle0 < 60:
            after = scrape(tr.url)
            if all(gauge_of(after, pid) == n for pid, n in truth.items()):
                exact = True
                break
            time.sleep(0.1)
        settled = time.monotonic() - settle0
        cpu = cpu_seconds(tr.proc.pid) - cpu0
        w.stop()
    finally:
        log = tr.stop()

    def delta(key: str) -> float:
        return after.get(key, 0) - before.get(key, 0)

    records = delta("inotrace_ringbuf_records_total")
    lat = sorted(scraper.latencies)
    return {
        "seconds": w.seconds,
        "watches": sum(truth.values()),
        "records": records,
        "lost": {
            k.split("reason=")[1]: delta(k) for k in after if k.startswith("inotrace_events_lost_total") and delta(k)
        },
        "corrections": {
            k.split("kind=")[1]: delta(k) for k in after if k.startswith("inotrace_accounting_corrections_total")
        },
        "gauge_exact": exact,
        "gauge_exact_after_s": round(settled, 3),
        "cpu_s": round(cpu, 3),
        "cpu_s_per_100k_watches": round(cpu / sum(truth.values()) * 1e5, 3),
        "scrapes": len(lat),
        "scrape_failures": scraper.failures,
        "scrape_p50_ms": round(statistics.median(lat) * 1e3, 1) if lat else None,
        "scrape_p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3, 1) if lat else None,
        "tracebacks": log.count("Traceback"),
    }


def kernel_only_burst(trees: list[str]) -> dict[str, object]:
    """inotrace's kernel side alone: its process stopped (SIGSTOP) for the
    burst, with a ring that holds all of it, so nothing in user space competes
    with the watcher for the CPUs (diagnostic: where the cost is)."""
    tr = Inotrace.start("--ringbuf-pages=65536")
    try:
        tr.proc.send_signal(signal.SIGSTOP)
        try:
            return plain_burst(trees)
        finally:
            tr.proc.send_signal(signal.SIGCONT)
    finally:
        tr.stop()


def unscraped_burst(trees: list[str], src: str | None = None, extra: tuple[str, ...] = ()) -> dict[str, object]:
    """`inotrace serve` with no scrapes during the burst (diagnostic: the
    cost of the 100 ms scraping the inotrace configuration measures under)."""
    tr = Inotrace.start(*extra, src=src)
    try:
        cpu0 = cpu_seconds(tr.proc.pid)
        res = plain_burst(trees)
        time.sleep(1)  # the drain catches up (its CPU counts)
        after = scrape(tr.url)
        lost = sum(v for k, v in after.items() if k.startswith("inotrace_events_lost_total"))
        return {
            **res,
            "cpu_s": round(cpu_seconds(tr.proc.pid) - cpu0, 3),
            "records": after.get("inotrace_ringbuf_records_total", 0),
            "lost": lost,
        }
    finally:
        tr.stop()


def audited_burst(trees: list[str]) -> dict[str, object]:
    """`serve --log-events` (a record per call, written to a file on the
    tree's tmpfs), unscraped: what an audit stream costs."""
    log = f"{os.path.dirname(trees[0])}/events.jsonl"
    try:
        return unscraped_burst(trees, extra=(f"--log-events={log}",))
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(log)


def plain_burst(trees: list[str]) -> dict[str, object]:
    w = Watchers(trees)
    w.stop()
    return {"seconds": w.seconds}


def bpftrace_burst(trees: list[str]) -> dict[str, object]:
    bt = subprocess.Popen(["bpftrace", "-e", BPFTRACE], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert "Attaching" in bt.stdout.readline()  # type: ignore[union-attr]
        return plain_burst(trees)
    finally:
        bt.send_signal(signal.SIGINT)
        bt.wait(timeout=30)


CONFIGS = {
    "none": plain_burst,
    "inotrace": traced_burst,
    "bpftrace": bpftrace_burst,
    "unscraped": unscraped_burst,
    "kernel": kernel_only_burst,
    "audited": audited_burst,
}
DIAGNOSTIC = ["unscraped", "kernel", "audited"]


def _note(res: dict[str, object]) -> str:
    if "cpu_s" not in res:
        return ""
    lost = res.get("lost")
    extra = f", {res['records']:.0f} records, {lost:.0f} lost" if isinstance(lost, float | int) else ""
    return f"  (inotrace CPU {res['cpu_s']:.2f} s{extra})"


def run_rounds(trees: list[str], rounds: int, configs: list[str]) -> dict[str, list[dict[str, object]]]:
    out: dict[str, list[dict[str, object]]] = {c: [] for c in configs}
    for r in range(rounds):
        order = configs if r % 2 == 0 else configs[::-1]
        for c in order:
            res = CONFIGS[c](trees)
            out[c].append(res)
            cpu = _note(res)
            print(f"  round {r + 1} {c:9} {res['seconds']:.2f} s{cpu}", flush=True)
    return out


def summarize(name: str, runs: dict[str, list[dict[str, object]]]) -> dict[str, object]:
    med = {c: statistics.median(float(r["seconds"]) for r in rs) for c, rs in runs.items()}  # type: ignore[arg-type]
    traced = runs["inotrace"]
    summary: dict[str, object] = {
        "setup_s": med,
        "ratio_inotrace": round(med["inotrace"] / med["none"], 3),
        "lost_total": sum(sum(r["lost"].values()) for r in traced),  # type: ignore[attr-defined]
        "corrections": {
            k: sum(r["corrections"][k] for r in traced)  # type: ignore[index]
            for k in traced[0]["corrections"]  # type: ignore[attr-defined]
        },
        "gauge_exact_every_round": all(r["gauge_exact"] for r in traced),
        "cpu_s_per_100k_watches": statistics.median(float(r["cpu_s_per_100k_watches"]) for r in traced),
        "scrape_p99_ms": max(float(r["scrape_p99_ms"] or 0) for r in traced),
    }
    for other in ("bpftrace", *DIAGNOSTIC, "against"):
        if other in med:
            summary[f"ratio_{other}"] = round(med[other] / med["none"], 3)
    if "audited" in runs:
        summary["audited_lost_total"] = sum(float(r["lost"]) for r in runs["audited"])  # type: ignore[arg-type]
        summary["audited_records"] = statistics.median(float(r["records"]) for r in runs["audited"])  # type: ignore[arg-type]
    print(f"\n{name}:")
    for k, v in summary.items():
        print(f"  {k:26} {v}")
    return {"summary": summary, "runs": runs}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dirs", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--big", type=int, default=1_000_000, help="directories in all for the many-watchers run (0: skip)")
    ap.add_argument("--watchers", type=int, default=10)
    ap.add_argument("--no-bpftrace", action="store_true")
    ap.add_argument(
        "--against",
        metavar="SRC",
        help="also run another checkout's src/ unscraped (an A/B in the same run: config 'against')",
    )
    ap.add_argument(
        "--diagnose",
        action="store_true",
        help="also: inotrace unscraped, and its kernel side alone (its process stopped for the burst)",
    )
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("burst.py: run as root (it loads BPF, mounts a tmpfs and raises inotify limits)", file=sys.stderr)
        return 1
    configs = ["none", "inotrace"] + ([] if args.no_bpftrace or not shutil.which("bpftrace") else ["bpftrace"])
    configs += DIAGNOSTIC if args.diagnose else []
    if args.against:
        CONFIGS["against"] = lambda trees: unscraped_burst(trees, src=args.against)
        configs += ["against"] + ([] if "unscraped" in configs else ["unscraped"])
    saved = (LIMITS / "max_user_watches").read_text()
    base = tempfile.mkdtemp(prefix="inotrace-burst-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8g,nr_inodes=0", "inotrace-burst", base], check=True)
    results: dict[str, object] = {"dirs": args.dirs, "rounds": args.rounds}
    try:
        need = max(args.dirs, args.big) + 100_000
        (LIMITS / "max_user_watches").write_text(f"{max(need, int(saved))}\n")
        t0 = time.monotonic()
        os.mkdir(f"{base}/one")
        make_tree(f"{base}/one", args.dirs)
        print(f"tree of {args.dirs} directories in {time.monotonic() - t0:.1f} s; {args.rounds} rounds", flush=True)
        results["one_watcher"] = summarize(
            f"{args.dirs} dirs, 1 watcher", run_rounds([f"{base}/one"], args.rounds, configs)
        )
        shutil.rmtree(f"{base}/one")
        if args.big:
            trees = [f"{base}/w{i}" for i in range(args.watchers)]
            for t in trees:
                os.mkdir(t)
                make_tree(t, args.big // args.watchers)
            print(f"\n{args.watchers} trees of {args.big // args.watchers} directories", flush=True)
            results["many_watchers"] = summarize(
                f"{args.big} dirs, {args.watchers} watchers", run_rounds(trees, 1, ["none", "inotrace"])
            )
    finally:
        (LIMITS / "max_user_watches").write_text(saved)
        subprocess.run(["umount", base], check=False)
        os.rmdir(base)
    out = ROOT / "bench" / "results" / "burst.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
