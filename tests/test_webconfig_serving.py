"""--web.config.file on a listening exporter, with real clients: curl and
Python's ssl, over real TLS with real certificates (openssl). The exporter
runs in-process (no BPF needed: the web side is the same); a real
`inotrace serve` scraped by a real Prometheus is in test_bpf_webconfig.py."""

from __future__ import annotations

import base64
import logging
import socket
import ssl
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import bcrypt
import pytest
from prometheus_client import CollectorRegistry, Gauge

from conftest import http_get
from inotrace.exporter import Exporter
from inotrace.webguard import WebGuard
from pki import Pki, make_pki
from test_webconfig_unit import write

HASH = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode()
Serve = Callable[[str], tuple[str, Path]]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    """An exporter behind the given web config; its base URL and the config's path."""
    started: list[Exporter] = []

    def start(text: str) -> tuple[str, Path]:
        path = write(tmp_path / "web.yml", text)
        registry = CollectorRegistry()
        Gauge("inotrace_test_value", "a value", registry=registry).set(7)
        guard = WebGuard(str(path))
        exp = Exporter(
            "127.0.0.1:0", "/metrics", registry, ready=lambda: True, healthy=lambda: None, max_requests=8, web=guard
        )
        exp.start()
        started.append(exp)
        return f"{exp.scheme}://127.0.0.1:{exp.address[1]}", path

    yield start
    for exp in started:
        exp.stop()


def tls(pki: Pki, extra: str = "", server: str = "server") -> str:
    return f"tls_server_config:\n  cert_file: {pki.pem(server)}\n  key_file: {pki.key(server)}\n{extra}"


def mtls(pki: Pki, auth: str, extra: str = "") -> str:
    return tls(pki, f"  client_auth_type: {auth}\n  client_ca_file: {pki.pem('ca')}\n{extra}")


def curl(pki: Pki, url: str, *args: str) -> tuple[int, str]:
    """curl's exit status, and what it got: headers and body, or its error."""
    res = subprocess.run(
        ["curl", "-sS", "-i", "--max-time", "10", "--cacert", str(pki.pem("ca")), *args, url],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return res.returncode, res.stdout if res.returncode == 0 else res.stderr


def client_cert(pki: Pki, name: str) -> tuple[str, ...]:
    return ("--cert", str(pki.pem(name)), "--key", str(pki.key(name)))


def python_get(pki: Pki, url: str, auth: bytes | None = None, cert: str | None = None) -> int:
    """The status Python's ssl and urllib get, verifying the server as a client should."""
    ctx = ssl.create_default_context(cafile=str(pki.pem("ca")))
    if cert:
        ctx.load_cert_chain(str(pki.pem(cert)), str(pki.key(cert)))
    req = urllib.request.Request(url)
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(auth).decode())
    try:
        with urllib.request.urlopen(req, timeout=10, context=ctx) as resp:
            assert b"inotrace_test_value 7.0" in resp.read()
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def test_curl_and_python_need_the_password_over_tls(pki: Pki, serve: Serve) -> None:
    url, _ = serve(tls(pki, f"basic_auth_users:\n  prom: {HASH}\n"
                            "http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n"))  # fmt: skip
    assert url.startswith("https://")
    rc, out = curl(pki, url + "/metrics")
    assert rc == 0 and out.startswith("HTTP/1.0 401"), out
    assert "WWW-Authenticate: Basic" in out and "X-Content-Type-Options: nosniff" in out
    rc, out = curl(pki, url + "/metrics", "-u", "prom:s3cret")
    assert rc == 0 and out.startswith("HTTP/1.0 200") and "inotrace_test_value 7.0" in out, out
    assert "X-Content-Type-Options: nosniff" in out
    assert curl(pki, url + "/metrics", "-u", "prom:guess")[1].startswith("HTTP/1.0 401")
    assert curl(pki, url + "/-/healthy")[1].startswith("HTTP/1.0 401")  # every path, as in the toolkit
    assert python_get(pki, url + "/metrics") == 401
    assert python_get(pki, url + "/metrics", auth=b"prom:s3cret") == 200
    assert python_get(pki, url + "/metrics", auth=b"grafana:s3cret") == 401


def test_plain_http_on_the_tls_port_gets_an_answer_it_can_read(pki: Pki, serve: Serve) -> None:
    url, _ = serve(tls(pki))
    plain = url.replace("https://", "http://")
    assert http_get(plain + "/metrics") == (400, "Client sent an HTTP request to an HTTPS server.\n")
    rc, out = curl(pki, plain + "/metrics")
    assert rc == 0 and out.startswith("HTTP/1.0 400"), out
    assert python_get(pki, url + "/metrics") == 200  # and the port still speaks TLS


def test_min_version_refuses_older_clients(pki: Pki, serve: Serve) -> None:
    url, _ = serve(tls(pki, "  min_version: TLS13\n"))
    rc, out = curl(pki, url + "/metrics", "--tls-max", "1.2")
    assert rc != 0 and "alert protocol version" in out, out
    ctx = ssl.create_default_context(cafile=str(pki.pem("ca")))
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(urllib.error.URLError, match="PROTOCOL_VERSION"):
        urllib.request.urlopen(url + "/metrics", timeout=10, context=ctx)
    assert curl(pki, url + "/metrics", "--tlsv1.3")[1].startswith("HTTP/1.0 200")


def refused(pki: Pki, url: str, cert: str | None) -> bool:
    """The connection was refused at TLS (curl fails; urllib gets no answer)."""
    rc, out = curl(pki, url, *(client_cert(pki, cert) if cert else ()))
    try:
        python_get(pki, url, cert=cert)
    except (OSError, urllib.error.URLError):  # a TLS alert, or a reset, in the first read under TLS 1.3
        return rc != 0 and "HTTP/" not in out
    return False


def test_mtls_requires_a_certificate_from_the_ca(pki: Pki, serve: Serve) -> None:
    url, _ = serve(mtls(pki, "RequireAndVerifyClientCert"))
    assert refused(pki, url + "/metrics", None)
    assert refused(pki, url + "/metrics", "stranger")
    assert curl(pki, url + "/metrics", *client_cert(pki, "client"))[1].startswith("HTTP/1.0 200")
    assert python_get(pki, url + "/metrics", cert="client") == 200


def test_a_certificate_if_given_must_verify(pki: Pki, serve: Serve) -> None:
    url, _ = serve(mtls(pki, "VerifyClientCertIfGiven"))
    assert python_get(pki, url + "/metrics") == 200
    assert refused(pki, url + "/metrics", "stranger")
    assert python_get(pki, url + "/metrics", cert="other") == 200


def test_client_allowed_sans_picks_which_certificates(pki: Pki, serve: Serve) -> None:
    url, _ = serve(mtls(pki, "RequireAndVerifyClientCert", "  client_allowed_sans: [scraper.test]\n"))
    assert python_get(pki, url + "/metrics", cert="client") == 200
    assert refused(pki, url + "/metrics", "other")  # from the same CA, but not the allowed name


def test_the_rate_limit_answers_429(serve: Serve) -> None:
    url, _ = serve("rate_limit:\n  burst: 2\n  interval: 1h\n")
    assert url.startswith("http://")  # a web config need not turn on TLS
    assert [http_get(url + "/metrics")[0] for _ in range(3)] == [200, 200, 429]


def peer_serial(url: str, pki: Pki) -> int:
    port = int(url.rsplit(":", 1)[1])
    ctx = ssl.create_default_context(cafile=str(pki.pem("ca")))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s,
    ):
        der = s.getpeercert(binary_form=True)
    return serial_of(ssl.DER_cert_to_PEM_cert(der or b"").encode())


def serial_of(pem: bytes) -> int:
    out = subprocess.run(["openssl", "x509", "-noout", "-serial"], input=pem, capture_output=True, check=True)
    return int(out.stdout.decode().strip().split("=")[1], 16)


def test_changes_take_effect_without_a_restart_and_a_bad_file_keeps_the_last_good(
    pki: Pki, serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    url, path = serve(tls(pki, f"basic_auth_users:\n  prom: {HASH}\n"))
    assert peer_serial(url, pki) == serial_of(pki.pem("server").read_bytes())
    write(path, tls(pki, f"basic_auth_users:\n  prom: {HASH}\n  grafana: {HASH}\n", server="server2"))
    assert python_get(pki, url + "/metrics", auth=b"grafana:s3cret") == 200  # a new user
    assert peer_serial(url, pki) == serial_of(pki.pem("server2").read_bytes())  # a rotated certificate
    with caplog.at_level(logging.ERROR, logger="inotrace.webguard"):
        write(path, tls(pki, "basic_auth_users:\n  prom: s3cret\n"))
        assert python_get(pki, url + "/metrics", auth=b"grafana:s3cret") == 200
        assert python_get(pki, url + "/metrics", auth=b"prom:s3cret") == 200
    assert [r.getMessage() for r in caplog.records] == [
        f"web config {path}: basic_auth_users: the password of 'prom' is not a bcrypt hash; "
        "keeping the configuration in force"
    ]


def test_a_stalled_or_garbled_handshake_holds_up_no_one(pki: Pki, serve: Serve) -> None:
    url, _ = serve(tls(pki))
    port = int(url.rsplit(":", 1)[1])
    stalled = socket.create_connection(("127.0.0.1", port))  # says nothing
    garbled = socket.create_connection(("127.0.0.1", port))
    garbled.sendall(b"\x16\x03\x01\x00\x05hello" * 4)  # looks like TLS, is not
    try:
        done: list[int] = []
        t = threading.Thread(target=lambda: done.append(python_get(pki, url + "/metrics")))
        t.start()
        t.join(10)
        assert done == [200]
        assert garbled.recv(100) is not None  # an alert or EOF, not a hang (the timeout is the test's)
    finally:
        stalled.close()
        garbled.close()
