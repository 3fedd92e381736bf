"""A room's registration settings (`meetgate room set … --registration`, `room show`) and the
review of its registrations (`meetgate registration list|approve|deny`), issue 19: the CLI
against the admin API of a real `meetgate serve`, on a real Redis with a real SMTP server
(aiosmtpd), and on the memory store without one; every refusal, exit code and question.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.admin_api import create_admin_app
from gateway.admin_registrations import resolve
from gateway.admission.limits import RateLimiter
from gateway.admission.outbox import Outbox
from gateway.admission.registrations import Registration, Registrations, RegistrationState
from gateway.errors import StoreUnavailable
from gateway.i18n import ENGLISH
from gateway.mail import SmtpMailer
from gateway.metrics import Metrics
from gateway.settings import load_settings
from gateway.store import Store, open_store
from tests.fixtures.asgi_servers import ServedApp
from tests.fixtures.cli import environment, meetgate, on_terminal
from tests.fixtures.gateway_server import (
    GENEROUS_LIMITS,
    GatewayServer,
    start_gateway,
    write_config,
)
from tests.fixtures.processes import free_port, stop_process
from tests.fixtures.smtp import SmtpServer

pytestmark = pytest.mark.slow

# 2026-12-20 14:00 and 18:00 in Taipei, as an organiser writes them.
STARTS = "2026-12-20T14:00+08:00"
ENDS = "2026-12-20T18:00+08:00"
STARTS_EPOCH = 1_797_746_400.0
ENDS_EPOCH = STARTS_EPOCH + 4 * 3600


def smtp_settings(port: int) -> str:
    return (
        f'[smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\n'
        'sender = "Meetgate <gate@meet.test>"\ntimeout_seconds = 5\n'
    )


@pytest.fixture(scope="module")
def mailing(
    tmp_path_factory: pytest.TempPathFactory, redis_server: str, smtp_server: SmtpServer
) -> Iterator[GatewayServer]:
    """A gate with an SMTP server, on the tests' Redis. Nothing here reaches Jitsi."""
    server, proc = start_gateway(
        tmp_path_factory.mktemp("registration-mail"),
        upstream="http://127.0.0.1:9",
        store_url=redis_server,
        extra=GENEROUS_LIMITS + smtp_settings(smtp_server.port),
    )
    yield server
    stop_process(proc)


@pytest.fixture(scope="module")
def mailless(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    """A gate without an SMTP server, on the memory store."""
    server, proc = start_gateway(
        tmp_path_factory.mktemp("registration-nomail"), upstream="http://127.0.0.1:9"
    )
    yield server
    stop_process(proc)


_made = iter(range(1_000_000))


def new_room(gateway: GatewayServer, prefix: str = "reg") -> str:
    room = f"{prefix}-{os.getpid()}-{next(_made)}"
    made = meetgate(gateway, "room", "create", room)
    assert made.returncode == 0, made.stderr
    return room


def shown(gateway: GatewayServer, room: str) -> dict[str, Any]:
    listed = meetgate(gateway, "room", "show", room, "--json")
    assert listed.returncode == 0, listed.stderr
    return dict(json.loads(listed.stdout))


def audit(gateway: GatewayServer, room: str) -> list[dict[str, Any]]:
    listed = meetgate(gateway, "room", "audit", room, "--json")
    assert listed.returncode == 0, listed.stderr
    return list(json.loads(listed.stdout))


# ---------------------------------------------------------------- room set, room show


def test_room_set_registration_round_trip(mailing: GatewayServer) -> None:
    room = new_room(mailing)
    done = meetgate(
        mailing,
        "room",
        "set",
        room,
        "--registration",
        "on",
        "--auto-approve-domain",
        "@Uni.Example",
        "lab.example",
        "--auto-approve-domain",
        "uni.example",
        "--auto-approve-email",
        "Chair@Board.Example",
        "--series",
        "conf-2026",
        "--starts-at",
        STARTS,
        "--ends-at",
        str(int(ENDS_EPOCH)),
    )
    assert done.returncode == 0, done.stderr
    assert "registration on" in done.stdout and "auto-approved: uni.example" in done.stdout
    room_now = shown(mailing, room)
    assert room_now["registration"] is True
    assert room_now["auto_approve_domains"] == ["uni.example", "lab.example"]
    # Addresses are counted, never shown.
    assert room_now["auto_approve_email_count"] == 1
    assert "chair@board.example" not in json.dumps(room_now).lower()
    assert room_now["series"] == "conf-2026"
    assert room_now["starts_at"] == STARTS_EPOCH and room_now["ends_at"] == ENDS_EPOCH
    text = meetgate(mailing, "room", "show", room)
    assert text.returncode == 0, text.stderr
    assert f"room {room}" in text.stdout
    assert "registration on, auto-approved: uni.example, lab.example, 1 address" in text.stdout
    assert "series conf-2026" in text.stdout
    # The page to announce, said where registration is turned on and where the room is shown.
    page = f"{load_settings(mailing.config_path).public_url}/_meetgate/register/{room}"
    assert room_now["registration_page"] == page
    for output in (done.stdout, text.stdout):
        assert f"announce the registration page: {page}\n" in output
    actions = [entry["action"] for entry in audit(mailing, room)]
    for action in (
        "registration on",
        "change auto-approval",
        "change series",
        "change meeting time",
    ):
        assert action in actions
    log = json.dumps(audit(mailing, room))
    # The meeting's time as the dashboard's log says it in English (the admin API's words).
    assert "board.example" not in log.lower() and "from Dec 20, 2026, 6:00" in log

    cleared = meetgate(
        mailing,
        "room",
        "set",
        room,
        "--registration",
        "off",
        "--no-auto-approve",
        "--series",
        "none",
        "--starts-at",
        "none",
        "--ends-at",
        "none",
    )
    assert cleared.returncode == 0, cleared.stderr
    room_now = shown(mailing, room)
    assert room_now["registration"] is False
    assert room_now["auto_approve_domains"] == [] and room_now["auto_approve_email_count"] == 0
    assert room_now["series"] == "" and room_now["starts_at"] is None
    assert room_now["ends_at"] is None
    assert room_now["registration_page"] is None
    assert "announce" not in cleared.stdout
    assert "announce" not in meetgate(mailing, "room", "show", room).stdout
    assert "registration off" in [entry["action"] for entry in audit(mailing, room)]


def test_room_show_unknown_room(mailing: GatewayServer) -> None:
    shown_none = meetgate(mailing, "room", "show", "no-such-room-here")
    assert shown_none.returncode == 2
    assert "meetgate room list" in shown_none.stderr


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(seconds))


# Each refused `room set`: its options, the option the refusal names, and what it says.
REFUSALS = {
    "domain-with-space": (
        ["--auto-approve-domain", "uni.example", "bad domain"],
        "--auto-approve-domain: entry 2 is not a domain",
    ),
    "domain-without-dot": (["--auto-approve-domain", "localhost"], "--auto-approve-domain"),
    "domain-with-at": (["--auto-approve-domain", "a@b.example"], "--auto-approve-domain"),
    "domain-control-character": (["--auto-approve-domain", "uni\x07.example"], "entry 1"),
    "address-not-plain": (
        ["--auto-approve-email", "ok@uni.example", "Ada <ada@uni.example>"],
        "--auto-approve-email: entry 2 is not a plain e-mail address",
    ),
    "address-without-domain": (["--auto-approve-email", "ada@"], "--auto-approve-email"),
    "series-upper-case": (["--series", "Conf 2026"], "--series: is named as a room is"),
    "time-without-offset": (["--starts-at", "2026-12-20T14:00"], "--starts-at: has no offset"),
    "time-not-a-time": (["--starts-at", "next tuesday"], "--starts-at: is not a time"),
    "time-absurd-year": (["--starts-at", "2999-01-01T00:00Z"], "between the years 2000 and 2100"),
    "ends-before-starts": (
        ["--starts-at", STARTS, "--ends-at", "2026-12-20T13:00+08:00"],
        "--ends-at: is not after the meeting's start",
    ),
    "ends-as-starts": (["--starts-at", STARTS, "--ends-at", STARTS], "is not after"),
    "longer-than-a-week": (
        ["--starts-at", STARTS, "--ends-at", "2026-12-28T14:00+08:00"],
        "--ends-at: is more than 7 days after",
    ),
    "ends-in-the-past": (["--ends-at", "2021-01-01T00:00Z"], "--ends-at: is past"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_room_set_refusals(mailing: GatewayServer, case: str) -> None:
    options, said = REFUSALS[case]
    room = new_room(mailing)
    before = shown(mailing, room)
    refused = meetgate(mailing, "room", "set", room, *options)
    assert refused.returncode == 2, refused.stdout
    assert said in refused.stderr
    assert shown(mailing, room) == before
    assert not [e for e in audit(mailing, room) if e["action"] != "view roster"]


def test_room_set_refuses_every_bad_value_at_once(mailing: GatewayServer) -> None:
    room = new_room(mailing)
    refused = meetgate(
        mailing,
        "room",
        "set",
        room,
        "--auto-approve-domain",
        "bad domain",
        "--series",
        "Bad!",
        "--starts-at",
        "soon",
    )
    assert refused.returncode == 2
    for option in ("--auto-approve-domain", "--series", "--starts-at"):
        assert option in refused.stderr


def test_the_end_is_checked_against_the_start_already_set(mailing: GatewayServer) -> None:
    room = new_room(mailing)
    assert meetgate(mailing, "room", "set", room, "--starts-at", STARTS).returncode == 0
    refused = meetgate(mailing, "room", "set", room, "--ends-at", "2026-12-20T13:59+08:00")
    assert refused.returncode == 2 and "is not after the meeting's start" in refused.stderr
    later = meetgate(mailing, "room", "set", room, "--ends-at", ENDS)
    assert later.returncode == 0, later.stderr
    assert shown(mailing, room)["ends_at"] == ENDS_EPOCH


def test_registration_needs_an_smtp_server(mailless: GatewayServer) -> None:
    room = new_room(mailless)
    refused = meetgate(mailless, "room", "set", room, "--registration", "on")
    assert refused.returncode == 2
    assert "--registration: needs an SMTP server" in refused.stderr
    assert "[smtp] host" in refused.stderr
    assert shown(mailless, room)["registration"] is False
    # The other settings need none.
    done = meetgate(mailless, "room", "set", room, "--series", "conf", "--starts-at", STARTS)
    assert done.returncode == 0, done.stderr


def test_registration_needs_invites_in_the_policy(mailing: GatewayServer) -> None:
    room = new_room(mailing)
    policy = meetgate(mailing, "room", "policy", room, "--no-invite", "--lobby")
    assert policy.returncode == 0, policy.stderr
    refused = meetgate(mailing, "room", "set", room, "--registration", "on")
    assert refused.returncode == 2
    assert "--registration: needs personal invites in the room's policy" in refused.stderr


def test_a_moved_room_is_not_changed(mailing: GatewayServer) -> None:
    room = new_room(mailing)
    moved = meetgate(mailing, "room", "move", room, f"{room}-new", "--yes")
    assert moved.returncode == 0, moved.stderr
    refused = meetgate(mailing, "room", "set", room, "--registration", "on")
    assert refused.returncode == 2
    assert f"moved to room {room}-new" in refused.stderr
    assert shown(mailing, room)["registration"] is False


def test_no_auto_approve_goes_alone(mailing: GatewayServer) -> None:
    room = new_room(mailing)
    refused = meetgate(
        mailing, "room", "set", room, "--no-auto-approve", "--auto-approve-domain", "x.example"
    )
    assert refused.returncode == 2 and "--no-auto-approve empties both lists" in refused.stderr


def test_times_in_the_api_as_numbers_or_iso(mailing: GatewayServer) -> None:
    """The admin API takes epoch seconds as a number too, and answers them as numbers."""
    room = new_room(mailing)
    with mailing.admin() as admin:
        answer = admin.patch(
            f"/api/v1/rooms/{room}", json={"starts_at": STARTS_EPOCH, "ends_at": _iso(ENDS_EPOCH)}
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["ends_at"] == ENDS_EPOCH
        refused = admin.patch(f"/api/v1/rooms/{room}", json={"starts_at": True})
        assert refused.status_code == 422
        rule = admin.patch(f"/api/v1/rooms/{room}", json={"auto_approve_domains": ["a b"]})
        assert rule.status_code == 400
        assert rule.json()["error"] == "invalid_input"
        assert rule.json()["fields"] == [
            {
                "where": "body.auto_approve_domains",
                "problem": "entry 1 is not a domain an e-mail address can have (like example.org)",
            }
        ]


# ---------------------------------------------------------------- registration list/approve/deny

# The admin API built as `meetgate serve` builds it, with the gate's Registrations and Outbox,
# served on a real socket in this process (so that the test makes registrations through the
# same Registrations, and runs the outbox's sending pass, on the server's own loop).


@dataclass
class RecordingCodes:
    """The registrations' code mailer: keeps each code by address (the invitations go to the
    real SMTP server)."""

    sent: dict[str, str] = field(default_factory=dict)

    async def send(self, to: str, subject: str, body: str, *, language: str = "en") -> None:
        found = re.search(r"^\s+(\d{6,8})\s*$", body, re.MULTILINE)
        assert found, body
        self.sent[to] = found.group(1)


class LaterApp:
    """An ASGI app set once the server's loop runs (the store lives on that loop)."""

    app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.app is not None
        await self.app(scope, receive, send)


@dataclass
class Admin:
    served: ServedApp
    url: str
    token: str
    store: Store
    registrations: Registrations
    outbox: Outbox
    codes: RecordingCodes
    networks: Iterator[int] = field(default_factory=lambda: iter(range(1, 250)))

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return self.served.run(coro)

    def cli(self, *args: str, terminal: str | None = None) -> subprocess.CompletedProcess[str]:
        # One argument: a token may begin with "-".
        command = [*args, "--admin-url", self.url, f"--admin-token={self.token}"]
        if terminal is not None:
            return on_terminal(terminal, command)
        return subprocess.run(
            [sys.executable, "-m", "gateway.cli", *command],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
            env=environment(),
            check=False,
        )

    def room(self) -> str:
        room = f"regs-{next(_made)}"
        for made in (
            self.cli("room", "create", room),
            self.cli("room", "set", room, "--registration", "on"),
        ):
            assert made.returncode == 0, made.stderr
        return room

    def register(
        self, room: str, name: str, address: str, *, network: str | None = None, note: str = ""
    ) -> str:
        """A confirmed registration's id; each from a network of its own unless `network`."""
        client = network or f"10.{next(self.networks)}.0.7"

        async def registered() -> str:
            record = await self.store.get_room(room)
            assert record is not None
            now = time.time()
            made = await self.registrations.register(
                record, name, address, note, client, now, language=ENGLISH
            )
            await self.registrations.drain()
            code = self.codes.sent.pop(address)
            confirmed = await self.registrations.confirm(record, made.id, made.secret, code, now)
            return confirmed.registration.id

        return str(self.run(registered()))


def start_admin(workdir: Path, store_url: str, smtp_port: int) -> Admin:
    config = workdir / "meetgate.toml"
    write_config(
        config,
        port=free_port(),
        admin_port=free_port(),
        upstream="http://127.0.0.1:9",
        signalling_upstream=None,
        store_url=store_url,
        extra=GENEROUS_LIMITS + smtp_settings(smtp_port),
    )
    settings = load_settings(config)
    later = LaterApp()
    served = ServedApp("meetgate", later)
    served.start()
    codes = RecordingCodes()

    async def build() -> tuple[Store, Registrations, Outbox]:
        store = await open_store(settings.store.url, settings.store_options())
        metrics = Metrics()
        key = settings.admission.pseudonym_key.get_secret_value().encode()
        registrations = Registrations(
            store,
            settings.registration,
            key=key,
            limiter=RateLimiter(store, settings.rates, metrics),
            mailer=codes,
            codes=settings.email_codes,
        )
        outbox = Outbox(
            store,
            settings.outbox,
            key=key,
            mailer=SmtpMailer(settings.smtp),
            public_url=settings.public_url,
            metrics=metrics,
        )
        later.app = create_admin_app(
            settings, store, metrics, invitations=outbox, registrations=registrations
        )
        return store, registrations, outbox

    store, registrations, outbox = served.run(build())
    return Admin(
        served=served,
        url=f"http://127.0.0.1:{served.port}",
        token=settings.admin.token.get_secret_value(),
        store=store,
        registrations=registrations,
        outbox=outbox,
        codes=codes,
    )


@pytest.fixture(scope="module", params=["memory", "redis"])
def admin(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, smtp_server: Any
) -> Iterator[Admin]:
    url = "memory://" if request.param == "memory" else request.getfixturevalue("redis_server")
    served = start_admin(tmp_path_factory.mktemp(f"admin-{request.param}"), url, smtp_server.port)
    yield served
    served.run(served.store.close())
    served.served.stop()


def listed(admin: Admin, room: str, *options: str) -> dict[str, Any]:
    shown_page = admin.cli("registration", "list", room, "--json", *options)
    assert shown_page.returncode == 0, shown_page.stderr
    return dict(json.loads(shown_page.stdout))


def test_list_pages_and_shows_no_address(admin: Admin) -> None:
    room = admin.room()
    ids = [
        admin.register(room, f"Attendee {i}", f"person{i}@uni{i % 3}.example", note=f"n{i}")
        for i in range(23)
    ]
    first = listed(admin, room)
    assert first["total"] == 23 and first["offset"] == 0 and first["limit"] == 20
    assert len(first["items"]) == 20
    assert first["counts"]["states"] == {"waiting": 23, "approved": 0, "denied": 0}
    assert set(first["items"][0]) == {
        "id",
        "name",
        "domain",
        "note",
        "state",
        "flags",
        "language",
        "created_at",
        "updated_at",
        "answered_at",
        "invitation_pending",
        "resembles",
    }
    assert first["items"][0]["domain"] == "uni0.example"
    second = listed(admin, room, "--page", "2")
    assert len(second["items"]) == 3
    assert {i["id"] for i in first["items"] + second["items"]} == set(ids)
    table = admin.cli("registration", "list", room, "--page", "2")
    assert table.returncode == 0, table.stderr
    assert "page 2 of 2: 23 matching" in table.stdout and "23 waiting" in table.stdout
    assert ids[20][:12] in table.stdout and "uni2.example" in table.stdout
    for output in (first, second, table.stdout):
        assert "@" not in json.dumps(output)
    beyond = admin.cli("registration", "list", room, "--page", "3")
    assert beyond.returncode == 1 and "there is no page 3: 2 page(s)" in beyond.stderr
    bad_page = admin.cli("registration", "list", room, "--page", "0")
    assert bad_page.returncode == 2


def test_flags_filter_and_deny_by_flag(admin: Admin) -> None:
    room = admin.room()
    burst = [
        admin.register(room, f"Flood {i}", f"flood{i}@spam.example", network="192.0.2.9")
        for i in range(5)
    ]
    calm = admin.register(room, "Grace Hopper", "grace@navy.example")
    flagged = listed(admin, room, "--flag", "burst")
    assert sorted(i["id"] for i in flagged["items"]) == sorted(burst)
    assert flagged["counts"]["flags"]["burst"] == 5
    asked = admin.cli("registration", "deny", room, "--flag", "burst")
    assert asked.returncode == 2 and "pass --yes" in asked.stderr
    assert listed(admin, room, "--state", "denied")["total"] == 0
    no = admin.cli("registration", "deny", room, "--flag", "burst", terminal="n")
    assert no.returncode == 2 and "Deny all 5 waiting registration(s) flagged burst" in no.stderr
    assert listed(admin, room, "--state", "denied")["total"] == 0
    yes = admin.cli("registration", "deny", room, "--flag", "burst", terminal="y")
    assert yes.returncode == 0, yes.stderr
    assert f"denied 5 registration(s) in room {room}" in yes.stdout
    denied = listed(admin, room, "--state", "denied")
    assert sorted(i["id"] for i in denied["items"]) == sorted(burst)
    waiting = listed(admin, room, "--state", "waiting")
    assert [i["id"] for i in waiting["items"]] == [calm]
    none_left = admin.cli("registration", "deny", room, "--flag", "burst", "--yes")
    assert none_left.returncode == 1 and "no waiting registration flagged burst" in none_left.stderr


class BrokenQueue:
    """An InvitationQueue whose store is down."""

    async def enqueue(self, room: Any, invitations: Any, *, now: float, batch: Any = None) -> Any:
        raise StoreUnavailable()

    async def progress(self, batch: str) -> None:
        return None


def test_list_says_whom_a_name_looks_like_and_which_invitations_are_pending(
    admin: Admin,
) -> None:
    """Catches a list that says only "looks_like", and one that shows an approval whose queue
    failed as plainly approved and leaves it unsent until another approval: listing queues it
    (but for one an approval holds now, shown as "invitation pending")."""
    room = admin.room()
    first = admin.register(room, "Rosa Luxemburg", "rosa@one.example")
    admin.register(room, "Rosa Luxernburg", "fake@two.example")
    ids = [admin.register(room, f"Pending {i}", f"pending{i}@three.example") for i in range(2)]

    async def left_pending() -> str:
        with contextlib.suppress(StoreUnavailable):
            await admin.registrations.approve(room, ids, "Hilde", time.time(), queue=BrokenQueue())
        held = await admin.registrations.get(room, ids[0])
        assert held is not None and held.inviting
        # As an approval queueing it right now holds it.
        lease = f"registration:lease:{held.id}:{held.invite_round}"
        assert await admin.store.claim_once(lease, 300)
        return lease

    admin.run(left_pending())
    page = listed(admin, room)
    items = {item["id"]: item for item in page["items"]}
    assert items[first]["resembles"] == {"name": "Rosa Luxernburg", "kind": "registrant"}
    assert items[ids[0]]["invitation_pending"] is True
    # Listing queued the one nobody holds: approved, its invitation no longer pending.
    assert items[ids[1]]["state"] == "approved" and items[ids[1]]["invitation_pending"] is False
    done = admin.run(admin.registrations.get(room, ids[1]))
    assert done is not None and not done.inviting
    table = admin.cli("registration", "list", room)
    assert table.returncode == 0, table.stderr
    assert "looks_like Rosa Luxernburg (registrant)" in table.stdout
    (row,) = [line for line in table.stdout.splitlines() if line.startswith(ids[0][:12])]
    assert "invitation pending" in row


def test_approve_by_prefix_sends_the_invitation(admin: Admin, smtp_server: Any) -> None:
    room = admin.room()
    address = f"ada-{next(_made)}@lovelace.example"
    chosen = admin.register(room, "Ada Lovelace", address, note="analytical engines")
    other = admin.register(room, "Charles Babbage", f"cb-{next(_made)}@engine.example")
    approved = admin.cli("registration", "approve", room, chosen[:8], "--yes", "--json")
    assert approved.returncode == 0, approved.stderr
    answer = json.loads(approved.stdout)
    assert answer["answered"] == 1 and answer["ids"] == [chosen] and answer["refused"] == []
    assert answer["batch"]
    admin.run(admin.outbox.send_due(time.time()))
    [mail] = smtp_server.mailbox.wait_for(address)
    assert "/j/" in mail.body
    states = listed(admin, room)["counts"]["states"]
    assert states == {"waiting": 1, "approved": 1, "denied": 0}
    again = admin.cli("registration", "approve", room, chosen, other[:10], "--yes")
    assert again.returncode == 1
    assert f"not approved: {chosen}: approved already" in again.stderr
    assert "approved 1 registration(s)" in again.stdout
    log = [e for e in audit_of(admin, room) if e["action"] == "approve registrations"]
    assert [e["detail"] for e in log] == ["1 registration, 1 not answered", "1 registration"]
    whole_log = json.dumps(audit_of(admin, room))
    assert "Ada" not in whole_log and "lovelace" not in whole_log and "@" not in whole_log


def audit_of(admin: Admin, room: str) -> list[dict[str, Any]]:
    shown_log = admin.cli("room", "audit", room, "--json")
    assert shown_log.returncode == 0, shown_log.stderr
    return list(json.loads(shown_log.stdout))


def test_approve_all_waiting_asks_with_the_count(admin: Admin) -> None:
    room = admin.room()
    for i in range(3):
        admin.register(room, f"Guest {i}", f"guest{i}-{next(_made)}@guests.example")
    no = admin.cli("registration", "approve", room, "--all-waiting", terminal="no")
    assert no.returncode == 2 and "Approve all 3 waiting registration(s)" in no.stderr
    assert "each is sent a personal invitation by e-mail" in no.stderr
    assert listed(admin, room, "--state", "approved")["total"] == 0
    done = admin.cli("registration", "approve", room, "--all-waiting", "--yes")
    assert done.returncode == 0, done.stderr
    assert "approved 3 registration(s)" in done.stdout and "batch" in done.stdout
    assert listed(admin, room)["counts"]["states"]["approved"] == 3


@pytest.mark.parametrize(
    ("given", "code", "said"),
    [
        ("0000000000", 1, "no registration of this room has this id"),
        ("abc", 2, "8 or more of its first hex digits"),
        ("zzzzzzzzzz", 2, "8 or more of its first hex digits"),
    ],
    ids=["unknown", "too-short", "not-hex"],
)
def test_approve_refuses_ids(admin: Admin, given: str, code: int, said: str) -> None:
    room = admin.room()
    admin.register(room, "Someone", f"someone-{next(_made)}@x.example")
    refused = admin.cli("registration", "approve", room, given, "--yes")
    assert refused.returncode == code
    assert said in refused.stderr
    assert listed(admin, room)["counts"]["states"]["waiting"] == 1


def test_ids_and_filters_do_not_mix(admin: Admin) -> None:
    room = admin.room()
    both = admin.cli("registration", "approve", room, "0123456789", "--all-waiting", "--yes")
    assert both.returncode == 2 and "not both" in both.stderr
    neither = admin.cli("registration", "deny", room, "--yes")
    assert neither.returncode == 2 and "give IDs or --flag" in neither.stderr


def test_an_ambiguous_prefix_is_refused() -> None:
    """Two ids sharing their first digits (keyed hashes cannot be made to, so built here)."""
    now = time.time()
    made = [
        Registration(
            id=f"abcdef01{tail}",
            room="r",
            name="n",
            note="",
            language="en",
            domain="x.example",
            address_key="k",
            state=RegistrationState.WAITING,
            created_at=now,
            updated_at=now,
        )
        for tail in ("0" * 24, "1" * 24)
    ]
    chosen, refused = resolve(["ABCDEF01", "abcdef010"], made)
    assert chosen == [made[0].id]
    assert [(r.id, r.reason) for r in refused] == [("ABCDEF01", "ambiguous")]


def test_meeting_over_is_refused(admin: Admin) -> None:
    room = admin.room()
    admin.register(room, "Late Comer", f"late-{next(_made)}@x.example")

    async def ended() -> None:
        await admin.store.change_room(room, lambda r: replace(r, ends_at=time.time() - 60))

    admin.run(ended())
    refused = admin.cli("registration", "approve", room, "--all-waiting", "--yes")
    assert refused.returncode == 2 and "This meeting has ended" in refused.stderr


def test_registrations_need_mail(mailless: GatewayServer) -> None:
    room = new_room(mailless)
    refused = meetgate(mailless, "registration", "list", room)
    assert refused.returncode == 2
    assert "no SMTP server configured" in refused.stderr
    missing = meetgate(mailless, "registration", "list", "no-such-room-at-all")
    assert missing.returncode == 2 and "meetgate room list" in missing.stderr


def test_unreachable_admin_api_exits_3() -> None:
    gone = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "registration",
            "list",
            "board",
            "--admin-url",
            f"http://127.0.0.1:{free_port()}",
            "--admin-token",
            "x",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        env=environment(),
        check=False,
    )
    assert gone.returncode == 3 and "cannot reach the admin API" in gone.stderr


def test_a_running_gate_reviews_what_its_store_holds(mailing: GatewayServer) -> None:
    """`meetgate serve`'s own admin API: registrations made on its Redis (here by the same
    Registrations the gate's pages use, under its key) are listed and approved, and the
    approval's invitation is queued in the outbox the gate sends from."""
    settings = load_settings(mailing.config_path)
    room = new_room(mailing, "served")
    on = meetgate(mailing, "room", "set", room, "--registration", "on")
    assert on.returncode == 0, on.stderr
    codes = RecordingCodes()
    addresses = [f"served-{i}-{next(_made)}@served.example" for i in range(2)]

    async def registered() -> list[str]:
        store = await open_store(settings.store.url, settings.store_options())
        try:
            registrations = Registrations(
                store,
                settings.registration,
                key=settings.admission.pseudonym_key.get_secret_value().encode(),
                limiter=RateLimiter(store, settings.rates, Metrics()),
                mailer=codes,
                codes=settings.email_codes,
            )
            record = await store.get_room(room)
            assert record is not None
            ids = []
            for i, address in enumerate(addresses):
                now = time.time()
                made = await registrations.register(
                    record, f"Served {i}", address, "", f"10.9.{i}.1", now, language=ENGLISH
                )
                await registrations.drain()
                confirmed = await registrations.confirm(
                    record, made.id, made.secret, codes.sent[address], now
                )
                ids.append(confirmed.registration.id)
            return ids
        finally:
            await store.close()

    ids = asyncio.run(registered())
    page = meetgate(mailing, "registration", "list", room, "--json")
    assert page.returncode == 0, page.stderr
    assert sorted(i["id"] for i in json.loads(page.stdout)["items"]) == sorted(ids)
    approved = meetgate(mailing, "registration", "approve", room, ids[0][:8], "--yes", "--json")
    assert approved.returncode == 0, approved.stderr
    batch = json.loads(approved.stdout)["batch"]
    with mailing.admin() as admin:
        progress = admin.get(f"/api/v1/outbox/{batch}")
    assert progress.status_code == 200, progress.text
    assert progress.json()["total"] == 1
