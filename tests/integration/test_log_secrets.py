"""Nothing secret in any log line: a whole journey through the real `meetgate serve` (invite, join
link, room page, BOSH, WebSocket, ticket refresh, revocation, lobby, OpenID sign-in, e-mail
code), at DEBUG and at INFO, and no line any logger wrote carries a ticket, an invite code, a
cookie, an OIDC code or state, an e-mail address or code, or the client's address.

The gate listens on 127.0.0.2 and every client connects from 127.0.0.1 (checked below), so the
client's address is told apart from the gate's own in the start-up lines: 127.0.0.1 must appear
nowhere in the log. The upstreams (Jitsi's web server, prosody, the OpenID provider, the SMTP
server) are on 127.0.0.1 as well; no line of a journey that goes well names them either.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.fixtures.gateway_server import GENEROUS_LIMITS, GatewayServer, start_gateway
from tests.fixtures.http_clients import TLS
from tests.fixtures.oidc import (
    authorize,
    begin,
    clients_for,
    oidc_table,
    query_of,
    start_oidc_provider,
    ticket_of,
)
from tests.fixtures.processes import free_port, stop_process, wait_until
from tests.fixtures.smtp import SmtpServer
from tests.fixtures.xmpp_client import XmppClient, XmppConnectFailed
from tests.integration.journeys import (
    Admitted,
    admission_id,
    admit,
    bosh_url,
    csrf_token,
    fresh_ticket,
    host_action,
    signalling_query,
    ws_url,
)
from tests.integration.test_email_codes import answer, ask
from tests.integration.test_lobby import knock, lobby_cookie, request_of

pytestmark = pytest.mark.slow

GATE_HOST = "127.0.0.2"
CLIENT_ADDRESS = "127.0.0.1"
CLIENT_ADDRESSES = (CLIENT_ADDRESS, "::1")
EMAIL_DOMAIN = "example.org"
OIDC_ACCOUNT_EMAIL = "ada@uni.example"
SMTP_TABLE = """
[smtp]
host = "127.0.0.1"
port = {port}
security = "none"
sender = "gate@meet.test"
timeout_seconds = 5
[email_codes]
digits = 8
"""
# Gateways the journey runs against: log level, and [logging] client_addresses.
CONFIGURATIONS = [("debug", "off"), ("info", "off"), ("info", "truncated")]
# An access-log line: method, target, status, time, request id (and the network, if asked).
ACCESS_LINE = re.compile(r" meetgate\.access: (GET|POST|HEAD|WS) (\S+) \d+ [\d.]+ms \[[-0-9a-f]+\]")


@dataclass
class LoggedGateway:
    gateway: GatewayServer
    log_level: str
    client_addresses: str
    provider: str = "idp"

    def lines(self) -> list[str]:
        return self.gateway.log_text().splitlines()


@dataclass
class Secrets:
    """Every secret value the journey handled, by what it is."""

    values: dict[str, set[str]] = field(default_factory=dict)

    def add(self, kind: str, *values: str) -> None:
        for value in values:
            assert value, kind
            self.values.setdefault(kind, set()).add(value)

    def admitted(self, who: Admitted) -> None:
        self.add("ticket", who.ticket)
        self.add("cookie", who.cookie)

    def cookies(self, client: httpx.Client) -> None:
        self.add("cookie", *(cookie.value for cookie in client.cookies.jar if cookie.value))

    def found_in(self, line: str) -> list[str]:
        return [kind for kind, values in self.values.items() if any(v in line for v in values)]


@pytest.fixture(scope="module", params=CONFIGURATIONS, ids=lambda c: "-".join(c))
def logged_gateway(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    jitsi_web: Any,
    prosody: Any,
    smtp_server: SmtpServer,
) -> Iterator[LoggedGateway]:
    """A gateway on 127.0.0.2 with every way in configured, and its OpenID provider."""
    log_level, client_addresses = request.param
    provider_port = free_port()
    extra = (
        GENEROUS_LIMITS
        + SMTP_TABLE.format(port=smtp_server.port)
        + f'[logging]\nclient_addresses = "{client_addresses}"\n'
        + oidc_table("idp", "University Login", f"http://127.0.0.1:{provider_port}")
    )
    gateway, gateway_proc = start_gateway(
        tmp_path_factory.mktemp(f"log-secrets-{log_level}-{client_addresses}"),
        upstream=jitsi_web.url,
        signalling_upstream=f"http://127.0.0.1:{prosody.http_port}",
        extra=extra,
        host=GATE_HOST,
        log_level=log_level,
    )
    procs = [gateway_proc]
    try:
        _, provider_proc = start_oidc_provider(
            tmp_path_factory.mktemp("log-secrets-idp"),
            provider_port,
            clients=clients_for(gateway.url, "idp"),
        )
        procs.append(provider_proc)
        yield LoggedGateway(gateway, log_level, client_addresses)
    finally:
        for proc in reversed(procs):
            stop_process(proc)


def source_address(gateway: GatewayServer) -> str:
    """The address a connection to the gate comes from."""
    parts = urlsplit(gateway.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        return str(sock.getsockname()[0])


def browser(gateway: GatewayServer, **options: Any) -> httpx.Client:
    return httpx.Client(
        base_url=gateway.url,
        trust_env=False,
        timeout=30,
        headers={"origin": gateway.url},
        **options,
        verify=TLS,
    )


def invite_journey(gateway: GatewayServer, room: str, seen: Secrets) -> Admitted:
    """A join link opened (GET) and used (POST), then the room page."""
    made = gateway.create_invite(room, "Ada")
    invite = gateway.invite_token(made)
    seen.add("invite", invite)
    with browser(gateway) as client:
        assert client.get(f"/j/{invite}").status_code == 200
        joined = client.post(f"/j/{invite}")
        assert joined.status_code == 303, joined.text
        ticket = joined.headers["location"].split("#jwt=", 1)[1]
        seen.cookies(client)
        assert client.get(f"/{room}").status_code == 200
        ada = Admitted(room=room, ticket=ticket, cookie=client.cookies["meetgate"])
    seen.admitted(ada)
    refreshed = fresh_ticket(gateway, ada, room)
    assert refreshed.status_code == 303, refreshed.text
    seen.add("ticket", refreshed.headers["location"].split("#jwt=", 1)[1])
    return ada


def admitted(
    gateway: GatewayServer, room: str, name: str, seen: Secrets, **invite: Any
) -> Admitted:
    made = gateway.create_invite(room, name, **invite)
    seen.add("invite", gateway.invite_token(made))
    with browser(gateway) as client:
        joined = client.post(f"/j/{gateway.invite_token(made)}")
        assert joined.status_code == 303, joined.text
        who = Admitted(
            room=room,
            ticket=joined.headers["location"].split("#jwt=", 1)[1],
            cookie=client.cookies["meetgate"],
        )
    seen.admitted(who)
    return who


async def signalling_journey(
    gateway: GatewayServer, prosody: Any, room: str, seen: Secrets
) -> None:
    """An attendee on BOSH and one on a WebSocket in the meeting; the host revokes the second,
    whose socket is cut and whose ticket is then refused on a new WebSocket."""
    host = await asyncio.to_thread(admitted, gateway, room, "Hedda", seen, role="host")
    bosh_user = await asyncio.to_thread(admitted, gateway, room, "Bo", seen)
    troll = await asyncio.to_thread(admitted, gateway, room, "Troll", seen)
    seen.add("csrf", await asyncio.to_thread(csrf_token, gateway, host))
    async with (
        XmppClient.open(bosh_url(gateway, signalling_query(bosh_user))) as bo,
        XmppClient.open(ws_url(gateway, signalling_query(troll))) as troll_client,
    ):
        await bo.join(prosody.room_jid(room), "bo")
        await troll_client.join(prosody.room_jid(room), "troll")
        target = await asyncio.to_thread(admission_id, gateway, host, "Troll")
        revoked = await asyncio.to_thread(host_action, gateway, host, "revoke", admission=target)
        assert revoked["done"] is True
        await troll_client.wait_closed()
    with pytest.raises(XmppConnectFailed) as refused:
        await XmppClient.connect(ws_url(gateway, signalling_query(troll)), timeout=10)
    assert refused.value.status == 403


def lobby_journey(gateway: GatewayServer, seen: Secrets) -> None:
    room = f"lobby-{secrets.token_hex(4)}"
    gateway.create_room(room)
    gateway.set_policy(room, lobby=True)
    host = admitted(gateway, room, "Hilde", seen, role="host")
    with browser(gateway) as guest:
        assert knock(guest, gateway, room, "Gina").status_code == 303
        seen.add("cookie", lobby_cookie(guest))
        approved = host_action(
            gateway, host, "approve", request=request_of(gateway, host, "Gina (guest)")
        )
        assert approved["done"] is True
        landed = guest.get(f"/_meetgate/lobby/{room}/wait")
        assert landed.status_code == 303, landed.text
        seen.add("ticket", landed.headers["location"].split("#jwt=", 1)[1])
        seen.cookies(guest)


def oidc_journey(logged: LoggedGateway, room: str, seen: Secrets) -> None:
    gateway = logged.gateway
    with browser(gateway) as client:
        authorization = begin(client, logged.provider, room)
        seen.cookies(client)
        back = authorize(client, authorization, "ada")
        ticket = ticket_of(client.get(back), room)
        seen.cookies(client)
    seen.add("ticket", ticket)
    seen.add("oidc", query_of(back)["code"], query_of(back)["state"])
    seen.add("oidc", query_of(authorization)["nonce"], query_of(authorization)["code_challenge"])
    seen.add("e-mail", OIDC_ACCOUNT_EMAIL)


def email_journey(gateway: GatewayServer, room: str, smtp: SmtpServer, seen: Secrets) -> None:
    email = f"user-{secrets.token_hex(4)}@{EMAIL_DOMAIN}"
    seen.add("e-mail", email, email.split("@")[0])
    with browser(gateway) as client:
        assert ask(client, room, email).status_code == 200
        code = smtp.mailbox.wait_for(email)[0].code()
        seen.add("e-mail code", code)
        joined = answer(client, room, email, code, name="Mia")
        assert joined.status_code == 303, joined.text
        seen.add("ticket", joined.headers["location"].split("#jwt=", 1)[1])
        seen.cookies(client)


async def test_no_log_line_of_a_whole_journey_carries_a_secret_or_an_address(
    logged_gateway: LoggedGateway, prosody: Any, smtp_server: SmtpServer
) -> None:
    gateway = logged_gateway.gateway
    assert source_address(gateway) == CLIENT_ADDRESS
    seen = Secrets()
    seen.add("credential", gateway.admin_token, gateway.ticket_secret)
    room = f"log-{secrets.token_hex(4)}"
    gateway.create_room(room, title="Planning")
    gateway.set_policy(
        room,
        oidc=True,
        oidc_providers=[logged_gateway.provider],
        email_code=True,
        allowed_domains=[EMAIL_DOMAIN, OIDC_ACCOUNT_EMAIL.split("@")[1]],
    )
    await asyncio.to_thread(invite_journey, gateway, room, seen)
    await signalling_journey(gateway, prosody, room, seen)
    await asyncio.to_thread(lobby_journey, gateway, seen)
    await asyncio.to_thread(oidc_journey, logged_gateway, room, seen)
    await asyncio.to_thread(email_journey, gateway, room, smtp_server, seen)

    # Every step is in the log (so the log is being written), the last one included.
    expected = [
        "GET /j/[invite] 200",
        "POST /j/[invite] 303",
        f"GET /{room} 200",
        f"POST /http-bind?room={room}&token=[redacted] 200",
        f"WS /xmpp-websocket?room={room}&token=[redacted] 101",
        f"WS /xmpp-websocket?room={room}&token=[redacted] 403",
        f"GET /_meetgate/ticket?room={room} 303",
        "/revoke 200",
        "/wait 303",
        f"GET /_meetgate/oidc/{logged_gateway.provider}/callback?",
        f"POST /_meetgate/email/{room}/verify 303",
    ]

    def all_logged() -> bool:
        text = gateway.log_text()
        return all(step in text for step in expected)

    wait_until(all_logged, timeout=10, what="every step of the journey in the access log")
    lines = logged_gateway.lines()
    assert any(f"gate on http://{GATE_HOST}:" in line for line in lines)
    kinds = {"ticket", "invite", "cookie", "csrf", "oidc", "e-mail", "e-mail code", "credential"}
    assert set(seen.values) == kinds
    leaks = [f"{found}: {line[:160]}" for line in lines if (found := seen.found_in(line))]
    assert not leaks, "\n".join(leaks)
    for address in CLIENT_ADDRESSES:
        assert not [line for line in lines if address in line], address
    # Nothing went wrong, and a refused WebSocket is not reported as an error.
    assert not [line for line in lines if " ERROR " in line]
    # The bug this guards against: uvicorn's INFO line for every WebSocket, with the peer's
    # address and the whole ticket (`… - "WebSocket /xmpp-websocket?room=…&token=…" [accepted]`).
    assert not any('"WebSocket ' in line for line in lines)
    access = [line for line in lines if ACCESS_LINE.search(line)]
    if logged_gateway.client_addresses == "truncated":
        assert access and all(line.endswith(" from 127.0.0.0/24") for line in access)
    else:
        assert access and not any(" from " in line for line in access)


async def test_a_websocket_leaves_neither_its_ticket_nor_its_peer_in_the_log(
    gateway: GatewayServer, prosody: Any
) -> None:
    """The bug as found: uvicorn wrote `127.0.0.1:<port> - "WebSocket /xmpp-websocket?room=…
    &token=<the ticket>" [accepted]` for every WebSocket, `access_log = false` or not."""
    room = f"ws-{secrets.token_hex(4)}"
    gateway.create_room(room)
    ada = await asyncio.to_thread(admit, gateway, room)
    async with XmppClient.open(ws_url(gateway, signalling_query(ada))) as client:
        await client.join(prosody.room_jid(room), "ada")
    line = f"WS /xmpp-websocket?room={room}&token=[redacted] 101"
    wait_until(lambda: line in gateway.log_text(), timeout=10, what="the WebSocket's access line")
    log = gateway.log_text()
    assert ada.ticket not in log
    assert not re.search(r'\d+ - "WebSocket ', log)
    assert not re.search(r"127\.0\.0\.1:\d+ - ", log)


def test_malformed_requests_cannot_flood_the_log(gateway: GatewayServer) -> None:
    """Each malformed request made the old server (uvicorn) write one WARNING: a flood of them,
    one line each. Meetgate's own server (gateway/edge/server.py) answers 400, counts it in a
    metric and writes nothing."""
    port = urlsplit(gateway.url).port
    before = gateway.log_text().count("\n")
    for _ in range(200):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /libs/\xe9.js HTTP/1.1\r\nHost: x\r\n\r\n")
            with contextlib.suppress(OSError):
                assert sock.recv(1024).startswith(b"HTTP/1.1 400 ")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /_meetgate/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert b" 200 " in sock.recv(1024)
    marker = "GET /_meetgate/health 200"
    wait_until(lambda: marker in gateway.log_text(), timeout=10, what="the health line")
    written = gateway.log_text().splitlines()[before:]
    assert len(written) < 5, written[:5]
    with gateway.admin() as admin:
        metrics = admin.get("/metrics").text
    refused = re.search(
        r'^meetgate_client_connections_ended_total\{reason="bad_request"\} (\d+)', metrics, re.M
    )
    assert refused is not None and int(refused.group(1)) >= 200, metrics
