"""HTTP: `/` landing page, the telemetry path, health endpoints."""

from __future__ import annotations

import errno
import html
import ipaddress
import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from . import __version__
from .errors import InotraceError


def parse_listen_address(value: str) -> tuple[str, int]:
    """`host:port`, `[v6]:port` or `:port` (all interfaces, said explicitly)."""
    host, sep, port_s = value.rpartition(":")
    if not sep:
        raise InotraceError(f"bad listen address {value!r}: expected host:port", code=2)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_s)
    except ValueError:
        raise InotraceError(f"bad listen address {value!r}: port {port_s!r} is not a number", code=2) from None
    if not 0 <= port <= 65535:
        raise InotraceError(f"bad listen address {value!r}: port out of range", code=2)
    return host or "0.0.0.0", port


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass


def _server_class(host: str) -> type[_Server]:
    try:
        v6 = ipaddress.ip_address(host).version == 6
    except ValueError:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        v6 = bool(infos) and infos[0][0] == socket.AF_INET6
    if not v6:
        return _Server
    return type("_Server6", (_Server,), {"address_family": socket.AF_INET6})


LANDING = """<!doctype html>
<html><head><title>inotrace</title></head>
<body><h1>inotrace {version}</h1>
<p>inotify instances, watches and limits, traced with eBPF.</p>
<ul><li><a href="{path}">Metrics</a></li></ul>
</body></html>
"""

Health = Callable[[], bool]


def make_app(registry: CollectorRegistry, telemetry_path: str, ready: Health) -> Callable[..., Iterable[bytes]]:
    metrics_app = make_wsgi_app(registry)
    landing = LANDING.format(version=__version__, path=html.escape(telemetry_path)).encode()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == telemetry_path:
            return metrics_app(environ, start_response)  # type: ignore[no-any-return]
        if path == "/":
            start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
            return [landing]
        if path == "/-/healthy":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        if path == "/-/ready":
            ok = ready()
            start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"ready\n" if ok else b"not ready\n"]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]

    return app


class Exporter:
    """Binds at construction (so a taken port fails fast), serves on start()."""

    def __init__(self, listen: str, telemetry_path: str, registry: CollectorRegistry, ready: Health) -> None:
        host, port = parse_listen_address(listen)
        if not telemetry_path.startswith("/") or telemetry_path == "/":
            raise InotraceError(f"bad telemetry path {telemetry_path!r}: must start with / and not be /", code=2)
        app = make_app(registry, telemetry_path, ready)
        try:
            self._server = make_server(host, port, app, server_class=_server_class(host), handler_class=_QuietHandler)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise InotraceError(f"cannot listen on {listen}: address already in use") from e
            raise InotraceError(f"cannot listen on {listen}: {e.strerror or e}") from e
        except socket.gaierror as e:
            raise InotraceError(f"cannot listen on {listen}: {e.strerror}") from e
        self.address = self._server.server_address
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
