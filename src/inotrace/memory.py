"""Give back what BCC's compile used and will not use again.

Compiling with BCC pulls in LLVM: ~30 MB of freed heap stays with the
process and ~85 MB of libLLVM/libclang text pages stay resident though
nothing executes them after the compile. malloc_trim returns the heap;
MADV_DONTNEED on those libraries' mappings drops their pages from our RSS.
Only mappings whose every resident page is clean and file-backed
(smaps: Anonymous 0, Private_Dirty 0) are touched: those re-fault unchanged
from the page cache if ever used again. A read-only mapping is not enough:
RELRO segments are r--p yet hold relocated private pages, and dropping them
brings back unrelocated bytes (a crash, seen here).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import mmap

from .libc import LIBC

log = logging.getLogger(__name__)

MADV_DONTNEED = 4
COMPILER_LIBS = ("libLLVM", "libclang")


def release_compiler_memory(maps_path: str = "/proc/self/smaps") -> int:
    """Return the number of bytes advised away (best effort, never raises)."""
    libc = LIBC
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    with contextlib.suppress(AttributeError):  # not glibc
        libc.malloc_trim(0)
    released = 0
    for start, end in _clean_library_mappings(maps_path):
        if libc.madvise(start, end - start, MADV_DONTNEED) == 0:
            released += end - start
    log.debug("released %d MiB of compiler mappings", released >> 20)
    return released


def _clean_library_mappings(smaps_path: str) -> list[tuple[int, int]]:
    try:
        with open(smaps_path) as f:
            text = f.read()
    except OSError:
        return []
    out: list[tuple[int, int]] = []
    current: tuple[int, int] | None = None
    dirty = False
    for line in text.splitlines():
        head = line.split(maxsplit=5)
        if head and "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
            if current and not dirty:
                out.append(current)
            current, dirty = None, False
            if len(head) == 6 and any(lib in head[5] for lib in COMPILER_LIBS) and "w" not in head[1]:
                start, end = (int(x, 16) for x in head[0].split("-"))
                if start % mmap.PAGESIZE == 0 and end > start:
                    current = (start, end)
        elif current and head and head[0] in ("Anonymous:", "Private_Dirty:") and int(head[1]) != 0:
            dirty = True
    if current and not dirty:
        out.append(current)
    return out
