"""After a meeting's retention, nothing of its registrants is left (issue 19): `meetgate serve` on a
real redis-server, a room whose meeting ends a few seconds from now (`[registration]
kept_after_meeting_seconds = 0`), registrations through the pages (one approved and sent its
invitation by e-mail through aiosmtpd, one denied, one left waiting, one updated, one never
confirmed). Once the meeting's end has passed, every key and value in Redis is read, and the
gate's log: no registrant's address (nor its local part), note or name is in either, but for the
names on the approved people's invites, which are theirs to join with: those are kept to the
meeting's retention, or to the invite's expiry (the admission time after the meeting, `[admission]
ttl_seconds`) if that is later, never the day more every other invite is kept after its expiry
(INVITE_KEPT_AFTER_EXPIRY, docs/privacy.md): checked by their expiry in Redis, for a meeting
that ends soon and one that ends later.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.fixtures.gateway_server import GENEROUS_LIMITS, GatewayServer, start_gateway
from tests.fixtures.privacy_scan import everything_in, expires_at
from tests.fixtures.processes import stop_process, wait_until
from tests.fixtures.redis_server import RedisProcess, start_redis
from tests.fixtures.smtp import SmtpServer
from tests.integration.journeys import admit, csrf_token
from tests.integration.test_registration_flood import hosts_list

pytestmark = pytest.mark.slow

ADMISSION_TTL = 60
# Long enough to register, approve and send before the meeting ends, on a slow machine too.
MEETING_LEFT = 20
SETTINGS = """
[registration]
kept_after_meeting_seconds = 0
[smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "none"
sender = "Meetgate <gate@meet.test>"
[outbox]
retry_seconds = 0.2
retry_max_seconds = 1
"""


@dataclass(frozen=True)
class Site:
    gateway: GatewayServer
    redis: RedisProcess


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory, jitsi_web: Any, smtp_server: SmtpServer
) -> Iterator[Site]:
    store = start_redis(tmp_path_factory.mktemp("retention-redis"))
    try:
        with pytest.MonkeyPatch.context() as environ:
            environ.setenv("MEETGATE_ADMISSION__TTL_SECONDS", str(ADMISSION_TTL))
            gateway, proc = start_gateway(
                tmp_path_factory.mktemp("retention"),
                upstream=jitsi_web.url,
                store_url=store.url,
                extra=GENEROUS_LIMITS + SETTINGS.format(smtp_port=smtp_server.port),
            )
        try:
            yield Site(gateway, store)
        finally:
            stop_process(proc)
    finally:
        stop_process(store.proc)


@dataclass(frozen=True)
class Registrant:
    name: str
    address: str
    note: str

    def traces(self) -> dict[str, bytes]:
        local = self.address.split("@")[0]
        return {
            "address": self.address.encode(),
            "local part": local.encode(),
            "note": self.note.encode(),
            "name": self.name.encode(),
        }


def registrant(role: str, name: str) -> Registrant:
    tag = secrets.token_hex(5)
    return Registrant(f"{name} {tag[:4]}", f"{role}-{tag}@uni.example", f"note of {role} {tag}")


def send_form(gateway: GatewayServer, room: str, person: Registrant, browser: Any) -> None:
    sent = browser.post(
        f"/_meetgate/register/{room}/send",
        data={"name": person.name, "email": person.address, "note": person.note},
    )
    assert sent.status_code == 303, sent.text


def register(
    gateway: GatewayServer, smtp: SmtpServer, room: str, person: Registrant, *, confirm: bool = True
) -> None:
    before = len(smtp.mailbox.to(person.address))
    with gateway.client(headers={"origin": gateway.url}, timeout=30) as browser:
        send_form(gateway, room, person, browser)
        code = smtp.mailbox.wait_for(person.address, before + 1)[-1].code()
        if confirm:
            done = browser.post(f"/_meetgate/register/{room}/confirm", data={"code": code})
            assert done.status_code == 303, done.text


def test_after_the_meetings_retention_no_registrant_is_left(
    site: Site, smtp_server: SmtpServer
) -> None:
    gateway = site.gateway
    room = f"retention-{secrets.token_hex(4)}"
    gateway.create_room(room, title="Short meeting")
    now = int(time.time())
    ends = now + MEETING_LEFT
    with gateway.admin() as admin:
        changed = admin.patch(
            f"/api/v1/rooms/{room}",
            json={"registration": True, "starts_at": now - 600, "ends_at": ends},
        )
        assert changed.status_code == 200, changed.text
    host = admit(gateway, room, "Hilde Host", role="host")

    approved, denied = registrant("approved", "Ada"), registrant("denied", "Bob")
    waiting, unconfirmed = registrant("waiting", "Cy"), registrant("unconfirmed", "Di")
    updated = registrant("updated", "Eve")
    earlier = Registrant("Eve Earlier", updated.address, "an earlier note")
    everyone = (approved, denied, waiting, unconfirmed, updated, earlier)
    for person in (approved, denied, waiting, earlier):
        register(gateway, smtp_server, room, person)
    register(gateway, smtp_server, room, updated)
    register(gateway, smtp_server, room, unconfirmed, confirm=False)

    ids = {item["name"]: item["id"] for item in hosts_list(gateway, host)}
    assert set(ids) == {approved.name, denied.name, waiting.name, updated.name}
    for answer, person in (("approve", approved), ("deny", denied)):
        with gateway.client(cookies=host.cookies) as client:
            answered = client.post(
                f"/_meetgate/host/{room}/invitations/{answer}",
                data={
                    "csrf": csrf_token(gateway, host),
                    "confirmed": "1",
                    f"pick.{ids[person.name]}": "1",
                },
                headers={"origin": gateway.url, "accept": "application/json"},
            )
        assert answered.status_code == 200, answered.text
    invitation = smtp_server.mailbox.wait_for(approved.address, 2)[-1]
    assert "/j/" in invitation.body
    assert time.time() < ends, "the meeting ended before the test had registered everyone"

    # While the meeting lasts, the store holds what hosts review (sealed or not, as they read it).
    listed = {item["name"]: item for item in hosts_list(gateway, host)}
    assert listed[waiting.name]["note"] == waiting.note

    def nothing_left() -> bool:
        stored = everything_in(site.redis.url)
        return all(
            trace not in key + value
            for key, value in stored
            if not key.startswith(b"meetgate:invite:")
            for person in everyone
            for trace in person.traces().values()
        )

    # Past the meeting's end (its retention after it is nothing): polled, as Redis expires keys
    # by itself.
    wait_until(lambda: time.time() > ends, MEETING_LEFT + 10, "the meeting's end")
    wait_until(nothing_left, 15, "every registrant's data gone from Redis")
    stored = everything_in(site.redis.url)
    for key, value in stored:
        for person in everyone:
            for what, trace in person.traces().items():
                if key.startswith(b"meetgate:invite:") and what.startswith("name"):
                    continue
                assert trace not in key + value, (what, key)
    # The approved person's invite keeps the name to join with, as long as an invite is kept.
    invites = [key for key, value in stored if key.startswith(b"meetgate:invite:")]
    holding = [key for key, value in stored if approved.name.encode() in value]
    assert holding and set(holding) <= set(invites)
    kept = ends + ADMISSION_TTL + 1
    for key in holding:
        assert 0 < expires_at(site.redis.url, key) <= kept
    for person in (denied, waiting, unconfirmed, updated, earlier):
        assert all(person.name.encode() not in value for _, value in stored)

    log = gateway.log_text()
    for person in everyone:
        for what, trace in person.traces().items():
            assert trace.decode("ascii", "replace") not in log, what


def test_an_approved_registrants_name_goes_with_the_invites_lifetime(
    site: Site, smtp_server: SmtpServer
) -> None:
    gateway = site.gateway
    room = f"retention-{secrets.token_hex(4)}"
    gateway.create_room(room, title="Later meeting")
    starts = int(time.time()) + 3600
    ends = starts + 3600
    with gateway.admin() as admin:
        changed = admin.patch(
            f"/api/v1/rooms/{room}",
            json={"registration": True, "starts_at": starts, "ends_at": ends},
        )
        assert changed.status_code == 200, changed.text
    host = admit(gateway, room, "Hilde Host", role="host")
    person = registrant("approved", "Ada")
    register(gateway, smtp_server, room, person)
    (item,) = hosts_list(gateway, host)
    with gateway.client(cookies=host.cookies) as client:
        answered = client.post(
            f"/_meetgate/host/{room}/invitations/approve",
            data={"csrf": csrf_token(gateway, host), "confirmed": "1", f"pick.{item['id']}": "1"},
            headers={"origin": gateway.url, "accept": "application/json"},
        )
    assert answered.status_code == 200, answered.text
    assert "/j/" in smtp_server.mailbox.wait_for(person.address, 2)[-1].body
    holding = [key for key, value in everything_in(site.redis.url) if person.name.encode() in value]
    assert holding
    # The meeting's retention here is its end (kept_after_meeting_seconds = 0); the invite must
    # work until the admission time after it. Nothing holding the name may outlive both.
    for key in holding:
        assert expires_at(site.redis.url, key) <= ends + ADMISSION_TTL + 1, key
