"""deploy/: the Kubernetes manifests against the Kubernetes schemas, the
systemd unit through systemd-analyze, the Dockerfile's recipe, and, for real,
`inotrace serve` running with exactly the privileges the unit and the
DaemonSet grant (and failing without each one)."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml  # type: ignore[import-untyped]

from conftest import NOBODY, ROOT, expected_backend, free_port, terminate
from inotrace import DEFAULT_PORT
from inotrace.cli import build_parser

DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
UNIT = DEPLOY / "inotrace.service"
ENV_FILE = DEPLOY / "inotrace.default"
DOCKERFILE = DEPLOY / "Dockerfile"
# Files that are Kubernetes API objects (kubernetes-validate has schemas for them)
API_FILES = ("namespace.yaml", "serviceaccount.yaml", "daemonset.yaml", "service.yaml")
# appArmorProfile (securityContext) is GA since 1.30: the oldest version supported
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())


def _docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]


def _daemonset() -> dict[str, Any]:
    (ds,) = _docs("daemonset.yaml")
    return ds


def _container() -> dict[str, Any]:
    (c,) = _daemonset()["spec"]["template"]["spec"]["containers"]
    return c  # type: ignore[no-any-return]


def _serve_args_ok(args: list[str]) -> None:
    """The flags parse with inotrace's own parser (no flag that does not exist)."""
    ns = build_parser().parse_args(args)
    assert ns.command == "serve"


# --- Kubernetes ------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("name", API_FILES)
def test_manifest_validates_against_kubernetes_schema(name: str, version: str) -> None:
    docs = _docs(name)
    assert docs
    for doc in docs:
        # strict: an unknown or misspelt field is an error, not silently dropped
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_validator_rejects_a_misspelt_field() -> None:
    ds = _daemonset()
    ds["spec"]["template"]["spec"]["hostPid"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(ds, K8S_VERSIONS[-1], strict=True)


def test_kustomization_lists_every_api_object_and_nothing_needing_a_crd() -> None:
    (k,) = _docs("kustomization.yaml")
    assert sorted(k["resources"]) == sorted(API_FILES)
    assert set(API_FILES) | {"kustomization.yaml", "servicemonitor.yaml"} == {p.name for p in K8S.glob("*.yaml")}


def test_names_and_selectors_line_up() -> None:
    ds = _daemonset()
    pod = ds["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert ds["spec"]["selector"]["matchLabels"].items() <= labels.items()
    namespaces = {d["metadata"]["namespace"] for f in API_FILES[1:] for d in _docs(f)}
    (ns,) = _docs("namespace.yaml")
    assert namespaces == {ns["metadata"]["name"]}
    (sa,) = _docs("serviceaccount.yaml")
    assert pod["spec"]["serviceAccountName"] == sa["metadata"]["name"]
    (svc,) = _docs("service.yaml")
    assert svc["spec"]["selector"].items() <= labels.items()
    port_names = {p["name"]: p["containerPort"] for p in _container()["ports"]}
    (svc_port,) = svc["spec"]["ports"]
    assert svc_port["targetPort"] in port_names and svc_port["port"] == DEFAULT_PORT
    (sm,) = _docs("servicemonitor.yaml")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1" and sm["kind"] == "ServiceMonitor"
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["namespaceSelector"]["matchNames"] == [ns["metadata"]["name"]]
    assert {e["port"] for e in sm["spec"]["endpoints"]} <= {p["name"] for p in svc["spec"]["ports"]}


def test_namespace_admits_the_pod_and_the_account_has_no_token() -> None:
    (ns,) = _docs("namespace.yaml")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    (sa,) = _docs("serviceaccount.yaml")
    assert sa["automountServiceAccountToken"] is False
    assert _daemonset()["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


DS_CAPS = {"BPF", "PERFMON", "SYS_PTRACE", "SYSLOG"}


def test_daemonset_privileges_are_the_short_list() -> None:
    spec = _daemonset()["spec"]["template"]["spec"]
    assert spec["hostPID"] is True
    assert not spec.get("hostNetwork") and not spec.get("hostIPC")
    sc = _container()["securityContext"]
    assert sc["privileged"] is False and sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert set(sc["capabilities"]["add"]) == DS_CAPS
    assert sc["seccompProfile"]["type"] == "RuntimeDefault"


def test_daemonset_host_mounts_are_read_only_and_match_the_flags() -> None:
    c = _container()
    volumes = {v["name"]: v for v in _daemonset()["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    host = {}
    for path, m in mounts.items():
        hp = volumes[m["name"]].get("hostPath")
        if hp is not None:
            assert m.get("readOnly") is True, path
            host[path] = hp["path"]
        else:
            assert "emptyDir" in volumes[m["name"]], path
    # BCC needs these at exactly these paths; procfs where --path.procfs says
    assert host == {
        "/host/proc": "/proc",
        "/sys/kernel/tracing": "/sys/kernel/tracing",
        "/lib/modules": "/lib/modules",
        "/usr/src": "/usr/src",
    }
    ns = build_parser().parse_args(c["args"])
    assert host[ns.procfs] == "/proc"
    assert ns.sysfs == "/sys"  # BCC ignores --path.sysfs for tracefs: keep the real /sys
    assert "/tmp" in mounts


def test_daemonset_args_and_probes_exist_in_inotrace() -> None:
    c = _container()
    _serve_args_ok(c["args"])
    ns = build_parser().parse_args(c["args"])
    port = int(ns.listen.rpartition(":")[2])
    assert {p["containerPort"] for p in c["ports"]} == {port}
    assert ns.listen.startswith(":")  # the pod IP, not localhost: Prometheus scrapes it
    assert c["startupProbe"]["httpGet"]["path"] == "/-/healthy"
    assert c["livenessProbe"]["httpGet"]["path"] == "/-/healthy"
    assert c["readinessProbe"]["httpGet"]["path"] == "/-/ready"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"]["port"] in {p["name"] for p in c["ports"]}


# --- systemd --------------------------------------------------------------------------


def _unit() -> dict[str, list[str]]:
    keys: dict[str, list[str]] = {}
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, sep, value = line.partition("=")
        assert sep, line
        keys.setdefault(key, []).append(value)
    return keys


def _unit_caps(key: str) -> set[str]:
    (value,) = _unit()[key]
    return {c.removeprefix("CAP_") for c in value.split()}


def test_systemd_analyze_verify() -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: scripts/setup.sh --test installs it (package systemd)"
    with tempfile.TemporaryDirectory() as d:
        # verify wants ExecStart to exist: point it at this checkout's install
        exe = Path(sys.executable).parent / "inotrace"
        unit = Path(d) / "inotrace.service"
        unit.write_text(UNIT.read_text().replace("/opt/inotrace/bin/inotrace", str(exe)))
        res = subprocess.run(
            [analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60, check=False
        )
        assert res.returncode == 0, res.stderr
        # unknown keys are only warned about: treat them as errors
        assert "inotrace.service" not in res.stdout + res.stderr, res.stdout + res.stderr
        sec = subprocess.run(
            [analyze, "security", "--offline=yes", str(unit)], capture_output=True, text=True, timeout=60, check=False
        )
        m = re.search(r"Overall exposure level for inotrace\.service: ([0-9.]+)", sec.stdout)
        assert m, sec.stdout + sec.stderr
        assert float(m.group(1)) <= 3.0, sec.stdout


def test_systemd_unit_structure() -> None:
    u = _unit()
    assert u["EnvironmentFile"] == ["-/etc/default/inotrace"]
    assert u["Restart"] == ["on-failure"]
    (exec_start,) = u["ExecStart"]
    assert exec_start.endswith(" serve $OPTIONS")
    assert u["DynamicUser"] == ["yes"]
    assert _unit_caps("AmbientCapabilities") == _unit_caps("CapabilityBoundingSet")
    assert _unit_caps("AmbientCapabilities") == {"BPF", "PERFMON", "SYS_PTRACE", "DAC_READ_SEARCH", "SYSLOG"}
    # what would break BCC: kernel headers, kallsyms, other processes' /proc
    for key in ("ProtectKernelModules", "ProtectKernelTunables", "ProtectProc", "ProcSubset", "PrivateUsers"):
        assert key not in u, key
    assert u["SystemCallFilter"] == ["@system-service bpf perf_event_open"]
    (logs,) = u["LogsDirectory"]
    assert logs == "inotrace"


def _env_options() -> list[str]:
    """Every OPTIONS value in the env file, examples (commented out) included."""
    values = []
    for line in ENV_FILE.read_text().splitlines():
        m = re.fullmatch(r"#?OPTIONS=(.*)", line.strip())
        if m:
            (value,) = shlex.split(m.group(1)) or [""]
            values.append(value)
    return values


def test_env_file_options_are_real_flags() -> None:
    values = _env_options()
    assert len(values) >= 2
    for value in values:
        _serve_args_ok(["serve", *value.split()])
    # the active line keeps inotrace's localhost default
    active = [ln for ln in ENV_FILE.read_text().splitlines() if ln.startswith("OPTIONS=")]
    assert active == [f'OPTIONS="--web.listen-address=127.0.0.1:{DEFAULT_PORT}"']


# --- Dockerfile -----------------------------------------------------------------------


def _dockerfile() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            instr, _, rest = line.partition(" ")
            out.append((instr.upper(), rest.strip()))
    return out


def test_dockerfile_recipe() -> None:
    steps = _dockerfile()
    assert steps[0] == ("FROM", "debian:bookworm-slim")
    run = " ".join(rest for instr, rest in steps if instr == "RUN")
    assert "python3-bpfcc" in run
    assert "venv --system-site-packages /opt/inotrace" in run
    assert not re.search(r"pip install[^&]*\bbcc\b", run)  # PyPI's bcc is another project
    import json  # noqa: PLC0415

    entry = json.loads(dict(steps)["ENTRYPOINT"])
    cmd = json.loads(dict(steps)["CMD"])
    assert entry == ["/opt/inotrace/bin/inotrace"]
    _serve_args_ok(cmd)
    # the image's default command is the DaemonSet's
    assert cmd == _container()["args"]
    assert dict(steps)["EXPOSE"] == str(DEFAULT_PORT)
    unit_exec = _unit()["ExecStart"][0].split()[0]
    assert unit_exec == entry[0]  # one install path for both


def test_dockerfile_copies_enough_to_install(tmp_path: Path) -> None:
    """Replay the Dockerfile's COPY and venv steps (not apt, not the network):
    the copied files must be enough for pip to build an inotrace that finds
    its BPF sources."""
    ctx = tmp_path / "src"
    ctx.mkdir()
    for instr, rest in _dockerfile():
        if instr != "COPY":
            continue
        *sources, dest = rest.split()
        for s in sources:
            target = ctx / Path(dest).relative_to("/src") / (Path(s).name if dest.endswith("/") else "")
            target.parent.mkdir(parents=True, exist_ok=True)
            if (ROOT / s).is_dir():
                shutil.copytree(ROOT / s, target, symlinks=True)  # COPY keeps symlinks
            else:
                shutil.copy(ROOT / s, target)
    venv = tmp_path / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120)
    res = subprocess.run(
        [str(venv / "bin/pip"), "install", "-q", "--no-deps", "--no-build-isolation", str(ctx)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    probe = "import importlib.resources as r; print((r.files('inotrace') / 'bpf' / 'inotrace.bpf.c').is_file())"
    out = subprocess.run(
        [str(venv / "bin/python"), "-c", probe], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert out.stdout.strip() == "True"


# --- the privileges, for real ---------------------------------------------------------


@pytest.fixture
def holder() -> Iterator[tuple[int, int]]:
    """Another user's process holding watches before inotrace starts (so they
    can only be seen by reading its fdinfo): (pid, watches)."""
    base = tempfile.mkdtemp(prefix="inotrace-deploy-")
    os.chmod(base, 0o755)
    for i in range(4):
        os.mkdir(os.path.join(base, f"d{i}"))
    proc = subprocess.Popen(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "inotifywait", "-q", "-m", "-r", base],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 10
        while not _has_inotify(proc.pid):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.2)  # let it finish adding the recursive watches
        yield proc.pid, 5
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(base, ignore_errors=True)


def _has_inotify(pid: int) -> bool:
    try:
        return any(os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:inotify" for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return False


@contextlib.contextmanager
def _world_readable_lib() -> Iterator[Path]:
    """inotrace and prometheus_client where any uid can read them: CI's clone
    (and pytest's tmp_path) may sit in directories other uids cannot enter."""
    import prometheus_client  # noqa: PLC0415

    lib = Path(tempfile.mkdtemp(prefix="inotrace-pylib-"))
    try:
        shutil.copytree(ROOT / "src" / "inotrace", lib / "inotrace", symlinks=False)
        shutil.copytree(Path(prometheus_client.__file__).parent, lib / "prometheus_client")
        for p in [lib, *lib.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        yield lib
    finally:
        shutil.rmtree(lib, ignore_errors=True)


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return str(resp.read().decode())


def _run_serve(shell_setup: str, argv: list[str], env: dict[str, str], port: int) -> tuple[int | None, str, str]:
    """Run `argv` (inotrace serve) in a private mount namespace after
    `shell_setup`; return (exit status if it died, stderr, /metrics)."""
    script = shell_setup + '\nexec "$@"'
    with tempfile.TemporaryFile(mode="w+") as stderr:
        proc = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-euc", script, "sh", *argv],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            text=True,
            env=env,
            start_new_session=True,
        )

        def err() -> str:
            stderr.seek(0)
            return stderr.read()

        try:
            deadline = time.monotonic() + 120
            while "serving on" not in err() and proc.poll() is None:
                assert time.monotonic() < deadline, err()
                time.sleep(0.1)
            if proc.poll() is not None:
                return proc.returncode, err(), ""
            assert _scrape(f"http://127.0.0.1:{port}/-/ready").strip() == "ready"
            return None, err(), _scrape(f"http://127.0.0.1:{port}/metrics")
        finally:
            terminate(proc, group=True)


def _value(metrics: str, name: str, **labels: str) -> float | None:
    for line in metrics.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def _exact(metrics: str, holder_pid: int, watches: int) -> bool:
    # Only this holder: other tests run inotify workloads concurrently, so
    # host-wide drift can be non-zero for a moment whatever the privileges.
    return _value(metrics, "inotrace_process_inotify_watches", pid=str(holder_pid)) == watches


# tracefs as on a systemd host / as the DaemonSet mounts it: present, read-only.
# Mounted only inside the private mount namespace, if the host has none yet.
TRACEFS = "mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing"


def _daemonset_run(tmp: Path, caps: set[str], paranoid: bool = True) -> tuple[int | None, str, str]:
    """uid 0 with only `caps` (the container's bounding set), a fresh
    read-only sysfs with the host's tracefs bound read-only on
    /sys/kernel/tracing, the host's /proc read-only at /host/proc."""
    port = free_port()
    host_proc, keep = tmp / "host-proc", tmp / "tracefs"
    host_proc.mkdir()
    keep.mkdir()
    args = [a.replace("/host/proc", str(host_proc)).replace(":9842", f"127.0.0.1:{port}") for a in _container()["args"]]
    args.append("--top-processes=100000")  # other tests' holders must not crowd ours out
    setup = "\n".join(
        [
            TRACEFS,
            f"mount --bind /sys/kernel/tracing {keep}",
            "umount -l /sys",
            "mount -t sysfs -o ro sysfs /sys",
            f"mount --bind {keep} /sys/kernel/tracing",
            "mount -o remount,bind,ro /sys/kernel/tracing",
            f"mount --rbind /proc {host_proc}",
            f"mount -o remount,bind,ro {host_proc}",
        ]
    )
    if paranoid:
        caps = caps | _paranoid_caps()
    bounding = ",".join(["-all", *sorted("+" + c.lower() for c in caps)])
    argv = ["setpriv", f"--bounding-set={bounding}", "--inh-caps=-all", "--", sys.executable, "-m", "inotrace", *args]
    return _run_serve(setup, argv, {**os.environ, "PYTHONPATH": str(ROOT / "src")}, port)


def _systemd_run(caps: set[str]) -> tuple[int | None, str, str]:
    """A DynamicUser-like uid with `caps` as ambient capabilities and the
    env file's OPTIONS, as ExecStart runs it."""
    with _world_readable_lib() as lib:
        return _systemd_run_with(lib, caps)


def _systemd_run_with(lib: Path, caps: set[str]) -> tuple[int | None, str, str]:
    port = free_port()
    (options,) = [v for v in _env_options() if v.startswith("--web.listen-address=127.0.0.1:")][:1]
    args = ["serve", *options.replace(f":{DEFAULT_PORT}", f":{port}").split(), "--top-processes=100000"]
    uid = 61184 + secrets.randbelow(4000)  # systemd's DynamicUser range
    capset = ",".join(["-all", *sorted("+" + c.lower() for c in caps | _paranoid_caps())])
    argv = [
        "setpriv",
        f"--reuid={uid}",
        f"--regid={uid}",
        "--clear-groups",
        f"--inh-caps={capset}",
        f"--ambient-caps={capset}",
        f"--bounding-set={capset}",
        "--",
        "/usr/bin/python3",  # Debian's: it has bcc; the copied lib has the rest
        "-m",
        "inotrace",
        *args,
    ]
    env = {**os.environ, "PYTHONPATH": str(lib), "HOME": "/", "PYTHONDONTWRITEBYTECODE": "1"}
    return _run_serve(TRACEFS, argv, env, port)


def _paranoid_caps() -> set[str]:
    """Debian's kernels patch perf_event_paranoid 3 to require CAP_SYS_ADMIN
    for perf_event_open, as deploy/README.md tells operators to add."""
    with open("/proc/sys/kernel/perf_event_paranoid") as f:
        return {"SYS_ADMIN"} if int(f.read()) > 2 else set()


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (BPF, mount namespaces, setpriv)")


@pytest.mark.bpf
def test_daemonset_capabilities_suffice(tmp_path: Path, holder: tuple[int, int]) -> None:
    _need_root()
    caps = set(_container()["securityContext"]["capabilities"]["add"])
    code, err, metrics = _daemonset_run(tmp_path, caps)
    assert code is None, err
    backend = expected_backend("inotify_add_watch")
    assert _value(metrics, "inotrace_probe_attached", probe="inotify_add_watch", backend=backend) == 1
    assert _exact(metrics, *holder), err + metrics


@pytest.mark.bpf
@pytest.mark.parametrize(
    ("missing", "expected"),
    [
        ("BPF", "without CAP_BPF or CAP_SYS_ADMIN cannot load"),
        ("PERFMON", "cannot attach probe"),
        ("SYS_PTRACE", "drift"),
    ],
)
def test_daemonset_each_capability_is_needed(
    tmp_path: Path, holder: tuple[int, int], missing: str, expected: str
) -> None:
    _need_root()
    caps = set(_container()["securityContext"]["capabilities"]["add"]) - {missing}
    # (SYS_ADMIN, which paranoid kernels need, would stand in for BPF and PERFMON)
    code, err, metrics = _daemonset_run(tmp_path, caps, paranoid=missing == "SYS_PTRACE")
    if expected == "drift":
        # starts, and the kernel's own counter (read in BPF) has the holder's
        # watches, but its fdinfo cannot be read: they are not attributed
        assert code is None, err
        assert _value(metrics, "inotrace_process_inotify_watches", pid=str(holder[0])) in (None, 0.0)
        users = _value(metrics, "inotrace_user_inotify_watches", uid=str(NOBODY))
        assert users is not None and users >= holder[1], metrics
    else:
        assert code == 1, err
        assert expected in err, err


@pytest.mark.bpf
def test_systemd_capabilities_suffice_for_a_dynamic_user(holder: tuple[int, int]) -> None:
    _need_root()
    code, err, metrics = _systemd_run(_unit_caps("AmbientCapabilities"))
    assert code is None, err
    assert _exact(metrics, *holder), err + metrics


@pytest.mark.bpf
def test_systemd_dynamic_user_needs_dac_read_search() -> None:
    _need_root()
    code, err, _ = _systemd_run(_unit_caps("AmbientCapabilities") - {"DAC_READ_SEARCH"})
    assert code == 1, err
    assert "tracefs" in err, err


def test_syslog_is_what_lets_bcc_see_kernel_symbols() -> None:
    """The kprobe backend finds its targets in /proc/kallsyms, whose
    addresses read as 0 without CAP_SYSLOG (kptr_restrict / perf_event_paranoid)."""
    _need_root()

    def first_address(caps: str) -> str:
        res = subprocess.run(
            ["setpriv", f"--bounding-set=-all,{caps}", "--inh-caps=-all", "--", "grep", "-m1", " T ", "/proc/kallsyms"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        return res.stdout.split()[0]

    assert int(first_address("+bpf,+perfmon,+syslog"), 16) != 0
    assert int(first_address("+bpf,+perfmon"), 16) == 0
