"""Verified names end to end: the name in a Jitsi ticket is unique in its room up to look-alikes,
also when look-alikes race in at once, nobody but a host shows under a host's name (even before
the host arrives), and the admin API refuses invisible tricks."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import httpx
import pytest

from gateway.admission.names import skeleton
from tests.fixtures.gateway_server import GatewayServer
from tests.fixtures.http_clients import TLS
from tests.integration.journeys import Admitted, admission_id, admit, host_action, new_room

pytestmark = pytest.mark.slow

CYRILLIC_A = "\N{CYRILLIC SMALL LETTER A}"


def ticket_name(admitted: Admitted) -> str:
    payload = admitted.ticket.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return str(claims["context"]["user"]["name"])


def roster_names(gateway: GatewayServer, host: Admitted) -> list[str]:
    with httpx.Client(
        base_url=gateway.url, trust_env=False, cookies=host.cookies, verify=TLS
    ) as client:
        response = client.get(f"/_meetgate/host/{host.room}/roster")
    assert response.status_code == 200, response.text
    return [p["name"] for p in response.json()["participants"]]


def test_a_look_alike_name_in_the_same_room_gets_a_visible_suffix(gateway: GatewayServer) -> None:
    room = new_room(gateway)
    host = admit(gateway, room, "Hilde Host", role="host")
    first = admit(gateway, room, "Wang Dan")
    second = admit(gateway, room, f"Wang D{CYRILLIC_A}n")
    assert ticket_name(first) == "Wang Dan"
    assert ticket_name(second) == f"Wang D{CYRILLIC_A}n (2)"
    assert sorted(roster_names(gateway, host)) == sorted(
        ["Hilde Host", "Wang Dan", f"Wang D{CYRILLIC_A}n (2)"]
    )


def test_the_same_name_in_another_room_is_free(gateway: GatewayServer) -> None:
    admit(gateway, new_room(gateway), "Wang Dan")
    assert ticket_name(admit(gateway, new_room(gateway), "Wang Dan")) == "Wang Dan"


def test_an_attendee_invite_named_like_the_host_gets_a_suffix(gateway: GatewayServer) -> None:
    room = new_room(gateway)
    host = admit(gateway, room, "Hilde Host", role="host")
    namesake = admit(gateway, room, "Hilde Host")
    typed_suffix = admit(gateway, room, "H\N{GREEK SMALL LETTER IOTA}lde Host (2)")
    assert ticket_name(host) == "Hilde Host"
    assert ticket_name(namesake) == "Hilde Host (2)"
    assert ticket_name(typed_suffix) == "H\N{GREEK SMALL LETTER IOTA}lde Host (3)"


def test_a_hosts_name_is_kept_for_the_host_before_they_arrive(any_gateway: GatewayServer) -> None:
    gateway = any_gateway
    room = new_room(gateway)
    host_link = gateway.create_invite(room, "Hilde Host", role="host")
    # Trolls come first, under the host's name and look-alikes of it.
    troll = admit(gateway, room, "Hilde Host")
    look_alike = admit(gateway, room, "H\N{GREEK SMALL LETTER IOTA}lde Host")
    typed = admit(gateway, room, "Hilde Host (guest)")
    other = admit(gateway, room, "Hilde Hostess")
    assert ticket_name(troll) == "Hilde Host (2)"
    assert ticket_name(look_alike) == "H\N{GREEK SMALL LETTER IOTA}lde Host (3)"
    assert ticket_name(typed) == "Hilde Host (4)"
    assert ticket_name(other) == "Hilde Hostess"
    # The host, arriving last, shows the plain name.
    with httpx.Client(base_url=gateway.url, trust_env=False, verify=TLS) as client:
        joined = client.post(
            f"/j/{gateway.invite_token(host_link)}", headers={"origin": gateway.url}
        )
    assert joined.status_code == 303
    host = Admitted(
        room, joined.headers["location"].split("#jwt=", 1)[1], client.cookies["meetgate"]
    )
    assert ticket_name(host) == "Hilde Host"
    # A second host with the same name (a second device, another link) is numbered, by Meetgate.
    assert ticket_name(admit(gateway, room, "Hilde Host", role="host")) == "Hilde Host (5)"


def test_a_revoked_host_invite_keeps_no_name(any_gateway: GatewayServer) -> None:
    gateway = any_gateway
    room = new_room(gateway)
    made = gateway.create_invite(room, "Hilde Host", role="host")
    with gateway.admin() as admin:
        assert admin.delete(f"/api/v1/invites/{made['id']}").status_code == 204
    gateway.create_invite(room, "Other Host", role="host", expires_in_seconds=60)
    assert ticket_name(admit(gateway, room, "Hilde Host")) == "Hilde Host"
    # An attendee invite keeps no name either.
    gateway.create_invite(room, "Ada")
    assert ticket_name(admit(gateway, room, "Ada")) == "Ada"


async def test_look_alikes_racing_in_get_one_plain_name(redis_gateway: GatewayServer) -> None:
    gateway = redis_gateway
    room = new_room(gateway)
    looks = ["Wang Dan", f"Wang D{CYRILLIC_A}n", "WANG DAN", "Wang  Dan"]
    links = [
        gateway.invite_token(gateway.create_invite(room, looks[i % len(looks)])) for i in range(12)
    ]

    async def redeem(link: str) -> str:
        async with httpx.AsyncClient(base_url=gateway.url, trust_env=False, verify=TLS) as client:
            response = await client.post(f"/j/{link}", headers={"origin": gateway.url})
        assert response.status_code == 303, response.text
        ticket = response.headers["location"].split("#jwt=", 1)[1]
        return ticket_name(Admitted(room, ticket, ""))

    shown = await asyncio.gather(*(redeem(link) for link in links))
    assert len({skeleton(name) for name in shown}) == len(links)
    assert len([name for name in shown if not name.endswith(")")]) == 1


def test_names_move_with_the_meeting(gateway: GatewayServer) -> None:
    room = new_room(gateway)
    host = admit(gateway, room, "Hilde Host", role="host")
    admit(gateway, room, "Wang Dan")
    moved_to = host_action(gateway, host, "move")["room"]
    # Latecomers follow the meeting to its new room, where the names came along.
    latecomer = admit(gateway, room, f"Wang D{CYRILLIC_A}n")
    assert ticket_name(latecomer) == f"Wang D{CYRILLIC_A}n (2)"
    assert ticket_name(admit(gateway, room, "Hilde Host")) == "Hilde Host (2)"
    moved_host = Admitted(moved_to, host.ticket, host.cookie)
    assert sorted(roster_names(gateway, moved_host)) == sorted(
        ["Hilde Host", "Wang Dan", f"Wang D{CYRILLIC_A}n (2)", "Hilde Host (2)"]
    )


def test_a_revoked_admission_frees_its_name(gateway: GatewayServer) -> None:
    room = new_room(gateway)
    host = admit(gateway, room, "Hilde Host", role="host")
    admit(gateway, room, "Ada")
    host_action(gateway, host, "revoke", admission=admission_id(gateway, host, "Ada"))
    assert ticket_name(admit(gateway, room, "Ada")) == "Ada"


@pytest.mark.parametrize(
    "name",
    [
        "Hilde\u202eTsoh",  # RIGHT-TO-LEFT OVERRIDE
        "Hilde\u2067Host",  # RIGHT-TO-LEFT ISOLATE
        "Hilde\u200dHost",  # ZERO WIDTH JOINER
        "Hilde\nHost",
        "",
        "x" * 65,
    ],
)
def test_the_admin_api_refuses_bad_invite_names(gateway: GatewayServer, name: str) -> None:
    room = new_room(gateway)
    with gateway.admin() as client:
        response = client.post(f"/api/v1/rooms/{room}/invites", json={"name": name})
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "invalid_input"
        assert client.get(f"/api/v1/rooms/{room}/invites").json() == []
