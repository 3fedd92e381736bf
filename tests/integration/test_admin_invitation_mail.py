"""The admin API and the invitation e-mails waiting to be sent (issue 19), in-process with the
gate's outbox on the memory store and a real SMTP server (aiosmtpd): revoking an invite
(`meetgate invite revoke ID`, or `--name`) stops its e-mail and erases its sealed address, and
deleting a room erases the addresses of its invitations not yet sent."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from gateway.admin_api import AdminAuth
from gateway.admission.invitations import Invitation, Queued
from gateway.admission.outbox import Outbox
from gateway.app import create_admin, create_app
from gateway.metrics import Metrics
from gateway.proxy.gate import Gate
from gateway.settings import Settings, load_settings
from gateway.store.memory import MemoryStore
from gateway.store.records import Role, Room
from tests.fixtures.smtp import SmtpServer, start_smtp

pytestmark = pytest.mark.slow

ORIGIN = "http://127.0.0.1:8000"
ROOM = "assembly"


@dataclass
class Admin:
    settings: Settings
    store: MemoryStore
    gate: Gate
    admin: AdminAuth
    smtp: SmtpServer

    @property
    def outbox(self) -> Outbox:
        outbox = self.gate.invitations
        assert isinstance(outbox, Outbox)
        return outbox

    def client(self) -> httpx.AsyncClient:
        token = self.settings.admin.token.get_secret_value()
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(self.admin),
            base_url="http://admin",
            headers={"authorization": f"Bearer {token}"},
        )

    async def queue(self, *names: str) -> Queued:
        room = await self.store.get_room(ROOM)
        assert room is not None
        invited = [
            Invitation(ROOM, name, address(name), Role.ATTENDEE, "en", "import") for name in names
        ]
        return await self.outbox.enqueue(room, invited, now=time.time())

    async def sealed(self, invite_id: str) -> str | None:
        item_id = await self.store.get_value(f"outbox:invite:{invite_id}")
        assert item_id is not None
        raw = await self.store.get_value(f"outbox:item:{item_id}")
        assert raw is not None
        sealed: str | None = json.loads(raw)["sealed"]
        return sealed


def address(name: str) -> str:
    return f"{name.lower()}@lab.example"


@pytest.fixture
async def admin() -> AsyncIterator[Admin]:
    smtp = start_smtp()
    settings = load_settings(
        None,
        environ={
            "MEETGATE_PUBLIC_URL": ORIGIN,
            "MEETGATE_ADMISSION__PSEUDONYM_KEY": "k" * 40,
            "MEETGATE_SMTP__HOST": smtp.host,
            "MEETGATE_SMTP__PORT": str(smtp.port),
            "MEETGATE_SMTP__SECURITY": "none",
        },
    )
    store = MemoryStore()
    metrics = Metrics()
    gate = create_app(settings, store, metrics)
    await store.create_room(Room(name=ROOM, title="Assembly", created_at=time.time()))
    yield Admin(settings, store, gate, create_admin(settings, store, metrics, gate=gate), smtp)
    await gate.aclose()
    smtp.stop()


async def test_revoking_an_invite_stops_its_queued_e_mail(admin: Admin) -> None:
    queued = await admin.queue("Ada", "Grace", "Linus")
    ada, grace, linus = queued.invite_ids
    async with admin.client() as client:
        by_id = await client.delete(f"/api/v1/invites/{ada}")
        by_name = await client.post(f"/api/v1/rooms/{ROOM}/invites/revoke", json={"name": "Grace"})
    assert by_id.status_code == 204, by_id.text
    assert by_name.status_code == 200 and by_name.json()["id"] == grace
    # Their sealed addresses are erased at once, not when a sender comes to them.
    assert await admin.sealed(ada) is None and await admin.sealed(grace) is None
    assert await admin.sealed(linus) is not None
    assert await admin.outbox.send_due(time.time()) == 1
    assert admin.smtp.mailbox.to(address("Ada")) == []
    assert admin.smtp.mailbox.to(address("Grace")) == []
    assert len(admin.smtp.mailbox.to(address("Linus"))) == 1
    progress = await admin.outbox.progress(queued.batch)
    assert progress is not None and (progress.sent, progress.revoked) == (1, 2)


async def test_deleting_a_room_erases_its_unsent_invitations(admin: Admin) -> None:
    queued = await admin.queue("Ada", "Grace")
    async with admin.client() as client:
        deleted = await client.delete(f"/api/v1/rooms/{ROOM}")
    assert deleted.status_code == 204, deleted.text
    for invite_id in queued.invite_ids:
        assert await admin.sealed(invite_id) is None
    assert await admin.outbox.batches(ROOM, 10) == []
    # Made again under its name: the old room's invitations never go.
    await admin.store.create_room(Room(name=ROOM, title="Assembly", created_at=time.time()))
    assert await admin.outbox.send_due(time.time()) == 0
    assert admin.smtp.mailbox.messages == []
