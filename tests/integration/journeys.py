"""What a browser does, in a few calls: a room, an admission through an invite, a host action.

Shared by the integration tests; everything goes through the gateway's public HTTP surface.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.fixtures.gateway_server import GatewayServer


@dataclass
class Admitted:
    """A browser that redeemed an invite: its first ticket and its admission cookie."""

    room: str
    # Kept out of repr: pytest prints a failed test's arguments, and no test output may show a
    # ticket or a cookie.
    ticket: str = field(repr=False)
    cookie: str = field(repr=False)

    @property
    def cookies(self) -> dict[str, str]:
        return {"meetgate": self.cookie}


def new_room(gateway: GatewayServer) -> str:
    name = f"room-{secrets.token_hex(4)}"
    gateway.create_room(name)
    return name


def admit(
    gateway: GatewayServer, room: str, name: str = "Ada", role: str = "attendee", **invite: Any
) -> Admitted:
    made = gateway.create_invite(room, name, role=role, **invite)
    with gateway.client() as client:
        response = client.post(f"/j/{gateway.invite_token(made)}", headers={"origin": gateway.url})
        assert response.status_code == 303, response.text
        ticket = response.headers["location"].split("#jwt=", 1)[1]
        return Admitted(room=room, ticket=ticket, cookie=client.cookies["meetgate"])


def ws_url(gateway: GatewayServer, query: str) -> str:
    return gateway.url.replace("http://", "ws://") + f"/xmpp-websocket?{query}"


def bosh_url(gateway: GatewayServer, query: str) -> str:
    return f"{gateway.url}/http-bind?{query}"


def signalling_query(admitted: Admitted) -> str:
    return f"room={admitted.room}&token={admitted.ticket}"


def csrf_token(gateway: GatewayServer, host: Admitted) -> str:
    with gateway.client(cookies=host.cookies) as client:
        page = client.get(f"/_meetgate/host/{host.room}")
    assert page.status_code == 200, page.text
    marker = 'name="meetgate-csrf" content="'
    start = page.text.index(marker) + len(marker)
    return page.text[start : page.text.index('"', start)]


def host_action(
    gateway: GatewayServer, host: Admitted, action: str, **fields: str
) -> dict[str, Any]:
    """Do a host action as the dashboard's script does; return its JSON answer."""
    csrf = csrf_token(gateway, host)
    with gateway.client(cookies=host.cookies) as client:
        response = client.post(
            f"/_meetgate/host/{host.room}/{action}",
            data={"csrf": csrf, "confirmed": "1", **fields},
            headers={"origin": gateway.url, "accept": "application/json"},
        )
    assert response.status_code == 200, response.text
    return dict(response.json())


def fresh_ticket(gateway: GatewayServer, admitted: Admitted, room: str) -> httpx.Response:
    """Ask the ticket refresh endpoint (Jitsi's tokenAuthUrl) as that browser."""
    with gateway.client(cookies=admitted.cookies) as client:
        return client.get("/_meetgate/ticket", params={"room": room})


def admission_id(gateway: GatewayServer, host: Admitted, name: str) -> str:
    with gateway.client(cookies=host.cookies) as client:
        roster = client.get(f"/_meetgate/host/{host.room}/roster").json()
    return next(p["id"] for p in roster["participants"] if p["name"] == name)


def latecomer_lands_in_meeting(gateway: GatewayServer, room: str) -> bool:
    """Does a fresh invite for `room` get straight into the meeting (a ticket and a cookie)?"""
    made = gateway.create_invite(room, "Latecomer")
    with gateway.client() as client:
        response = client.post(f"/j/{gateway.invite_token(made)}", headers={"origin": gateway.url})
    return "#jwt=" in response.headers.get("location", "")
