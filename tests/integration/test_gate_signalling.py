"""Signalling through the gate: a real XMPP client (strophe.js) joins a real prosody's MUC over
WebSocket and BOSH with a ticket, and every client without a valid ticket is refused at the door.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import httpx
import jwt
import pytest

from gateway.ticket_keys import hmac_key_id
from tests.fixtures.gateway_server import GatewayServer, start_gateway
from tests.fixtures.http_clients import TLS
from tests.fixtures.processes import stop_process
from tests.fixtures.xmpp_client import XmppClient, XmppConnectFailed
from tests.integration.journeys import admit, bosh_url, new_room, ws_url

pytestmark = pytest.mark.slow


def claims_of(ticket: str) -> dict[str, Any]:
    payload = ticket.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def forge(
    gateway: GatewayServer,
    claims: dict[str, Any],
    *,
    key: str | None = None,
    kid: str | None = None,
    alg: str = "HS256",
) -> str:
    """A ticket signed with `key` (default: the gateway's own secret), labelled with `kid`
    (default: the gateway's key's id, so that only what is changed makes it wrong)."""
    kid = kid or hmac_key_id(gateway.ticket_secret.encode())
    return jwt.encode(
        claims, key or gateway.ticket_secret, algorithm=alg, headers={"kid": kid, "typ": "JWT"}
    )


async def test_two_clients_meet_through_the_gate(any_gateway: GatewayServer, prosody: Any) -> None:
    room = new_room(any_gateway)
    ada_ticket = admit(any_gateway, room, "Ada", role="host").ticket
    bob_ticket = admit(any_gateway, room, "Bob").ticket
    room_jid = prosody.room_jid(room)
    async with (
        XmppClient.open(ws_url(any_gateway, f"room={room}&token={ada_ticket}")) as ada,
        XmppClient.open(ws_url(any_gateway, f"room={room}&token={bob_ticket}")) as bob,
    ):
        await ada.join(room_jid, "ada")
        await bob.join(room_jid, "bob")
        await ada.wait_for_presence(nick="bob", type="available")
        await bob.send_groupchat(room_jid, "hello through the gate")
        await ada.wait_for_message(lambda m: m.body == "hello through the gate")
        await bob.close()
        await ada.wait_for_presence(nick="bob", type="unavailable", timeout=5)


async def test_bosh_client_joins_through_the_gate(gateway: GatewayServer, prosody: Any) -> None:
    room = new_room(gateway)
    ticket = admit(gateway, room).ticket
    async with XmppClient.open(bosh_url(gateway, f"room={room}&token={ticket}")) as client:
        presence = await client.join(prosody.room_jid(room), "ada")
        assert presence.is_self
        await client.close()


def bad_tickets(gateway: GatewayServer, room: str, ticket: str) -> dict[str, tuple[str, int]]:
    """name -> (query string, expected HTTP status at the upgrade)."""
    claims = claims_of(ticket)
    now = int(time.time())
    expired = {**claims, "iat": now - 600, "nbf": now - 600, "exp": now - 300}
    future = {**claims, "iat": now, "nbf": now + 300, "exp": now + 600}
    other_room = new_room(gateway)
    other_ticket = admit(gateway, other_room).ticket
    none_header = {"alg": "none", "typ": "JWT", "kid": hmac_key_id(gateway.ticket_secret.encode())}
    unsigned = (
        base64.urlsafe_b64encode(json.dumps(none_header).encode()).rstrip(b"=").decode()
        + "."
        + ticket.split(".")[1]
        + "."
    )
    tampered = ticket[:-4] + ("AAAA" if not ticket.endswith("AAAA") else "BBBB")
    return {
        "no ticket": (f"room={room}", 401),
        "empty ticket": (f"room={room}&token=", 401),
        "garbage": (f"room={room}&token=not.a.jwt", 401),
        "expired": (f"room={room}&token={forge(gateway, expired)}", 401),
        "not yet valid": (f"room={room}&token={forge(gateway, future)}", 401),
        "other room's ticket": (f"room={room}&token={other_ticket}", 401),
        "room param mismatch": (f"room={other_room}&token={ticket}", 401),
        "forged signature": (f"room={room}&token={forge(gateway, claims, key='k' * 40)}", 401),
        "tampered": (f"room={room}&token={tampered}", 401),
        "alg none": (f"room={room}&token={unsigned}", 401),
        "unknown kid": (f"room={room}&token={forge(gateway, claims, kid='k9')}", 401),
        "duplicate token": (f"room={room}&token={ticket}&token={other_ticket}", 400),
        "duplicate room": (f"room={room}&room={other_room}&token={ticket}", 400),
        "duplicate previd": (f"room={room}&token={ticket}&previd=a&previd=b", 400),
        "bad previd": (f"room={room}&token={ticket}&previd=%3Cx%3E", 400),
        "unknown admission": (
            f"room={room}&token={forge(gateway, {**claims, 'adm': '0' * 64})}",
            403,
        ),
    }


async def test_bad_tickets_are_refused_at_the_upgrade(any_gateway: GatewayServer) -> None:
    room = new_room(any_gateway)
    ticket = admit(any_gateway, room).ticket
    for name, (query, status) in bad_tickets(any_gateway, room, ticket).items():
        with pytest.raises(XmppConnectFailed) as caught:
            await XmppClient.connect(ws_url(any_gateway, query), timeout=10)
        assert caught.value.status == status, name


async def test_bad_tickets_are_refused_over_bosh_and_keepalive(gateway: GatewayServer) -> None:
    room = new_room(gateway)
    ticket = admit(gateway, room).ticket
    cases = bad_tickets(gateway, room, ticket)
    async with httpx.AsyncClient(base_url=gateway.url, trust_env=False, verify=TLS) as client:
        for name, (query, status) in cases.items():
            bosh = await client.post(f"/http-bind?{query}", content=b"<body/>")
            assert bosh.status_code == status, f"BOSH: {name}"
            keepalive = await client.get(f"/xmpp-websocket?{query}")
            assert keepalive.status_code == status, f"keep-alive: {name}"
    for name in ("no ticket", "expired", "forged signature"):
        query = cases[name][0]
        with pytest.raises(XmppConnectFailed):
            await XmppClient.connect(bosh_url(gateway, query), timeout=10)


async def test_keepalive_get_passes_with_a_valid_ticket(gateway: GatewayServer) -> None:
    room = new_room(gateway)
    ticket = admit(gateway, room).ticket
    async with httpx.AsyncClient(base_url=gateway.url, trust_env=False, verify=TLS) as client:
        response = await client.get(f"/xmpp-websocket?room={room}&token={ticket}")
    assert response.status_code == 200


async def test_a_revoked_admission_cannot_signal(gateway: GatewayServer) -> None:
    room = new_room(gateway)
    ticket = admit(gateway, room).ticket
    with gateway.admin() as admin:
        assert admin.delete(f"/api/v1/rooms/{room}").status_code == 204
    with pytest.raises(XmppConnectFailed) as caught:
        await XmppClient.connect(ws_url(gateway, f"room={room}&token={ticket}"), timeout=10)
    assert caught.value.status == 403


async def test_a_new_signalling_session_replaces_the_old(
    gateway: GatewayServer, prosody: Any
) -> None:
    room = new_room(gateway)
    ticket = admit(gateway, room).ticket
    url = ws_url(gateway, f"room={room}&token={ticket}")
    first = await XmppClient.connect(url)
    try:
        await first.join(prosody.room_jid(room), "ada")
        async with XmppClient.open(url) as second:
            end = await first.wait_closed(timeout=5)
            assert end.by_server
            await second.join(prosody.room_jid(room), "ada2")
    finally:
        await first.aclose()


def test_upstream_receives_only_verified_query_values(tmp_path: Any, jitsi_web: Any) -> None:
    # Signalling upstream = the header-echo server, so the forwarded query is visible.
    server, proc = start_gateway(tmp_path, upstream=jitsi_web.url)
    try:
        room = new_room(server)
        ticket = admit(server, room).ticket
        with httpx.Client(base_url=server.url, trust_env=False, verify=TLS) as client:
            response = client.get(
                f"/http-bind?token={ticket}&prefix=evil&x=1&previd=sess-1",
                headers={"authorization": "Bearer other"},
            )
            assert response.status_code == 200
            seen = response.json()
            assert seen["query_params"] == [["room", room], ["token", ticket], ["previd", "sess-1"]]
            assert "authorization" not in {name for name, _ in seen["headers"]}
            websocket_keepalive = client.get(f"/xmpp-websocket?room={room}&token={ticket}&a=b")
            assert websocket_keepalive.json()["query_params"] == [
                ["room", room],
                ["token", ticket],
            ]
    finally:
        stop_process(proc)
