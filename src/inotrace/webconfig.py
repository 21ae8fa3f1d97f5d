"""`--web.config.file`: exporter-toolkit's web configuration, read as the toolkit reads it.

The same YAML node_exporter takes (https://github.com/prometheus/exporter-toolkit,
docs/web-configuration.md): `tls_server_config`, `basic_auth_users` (bcrypt
hashes), `http_server_config.headers`, `rate_limit`. Unknown keys are errors,
as with the toolkit's strict YAML; relative file names are relative to the
config file. What Python's `ssl` cannot do the toolkit's way is refused with one
line rather than done differently: RequestClientCert and RequireAnyClientCert
(OpenSSL checks every certificate it asks for) and more than one curve.

This module only reads and checks; `webguard` applies it to requests.
"""

from __future__ import annotations

import os
import re
import ssl
from dataclasses import dataclass, field
from typing import Any

from .errors import InotraceError

TOP_KEYS = {"tls_server_config", "http_server_config", "rate_limit", "basic_auth_users"}
TLS_KEYS = {
    "cert", "key", "client_ca", "cert_file", "key_file", "client_auth_type", "client_ca_file",
    "cipher_suites", "curve_preferences", "min_version", "max_version", "prefer_server_cipher_suites",
    "client_allowed_sans",
}  # fmt: skip
TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
# client_auth_type -> what OpenSSL asks of the client; the toolkit's other two
# (RequestClientCert, RequireAnyClientCert) take a certificate without checking it
CLIENT_AUTH = {
    "": ssl.CERT_NONE,
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
UNCHECKED_CLIENT_AUTH = {"RequestClientCert", "RequireAnyClientCert", "RequireClientCert"}
# Go's tls.CipherSuites() names (what the toolkit accepts) -> IANA ids; the
# OpenSSL name is found by id at run time. TLS 1.3 suites are not configurable,
# in Go or OpenSSL: they are accepted and change nothing.
CIPHERS = {
    "TLS_AES_128_GCM_SHA256": 0x1301, "TLS_AES_256_GCM_SHA384": 0x1302, "TLS_CHACHA20_POLY1305_SHA256": 0x1303,
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": 0xC009, "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": 0xC00A,
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": 0xC013, "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": 0xC014,
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": 0xC02B, "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": 0xC02C,
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": 0xC02F, "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": 0xC030,
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": 0xCCA8, "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": 0xCCA9,
}  # fmt: skip
CURVES = {"CurveP256": "prime256v1", "CurveP384": "secp384r1", "CurveP521": "secp521r1", "X25519": "X25519"}
# the only headers the toolkit lets a config set, and their allowed values (None: any)
HEADERS: dict[str, tuple[str, ...] | None] = {
    "Strict-Transport-Security": None,
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": None,
    "Content-Security-Policy": None,
}
BCRYPT_HASH = re.compile(r"\$2[abxy]?\$(0[4-9]|[12]\d|3[01])\$[./A-Za-z0-9]{53}")
GO_DURATION = re.compile(r"((?:\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h))+")
DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class WebConfigError(InotraceError):
    pass


@dataclass(frozen=True)
class WebConfig:
    path: str
    context: ssl.SSLContext | None  # None: plain HTTP
    users: dict[str, bytes] = field(default_factory=dict)  # user -> bcrypt hash
    headers: dict[str, str] = field(default_factory=dict)
    rate: tuple[int, float] | None = None  # (burst, seconds a request) for a token bucket
    allowed_sans: tuple[str, ...] | None = None
    files: tuple[str, ...] = ()  # every file it was made from, to notice a change


def load(path: str) -> WebConfig:
    """The file's configuration, checked the whole way (certificates loaded)."""
    import yaml  # noqa: PLC0415 - only for --web.config.file

    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except OSError as e:
        raise WebConfigError(f"cannot read web config {path}: {e.strerror or e}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise WebConfigError(f"web config {path} is not YAML: {str(e).splitlines()[0]}") from None
    try:
        return _parse(path, {} if doc is None else doc)
    except (ValueError, TypeError) as e:
        raise WebConfigError(f"web config {path}: {e}") from None


def _parse(path: str, doc: Any) -> WebConfig:
    top = _mapping(doc, "the file", TOP_KEYS)
    tls = _mapping(top.get("tls_server_config") or {}, "tls_server_config", TLS_KEYS)
    http = _mapping(top.get("http_server_config") or {}, "http_server_config", {"http2", "headers"})
    _flag(http, "http2", True, "http_server_config")  # accepted; inotrace speaks HTTP/1.1
    base = os.path.dirname(os.path.abspath(path))
    files = [os.path.join(base, str(tls[k])) for k in ("cert_file", "key_file", "client_ca_file") if tls.get(k)]
    sans = tls.get("client_allowed_sans")
    return WebConfig(
        path=path,
        context=_tls_context(tls, base) if _tls_enabled(tls) else None,
        users=_users(top.get("basic_auth_users") or {}),
        headers=_headers(http.get("headers") or {}),
        rate=_rate(top.get("rate_limit") or {}),
        allowed_sans=None if sans is None else tuple(str(s) for s in _list(sans, "client_allowed_sans")),
        files=(os.path.abspath(path), *files),
    )


def _mapping(v: Any, where: str, keys: set[str]) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise ValueError(f"{where} must be a mapping")
    unknown = sorted(str(k) for k in v if k not in keys)
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r} in {where}")
    return v


def _list(v: Any, where: str) -> list[Any]:
    if not isinstance(v, list):
        raise ValueError(f"{where} must be a list")
    return v


def _flag(d: dict[str, Any], key: str, default: bool, where: str) -> bool:
    v = d.get(key, default)
    if not isinstance(v, bool):
        raise ValueError(f"{where}.{key} must be true or false")
    return v


def _tls_enabled(tls: dict[str, Any]) -> bool:
    """The toolkit's IsEnabled: any certificate, key, CA or client auth field set."""
    keys = ("cert", "key", "cert_file", "key_file", "client_ca", "client_ca_file", "client_auth_type")
    return any(tls.get(k) for k in keys)


def _users(users: Any) -> dict[str, bytes]:
    if not isinstance(users, dict):
        raise ValueError("basic_auth_users must be a mapping of user: bcrypt hash")
    out = {}
    for user, hashed in users.items():
        if not isinstance(hashed, str) or not BCRYPT_HASH.fullmatch(hashed):
            raise ValueError(f"basic_auth_users: the password of {str(user)!r} is not a bcrypt hash")
        out[str(user)] = hashed.encode()
    return out


def _headers(headers: Any) -> dict[str, str]:
    if not isinstance(headers, dict):
        raise ValueError("http_server_config.headers must be a mapping")
    for name, value in headers.items():
        if name not in HEADERS:
            raise ValueError(f"HTTP header {str(name)!r} can not be configured")
        allowed = HEADERS[name]
        if allowed is not None and value not in allowed:
            raise ValueError(f"invalid value for {name}: expected one of {list(allowed)}, got {value!r}")
    return {str(k): str(v) for k, v in headers.items()}


def _rate(rate: Any) -> tuple[int, float] | None:
    rate = _mapping(rate, "rate_limit", {"burst", "interval"})
    interval = seconds(rate.get("interval", "0s"))
    burst = rate.get("burst", 0)
    if not isinstance(burst, int) or isinstance(burst, bool) or burst < 0:
        raise ValueError("rate_limit.burst must be a whole number, 0 or more")
    return (burst, interval) if interval else None  # the toolkit: no interval, no limit


def seconds(v: Any) -> float:
    """A Go duration ("1s", "1m30s", "250ms") in seconds."""
    if v == 0:
        return 0.0
    if not isinstance(v, str) or not GO_DURATION.fullmatch(v):
        raise ValueError(f"not a duration like 1s or 250ms: {v!r}")
    return sum(float(n) * DURATION_UNITS[u] for n, u in re.findall(r"([\d.]+)(ns|us|µs|ms|s|m|h)", v))


def _tls_context(tls: dict[str, Any], base: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = _version(tls.get("min_version", "TLS12"), "min_version")
    ctx.maximum_version = _version(tls.get("max_version", "TLS13"), "max_version")
    if not _flag(tls, "prefer_server_cipher_suites", True, "tls_server_config"):
        ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    _load_certificate(ctx, tls, base)
    _client_auth(ctx, tls, base)
    if tls.get("cipher_suites"):
        _ciphers(ctx, _list(tls["cipher_suites"], "cipher_suites"))
    if tls.get("curve_preferences"):
        curves = _list(tls["curve_preferences"], "curve_preferences")
        unknown = [c for c in curves if c not in CURVES]
        if unknown:
            raise ValueError(f"unknown curve: {unknown[0]}")
        if len(curves) > 1:
            raise ValueError("curve_preferences: Python's ssl sets one curve; give one")
        ctx.set_ecdh_curve(CURVES[curves[0]])
    return ctx


def _version(v: Any, key: str) -> ssl.TLSVersion:
    if v not in TLS_VERSIONS:
        raise ValueError(f"unknown TLS version in {key}: {v!r} (TLS10, TLS11, TLS12 or TLS13)")
    return TLS_VERSIONS[v]


def _load_certificate(ctx: ssl.SSLContext, tls: dict[str, Any], base: str) -> None:
    if not (tls.get("cert") or tls.get("cert_file")):
        raise ValueError("missing one of cert or cert_file")
    if not (tls.get("key") or tls.get("key_file")):
        raise ValueError("missing one of key or key_file")
    # inline PEM goes through memfds: ssl takes only file names, and a key must not touch a disk
    fds = [_memfd(str(tls[k])) for k in ("cert", "key") if not tls.get(f"{k}_file")]
    try:
        names = iter(f"/proc/self/fd/{fd}" for fd in fds)
        cert = os.path.join(base, str(tls["cert_file"])) if tls.get("cert_file") else next(names)
        key = os.path.join(base, str(tls["key_file"])) if tls.get("key_file") else next(names)
        ctx.load_cert_chain(cert, key)
    except OSError as e:
        raise ValueError(f"cannot load the certificate and key: {e.strerror or e}") from None
    finally:
        for fd in fds:
            os.close(fd)


def _memfd(text: str) -> int:
    fd = os.memfd_create("inotrace-web-config", os.MFD_CLOEXEC)
    os.write(fd, text.encode())
    return fd


def _client_auth(ctx: ssl.SSLContext, tls: dict[str, Any], base: str) -> None:
    auth = tls.get("client_auth_type") or ""
    if auth in UNCHECKED_CLIENT_AUTH:
        raise ValueError(
            f"client_auth_type {auth} is not supported: OpenSSL checks every client certificate it asks "
            "for (use VerifyClientCertIfGiven or RequireAndVerifyClientCert)"
        )
    if auth not in CLIENT_AUTH:
        raise ValueError(f"invalid client_auth_type: {auth!r}")
    ctx.verify_mode = CLIENT_AUTH[auth]
    ca_file, ca_text = tls.get("client_ca_file"), tls.get("client_ca")
    if (ca_file or ca_text) and ctx.verify_mode == ssl.CERT_NONE:
        raise ValueError("client CA's have been configured without a Client Auth Policy")
    try:
        if ca_file:
            ctx.load_verify_locations(cafile=os.path.join(base, str(ca_file)))
        elif ca_text:
            ctx.load_verify_locations(cadata=str(ca_text))
        elif ctx.verify_mode != ssl.CERT_NONE:
            ctx.load_default_certs(ssl.Purpose.CLIENT_AUTH)  # Go's rule: no CAs given, the system's
    except OSError as e:  # ssl.SSLError is one
        raise ValueError(f"cannot load the client CA: {e.strerror or e}") from None


def _ciphers(ctx: ssl.SSLContext, names: list[Any]) -> None:
    unknown = [n for n in names if n not in CIPHERS]
    if unknown:
        raise ValueError(f"unknown cipher: {unknown[0]}")
    by_id = {c["id"] & 0xFFFF: c["name"] for c in ctx.get_ciphers()}
    tls12 = [n for n in names if CIPHERS[n] > 0x1303]
    missing = [n for n in tls12 if CIPHERS[n] not in by_id]
    if missing:
        raise ValueError(f"cipher {missing[0]} is not available in {ssl.OPENSSL_VERSION}")
    wanted = [by_id[CIPHERS[n]] for n in tls12]
    if wanted:
        ctx.set_ciphers(":".join(wanted))
