"""libbpf.so.1 through ctypes: BTF parsing, BPF iterators, program info and
run-time statistics.

libbcc exports neither; libbpf1 is a dependency of Debian's BCC packages.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os

from .errors import InotraceError

BPF_TRACE_ITER = 28  # enum bpf_attach_type
BPF_STATS_RUN_TIME = 0  # enum bpf_stats_type
# Larger than any kernel's struct bpf_prog_info: the kernel accepts a longer
# buffer whose tail is zero, and says in info_len how much it filled.
PROG_INFO_BYTES = 1024


@functools.cache
def load() -> ctypes.CDLL:
    name = ctypes.util.find_library("bpf") or "libbpf.so.1"
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError as e:
        raise InotraceError(f"cannot load libbpf ({name}): {e}; install the libbpf1 package") from e
    lib.btf__parse_raw.restype = ctypes.c_void_p
    lib.btf__parse_raw.argtypes = [ctypes.c_char_p]
    lib.btf__free.argtypes = [ctypes.c_void_p]
    lib.btf__find_by_name_kind.restype = ctypes.c_int32
    lib.btf__find_by_name_kind.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint32]
    lib.btf__type_by_id.restype = ctypes.c_void_p
    lib.btf__type_by_id.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.btf__name_by_offset.restype = ctypes.c_char_p
    lib.btf__name_by_offset.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.btf__resolve_type.restype = ctypes.c_int32
    lib.btf__resolve_type.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.btf__resolve_size.restype = ctypes.c_int64
    lib.btf__resolve_size.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.bpf_link_create.restype = ctypes.c_int
    lib.bpf_link_create.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
    lib.bpf_iter_create.restype = ctypes.c_int
    lib.bpf_iter_create.argtypes = [ctypes.c_int]
    lib.bpf_obj_get_info_by_fd.restype = ctypes.c_int
    lib.bpf_obj_get_info_by_fd.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint32)]
    lib.bpf_enable_stats.restype = ctypes.c_int
    lib.bpf_enable_stats.argtypes = [ctypes.c_int]
    return lib


def _check(ret: int, what: str) -> int:
    if ret < 0:
        # libbpf 1.x returns -errno and sets errno
        err = ctypes.get_errno() or -ret
        raise InotraceError(f"{what}: {os.strerror(err)}")
    return ret


def iter_link(prog_fd: int) -> int:
    """A BPF link for an iterator program (attach type BPF_TRACE_ITER)."""
    return _check(load().bpf_link_create(prog_fd, 0, BPF_TRACE_ITER, None), "cannot attach BPF iterator")


def iter_open(link_fd: int) -> int:
    """A new iterator instance: read() it to EOF to run the program over everything."""
    return _check(load().bpf_iter_create(link_fd), "cannot create BPF iterator")


def prog_info(prog_fd: int) -> bytes:
    """The kernel's struct bpf_prog_info for a program, as much as it filled."""
    buf = ctypes.create_string_buffer(PROG_INFO_BYTES)
    size = ctypes.c_uint32(PROG_INFO_BYTES)
    _check(load().bpf_obj_get_info_by_fd(prog_fd, buf, ctypes.byref(size)), "cannot read BPF program info")
    return buf.raw[: size.value]


def enable_stats() -> int:
    """BPF_ENABLE_STATS: the kernel counts every program's run time while the
    returned fd stays open, and stops (unless someone else asked) once it is
    closed, so a crash cannot leave the host paying for it."""
    return _check(load().bpf_enable_stats(BPF_STATS_RUN_TIME), "cannot enable BPF run-time statistics")
