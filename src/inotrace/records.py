"""The Python mirror of bpf/inotrace.h, and decoding of ring-buffer records.

Kept in one place on purpose: tests/test_records_layout.py compiles the C
header and checks every size and offset here against what the compiler says.
"""

from __future__ import annotations

import ctypes
import enum
import struct
from dataclasses import dataclass

COMM_LEN = 16
PATH_LEN = 256

REC_INOTIFY = 1
REC_OPEN = 2

F_PATH_TRUNCATED = 0x1
F_PATH_FAULT = 0x2
F_HAS_PATH = 0x4
F_NEW_WATCH = 0x8
F_KERNEL_PATH = 0x10


class Syscall(enum.IntEnum):
    INOTIFY_INIT = 1
    INOTIFY_INIT1 = 2
    INOTIFY_ADD_WATCH = 3
    INOTIFY_RM_WATCH = 4

    @property
    def label(self) -> str:
        return self.name.lower()


class Origin(enum.IntEnum):
    USER = 0
    KERNEL_THREAD = 1
    USERMODE_HELPER = 2
    IO_URING = 3
    IO_URING_WORKER = 4
    KERNEL = 5

    @property
    def label(self) -> str:
        return self.name.lower()


class Backend(enum.IntEnum):
    TRACEPOINT = 1
    KPROBE = 2
    FENTRY = 3

    @property
    def label(self) -> str:
        return self.name.lower()


class OpenCallKind(enum.IntEnum):
    """enum inotrace_open_call"""

    OPEN = 1
    OPENAT = 2
    OPENAT2 = 3
    CREAT = 4
    OPEN_BY_HANDLE_AT = 5
    IO_URING_OPENAT = 6
    IO_URING_OPENAT2 = 7
    DO_SYS_OPENAT2 = 8
    DO_FILP_OPEN = 9

    @property
    def label(self) -> str:
        return self.name.lower()


class LostReason(enum.IntEnum):
    RINGBUF = 0
    INFLIGHT = 1
    COUNTS = 2
    OPEN_COUNTS = 3
    IO_URING = 4
    GROUPS = 5

    @property
    def label(self) -> str:
        return (
            "ringbuf_full",
            "inflight_full",
            "counter_map_full",
            "open_counter_map_full",
            "io_uring_map_full",
            "instance_state_map_full",
        )[self.value]


LOST_MAX = 6


class InotifyRecC(ctypes.Structure):
    """struct inotrace_inotify_rec"""

    _fields_ = [
        ("ts_ns", ctypes.c_uint64),
        ("group", ctypes.c_uint64),
        ("cgroup_id", ctypes.c_uint64),
        ("ret", ctypes.c_int64),
        ("kind", ctypes.c_uint32),
        ("syscall", ctypes.c_uint32),
        ("tgid", ctypes.c_uint32),
        ("tid", ctypes.c_uint32),
        ("ppid", ctypes.c_uint32),
        ("uid", ctypes.c_uint32),
        ("euid", ctypes.c_uint32),
        ("fd", ctypes.c_int32),
        ("flags", ctypes.c_uint32),
        ("mask", ctypes.c_uint32),
        ("wd", ctypes.c_int32),
        ("origin", ctypes.c_uint16),
        ("backend", ctypes.c_uint8),
        ("rec_flags", ctypes.c_uint8),
        ("comm", ctypes.c_char * COMM_LEN),
        ("path", ctypes.c_char * PATH_LEN),
    ]


class CountKeyC(ctypes.Structure):
    """struct inotrace_count_key"""

    _fields_ = [
        ("comm", ctypes.c_char * COMM_LEN),
        ("uid", ctypes.c_uint32),
        ("err", ctypes.c_int32),
        ("syscall", ctypes.c_uint16),
        ("origin", ctypes.c_uint16),
        ("_pad", ctypes.c_uint32),
    ]


class OpenRecC(ctypes.Structure):
    """struct inotrace_open_rec"""

    _fields_ = [
        ("ts_ns", ctypes.c_uint64),
        ("_reserved", ctypes.c_uint64),
        ("cgroup_id", ctypes.c_uint64),
        ("ret", ctypes.c_int64),
        ("kind", ctypes.c_uint32),
        ("call", ctypes.c_uint32),
        ("tgid", ctypes.c_uint32),
        ("tid", ctypes.c_uint32),
        ("ppid", ctypes.c_uint32),
        ("uid", ctypes.c_uint32),
        ("euid", ctypes.c_uint32),
        ("dfd", ctypes.c_int32),
        ("flags", ctypes.c_uint32),
        ("mode", ctypes.c_uint32),
        ("origin", ctypes.c_uint16),
        ("backend", ctypes.c_uint8),
        ("rec_flags", ctypes.c_uint8),
        ("_pad", ctypes.c_uint32),
        ("comm", ctypes.c_char * COMM_LEN),
        ("path", ctypes.c_char * PATH_LEN),
    ]


class OpenKeyC(ctypes.Structure):
    """struct inotrace_open_key"""

    _fields_ = [
        ("comm", ctypes.c_char * COMM_LEN),
        ("uid", ctypes.c_uint32),
        ("err", ctypes.c_int32),
        ("origin", ctypes.c_uint16),
        ("_pad", ctypes.c_uint16),
    ]


class GroupStateC(ctypes.Structure):
    """struct inotrace_group_state"""

    _fields_ = [
        ("added", ctypes.c_int64),
        ("removed", ctypes.c_int64),
        ("pre_removed", ctypes.c_int64),
        ("gen", ctypes.c_uint64),
        ("calls", ctypes.c_uint64),
        ("floor", ctypes.c_int32),
        ("inflight", ctypes.c_int32),
    ]


class InstanceRecC(ctypes.Structure):
    """struct inotrace_instance_rec"""

    _fields_ = [
        ("group", ctypes.c_uint64),
        ("ucounts", ctypes.c_uint64),
        ("ucount_instances", ctypes.c_int64),
        ("ucount_watches", ctypes.c_int64),
        ("max_instances", ctypes.c_int64),
        ("max_watches", ctypes.c_int64),
        ("tgid", ctypes.c_uint32),
        ("fd", ctypes.c_int32),
        ("uid", ctypes.c_uint32),
        ("user_ns", ctypes.c_uint32),
        ("q_len", ctypes.c_uint32),
        ("max_events", ctypes.c_uint32),
        ("has_state", ctypes.c_uint32),
        ("idr_next", ctypes.c_uint32),
        ("state", GroupStateC),
    ]


@dataclass(frozen=True)
class GroupState:
    """The kernel side's counts for one instance (struct inotrace_group_state)."""

    added: int
    removed: int
    pre_removed: int
    gen: int
    calls: int
    floor: int
    inflight: int

    @property
    def post(self) -> int:
        """Watches at or above the floor, as far as syscalls say."""
        return self.added - self.removed


@dataclass(frozen=True)
class InstanceFile:
    """One inotify fd in one process, as the kernel has it right now."""

    group: int
    ucounts: int
    tgid: int
    fd: int
    uid: int  # charged uid
    user_ns: int
    ucount_instances: int
    ucount_watches: int
    max_instances: int
    max_watches: int
    q_len: int
    max_events: int
    idr_next: int = 0
    state: GroupState | None = None  # None: no traced call on it yet (older than the probes)


_INSTANCE_FIELDS = [f[0] for f in InstanceRecC._fields_ if f[0] not in ("has_state", "state")]
_STATE_FIELDS = [f[0] for f in GroupStateC._fields_]


def decode_instances(data: bytes) -> list[InstanceFile]:
    size = ctypes.sizeof(InstanceRecC)
    if len(data) % size:
        raise DecodeError(f"iterator output of {len(data)} bytes is not a multiple of {size}")
    out = []
    for off in range(0, len(data), size):
        r = InstanceRecC.from_buffer_copy(data, off)
        state = GroupState(**{n: getattr(r.state, n) for n in _STATE_FIELDS}) if r.has_state else None
        out.append(InstanceFile(**{n: getattr(r, n) for n in _INSTANCE_FIELDS}, state=state))
    return out


def _cstr(raw: bytes) -> bytes:
    return raw.split(b"\0", 1)[0]


def _path(data: bytes, fixed: int, rec_flags: int) -> tuple[bytes | None, bool, bool]:
    """(path or None, truncated, fault) of a record that may carry a user path
    (sent with only the bytes it uses, after the fixed part)."""
    fault = bool(rec_flags & F_PATH_FAULT)
    path = _cstr(data[fixed : fixed + PATH_LEN]) if rec_flags & F_HAS_PATH and not fault else None
    return path, bool(rec_flags & F_PATH_TRUNCATED), fault


# Not frozen: a frozen dataclass of this width costs ~2 us to build, ten times
# a plain one, and a burst brings ~100k records a second. Treat as immutable.
@dataclass(slots=True)
class InotifyCall:
    """One completed inotify syscall, as seen by the kernel."""

    ts_ns: int
    syscall: Syscall
    tgid: int
    tid: int
    ppid: int
    uid: int
    euid: int
    comm: bytes  # chosen by the traced process: untrusted
    cgroup_id: int
    ret: int
    fd: int
    flags: int
    mask: int
    wd: int
    path: bytes | None  # copied from the caller's memory: untrusted
    path_truncated: bool
    path_fault: bool
    group: int
    origin: Origin
    backend: Backend
    new_watch: bool = False  # add_watch: the kernel side counted a new watch (else a modification)

    @property
    def ok(self) -> bool:
        return self.ret >= 0

    @property
    def errno(self) -> int:
        return -self.ret if self.ret < 0 else 0


class DecodeError(ValueError):
    pass


@dataclass(slots=True)
class OpenCall:
    """One completed open (streamed with `trace --opens`)."""

    ts_ns: int
    call: OpenCallKind
    tgid: int
    tid: int
    ppid: int
    uid: int
    euid: int
    comm: bytes  # untrusted
    cgroup_id: int
    ret: int
    dfd: int
    flags: int
    mode: int
    path: bytes | None  # copied from the caller's memory: untrusted; None if not available
    path_truncated: bool
    path_fault: bool
    origin: Origin
    backend: Backend
    path_from_kernel: bool = False  # the kernel's own copy (an exec's, a core dump's), not the caller's memory

    @property
    def ok(self) -> bool:
        return self.ret >= 0

    @property
    def errno(self) -> int:
        return -self.ret if self.ret < 0 else 0


# The fixed parts of the two record kinds, unpacked in one call each: a burst
# brings ~100k records a second. Checked against the ctypes mirrors below.
_INOTIFY = struct.Struct("<QQQqIIIIIIIiIIiHBB16s")
_OPEN = struct.Struct("<QQQqIIIIIIIiIIHBBI16s")
assert _INOTIFY.size == InotifyRecC.path.offset and _OPEN.size == OpenRecC.path.offset

_SYSCALLS = {v.value: v for v in Syscall}
_ORIGINS = {v.value: v for v in Origin}
_BACKENDS = {v.value: v for v in Backend}
_OPEN_CALLS = {v.value: v for v in OpenCallKind}


def _decode_open(data: bytes) -> OpenCall:
    if len(data) < _OPEN.size:
        raise DecodeError(f"open record of {len(data)} bytes, expected at least {_OPEN.size}")
    (ts, _, cgroup, ret, _kind, call, tgid, tid, ppid, uid, euid, dfd, flags, mode, origin, backend, rf, _, comm) = (
        _OPEN.unpack_from(data)
    )
    try:
        kind, orig, back = _OPEN_CALLS[call], _ORIGINS[origin], _BACKENDS[backend]
    except KeyError as e:
        raise DecodeError(f"unknown value {e} in an open record") from None
    path, truncated, fault = _path(data, _OPEN.size, rf)
    return OpenCall(
        ts,
        kind,
        tgid,
        tid,
        ppid,
        uid,
        euid,
        _cstr(comm),
        cgroup,
        ret,
        dfd,
        flags,
        mode,
        path,
        truncated,
        fault,
        orig,
        back,
        bool(rf & F_KERNEL_PATH),
    )


# Both record kinds keep `kind` at this offset (see bpf/inotrace.h).
_KIND = struct.Struct("<I")
KIND_OFFSET = 32


def decode_any(data: bytes) -> InotifyCall | OpenCall:
    """Decode one ring-buffer record of either kind; DecodeError on a foreign shape."""
    if len(data) < KIND_OFFSET + 4:
        raise DecodeError(f"record of {len(data)} bytes")
    (kind,) = _KIND.unpack_from(data, KIND_OFFSET)
    if kind == REC_OPEN:
        return _decode_open(data)
    return decode(data)


def decode(data: bytes) -> InotifyCall:
    """Decode one ring-buffer record; raise DecodeError on a foreign shape."""
    if len(data) < _INOTIFY.size:
        raise DecodeError(f"record of {len(data)} bytes, expected at least {_INOTIFY.size}")
    (ts, group, cgroup, ret, kind, sc, tgid, tid, ppid, uid, euid, fd, flags, mask, wd, origin, backend, rf, comm) = (
        _INOTIFY.unpack_from(data)
    )
    if kind != REC_INOTIFY:
        raise DecodeError(f"unknown record kind {kind}")
    try:
        syscall, orig, back = _SYSCALLS[sc], _ORIGINS[origin], _BACKENDS[backend]
    except KeyError as e:
        raise DecodeError(f"unknown value {e} in an inotify record") from None
    path, truncated, fault = _path(data, _INOTIFY.size, rf)
    return InotifyCall(
        ts,
        syscall,
        tgid,
        tid,
        ppid,
        uid,
        euid,
        _cstr(comm),
        cgroup,
        ret,
        fd,
        flags,
        mask,
        wd,
        path,
        truncated,
        fault,
        group,
        orig,
        back,
        bool(rf & F_NEW_WATCH),
    )
