"""Command line: `inotrace serve`, `trace`, `top`, `snapshot`.

Every failure a user can cause or meet (bad flags, not root, no BPF, no BCC,
no headers, port taken, unreadable BTF) ends in one line on stderr and a
non-zero exit status, never a traceback. SIGINT/SIGTERM detach every probe
and exit 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

from . import DEFAULT_LISTEN, __version__
from .errors import InotraceError

if TYPE_CHECKING:
    from . import advise
    from .bpf_build import BuildOptions
    from .bpf_stats import StatsSwitch
    from .tracer import Record, Tracer
    from .webguard import WebGuard

log = logging.getLogger("inotrace")

POLL_MS = 10
# /-/healthy fails once the main loop has not turned for this many sample
# intervals (at least HEALTH_MIN_S: one turn may hold a long sample).
HEALTH_INTERVALS = 5
HEALTH_MIN_S = 5.0
DEFAULT_RINGBUF_PAGES = 4096
FINAL_DRAINS = 64


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise InotraceError(f"{message} (see '{self.prog} --help')", code=2)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--probes",
        choices=("auto", "fentry", "tracepoint", "kprobe"),
        default="auto",
        help="probe backend: fentry (BPF trampolines on the kernel functions: no cost to other syscalls), "
        "tracepoint (syscall tracepoints), kprobe (kprobe+kretprobe on the syscall functions), or auto: per "
        "probe, the first of those that attaches (default: %(default)s)",
    )
    p.add_argument("--path.sysfs", dest="sysfs", default="/sys", help="sysfs mount point (default: %(default)s)")
    p.add_argument("--path.procfs", dest="procfs", default="/proc", help="procfs mount point (default: %(default)s)")
    p.add_argument(
        "--log.level",
        dest="log_level",
        choices=("debug", "info", "warn", "error"),
        default="info",
        help="log level (default: %(default)s)",
    )
    p.add_argument(
        "--labels.container",
        dest="labels_container",
        action="store_true",
        help="add container_id and pod_uid (from /proc/PID/cgroup) to per-process gauges and audit records",
    )
    p.add_argument("--ebpf", action="store_true", help=argparse.SUPPRESS)


def _integer(minimum: int, what: str, too_small: str) -> Callable[[str], int]:
    """An argparse type: an integer >= minimum; one clear message otherwise."""

    def parse(value: str) -> int:
        try:
            n = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what}: {value!r}") from None
        if n < minimum:
            raise argparse.ArgumentTypeError(f"{too_small}: {value!r}")
        return n

    return parse


def _comm(value: str) -> str:
    """A comm as the kernel keeps it (15 bytes): a longer one could never match."""
    if not value or len(os.fsencode(value)) > 15:
        raise argparse.ArgumentTypeError(f"not a comm (1 to 15 bytes, as the kernel keeps it): {value!r}")
    return value


_pid_list = _integer(1, "not a pid", "not a pid")
_uid = _integer(0, "not a numeric uid", "not a numeric uid")
_positive = _integer(1, "not a number", "must be at least 1")
_whole = _integer(0, "not a number", "must not be negative")


def _power_of_two(value: str) -> int:
    n = _positive(value)
    if n & (n - 1) or n > 1 << 18:
        raise argparse.ArgumentTypeError(f"must be a power of two up to 262144: {value!r}")
    return n


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"not an http(s) URL: {value!r}")
    return value


def _headroom(value: str) -> float:
    try:
        n = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a factor: {value!r}") from None
    if not 1 <= n <= 100:
        raise argparse.ArgumentTypeError(f"must be between 1 and 100: {value!r}")
    return n


def _seconds(value: str) -> float:
    try:
        n = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
    if not 0.01 <= n <= 86400:
        raise argparse.ArgumentTypeError(f"must be between 0.01 and 86400 seconds: {value!r}")
    return n


def _add_accounting(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--sample-interval",
        dest="sample_interval",
        type=_seconds,
        default=1.0,
        help="seconds between comparisons of the model with the kernel, which find destroyed instances, "
        "watches the kernel removed and queue overflows (default: %(default)s)",
    )
    p.add_argument(
        "--reconcile-interval",
        dest="reconcile_interval",
        type=_whole,
        default=0,
        help="seconds between full re-reads of every quiet instance's watches from fdinfo, a check the "
        "counts do not need (default: %(default)s, never)",
    )
    p.add_argument(
        "--ringbuf-pages",
        dest="ringbuf_pages",
        type=_power_of_two,
        default=DEFAULT_RINGBUF_PAGES,
        help="size of the BPF ring buffer that carries records, in pages, a power of two "
        "(default: %(default)s, 16 MiB: a 200k-directory recursive set-up without a loss)",
    )
    p.add_argument(
        "--max-tracked-instances",
        dest="max_instances",
        type=_positive,
        default=1 << 20,
        help="instances the live model holds at most; more are counted, not tracked (default: %(default)s)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="inotrace", description="Trace inotify instances, watches and limits with eBPF.")
    parser.add_argument("--version", action="version", version=f"inotrace {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    _add_serve(sub)
    _add_snapshot(sub)
    _add_top(sub)
    _add_trace(sub)
    return parser


def _add_serve(sub: Any) -> None:
    serve = sub.add_parser("serve", help="run the Prometheus exporter")
    _add_common(serve)
    serve.add_argument(
        "--web.listen-address",
        dest="listen",
        default=DEFAULT_LISTEN,
        help="address to listen on; localhost only unless told otherwise (default: %(default)s)",
    )
    serve.add_argument("--web.telemetry-path", dest="telemetry_path", default="/metrics", help="(default: %(default)s)")
    serve.add_argument(
        "--web.config.file",
        dest="web_config",
        default="",
        help="exporter-toolkit's web config (TLS, mTLS, basic auth), as node_exporter takes it; re-read on change",
    )
    serve.add_argument(
        "--web.max-requests",
        dest="max_requests",
        type=_whole,
        default=40,
        help="concurrent telemetry requests served at most; more get 503 at once, 0: no limit (default: %(default)s)",
    )
    serve.add_argument(
        "--metrics.max-comms",
        dest="max_comms",
        type=_positive,
        default=200,
        help="comm label values with their own series, per metric group (calls, opens, watches held, queue "
        "overflows); the rest are folded into 'other', and a quiet comm yields its place to a busier one "
        "(default: %(default)s)",
    )
    serve.add_argument(
        "--log-events",
        dest="log_events",
        metavar="FILE",
        help="append the audit stream (calls and lifetime events) to FILE as JSON lines",
    )
    serve.add_argument(
        "--top-processes",
        dest="top_processes",
        type=_positive,
        default=20,
        help="processes exported with a pid label, the top ones by watches (default: %(default)s)",
    )
    serve.add_argument(
        "--bpf-stats",
        dest="bpf_stats",
        action="store_true",
        help="have the kernel count the run time of BPF programs while serving (BPF_ENABLE_STATS: it stops "
        "when inotrace exits), so inotrace_bpf_program_run_seconds_total shows inotrace's own kernel cost; "
        "without it they count only when the sysctl kernel.bpf_stats_enabled is 1",
    )
    _add_accounting(serve)


def _add_snapshot(sub: Any) -> None:
    snap = sub.add_parser("snapshot", help="who holds inotify instances and watches now (procfs; no BPF, no root)")
    snap.add_argument("--json", action="store_true", help="machine-readable output")
    snap.add_argument(
        "--paths",
        action="store_true",
        help="resolve watched paths from their file handles (needs CAP_DAC_READ_SEARCH), with each process's "
        "directory prefixes holding the most watches",
    )
    snap.add_argument(
        "--top-prefixes",
        type=_whole,
        default=10,
        metavar="N",
        help="with --paths, prefixes shown per process (default: %(default)s)",
    )
    snap.add_argument("--path.procfs", dest="procfs", default="/proc", help="procfs mount point (default: %(default)s)")
    snap.add_argument(
        "--path.sysfs", dest="sysfs", default="/sys", help="sysfs mount point, for BTF (default: %(default)s)"
    )
    snap.add_argument(
        "--advise",
        action="store_true",
        help="advise fs.inotify.max_user_watches and max_user_instances from the use seen: a running "
        "exporter's current and peak use and limit failures, else this snapshot",
    )
    snap.add_argument(
        "--exporter",
        type=_http_url,
        default=f"http://{DEFAULT_LISTEN}/metrics",
        help="the exporter --advise asks first (default: %(default)s)",
    )
    snap.add_argument(
        "--headroom",
        type=_headroom,
        default=1.5,
        help="--advise: limits at this many times the peak (default: %(default)s)",
    )
    snap.add_argument("--log.level", dest="log_level", choices=("debug", "info", "warn", "error"), default="info")
    snap.set_defaults(ebpf=False)


def _add_trace(sub: Any) -> None:
    trace = sub.add_parser("trace", help="print every inotify call as it happens")
    _add_common(trace)
    trace.add_argument("--pid", type=_pid_list, action="append", default=[], help="only this pid/tid (repeatable)")
    trace.add_argument("--comm", type=_comm, action="append", default=[], help="only this comm (repeatable)")
    trace.add_argument("--uid", type=_uid, action="append", default=[], help="only this uid or euid (repeatable)")
    trace.add_argument("--format", choices=("json", "table"), default="json", help="(default: %(default)s)")
    trace.add_argument("--opens", action="store_true", help="also stream every file open (batched; drops are counted)")
    _add_accounting(trace)


def _add_top(sub: Any) -> None:
    top = sub.add_parser(
        "top",
        help="live view of who holds inotify instances and watches against each user's limits (keys: ? for help)",
    )
    _add_common(top)
    top.add_argument(
        "-d", "--interval", type=_seconds, default=2.0, help="seconds between refreshes (default: %(default)s)"
    )
    top.add_argument(
        "-n", "--count", type=_whole, default=0, help="refreshes to show, then exit (default: %(default)s, until q)"
    )
    top.add_argument(
        "-b",
        "--batch",
        action="store_true",
        help="plain tables, one per refresh, even on a terminal (the default when output is not a terminal)",
    )
    top.add_argument("--rows", type=_positive, default=20, help="processes in each plain table (default: %(default)s)")
    top.add_argument(
        "--source",
        choices=("auto", "bpf", "procfs"),
        default="auto",
        help="bpf: the live model (root); procfs: a snapshot each refresh (no BPF, no root); auto: bpf where it "
        "can be had, else procfs, saying why (default: %(default)s)",
    )
    _add_accounting(top)


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level={"warn": logging.WARNING}.get(level, getattr(logging, level.upper())),
        format="%(asctime)s level=%(levelname)s msg=%(message)s",
    )


class _Stop(Exception):
    pass


# Once the main loop runs, a signal only asks it to stop after the batch in
# hand, so every record already read reaches the sinks; before that (BPF
# compile, attach) it interrupts at once.
_loop = {"running": False, "stop": False}


def _on_signal(_sig: int, _frame: FrameType | None) -> None:
    if _loop["running"]:
        _loop["stop"] = True
        return
    raise _Stop


def _effective_caps() -> int | None:
    """The effective capability set (None where /proc/self/status cannot tell)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1], 16) for line in f if line.startswith("CapEff:"))
    except (OSError, StopIteration, ValueError):
        return None


CAP_SYS_ADMIN, CAP_PERFMON, CAP_BPF = 21, 38, 39


def _require_privileges() -> None:
    """No BPF program loads without CAP_BPF or CAP_SYS_ADMIN, whatever the uid
    (a container's root with its capabilities dropped): say so before BCC
    fails with its "failed to compile". A missing CAP_PERFMON is left to the
    attach, which names it (a permissive perf_event_paranoid may not need it)."""
    caps = _effective_caps()
    if caps is None:
        if os.geteuid() == 0:
            return  # cannot tell: let the kernel decide
        caps = 0
    loads = bool(caps >> CAP_SYS_ADMIN & 1 or caps >> CAP_BPF & 1)
    if loads and (os.geteuid() == 0 or caps >> CAP_SYS_ADMIN & 1 or caps >> CAP_PERFMON & 1):
        return
    if os.geteuid() == 0:
        raise InotraceError(
            "root without CAP_BPF or CAP_SYS_ADMIN cannot load BPF programs "
            "(a container or service with its capabilities dropped?)"
        )
    raise InotraceError("must run as root (or with CAP_BPF and CAP_PERFMON) to load BPF programs")


def build_options(args: argparse.Namespace) -> BuildOptions:
    """What this command needs of the BPF program (the program it runs and the one --ebpf prints)."""
    from .bpf_build import BuildOptions  # noqa: PLC0415
    from .probes import BACKENDS  # noqa: PLC0415

    opens = getattr(args, "opens", False)
    # trace's filters, for streamed opens in the kernel (inotify records all
    # reach the model; audit.Filter selects them in user space)
    pids, uids, comms = (getattr(args, a, None) or [] for a in ("pid", "uid", "comm")) if opens else ([], [], [])
    return BuildOptions(
        sysfs=args.sysfs,
        ringbuf_pages=args.ringbuf_pages,
        stream_opens=opens,
        filter_pids=tuple(sorted(set(pids))),
        filter_uids=tuple(sorted(set(uids))),
        filter_comms=tuple(sorted({os.fsencode(c) for c in comms})),
        # a record per call only for an audit stream: the model and the metrics need none
        stream_calls=args.command == "trace" or bool(getattr(args, "log_events", None)),
        # top shows who hit the watch limit, and needs no other add_watch record
        stream_limit_failures=args.command == "top",
        front_ends=BACKENDS if args.probes == "auto" else (args.probes,),
    )


def _run_tracer(
    args: argparse.Namespace,
    started: Callable[[Tracer], None],
    sink: Callable[[Record], None],
    turn: Callable[[], bool] | None = None,
) -> None:
    """Load, attach, self-test, then poll until a signal (or until `turn`,
    called after each poll, says stop). Always detaches."""
    from .bpf_program import Program  # noqa: PLC0415 - bcc only when BPF is needed
    from .origins import usermode_helpers  # noqa: PLC0415
    from .tracer import Tracer  # noqa: PLC0415

    _require_privileges()
    program = Program(build_options(args))
    tracer = None
    try:
        program.attach(args.probes)
        tracer = Tracer(
            program,
            procfs=args.procfs,
            reconcile_interval=args.reconcile_interval,
            sample_interval=args.sample_interval,
            max_instances=args.max_instances,
        )
        tracer.self_test()
        program.maps.mark_usermode_helpers(usermode_helpers(args.procfs))
        tracer.seed()
        started(tracer)
        _loop.update(running=True, stop=False)
        while not _loop["stop"]:
            for rec in tracer.poll(POLL_MS):
                sink(rec)
            if turn is not None and not turn():
                break
        for _ in range(FINAL_DRAINS):  # what the ring still holds (a busy host keeps filling it)
            tail = tracer.poll(0, final=True)
            for rec in tail:
                sink(rec)
            if not tail:
                break
        log.info("%s, detaching probes", "signal received" if _loop["stop"] else "done")
    except _Stop:
        log.info("signal received, detaching probes")
    finally:
        _loop["running"] = False
        if tracer is not None:
            d = tracer.drain
            log.info("took %d records from the kernel (%d opens, %d undecodable)", d.records, d.opens, d.invalid)
            tracer.close()
        program.close()


def _container_labels(args: argparse.Namespace) -> Callable[[int], tuple[str, str]] | None:
    if not args.labels_container:
        return None
    from .containers import ContainerResolver  # noqa: PLC0415

    resolver = ContainerResolver(procfs=args.procfs)

    def container_of(pid: int) -> tuple[str, str]:
        found = resolver.labels(pid)
        return found.container_id, found.pod_uid

    return container_of


def _stalled(running: list[Tracer], sample_interval: float) -> str | None:
    """/-/healthy: what is wrong with the main loop, if anything."""
    if not running:
        return None  # starting: alive, not ready
    idle = time.monotonic() - running[0].turned_at
    if idle <= max(HEALTH_INTERVALS * sample_interval, HEALTH_MIN_S):
        return None
    return f"main loop has not turned for {idle:.1f} s"


def _bpf_stats_switch(wanted: bool) -> StatsSwitch | None:
    if not wanted:
        return None
    from .bpf_stats import StatsSwitch  # noqa: PLC0415

    switch = StatsSwitch()
    log.info("BPF run-time statistics on while serving (--bpf-stats)")
    return switch


def cmd_serve(args: argparse.Namespace) -> int:
    from prometheus_client import CollectorRegistry  # noqa: PLC0415

    from . import sources  # noqa: PLC0415
    from .audit import Formatter  # noqa: PLC0415
    from .auditlog import AuditLog  # noqa: PLC0415
    from .btf import inotify_watch_cost  # noqa: PLC0415
    from .exporter import Exporter  # noqa: PLC0415
    from .metrics import InotraceCollector  # noqa: PLC0415
    from .watch_api import PATH as API_PATH  # noqa: PLC0415
    from .watch_api import WatchesAPI  # noqa: PLC0415

    registry = CollectorRegistry()
    running: list[Tracer] = []  # the tracer once the loop is about to run
    btf_path = os.path.join(args.sysfs, "kernel/btf/vmlinux")
    watch_cost = inotify_watch_cost(btf_path)
    api = WatchesAPI(args.procfs, watch_cost)
    # Bind first: a taken port should fail before seconds of BPF compiling.
    exporter = Exporter(
        args.listen,
        args.telemetry_path,
        registry,
        ready=lambda: bool(running),
        healthy=lambda: _stalled(running, args.sample_interval),
        max_requests=args.max_requests,
        web=_web_guard(args.web_config),
        routes={API_PATH: api.wsgi},
    )
    log_file = AuditLog(args.log_events) if args.log_events else None
    if log_file is not None:
        signal.signal(signal.SIGHUP, lambda _sig, _frame: log_file.request_reopen())  # logrotate
    container_of = _container_labels(args)
    fmt = Formatter(container_of=container_of)
    switch = _bpf_stats_switch(args.bpf_stats)

    def started(tracer: Tracer) -> None:
        registry.register(
            InotraceCollector(
                {
                    "inotify_calls": sources.calls(tracer, args.max_comms),
                    "opens": sources.opens(tracer, args.max_comms),
                    "accounting": sources.accounting(
                        tracer, args.max_comms, args.top_processes, container_of, watch_cost
                    ),
                    "exporter": sources.exporter(tracer),
                    "audit_log": sources.audit_log(log_file),
                    "http": sources.http(exporter.cap),
                    "bpf_programs": sources.bpf_cost(tracer, btf_path, args.procfs, switch is not None),
                }
            )
        )
        api.tracer = tracer
        exporter.start()
        running.append(tracer)
        host, port = str(exporter.address[0]), exporter.address[1]
        shown = f"[{host}]" if ":" in host else host
        log.info("serving on %s://%s:%s%s", exporter.scheme, shown, port, args.telemetry_path)

    def sink(rec: Record) -> None:
        if log_file is not None:
            log_file.write(fmt(rec))

    try:
        _run_tracer(args, started, sink)
    finally:
        exporter.stop()
        if switch is not None:
            switch.close()
        if log_file is not None:
            log_file.close()
    return 0


def cmd_trace(args: argparse.Namespace) -> int:
    from .audit import Filter, Formatter  # noqa: PLC0415

    keep = Filter(frozenset(args.pid), frozenset(os.fsencode(c) for c in args.comm), frozenset(args.uid))
    fmt = Formatter(table=args.format == "table", container_of=_container_labels(args))
    out = sys.stdout

    def started(_tracer: Tracer) -> None:
        log.info("tracing inotify calls and instance lifetimes, Ctrl-C to stop")
        header = fmt.header()
        if header:
            print(header, file=out, flush=True)

    def sink(rec: Record) -> None:
        if keep(rec):
            print(fmt(rec), file=out, flush=True)

    _run_tracer(args, started, sink)
    return 0


def cmd_top(args: argparse.Namespace) -> int:
    from . import top  # noqa: PLC0415
    from .btf import inotify_watch_cost  # noqa: PLC0415

    watch_cost = inotify_watch_cost(os.path.join(args.sysfs, "kernel/btf/vmlinux"))
    return top.main(args, _run_tracer, watch_cost)


def cmd_snapshot(args: argparse.Namespace) -> int:
    import json  # noqa: PLC0415

    from . import snapshot  # noqa: PLC0415
    from .btf import inotify_watch_cost  # noqa: PLC0415

    if not os.path.isdir(args.procfs):
        raise InotraceError(f"cannot read procfs at {args.procfs}")
    watch_cost = inotify_watch_cost(os.path.join(args.sysfs, "kernel/btf/vmlinux"))
    if args.advise:
        return _advise(args, watch_cost)
    instances = snapshot.take(args.procfs)
    rep = snapshot.report(
        instances, args.procfs, paths=args.paths, watch_cost=watch_cost, top_prefixes=args.top_prefixes
    )
    print(json.dumps(rep, indent=2) if args.json else snapshot.render_text(rep))
    return 0


def _advise(args: argparse.Namespace, watch_cost: int | None) -> int:
    import json  # noqa: PLC0415

    from . import advise, proc, snapshot  # noqa: PLC0415

    ev, why_not = _exporter_evidence(args.exporter)
    if ev is None:
        rep = snapshot.report(snapshot.take(args.procfs), args.procfs)
        ev = advise.from_snapshot(rep, "a procfs snapshot")
        ev.source_notes.append(f"no exporter at {args.exporter}: {why_not}")
    ev.watch_cost, ev.mem_total = watch_cost, proc.mem_total(args.procfs)
    adv = advise.advise(ev, args.headroom)
    print(json.dumps(adv, indent=2) if args.json else advise.render(adv))
    return 0


MAX_METRICS_BYTES = 64 << 20  # what --advise reads of an exporter's answer


def _web_guard(path: str) -> WebGuard | None:
    if not path:
        return None
    from .webguard import WebGuard  # noqa: PLC0415

    return WebGuard(path)


def _exporter_evidence(url: str) -> tuple[advise.Evidence | None, str]:
    """The running exporter's view, or None and why not (then the snapshot is used)."""
    import urllib.error  # noqa: PLC0415
    import urllib.request  # noqa: PLC0415

    from . import advise  # noqa: PLC0415

    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read(MAX_METRICS_BYTES).decode("utf-8", "replace")
        return advise.from_metrics(text, f"the exporter at {url}"), ""
    except (OSError, urllib.error.URLError) as e:
        return None, str(getattr(e, "reason", e))
    except ValueError as e:  # not Prometheus text, or not inotrace's
        return None, f"not inotrace's metrics ({e})"


def main(argv: Sequence[str] | None = None) -> int:
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        args = build_parser().parse_args(argv)
        _configure_logging(args.log_level)
        if args.ebpf:
            from .bpf_program import Program  # noqa: PLC0415

            print(Program.render(build_options(args)), end="")
            return 0
        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
        commands = {"serve": cmd_serve, "trace": cmd_trace, "snapshot": cmd_snapshot, "top": cmd_top}
        return commands[args.command](args)
    except InotraceError as e:
        print(f"inotrace: {e}", file=sys.stderr)
        return e.code
    except _Stop:
        return 0
    except BrokenPipeError:
        # `inotrace trace | head`: the reader left; not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as e:  # a bug: one line (the traceback at --log.level=debug), never a dump
        log.debug("internal error", exc_info=True)
        print(f"inotrace: internal error: {type(e).__name__}: {e}", file=sys.stderr)
        return 70  # EX_SOFTWARE
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def entry() -> NoReturn:
    sys.exit(main())
