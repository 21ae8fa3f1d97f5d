"""--web.config.file on its own: the toolkit's format read and checked, the
pieces a request meets (credentials, the bcrypt cache, SANs, the rate limit),
and re-reading the file. Certificates are real (openssl); nothing listens."""

from __future__ import annotations

import base64
import logging
import os
import ssl
from pathlib import Path

import bcrypt
import pytest

from inotrace import webguard
from inotrace.webconfig import WebConfigError, load, seconds
from inotrace.webguard import AUTH_CACHE_SIZE, TokenBucket, WebGuard, _basic_credentials, _san_allowed
from pki import Pki, make_pki

HASH = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode()  # cost 4: the tests need not be slow


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def write(path: Path, text: str) -> Path:
    """Replaced by rename, as a deploy tool (or a Kubernetes Secret) does."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def tls_yaml(pki: Pki, extra: str = "") -> str:
    return f"tls_server_config:\n  cert_file: {pki.pem('server')}\n  key_file: {pki.key('server')}\n{extra}"


def test_a_full_config_is_read_with_files_relative_to_it(pki: Pki) -> None:
    cfg = load(
        str(
            write(
                pki.base / "web.yml",
                "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n"
                "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n"
                "  min_version: TLS13\n  client_allowed_sans: [scraper.test]\n"
                f"basic_auth_users:\n  prom: {HASH}\n"
                "http_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n"
                "rate_limit:\n  burst: 5\n  interval: 1m30s\n",
            )
        )
    )
    assert cfg.context is not None
    assert cfg.context.verify_mode == ssl.CERT_REQUIRED
    assert cfg.context.minimum_version == ssl.TLSVersion.TLSv1_3
    assert cfg.users == {"prom": HASH.encode()}
    assert cfg.headers == {"X-Frame-Options": "deny"}
    assert cfg.rate == (5, 90.0)
    assert cfg.allowed_sans == ("scraper.test",)
    assert cfg.files == tuple(str(pki.base / n) for n in ("web.yml", "server.pem", "server.key", "ca.pem"))


def test_an_empty_file_is_plain_http_with_nothing_required(tmp_path: Path) -> None:
    cfg = load(str(write(tmp_path / "web.yml", "")))
    assert (cfg.context, cfg.users, cfg.headers, cfg.rate) == (None, {}, {}, None)


def test_inline_pem_is_loaded_through_memfds_left_closed(pki: Pki, tmp_path: Path) -> None:
    cert, key = pki.pem("server").read_text(), pki.key("server").read_text()
    indent = "\n".join
    text = (
        "tls_server_config:\n  cert: |\n"
        + indent("    " + ln for ln in cert.splitlines())
        + "\n  key: |\n"
        + indent("    " + ln for ln in key.splitlines())
        + "\n"
    )
    before = len(os.listdir("/proc/self/fd"))
    cfg = load(str(write(tmp_path / "web.yml", text)))
    assert cfg.context is not None
    assert len(os.listdir("/proc/self/fd")) == before


BAD = [
    ("tls_config: {}\n", "unknown field 'tls_config' in the file"),
    ("- a\n", "the file must be a mapping"),
    ("tls_server_config:\n  certfile: x\n", "unknown field 'certfile' in tls_server_config"),
    ("tls_server_config:\n  cert_file: server.pem\n", "missing one of key or key_file"),
    ("tls_server_config:\n  key_file: server.key\n", "missing one of cert or cert_file"),
    ("tls_server_config:\n  cert_file: server.pem\n  key_file: nope.key\n", "cannot load the certificate and key"),
    ("basic_auth_users:\n  prom: s3cret\n", "the password of 'prom' is not a bcrypt hash"),
    ("basic_auth_users: [prom]\n", "basic_auth_users must be a mapping"),
    ("http_server_config:\n  headers:\n    Server: x\n", "HTTP header 'Server' can not be configured"),
    ("http_server_config:\n  headers:\n    X-Frame-Options: allow\n", "invalid value for X-Frame-Options"),
    ("http_server_config:\n  http2: maybe\n", "http_server_config.http2 must be true or false"),
    ("rate_limit:\n  burst: 1\n  interval: 1 sec\n", "not a duration like 1s or 250ms"),
    ("rate_limit:\n  burst: -1\n  interval: 1s\n", "rate_limit.burst must be a whole number"),
    ("a: [\n", "is not YAML"),
]
BAD_TLS = [
    ("  client_auth_type: RequestClientCert\n", "client_auth_type RequestClientCert is not supported"),
    ("  client_auth_type: RequireAnyClientCert\n", "client_auth_type RequireAnyClientCert is not supported"),
    ("  client_auth_type: Sometimes\n", "invalid client_auth_type: 'Sometimes'"),
    ("  client_ca_file: ca.pem\n", "client CA's have been configured without a Client Auth Policy"),
    ("  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: nope.pem\n", "cannot load the client CA"),
    ("  min_version: TLS14\n", "unknown TLS version in min_version: 'TLS14'"),
    ("  cipher_suites: [TLS_RSA_WITH_RC4]\n", "unknown cipher: TLS_RSA_WITH_RC4"),
    ("  curve_preferences: [CurveP256, X25519]\n", "Python's ssl sets one curve"),
    ("  curve_preferences: [P256]\n", "unknown curve: P256"),
    ("  prefer_server_cipher_suites: 1\n", "prefer_server_cipher_suites must be true or false"),
]


@pytest.mark.parametrize(("text", "needle"), BAD + [(None, n) for _t, n in BAD_TLS], ids=lambda v: str(v)[:40])
def test_a_bad_file_is_one_clear_line(pki: Pki, text: str | None, needle: str) -> None:
    if text is None:
        text = tls_yaml(pki, dict((n, t) for t, n in BAD_TLS)[needle])
    path = write(pki.base / "bad.yml", text)  # server.pem etc.: relative to the file
    with pytest.raises(WebConfigError) as e:
        load(str(path))
    assert needle in str(e.value) and "\n" not in str(e.value)
    assert str(e.value).startswith(f"web config {path}")


def test_a_missing_file_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(WebConfigError, match=r"cannot read web config .*nope.yml: No such file or directory$"):
        load(str(tmp_path / "nope.yml"))


def test_go_cipher_names_become_openssls(pki: Pki) -> None:
    names = (
        "[TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256, TLS_AES_128_GCM_SHA256]"
    )
    cfg = load(str(write(pki.base / "web.yml", tls_yaml(pki, f"  cipher_suites: {names}\n"))))
    assert cfg.context is not None
    tls12 = {c["name"] for c in cfg.context.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert tls12 == {"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-CHACHA20-POLY1305"}


@pytest.mark.parametrize(
    ("text", "value"), [("1s", 1.0), ("250ms", 0.25), ("1m30s", 90.0), ("1.5h", 5400.0), ("10us", 1e-5), (0, 0.0)]
)
def test_go_durations(text: str | int, value: float) -> None:
    assert seconds(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["", "1", "s", "1d", "-1s", "1s2", 5])
def test_not_durations(text: str | int) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        seconds(text)


def test_the_token_bucket_refills_one_per_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(webguard.time, "monotonic", lambda: now[0])
    bucket = TokenBucket(2, 0.5)
    assert [bucket.allow() for _ in range(3)] == [True, True, False]
    now[0] += 0.5
    assert [bucket.allow(), bucket.allow()] == [True, False]
    now[0] += 60  # never more than the burst
    assert [bucket.allow() for _ in range(3)] == [True, True, False]


def basic(raw: bytes) -> str:
    return "Basic " + base64.b64encode(raw).decode()


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (basic(b"prom:pw"), ("prom", b"pw")),
        (basic(b"prom:p:w"), ("prom", b"p:w")),  # the first colon splits, as RFC 7617 says
        (basic(b"prom:"), ("prom", b"")),
        ("basic " + base64.b64encode(b"u:p").decode(), ("u", b"p")),
        (basic(b"no colon"), (None, None)),
        ("Basic !!!", (None, None)),
        ("Bearer abc", (None, None)),
        ("", (None, None)),
        (None, (None, None)),
    ],
)
def test_basic_credentials(header: str | None, expected: tuple[str | None, bytes | None]) -> None:
    assert _basic_credentials(header) == expected


@pytest.fixture
def guard(tmp_path: Path) -> WebGuard:
    y_hash = "$2y$" + bcrypt.hashpw(b"htpasswd", bcrypt.gensalt(4)).decode()[4:]  # htpasswd -B writes $2y$
    return WebGuard(str(write(tmp_path / "web.yml", f"basic_auth_users:\n  prom: {HASH}\n  old: '{y_hash}'\n")))


def test_basic_auth_checks_user_and_password(guard: WebGuard) -> None:
    cfg = guard.current()
    assert guard.authorized(cfg, basic(b"prom:s3cret"))
    assert guard.authorized(cfg, basic(b"old:htpasswd"))
    assert not guard.authorized(cfg, basic(b"prom:wrong"))
    assert not guard.authorized(cfg, basic(b"nobody:s3cret"))
    assert not guard.authorized(cfg, basic(b"prom:" + b"s3cret" * 13))  # 78 bytes: bcrypt reads only 72
    assert not guard.authorized(cfg, None)


def test_a_verified_password_is_cached_and_the_cache_is_bounded(
    guard: WebGuard, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[bytes] = []
    real = webguard._checkpw
    monkeypatch.setattr(webguard, "_checkpw", lambda pw, h: calls.append(pw) or real(pw, h))
    cfg = guard.current()
    assert guard.authorized(cfg, basic(b"prom:s3cret")) and guard.authorized(cfg, basic(b"prom:s3cret"))
    assert not guard.authorized(cfg, basic(b"nobody:x")) and not guard.authorized(cfg, basic(b"nobody:x"))
    assert calls == [b"s3cret", b"x"]  # once each: the unknown user's fake check is cached too
    for i in range(AUTH_CACHE_SIZE * 2):
        guard.authorized(cfg, basic(b"prom:guess%d" % i))
    assert len(guard._verified) <= AUTH_CACHE_SIZE
    assert all(b"s3cret" not in k for k in guard._verified)  # keys are hashes, never a password


def test_client_sans(pki: Pki) -> None:
    allowed = ("scraper.test", "::1", "spiffe://x/y")
    assert _san_allowed({"subjectAltName": (("DNS", "scraper.test"),)}, allowed)
    assert _san_allowed({"subjectAltName": (("IP Address", "0:0:0:0:0:0:0:1\n"),)}, allowed)
    assert _san_allowed({"subjectAltName": (("URI", "spiffe://x/y"),)}, allowed)
    assert not _san_allowed({"subjectAltName": (("DNS", "other.test"), ("IP Address", "zz"))}, allowed)
    assert not _san_allowed({"subject": ((("commonName", "scraper.test"),),)}, allowed)  # a CN is not a SAN
    assert not _san_allowed(None, allowed)


def test_a_changed_file_is_re_read_and_a_bad_one_keeps_the_last_good(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path / "web.yml", f"basic_auth_users:\n  prom: {HASH}\n")
    guard = WebGuard(str(path))
    write(path, f"basic_auth_users:\n  prom: {HASH}\n  grafana: {HASH}\n")
    assert set(guard.current().users) == {"prom", "grafana"}
    good = guard.current()
    with caplog.at_level(logging.INFO, logger="inotrace.webguard"):
        write(path, "basic_auth_users:\n  prom: plain\n")
        assert guard.current() is good and guard.current() is good
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [f"web config {path}: basic_auth_users: the password of 'prom' is not a bcrypt hash; "
                      "keeping the configuration in force"]  # fmt: skip
    write(path, "")
    assert guard.current().users == {}  # a good file again is taken


def test_tls_cannot_be_switched_while_running(pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    path = write(pki.base / "switch.yml", tls_yaml(pki))
    guard = WebGuard(str(path))
    good = guard.current()
    with caplog.at_level(logging.ERROR, logger="inotrace.webguard"):
        write(path, "")
        assert guard.current() is good
    assert "TLS cannot be turned on or off while running" in caplog.text


def test_the_deploy_example_is_a_valid_config(pki: Pki, tmp_path: Path) -> None:
    """deploy/web-config.yml, with its certificate files in place, loads as written."""
    example = Path(__file__).parent.parent / "deploy" / "web-config.yml"
    for name, src in (
        ("server.crt", pki.pem("server")),
        ("server.key", pki.key("server")),
        ("scraper-ca.crt", pki.pem("ca")),
    ):
        (tmp_path / name).write_bytes(src.read_bytes())
    cfg = load(str(write(tmp_path / "web-config.yml", example.read_text())))
    assert cfg.context is not None and cfg.context.verify_mode == ssl.CERT_REQUIRED
    assert bcrypt.checkpw(b"change-me", cfg.users["prometheus"])
    assert cfg.headers["X-Content-Type-Options"] == "nosniff"
