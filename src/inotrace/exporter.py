"""HTTP: `/` landing page, the telemetry path, health endpoints."""

from __future__ import annotations

import errno
import html
import logging
import socket
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import (  # client_python's server pieces (its start_http_server's)
    ThreadingWSGIServer,
    _get_best_family,
    _SilentHandler,
)

from . import __version__
from .coalesce import Coalesced
from .errors import InotraceError

if TYPE_CHECKING:
    from .webguard import WebGuard

log = logging.getLogger(__name__)


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


class _Server(ThreadingWSGIServer):
    """client_python's thread-per-request server (daemon threads), with a
    reusable address and a listen backlog sized for scrape storms."""

    allow_reuse_address = True
    # socketserver's listen backlog is 5: a burst of scrapes beyond it waits
    # for SYN retransmits (1 s, 3 s...) before even reaching the 503 rule.
    request_queue_size = 1024

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver prints a traceback: a client that resets mid-request is not one
        log.debug("request from %s failed", client_address, exc_info=True)


class _TLSServer(_Server):
    """TLS on each accepted connection, in the connection's own thread (a slow
    handshake must not stall accept()), with the web config in force then."""

    guard: WebGuard

    def finish_request(self, request: Any, client_address: Any) -> None:
        conn = self.guard.handshake(request)
        if conn is None:
            return
        try:
            super().finish_request(conn, client_address)
        finally:
            conn.close()


def _server_class(host: str, port: int, guard: WebGuard | None = None) -> type[_Server]:
    """The address family the host needs (client_python's own choice of it), in TLS if configured."""
    family, _addr = _get_best_family(host, port)  # type: ignore[no-untyped-call]
    base = _TLSServer if guard is not None and guard.tls else _Server
    return type("Server", (base,), {"address_family": family, "guard": guard})


LANDING = """<!doctype html>
<html><head><title>inotrace</title></head>
<body><h1>inotrace {version}</h1>
<p>inotify instances, watches and limits, traced with eBPF.</p>
<ul><li><a href="{path}">Metrics</a></li>
<li><code>/api/v1/watches?pid=N</code>: what process N watches, as JSON</li></ul>
</body></html>
"""

Ready = Callable[[], bool]
# None when healthy, else what is wrong (the body of the 503)
Health = Callable[[], str | None]


class RequestCap:
    """`--web.max-requests` (node_exporter's flag and rule): telemetry requests
    beyond this many in flight get a 503 at once rather than queueing behind
    the others (a scrape storm must not pile up threads and latency); 0: no cap.
    Rejections are counted for the exporter's own metrics."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.rejected = 0
        self._slots = threading.BoundedSemaphore(limit) if limit else None
        self._lock = threading.Lock()  # for `rejected`: handlers run on many threads

    def enter(self) -> bool:
        if self._slots is None or self._slots.acquire(blocking=False):
            return True
        with self._lock:
            self.rejected += 1
        return False

    def leave(self) -> None:
        if self._slots is not None:
            self._slots.release()


def _text(start_response: Callable[..., Any], status: str, body: str) -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
    return [body.encode()]


Response = tuple[str, list[tuple[str, str]], bytes]
# What a telemetry response depends on (format, compression, name[] filter).
SHARE_KEYS = ("REQUEST_METHOD", "HTTP_ACCEPT", "HTTP_ACCEPT_ENCODING", "QUERY_STRING")
# Distinct such requests whose renders are shared; others render alone (the
# query string is the client's: the table must stay small).
SHARED_MAX = 16


def shared_renders(registry: CollectorRegistry, telemetry_path: str) -> Callable[[dict[str, Any]], Response]:
    """client_python's exposition, rendered once for requests that arrive
    together and ask for the same thing (see coalesce)."""
    metrics_app = make_wsgi_app(registry)
    renders: dict[tuple[str, ...], Coalesced[Response]] = {}

    def bake(environ: dict[str, Any]) -> Response:
        head: list[Any] = []
        body = b"".join(metrics_app(environ, lambda status, headers, exc_info=None: head.extend((status, headers))))
        return head[0], head[1], body

    def render(environ: dict[str, Any]) -> Response:
        key = tuple(str(environ.get(k, "")) for k in SHARE_KEYS)
        if key not in renders and len(renders) >= SHARED_MAX:
            return bake(environ)
        own = {"PATH_INFO": telemetry_path, **dict(zip(SHARE_KEYS, key, strict=True))}
        return renders.setdefault(key, Coalesced(lambda: bake(own)))()

    return render


WSGIApp = Callable[..., Iterable[bytes]]


def make_app(
    registry: CollectorRegistry,
    telemetry_path: str,
    ready: Ready,
    healthy: Health,
    cap: RequestCap,
    *,
    routes: dict[str, WSGIApp] | None = None,
) -> WSGIApp:
    """The exporter's paths; `routes` adds more (the JSON API)."""
    render = shared_renders(registry, telemetry_path)
    landing = LANDING.format(version=__version__, path=html.escape(telemetry_path)).encode()

    def metrics(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not cap.enter():  # a request waiting for a shared render holds its slot too
            busy = f"limit of {cap.limit} concurrent requests reached\n"
            return _text(start_response, "503 Service Unavailable", busy)
        try:
            status, headers, body = render(environ)
        finally:
            cap.leave()
        start_response(status, headers)
        return [body]

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == telemetry_path:
            return metrics(environ, start_response)
        if path == "/":
            start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
            return [landing]
        if path == "/-/healthy":
            problem = healthy()
            return (
                _text(start_response, "503 Service Unavailable", f"{problem}\n")
                if problem
                else _text(start_response, "200 OK", "ok\n")
            )
        if routes and path in routes:
            return routes[path](environ, start_response)
        if path == "/-/ready":
            if ready():
                return _text(start_response, "200 OK", "ready\n")
            return _text(start_response, "503 Service Unavailable", "not ready\n")
        return _text(start_response, "404 Not Found", "not found\n")

    return app


class Exporter:
    """Binds at construction (so a taken port fails fast), serves on start()."""

    def __init__(
        self,
        listen: str,
        telemetry_path: str,
        registry: CollectorRegistry,
        *,
        ready: Ready,
        healthy: Health,
        max_requests: int,
        web: WebGuard | None = None,
        routes: dict[str, WSGIApp] | None = None,
    ) -> None:
        host, port = parse_listen_address(listen)
        if not telemetry_path.startswith("/") or telemetry_path == "/":
            raise InotraceError(f"bad telemetry path {telemetry_path!r}: must start with / and not be /", code=2)
        self.cap = RequestCap(max_requests)
        app = make_app(registry, telemetry_path, ready, healthy, self.cap, routes=routes)
        if web is not None:
            app = web.wsgi(app)
        self.scheme = "https" if web is not None and web.tls else "http"
        try:
            server_class = _server_class(host, port, web)
            self._server = make_server(host, port, app, server_class=server_class, handler_class=_SilentHandler)
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
