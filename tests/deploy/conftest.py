"""Real local stand-ins for `meetgate doctor`: a Redis with AOF, a static web server for Jitsi's
config.js, a token-checking signalling server and a TLS front (tests/deploy/standin_app.py)."""

from __future__ import annotations

import datetime
import ipaddress
import secrets
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.fixtures.processes import free_port, start_listening, stop_process
from tests.fixtures.redis_server import REDIS_SERVER

STANDIN_APP = Path(__file__).with_name("standin_app.py")
APP_ID = "meetgate"
AUDIENCE = "jitsi"


@pytest.fixture(scope="session")
def aof_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server of the tests' own with the append-only file on, as deploy/ runs it."""
    workdir = tmp_path_factory.mktemp("aof-redis")
    port = free_port()
    args = [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    args += ["--appendonly", "yes", "--dir", str(workdir)]
    proc = start_listening(args, port, workdir / "redis.log")
    yield f"redis://127.0.0.1:{port}/0"
    stop_process(proc)


@dataclass(frozen=True, slots=True)
class StaticSite:
    url: str
    root: Path


@pytest.fixture
def static_site(tmp_path: Path) -> Iterator[StaticSite]:
    """Python's own http.server on a free port, serving `root` (write config.js there)."""
    root = tmp_path / "site"
    root.mkdir()
    (root / "index.html").write_text("<!DOCTYPE html><title>Jitsi Meet</title>\n")
    port = free_port()
    args = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(root)]
    proc = start_listening([*args, str(port)], port, tmp_path / "http-server.log")
    yield StaticSite(url=f"http://127.0.0.1:{port}", root=root)
    stop_process(proc)


@dataclass(frozen=True, slots=True)
class Signalling:
    url: str
    ticket_secret: str


@pytest.fixture(scope="session")
def token_signalling(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Signalling]:
    """The stand-in prosody with JWT auth: SASL succeeds only with a valid ticket."""
    workdir = tmp_path_factory.mktemp("signalling")
    secret = secrets.token_urlsafe(48)
    port = free_port()
    env = {
        "STANDIN_TICKET_SECRET": secret,
        "STANDIN_APP_ID": APP_ID,
        "STANDIN_AUDIENCE": AUDIENCE,
    }
    args = [sys.executable, str(STANDIN_APP), "--role", "signalling", "--port", str(port)]
    proc = start_listening(args, port, workdir / "signalling.log", env=env)
    yield Signalling(url=f"http://127.0.0.1:{port}", ticket_secret=secret)
    stop_process(proc)


@dataclass(frozen=True, slots=True)
class TlsFront:
    url: str
    cafile: Path


def _certificates(workdir: Path) -> tuple[Path, Path, Path]:
    """A private CA and a certificate it signed for 127.0.0.1: (ca, cert, key) PEM files."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "meetgate test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = workdir / "ca.pem", workdir / "cert.pem", workdir / "key.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_path, cert_path, key_path


@pytest.fixture(scope="session")
def tls_front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsFront]:
    """The stand-in TLS front on https://127.0.0.1:<port>, its certificate from a private CA."""
    workdir = tmp_path_factory.mktemp("front")
    ca, cert, key = _certificates(workdir)
    port = free_port()
    args = [sys.executable, str(STANDIN_APP), "--role", "front", "--port", str(port)]
    args += ["--certfile", str(cert), "--keyfile", str(key)]
    proc = start_listening(args, port, workdir / "front.log")
    yield TlsFront(url=f"https://127.0.0.1:{port}", cafile=ca)
    stop_process(proc)
