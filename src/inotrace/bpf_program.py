"""Compile, attach and read the BPF program. The only module that imports bcc.

Backends are chosen per probe by *attempting* the attach: feature probes lie
(BCC's support_kfunc() says yes on kernels where loading fentry gets EPERM).
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from . import libbpf, tracefs
from .bpf_build import Build, BuildOptions
from .errors import InotraceError
from .memory import release_compiler_memory
from .records import LOST_MAX, CountKeyC, OpenKeyC
from .ringbuf import RingReader

log = logging.getLogger(__name__)

BACKENDS = ("tracepoint", "kprobe")


@dataclass(frozen=True)
class Hook:
    """One attachment: kind tracepoint|kprobe|kretprobe|raw_tracepoint."""

    kind: str
    target: str  # "category:event", a kernel function ("sys:" = the syscall's function), a raw tracepoint
    fn: str  # the BPF function
    layout: str = ""  # "enter"/"exit": check the syscall tracepoint record layout first
    optional: bool = False  # absent on this kernel: skip it (the probe needs one hook)
    stream: bool = False  # only when opens are streamed (trace --opens)


def _syscall_hooks(name: str) -> dict[str, tuple[Hook, ...]]:
    return {
        "tracepoint": (
            Hook("tracepoint", f"syscalls:sys_enter_{name}", f"tp_enter_{name}", layout="enter"),
            Hook("tracepoint", f"syscalls:sys_exit_{name}", f"tp_exit_{name}", layout="exit"),
        ),
        "kprobe": (
            Hook("kprobe", f"sys:{name}", f"kp_enter_{name}"),
            Hook("kretprobe", f"sys:{name}", f"kr_exit_{name}"),
        ),
    }


def _open_tracepoints(names: tuple[str, ...]) -> tuple[Hook, ...]:
    hooks: list[Hook] = []
    for n in names:
        hooks.append(Hook("tracepoint", f"syscalls:sys_exit_{n}", f"tp_exit_{n}", layout="exit", optional=True))
        hooks.append(
            Hook("tracepoint", f"syscalls:sys_enter_{n}", f"tp_enter_{n}", layout="enter", optional=True, stream=True)
        )
    return tuple(hooks)


@dataclass(frozen=True)
class ProbeSpec:
    name: str
    required: bool
    backends: dict[str, tuple[Hook, ...]]


# Probes, in attach order; `required` ones must attach for the tracer to run.
# inotify_init does not exist on every architecture (arm64 has only init1).
# Opens are counted at syscall exit; the entry hooks (path, flags) are only
# attached when opens are streamed. The kprobe backend counts opens at
# do_sys_openat2, which open/openat/openat2/creat all reach (>= 5.6): a
# kprobe on do_sys_open attaches on 6.1 and never fires (it is inlined).
PROBES: tuple[ProbeSpec, ...] = (
    ProbeSpec("inotify_init", False, _syscall_hooks("inotify_init")),
    ProbeSpec("inotify_init1", True, _syscall_hooks("inotify_init1")),
    ProbeSpec("inotify_add_watch", True, _syscall_hooks("inotify_add_watch")),
    ProbeSpec("inotify_rm_watch", True, _syscall_hooks("inotify_rm_watch")),
    ProbeSpec(
        "open",
        False,
        {
            "tracepoint": _open_tracepoints(("open", "openat", "openat2", "creat")),
            "kprobe": (
                Hook("kprobe", "do_sys_openat2", "kp_enter_do_sys_openat2", stream=True),
                Hook("kretprobe", "do_sys_openat2", "kr_exit_do_sys_openat2"),
            ),
        },
    ),
    ProbeSpec(
        "open_by_handle_at",
        False,
        {
            "tracepoint": _open_tracepoints(("open_by_handle_at",)),
            "kprobe": (
                Hook("kprobe", "sys:open_by_handle_at", "kp_enter_open_by_handle_at", stream=True),
                Hook("kretprobe", "sys:open_by_handle_at", "kr_exit_open_by_handle_at"),
            ),
        },
    ),
    # io_uring opens bypass the open syscalls; only io_uring's tracepoints see them.
    ProbeSpec(
        "io_uring",
        False,
        {
            "tracepoint": (
                # io_uring_submit_sqe before 6.2 (same req/opcode fields)
                Hook("tracepoint", "io_uring:io_uring_submit_req|io_uring_submit_sqe", "tp_iou_submit_req"),
                Hook("tracepoint", "io_uring:io_uring_queue_async_work", "tp_iou_queue_async_work"),
                Hook("tracepoint", "io_uring:io_uring_complete", "tp_iou_complete"),
            )
        },
    ),
    # new thread groups: marks usermode helpers (origin) exactly at fork
    ProbeSpec("task_newtask", False, {"raw_tracepoint": (Hook("raw_tracepoint", "task_newtask", "raw_task_newtask"),)}),
)

BCC_PACKAGES = "python3-bpfcc (Debian/Ubuntu), python3-bcc (Fedora/RHEL) or python-bcc (Arch)"


def _import_bcc() -> Any:
    try:
        import bcc  # noqa: PLC0415 - lazily, so --help and snapshot work without it
    except ImportError as e:
        raise InotraceError(f"BCC's Python module is not installed: install {BCC_PACKAGES}") from e
    if not hasattr(bcc, "BPF"):
        # PyPI's package named `bcc` is an unrelated library.
        raise InotraceError(f"the 'bcc' module found is not BCC (PyPI's 'bcc' is unrelated): install {BCC_PACKAGES}")
    return bcc


@contextlib.contextmanager
def captured_stderr() -> Iterator[list[str]]:
    """Hold fd 2 while libbcc/clang write to it; yield the captured lines.

    libbcc prints its own diagnostics on failure; the user gets one clear
    line from us instead, and the detail goes to the debug log.
    """
    out: list[str] = []
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            yield out
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            out.extend(line for line in tmp.read().decode(errors="replace").splitlines() if line.strip())
            for line in out:
                log.debug("bcc: %s", line)


@dataclass
class ProbeStatus:
    probe: str
    backend: str | None = None  # the one attached, if any
    tried: dict[str, str | None] = field(default_factory=dict)  # backend -> error (None = ok)
    absent: bool = False  # no backend has anything to attach to on this kernel


def kernel_headers_dir() -> str:
    return f"/lib/modules/{platform.release()}/build"


class Program:
    """The compiled inotrace BPF object and its attachments."""

    def __init__(self, opts: BuildOptions | None = None, extra_cflags: tuple[str, ...] = ()) -> None:
        self._bcc = _import_bcc()
        build = self.build = Build.resolve(self._bcc, opts or BuildOptions())
        self.cflags = build.cflags(extra_cflags)
        if not os.path.isdir(kernel_headers_dir()):
            raise InotraceError(
                f"kernel headers not found at {kernel_headers_dir()}: install linux-headers-{platform.release()} "
                "or run 'make setup' (it links generic headers where the distro has none for this kernel)"
            )
        with captured_stderr() as err:
            try:
                self.bpf = self._bcc.BPF(text=build.source().encode(), cflags=self.cflags)
            except Exception as e:
                detail = next((ln for ln in err if "error" in ln), str(e))
                raise InotraceError(f"BPF program failed to compile: {detail.strip()}") from e
        release_compiler_memory()
        own = self.bpf[b"own_tgid"]
        own[own.Key(0)] = own.Leaf(os.getpid())  # the self-test's calls are always recorded
        self.probes: list[ProbeStatus] = []
        self._ring: RingReader | None = None
        self._iter_link: int | None = None
        self._sweep: dict[int, int] = {}  # group -> gen: not live at the last sweep

    @staticmethod
    def render(opts: BuildOptions) -> str:
        """The program exactly as it would load, as one file (bcc's --ebpf)."""
        return Build.resolve(_import_bcc(), opts).text()

    # -- attaching -------------------------------------------------------

    def _function(self, target: str) -> bytes:
        if target.startswith("sys:"):
            return self.build.syscall_prefix + target[4:].encode()
        return target.encode()

    def _tracepoint(self, target: str) -> str:
        """ "category:a|b" -> the first of a, b this kernel has (tracepoints get renamed)."""
        category, events = target.split(":")
        names = events.split("|")
        for event in names:
            if os.path.isdir(os.path.join(self.build.tracefs, "events", category, event)):
                return f"{category}:{event}"
        return f"{category}:{names[0]}"

    def _check(self, hook: Hook) -> None:
        """LookupError if the hook has nothing to attach to here; RuntimeError if unusable."""
        if hook.kind == "tracepoint":
            category, event = self._tracepoint(hook.target).split(":")
            fields = tracefs.format_fields(self.build.tracefs, category, event)
            if fields is None:
                raise LookupError(f"no tracepoint {hook.target}")
            if category == "io_uring" and not self.build.has_io_uring:
                raise LookupError(f"tracepoint {hook.target} has an unexpected layout")
            if hook.layout:
                bad = tracefs.check_syscall_layout(fields, enter=hook.layout == "enter")
                if bad:
                    raise RuntimeError(f"{hook.target} has an unexpected layout: {bad}")
        elif hook.kind in ("kprobe", "kretprobe"):
            fn = self._function(hook.target)
            if self._bcc.BPF.ksymname(fn) == -1:
                raise LookupError(f"no kernel function {fn.decode()}")
            if not os.path.exists(os.path.join(self.build.tracefs, "kprobe_events")):
                raise RuntimeError(
                    f"cannot attach kprobe to {fn.decode()}: this kernel has no kprobe support (CONFIG_KPROBES off)"
                )
        elif not os.path.isdir(os.path.join(self.build.tracefs, "events", "task", hook.target)):
            raise LookupError(f"no raw tracepoint {hook.target}")

    def _attach_hook(self, hook: Hook) -> Callable[[], None]:
        """Attach; return the detach."""
        fn = hook.fn.encode()
        if hook.kind == "tracepoint":
            tp = self._tracepoint(hook.target).encode()
            self.bpf.attach_tracepoint(tp=tp, fn_name=fn)
            return lambda: self.bpf.detach_tracepoint(tp=tp)
        if hook.kind == "raw_tracepoint":
            raw = hook.target.encode()
            self.bpf.attach_raw_tracepoint(tp=raw, fn_name=fn)
            return lambda: self.bpf.detach_raw_tracepoint(tp=raw)
        event = self._function(hook.target)
        if hook.kind == "kprobe":
            self.bpf.attach_kprobe(event=event, fn_name=fn)
            return lambda: self.bpf.detach_kprobe(event=event)
        self.bpf.attach_kretprobe(event=event, fn_name=fn)
        return lambda: self.bpf.detach_kretprobe(event=event)

    def _hooks(self, spec: ProbeSpec, backend: str) -> list[Hook]:
        return [h for h in spec.backends[backend] if self.build.opts.stream_opens or not h.stream]

    def _attach_backend(self, spec: ProbeSpec, backend: str) -> None:
        """Every hook of `backend`, or none (LookupError / the attach error)."""
        hooks = []
        for hook in self._hooks(spec, backend):
            try:
                self._check(hook)
            except LookupError:
                if hook.optional:
                    continue
                raise
            hooks.append(hook)
        if not hooks:
            raise LookupError(f"nothing to attach {spec.name} to with {backend}")
        undo: list[Callable[[], None]] = []
        try:
            for hook in hooks:
                undo.append(self._attach_hook(hook))
        except Exception:
            for detach in reversed(undo):
                with contextlib.suppress(Exception):
                    detach()
            raise

    def attach(self, mode: str) -> list[ProbeStatus]:
        """Attach every probe with `mode` (auto tries tracepoint, then kprobe).

        Probes with a single way in (io_uring's tracepoints, the raw
        tracepoint that marks usermode helpers) use it whatever the mode.
        """
        order = BACKENDS if mode == "auto" else (mode,)
        optional_missing: list[str] = []
        for spec in PROBES:
            backends = [b for b in order if b in spec.backends] or list(spec.backends)
            status = ProbeStatus(spec.name)
            missing = 0
            for backend in backends:
                with captured_stderr():
                    try:
                        self._attach_backend(spec, backend)
                    except LookupError as e:
                        missing += 1
                        status.tried[backend] = str(e)
                        continue
                    except Exception as e:
                        status.tried[backend] = str(e)
                        continue
                status.tried[backend] = None
                status.backend = backend
                break
            status.absent = missing == len(backends)
            self.probes.append(status)
            reasons = "; ".join(f"{b}: {err}" for b, err in status.tried.items())
            if status.backend:
                log.info("probe %s attached (%s)", spec.name, status.backend)
            elif not spec.required:
                optional_missing.append(f"probe {spec.name} not attached ({reasons})")
            else:
                raise InotraceError(f"cannot attach probe {spec.name} ({reasons})")
        # said only once the required ones are in: a failure stays one line
        for line in optional_missing:
            log.info("%s", line)
        return self.probes

    def load_only(self, backend: str) -> list[str]:
        """Load (verify) every program of `backend` without attaching; return names."""
        kinds = {
            "tracepoint": "TRACEPOINT",
            "kprobe": "KPROBE",
            "kretprobe": "KPROBE",
            "raw_tracepoint": "RAW_TRACEPOINT",
        }
        names = []
        for spec in PROBES:
            for hook in self._hooks(spec, backend) if backend in spec.backends else ():
                self.bpf.load_func(hook.fn.encode(), getattr(self._bcc.BPF, kinds[hook.kind]))
                names.append(hook.fn)
        return names

    # -- reading -----------------------------------------------------------

    def open_ring(self) -> None:
        table = self.bpf[b"events"]
        self._ring = RingReader(table.map_fd, int(table.max_entries))

    def poll(self, timeout_ms: int, limit: int) -> list[bytes]:
        """Up to `limit` records: those waiting, else what comes within timeout_ms.

        A drain takes at most `limit`: a producer faster than us must not
        keep one drain going for ever while the main loop waits to turn.
        """
        assert self._ring is not None, "open_ring() first"
        got = self._ring.take(limit)
        if not got and timeout_ms:
            self._ring.wait(timeout_ms)
            got = self._ring.take(limit)
        return got

    def read_counts(self) -> list[tuple[CountKeyC, int]]:
        table = self.bpf[b"counts"]
        out = []
        for k, v in table.items():
            key = CountKeyC.from_buffer_copy(bytes(k))
            out.append((key, int(v.value)))
        return out

    def read_open_counts(self) -> list[tuple[OpenKeyC, int]]:
        return [(OpenKeyC.from_buffer_copy(bytes(k)), int(v.value)) for k, v in self.bpf[b"open_counts"].items()]

    def mark_usermode_helpers(self, tgids: set[int]) -> None:
        """Seed the usermode-helper map with helpers that predate the probes."""
        table = self.bpf[b"umh"]
        words: dict[int, int] = {}
        for tgid in tgids:
            words[tgid // 64] = words.get(tgid // 64, 0) | 1 << (tgid % 64)
        for word, bits in words.items():
            table[table.Key(word)] = table.Leaf(table[table.Key(word)].value | bits)

    def read_lost(self, reasons: Iterable[int] = range(LOST_MAX)) -> list[int]:
        table = self.bpf[b"lost"]
        return [int(table.sum(table.Key(i)).value) for i in reasons]

    def forget_group(self, group: int, gen: int | None) -> None:
        """Delete a destroyed instance's state, unless a new lifetime replaced it."""
        table = self.bpf[b"gstate"]
        key = table.Key(group)
        try:
            if gen is None or table[key].gen == gen:
                del table[key]
        except KeyError:
            pass

    def sweep_groups(self, live: Callable[[int], bool]) -> None:
        """Delete the state of instances `live` does not know: those created
        and destroyed between two samples. Two sweeps apart, with the same gen,
        so an instance born since the last sample is never touched."""
        table = self.bpf[b"gstate"]
        now = {int(k.value): int(v.gen) for k, v in table.items() if not live(int(k.value))}
        for group, gen in now.items():
            if self._sweep.get(group) == gen:
                self.forget_group(group, gen)
        self._sweep = {g: gen for g, gen in now.items() if self._sweep.get(g) != gen}

    def read_instances(self) -> bytes:
        """Run the task_file iterator once: every inotify file in every fd table.

        Needs inotify's f_op, which the BPF side learns from the first
        inotify_init it sees (the start-up self-test makes one).
        """
        if self._iter_link is None:
            fn = self.bpf.load_func(b"bpf_iter__task_file", self._bcc.BPF.TRACING)
            self._iter_link = libbpf.iter_link(fn.fd)
        fd = libbpf.iter_open(self._iter_link)
        chunks = []
        try:
            while chunk := os.read(fd, 1 << 16):
                chunks.append(chunk)
        finally:
            os.close(fd)
        return b"".join(chunks)

    def map_fill(self, name: str) -> tuple[int, int]:
        """(entries, capacity) of a BPF map."""
        table = self.bpf[name.encode()]
        return len(table), int(table.max_entries)

    def close(self) -> None:
        if self._ring is not None:
            self._ring.close()
            self._ring = None
        if self._iter_link is not None:
            os.close(self._iter_link)
            self._iter_link = None
        with captured_stderr():
            self.bpf.cleanup()
