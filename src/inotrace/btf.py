"""Kernel struct offsets from the running kernel's BTF.

BCC compiles against whatever kernel headers it finds, which on a kernel
without its own describe another kernel's struct layouts.
So the BPF C never dereferences a kernel struct: it reads fields at offsets
resolved here from ``/sys/kernel/btf/vmlinux`` and passed as ``-DOFF_*=N``.

libbcc does not export ``btf__*``, but ``libbpf.so.1`` (a dependency of BCC)
does; parsing vmlinux BTF through it takes a few milliseconds.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterable
from dataclasses import dataclass

from . import libbpf
from .errors import InotraceError

BTF_KIND_ARRAY = 3
BTF_KIND_STRUCT = 4
BTF_KIND_UNION = 5
BTF_KIND_ENUM = 6
BTF_KIND_ENUM64 = 19


class _BtfType(ctypes.Structure):
    # struct btf_type, include/uapi/linux/btf.h (stable UAPI)
    _fields_ = [("name_off", ctypes.c_uint32), ("info", ctypes.c_uint32), ("size_type", ctypes.c_uint32)]


class _BtfMember(ctypes.Structure):
    _fields_ = [("name_off", ctypes.c_uint32), ("type", ctypes.c_uint32), ("offset", ctypes.c_uint32)]


class _BtfArray(ctypes.Structure):
    _fields_ = [("type", ctypes.c_uint32), ("index_type", ctypes.c_uint32), ("nelems", ctypes.c_uint32)]


class _BtfEnum(ctypes.Structure):
    _fields_ = [("name_off", ctypes.c_uint32), ("val", ctypes.c_int32)]


def _kind(t: _BtfType) -> int:
    return int((t.info >> 24) & 0x1F)


def _vlen(t: _BtfType) -> int:
    return int(t.info & 0xFFFF)


def _kflag(t: _BtfType) -> bool:
    return bool(t.info >> 31)


class Btf:
    """A parsed BTF blob (normally the running kernel's)."""

    def __init__(self, path: str) -> None:
        if not os.access(path, os.R_OK):
            raise InotraceError(f"cannot read kernel BTF at {path}: the kernel needs CONFIG_DEBUG_INFO_BTF")
        self._lib = libbpf.load()
        ptr = self._lib.btf__parse_raw(os.fsencode(path))
        if not ptr:
            err = ctypes.get_errno()
            raise InotraceError(f"cannot parse kernel BTF at {path}: {os.strerror(err) if err else 'invalid data'}")
        self._btf = ctypes.c_void_p(ptr)
        self.path = path

    def close(self) -> None:
        if self._btf:
            self._lib.btf__free(self._btf)
            self._btf = ctypes.c_void_p(None)

    def __enter__(self) -> Btf:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _type(self, type_id: int) -> _BtfType:
        return _BtfType.from_address(self._lib.btf__type_by_id(self._btf, type_id))

    def _name(self, off: int) -> str:
        raw = self._lib.btf__name_by_offset(self._btf, off)
        return raw.decode() if raw else ""

    def _find(self, name: str, kinds: Iterable[int]) -> int:
        for kind in kinds:
            tid = self._lib.btf__find_by_name_kind(self._btf, name.encode(), kind)
            if tid > 0:
                return int(tid)
        raise InotraceError(f"kernel BTF has no type {name!r}")

    def has_struct(self, name: str) -> bool:
        return int(self._lib.btf__find_by_name_kind(self._btf, name.encode(), BTF_KIND_STRUCT)) > 0

    def has_helper(self, name: str) -> bool:
        """Whether this kernel has the BPF helper bpf_<name> (enum bpf_func_id);
        False also where BTF has no such enum at all."""
        try:
            return self.enum_value_or_none("bpf_func_id", f"BPF_FUNC_{name}") is not None
        except InotraceError:
            return False

    def _members(self, type_id: int) -> list[tuple[str, int, int]]:
        """(name, resolved type id, bit offset) of a struct/union's members."""
        t = self._type(type_id)
        base = ctypes.addressof(t) + ctypes.sizeof(_BtfType)
        out = []
        for i in range(_vlen(t)):
            m = _BtfMember.from_address(base + i * ctypes.sizeof(_BtfMember))
            bit_off = m.offset & 0xFFFFFF if _kflag(t) else m.offset
            out.append((self._name(m.name_off), int(self._lib.btf__resolve_type(self._btf, m.type)), bit_off))
        return out

    def _member_bits(self, type_id: int, field: str) -> tuple[int, int] | None:
        """Bit offset and type of `field`, looking inside anonymous members."""
        for name, tid, bit_off in self._members(type_id):
            if name == field:
                return bit_off, tid
            if not name and tid > 0 and _kind(self._type(tid)) in (BTF_KIND_STRUCT, BTF_KIND_UNION):
                inner = self._member_bits(tid, field)
                if inner is not None:
                    return bit_off + inner[0], inner[1]
        return None

    def _resolve(self, struct: str, path: str) -> tuple[int, int]:
        """(byte offset, type id) of `path` (dotted, e.g. ``euid.val``) in `struct`."""
        tid = self._find(struct, (BTF_KIND_STRUCT, BTF_KIND_UNION))
        total = 0
        for field in path.split("."):
            found = self._member_bits(tid, field)
            if found is None:
                raise InotraceError(f"kernel BTF: struct {struct} has no field {path!r}")
            bits, tid = found
            if bits % 8:
                raise InotraceError(f"kernel BTF: {struct}.{path} is a bit field")
            total += bits // 8
        return total, tid

    def offsetof(self, struct: str, path: str) -> int:
        return self._resolve(struct, path)[0]

    def elem_size(self, struct: str, path: str) -> int:
        """Size of one element of the array field `path` in `struct`."""
        tid = self._resolve(struct, path)[1]
        t = self._type(tid)
        if _kind(t) != BTF_KIND_ARRAY:
            raise InotraceError(f"kernel BTF: {struct}.{path} is not an array")
        arr = _BtfArray.from_address(ctypes.addressof(t) + ctypes.sizeof(_BtfType))
        return int(self._lib.btf__resolve_size(self._btf, arr.type))

    def sizeof(self, struct: str) -> int:
        return int(self._lib.btf__resolve_size(self._btf, self._find(struct, (BTF_KIND_STRUCT, BTF_KIND_UNION))))

    def enum_value(self, enum: str, name: str) -> int:
        value = self.enum_value_or_none(enum, name)
        if value is None:
            raise InotraceError(f"kernel BTF: enum {enum} has no value {name}")
        return value

    def enum_value_or_none(self, enum: str, name: str) -> int | None:
        tid = self._find(enum, (BTF_KIND_ENUM,))
        t = self._type(tid)
        base = ctypes.addressof(t) + ctypes.sizeof(_BtfType)
        for i in range(_vlen(t)):
            e = _BtfEnum.from_address(base + i * ctypes.sizeof(_BtfEnum))
            if self._name(e.name_off) == name:
                return int(e.val)
        return None


@dataclass(frozen=True)
class Field:
    macro: str
    struct: str
    path: str


# Every kernel field the BPF C reads. x86-64 syscall arguments 0..2 are in
# di, si, dx (the kprobe front end reads them from the saved user pt_regs).
FIELDS: tuple[Field, ...] = (
    Field("OFF_TASK_TGID", "task_struct", "tgid"),
    Field("OFF_TASK_REAL_PARENT", "task_struct", "real_parent"),
    Field("OFF_TASK_CRED", "task_struct", "cred"),
    Field("OFF_TASK_FILES", "task_struct", "files"),
    Field("OFF_TASK_FLAGS", "task_struct", "flags"),
    Field("OFF_TASK_COMM", "task_struct", "comm"),
    Field("OFF_CRED_EUID", "cred", "euid.val"),
    Field("OFF_FILES_FDT", "files_struct", "fdt"),
    Field("OFF_FDTABLE_MAX_FDS", "fdtable", "max_fds"),
    Field("OFF_FDTABLE_FD", "fdtable", "fd"),
    Field("OFF_FILE_PRIVATE_DATA", "file", "private_data"),
    Field("OFF_FILE_F_OP", "file", "f_op"),
    Field("OFF_GROUP_Q_LEN", "fsnotify_group", "q_len"),
    Field("OFF_GROUP_MAX_EVENTS", "fsnotify_group", "max_events"),
    Field("OFF_GROUP_UCOUNTS", "fsnotify_group", "inotify_data.ucounts"),
    Field("OFF_GROUP_IDR_NEXT", "fsnotify_group", "inotify_data.idr.idr_next"),
    Field("OFF_UCOUNTS_NS", "ucounts", "ns"),
    Field("OFF_UCOUNTS_UID", "ucounts", "uid"),
    Field("OFF_UCOUNTS_UCOUNT", "ucounts", "ucount"),
    Field("OFF_USER_NS_INUM", "user_namespace", "ns.inum"),
    Field("OFF_USER_NS_UCOUNT_MAX", "user_namespace", "ucount_max"),
    Field("OFF_PT_REGS_ARG0", "pt_regs", "di"),
    Field("OFF_PT_REGS_ARG1", "pt_regs", "si"),
    Field("OFF_PT_REGS_ARG2", "pt_regs", "dx"),
)


# What counting the kernel's own opens at do_filp_open reads (the kprobe and
# fentry backends): the task's saved user registers, which need the
# bpf_task_pt_regs helper (5.15), and do_filp_open's arguments. Without them
# that probe is absent (HAVE_KERNEL_OPENS 0); everything else still works.
KERNEL_OPEN_FIELDS: tuple[Field, ...] = (
    Field("OFF_PT_REGS_AX", "pt_regs", "ax"),
    Field("OFF_PT_REGS_ORIG_AX", "pt_regs", "orig_ax"),
    Field("OFF_FILENAME_NAME", "filename", "name"),
    Field("OFF_OPEN_FLAGS_OPEN_FLAG", "open_flags", "open_flag"),
    Field("OFF_OPEN_FLAGS_MODE", "open_flags", "mode"),
)


def _kernel_open_offsets(btf: Btf) -> dict[str, int]:
    if not btf.has_helper("task_pt_regs"):
        return {"HAVE_KERNEL_OPENS": 0}
    try:
        offsets = {f.macro: btf.offsetof(f.struct, f.path) for f in KERNEL_OPEN_FIELDS}
    except InotraceError:
        return {"HAVE_KERNEL_OPENS": 0}
    return {"HAVE_KERNEL_OPENS": 1, **offsets}


# What inotrace cannot run without, asked of BTF rather than of the version
# number (distributions backport): records cross in a BPF ring buffer, and the
# kernel's instances are read with the task_file iterator, both since 5.8.
MINIMUM_KERNEL = "5.8"
REQUIRED: tuple[tuple[str, str, str], ...] = (
    ("helper", "ringbuf_output", "BPF ring buffer"),
    ("struct", "bpf_iter__task_file", "BPF task_file iterator"),
)


def check_kernel(btf: Btf, release: str) -> None:
    """One clear line when this kernel lacks what inotrace needs."""
    for kind, name, what in REQUIRED:
        if not (btf.has_helper(name) if kind == "helper" else btf.has_struct(name)):
            raise InotraceError(
                f"this kernel ({release}) has no {what}, which inotrace needs: Linux {MINIMUM_KERNEL} or newer"
            )


def resolve_offsets(btf_path: str, fields: Iterable[Field] = FIELDS) -> dict[str, int]:
    """Every -D value the BPF C needs: field offsets, array strides, enum values."""
    with Btf(btf_path) as btf:
        check_kernel(btf, os.uname().release)
        out = {f.macro: btf.offsetof(f.struct, f.path) for f in fields}
        out.update(_kernel_open_offsets(btf))
        # loads through bpf_get_current_task_btf()'s pointer (>= 5.11)
        out["HAVE_TASK_BTF"] = int(btf.has_helper("get_current_task_btf"))
        out["UCOUNT_ELEM_SIZE"] = btf.elem_size("ucounts", "ucount")
        out["UCOUNT_MAX_ELEM_SIZE"] = btf.elem_size("user_namespace", "ucount_max")
        # enum ucount_type moves with kernel config (e.g. UCOUNT_FANOTIFY_*)
        out["UCOUNT_INOTIFY_INSTANCES"] = btf.enum_value("ucount_type", "UCOUNT_INOTIFY_INSTANCES")
        out["UCOUNT_INOTIFY_WATCHES"] = btf.enum_value("ucount_type", "UCOUNT_INOTIFY_WATCHES")
        return out


def inotify_watch_cost(btf_path: str) -> int | None:
    """The kernel's own estimate of what one inotify watch costs it, in bytes:
    INOTIFY_WATCH_COST = sizeof(struct inotify_inode_mark) + 2 * sizeof(struct
    inode) (fs/notify/inotify/inotify_user.c; since 5.11 the default
    max_user_watches is 1 % of RAM at that cost). None if BTF lacks either type."""
    try:
        with Btf(btf_path) as btf:
            return btf.sizeof("inotify_inode_mark") + 2 * btf.sizeof("inode")
    except InotraceError:
        return None
