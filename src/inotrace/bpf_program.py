"""Compile, attach and read the BPF program. The only module that imports bcc.

Backends are chosen per probe by *attempting* the attach (kernel-notes §1:
feature probes lie here, e.g. support_kfunc() says yes and loading fails).
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.resources
import logging
import os
import platform
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from . import libbpf, tracefs
from .btf import offset_cflags, resolve_offsets
from .errors import InotraceError
from .memory import release_compiler_memory
from .records import LOST_MAX, CountKeyC

log = logging.getLogger(__name__)

BACKENDS = ("tracepoint", "kprobe")

# Probes, in attach order; `required` ones must attach for the tracer to run.
# inotify_init does not exist on every architecture (arm64 has only init1).
PROBES: tuple[tuple[str, bool], ...] = (
    ("inotify_init", False),
    ("inotify_init1", True),
    ("inotify_add_watch", True),
    ("inotify_rm_watch", True),
)

BCC_PACKAGES = "python3-bpfcc (Debian/Ubuntu), python3-bcc (Fedora/RHEL) or python-bcc (Arch)"

# x86-64 and arm64 syscall function prefixes; with them the probe sees a
# pt_regs wrapper (since 4.17), without them the arguments directly.
SYSCALL_PREFIXES = (b"__x64_sys_", b"__arm64_sys_", b"__s390x_sys_", b"sys_")


def _import_bcc() -> Any:
    try:
        import bcc  # noqa: PLC0415 - lazily, so --help and snapshot work without it
    except ImportError as e:
        raise InotraceError(f"BCC's Python module is not installed: install {BCC_PACKAGES}") from e
    if not hasattr(bcc, "BPF"):
        # PyPI's package named `bcc` is an unrelated library.
        raise InotraceError(f"the 'bcc' module found is not BCC (PyPI's 'bcc' is unrelated): install {BCC_PACKAGES}")
    return bcc


def source_text() -> tuple[str, str]:
    """(C source, include dir) of the BPF program shipped inside the package."""
    bpf_dir = importlib.resources.files("inotrace") / "bpf"
    src = (bpf_dir / "inotrace.bpf.c").read_text()
    return src, str(bpf_dir)


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

    def __init__(
        self,
        sysfs: str = "/sys",
        ringbuf_pages: int = 256,
        extra_cflags: list[str] | None = None,
    ) -> None:
        self._bcc = _import_bcc()
        offsets = resolve_offsets(os.path.join(sysfs, "kernel/btf/vmlinux"))
        self.tracefs = tracefs.ensure_mounted(sysfs)
        self.syscall_prefix = self._syscall_prefix()
        wrapper = 0 if self.syscall_prefix == b"sys_" else 1
        self.cflags = [
            *offset_cflags(offsets),
            f"-DSYSCALL_WRAPPER={wrapper}",
            f"-DRINGBUF_PAGES={ringbuf_pages}",
            *(extra_cflags or []),
        ]
        src, include = source_text()
        self.cflags.append(f"-I{include}")
        if not os.path.isdir(kernel_headers_dir()):
            raise InotraceError(
                f"kernel headers not found at {kernel_headers_dir()}: install linux-headers-{platform.release()} "
                "or run 'make setup' (it links generic headers where the distro has none for this kernel)"
            )
        with captured_stderr() as err:
            try:
                self.bpf = self._bcc.BPF(text=src.encode(), cflags=self.cflags)
            except Exception as e:
                detail = next((ln for ln in err if "error" in ln), str(e))
                raise InotraceError(f"BPF program failed to compile: {detail.strip()}") from e
        release_compiler_memory()
        self.probes: list[ProbeStatus] = []
        self._ring_cb: Any = None
        self._iter_link: int | None = None

    @staticmethod
    def render(sysfs: str = "/sys", ringbuf_pages: int = 256) -> str:
        """The final program text with every -D spelled out (bcc's --ebpf)."""
        offsets = resolve_offsets(os.path.join(sysfs, "kernel/btf/vmlinux"))
        defines = [f"#define {name} {value}" for name, value in sorted(offsets.items())]
        defines.append(f"#define RINGBUF_PAGES {ringbuf_pages}")
        src, _ = source_text()
        return "\n".join(defines) + "\n" + src

    def _syscall_prefix(self) -> bytes:
        for prefix in SYSCALL_PREFIXES:
            if self._bcc.BPF.ksymname(prefix + b"inotify_init1") != -1:
                return prefix
        return SYSCALL_PREFIXES[0]

    # -- attaching -------------------------------------------------------

    def _attach_tracepoint(self, probe: str) -> None:
        for phase in ("enter", "exit"):
            fields = tracefs.format_fields(self.tracefs, "syscalls", f"sys_{phase}_{probe}")
            if fields is None:
                raise LookupError(f"no tracepoint syscalls:sys_{phase}_{probe}")
            bad = tracefs.check_syscall_layout(fields, enter=phase == "enter")
            if bad:
                raise RuntimeError(f"syscalls:sys_{phase}_{probe} has an unexpected layout: {bad}")
        attached = []
        try:
            for phase in ("enter", "exit"):
                tp = f"syscalls:sys_{phase}_{probe}"
                self.bpf.attach_tracepoint(tp=tp.encode(), fn_name=f"tp_{phase}_{probe}".encode())
                attached.append(tp)
        except Exception:
            for tp in attached:
                self.bpf.detach_tracepoint(tp=tp.encode())
            raise

    def _attach_kprobe(self, probe: str) -> None:
        fn = self.syscall_prefix + probe.encode()
        if self._bcc.BPF.ksymname(fn) == -1:
            raise LookupError(f"no kernel function {fn.decode()}")
        if not os.path.exists(os.path.join(self.tracefs, "kprobe_events")):
            raise RuntimeError(
                f"cannot attach kprobe to {fn.decode()}: this kernel has no kprobe support (CONFIG_KPROBES off)"
            )
        self.bpf.attach_kprobe(event=fn, fn_name=f"kp_enter_{probe}".encode())
        try:
            self.bpf.attach_kretprobe(event=fn, fn_name=f"kr_exit_{probe}".encode())
        except Exception:
            self.bpf.detach_kprobe(event=fn)
            raise

    def attach(self, mode: str) -> list[ProbeStatus]:
        """Attach every probe with `mode` (auto tries tracepoint, then kprobe)."""
        backends = BACKENDS if mode == "auto" else (mode,)
        attachers: dict[str, Callable[[str], None]] = {
            "tracepoint": self._attach_tracepoint,
            "kprobe": self._attach_kprobe,
        }
        for probe, required in PROBES:
            status = ProbeStatus(probe)
            missing = 0
            for backend in backends:
                with captured_stderr():
                    try:
                        attachers[backend](probe)
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
            if status.backend:
                log.info("probe %s attached (%s)", probe, status.backend)
            elif status.absent and not required:
                log.info("probe %s: not on this kernel, skipped", probe)
            else:
                reasons = "; ".join(f"{b}: {err}" for b, err in status.tried.items())
                raise InotraceError(f"cannot attach probe {probe} ({reasons})")
        return self.probes

    def load_only(self, backend: str) -> list[str]:
        """Load (verify) every program of `backend` without attaching; return names."""
        kinds = {
            "tracepoint": [("tp_enter_", "TRACEPOINT"), ("tp_exit_", "TRACEPOINT")],
            "kprobe": [("kp_enter_", "KPROBE"), ("kr_exit_", "KPROBE")],
        }[backend]
        names = []
        for probe, _ in PROBES:
            for prefix, kind in kinds:
                name = prefix + probe
                self.bpf.load_func(name.encode(), getattr(self._bcc.BPF, kind))
                names.append(name)
        return names

    # -- reading -----------------------------------------------------------

    def open_ring(self, on_record: Callable[[bytes], None]) -> None:
        def cb(_ctx: Any, data: Any, size: int) -> int:
            on_record(ctypes.string_at(data, size))
            return 0

        self._ring_cb = cb
        self.bpf[b"events"].open_ring_buffer(cb)

    def poll(self, timeout_ms: int) -> None:
        """Wait up to timeout_ms for a wake-up, then drain whatever is there.

        Records are submitted mostly without a wake-up (batching), so a poll
        that timed out must still consume.
        """
        self.bpf.ring_buffer_poll(timeout_ms)
        self.bpf.ring_buffer_consume()

    def read_counts(self) -> list[tuple[CountKeyC, int]]:
        table = self.bpf[b"counts"]
        out = []
        for k, v in table.items():
            key = CountKeyC.from_buffer_copy(bytes(k))
            out.append((key, int(v.value)))
        return out

    def read_lost(self) -> list[int]:
        table = self.bpf[b"lost"]
        return [int(table.sum(table.Key(i)).value) for i in range(LOST_MAX)]

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

    def map_capacity(self, name: str) -> int:
        return int(self.bpf[name.encode()].max_entries)

    def close(self) -> None:
        if self._iter_link is not None:
            os.close(self._iter_link)
            self._iter_link = None
        with captured_stderr():
            self.bpf.cleanup()
