"""Which container and pod a process belongs to, from its /proc/PID/cgroup.

No API access: the kubelet and the container runtimes name the cgroups they
create after the pod's UID and the container's id, in a few known shapes:

    cgroupfs driver   /kubepods/burstable/pod<uid>/<64 hex>
                      /kubepods/pod<uid>/crio-<64 hex>
    systemd driver    /kubepods.slice/kubepods-burstable.slice/
                          kubepods-burstable-pod<uid with _>.slice/cri-containerd-<64 hex>.scope
                      (crio-<id>.scope, docker-<id>.scope likewise)
    containerd        .../kubepods-besteffort-pod<uid with _>.slice:cri-containerd:<64 hex>
                      (systemd slice named by the kubelet, cgroupfs layout below it)
    Docker            /docker/<64 hex>, /system.slice/docker-<64 hex>.scope
    Podman            /machine.slice/libpod-<64 hex>.scope
    kind, minikube    kubelet-kubepods-...-pod<uid>.slice (the kubelet's cgroupRoot is /kubelet)

`pod_uid` joins with kube-state-metrics' `kube_pod_info{uid}`; `container_id`
with the id part of `kube_pod_container_info{container_id="containerd://<id>"}`.

Cgroup names are chosen by whoever creates them, and a traced process with a
delegated subtree (systemd user services, rootless Podman, a container with
cgroup write access) can create cgroups named like anything. So:
- ids must be exactly 64 lowercase hex digits and pod UIDs lowercase
  UUID-shaped; a component that is almost right is not a match;
- the component closest to the root decides: what a container creates below
  its own cgroup cannot override what the runtime and the kubelet named above
  it. Only the component right after a pod's cgroup can name its container.
Static pods are named by a 32-hex config hash, not a UUID: they get a
container_id and no pod_uid (their mirror pod's API UID differs anyway).

Paths are read as the reader's cgroup namespace shows them: from inside a
container's namespace, other cgroups appear as `/../../kubepods-...`; `..`
components are skipped, so the labels are the same.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple


class ContainerLabels(NamedTuple):
    container_id: str
    pod_uid: str


NONE = ContainerLabels("", "")

# A /proc/PID/cgroup file has one line per hierarchy, each path at most
# PATH_MAX: anything longer than this is not a cgroup file.
MAX_CGROUP_FILE = 64 * 1024

_HEX64 = r"[0-9a-f]{64}"
_UUID_DASH = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# systemd slice names use "-" for nesting, so the kubelet writes the uid with "_"
_UUID_UNDERSCORE = r"[0-9a-f]{8}_[0-9a-f]{4}_[0-9a-f]{4}_[0-9a-f]{4}_[0-9a-f]{12}"
_HASH32 = r"[0-9a-f]{32}"
# kind and other nodes-in-containers run the kubelet with cgroupRoot /kubelet
_KUBEPODS = r"(?:kubelet-)?kubepods(?:-besteffort|-burstable)?"

# re.ASCII: \d and friends never match other scripts' digits; every pattern is
# used with fullmatch, so a trailing newline or suffix never slips through.
_POD_CGROUPFS = re.compile(rf"pod({_UUID_DASH})", re.ASCII)
_POD_SYSTEMD = re.compile(rf"{_KUBEPODS}-pod({_UUID_UNDERSCORE})\.slice", re.ASCII)
# Static pods are named by a config hash (32 hex), not a UUID: still a pod
# level (so the next component is its container), with no pod_uid.
_POD_STATIC = re.compile(rf"pod{_HASH32}|{_KUBEPODS}-pod{_HASH32}\.slice", re.ASCII)
_SCOPE = re.compile(rf"(?:cri-containerd|crio|docker|libpod)-({_HEX64})\.scope", re.ASCII)
_CRIO_CGROUPFS = re.compile(rf"crio-({_HEX64})", re.ASCII)
_BARE_ID = re.compile(_HEX64, re.ASCII)
# containerd's "slice:prefix:name" form, when the kubelet uses the systemd
# driver and the runtime does not: one component carries both.
_COLON_FORM = re.compile(
    rf"({_KUBEPODS}-pod(?:{_UUID_UNDERSCORE}|{_HASH32})\.slice):(?:cri-containerd|crio|docker):({_HEX64})", re.ASCII
)


def _pod_uid(component: str) -> str | None:
    """The pod UID (dashes) if `component` is a pod-level cgroup, "" if it is
    a static pod's (named by a hash), None if it is not a pod level at all."""
    m = _POD_CGROUPFS.fullmatch(component)
    if m:
        return m.group(1)
    m = _POD_SYSTEMD.fullmatch(component)
    if m:
        return m.group(1).replace("_", "-")
    if _POD_STATIC.fullmatch(component):
        return ""
    return None


def _container_in_pod(component: str) -> str:
    for pattern in (_SCOPE, _CRIO_CGROUPFS, _BARE_ID):
        m = pattern.fullmatch(component)
        if m:
            return m.group(1) if pattern.groups else m.group(0)
    return ""


def parse_path(path: str) -> ContainerLabels:
    """Labels for one cgroup path (see the module docstring for the shapes)."""
    parts = [p for p in path.split("/") if p not in ("", ".", "..")]
    for i, part in enumerate(parts):
        m = _COLON_FORM.fullmatch(part)
        if m:
            uid = _pod_uid(m.group(1))
            return ContainerLabels(m.group(2), uid or "")
        uid = _pod_uid(part)
        if uid is not None:
            return ContainerLabels(_container_in_pod(parts[i + 1]) if i + 1 < len(parts) else "", uid)
        m = _SCOPE.fullmatch(part)
        if m:
            return ContainerLabels(m.group(1), "")
        # cgroupfs Docker: a bare id only counts right under "docker"
        if part == "docker" and i + 1 < len(parts) and _BARE_ID.fullmatch(parts[i + 1]):
            return ContainerLabels(parts[i + 1], "")
    return NONE


def parse_cgroup(text: str) -> ContainerLabels:
    """Labels from the text of /proc/PID/cgroup (cgroup v2, v1 or hybrid).

    The v2 line (`0::/path`) is tried first, then v1's `name=systemd`, then
    the other v1 hierarchies in file order; the first line that names a
    container (or, failing that, a pod) wins. Malformed lines are ignored.
    """
    v2: list[str] = []
    systemd: list[str] = []
    others: list[str] = []
    for line in text.splitlines():
        fields = line.split(":", 2)
        if len(fields) != 3 or not fields[2].startswith("/"):
            continue
        hierarchy, controllers, path = fields
        if hierarchy == "0" and controllers == "":
            v2.append(path)
        elif controllers == "name=systemd":
            systemd.append(path)
        else:
            others.append(path)
    pod_only = NONE
    for path in (*v2, *systemd, *others):
        labels = parse_path(path)
        if labels.container_id:
            return labels
        if labels.pod_uid and not pod_only.pod_uid:
            pod_only = labels
    return pod_only


class ContainerResolver:
    """pid -> ContainerLabels, read from procfs, cached briefly and bounded.

    The cache saves re-reading /proc/PID/cgroup (~9 us) for a burst of calls
    from one process. An entry lives `ttl` seconds: a pid reused by another
    process within that time shows the old labels until then. Thread-safe:
    the scrape thread and the main loop both ask.
    """

    def __init__(
        self,
        procfs: str = "/proc",
        max_entries: int = 4096,
        ttl: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.procfs = procfs
        self.max_entries = max_entries
        self.ttl = ttl
        self._clock = clock
        self._cache: OrderedDict[int, tuple[float, ContainerLabels]] = OrderedDict()
        self._lock = threading.Lock()

    def _read(self, pid: int) -> str | None:
        try:
            fd = os.open(f"{self.procfs}/{pid}/cgroup", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            data = os.read(fd, MAX_CGROUP_FILE + 1)
        except OSError:  # ESRCH: the process exited between open and read
            return None
        finally:
            os.close(fd)
        if len(data) > MAX_CGROUP_FILE:
            return None
        # latin-1 never fails; a non-ASCII byte just fails the patterns
        return data.decode("latin-1")

    def labels(self, pid: int) -> ContainerLabels:
        """Never raises for a vanished, unreadable or odd pid: NONE then."""
        if pid <= 0:
            return NONE
        now = self._clock()
        with self._lock:
            hit = self._cache.get(pid)
            if hit is not None and now - hit[0] < self.ttl:
                self._cache.move_to_end(pid)
                return hit[1]
        text = self._read(pid)
        if text is None:
            # not cached: the pid may be reused by a new process any moment
            return NONE
        result = parse_cgroup(text)
        with self._lock:
            self._cache[pid] = (now, result)
            self._cache.move_to_end(pid)
            while len(self._cache) > self.max_entries:
                self._cache.popitem(last=False)
        return result

    def forget(self, pid: int) -> None:
        """Drop a pid the caller knows has exited."""
        with self._lock:
            self._cache.pop(pid, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._cache)
