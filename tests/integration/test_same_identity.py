"""One identity, one participant (issue 18): a person who signs in again to a room they are still
admitted to keeps their own name ("Ada Lovelace", not "Ada Lovelace (2)"), and their earlier
admission is replaced: revoked, its signalling socket closed by the gate, its browser refused a
fresh ticket. Someone else with a name that looks the same is still numbered.

Real processes throughout: oidc-provider under Node, aiosmtpd for the e-mail codes, prosody
behind the real `meetgate serve`.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fixtures.gateway_server import GENEROUS_LIMITS, GatewayServer, start_gateway
from tests.fixtures.oidc import (
    browser,
    clients_for,
    oidc_table,
    sign_in,
    start_oidc_provider,
    ticket_of,
)
from tests.fixtures.processes import free_port, stop_process
from tests.fixtures.smtp import SmtpServer
from tests.fixtures.xmpp_client import XmppClient
from tests.integration.journeys import Admitted, admit, ws_url
from tests.integration.test_names import ticket_name

pytestmark = pytest.mark.slow

PROVIDER = "idp"


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory,
    jitsi_web: Any,
    prosody: Any,
    smtp_server: SmtpServer,
) -> Iterator[GatewayServer]:
    """A gateway with prosody behind it, one OpenID provider and the e-mail codes."""
    provider_port = free_port()
    issuer = f"http://127.0.0.1:{provider_port}"
    server, proc = start_gateway(
        tmp_path_factory.mktemp("same-identity"),
        upstream=jitsi_web.url,
        signalling_upstream=f"http://127.0.0.1:{prosody.http_port}",
        extra=GENEROUS_LIMITS
        + oidc_table(PROVIDER, "University Login", issuer)
        + f'[smtp]\nhost = "127.0.0.1"\nport = {smtp_server.port}\nsecurity = "none"\n'
        + 'sender = "Meetgate <gate@meet.test>"\n'
        # The longest sweep allowed: a replaced admission's socket must be closed by its cut,
        # not by the sweep that reconciles sockets with the store every few seconds.
        + "[revocation]\nreconcile_seconds = 60\n",
    )
    procs = [proc]
    try:
        _, provider = start_oidc_provider(
            tmp_path_factory.mktemp("same-identity-idp"),
            provider_port,
            clients=clients_for(server.url, PROVIDER),
        )
        procs.append(provider)
        yield server
    finally:
        for running in reversed(procs):
            stop_process(running)


def new_room(gateway: GatewayServer, **policy: Any) -> str:
    name = f"same-{secrets.token_hex(4)}"
    gateway.create_room(name, title="Planning")
    gateway.set_policy(name, **policy)
    return name


def signed_in(gateway: GatewayServer, room: str, login: str) -> Admitted:
    """A browser signed in as `login` at the provider: its ticket and admission cookie."""
    with browser(gateway) as client:
        ticket = ticket_of(sign_in(gateway, PROVIDER, room, login, client=client), room)
        return Admitted(room=room, ticket=ticket, cookie=client.cookies["meetgate"])


def refreshed(gateway: GatewayServer, admitted: Admitted) -> httpx.Response:
    """Jitsi's ticket refresh, as that browser asks it."""
    with gateway.client(cookies=admitted.cookies) as client:
        return client.get("/_meetgate/ticket", params={"room": admitted.room})


def replaced(answer: httpx.Response) -> bool:
    """The answer of a browser whose admission its person replaced by signing in again."""
    assert answer.status_code in (403, 410), answer.text
    assert "A host removed you" not in answer.text
    return "<code>admission_replaced</code>" in answer.text and "another browser" in answer.text


async def test_signing_in_again_keeps_the_name_and_replaces_the_admission(
    gateway: GatewayServer, prosody: Any
) -> None:
    room = new_room(gateway, oidc=True, oidc_providers=[PROVIDER])
    watcher = admit(gateway, room, "Watcher")
    first = await asyncio.to_thread(signed_in, gateway, room, "ada")
    assert ticket_name(first) == "Ada Lovelace"
    url = ws_url(gateway, f"room={room}&token={first.ticket}")
    async with (
        XmppClient.open(ws_url(gateway, f"room={room}&token={watcher.ticket}")) as seeing,
        XmppClient.open(url) as ada,
    ):
        await seeing.join(prosody.room_jid(room), "watcher")
        await ada.join(prosody.room_jid(room), "ada")
        await seeing.wait_for_presence(nick="ada", type="available")
        # Ada signs in again, from another browser (a phone, a restarted laptop).
        again = await asyncio.to_thread(signed_in, gateway, room, "ada")
        assert ticket_name(again) == "Ada Lovelace"
        # The earlier admission is replaced, not doubled: its socket is cut by the gate...
        end = await ada.wait_closed(timeout=10)
        assert end.by_server
        await seeing.wait_for_presence(nick="ada", type="unavailable", timeout=10)
    # ...its browser gets no fresh ticket, and is told why (no host removed it); the new one
    # gets one.
    assert replaced(refreshed(gateway, first))
    assert refreshed(gateway, again).status_code == 303
    # Once more: still her own name, still one of her.
    third = await asyncio.to_thread(signed_in, gateway, room, "ada")
    assert ticket_name(third) == "Ada Lovelace"
    assert refreshed(gateway, again).status_code in (403, 410)
    assert refreshed(gateway, third).status_code == 303


def test_another_identity_with_a_look_alike_name_is_still_numbered(
    gateway: GatewayServer,
) -> None:
    room = new_room(gateway, oidc=True, oidc_providers=[PROVIDER])
    ada = signed_in(gateway, room, "ada")
    assert ticket_name(ada) == "Ada Lovelace"
    # Another account whose provider vouches for a name that reads as hers (a Cyrillic A).
    impostor = signed_in(gateway, room, "impostor")
    assert ticket_name(impostor) != "Ada Lovelace"
    assert ticket_name(impostor).endswith("(2)")
    # Both stay in: a namesake does not replace anyone.
    assert refreshed(gateway, ada).status_code == 303
    assert refreshed(gateway, impostor).status_code == 303
    # And Bob, twice, is one Bob.
    bob = signed_in(gateway, room, "bob")
    bob_again = signed_in(gateway, room, "bob")
    assert ticket_name(bob) == ticket_name(bob_again) == "Bob Marley"
    assert refreshed(gateway, bob).status_code in (403, 410)
    assert refreshed(gateway, ada).status_code == 303


def email_sign_in(
    gateway: GatewayServer, smtp_server: SmtpServer, room: str, email: str, name: str, nth: int
) -> Admitted:
    with gateway.client(headers={"origin": gateway.url}, timeout=30) as client:
        sent = client.post(f"/_meetgate/email/{room}/send", data={"email": email})
        assert sent.status_code == 200, sent.text
        code = smtp_server.mailbox.wait_for(email, count=nth)[nth - 1].code()
        joined = client.post(
            f"/_meetgate/email/{room}/verify", data={"email": email, "code": code, "name": name}
        )
        assert joined.status_code == 303, joined.text
        ticket = joined.headers["location"].split("#jwt=", 1)[1]
        return Admitted(room=room, ticket=ticket, cookie=client.cookies["meetgate"])


def test_an_email_identity_signing_in_again_keeps_its_name(
    gateway: GatewayServer, smtp_server: SmtpServer
) -> None:
    room = new_room(gateway, email_code=True, allowed_domains=["example.org"])
    email = f"user-{secrets.token_hex(4)}@example.org"
    first = email_sign_in(gateway, smtp_server, room, email, "Grace Hopper", 1)
    assert ticket_name(first) == "Grace Hopper (guest)"
    again = email_sign_in(gateway, smtp_server, room, email, "Grace Hopper", 2)
    assert ticket_name(again) == "Grace Hopper (guest)"
    assert replaced(refreshed(gateway, first))
    assert refreshed(gateway, again).status_code == 303
    # Another address typing the same name is another person: numbered.
    other = f"user-{secrets.token_hex(4)}@example.org"
    namesake = email_sign_in(gateway, smtp_server, room, other, "Grace Hopper", 1)
    assert ticket_name(namesake) == "Grace Hopper (guest) (2)"
    assert refreshed(gateway, again).status_code == 303
