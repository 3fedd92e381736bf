"""RS256 tickets end to end: the real `meetgate serve` signs with a key file and serves the public
half at `/_meetgate/keys/<hex(sha256(kid))>.pem`; the test then does what prosody's
mod_auth_token does with `asap_key_server` pointed there: take the kid from a real ticket's
header, fetch that path, and check the ticket's signature with the PEM it got."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from gateway.ticket_keys import generate_private_pem
from tests.fixtures.gateway_server import GatewayServer, start_gateway
from tests.fixtures.processes import stop_process
from tests.integration.journeys import admit, new_room

pytestmark = pytest.mark.slow

KEYS_PATH = "/_meetgate/keys"


def key_name(kid: str) -> str:
    return hashlib.sha256(kid.encode()).hexdigest() + ".pem"


def public_pem(private_pem: bytes) -> bytes:
    key = serialization.load_pem_private_key(private_pem, password=None)
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


class RsGateway:
    def __init__(self, server: GatewayServer, keys: dict[str, bytes]) -> None:
        self.server = server
        self.keys = keys


@pytest.fixture(scope="module")
def rs_gateway(tmp_path_factory: pytest.TempPathFactory, jitsi_web: Any) -> Iterator[RsGateway]:
    """A gateway on RS256 with two keys, mid-rotation: "r-old" still configured, "r-new" active.
    The key files sit in tickets/ next to the config, named relative to it, mode 0600."""
    workdir = tmp_path_factory.mktemp("rs-gateway")
    (workdir / "tickets").mkdir(mode=0o700)
    keys = {kid: generate_private_pem() for kid in ("r-old", "r-new")}
    for kid, pem in keys.items():
        path = workdir / "tickets" / f"{kid}.pem"
        path.write_bytes(pem)
        path.chmod(0o600)
    tickets = """[tickets]
algorithm = "RS256"
ttl_seconds = 120
active_kid = "r-new"
[[tickets.keys]]
kid = "r-old"
private_key_file = "tickets/r-old.pem"
[[tickets.keys]]
kid = "r-new"
private_key_file = "tickets/r-new.pem"
"""
    server, proc = start_gateway(workdir, upstream=jitsi_web.url, tickets=tickets)
    yield RsGateway(server, keys)
    stop_process(proc)


def test_prosody_verifies_a_real_ticket_with_the_served_key(rs_gateway: RsGateway) -> None:
    server = rs_gateway.server
    admitted = admit(server, new_room(server))
    header = jwt.get_unverified_header(admitted.ticket)
    assert header == {"alg": "RS256", "typ": "JWT", "kid": "r-new"}

    # mod_auth_token: <asap_key_server>/<hex(sha256(kid))>.pem, over plain HTTP.
    with httpx.Client(base_url=server.url, trust_env=False) as prosody:
        response = prosody.get(f"{KEYS_PATH}/{key_name(header['kid'])}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-pem-file"
    assert "public" in response.headers["cache-control"]
    assert response.content == public_pem(rs_gateway.keys["r-new"])
    assert b"PRIVATE" not in response.content

    claims = jwt.decode(
        admitted.ticket,
        response.content,
        algorithms=["RS256"],
        audience="jitsi",
        issuer="meetgate",
        options={"require": ["exp", "nbf", "iss", "aud", "sub", "room"]},
    )
    assert claims["room"] == admitted.room
    assert claims["sub"] == "meet.test"
    # The other configured key is served too (tickets it signed stay valid while configured),
    # and it does not verify this ticket.
    with httpx.Client(base_url=server.url, trust_env=False) as prosody:
        old = prosody.get(f"{KEYS_PATH}/{key_name('r-old')}")
    assert old.status_code == 200
    assert old.content == public_pem(rs_gateway.keys["r-old"])
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(admitted.ticket, old.content, algorithms=["RS256"], audience="jitsi")


def raw_get(server: GatewayServer, target: str) -> int:
    """The status for a request line sent as written (no client-side path normalisation)."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        request = f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
        sock.sendall(request.encode("latin-1"))
        head = b""
        while b"\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
    return int(head.split(b" ", 2)[1])


@pytest.mark.parametrize(
    "name",
    [
        key_name("r-new").upper(),
        key_name("r-new")[:-4].upper() + ".pem",
        key_name("r-new")[:-4] + ".PEM",
        key_name("r-new")[1:],
        "0" + key_name("r-new"),
        key_name("r-new")[:-4],
        key_name("r-new")[:-4] + ".pem.pem",
        key_name("r-unknown"),
        key_name(""),
        "r-new.pem",
        "r-new",
        "",
    ],
)
def test_key_endpoint_refuses_every_other_name(rs_gateway: RsGateway, name: str) -> None:
    with httpx.Client(base_url=rs_gateway.server.url, trust_env=False) as client:
        response = client.get(f"{KEYS_PATH}/{name}")
    assert response.status_code == 404
    assert b"PUBLIC KEY" not in response.content


@pytest.mark.parametrize(
    "target",
    [
        f"{KEYS_PATH}/../keys/{key_name('r-new')}",
        f"{KEYS_PATH}/%2e%2e/keys/{key_name('r-new')}",
        f"{KEYS_PATH}/..%2Fkeys%2F{key_name('r-new')}",
        f"{KEYS_PATH}/{key_name('r-new')}%00",
        f"{KEYS_PATH}/x/{key_name('r-new')}",
        f"{KEYS_PATH}//{key_name('r-new')}",
        f"{KEYS_PATH}/..%2F..%2Fmeetgate.toml",
        f"{KEYS_PATH}/../../tickets/r-new.pem",
        f"{KEYS_PATH}/%2e%2e%2f%2e%2e%2ftickets%2fr-new.pem",
    ],
)
def test_key_endpoint_path_tricks_find_nothing(rs_gateway: RsGateway, target: str) -> None:
    assert raw_get(rs_gateway.server, target) == 404


def test_key_endpoint_only_answers_get(rs_gateway: RsGateway) -> None:
    with httpx.Client(base_url=rs_gateway.server.url, trust_env=False) as client:
        for method in ("POST", "PUT", "DELETE"):
            response = client.request(method, f"{KEYS_PATH}/{key_name('r-new')}")
            assert response.status_code == 404, method


def test_hs256_gateway_serves_no_key(gateway: GatewayServer) -> None:
    with httpx.Client(base_url=gateway.url, trust_env=False) as client:
        response = client.get(f"{KEYS_PATH}/{key_name('k1')}")
    assert response.status_code == 404
