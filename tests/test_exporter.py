"""The HTTP side on its own (no BPF): address families, probes, the request cap."""

from __future__ import annotations

import threading

import pytest
from prometheus_client import CollectorRegistry, Gauge

from conftest import http_get
from inotrace.errors import InotraceError
from inotrace.exporter import Exporter


def serving(listen: str, **kw: object) -> tuple[Exporter, str]:
    registry = CollectorRegistry()
    Gauge("inotrace_test_value", "a value", registry=registry).set(7)
    options = {"ready": lambda: True, "healthy": lambda: None, "max_requests": 40, **kw}
    exp = Exporter(listen, "/metrics", registry, **options)  # type: ignore[arg-type]
    exp.start()
    host, port = exp.address[0], exp.address[1]
    return exp, f"http://[{host}]:{port}" if ":" in str(host) else f"http://{host}:{port}"


@pytest.mark.parametrize("listen", ["127.0.0.1:0", "[::1]:0"])
def test_serves_on_either_address_family(listen: str) -> None:
    exp, url = serving(listen)
    try:
        status, text = http_get(url + "/metrics")
        assert status == 200 and "inotrace_test_value 7.0" in text
        assert http_get(url + "/-/healthy") == (200, "ok\n") and http_get(url + "/-/ready") == (200, "ready\n")
        assert http_get(url + "/nope")[0] == 404
    finally:
        exp.stop()


def test_unhealthy_says_why_and_not_ready_is_503() -> None:
    exp, url = serving("127.0.0.1:0", healthy=lambda: "main loop has not turned for 9.0 s", ready=lambda: False)
    try:
        assert http_get(url + "/-/healthy") == (503, "main loop has not turned for 9.0 s\n")
        assert http_get(url + "/-/ready") == (503, "not ready\n")
    finally:
        exp.stop()


def test_requests_beyond_the_cap_get_503_at_once() -> None:
    """A render that blocks holds the only slot: the next request is refused, not queued."""
    registry = CollectorRegistry()
    entered, release = threading.Event(), threading.Event()

    class Slow:
        def collect(self) -> list[object]:
            entered.set()
            assert release.wait(10)
            return []

    exp = Exporter("127.0.0.1:0", "/metrics", registry, ready=lambda: True, healthy=lambda: None, max_requests=1)
    registry.register(Slow())  # type: ignore[arg-type]
    exp.start()
    url = f"http://127.0.0.1:{exp.address[1]}/metrics"
    first: list[int] = []
    t = threading.Thread(target=lambda: first.append(http_get(url)[0]))
    try:
        t.start()
        assert entered.wait(10)
        assert http_get(url + "?name[]=other") == (503, "limit of 1 concurrent requests reached\n")
        assert exp.cap.rejected == 1
    finally:
        release.set()
        t.join(10)
        exp.stop()
    assert first == [200]


def test_a_bad_listen_address_is_one_clear_error() -> None:
    with pytest.raises(InotraceError, match="port out of range"):
        Exporter(
            "127.0.0.1:70000", "/metrics", CollectorRegistry(), ready=lambda: True, healthy=lambda: None, max_requests=0
        )
