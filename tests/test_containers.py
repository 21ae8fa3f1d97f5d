"""Container attribution from /proc/PID/cgroup: every path shape, odd names,
the cached resolver, and a real cgroup hierarchy created in the test."""

from __future__ import annotations

import contextlib
import errno
import os
import random
import re
import secrets
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from inotrace.containers import NONE, ContainerLabels, ContainerResolver, parse_cgroup, parse_path

CID = "3f2a9c1b7d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8"
CID2 = "aa" * 32
UID = "0b9e5f3c-2d41-4a7e-9c3b-5e6f7a8b9c0d"
UID_ = UID.replace("-", "_")
BURSTABLE_POD = f"kubepods-burstable-pod{UID_}.slice"
CRI_SCOPE = f"cri-containerd-{CID}.scope"
STATIC = "5c9f2ab0c6d1e2f3a4b5c6d7e8f90a1b"  # kubelet names static pods by a config hash

ID_RE = re.compile(r"[0-9a-f]{64}")
UID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        # kubelet, cgroupfs driver (containerd, cri-dockerd: bare id; CRI-O: crio-<id>)
        (f"/kubepods/burstable/pod{UID}/{CID}", (CID, UID)),
        (f"/kubepods/besteffort/pod{UID}/{CID}", (CID, UID)),
        (f"/kubepods/pod{UID}/{CID}", (CID, UID)),  # Guaranteed QoS
        (f"/kubepods/burstable/pod{UID}/crio-{CID}", (CID, UID)),
        # kubelet, systemd driver
        (
            f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{CID}.scope",
            (CID, UID),
        ),
        (
            f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/crio-{CID}.scope",
            (CID, UID),
        ),
        (f"/kubepods.slice/kubepods-pod{UID_}.slice/docker-{CID}.scope", (CID, UID)),
        # containerd's slice:prefix:name form
        (f"/system.slice/containerd.service/kubepods-burstable-pod{UID_}.slice:cri-containerd:{CID}", (CID, UID)),
        (f"/kubepods-besteffort-pod{UID_}.slice:cri-containerd:{CID}", (CID, UID)),
        # kind / minikube in Docker: the kubelet's cgroupRoot is /kubelet
        (
            f"/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/"
            f"kubelet-kubepods-besteffort-pod{UID_}.slice/cri-containerd-{CID}.scope",
            (CID, UID),
        ),
        # plain Docker and Podman
        (f"/docker/{CID}", (CID, "")),
        (f"/system.slice/docker-{CID}.scope", (CID, "")),
        (f"/machine.slice/libpod-{CID}.scope", (CID, "")),
        (f"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{CID}.scope", (CID, "")),
        # pod level without a container: CRI-O's conmon, the pod cgroup itself
        (
            f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/crio-conmon-{CID}.scope",
            ("", UID),
        ),
        (f"/kubepods/burstable/pod{UID}", ("", UID)),
        # static pods: hash-named, so a container id and no pod uid
        (f"/kubepods/burstable/pod{STATIC}/{CID}", (CID, "")),
        (
            f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{STATIC}.slice/cri-containerd-{CID}.scope",
            (CID, ""),
        ),
        # read from inside a cgroup namespace: other cgroups appear above its root
        (
            f"/../../../kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/cri-containerd-{CID}.scope",
            (CID, UID),
        ),
        # no container
        ("/", ("", "")),
        ("/system.slice/sshd.service", ("", "")),
        ("/user.slice/user-1000.slice/session-3.scope", ("", "")),
        (f"/system.slice/containerd.service/{CID}", ("", "")),  # bare id only under docker/ or a pod
    ],
)
def test_every_path_shape(path: str, expected: tuple[str, str]) -> None:
    assert parse_path(path) == ContainerLabels(*expected)
    assert parse_cgroup(f"0::{path}\n") == ContainerLabels(*expected)


V1_DOCKER = (
    "".join(
        f"{n}:{c}:/docker/{CID}\n"
        for n, c in [
            (12, "pids"),
            (11, "hugetlb"),
            (10, "net_cls,net_prio"),
            (9, "perf_event"),
            (8, "memory"),
            (7, "cpu,cpuacct"),
            (6, "freezer"),
            (5, "blkio"),
            (4, "cpuset"),
            (3, "devices"),
            (2, "rdma"),
            (1, "name=systemd"),
        ]
    )
    + "0::/\n"
)

V1_KUBEPODS = (
    f"11:memory:/kubepods/burstable/pod{UID}/{CID}\n"
    f"10:cpu,cpuacct:/kubepods/burstable/pod{UID}/{CID}\n"
    f"9:pids:/kubepods/burstable/pod{UID}/{CID}\n"
    "8:rdma:/\n"
    f"1:name=systemd:/kubepods/burstable/pod{UID}/{CID}\n"
)

HYBRID_SYSTEMD = (
    f"12:pids:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{CID}.scope\n"
    "5:cpuset:/\n"
    f"1:name=systemd:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{CID}.scope\n"
    f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{CID}.scope\n"
)


@pytest.mark.parametrize("text", [V1_DOCKER, V1_KUBEPODS, HYBRID_SYSTEMD])
def test_v1_and_hybrid_files(text: str) -> None:
    expected_uid = "" if text is V1_DOCKER else UID
    assert parse_cgroup(text) == ContainerLabels(CID, expected_uid)


def test_v2_line_is_preferred_then_name_systemd_then_file_order() -> None:
    text = f"5:pids:/docker/{CID2}\n1:name=systemd:/docker/{CID}\n0::/system.slice/docker-{CID}.scope\n"
    assert parse_cgroup(text).container_id == CID
    text = f"5:pids:/docker/{CID2}\n1:name=systemd:/docker/{CID}\n0::/\n"
    assert parse_cgroup(text).container_id == CID
    text = f"5:pids:/docker/{CID2}\n4:memory:/docker/{CID}\n0::/\n"
    assert parse_cgroup(text).container_id == CID2


def test_a_line_naming_a_container_beats_one_naming_only_a_pod() -> None:
    text = f"0::/kubepods/burstable/pod{UID}\n3:pids:/kubepods/burstable/pod{UID}/{CID}\n"
    assert parse_cgroup(text) == ContainerLabels(CID, UID)


def test_no_cgroup_at_all() -> None:
    for text in ("", "\n", "0::/\n", "garbage", "1:cpu\n", "0::relative/path\n", "\x00\xff" * 100):
        assert parse_cgroup(text) == NONE


# --- names a traced process could choose -------------------------------------

OTHER_UID = "11111111-2222-4333-8444-555555555555"


def test_the_outermost_match_wins_over_cgroups_a_container_creates_below_itself() -> None:
    # A container with cgroup write access (or a delegated systemd subtree)
    # creates cgroups named like another pod's: what the runtime named above
    # it decides.
    inner = f"kubepods-pod{OTHER_UID.replace('-', '_')}.slice/cri-containerd-{CID2}.scope"
    assert parse_path(f"/kubepods/burstable/pod{UID}/{CID}/{inner}") == (CID, UID)
    assert parse_path(f"/docker/{CID}/docker/{CID2}") == (CID, "")
    assert parse_path(f"/system.slice/docker-{CID}.scope/kubepods/pod{OTHER_UID}/{CID2}") == (CID, "")
    # only the component right after the pod names its container
    assert parse_path(f"/kubepods/pod{UID}/not-a-container/{CID2}") == ("", UID)


ODD_COMPONENTS = [
    CID.upper(),  # ids are lowercase
    CID[:-1],  # 63 hex
    CID + "0",  # 65 hex
    CID[:-1] + "g",
    CID[:-1] + "\u0663",  # ARABIC-INDIC DIGIT THREE: a digit, not hex
    f" {CID}",
    f"{CID}\n",
    f'{CID}"}} evil="1',
]


@pytest.mark.parametrize("bad", ODD_COMPONENTS)
def test_odd_ids_are_not_ids(bad: str) -> None:
    for path in (
        f"/docker/{bad}",
        f"/system.slice/docker-{bad}.scope",
        f"/kubepods/pod{UID}/{bad}",
        f"/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{bad}.scope",
        f"/kubepods-pod{UID_}.slice:cri-containerd:{bad}",
    ):
        labels = parse_path(path)
        assert labels.container_id == "", path


@pytest.mark.parametrize(
    ("dashed", "underscored"),
    [
        (UID.upper(), UID_.upper()),  # uids are lowercase
        (UID.replace("-", ""), UID_.replace("_", "")),  # 32 hex: a static pod's hash, not a uid
        (UID[:-1], UID_[:-1]),
        (UID + "0", UID_ + "0"),
        (UID.replace("-", "_", 1), UID_.replace("_", "-", 1)),  # mixed separators
        ("0b9e5f3c-2d41-4a7e-9c3b5e6f-7a8b9c0d", "0b9e5f3c_2d41_4a7e_9c3b5e6f_7a8b9c0d"),  # wrong grouping
        (UID[:-1] + "\u0663", UID_[:-1] + "\u0663"),
        (UID + '"} evil="1', UID_ + '"} evil="1'),
    ],
)
def test_odd_pod_uids_are_not_uids(dashed: str, underscored: str) -> None:
    for path in (
        f"/kubepods/burstable/pod{dashed}/{CID}",
        f"/kubepods.slice/kubepods-burstable-pod{underscored}.slice/cri-containerd-{CID}.scope",
        f"/kubepods-burstable-pod{underscored}.slice:cri-containerd:{CID}",
    ):
        assert parse_path(path).pod_uid == "", path


def test_whatever_the_names_labels_are_hex_or_uuid_or_empty(rng: random.Random) -> None:
    # random soup of plausible and hostile components
    pieces = [
        "kubepods",
        "kubepods.slice",
        f"pod{UID}",
        f"kubepods-pod{UID_}.slice",
        f"docker-{CID}.scope",
        CID,
        "docker",
        "..",
        ":",
        "pod",
        "\n",
        "\x00",
        "é",
        f"cri-containerd-{CID2}.scope",
        f"kubepods-pod{UID_}.slice:crio:{CID2}",
        "x" * 300,
    ]
    for _ in range(3000):
        path = "/" + "/".join(rng.choice(pieces) for _ in range(rng.randint(0, 7)))
        cid, uid = parse_cgroup(f"0::{path}\n3:pids:{path}\n")
        assert cid == "" or ID_RE.fullmatch(cid), path
        assert uid == "" or UID_RE.fullmatch(uid), path


# --- resolver ------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _write(procfs: Path, pid: int, text: str | bytes) -> None:
    (procfs / str(pid)).mkdir(exist_ok=True)
    data = text.encode() if isinstance(text, str) else text
    (procfs / str(pid) / "cgroup").write_bytes(data)


def test_resolver_reads_and_caches_until_ttl(tmp_path: Path) -> None:
    clock = FakeClock()
    _write(tmp_path, 42, f"0::/kubepods/pod{UID}/{CID}\n")
    r = ContainerResolver(str(tmp_path), max_entries=8, ttl=5.0, clock=clock)
    assert r.labels(42) == (CID, UID)
    _write(tmp_path, 42, "0::/\n")  # pid reused by a process outside containers
    clock.now += 4.9
    assert r.labels(42) == (CID, UID)  # cached
    clock.now += 0.2
    assert r.labels(42) == NONE  # expired: re-read
    r.forget(42)
    assert len(r) == 0


def test_resolver_is_bounded_and_evicts_least_recently_used(tmp_path: Path) -> None:
    for pid in range(1, 11):
        _write(tmp_path, pid, f"0::/docker/{pid:064x}\n")
    r = ContainerResolver(str(tmp_path), max_entries=4, clock=FakeClock())
    for pid in range(1, 11):
        assert r.labels(pid).container_id == f"{pid:064x}"
        r.labels(1)  # keep pid 1 hot
    assert len(r) == 4
    _write(tmp_path, 1, "0::/\n")
    _write(tmp_path, 2, "0::/\n")
    assert r.labels(1).container_id == f"{1:064x}"  # still cached
    assert r.labels(2) == NONE  # evicted, re-read


def test_resolver_never_raises(tmp_path: Path) -> None:
    r = ContainerResolver(str(tmp_path))
    assert r.labels(12345) == NONE  # no such pid
    assert r.labels(0) == NONE
    assert r.labels(-1) == NONE
    (tmp_path / "7" / "cgroup").mkdir(parents=True)  # a directory, read() fails
    assert r.labels(7) == NONE
    _write(tmp_path, 8, b"0::/docker/" + b"a" * 70_000 + b"\n")  # not a cgroup file
    assert r.labels(8) == NONE
    _write(tmp_path, 9, b"0::/docker/" + CID.encode() + b"\xff\n")
    assert r.labels(9) == NONE
    _write(tmp_path, 10, f"0::/docker/{CID}\n".encode())
    assert r.labels(10) == (CID, "")
    assert len(r) == 2  # failures are not cached: the pid may be reused any moment
    with pytest.raises(ValueError, match="max_entries"):
        ContainerResolver(str(tmp_path), max_entries=0)


def test_resolver_is_thread_safe(tmp_path: Path) -> None:
    for pid in range(1, 65):
        _write(tmp_path, pid, f"0::/docker/{pid:064x}\n")
    r = ContainerResolver(str(tmp_path), max_entries=16, ttl=0.0)
    errors: list[str] = []

    def worker(seed: int) -> None:
        for i in range(2000):
            pid = (seed * 7 + i) % 64 + 1
            if r.labels(pid).container_id != f"{pid:064x}":
                errors.append(str(pid))
            if i % 50 == 0:
                r.forget(pid)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(r) <= 16


def _outside_containers(pid: int) -> str:
    """The pid's cgroup file, asserted to name no container (the tests' own
    cgroups on these machines): then the only right labels are NONE."""
    text = Path(f"/proc/{pid}/cgroup").read_text()
    assert not re.search(r"[0-9a-f]{64}|pod[0-9a-f]{8}[-_]", text), f"the tests run inside a container: {text}"
    return text


def test_resolver_on_real_procfs() -> None:
    r = ContainerResolver()
    _outside_containers(os.getpid())
    assert r.labels(os.getpid()) == NONE
    child = subprocess.Popen(["true"])
    child.wait()  # reaped: the pid is gone
    assert r.labels(child.pid) == NONE


# --- a real cgroup hierarchy -----------------------------------------------------


def _cgroup_mounts() -> list[tuple[str, str]]:
    """(mount point, "v2"|"v1") for the cgroup2 mount and one v1 hierarchy
    with a harmless controller (pids), if this machine has them."""
    v2: list[tuple[str, str]] = []
    v1: list[tuple[str, str]] = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, fs = left.split(), right.split()
            if fields[3] != "/":  # a bind of a subtree: names would be relative to it
                continue
            if fs[0] == "cgroup2" and not v2:
                v2.append((fields[4], "v2"))
            elif fs[0] == "cgroup" and "pids" in fs[2].split(",") and not v1:
                v1.append((fields[4], "v1"))
    return v2 + v1


def _own_cgroup(pid: int, version: str, mount: str) -> str:
    """The cgroup of `pid` in the hierarchy mounted at `mount`."""
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            hier, controllers, path = line.rstrip("\n").split(":", 2)
            if version == "v2" and hier == "0" and controllers == "":
                return path
            if version == "v1" and "pids" in controllers.split(","):
                return path
    raise AssertionError(f"pid {pid} has no {version} cgroup for {mount}")


def _rmdir(path: str) -> None:
    # A cgroup whose last process just left can be busy for a moment.
    deadline = time.monotonic() + 5
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno != errno.EBUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


@contextlib.contextmanager
def _cgroups(mount: str, parts: list[str]) -> Iterator[list[str]]:
    created: list[str] = []
    try:
        path = mount
        for part in parts:
            path = os.path.join(path, part)
            os.mkdir(path)
            created.append(path)
        yield created
    finally:
        for path in reversed(created):
            _rmdir(path)


def _move(pid: int, cgroup_dir: str) -> None:
    with open(os.path.join(cgroup_dir, "cgroup.procs"), "w") as f:
        f.write(str(pid))


MOUNTS = _cgroup_mounts()


def test_this_machine_has_a_cgroup2_hierarchy() -> None:
    assert any(v == "v2" for _, v in MOUNTS), MOUNTS


@pytest.mark.parametrize(("mount", "version"), MOUNTS, ids=[v for _, v in MOUNTS])
def test_real_cgroup(mount: str, version: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("creating cgroups needs root")
    uid = str(uuid.uuid4())
    cid, fake_cid = secrets.token_hex(32), secrets.token_hex(32)
    top = f"inotrace-test-{secrets.token_hex(4)}"
    if version == "v2":
        # systemd driver shape; the kernel does not care about the names
        parts = [
            top,
            "kubepods.slice",
            "kubepods-besteffort.slice",
            f"kubepods-besteffort-pod{uid.replace('-', '_')}.slice",
            f"cri-containerd-{cid}.scope",
        ]
    else:
        parts = [top, "kubepods", "besteffort", f"pod{uid}", cid]
    # what the container itself would create below its own cgroup
    fake_uid = str(uuid.uuid4()).replace("-", "_")
    spoof = [f"kubepods-pod{fake_uid}.slice", f"cri-containerd-{fake_cid}.scope"]
    child = subprocess.Popen(["sleep", "120"])
    home = os.path.join(mount, _own_cgroup(child.pid, version, mount).lstrip("/"))
    proc_cgroup = Path(f"/proc/{child.pid}/cgroup")
    r = ContainerResolver(ttl=0.0)
    try:
        with _cgroups(mount, parts) as created:
            leaf = created[-1]
            _move(child.pid, leaf)
            try:
                assert r.labels(child.pid) == (cid, uid), proc_cgroup.read_text()
                with _cgroups(leaf, spoof) as nested:
                    _move(child.pid, nested[-1])
                    assert r.labels(child.pid) == (cid, uid)
                    _move(child.pid, leaf)
            finally:
                _move(child.pid, home)
            _outside_containers(child.pid)
            assert r.labels(child.pid) == NONE  # back home: the container's labels are gone
    finally:
        child.kill()
        child.wait()
    assert not os.path.exists(os.path.join(mount, top))
