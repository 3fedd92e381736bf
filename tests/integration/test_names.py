"""Verified names end to end: the name in a Jitsi ticket is unique in its room up to look-alikes,
nobody but a host shows under a host's name, and the admin API refuses invisible tricks."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from tests.fixtures.gateway_server import GatewayServer
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
    with httpx.Client(base_url=gateway.url, trust_env=False, cookies=host.cookies) as client:
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
