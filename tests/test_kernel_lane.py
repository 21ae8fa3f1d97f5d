"""Checks of the kernel-matrix lane (kernels/run), meaningful on any kernel.

The lane runs this file in a VM booted with Debian's 6.1 (kprobes) under
INOTRACE_TEST_PROBES=kprobe, tracepoint and auto; `make test` runs it on the
host (6.18 here, no kprobes) with the default backend. Nothing is skipped
(CI fails on skips): each test branches on what the running kernel can do.
"""

from __future__ import annotations

import subprocess

import pytest

from conftest import (
    NOBODY,
    PROBES,
    SharedExporter,
    assert_one_line_error,
    expected_backend,
    http_get,
    kernel_has_fentry,
    kernel_has_kprobes,
    run_cli,
    run_workload,
    unique_comm,
    wait_for_records,
)
from test_bpf_inotify import EXPECTED, counts_for, samples

pytestmark = pytest.mark.bpf

REQUIRED = ("inotify_init1", "inotify_add_watch", "inotify_rm_watch")


def test_requested_backend_attaches_and_counts_exactly(request: pytest.FixtureRequest) -> None:
    """Every required probe attached with the backend asked for (auto: the one
    that works here); through it the workload is counted exactly, every audit
    record names that backend, and the start-up self-test (BTF offsets checked
    against /proc) passed on this kernel."""
    mode = PROBES or "auto"
    if mode == "kprobe" and not kernel_has_kprobes():
        # The host kernel: kprobe cannot work, and says so in one line.
        assert_one_line_error(run_cli("trace", "--probes", "kprobe"), "no kprobe support")
        return
    if mode == "fentry" and not kernel_has_fentry():
        # The host kernel loads no trampolines (EPERM without ftrace): one line, naming the hook.
        res = run_cli("trace", "--probes", "fentry")
        assert_one_line_error(res, "cannot attach probe inotify_init1 (fentry: cannot attach fentry to __x64_sys_")
        return
    shared_exporter: SharedExporter = request.getfixturevalue("shared_exporter")  # a backend that can start
    proc, url = shared_exporter.proc, shared_exporter.url
    proc.assert_alive()
    assert "self-test passed" in proc.err_text(), proc.err_text()
    status, text = http_get(url + "/metrics")
    assert status == 200
    attached = {(lb["probe"], lb["backend"]): v for n, lb, v in samples(text) if n == "inotrace_probe_attached"}
    chosen = {}
    for probe in REQUIRED:
        ones = sorted(b for (p, b), v in attached.items() if p == probe and v == 1)
        want = expected_backend(probe) if mode == "auto" else mode
        assert ones == [want], f"{probe}: attached with {ones}, wanted {want} ({attached})"
        chosen[probe] = want

    comm = unique_comm("inolane-")
    done = run_workload(comm, as_user=NOBODY)
    _status, text = http_get(url + "/metrics")
    assert counts_for(text, comm) == EXPECTED
    lost = sum(v for n, _lb, v in samples(text) if n == "inotrace_events_lost_total")
    assert lost == 0
    # The audit stream, record by record: the kprobe front end reads the
    # arguments from the caller's saved registers, so they are checked too.
    mine = wait_for_records(shared_exporter.log, len(done["calls"]), comm=comm, event="syscall")
    for rec, call in zip(mine, done["calls"], strict=True):
        assert (rec["syscall"], rec["backend"], rec["pid"]) == (call["syscall"], chosen[call["syscall"]], done["pid"])
        assert rec["ret"] == (call["ret"] if call["ret"] >= 0 else -call["errno"]), (rec, call)
        want = {
            "inotify_init1": {"flags": call.get("flags")},
            "inotify_add_watch": {"fd": call.get("fd"), "pathname": call.get("path"), "mask": call.get("mask")},
            "inotify_rm_watch": {"fd": call.get("fd"), "wd": call.get("wd")},
        }[call["syscall"]]
        assert {k: rec["args"].get(k) for k in want} == want, (rec, call)


# Opens, counted at kprobes on the kernel's open path (the kprobe backend for
# opens relies on this). Run as a separate process so its opens are the only
# ones counted: 17 open(2), 13 openat(2) (glibc's open), 3 openat2(2), 5
# openat(2) of a missing file (ENOENT).
OPENER = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
class OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]
how = OpenHow(os.O_RDONLY, 0, 0)
path, missing = sys.argv[1].encode(), sys.argv[1] + ".missing"
print("ready", flush=True)
sys.stdin.readline()
fds = [libc.syscall(2, path, os.O_RDONLY) for _ in range(17)]
fds += [os.open(path, os.O_RDONLY) for _ in range(13)]
fds += [libc.syscall(437, -100, path, ctypes.byref(how), ctypes.sizeof(how)) for _ in range(3)]
assert min(fds) >= 0, fds
for fd in fds:
    os.close(fd)
for _ in range(5):
    try:
        os.open(missing, os.O_RDONLY)
    except FileNotFoundError:
        pass
print("done", flush=True)
"""

OPEN_PROBES = r"""
#include <uapi/linux/ptrace.h>

BPF_ARRAY(target, u32, 1);
BPF_ARRAY(hits, u64, 4);  /* do_sys_open entry, do_sys_openat2 entry, its return >= 0, < 0 */

static __always_inline void hit(int what) {
    int zero = 0;
    u32 *tgid = target.lookup(&zero);
    if (!tgid || *tgid != (u32)(bpf_get_current_pid_tgid() >> 32))
        return;
    hits.atomic_increment(what);
}
int enter_do_sys_open(struct pt_regs *ctx) { hit(0); return 0; }
int enter_do_sys_openat2(struct pt_regs *ctx) { hit(1); return 0; }
int exit_do_sys_openat2(struct pt_regs *ctx) {
    long ret = PT_REGS_RC(ctx);
    hit(ret < 0 ? 3 : 2);
    return 0;
}
"""


def test_opens_reach_do_sys_openat2_and_never_do_sys_open(tmp_path) -> None:
    """With kprobes: open, openat and openat2 all enter do_sys_openat2 (counted
    exactly, returns split by sign), while a kprobe on do_sys_open attaches
    without error and fires 0 times (inlined on >= 5.6 kernels such as 6.1):
    an opens probe must count events, not trust a successful attach. Without
    kprobes (the host): attaching fails, which is why the lane exists."""
    import ctypes  # noqa: PLC0415

    from bcc import BPF  # noqa: PLC0415 - only BPF tests need bcc

    bpf = BPF(text=OPEN_PROBES.encode())
    try:
        if not kernel_has_kprobes():
            with pytest.raises(Exception, match="kprobe"):
                bpf.attach_kprobe(event=b"do_sys_openat2", fn_name=b"enter_do_sys_openat2")
            return
        assert BPF.ksymname(b"do_sys_open") != -1, "do_sys_open is gone: revisit the opens probes"
        bpf.attach_kprobe(event=b"do_sys_open", fn_name=b"enter_do_sys_open")
        bpf.attach_kprobe(event=b"do_sys_openat2", fn_name=b"enter_do_sys_openat2")
        bpf.attach_kretprobe(event=b"do_sys_openat2", fn_name=b"exit_do_sys_openat2")
        target = tmp_path / "opened"
        target.write_text("x")
        child = subprocess.Popen(
            ["/usr/bin/python3", "-c", OPENER, str(target)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        try:
            assert child.stdout is not None and child.stdin is not None
            assert child.stdout.readline().strip() == "ready"
            bpf[b"target"][ctypes.c_int(0)] = ctypes.c_uint32(child.pid)
            child.stdin.write("go\n")
            child.stdin.flush()
            assert child.stdout.readline().strip() == "done"
            assert child.wait(timeout=60) == 0
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        hits = [bpf[b"hits"][ctypes.c_int(i)].value for i in range(4)]
    finally:
        bpf.cleanup()
    assert hits == [0, 38, 33, 5], "[do_sys_open, do_sys_openat2, returned fd, returned -errno]"
