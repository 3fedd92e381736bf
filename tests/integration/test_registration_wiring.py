"""How `meetgate serve` wires registrations (issue 19): an address the gate admits by e-mail code,
and one the outbox has sent an invitation to, is "seen before" when it registers for the room
afterwards; an address never seen is not. Through the running server's pages, its admin API and
a real SMTP server (aiosmtpd).
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fixtures.gateway_server import GENEROUS_LIMITS, GatewayServer, start_gateway
from tests.fixtures.processes import stop_process
from tests.fixtures.smtp import SmtpServer
from tests.integration.journeys import admit
from tests.integration.test_registration_flood import hosts_list
from tests.integration.test_registration_review import SETTINGS, register

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, jitsi_web: Any, smtp_server: SmtpServer
) -> Iterator[GatewayServer]:
    server, proc = start_gateway(
        tmp_path_factory.mktemp("registration-wiring"),
        upstream=jitsi_web.url,
        extra=GENEROUS_LIMITS + SETTINGS.format(smtp_port=smtp_server.port),
    )
    yield server
    stop_process(proc)


def admitted_by_code(gateway: GatewayServer, smtp: SmtpServer, room: str, address: str) -> None:
    with gateway.client(headers={"origin": gateway.url}, timeout=30) as browser:
        sent = browser.post(f"/_meetgate/email/{room}/send", data={"email": address})
        assert sent.status_code == 200, sent.text
        code = smtp.mailbox.wait_for(address)[-1].code()
        joined = browser.post(
            f"/_meetgate/email/{room}/verify",
            data={"email": address, "code": code, "name": "Grace"},
        )
        assert joined.status_code == 303, joined.text


def test_an_address_admitted_or_invited_before_is_flagged_seen_when_it_registers(
    gateway: GatewayServer, smtp_server: SmtpServer
) -> None:
    room = f"wiring-{secrets.token_hex(4)}"
    gateway.create_room(room, title="Open assembly")
    gateway.set_policy(room, email_code=True, allowed_domains=["seen.example"])
    with gateway.admin() as admin:
        changed = admin.patch(f"/api/v1/rooms/{room}", json={"registration": True})
        assert changed.status_code == 200, changed.text
    host = admit(gateway, room, "Hilde Host", role="host")
    by_code = f"code-{secrets.token_hex(4)}@seen.example"
    admitted_by_code(gateway, smtp_server, room, by_code)
    invited = f"sent-{secrets.token_hex(4)}@invited.example"
    with gateway.admin() as admin:
        csv = base64.b64encode(f"Ivy,{invited}\n".encode()).decode()
        imported = admin.post(
            f"/api/v1/rooms/{room}/invites/import",
            json={"csv": csv, "base64": True, "send": True},
        )
        assert imported.status_code == 200, imported.text
    smtp_server.mailbox.wait_for(invited)
    never = f"new-{secrets.token_hex(4)}@other.example"
    register(gateway, smtp_server, room, "Grace Hopper", by_code.upper())
    register(gateway, smtp_server, room, "Ivy Ives", invited)
    register(gateway, smtp_server, room, "Nora New", never)
    # The outbox remembers an address once its e-mail went, just after the server took it.
    flags = {item["name"]: item["flags"] for item in hosts_list(gateway, host)}
    assert "seen_address" in flags["Grace Hopper"]
    assert "seen_address" in flags["Ivy Ives"]
    assert "seen_address" not in flags["Nora New"]
    assert "seen_domain" not in flags["Nora New"]


def test_a_deleted_rooms_registrations_go_with_it(
    gateway: GatewayServer, smtp_server: SmtpServer
) -> None:
    room = f"wiring-{secrets.token_hex(4)}"

    def opened() -> None:
        gateway.create_room(room, title="Open assembly")
        with gateway.admin() as admin:
            changed = admin.patch(f"/api/v1/rooms/{room}", json={"registration": True})
            assert changed.status_code == 200, changed.text

    opened()
    register(gateway, smtp_server, room, "Old Registrant", f"old-{secrets.token_hex(4)}@x.example")
    with gateway.admin() as admin:
        listed = admin.get(f"/api/v1/rooms/{room}/registrations")
        assert listed.json()["total"] == 1
        assert admin.delete(f"/api/v1/rooms/{room}").status_code == 204
    # A room made again under the name starts with none of the old one's registrants.
    opened()
    with gateway.admin() as admin:
        listed = admin.get(f"/api/v1/rooms/{room}/registrations")
        assert listed.status_code == 200 and listed.json()["total"] == 0
