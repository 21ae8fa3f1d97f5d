"""Real certificates for the web-config tests, made by the openssl CLI.

A CA; two server certificates for 127.0.0.1 and localhost; two client
certificates from that CA (SANs scraper.test and other.test); and a
"stranger", self-signed, that no configuration trusts. EC P-256 keys: fast.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

DAYS = "2"


@dataclass(frozen=True)
class Pki:
    base: Path

    def pem(self, name: str) -> Path:
        return self.base / f"{name}.pem"

    def key(self, name: str) -> Path:
        return self.base / f"{name}.key"


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def _self_signed(base: Path, name: str, subject: str) -> None:
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", DAYS,
        "-subj", subject, "-keyout", str(base / f"{name}.key"), "-out", str(base / f"{name}.pem"),
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip


def _signed(base: Path, name: str, san: str, usage: str) -> None:
    key, csr, pem = (str(base / f"{name}.{ext}") for ext in ("key", "csr", "pem"))
    _openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-subj", f"/CN={name}", "-keyout", key, "-out", csr,
    )  # fmt: skip
    ext = base / f"{name}.ext"
    ext.write_text(f"subjectAltName={san}\nextendedKeyUsage={usage}\nbasicConstraints=CA:FALSE\n")
    _openssl(
        "x509", "-req", "-in", csr, "-CA", str(base / "ca.pem"), "-CAkey", str(base / "ca.key"),
        "-CAcreateserial", "-days", DAYS, "-extfile", str(ext), "-out", pem,
    )  # fmt: skip


def make_pki(base: Path) -> Pki:
    base.mkdir(parents=True, exist_ok=True)
    _self_signed(base, "ca", "/CN=inotrace test CA")
    _self_signed(base, "stranger", "/CN=stranger")
    _signed(base, "server", "IP:127.0.0.1,DNS:localhost", "serverAuth")
    _signed(base, "server2", "IP:127.0.0.1,DNS:localhost", "serverAuth")  # a rotated one
    _signed(base, "client", "DNS:scraper.test", "clientAuth")
    _signed(base, "other", "DNS:other.test", "clientAuth")
    return Pki(base)
