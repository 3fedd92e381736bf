"""A BOSH session whose bodies carry decoy attributes is still the one revocation ends.

A hand-written BOSH client (every body spelled out, a decoy `sid` inside another attribute's
value after the real one) signs in to the real prosody through the real `meetgate serve` and
joins a room; a strophe.js attendee watches. When the host revokes the decoy client, prosody
must end its real session at once: the attendee sees it leave.
"""

from __future__ import annotations

import asyncio
import time
import xml.etree.ElementTree as ET
from typing import Any

import httpx
import pytest

from tests.fixtures.gateway_server import GatewayServer
from tests.fixtures.http_clients import TLS
from tests.fixtures.xmpp_client import XmppClient
from tests.integration.journeys import (
    admission_id,
    admit,
    bosh_url,
    host_action,
    new_room,
    signalling_query,
    ws_url,
)

pytestmark = pytest.mark.slow

HTTPBIND = "http://jabber.org/protocol/httpbind"
XBOSH = "urn:xmpp:xbosh"
# As in test_revocation: the other occupants see the revoked one leave within a second.
PRESENCE_GONE_WITHIN = 1.0


class DecoyBoshClient:
    """XEP-0206 by hand: each request's body names its sid first and a decoy after it."""

    def __init__(self, client: httpx.AsyncClient, url: str, domain: str) -> None:
        self._client = client
        self._url = url
        self._domain = domain
        self.rid = 1_000_000
        self.sid = ""

    async def post(self, inner: str = "", **attributes: str) -> ET.Element:
        self.rid += 1
        spelled = "".join(
            f" {name.replace('_', ':')}='{value}'" for name, value in attributes.items()
        )
        if self.sid:
            # An old reader of the gate took the last `sid=` it found, the decoy's.
            spelled = f" sid='{self.sid}' foo=\"sid='decoy-{self.rid}'\"" + spelled
        body = f"<body rid='{self.rid}'{spelled} xmlns='{HTTPBIND}'>{inner}</body>"
        response = await self._client.post(
            self._url, content=body.encode(), headers={"content-type": "text/xml; charset=utf-8"}
        )
        assert response.status_code == 200, response.text
        answer = ET.fromstring(response.content)  # noqa: S314 - prosody of the tests answers
        assert answer.get("type") != "terminate", response.text
        return answer

    async def sign_in(self) -> str:
        """Session, anonymous SASL, restart, bind; the full JID."""
        created = await self.post(
            to=self._domain, wait="10", hold="1", xmpp_version="1.0", xmlns_xmpp=XBOSH
        )
        self.sid = created.attrib["sid"]
        sasl = "urn:ietf:params:xml:ns:xmpp-sasl"
        authed = await self.post(f"<auth xmlns='{sasl}' mechanism='ANONYMOUS'/>")
        assert authed.find(f"{{{sasl}}}success") is not None, ET.tostring(authed)
        await self.post(to=self._domain, xmpp_restart="true", xmlns_xmpp=XBOSH)
        bind = "urn:ietf:params:xml:ns:xmpp-bind"
        bound = await self.post(
            f"<iq type='set' id='bind1' xmlns='jabber:client'><bind xmlns='{bind}'/></iq>"
        )
        jid = bound.find(f".//{{{bind}}}jid")
        assert jid is not None and jid.text, ET.tostring(bound)
        return jid.text

    async def join(self, room_jid: str, nick: str) -> None:
        muc = "http://jabber.org/protocol/muc"
        await self.post(
            f"<presence to='{room_jid}/{nick}' xmlns='jabber:client'><x xmlns='{muc}'/></presence>"
        )


async def test_revocation_ends_the_real_session_of_a_decoy_body(
    gateway: GatewayServer, prosody: Any
) -> None:
    room = new_room(gateway)
    host = admit(gateway, room, "Host", role="host")
    ada, troll = admit(gateway, room, "Ada"), admit(gateway, room, "Troll")
    async with (
        XmppClient.open(ws_url(gateway, signalling_query(ada))) as ada_client,
        httpx.AsyncClient(trust_env=False, timeout=20, verify=TLS) as http,
    ):
        await ada_client.join(prosody.room_jid(room), "ada")
        decoy = DecoyBoshClient(http, bosh_url(gateway, signalling_query(troll)), prosody.domain)
        await decoy.sign_in()
        await decoy.join(prosody.room_jid(room), "troll")
        await ada_client.wait_for_presence(nick="troll", type="available")

        target = admission_id(gateway, host, "Troll")
        answer = await asyncio.to_thread(host_action, gateway, host, "revoke", admission=target)
        started = time.monotonic()
        assert answer["done"] is True
        await ada_client.wait_for_presence(
            nick="troll", type="unavailable", timeout=PRESENCE_GONE_WITHIN
        )
        assert time.monotonic() - started <= PRESENCE_GONE_WITHIN + 0.2
