"""Attach the compiled program's hooks, probe by probe.

Backends are chosen per probe by *attempting* the attach: feature probes lie
(BCC's support_kfunc() says yes on kernels where loading fentry gets EPERM).
Given BCC's module and BPF object by Program: bcc is imported there only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

from . import tracefs
from .bpf_build import Build
from .errors import InotraceError
from .kallsyms import KernelSymbols
from .probes import BACKENDS, PROBES, Hook, ProbeSpec, ProbeStatus

log = logging.getLogger(__name__)


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


class KernelRefused(RuntimeError):
    """The kernel refuses a whole backend (not one hook): the other probes need not try it."""


class NoSuchBackend(LookupError):
    """This kernel has no such backend at all (no kprobe support): like a missing target."""


class Attacher:
    """The hooks of one compiled program: attach them, or only load (verify) them."""

    def __init__(self, bcc: Any, bpf: Any, build: Build, symbols: KernelSymbols) -> None:
        self._bcc = bcc
        self.symbols = symbols
        self.bpf = bpf
        self.build = build
        self.probes: list[ProbeStatus] = []
        self.attached: list[str] = []  # the functions of every hook attached
        self._refused: dict[str, str] = {}  # backend -> why the kernel refuses all of it

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
        if hook.kernel_opens and not self.build.has_kernel_opens:
            raise LookupError(f"{hook.target}: this kernel has no bpf_task_pt_regs (< 5.15) or no do_filp_open types")
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
            if not self.symbols.has(fn):
                raise LookupError(f"no kernel function {fn.decode()}")
            if not os.path.exists(os.path.join(self.build.tracefs, "kprobe_events")):
                raise NoSuchBackend(
                    f"cannot attach kprobe to {fn.decode()}: this kernel has no kprobe support (CONFIG_KPROBES off)"
                )
        elif hook.kind in ("fentry", "fexit"):
            if not self.symbols.has(hook.target.encode()):
                raise LookupError(f"no kernel function {hook.target}")
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
        if hook.kind in ("fentry", "fexit"):
            return self._attach_trampoline(hook, fn)
        event = self._function(hook.target)
        if hook.kind == "kprobe":
            self.bpf.attach_kprobe(event=event, fn_name=fn)
            return lambda: self.bpf.detach_kprobe(event=event)
        self.bpf.attach_kretprobe(event=event, fn_name=fn)
        return lambda: self.bpf.detach_kretprobe(event=event)

    def _attach_trampoline(self, hook: Hook, fn: bytes) -> Callable[[], None]:
        entry = hook.kind == "fentry"
        try:
            if entry:
                self.bpf.attach_kfunc(fn_name=fn)
            else:
                self.bpf.attach_kretfunc(fn_name=fn)
        except Exception as e:
            # never trust BCC's support_kfunc(): it says yes where loading fails (EPERM without ftrace)
            if "super-user" in str(e) and os.geteuid() == 0:  # BCC's words for EPERM, which root gets too
                raise KernelRefused(
                    f"cannot attach {hook.kind} to {hook.target}: the kernel refused it (EPERM as root: "
                    "no BPF trampolines here, e.g. a kernel without ftrace)"
                ) from e
            raise RuntimeError(f"cannot attach {hook.kind} to {hook.target}: {e}") from e
        if entry:
            return lambda: self.bpf.detach_kfunc(fn_name=fn)
        return lambda: self.bpf.detach_kretfunc(fn_name=fn)

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
        self.attached += [h.fn for h in hooks]

    def attach(self, mode: str) -> list[ProbeStatus]:
        """Attach every probe with `mode` (auto tries fentry, then tracepoint, then kprobe).

        Probes with a single way in (io_uring's tracepoints, the raw
        tracepoint that marks usermode helpers) use it whatever the mode; one
        with several ways in, none of them the mode (kernel opens under
        --probes tracepoint), is not attached.
        """
        order = BACKENDS if mode == "auto" else (mode,)
        optional_missing: list[str] = []
        for spec in PROBES:
            backends = [b for b in order if b in spec.backends]
            if not backends and len(spec.backends) == 1:
                backends = list(spec.backends)
            status = ProbeStatus(spec.name)
            missing = 0
            for backend in backends:
                # a backend the kernel refuses outright, or lacks, counts as
                # missing: a probe no backend could ever attach here is absent
                if backend in self._refused:
                    missing += 1
                    status.tried[backend] = self._refused[backend]
                    continue
                with captured_stderr():
                    try:
                        self._attach_backend(spec, backend)
                    except LookupError as e:
                        missing += 1
                        status.tried[backend] = str(e)
                        continue
                    except KernelRefused as e:
                        missing += 1
                        status.tried[backend] = self._refused[backend] = str(e)
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
            "fentry": "TRACING",
            "fexit": "TRACING",
        }
        names = []
        for spec in PROBES:
            for hook in self._hooks(spec, backend) if backend in spec.backends else ():
                self.bpf.load_func(hook.fn.encode(), getattr(self._bcc.BPF, kinds[hook.kind]))
                names.append(hook.fn)
        return names
