"""RS256 tickets end to end: the real `meetgate serve` signs with a key file and serves the public
half at `/_meetgate/keys/<hex(sha256(kid))>.pem`; the test then does what prosody's
mod_auth_token does with `asap_key_server` pointed there: take the kid from a real ticket's
header, fetch that path, and check the ticket's signature with the PEM it got."""

from __future__ import annotations

import hashlib
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from gateway.doctor import LoginResult, websocket_login
from gateway.settings import load_settings
from gateway.store.records import Admission, Role
from gateway.ticket_keys import generate_private_pem, hmac_key_id, load_rsa_private_key, rsa_key_id
from gateway.tickets import TicketAuthority
from tests.deploy.conftest import STANDIN_APP
from tests.fixtures.gateway_server import GatewayServer, start_gateway
from tests.fixtures.http_clients import TLS
from tests.fixtures.processes import (
    free_port,
    port_open,
    start_listening,
    start_process,
    stop_process,
    wait_until,
)
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


def kid_of(private_pem: bytes) -> str:
    return rsa_key_id(load_rsa_private_key(private_pem).public_key())


class RsGateway:
    def __init__(self, server: GatewayServer, keys: dict[str, bytes]) -> None:
        self.server = server
        self.keys = keys
        self.kids = {label: kid_of(pem) for label, pem in keys.items()}


@pytest.fixture(scope="module")
def rs_gateway(tmp_path_factory: pytest.TempPathFactory, jitsi_web: Any) -> Iterator[RsGateway]:
    """A gateway on RS256 with two keys, mid-rotation: "r-new" listed first (it signs), "r-old"
    still configured. The key files sit in tickets/ next to the config, named relative to it,
    mode 0600; their ids are derived from the keys."""
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
[[tickets.keys]]
private_key_file = "tickets/r-new.pem"
[[tickets.keys]]
private_key_file = "tickets/r-old.pem"
"""
    server, proc = start_gateway(workdir, upstream=jitsi_web.url, tickets=tickets)
    yield RsGateway(server, keys)
    stop_process(proc)


def test_prosody_verifies_a_real_ticket_with_the_served_key(rs_gateway: RsGateway) -> None:
    server = rs_gateway.server
    admitted = admit(server, new_room(server))
    header = jwt.get_unverified_header(admitted.ticket)
    assert header == {"alg": "RS256", "typ": "JWT", "kid": rs_gateway.kids["r-new"]}

    # mod_auth_token: <asap_key_server>/<hex(sha256(kid))>.pem, over plain HTTP.
    with httpx.Client(base_url=server.url, trust_env=False, verify=TLS) as prosody:
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
    with httpx.Client(base_url=server.url, trust_env=False, verify=TLS) as prosody:
        old = prosody.get(f"{KEYS_PATH}/{key_name(rs_gateway.kids['r-old'])}")
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


# Other spellings of the active key's file name (`name`), and names of keys nobody configured.
OTHER_NAMES = {
    "upper": lambda name: name.upper(),
    "upper hex": lambda name: name[:-4].upper() + ".pem",
    "upper suffix": lambda name: name[:-4] + ".PEM",
    "shorter": lambda name: name[1:],
    "longer": lambda name: "0" + name,
    "no suffix": lambda name: name[:-4],
    "two suffixes": lambda name: name[:-4] + ".pem.pem",
    "unknown kid": lambda name: key_name("r-unknown"),
    "empty kid": lambda name: key_name(""),
    "file name": lambda name: "r-new.pem",
    "label": lambda name: "r-new",
    "empty": lambda name: "",
}


@pytest.mark.parametrize("spelling", OTHER_NAMES)
def test_key_endpoint_refuses_every_other_name(rs_gateway: RsGateway, spelling: str) -> None:
    name = OTHER_NAMES[spelling](key_name(rs_gateway.kids["r-new"]))
    with httpx.Client(base_url=rs_gateway.server.url, trust_env=False, verify=TLS) as client:
        response = client.get(f"{KEYS_PATH}/{name}")
    assert response.status_code == 404
    assert b"PUBLIC KEY" not in response.content


@pytest.mark.parametrize(
    "target",
    [
        "{keys}/../keys/{name}",
        "{keys}/%2e%2e/keys/{name}",
        "{keys}/..%2Fkeys%2F{name}",
        "{keys}/{name}%00",
        "{keys}/x/{name}",
        "{keys}//{name}",
        "{keys}/..%2F..%2Fmeetgate.toml",
        "{keys}/../../tickets/r-new.pem",
        "{keys}/%2e%2e%2f%2e%2e%2ftickets%2fr-new.pem",
    ],
)
def test_key_endpoint_path_tricks_find_nothing(rs_gateway: RsGateway, target: str) -> None:
    name = key_name(rs_gateway.kids["r-new"])
    assert raw_get(rs_gateway.server, target.format(keys=KEYS_PATH, name=name)) == 404


def test_key_endpoint_only_answers_get(rs_gateway: RsGateway) -> None:
    name = key_name(rs_gateway.kids["r-new"])
    with httpx.Client(base_url=rs_gateway.server.url, trust_env=False, verify=TLS) as client:
        for method in ("POST", "PUT", "DELETE"):
            response = client.request(method, f"{KEYS_PATH}/{name}")
            assert response.status_code == 404, method


def test_hs256_gateway_serves_no_key(gateway: GatewayServer) -> None:
    name = key_name(hmac_key_id(gateway.ticket_secret.encode()))
    with httpx.Client(base_url=gateway.url, trust_env=False, verify=TLS) as client:
        response = client.get(f"{KEYS_PATH}/{name}")
    assert response.status_code == 404


# ------------------------------------------- rotation and clocks, as prosody caches and checks them


class Deployment:
    """`meetgate init` configs served in turn on the same ports, and one signalling stand-in that
    plays prosody with `asap_key_server` pointed at them: it fetches a kid's key once and caches
    it by kid for as long as it runs (mod_auth_token), and checks nbf and exp with no leeway."""

    def __init__(self, workdir: Path, upstream: str) -> None:
        self.workdir = workdir
        self.upstream = upstream
        self.config = workdir / "meetgate.toml"
        self.port, self.admin_port = free_port(), free_port()
        self.signalling_port = free_port()
        self.signalling = f"http://127.0.0.1:{self.signalling_port}"
        self.public_url = f"http://127.0.0.1:{self.port}"
        self.env = {
            "MEETGATE_LISTEN__PORT": str(self.port),
            "MEETGATE_ADMIN__PORT": str(self.admin_port),
        }

    def start_signalling(self) -> subprocess.Popen[bytes]:
        env = {
            "STANDIN_KEY_SERVER": f"http://127.0.0.1:{self.port}{KEYS_PATH}",
            "STANDIN_APP_ID": "meetgate",
            "STANDIN_AUDIENCE": "jitsi",
        }
        args = [sys.executable, str(STANDIN_APP), "--role", "signalling"]
        args += ["--port", str(self.signalling_port)]
        return start_listening(args, self.signalling_port, self.workdir / "signalling.log", env)

    def init(self) -> None:
        """`meetgate init --force`: a fresh config with a new RS256 key, over the old one."""
        args = ["init", "--force", "--path", str(self.config), "--upstream", self.upstream]
        result = subprocess.run(
            [sys.executable, "-m", "gateway.cli", *args, "--public-url", self.public_url],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr

    def serve(self) -> tuple[GatewayServer, subprocess.Popen[bytes]]:
        settings = load_settings(self.config, environ=self.env)
        log = self.workdir / "meetgate.log"
        args = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(self.config)]
        proc = start_process(args, log, env=self.env, cwd=self.workdir)

        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"meetgate exited early:\n{log.read_text()}")
            return port_open(self.port) and port_open(self.admin_port)

        try:
            wait_until(ready, timeout=20, what="meetgate serve")
        except BaseException:
            stop_process(proc)
            raise
        server = GatewayServer(
            url=f"http://127.0.0.1:{self.port}",
            admin_url=f"http://127.0.0.1:{self.admin_port}",
            admin_token=settings.admin.token.get_secret_value(),
            config_path=self.config,
            log_path=log,
        )
        return server, proc

    async def login(self, ticket: str) -> LoginResult:
        """What the stand-in prosody answers a login with `ticket` (as Jitsi's client logs in)."""
        return (await websocket_login(self.signalling, "meet.jitsi", ticket, 10)).result


@pytest.fixture
def deployment(tmp_path: Path, jitsi_web: Any) -> Iterator[Deployment]:
    deployment = Deployment(tmp_path, jitsi_web.url)
    signalling = deployment.start_signalling()
    yield deployment
    stop_process(signalling)


async def test_init_force_twice_a_day_gives_a_new_kid_that_prosody_accepts(
    deployment: Deployment,
) -> None:
    """The regression: `init --force` twice on one day reused the kid `k<date>`, and prosody,
    which caches public keys by kid until it restarts, refused every ticket of the new key."""
    tickets = []
    for _ in range(2):
        deployment.init()
        server, proc = deployment.serve()
        try:
            ticket = admit(server, new_room(server)).ticket
            assert await deployment.login(ticket) is LoginResult.ACCEPTED
        finally:
            stop_process(proc)
        tickets.append(ticket)
    first, second = (jwt.get_unverified_header(ticket)["kid"] for ticket in tickets)
    assert first != second
    # The stand-in does cache by kid: with no Meetgate left to serve any key, the first ticket
    # still verifies with the key it fetched for that kid (what made a reused kid fatal).
    assert await deployment.login(tickets[0]) is LoginResult.ACCEPTED


async def test_a_prosody_a_little_behind_accepts_fresh_tickets(deployment: Deployment) -> None:
    """Tickets from a clock 5 s ahead of prosody's: their nbf lies in prosody's past only thanks
    to the allowance (without it, prosody refuses them)."""
    deployment.init()
    server, proc = deployment.serve()
    try:
        ahead = time.time() + 5
        allowed = load_settings(deployment.config, environ=deployment.env)
        assert allowed.tickets.clock_skew_seconds == 30
        none = load_settings(
            deployment.config,
            environ={**deployment.env, "MEETGATE_TICKETS__CLOCK_SKEW_SECONDS": "0"},
        )
        admission = Admission(
            id="adm-clock",
            room=new_room(server),
            identity="user-clock",
            name="Ada",
            role=Role.ATTENDEE,
            via="invite",
            created_at=ahead,
            expires_at=ahead + 600,
        )
        backdated = TicketAuthority.from_settings(allowed).issue(admission, ahead)
        exact = TicketAuthority.from_settings(none).issue(admission, ahead)
        assert await deployment.login(backdated) is LoginResult.ACCEPTED
        assert await deployment.login(exact) is LoginResult.REFUSED
    finally:
        stop_process(proc)


def test_init_force_twice_gives_different_kids(tmp_path: Path) -> None:
    path = tmp_path / "meetgate.toml"
    kids = []
    for algorithm in ("RS256", "RS256", "HS256", "HS256"):
        args = ["init", "--force", "--path", str(path), "--algorithm", algorithm]
        result = subprocess.run(
            [sys.executable, "-m", "gateway.cli", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        tickets = load_settings(path, environ={}).tickets
        # No kid written: it is derived from the key, whatever the date.
        assert re.search(r"^\s*(active_)?kid\s*=", path.read_text(), re.MULTILINE) is None
        assert tickets.keys[0].key_id == tickets.signing_kid
        assert f"ticket key id (kid): {tickets.signing_kid}" in result.stdout
        kids.append(tickets.signing_kid)
    assert len(set(kids)) == 4
