"""The inotrace BPF program: compile it, then hand it to the attacher and the
map reader. The only module that imports bcc."""

from __future__ import annotations

import os
import platform
from typing import Any

from .bpf_attach import Attacher, captured_stderr
from .bpf_build import Build, BuildOptions
from .bpf_maps import ITERATOR, Maps
from .errors import InotraceError
from .kallsyms import KernelSymbols
from .memory import release_compiler_memory
from .probes import ProbeStatus

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


def _without_autoload(bcc: Any) -> Any:
    """BCC's BPF, minus its autoload: at construction BCC attaches every
    function named kfunc__*, kprobe__*... itself, and one that cannot attach
    (fentry where the kernel has no trampolines) would fail the whole
    program. The Attacher attaches each hook, per probe, with fallbacks."""

    class BPF(bcc.BPF):  # type: ignore[misc]
        def _trace_autoload(self) -> None:
            pass

    return BPF


def kernel_headers_dir() -> str:
    return f"/lib/modules/{platform.release()}/build"


class Program:
    """The compiled object: `attacher` puts its hooks in, `maps` reads it."""

    def __init__(self, opts: BuildOptions | None = None, extra_cflags: tuple[str, ...] = ()) -> None:
        self._bcc = _import_bcc()
        self._symbols = KernelSymbols()
        build = self.build = Build.resolve(self._symbols, opts or BuildOptions())
        self.cflags = build.cflags(extra_cflags)
        if not os.path.isdir(kernel_headers_dir()):
            raise InotraceError(
                f"kernel headers not found at {kernel_headers_dir()}: install linux-headers-{platform.release()} "
                "or run 'make setup' (it links generic headers where the distro has none for this kernel)"
            )
        with captured_stderr() as err:
            try:
                self.bpf = _without_autoload(self._bcc)(text=build.source().encode(), cflags=self.cflags)
            except Exception as e:
                detail = next((ln for ln in err if "error" in ln), str(e))
                raise InotraceError(f"BPF program failed to compile: {detail.strip()}") from e
        release_compiler_memory()
        own = self.bpf[b"own_tgid"]
        own[own.Key(0)] = own.Leaf(os.getpid())  # the self-test's calls are always recorded
        self.attacher = Attacher(self._bcc, self.bpf, build, self._symbols)
        self.maps = Maps(self._bcc, self.bpf)
        o = build.opts
        self.maps.set_trace_filter(o.filter_pids, o.filter_uids, o.filter_comms)  # before any hook runs

    @staticmethod
    def compile_text(text: str) -> Any:
        """A BPF object from C text, compiled as Program compiles (nothing attached)."""
        return _without_autoload(_import_bcc())(text=text.encode())

    @staticmethod
    def render(opts: BuildOptions) -> str:
        """The program exactly as it would load, as one file (bcc's --ebpf)."""
        return Build.resolve(KernelSymbols(), opts).text()

    def attach(self, mode: str) -> list[ProbeStatus]:
        try:
            return self.attacher.attach(mode)
        finally:
            self._symbols.release()

    @property
    def probes(self) -> list[ProbeStatus]:
        return self.attacher.probes

    def program_fds(self) -> dict[str, int]:
        """Every program inotrace runs, by name: the attached hooks and, once
        loaded, the iterator (BCC keeps each loaded function's fd)."""
        names = [n.encode() for n in self.attacher.attached] + [ITERATOR]
        return {n.decode(): int(self.bpf.funcs[n].fd) for n in names if n in self.bpf.funcs}

    def close(self) -> None:
        self.maps.close()
        with captured_stderr():
            self.bpf.cleanup()
