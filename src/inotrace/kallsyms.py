"""Which kernel functions exist: /proc/kallsyms, read once per start.

BCC's BPF.ksymname() scans its whole symbol table on every call (80-160 ms
each here, about as much under the lane's emulation); a start asks for up to
a dozen names. One read of the file and a substring search per name cost
~0.08 s in all. The text is dropped once the hooks are in (it is 5 MB).
"""

from __future__ import annotations

KALLSYMS = "/proc/kallsyms"


class KernelSymbols:
    def __init__(self, path: str = KALLSYMS) -> None:
        self._path = path
        self._text: bytes | None = None

    def has(self, name: bytes) -> bool:
        """Whether the kernel (or a loaded module) has a symbol `name`.

        Lines are "address type name" or "address type name\\t[module]":
        a name is a whole last field, so it ends in a newline or a tab.
        """
        if self._text is None:
            try:
                with open(self._path, "rb") as f:
                    self._text = f.read()
            except OSError:
                self._text = b""
        needle = b" " + name
        return needle + b"\n" in self._text or needle + b"\t" in self._text

    def release(self) -> None:
        self._text = None
