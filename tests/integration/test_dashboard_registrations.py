"""The host dashboard's invitations page (issue 19), in-process against the whole gate on the
memory store, with a real SMTP server (aiosmtpd): registrations reviewed a page at a time and
filtered by flag, approved and denied (only by the room's hosts, from the gate's own pages, with
the session's token), invitations delivered once; one person invited with and without an
address; a list imported with its bad lines told by number; the sending's progress as JSON; and
no answer that carries a registrant's address."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from gateway.admission.invitations import Invitation
from gateway.admission.invites import make_invite
from gateway.admission.limits import RateLimiter
from gateway.admission.outbox import Outbox
from gateway.admission.registrations import Registrations
from gateway.app import create_app
from gateway.host.dashboard import CsrfTokens
from gateway.host.invitations import HOST_RATES
from gateway.mail import SmtpMailer
from gateway.metrics import Metrics
from gateway.proxy.gate import Gate
from gateway.settings import Settings, load_settings
from gateway.store.memory import MemoryStore
from gateway.store.records import AuditFacts, AuditKind, Role, Room
from tests.fixtures.processes import free_port
from tests.fixtures.smtp import SmtpServer, start_smtp

ORIGIN = "http://127.0.0.1:8000"
OPEN = '{"per_minute": 10000000, "burst": 1000000}'
KEY = "k" * 40
ROOM = "rally"
BASE = f"/_meetgate/host/{ROOM}/invitations"


def environ(smtp: SmtpServer) -> dict[str, str]:
    return {
        "MEETGATE_PUBLIC_URL": ORIGIN,
        "MEETGATE_ADMISSION__PSEUDONYM_KEY": KEY,
        "MEETGATE_CHALLENGE__MODE": "off",
        "MEETGATE_SMTP__HOST": smtp.host,
        "MEETGATE_SMTP__PORT": str(smtp.port),
        "MEETGATE_SMTP__SECURITY": "none",
        "MEETGATE_OUTBOX__PER_MINUTE": "100000",
        "MEETGATE_OUTBOX__BURST": "1000",
        **{f"MEETGATE_RATES__{kind}": OPEN for kind in ("ADDRESS", "NETWORK", "ROOM", "GATE")},
        **{f"MEETGATE_RATES__{kind}": OPEN for kind in ("IDENTITY", "INVITE")},
    }


@dataclass
class Desk:
    settings: Settings
    store: MemoryStore
    gate: Gate
    smtp: SmtpServer
    outbox: Outbox

    def browser(self, **headers: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(self.gate, raise_app_exceptions=False)
        return httpx.AsyncClient(transport=transport, base_url=ORIGIN, headers=headers)

    async def admitted(self, name: str, role: Role, room: str = ROOM) -> httpx.AsyncClient:
        """A browser admitted to `room` through an invite of its own, origin header set."""
        made = make_invite(
            room=room, name=name, role=role, max_uses=1, lifetime_seconds=3600, now=time.time()
        )
        await self.store.add_invite(made.invite)
        async with self.browser(origin=ORIGIN) as joining:
            joined = await joining.post(f"/j/{made.token}")
            assert joined.status_code == 303, joined.text
            cookies = joining.cookies
        browser = self.browser(origin=ORIGIN)
        browser.cookies = cookies
        return browser

    def csrf(self, browser: httpx.AsyncClient, room: str = ROOM) -> str:
        cookie = browser.cookies["meetgate"]
        admission = hashlib.sha256(cookie.encode()).hexdigest()
        return CsrfTokens(KEY.encode()).issue(admission, room)

    async def send_all(self) -> None:
        """Run the outbox until nothing is due (the sending loop is the gate's lifespan's)."""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if await self.outbox.send_due(time.time()) == 0:
                return
        raise AssertionError("the outbox kept sending")


@pytest.fixture
async def desk() -> AsyncIterator[Desk]:
    # A mail server of the test's own: what it received is this test's mail only.
    smtp_server = start_smtp()
    settings = load_settings(None, environ=environ(smtp_server))
    store = MemoryStore()
    gate = create_app(settings, store, Metrics())
    await store.create_room(
        Room(name=ROOM, title="Rally", created_at=time.time(), registration=True)
    )
    await store.create_room(Room(name="other", title="Other", created_at=time.time()))
    outbox = Outbox(
        store,
        settings.outbox,
        key=KEY.encode(),
        mailer=SmtpMailer(settings.smtp),
        public_url=ORIGIN,
    )
    yield Desk(settings, store, gate, smtp_server, outbox)
    await gate.aclose()
    smtp_server.stop()


def ids_on(page: str) -> list[str]:
    return re.findall(r'name="pick\.([0-9a-zA-Z_-]+)"', page)


def json_headers() -> dict[str, str]:
    return {"accept": "application/json"}


async def register_confirmed(desk: Desk, name: str, address: str, *, network: int) -> None:
    """A registration made and confirmed as the registration pages do it, its code read from
    the mail the real SMTP server received; from the network 10.<network>.0.0/24."""
    registrations = Registrations(
        desk.store,
        desk.settings.registration,
        key=KEY.encode(),
        limiter=RateLimiter(desk.store, desk.settings.rates, Metrics()),
        mailer=SmtpMailer(desk.settings.smtp),
    )
    room = await desk.store.get_room(ROOM)
    assert room is not None
    before = len(desk.smtp.mailbox.to(address))
    started = await registrations.register(
        room, name, address, "", f"10.{network}.0.1", time.time()
    )
    await registrations.drain()
    code = desk.smtp.mailbox.wait_for(address, before + 1)[-1].code()
    await registrations.confirm(room, started.id, started.secret, code, time.time())


async def register_many(desk: Desk, count: int, *, domain: str = "uni.example") -> list[str]:
    addresses = [f"person{i}@{domain}" for i in range(count)]
    for i, address in enumerate(addresses):
        await register_confirmed(desk, f"Person {i}", address, network=i)
    return addresses


# Reviewing


async def test_a_host_sees_the_waiting_registrations_a_page_at_a_time(desk: Desk) -> None:
    addresses = await register_many(desk, 30)
    host = await desk.admitted("Hilde Host", Role.HOST)
    async with host:
        first = await host.get(BASE)
        second = await host.get(BASE, params={"page": 2})
        as_json = await host.get(f"{BASE}/registrations", headers=json_headers())
    assert first.status_code == 200, first.text
    assert len(ids_on(first.text)) == 25 and len(ids_on(second.text)) == 5
    assert not set(ids_on(first.text)) & set(ids_on(second.text))
    assert "Page 1 of 2" in first.text and "Page 2 of 2" in second.text
    assert "@uni.example" in first.text
    data = as_json.json()
    assert data["total"] == 30 and len(data["items"]) == 25
    assert data["states"]["waiting"] == 30
    assert set(data["items"][0]) == {
        "id",
        "name",
        "domain",
        "note",
        "state",
        "flags",
        "pending",
        "resembles",
        "at",
    }
    for answer in (first, second, as_json):
        for address in addresses:
            assert address not in answer.text


async def test_a_host_filters_by_flag(desk: Desk) -> None:
    # Six from one network: a burst; three from three others.
    for i in range(6):
        await register_confirmed(desk, f"Burst {i}", f"b{i}@x.example", network=0)
    for i in range(3):
        await register_confirmed(desk, f"Calm {i}", f"c{i}@y.example", network=10 + i)
    host = await desk.admitted("Hilde Host", Role.HOST)
    async with host:
        burst = await host.get(BASE, params={"flag": "burst"})
        everyone = await host.get(BASE)
        bad = await host.get(BASE, params={"flag": "no-such-flag"})
        bad_state = await host.get(BASE, params={"state": "all"})
    assert burst.status_code == 200
    assert len(ids_on(burst.text)) >= 5 and "Calm" not in burst.text
    assert "burst from one network" in burst.text
    assert len(ids_on(everyone.text)) == 9
    assert bad.status_code == 400 and bad_state.status_code == 400


async def test_with_none_waiting_the_page_says_so_and_how_many_were_answered(
    desk: Desk,
) -> None:
    """Catches "No registration here" shown for a room whose registrations are all answered."""
    host = await desk.admitted("Hilde Host", Role.HOST)
    async with host:
        empty = await host.get(BASE)
        assert "No registration here." in empty.text and "None waiting" not in empty.text
        await register_many(desk, 3)
        ids = ids_on((await host.get(BASE)).text)
        for answer, picked in (("approve", ids[:1]), ("deny", ids[1:])):
            fields = {f"pick.{each}": "1" for each in picked}
            done = await host.post(
                f"{BASE}/{answer}", data={"csrf": desk.csrf(host), "confirmed": "1", **fields}
            )
            assert done.status_code == 303, done.text
        answered = await host.get(BASE)
    assert not ids_on(answered.text)
    assert "No registration here." not in answered.text
    assert "None waiting: every registration is answered (1 approved, 2 denied)." in answered.text


async def test_approving_some_sends_each_one_invitation_and_denying_sends_none(
    desk: Desk,
) -> None:
    addresses = await register_many(desk, 4)
    host = await desk.admitted("Hilde Host", Role.HOST)
    async with host:
        page = await host.get(BASE)
        ids = ids_on(page.text)
        token = desk.csrf(host)
        # Without confirmed=1: a question, nothing done.
        asked = await host.post(
            f"{BASE}/approve", data={"csrf": token, f"pick.{ids[0]}": "1", f"pick.{ids[1]}": "1"}
        )
        assert asked.status_code == 200 and "Approve 2 registrations" in asked.text
        # Cancel goes back where the question came from: the invitations page.
        assert f'<a href="{BASE}">Cancel and go back to the invitations</a>' in asked.text
        assert (await host.get(f"{BASE}/registrations", headers=json_headers())).json()["states"][
            "waiting"
        ] == 4
        approved = await host.post(
            f"{BASE}/approve",
            data={
                "csrf": token,
                f"pick.{ids[0]}": "1",
                f"pick.{ids[1]}": "1",
                "confirmed": "1",
            },
            headers=json_headers(),
        )
        assert approved.status_code == 200, approved.text
        body = approved.json()
        assert body["count"] == 2 and body["batch"]
        denied = await host.post(
            f"{BASE}/deny", data={"csrf": token, f"pick.{ids[2]}": "1", "confirmed": "1"}
        )
        assert denied.status_code == 303
        assert denied.headers["location"] == f"{BASE}?done=deny"
        # Approving again what is approved already does nothing more.
        again = await host.post(
            f"{BASE}/approve",
            data={"csrf": token, f"pick.{ids[0]}": "1", "confirmed": "1"},
            headers=json_headers(),
        )
        assert again.json()["count"] == 0 and again.json()["unchanged"] == 1
        await desk.send_all()
        progress = (await host.get(f"{BASE}/progress", headers=json_headers())).json()
        counts = (await host.get(f"{BASE}/registrations", headers=json_headers())).json()
    batch = next(b for b in progress["batches"] if b["batch"] == body["batch"])
    assert batch == {
        "batch": body["batch"],
        "total": 2,
        "sent": 2,
        "failed": 0,
        "waiting": 0,
        "retry_at": None,
        "done": True,
        "retryable": 0,
        "revoked": 0,
        "revocable": 2,
    }
    assert counts["states"] == {"waiting": 1, "approved": 2, "denied": 1}
    # Each approved one got exactly one invitation, with a personal link; the others none.
    invited = [a for a in addresses if desk.smtp.mailbox.to(a) and _invitations(desk, a)]
    assert len(invited) == 2
    for address in invited:
        assert len(_invitations(desk, address)) == 1
    for answer in (approved, progress, counts):
        for address in addresses:
            assert address not in str(answer)


def _invitations(desk: Desk, address: str) -> list[Any]:
    return [m for m in desk.smtp.mailbox.to(address) if "/j/" in m.body]


async def test_approving_every_waiting_one_matching_the_filter(desk: Desk) -> None:
    await register_many(desk, 3)
    host = await desk.admitted("Hilde Host", Role.HOST)
    async with host:
        done = await host.post(
            f"{BASE}/approve",
            data={"csrf": desk.csrf(host), "every": "1", "flag": "", "confirmed": "1"},
        )
        assert done.status_code == 303 and done.headers["location"] == f"{BASE}?done=approve"
        counts = (await host.get(f"{BASE}/registrations", headers=json_headers())).json()
    assert counts["states"]["waiting"] == 0 and counts["states"]["approved"] == 3


async def test_answers_are_for_the_rooms_hosts_from_its_pages_with_its_token(
    desk: Desk,
) -> None:
    await register_many(desk, 1)
    host = await desk.admitted("Hilde Host", Role.HOST)
    attendee = await desk.admitted("Ada", Role.ATTENDEE)
    stranger = await desk.admitted("Other Host", Role.HOST, room="other")
    async with host, attendee, stranger:
        rid = ids_on((await host.get(BASE)).text)[0]
        token = desk.csrf(host)
        fields = {"csrf": token, f"pick.{rid}": "1", "confirmed": "1"}
        for who, status in ((attendee, 403), (stranger, 403)):
            assert (await who.get(BASE)).status_code == status
            assert (await who.get(f"{BASE}/progress")).status_code == status
            refused = await who.post(f"{BASE}/approve", data=fields, headers=json_headers())
            assert refused.status_code == 403
        async with desk.browser(origin=ORIGIN) as nobody:
            assert (await nobody.get(BASE)).status_code == 403
            refused = await nobody.post(f"{BASE}/approve", data=fields)
            assert refused.status_code == 403
        cross = await host.post(
            f"{BASE}/approve", data=fields, headers={"origin": "https://evil.example"}
        )
        assert cross.status_code == 403
        for bad in ("", "0" * 64, token.upper()):
            wrong = await host.post(
                f"{BASE}/approve", data={**fields, "csrf": bad}, headers=json_headers()
            )
            assert wrong.status_code == 403, bad
        other_token = desk.csrf(stranger, "other")
        wrong_room = await host.post(f"{BASE}/approve", data={**fields, "csrf": other_token})
        assert wrong_room.status_code == 403
        counts = (await host.get(f"{BASE}/registrations", headers=json_headers())).json()
    assert counts["states"]["waiting"] == 1


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"pick.x": "yes"},
        {"every": "1", "flag": "nonsense"},
    ],
    ids=["nothing ticked", "box not ticked", "unknown flag"],
)
async def test_malformed_answers_are_refused(desk: Desk, fields: dict[str, str]) -> None:
    host = await desk.admitted("Hilde Host", Role.HOST)
    async with host:
        answer = await host.post(
            f"{BASE}/approve",
            data={"csrf": desk.csrf(host), "confirmed": "1", **fields},
            headers=json_headers(),
        )
        unknown = await host.post(
            f"{BASE}/nonsense", data={"csrf": desk.csrf(host)}, headers=json_headers()
        )
    assert answer.status_code == 400, answer.text
    assert unknown.status_code == 404


# One person


async def test_one_person_invited_by_e_mail_gets_one_invitation(desk: Desk) -> None:
    host = await desk.admitted("Hilde Host", Role.HOST)
    async with host:
        sent = await host.post(
            f"{BASE}/invite",
            data={
                "csrf": desk.csrf(host),
                "name": "Grace",
                "email": "Grace@Lab.Example",
                "role": "attendee",
                "language": "zh-Hans",
            },
        )
        assert sent.status_code == 303 and sent.headers["location"] == f"{BASE}?done=invite"
        await desk.send_all()
        page = await host.get(sent.headers["location"])
    mails = desk.smtp.mailbox.wait_for("grace@lab.example")
    assert len(mails) == 1 and f"{ORIGIN}/j/" in mails[0].body
    assert "1 sent, 0 failed, 0 waiting of 1" in page.text
    assert "grace@lab.example" not in page.text.lower()


async def test_one_person_without_an_address_gets_a_link_shown_once(desk: Desk) -> None:
    host = await desk.admitted("Hilde Host", Role.HOST)
    async with host:
        made = await host.post(
            f"{BASE}/invite",
            data={"csrf": desk.csrf(host), "name": "Co Host", "email": "", "role": "host"},
        )
        as_json = await host.post(
            f"{BASE}/invite",
            data={"csrf": desk.csrf(host), "name": "Lin", "email": "", "role": "attendee"},
            headers=json_headers(),
        )
    assert made.status_code == 200 and made.headers["cache-control"] == "no-store"
    link = re.search(r'value="(http://127\.0\.0\.1:8000/j/[A-Za-z0-9_-]{32})"', made.text)
    assert link, made.text
    assert "shown only this once" in made.text
    [entry] = as_json.json()["links"]
    assert entry["name"] == "Lin" and entry["role"] == "attendee"
    # The link works: it lets its person in, as a host.
    async with desk.browser(origin=ORIGIN) as browser:
        joined = await browser.post(link.group(1).removeprefix(ORIGIN), data={"next": "dashboard"})
    assert joined.status_code == 303 and joined.headers["location"] == f"/_meetgate/host/{ROOM}"


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"name": "", "email": ""}, 400),
        ({"name": "Ada", "email": "not an address"}, 400),
        ({"name": "Ada", "role": "owner"}, 400),
        ({"name": "Ada", "language": "xx"}, 400),
        ({"name": "A\u202eda"}, 400),
    ],
    ids=["empty name", "bad address", "bad role", "bad language", "bidi override"],
)
async def test_bad_single_invites_are_refused(
    desk: Desk, fields: dict[str, str], status: int
) -> None:
    host = await desk.admitted("Hilde Host", Role.HOST)
    async with host:
        answer = await host.post(
            f"{BASE}/invite", data={"csrf": desk.csrf(host), **fields}, headers=json_headers()
        )
    assert answer.status_code == status, answer.text
    assert await desk.store.list_invites(ROOM) == [
        i for i in await desk.store.list_invites(ROOM) if i.name == "Hilde Host"
    ]


# A list


CSV = (
    "name,email,role\r\n"
    "Ada Lovelace,ada@uni.example,attendee\r\n"
    ",nobody@uni.example\r\n"
    "Bob,not-an-address\r\n"
    "李雷,lilei@uni.example,host\r\n"
    "Ada Again,ADA@uni.example\r\n"
).encode()


async def upload(
    host: httpx.AsyncClient, token: str, data: bytes, mode: str, **headers: str
) -> httpx.Response:
    return await host.post(
        f"{BASE}/import",
        data={"csrf": token, "mode": mode, "language": "en"},
        files={"file": ("list.csv", data, "text/csv")},
        headers=headers,
    )


async def test_a_list_sent_by_e_mail_reports_its_bad_lines_by_number(desk: Desk) -> None:
    host = await desk.admitted("Hilde Host", Role.HOST)
    async with host:
        answer = await upload(host, desk.csrf(host), CSV, "send")
        await desk.send_all()
        progress = (await host.get(f"{BASE}/progress", headers=json_headers())).json()
    assert answer.status_code == 200, answer.text
    assert "2 invitations are being sent" in answer.text
    lines = re.findall(r'data-line="(\d+)" data-code="([a-z_]+)"', answer.text)
    assert [int(line) for line, _ in lines] == [3, 4, 6]
    for address in ("nobody@uni.example", "not-an-address", "ada@uni.example"):
        assert address not in answer.text
    assert progress["batches"][0]["sent"] == 2
    assert len(desk.smtp.mailbox.wait_for("ada@uni.example")) == 1
    assert len(desk.smtp.mailbox.wait_for("lilei@uni.example")) == 1


async def test_a_list_as_links_shows_each_link_and_its_line(desk: Desk) -> None:
    host = await desk.admitted("Hilde Host", Role.HOST)
    async with host:
        answer = await upload(host, desk.csrf(host), CSV, "links", accept="application/json")
    data = answer.json()
    assert [(link["line"], link["name"]) for link in data["links"]] == [
        (2, "Ada Lovelace"),
        (5, "李雷"),
    ]
    assert [p["line"] for p in data["problems"]] == [3, 4, 6]
    assert all(p["reason"] for p in data["problems"])
    assert "ada@uni.example" not in answer.text
    assert desk.smtp.mailbox.to("ada@uni.example") == []


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"name=a", "application/x-www-form-urlencoded", 400),
        (b"x" * (3 * 1024 * 1024), "multipart/form-data; boundary=x", 413),
    ],
    ids=["not a file upload", "too large"],
)
async def test_an_upload_that_cannot_be_read_is_refused(
    desk: Desk, body: bytes, content_type: str, status: int
) -> None:
    host = await desk.admitted("Hilde Host", Role.HOST)
    async with host:
        answer = await host.post(
            f"{BASE}/import", content=body, headers={"content-type": content_type}
        )
    assert answer.status_code == status


async def test_an_upload_needs_the_token_and_a_mode(desk: Desk) -> None:
    host = await desk.admitted("Hilde Host", Role.HOST)
    async with host:
        no_token = await upload(host, "", CSV, "links")
        no_mode = await upload(host, desk.csrf(host), CSV, "print")
        empty = await upload(host, desk.csrf(host), b"", "links")
    assert no_token.status_code == 403
    assert no_mode.status_code == 400 and empty.status_code == 400
    assert [i.name for i in await desk.store.list_invites(ROOM)] == ["Hilde Host"]


# The meeting


def utc_field(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M")


async def test_the_host_sets_the_meeting(desk: Desk) -> None:
    # A month from now, on the minute (the form's fields have no seconds).
    starts = (time.time() // 60 + 30 * 24 * 60) * 60
    ends = starts + 2.5 * 3600
    host = await desk.admitted("Hilde Host", Role.HOST)
    async with host:
        saved = await host.post(
            f"{BASE}/meeting",
            data={
                "csrf": desk.csrf(host),
                "registration": "1",
                "auto_approve_domains": "Uni.Example\nlab.example",
                "starts_at": utc_field(starts),
                "ends_at": utc_field(ends),
            },
        )
        bad = [
            await host.post(
                f"{BASE}/meeting",
                data={"csrf": desk.csrf(host), **fields},
                headers=json_headers(),
            )
            for fields in (
                {"starts_at": utc_field(starts), "ends_at": utc_field(starts - 3600)},
                {"starts_at": "tomorrow"},
                {"starts_at": "2026-02-30T10:00"},
                {"starts_at": "2150-01-01T10:00"},
                {"ends_at": utc_field(time.time() - 3600)},
                {"auto_approve_domains": "not a domain@"},
                {"auto_approve_domains": "uni.example bad\u202edomain.example"},
                {"registration": "yes"},
                {"starts_at": utc_field(starts), "ends_at": utc_field(starts + 8 * 86_400)},
            )
        ]
        without_invites = await desk.store.change_room(
            ROOM, lambda room: replace(room, policy=replace(room.policy, invite=False))
        )
        assert not without_invites.policy.invite
        no_invites = await host.post(
            f"{BASE}/meeting",
            data={"csrf": desk.csrf(host), "registration": "1"},
            headers=json_headers(),
        )
    assert saved.status_code == 303
    room = await desk.store.get_room(ROOM)
    assert room is not None
    assert room.registration is True
    assert room.auto_approve_domains == ("uni.example", "lab.example")
    assert room.starts_at == starts and room.ends_at == ends
    assert [answer.status_code for answer in bad] == [400] * 9
    assert no_invites.status_code == 400 and "invite" in no_invites.json()["message"]


async def test_approving_after_the_meeting_is_refused_and_keeps_them_waiting(desk: Desk) -> None:
    await register_many(desk, 1)
    host = await desk.admitted("Hilde Host", Role.HOST)
    async with host:
        rid = ids_on((await host.get(BASE)).text)[0]
        await desk.store.change_room(ROOM, lambda room: replace(room, ends_at=time.time() - 60))
        refused = await host.post(
            f"{BASE}/approve",
            data={"csrf": desk.csrf(host), f"pick.{rid}": "1", "confirmed": "1"},
            headers=json_headers(),
        )
        counts = (await host.get(f"{BASE}/registrations", headers=json_headers())).json()
    assert refused.status_code == 400 and refused.json()["error"] == "meeting_over"
    assert counts["states"]["waiting"] == 1


# Sending, and what the hosts may queue


async def test_the_sending_shows_batches_queued_anywhere(desk: Desk) -> None:
    # A batch queued by the admin API, an auto-approval or `invite import --send` (not from
    # this page) is the room's as much as the page's own.
    room = await desk.store.get_room(ROOM)
    assert room is not None
    elsewhere = Invitation(ROOM, "Grace", "grace@lab.example", Role.ATTENDEE, "en", "import")
    queued = await desk.outbox.enqueue(room, [elsewhere], now=time.time())
    await desk.send_all()
    host = await desk.admitted("Hilde Host", Role.HOST)
    async with host:
        progress = (await host.get(f"{BASE}/progress", headers=json_headers())).json()
        page = await host.get(BASE)
    assert [b["batch"] for b in progress["batches"]] == [queued.batch]
    assert progress["batches"][0]["sent"] == 1
    assert "1 sent, 0 failed, 0 waiting of 1" in page.text


async def test_a_rooms_hosts_invite_at_a_bounded_rate(desk: Desk) -> None:
    host = await desk.admitted("Hilde Host", Role.HOST)
    async with host:
        token = desk.csrf(host)
        answers = [
            await host.post(
                f"{BASE}/invite",
                data={"csrf": token, "name": f"Guest {n}", "role": "attendee", "language": "en"},
                headers=json_headers(),
            )
            for n in range(HOST_RATES["invite"][1] + 1)
        ]
        lists = [
            await upload(host, token, CSV, "links") for _ in range(HOST_RATES["import"][1] + 1)
        ]
    assert [a.status_code for a in answers[:-1]] == [200] * HOST_RATES["invite"][1]
    assert answers[-1].status_code == 429, answers[-1].text
    assert int(answers[-1].headers["retry-after"]) > 0
    assert [a.status_code for a in lists[:-1]] == [200] * HOST_RATES["import"][1]
    assert lists[-1].status_code == 429
    assert "invited many people in a short time" in lists[-1].text


# A batch's failed invitations retried, its invitations revoked


def failing_outbox(desk: Desk) -> Outbox:
    """An outbox whose mail server is not there: every invitation fails at its first try."""
    settings = desk.settings.outbox.model_copy(update={"max_attempts": 1})
    smtp = desk.settings.smtp.model_copy(update={"port": free_port(), "timeout_seconds": 2})
    return Outbox(
        desk.store, settings, key=KEY.encode(), mailer=SmtpMailer(smtp), public_url=ORIGIN
    )


def guests(count: int, tag: str) -> list[Invitation]:
    return [
        Invitation(ROOM, f"Guest {i}", f"guest{i}.{tag}@lab.example", Role.ATTENDEE, "en", "host")
        for i in range(count)
    ]


def batch_of(progress: dict[str, Any], batch: str) -> dict[str, Any]:
    found: dict[str, Any] = next(b for b in progress["batches"] if b["batch"] == batch)
    return found


async def test_a_host_retries_a_batchs_failed_invitations_and_each_goes_once(desk: Desk) -> None:
    room = await desk.store.get_room(ROOM)
    assert room is not None
    invited = guests(3, "retry")
    failing = failing_outbox(desk)
    queued = await failing.enqueue(room, invited, now=time.time())
    while await failing.send_due(time.time()):
        pass
    host = await desk.admitted("Hilde Host", Role.HOST)
    async with host:
        page = await host.get(BASE)
        assert "Retry the 3 failed" in page.text and "Revoke these 3 invitations" in page.text
        assert "Only failed invitations can be sent again" in page.text
        path = f"{BASE}/batches/{queued.batch}/retry"
        token = desk.csrf(host)
        # Without confirmed=1: a page asking first (no script needed), nothing queued.
        asked = await host.post(path, data={"csrf": token})
        assert asked.status_code == 200 and "Send the 3 failed invitations" in asked.text
        assert f'<a href="{BASE}">Cancel and go back to the invitations</a>' in asked.text
        assert f'action="/_meetgate/host/{ROOM}/invitations/batches/{queued.batch}/retry"' in (
            asked.text
        )
        as_json = await host.post(path, data={"csrf": token}, headers=json_headers())
        assert as_json.json()["confirm"].startswith("Send the 3 failed")
        before = batch_of((await host.get(f"{BASE}/progress")).json(), queued.batch)
        assert (before["failed"], before["retryable"], before["waiting"]) == (3, 3, 0)
        done = await host.post(path, data={"csrf": token, "confirmed": "1"})
        assert done.status_code == 303 and done.headers["location"] == f"{BASE}?done=retried"
        # Pressed twice (a second tab): the second finds nothing failed.
        again = await host.post(
            path, data={"csrf": token, "confirmed": "1"}, headers=json_headers()
        )
        assert again.json()["count"] == 0
        await desk.send_all()
        after = batch_of((await host.get(f"{BASE}/progress")).json(), queued.batch)
    assert (after["sent"], after["failed"], after["retryable"]) == (3, 0, 0)
    for invitation in invited:
        assert len(_invitations(desk, invitation.address)) == 1
    facts = [e.facts for e in await desk.store.list_audit(ROOM) if e.action == "resend invitations"]
    # Newest first: the second press changed nothing.
    assert facts == [
        AuditFacts(AuditKind.INVITATIONS, count=0),
        AuditFacts(AuditKind.INVITATIONS, count=3),
    ]


async def test_a_host_revokes_a_batch_its_queued_mail_never_goes_and_its_links_refuse(
    desk: Desk,
) -> None:
    room = await desk.store.get_room(ROOM)
    assert room is not None
    sent, waiting = guests(2, "sent"), guests(2, "waiting")
    queued = await desk.outbox.enqueue(room, sent, now=time.time())
    await desk.send_all()
    links = [_link(_invitations(desk, i.address)[0].body) for i in sent]
    await desk.outbox.enqueue(room, waiting, now=time.time(), batch=queued.batch)
    host = await desk.admitted("Hilde Host", Role.HOST)
    async with host:
        path = f"{BASE}/batches/{queued.batch}/revoke"
        token = desk.csrf(host)
        asked = await host.post(path, data={"csrf": token})
        assert asked.status_code == 200 and "Revoke these 4 invitations" in asked.text
        done = await host.post(path, data={"csrf": token, "confirmed": "1"})
        assert done.status_code == 303 and done.headers["location"] == f"{BASE}?done=revoked"
        await desk.send_all()
        batch = batch_of((await host.get(f"{BASE}/progress")).json(), queued.batch)
        page = await host.get(BASE, params={"done": "revoked"})
    assert (batch["sent"], batch["revoked"], batch["revocable"], batch["waiting"]) == (2, 4, 0, 0)
    assert "4 revoked" in page.text and "their links no longer work" in page.text
    for invitation in waiting:
        assert _invitations(desk, invitation.address) == []
    for link in links:
        async with desk.browser(origin=ORIGIN) as joining:
            refused = await joining.post(link.removeprefix(ORIGIN))
        assert refused.status_code != 303, refused.text
        assert "set-cookie" not in refused.headers
    facts = [e.facts for e in await desk.store.list_audit(ROOM) if e.action == "revoke invitations"]
    assert facts == [AuditFacts(AuditKind.INVITATIONS, count=4)]


def _link(body: str) -> str:
    found = re.findall(r"https?://\S+/j/[A-Za-z0-9_-]+", body)
    assert len(found) == 1, body
    return str(found[0])


async def test_a_batch_is_retried_or_revoked_by_its_rooms_hosts_only(desk: Desk) -> None:
    room = await desk.store.get_room(ROOM)
    other = await desk.store.get_room("other")
    assert room is not None and other is not None
    queued = await desk.outbox.enqueue(room, guests(1, "mine"), now=time.time())
    elsewhere = Invitation("other", "Otto", "otto@lab.example", Role.ATTENDEE, "en", "host")
    theirs = await desk.outbox.enqueue(other, [elsewhere], now=time.time())
    host = await desk.admitted("Hilde Host", Role.HOST)
    attendee = await desk.admitted("Ada", Role.ATTENDEE)
    stranger = await desk.admitted("Other Host", Role.HOST, room="other")
    async with host, attendee, stranger:
        token = desk.csrf(host)
        for action in ("retry", "revoke"):
            path = f"{BASE}/batches/{queued.batch}/{action}"
            fields = {"csrf": token, "confirmed": "1"}
            for who in (attendee, stranger):
                refused = await who.post(path, data=fields, headers=json_headers())
                assert refused.status_code == 403, (action, refused.text)
            # The other room's host, on their own room's page, naming this room's batch.
            own = {"csrf": desk.csrf(stranger, "other"), "confirmed": "1"}
            cross_room = await stranger.post(
                f"/_meetgate/host/other/invitations/batches/{queued.batch}/{action}", data=own
            )
            assert cross_room.status_code == 400, cross_room.text
            # This room's host, naming the other room's batch.
            wrong = await host.post(f"{BASE}/batches/{theirs.batch}/{action}", data=fields)
            assert wrong.status_code == 400
            cross = await host.post(path, data=fields, headers={"origin": "https://evil.example"})
            assert cross.status_code == 403
            for bad in ("", "0" * 64):
                forged = await host.post(path, data={**fields, "csrf": bad})
                assert forged.status_code == 403, bad
            async with desk.browser(origin=ORIGIN) as nobody:
                assert (await nobody.post(path, data=fields)).status_code == 403
        progress = (await host.get(f"{BASE}/progress")).json()
    assert batch_of(progress, queued.batch)["revoked"] == 0
    theirs_now = await desk.outbox.progress(theirs.batch)
    assert theirs_now is not None and theirs_now.revoked == 0


@pytest.mark.parametrize(
    "path",
    [
        "batches/0123456789abcdef/resend",
        "batches/0123456789ABCDEF/revoke",
        "batches/0123456789abcde/revoke",
        "batches/..%2F..%2Fapprove/revoke",
        "batches/0123456789abcdef0/retry",
        "batches//retry",
    ],
    ids=["unknown-action", "upper-case", "short", "dots", "long", "empty"],
)
async def test_malformed_batch_actions_are_refused(desk: Desk, path: str) -> None:
    host = await desk.admitted("Hilde Host", Role.HOST)
    async with host:
        answer = await host.post(f"{BASE}/{path}", data={"csrf": desk.csrf(host), "confirmed": "1"})
        unknown = await host.post(
            f"{BASE}/batches/0123456789abcdef/revoke",
            data={"csrf": desk.csrf(host), "confirmed": "1"},
        )
    assert answer.status_code in (400, 404, 405), answer.text
    # A well-formed id no batch has: refused as no such batch of this room.
    assert unknown.status_code == 400
