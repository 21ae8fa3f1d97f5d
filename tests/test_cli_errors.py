"""Bad input and hostile environments: one clear line, non-zero exit, no traceback."""

from __future__ import annotations

import socket
import sys

import pytest

from conftest import assert_one_line_error, run_cli
from inotrace import __version__, bpf_program, cli


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ([], "required"),
        (["serve", "--bogus"], "unrecognized arguments: --bogus"),
        (["serve", "--probes", "uprobe"], "invalid choice"),
        (["trace", "--pid", "abc"], "not a pid"),
        (["trace", "--comm", "a-name-of-16-byt"], "not a comm (1 to 15 bytes"),
        (["trace", "--uid", "-3"], "not a numeric uid"),
        (["serve", "--metrics.max-comms", "0"], "at least 1"),
        (["frobnicate"], "invalid choice"),
        (["snapshot", "--advise", "--exporter", "ftp://x/metrics"], "not an http(s) URL"),
        (["snapshot", "--advise", "--headroom", "0.5"], "between 1 and 100"),
        (["snapshot", "--advise", "--headroom", "lots"], "not a factor"),
    ],
)
def test_bad_flags(args: list[str], needle: str) -> None:
    assert_one_line_error(run_cli(*args), needle, code=2)


def test_version_and_help_need_no_bcc() -> None:
    res = run_cli("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"inotrace {__version__}"
    code = (
        f"import sys; sys.modules['bcc'] = None; from inotrace.cli import main; sys.exit(main({['serve', '--help']!r}))"
    )
    res2 = __import__("subprocess").run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res2.returncode == 0 and "--web.listen-address" in res2.stdout


@pytest.mark.parametrize(
    ("address", "needle", "code"),
    [
        ("localhost", "expected host:port", 2),
        ("127.0.0.1:99999", "port out of range", 2),
        ("127.0.0.1:http", "not a number", 2),
        ("no-such-host.invalid:9842", "cannot listen on", 1),
    ],
)
def test_bad_listen_address(address: str, needle: str, code: int) -> None:
    assert_one_line_error(run_cli("serve", f"--web.listen-address={address}"), needle, code=code)


def test_port_in_use() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = run_cli("serve", f"--web.listen-address=127.0.0.1:{port}")
    assert_one_line_error(res, "address already in use")


def test_bad_telemetry_path() -> None:
    assert_one_line_error(
        run_cli("serve", "--web.telemetry-path=metrics", "--web.listen-address=127.0.0.1:0"),
        "bad telemetry path",
        code=2,
    )


def test_unreadable_btf(tmp_path) -> None:
    res = run_cli("trace", f"--path.sysfs={tmp_path}")
    assert_one_line_error(res, "cannot read kernel BTF")


def test_unwritable_event_log(tmp_path) -> None:
    res = run_cli("serve", "--web.listen-address=127.0.0.1:0", f"--log-events={tmp_path}/no/such/dir/x.jsonl")
    assert_one_line_error(res, "cannot open event log")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (None, "cannot read web config"),
        ("tls_server_config:\n  cert_file: a.pem\n", "missing one of key or key_file"),
        ("basic_auth_users:\n  prom: hunter2\n", "the password of 'prom' is not a bcrypt hash"),
        ("basic_auth_user: {}\n", "unknown field 'basic_auth_user' in the file"),
    ],
)
def test_bad_web_config_at_start(tmp_path, text: str | None, needle: str) -> None:
    path = tmp_path / "web.yml"
    if text is not None:
        path.write_text(text)
    res = run_cli("serve", "--web.listen-address=127.0.0.1:0", f"--web.config.file={path}")
    assert_one_line_error(res, needle)


def _run_python(code: str) -> __import__("subprocess").CompletedProcess[str]:
    return __import__("subprocess").run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_bcc_missing_names_the_package() -> None:
    res = _run_python("import sys; sys.modules['bcc'] = None; from inotrace.cli import main; sys.exit(main(['trace']))")
    assert_one_line_error(res, "python3-bpfcc")


def test_pypi_bcc_impostor_is_refused() -> None:
    code = (
        "import sys, types; sys.modules['bcc'] = types.ModuleType('bcc'); "
        "from inotrace.cli import main; sys.exit(main(['trace']))"
    )
    assert_one_line_error(_run_python(code), "is not BCC")


def test_not_root(monkeypatch, capsys) -> None:
    monkeypatch.setattr(cli.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(cli, "_effective_caps", lambda: 0)
    assert cli.main(["trace"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["inotrace: must run as root (or with CAP_BPF and CAP_PERFMON) to load BPF programs"]


def test_missing_kernel_headers(monkeypatch, capsys) -> None:
    monkeypatch.setattr(bpf_program, "kernel_headers_dir", lambda: "/nonexistent/build")
    assert cli.main(["trace"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "kernel headers not found" in err[0]


def test_bpf_unavailable(monkeypatch, capsys) -> None:
    """The kernel refuses to load the programs (EPERM, as under lockdown or seccomp)."""
    real = bpf_program.Program.attach

    def refuse(self: bpf_program.Program, mode: str) -> list:
        def load_func(*_a: object, **_k: object) -> None:
            raise Exception("Failed to load BPF program b'tp_enter_inotify_init': Operation not permitted")

        monkeypatch.setattr(self.bpf, "load_func", load_func)
        monkeypatch.setattr(self.bpf, "attach_tracepoint", lambda **_k: load_func())
        monkeypatch.setattr(self.bpf, "attach_kprobe", lambda **_k: load_func())
        return real(self, mode)

    monkeypatch.setattr(bpf_program.Program, "attach", refuse)
    assert cli.main(["trace"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot attach probe inotify_init" in err[0] and "Operation not permitted" in err[0]
