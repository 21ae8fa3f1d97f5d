"""A real `inotrace serve --web.config.file` (TLS, a required client
certificate, basic auth), scraped by a real Prometheus whose scrape_config
has all three; a scrape with the wrong password is refused and says so."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest

from conftest import Running, free_port, wait_until
from pki import Pki, make_pki
from test_prometheus_e2e import Prometheus

pytestmark = pytest.mark.bpf


@pytest.fixture
def base() -> Iterator[Path]:
    # Prometheus runs as root here but CI's clone may be 0700: a directory of its own
    with tempfile.TemporaryDirectory(prefix="inotrace-webconfig-") as d:
        yield Path(d)


def scrape_job(name: str, port: int, pki: Pki, password: str) -> str:
    q = json.dumps  # YAML reads JSON strings: paths stay paths
    return (
        f"  - job_name: {name}\n    scheme: https\n"
        f"    basic_auth: {{username: prom, password: {q(password)}}}\n"
        f"    tls_config: {{ca_file: {q(str(pki.pem('ca')))}, cert_file: {q(str(pki.pem('client')))}, "
        f"key_file: {q(str(pki.key('client')))}}}\n"
        f'    static_configs: [{{targets: ["127.0.0.1:{port}"]}}]\n'
    )


def test_prometheus_scrapes_over_mtls_with_basic_auth(base: Path) -> None:
    pki = make_pki(base / "pki")
    web = base / "web.yml"
    web.write_text(
        "tls_server_config:\n  cert_file: pki/server.pem\n  key_file: pki/server.key\n"
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: pki/ca.pem\n"
        f"basic_auth_users:\n  prom: {bcrypt.hashpw(b's3cret', bcrypt.gensalt(4)).decode()}\n"
    )
    port = free_port()
    exporter = Running(["serve", f"--web.listen-address=127.0.0.1:{port}", f"--web.config.file={web}"])
    prom = None
    try:
        exporter.wait_for_log(f"serving on https://127.0.0.1:{port}/metrics")
        jobs = scrape_job("inotrace-tls", port, pki, "s3cret") + scrape_job("inotrace-guess", port, pki, "guess")
        prom = Prometheus(base, jobs)

        def scraped() -> dict[str, dict]:
            targets = prom.api("/api/v1/targets")["activeTargets"]
            return {t["labels"]["job"]: t for t in targets if t["health"] != "unknown"}

        health = wait_until(lambda: len(got := scraped()) == 2 and got, "Prometheus has scraped both jobs", 60)
        assert health["inotrace-tls"]["health"] == "up", health["inotrace-tls"]
        assert health["inotrace-guess"]["health"] == "down"
        assert "401 Unauthorized" in health["inotrace-guess"]["lastError"]
        assert prom.query('inotrace_probe_attached{job="inotrace-tls"} == 1'), "no probe seen attached"
        exporter.assert_alive()
        assert "Traceback" not in exporter.err_text()
    finally:
        if prom is not None:
            prom.stop()
        assert exporter.stop() == 0
