"""The web configuration in force, applied to each connection and request.

As exporter-toolkit does, the file is looked at again for every new connection
and request (here: its files are stat()ed, and read again only when one
changed), so a rotated certificate or a new user takes effect without a
restart. Unlike the toolkit, which answers 500 while the file is bad, a bad
file at run time is logged once and the last good configuration kept. Whether
the port speaks TLS is fixed at start, as in the toolkit.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import logging
import os
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from .webconfig import WebConfig, WebConfigError, load

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 10.0  # seconds a client gets to start and finish TLS (a stalled one holds a thread)
AUTH_CACHE_SIZE = 100  # the toolkit's: verified (user, hash, password) triples
# bcrypt of "fakepassword", the toolkit's: an unknown user costs what a known one does
FAKE_HASH = b"$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi"
PLAIN_ON_TLS = b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
TLS_HANDSHAKE = 0x16  # the first byte of every TLS connection (a handshake record)

Signature = tuple[tuple[int, int, int] | None, ...]


def _signature(files: Iterable[str]) -> Signature:
    out: list[tuple[int, int, int] | None] = []
    for name in files:
        try:
            st = os.stat(name)  # follows symlinks: a Kubernetes Secret's update swaps them
            out.append((st.st_ino, st.st_size, st.st_mtime_ns))
        except OSError:
            out.append(None)
    return tuple(out)


class TokenBucket:
    """golang.org/x/time/rate's Limiter as the toolkit uses it: `burst` tokens,
    one more each `interval` seconds; a request takes one or gets a 429."""

    def __init__(self, burst: int, interval: float) -> None:
        self.burst, self.interval = burst, interval
        self._tokens, self._at = float(burst), time.monotonic()
        self._lock = threading.Lock()

    def allow(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._at) / self.interval)
            self._at = now
            if self._tokens >= 1:
                self._tokens -= 1
                return True
            return False


class WebGuard:
    def __init__(self, path: str) -> None:
        self.config = load(path)  # a bad file at start: WebConfigError, one line
        self.tls = self.config.context is not None
        self._sig = _signature(self.config.files)
        self._bad: Signature | None = None  # the bad version already logged
        self._lock = threading.Lock()
        self._bucket = TokenBucket(*self.config.rate) if self.config.rate else None
        self._verified: dict[bytes, bool] = {}
        self._cache_lock = threading.Lock()
        self._bcrypt_lock = threading.Lock()  # one bcrypt at a time, as in the toolkit: it is CPU

    def current(self) -> WebConfig:
        sig = _signature(self.config.files)
        if sig == self._sig:
            return self.config
        with self._lock:
            if sig not in (self._sig, self._bad):
                self._reload(sig)
        return self.config

    def _reload(self, sig: Signature) -> None:
        try:
            cfg = load(self.config.path)
            if (cfg.context is not None) != self.tls:
                raise WebConfigError("TLS cannot be turned on or off while running: restart inotrace")
        except WebConfigError as e:
            log.error("%s; keeping the configuration in force", e)
            self._bad = sig
            return
        if cfg.rate != self.config.rate:
            self._bucket = TokenBucket(*cfg.rate) if cfg.rate else None
        self.config, self._sig, self._bad = cfg, _signature(cfg.files), None
        log.info("web config %s re-read", cfg.path)

    def handshake(self, sock: socket.socket) -> ssl.SSLSocket | None:
        """The connection in TLS, or None (closed or answered) if it must not go on."""
        cfg = self.current()
        assert cfg.context is not None
        sock.settimeout(HANDSHAKE_TIMEOUT)
        try:
            first = sock.recv(1, socket.MSG_PEEK)
            if first and first[0] != TLS_HANDSHAKE:
                sock.sendall(PLAIN_ON_TLS)  # Go's answer, rather than a reset the client cannot read
                return None
            conn = cfg.context.wrap_socket(sock, server_side=True)
        except OSError as e:  # ssl.SSLError is one: a bad or missing client certificate, a scanner
            log.debug("TLS handshake failed: %s", e)
            return None
        if cfg.allowed_sans is not None and not _san_allowed(conn.getpeercert(), cfg.allowed_sans):
            log.debug("client certificate has none of client_allowed_sans")
            conn.close()
            return None
        return conn

    def authorized(self, cfg: WebConfig, header: str | None) -> bool:
        user, password = _basic_credentials(header)
        if user is None or password is None:
            return False
        known = user in cfg.users
        hashed = cfg.users.get(user, FAKE_HASH)
        # the key keeps no password in memory, only a hash of the triple
        key = hashlib.sha256(b"\0".join((user.encode("utf-8", "surrogateescape"), hashed, password))).digest()
        with self._cache_lock:
            ok = self._verified.get(key)
        if ok is None:
            with self._bcrypt_lock:
                ok = _checkpw(password, hashed)
            with self._cache_lock:
                if len(self._verified) >= AUTH_CACHE_SIZE:  # the toolkit's random eviction of a tenth
                    for k in random.sample(list(self._verified), len(self._verified) // 10 + 1):
                        del self._verified[k]
                self._verified[key] = ok
        return known and ok

    def wsgi(self, app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
        """`app` behind the configuration's headers, rate limit and basic auth."""

        def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            cfg = self.current()
            extra = list(cfg.headers.items())

            def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
                return start_response(status, headers + extra, exc_info)

            bucket = self._bucket
            if bucket is not None and not bucket.allow():
                return _refuse(start, "429 Too Many Requests", [])
            if cfg.users and not self.authorized(cfg, environ.get("HTTP_AUTHORIZATION")):
                return _refuse(start, "401 Unauthorized", [("WWW-Authenticate", "Basic")])
            return app(environ, start)

        return guarded


def _refuse(start: Callable[..., Any], status: str, headers: list[tuple[str, str]]) -> list[bytes]:
    start(status, [("Content-Type", "text/plain; charset=utf-8"), *headers])
    return [status.split(" ", 1)[1].encode() + b"\n"]


def _basic_credentials(header: str | None) -> tuple[str | None, bytes | None]:
    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None, None
    user, sep, password = raw.partition(b":")
    if not sep:
        return None, None
    return user.decode("utf-8", "surrogateescape"), password


def _checkpw(password: bytes, hashed: bytes) -> bool:
    import bcrypt  # noqa: PLC0415 - only for basic_auth_users

    try:
        return bool(bcrypt.checkpw(password, hashed))
    except ValueError:  # over bcrypt's 72 bytes, or a hash it cannot read: not this password
        return False


def _san_allowed(cert: Any, allowed: tuple[str, ...]) -> bool:
    """Any of the certificate's DNS, email, IP or URI names in `allowed` (the toolkit's rule)."""
    for kind, value in (cert or {}).get("subjectAltName", ()):
        name = value
        if kind == "IP Address":
            try:
                name = ipaddress.ip_address(value.strip()).compressed  # OpenSSL writes IPv6 long-hand
            except ValueError:
                continue
        if kind in ("DNS", "email", "IP Address", "URI") and name in allowed:
            return True
    return False
