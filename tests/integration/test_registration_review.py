"""What hosts review, made through the registration pages of `meetgate serve` (issue 19), codes
read from the real SMTP server (aiosmtpd), the list read as the room's host reads it on the
dashboard: a registration under a name that looks like a host's (digits for letters, another
script's letters, capitals, a marker) is flagged, whether the host is still to come (an unused
host invite) or in the room; a different name is not. Registering again with the same address
(however its letters are cased) updates the one registration, never adds a second, and once it
is approved brings no second invitation.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fixtures.gateway_server import GENEROUS_LIMITS, GatewayServer, start_gateway
from tests.fixtures.processes import stop_process
from tests.fixtures.smtp import SmtpServer
from tests.integration.journeys import Admitted, admit, csrf_token
from tests.integration.test_registration_flood import hosts_list

pytestmark = pytest.mark.slow

HOST = "Hilde Host"
SETTINGS = """
[smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "none"
sender = "Meetgate <gate@meet.test>"
[outbox]
retry_seconds = 1
"""


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, jitsi_web: Any, smtp_server: SmtpServer
) -> Iterator[GatewayServer]:
    server, proc = start_gateway(
        tmp_path_factory.mktemp("registration-review"),
        upstream=jitsi_web.url,
        extra=GENEROUS_LIMITS + SETTINGS.format(smtp_port=smtp_server.port),
    )
    yield server
    stop_process(proc)


def registration_room(gateway: GatewayServer) -> str:
    room = f"review-{secrets.token_hex(4)}"
    gateway.create_room(room, title="Open assembly")
    with gateway.admin() as admin:
        changed = admin.patch(f"/api/v1/rooms/{room}", json={"registration": True})
        assert changed.status_code == 200, changed.text
    return room


def register(
    gateway: GatewayServer, smtp: SmtpServer, room: str, name: str, address: str, note: str = ""
) -> str:
    """Register through the pages as a browser does, with the code from the mail; the outcome
    the thank-you page says."""
    before = len(smtp.mailbox.to(address.lower()))
    with gateway.client(headers={"origin": gateway.url}, timeout=30) as browser:
        sent = browser.post(
            f"/_meetgate/register/{room}/send",
            data={"name": name, "email": address, "note": note},
        )
        assert sent.status_code == 303, sent.text
        code = smtp.mailbox.wait_for(address.lower(), before + 1)[-1].code()
        confirmed = browser.post(f"/_meetgate/register/{room}/confirm", data={"code": code})
        assert confirmed.status_code == 303, confirmed.text
        thanks = browser.get(f"/_meetgate/register/{room}/done")
    assert thanks.status_code == 200
    marker = 'data-outcome="'
    start = thanks.text.index(marker) + len(marker)
    return thanks.text[start : thanks.text.index('"', start)]


def host_in(gateway: GatewayServer, room: str, presence: str) -> Admitted:
    """The room's host: `invited` (an unused host invite waits, a co-host reads the list) or
    `joined` (the host is in the room)."""
    if presence == "invited":
        gateway.create_invite(room, HOST, role="host")
        return admit(gateway, room, "Co Host", role="host")
    return admit(gateway, room, HOST, role="host")


LOOKALIKES = {
    "digit": "H1lde Host",
    "cyrillic": "\u041dilde \u041d\u043est",
    "capitals": "HILDE HOST",
    "marker": "Hilde Host (2)",
    "fullwidth": "\uff28ilde Host",
}


@pytest.mark.parametrize("presence", ["invited", "joined"])
@pytest.mark.parametrize("kind", sorted(LOOKALIKES))
def test_a_name_like_a_hosts_is_flagged(
    gateway: GatewayServer, smtp_server: SmtpServer, kind: str, presence: str
) -> None:
    room = registration_room(gateway)
    host = host_in(gateway, room, presence)
    lookalike = LOOKALIKES[kind]
    register(gateway, smtp_server, room, lookalike, f"a-{secrets.token_hex(4)}@x.example")
    register(gateway, smtp_server, room, "Hilda Hart", f"b-{secrets.token_hex(4)}@y.example")
    listed = hosts_list(gateway, host)
    assert len(listed) == 2
    # The name as shown (NFKC: a fullwidth letter is shown as the plain one).
    (shown,) = [item for item in listed if item["name"] != "Hilda Hart"]
    (other,) = [item for item in listed if item["name"] == "Hilda Hart"]
    assert "looks_like" in shown["flags"]
    assert "looks_like" not in other["flags"]
    flagged = hosts_list(gateway, host, flag="looks_like")
    assert [item["id"] for item in flagged] == [shown["id"]]


def test_two_registrants_alike_are_both_flagged(
    gateway: GatewayServer, smtp_server: SmtpServer
) -> None:
    room = registration_room(gateway)
    host = admit(gateway, room, HOST, role="host")
    register(gateway, smtp_server, room, "Ada Lee", f"a-{secrets.token_hex(4)}@x.example")
    register(gateway, smtp_server, room, "\u0391da Lee", f"b-{secrets.token_hex(4)}@y.example")
    flags = [item["flags"] for item in hosts_list(gateway, host)]
    assert len(flags) == 2 and all("looks_like" in each for each in flags)


def test_registering_again_updates_the_one_registration(
    gateway: GatewayServer, smtp_server: SmtpServer
) -> None:
    room = registration_room(gateway)
    host = admit(gateway, room, HOST, role="host")
    address = f"ada-{secrets.token_hex(4)}@example.org"
    assert register(gateway, smtp_server, room, "Ada", address, "first note") == "waiting"
    again = register(gateway, smtp_server, room, "Ada Lee", address.upper(), "second note")
    assert again == "updated"
    assert register(gateway, smtp_server, room, "Ada L.", address, "third note") == "updated"
    (only,) = hosts_list(gateway, host)
    assert (only["name"], only["note"]) == ("Ada L.", "third note")
    assert "updated" in only["flags"]

    # Approved, then registering again: still one registration, and one invitation.
    with gateway.client(cookies=host.cookies) as client:
        approved = client.post(
            f"/_meetgate/host/{room}/invitations/approve",
            data={"csrf": csrf_token(gateway, host), "confirmed": "1", f"pick.{only['id']}": "1"},
            headers={"origin": gateway.url, "accept": "application/json"},
        )
    assert approved.status_code == 200, approved.text
    invited = smtp_server.mailbox.wait_for(address, 4)[-1]
    assert "/j/" in invited.body
    assert register(gateway, smtp_server, room, "Ada Again", address) == "updated-approved"
    assert hosts_list(gateway, host) == []
    (answered,) = hosts_list(gateway, host, state="approved")
    assert (answered["id"], answered["name"]) == (only["id"], "Ada L.")
    invitations = [m for m in smtp_server.mailbox.to(address) if "/j/" in m.body]
    assert len(invitations) == 1
