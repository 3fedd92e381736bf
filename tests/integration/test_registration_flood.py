"""A registration flood against `meetgate serve` behind a trusted proxy (issue 19): bots that post
the form from hundreds of IPv4 /24 networks (X-Forwarded-For, believed from the proxy), and bots
from one network, each reading its code from the real SMTP server (aiosmtpd) and confirming as
a person would. The limits refuse the flood with 429 pages; the hosts' list (the dashboard's,
as a host reads it) holds no more registrations than the limits let through; the one-network
bots are flagged as a burst, the many-network ones are not; someone from elsewhere still
registers in the room the one network flooded; and the people holding invites join the room
all through a flood, which spends the registrations' budget, never the joins'.

The limits are shrunk and barely refill (a token every 1,000 minutes), so what they let through
is counted exactly, whatever the machine's speed.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.fixtures.gateway_server import GatewayServer, start_gateway
from tests.fixtures.processes import stop_process
from tests.fixtures.smtp import SmtpServer
from tests.integration.journeys import Admitted, admit

pytestmark = pytest.mark.slow

# What the limits let through: the room's registration budget is spent twice per registration
# (the form and the code), the network's too; the room's join budget is the invited's alone.
REGISTRATION_BURST = 60
ROOM_BURST = 8
NETWORK_BURST = 10
BURST_THRESHOLD = 3
NEVER = 0.001
SETTINGS = f"""
[rates]
address = {{ per_minute = {NEVER}, burst = 4 }}
network = {{ per_minute = {NEVER}, burst = {NETWORK_BURST} }}
room = {{ per_minute = {NEVER}, burst = {ROOM_BURST} }}
identity = {{ per_minute = 1000000, burst = 100000 }}
invite = {{ per_minute = 1000000, burst = 100000 }}
gate = {{ per_minute = 1000000, burst = 100000 }}
registration = {{ per_minute = {NEVER}, burst = {REGISTRATION_BURST} }}
[challenge]
mode = "off"
[registration]
burst_threshold = {BURST_THRESHOLD}
[smtp]
host = "127.0.0.1"
port = {{smtp_port}}
security = "none"
sender = "Meetgate <gate@meet.test>"
"""
# Hundreds of networks: 10.<i // 200>.<i % 200>.0/24, one bot each.
NETWORKS = 300
ONE_NETWORK_BOTS = 12


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, jitsi_web: Any, smtp_server: SmtpServer
) -> Iterator[GatewayServer]:
    server, proc = start_gateway(
        tmp_path_factory.mktemp("registration-flood"),
        upstream=jitsi_web.url,
        top='trusted_proxies = ["127.0.0.1/32"]',
        extra=SETTINGS.replace("{smtp_port}", str(smtp_server.port)),
    )
    yield server
    stop_process(proc)


def registration_room(gateway: GatewayServer) -> str:
    room = f"flood-{secrets.token_hex(4)}"
    gateway.create_room(room, title="Open assembly")
    with gateway.admin() as admin:
        changed = admin.patch(f"/api/v1/rooms/{room}", json={"registration": True})
        assert changed.status_code == 200, changed.text
    return room


@dataclass
class Tally:
    """What a flood's bots were answered: forms let through, codes accepted, 429 pages."""

    sent: int = 0
    confirmed: int = 0
    refused: int = 0


def bot(
    gateway: GatewayServer, smtp: SmtpServer, room: str, client: str, name: str, tally: Tally
) -> None:
    """One bot from `client` (as the proxy says): the form, then the code from its mail."""
    address = f"bot-{secrets.token_hex(5)}@flood.example"
    headers = {"origin": gateway.url, "x-forwarded-for": client}
    with gateway.client(headers=headers, timeout=30) as browser:
        sent = browser.post(
            f"/_meetgate/register/{room}/send",
            data={"name": name, "email": address, "note": "let me in"},
        )
        if refused(sent, tally):
            return
        assert sent.status_code == 303, sent.text
        tally.sent += 1
        code = smtp.mailbox.wait_for(address)[0].code()
        confirmed = browser.post(f"/_meetgate/register/{room}/confirm", data={"code": code})
        if refused(confirmed, tally):
            return
        assert confirmed.status_code == 303, confirmed.text
        tally.confirmed += 1


def refused(answer: httpx.Response, tally: Tally) -> bool:
    if answer.status_code != 429:
        return False
    # A page for a person, saying when to try again.
    assert answer.headers["content-type"].startswith("text/html")
    assert int(answer.headers["retry-after"]) > 0
    tally.refused += 1
    return True


def hosts_list(gateway: GatewayServer, host: Admitted, **query: str) -> list[dict[str, Any]]:
    """Every registration the room's hosts are shown (waiting, unless `query` says), read a
    page at a time as the dashboard's script does."""
    items: list[dict[str, Any]] = []
    with gateway.client(cookies=host.cookies, headers={"accept": "application/json"}) as client:
        page = 1
        while True:
            answer = client.get(
                f"/_meetgate/host/{host.room}/invitations/registrations",
                params={**query, "page": str(page)},
            )
            assert answer.status_code == 200, answer.text
            data = answer.json()
            items.extend(data["items"])
            if page >= data["pages"]:
                assert len(items) == data["total"]
                return items
            page += 1


def test_many_networks_are_refused_by_the_room_limit_and_not_flagged_a_burst(
    gateway: GatewayServer, smtp_server: SmtpServer
) -> None:
    room = registration_room(gateway)
    tally = Tally()
    for i in range(NETWORKS):
        bot(gateway, smtp_server, room, f"10.{i // 200}.{i % 200}.7", f"Bot {i}", tally)
    # After the flood: it spent the room's registration budget, not its joins'.
    host = admit(gateway, room, "Hilde Host", role="host")

    # The room's registration budget went on the first registrations; the rest was refused.
    assert tally.sent + tally.confirmed <= REGISTRATION_BURST
    assert tally.confirmed >= REGISTRATION_BURST // 2 - 1
    assert tally.refused == NETWORKS - tally.confirmed
    listed = hosts_list(gateway, host)
    # The hosts' list holds what was let through, no more.
    assert len(listed) == tally.confirmed <= REGISTRATION_BURST // 2
    assert {item["state"] for item in listed} == {"waiting"}
    # One bot a network: no burst, however many networks.
    assert [item["flags"] for item in listed if "burst" in item["flags"]] == []
    assert hosts_list(gateway, host, flag="burst") == []


def test_one_network_is_refused_by_its_limit_and_flagged_a_burst(
    gateway: GatewayServer, smtp_server: SmtpServer
) -> None:
    room = registration_room(gateway)
    host = admit(gateway, room, "Hilde Host", role="host")
    tally = Tally()
    for i in range(ONE_NETWORK_BOTS):
        bot(gateway, smtp_server, room, f"192.0.2.{i + 1}", f"Bot {i}", tally)

    # The network's budget: a form and a code each, for NETWORK_BURST / 2 bots.
    assert tally.confirmed == NETWORK_BURST // 2
    assert tally.refused == ONE_NETWORK_BOTS - tally.confirmed
    # Someone from another network still registers in this room, and is no part of the burst.
    calm = Tally()
    bot(gateway, smtp_server, room, "198.51.100.20", "Calm Person", calm)
    assert (calm.confirmed, calm.refused) == (1, 0)

    listed = hosts_list(gateway, host)
    assert len(listed) == tally.confirmed + 1
    burst = {item["name"] for item in listed if "burst" in item["flags"]}
    assert burst == {f"Bot {i}" for i in range(tally.confirmed)}
    assert {item["name"] for item in hosts_list(gateway, host, flag="burst")} == burst


def join(gateway: GatewayServer, invite: dict[str, Any], client: str) -> httpx.Response:
    """The invited person from `client` (as the proxy says) follows their link into the room."""
    headers = {"origin": gateway.url, "x-forwarded-for": client}
    with gateway.client(headers=headers, timeout=30) as browser:
        return browser.post(f"/j/{gateway.invite_token(invite)}")


def test_the_invited_join_all_through_a_registration_flood_from_many_networks(
    gateway: GatewayServer, smtp_server: SmtpServer
) -> None:
    room = registration_room(gateway)
    # As many invites as the room's join budget takes: one join spent by the flood would
    # refuse the last of them.
    invites = [
        gateway.create_invite(room, f"Invited {i}", role="host" if i == 0 else "attendee")
        for i in range(ROOM_BURST)
    ]
    tally = Tally()
    every = NETWORKS // ROOM_BURST
    for i in range(NETWORKS):
        # Networks of their own: the other tests' bots spent theirs.
        bot(gateway, smtp_server, room, f"10.{10 + i // 200}.{i % 200}.9", f"Bot {i}", tally)
        # One of the invited joins every few bots, from the flood's start, while it is let
        # through, to its end.
        if i % every == 0 and i // every < ROOM_BURST:
            joined = join(gateway, invites[i // every], f"172.16.{i // every}.1")
            # Admitted, sent into the meeting: never "too many attempts" at the door.
            assert joined.status_code == 303, joined.text
            assert "#jwt=" in joined.headers["location"]

    # The flood was refused by the registrations' own limit.
    assert tally.refused == NETWORKS - tally.confirmed >= NETWORKS - REGISTRATION_BURST // 2
    # The invited took the room's whole join budget: one more join is refused.
    extra = gateway.create_invite(room, "One Too Many")
    assert join(gateway, extra, "172.17.0.1").status_code == 429
