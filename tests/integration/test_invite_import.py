"""`meetgate invite import` (issue 19): a list of 500 invitees with malformed rows, imported by the
CLI into a running gate on the memory store, as printed links (each working, each bad row
reported with its line and reason, nothing half made) and as e-mails to a real SMTP server
(aiosmtpd: each good invitee receives exactly one, the progress reaches done); and the admin
API's refusals in-process (a moved room, no SMTP server, a file over a limit, a store failing
half-way)."""

from __future__ import annotations

import json
import os
import pty
import random
import secrets
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller

from gateway.admin_api import create_admin_app
from gateway.errors import StoreUnavailable
from gateway.metrics import Metrics
from gateway.settings import load_settings
from gateway.store.memory import MemoryStore
from gateway.store.records import Invite
from tests.fixtures.cli import command, environment
from tests.fixtures.gateway_server import GENEROUS_LIMITS, GatewayServer, start_gateway
from tests.fixtures.http_clients import TLS
from tests.fixtures.processes import stop_process, wait_until
from tests.fixtures.smtp import SmtpServer, _Handler, start_smtp

pytestmark = pytest.mark.slow

ROWS = 500


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpServer]:
    server = start_smtp()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gate(
    tmp_path_factory: pytest.TempPathFactory, jitsi_web: Any, smtp: SmtpServer
) -> Iterator[GatewayServer]:
    """A gate on the memory store that sends through the tests' SMTP server, fast, and retries
    within a second when it fails."""
    mail = (
        f'[smtp]\nhost = "127.0.0.1"\nport = {smtp.port}\nsecurity = "none"\n'
        'sender = "Meetgate <gate@meet.test>"\ntimeout_seconds = 5\n'
        "[outbox]\nper_minute = 100000\nburst = 10000\nretry_seconds = 0.2\n"
        "retry_max_seconds = 1\n"
    )
    server, proc = start_gateway(
        tmp_path_factory.mktemp("invite-import"),
        upstream=jitsi_web.url,
        extra=GENEROUS_LIMITS + mail,
    )
    yield server
    stop_process(proc)


def meetgate(
    gateway: GatewayServer, *args: str, stdin: bytes | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        command(gateway, *args),
        capture_output=True,
        input=stdin,
        timeout=timeout,
        env=environment(),
        check=False,
    )
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


def new_room(gateway: GatewayServer) -> str:
    room = f"import-{secrets.token_hex(4)}"
    gateway.create_room(room)
    return room


NAMES = ["Ada Lovelace", "李小龍", "محمد عبد الله", "Zoë Ånström", "Grace Hopper", "王秀英", "Юлия"]


def invitee_list(tag: str) -> tuple[bytes, dict[int, tuple[str, str, str]], dict[int, str]]:
    """A CSV of ROWS rows after a header (CRLF, a BOM), with malformed rows among them: the
    file, the good rows by line (name, address, role) and the bad ones' reasons by line."""
    lines: list[bytes] = ["\ufeffName,E-mail,Role".encode()]
    good: dict[int, tuple[str, str, str]] = {}
    bad: dict[int, str] = {}
    shuffled = random.Random(19)
    for n in range(ROWS):
        line = n + 2
        name = f"{NAMES[n % len(NAMES)]} {n}"
        address = f"person{n}.{tag}@example.org"
        role = "host" if n % 50 == 0 else ""
        kind = n % 25
        if kind == 3:
            lines.append(f"{name},not-an-address,".encode())
            bad[line] = "not an e-mail address"
        elif kind == 7:
            lines.append(f",{address},".encode())
            bad[line] = "empty name"
        elif kind == 11:
            lines.append(f"{name},{address},".encode()[:-3] + b"\xe9\xff,")
            bad[line] = "line is not UTF-8 (save the file as UTF-8)"
        elif kind == 13:
            first = next(iter(good))
            lines.append(f"{name},{good[first][1].upper()},".encode())
            bad[line] = f"duplicate of line {first}"
        elif kind == 17:
            lines.append(f"{name},{address},boss".encode())
            bad[line] = "unknown role 'boss' (attendee or host)"
        elif kind == 19:
            lines.append(f"{name},{address},host,more".encode())
            bad[line] = "too many columns"
        elif kind == 23:
            lines.append(f"\u202e{name},{address},".encode())
            bad[line] = "name refused: The display name contains a character that is not allowed."
        else:
            quoted = f'"{name}, Jr."' if shuffled.random() < 0.1 else name
            lines.append(f"{quoted},{address},{role}".encode())
            good[line] = (quoted.strip('"'), address, role or "attendee")
    return b"\r\n".join(lines) + b"\r\n", good, bad


def table(stdout: str) -> dict[int, tuple[str, str, str]]:
    """The printed links by line: (role, link, name)."""
    rows = stdout.splitlines()
    assert rows[0].split() == ["LINE", "ROLE", "LINK", "NAME"]
    found = {}
    for row in rows[1:]:
        line, role, link, name = row.split(maxsplit=3)
        found[int(line)] = (role, link, name)
    return found


def reported(stderr: str) -> dict[int, str]:
    found = {}
    for row in stderr.splitlines():
        if row.startswith("line "):
            where, _, reason = row.partition(": ")
            found[int(where.removeprefix("line "))] = reason
    return found


def invites(gateway: GatewayServer, room: str) -> list[dict[str, Any]]:
    with gateway.admin() as admin:
        return list(admin.get(f"/api/v1/rooms/{room}/invites").json())


def test_printed_links_for_the_good_rows_and_each_bad_row_reported(
    gate: GatewayServer, tmp_path: Path
) -> None:
    room = new_room(gate)
    data, good, bad = invitee_list("links")
    path = tmp_path / "invitees.csv"
    path.write_bytes(data)
    done = meetgate(gate, "invite", "import", "--room", room, str(path), "--uses", "2")
    # Some rows refused, the others made: exit 1.
    assert done.returncode == 1, done.stderr
    printed = table(done.stdout)
    assert {line: (role, name) for line, (role, _, name) in printed.items()} == {
        line: (role, name) for line, (name, _, role) in good.items()
    }
    assert reported(done.stderr) == bad
    assert f"made {len(good)} invite(s) in room {room}; {len(bad)} row(s) refused" in done.stderr
    # No address is repeated in what the command says of the bad rows.
    assert "@" not in "".join(f"{line}{reason}" for line, reason in reported(done.stderr).items())
    # Exactly one invite per good row, each for two uses; nothing for a bad row.
    made = invites(gate, room)
    assert len(made) == len(good)
    assert {invite["max_uses"] for invite in made} == {2}
    # A link works: it admits its holder under the name beside it.
    role, link, name = printed[min(printed)]
    token = link.rsplit("/j/", 1)[1]
    with httpx.Client(base_url=gate.url, trust_env=False, timeout=30, verify=TLS) as browser:
        assert browser.post(f"/j/{token}", headers={"origin": gate.url}).status_code == 303
    with gate.admin() as admin:
        roster = admin.get(f"/api/v1/rooms/{room}/participants").json()
        log = admin.get(f"/api/v1/rooms/{room}/audit").json()
    assert [(p["name"], p["role"]) for p in roster] == [(name, role)]
    log = [entry for entry in log if entry["action"] != "view roster"]
    assert [entry["action"] for entry in log] == ["import invites"]


def test_json_answer_and_standard_input(gate: GatewayServer) -> None:
    room = new_room(gate)
    data = b"name;email;role\nAda;ada@example.org;host\nBob;bob@example.org\n"
    done = meetgate(gate, "invite", "import", "--room", room, "-", "--json", stdin=data)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["created"] == 2 and answer["delimiter"] == ";" and answer["header"]
    assert [(x["line"], x["name"], x["role"]) for x in answer["links"]] == [
        (2, "Ada", "host"),
        (3, "Bob", "attendee"),
    ]
    assert answer["problems"] == [] and answer["progress"] is None
    # A line that is not UTF-8 (sent as bytes, in base64) is refused on its own.
    done = meetgate(gate, "invite", "import", "--room", room, "-", "--json", stdin=b"\xff;x\n")
    assert done.returncode == 2, done.stderr
    assert json.loads(done.stdout)["problems"] == [
        {"line": 1, "code": "not_utf8", "reason": "line is not UTF-8 (save the file as UTF-8)"}
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"Ada,not-an-address\n,bob@example.org\n", "line 2: empty name"),
        (b"\r\n\r\n", "the file lists nobody"),
        (b"name,email,company\nAda,ada@example.org,x\n", "Column 3 of the header row"),
        (b"x" * (2 * 1024 * 1024 + 1), "larger than 2 MiB"),
        (b'"' + b"x" * 5000 + b"\n", "Line 1: a field is longer than 1000 characters"),
    ],
    ids=["all-rows-bad", "empty", "unknown-column", "too-large", "quote-left-open"],
)
def test_nothing_made_exits_2(gate: GatewayServer, data: bytes, message: str) -> None:
    room = new_room(gate)
    done = meetgate(gate, "invite", "import", "--room", room, "-", stdin=data)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert invites(gate, room) == []


def test_refused_by_the_admin_api(gate: GatewayServer, tmp_path: Path) -> None:
    path = tmp_path / "one.csv"
    path.write_text("Ada,ada@example.org\n", encoding="utf-8")
    unknown = meetgate(gate, "invite", "import", "--room", "no-such-room", str(path))
    assert unknown.returncode == 2 and "meetgate room list" in unknown.stderr
    room = new_room(gate)
    bad_uses = meetgate(gate, "invite", "import", "--room", room, str(path), "--uses", "0")
    assert bad_uses.returncode == 2 and "--uses:" in bad_uses.stderr
    missing = meetgate(gate, "invite", "import", "--room", room, str(tmp_path / "nope.csv"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    assert invites(gate, room) == []


def test_sent_by_mail_each_once_and_progress_reaches_done(
    gate: GatewayServer, smtp: SmtpServer, tmp_path: Path
) -> None:
    room = new_room(gate)
    data, good, bad = invitee_list("sent")
    path = tmp_path / "invitees.csv"
    path.write_bytes(data)
    done = meetgate(
        gate, "invite", "import", "--room", room, str(path), "--send", "--language", "zh-Hans"
    )
    assert done.returncode == 1, done.stderr
    assert reported(done.stderr) == bad
    assert f"queued {len(good)} invitation(s) to room {room}" in done.stderr
    # Not a terminal: a line each time the counts change, the last one the end.
    progress = done.stdout.splitlines()
    assert progress[-1] == f"{len(good)}/{len(good)} sent, 0 failed, 0 waiting"
    addresses = [address for _, address, _ in good.values()]
    for address in addresses:
        assert len(smtp.mailbox.to(address)) == 1, address
    received = {a for m in smtp.mailbox.messages for a in m.rcpt_tos if ".sent@" in a}
    assert received == set(addresses)
    # Each e-mail carries its own working link.
    first = smtp.mailbox.to(addresses[0])[0]
    token = first.body.split("/j/", 1)[1].split()[0]
    with httpx.Client(base_url=gate.url, trust_env=False, timeout=30, verify=TLS) as browser:
        assert browser.post(f"/j/{token}", headers={"origin": gate.url}).status_code == 303
    assert len(invites(gate, room)) == len(good)


def test_send_without_waiting_and_as_json(gate: GatewayServer, smtp: SmtpServer) -> None:
    room = new_room(gate)
    data = b"Ada,ada.nowait@example.org\nGrace,grace.nowait@example.org,host\n"
    queued = meetgate(
        gate, "invite", "import", "--room", room, "-", "--send", "--no-wait", "--json", stdin=data
    )
    assert queued.returncode == 0, queued.stderr
    answer = json.loads(queued.stdout)
    assert answer["created"] == 2 and answer["links"] == [] and answer["progress"] is None
    # Followed to its end as JSON: the last progress read is in the answer.
    followed = meetgate(gate, "invite", "progress", answer["batch"], "--follow", "--json")
    assert followed.returncode == 0, followed.stderr
    progress = json.loads(followed.stdout)
    assert (progress["sent"], progress["failed"], progress["done"]) == (2, 0, True)
    assert len(smtp.mailbox.to("ada.nowait@example.org")) == 1
    assert len(smtp.mailbox.to("grace.nowait@example.org")) == 1


def test_progress_bar_on_a_terminal_and_ctrl_c_leaves_sending_going(
    gate: GatewayServer, smtp: SmtpServer, tmp_path: Path
) -> None:
    room = new_room(gate)
    path = tmp_path / "few.csv"
    path.write_text("".join(f"P{n},p{n}.bar@example.org\n" for n in range(5)), encoding="utf-8")
    # The mail server is down: the batch waits for it, and the bar says so.
    smtp.controller.stop()
    reading, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            command(gate, "invite", "import", "--room", room, str(path), "--send"),
            stdin=subprocess.DEVNULL,
            stdout=terminal,
            stderr=subprocess.PIPE,
            env=environment(),
        )
        os.close(terminal)
        shown = bytearray()

        def retry_shown() -> bool:
            shown.extend(os.read(reading, 4096))
            return b"next try in" in shown

        wait_until(retry_shown, 30, "the bar showing the mail server's failure")
        assert b"\r[" in shown and b"0/5 sent, 0 failed, 5 waiting" in shown
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    finally:
        os.close(reading)
        # The server again on its port, keeping its mailbox.
        smtp.controller = Controller(_Handler(smtp.mailbox), hostname=smtp.host, port=smtp.port)
        smtp.controller.start()
    assert b"stopped following: the gate goes on sending" in err
    batch = err.decode().split("(batch ", 1)[1].split(")", 1)[0]
    # The gate went on: once the server is back, every one is sent, once.
    followed = meetgate(gate, "invite", "progress", batch, "--follow")
    assert followed.returncode == 0, followed.stderr
    assert followed.stdout.splitlines()[-1] == "5/5 sent, 0 failed, 0 waiting"
    for n in range(5):
        assert len(smtp.mailbox.to(f"p{n}.bar@example.org")) == 1
    unknown = meetgate(gate, "invite", "progress", "nosuchbatch")
    assert unknown.returncode == 1


# The admin API's refusals, in-process.

SETTINGS = load_settings(None, environ={})
MAIL = load_settings(None, environ={"MEETGATE_SMTP__HOST": "127.0.0.1", "MEETGATE_SMTP__PORT": "9"})


def admin_client(app: Any, settings: Any = SETTINGS) -> httpx.AsyncClient:
    token = settings.admin.token.get_secret_value()
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://admin",
        headers={"authorization": f"Bearer {token}"},
    )


async def test_send_refused_without_smtp_and_moved_rooms_refused() -> None:
    store = MemoryStore()
    async with admin_client(create_admin_app(SETTINGS, store, Metrics())) as admin:
        await admin.post("/api/v1/rooms", json={"name": "old"})
        body = {"csv": "Ada,ada@example.org\n"}
        refused = await admin.post("/api/v1/rooms/old/invites/import", json={**body, "send": True})
        assert refused.status_code == 409 and refused.json()["error"] == "mail_not_configured"
        assert (await admin.get("/api/v1/outbox/abc")).status_code == 404
        moved = await admin.post("/api/v1/rooms/old/move", json={"to": "new"})
        assert moved.status_code == 200
        again = await admin.post("/api/v1/rooms/old/invites/import", json=body)
        assert again.status_code == 409 and again.json()["error"] == "room_moved"
        assert await store.list_invites("old") == []


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"csv": "!!", "base64": True}, 400, "invalid_input"),
        (
            {"csv": "A" * (4 * (2 * 1024 * 1024 // 3 + 2)), "base64": True},
            400,
            "invite_list_refused",
        ),
        ({"csv": "Ada,ada@example.org\n", "language": "xx"}, 422, "request_invalid"),
        ({"csv": "Ada,ada@example.org\n", "uses": 0}, 422, "request_invalid"),
        ({"csv": "Ada,ada@example.org\n", "delimiter": "|"}, 422, "request_invalid"),
        ({}, 422, "request_invalid"),
    ],
    ids=["not-base64", "base64-over-limit", "language", "uses", "delimiter", "no-file"],
)
async def test_bad_bodies(body: dict[str, Any], status: int, error: str) -> None:
    store = MemoryStore()
    async with admin_client(create_admin_app(SETTINGS, store, Metrics())) as admin:
        await admin.post("/api/v1/rooms", json={"name": "board"})
        answer = await admin.post("/api/v1/rooms/board/invites/import", json=body)
        assert (answer.status_code, answer.json()["error"]) == (status, error)
        assert await store.list_invites("board") == []


class FailingAfter(MemoryStore):
    """A memory store whose `add_invite` fails after `good` invites."""

    def __init__(self, good: int) -> None:
        super().__init__()
        self.good = good

    async def add_invite(self, invite: Invite, plan: Any = None) -> None:
        if self.good == 0:
            raise StoreUnavailable()
        self.good -= 1
        await super().add_invite(invite, plan)


async def test_a_store_failing_half_way_leaves_nothing_usable() -> None:
    store = FailingAfter(good=3)
    csv = "".join(f"P{n},p{n}@example.org\n" for n in range(6))
    async with admin_client(create_admin_app(SETTINGS, store, Metrics())) as admin:
        await admin.post("/api/v1/rooms", json={"name": "board"})
        answer = await admin.post("/api/v1/rooms/board/invites/import", json={"csv": csv})
    assert answer.status_code == 503
    assert answer.json()["error"] == "import_interrupted"
    assert (
        "after 3 of 6 invites were made (up to line 3); they were revoked"
        in (answer.json()["message"])
    )
    made = await store.list_invites("board")
    assert len(made) == 3 and all(invite.revoked for invite in made)


async def test_send_hands_the_good_rows_to_the_queue() -> None:
    store = MemoryStore()
    async with admin_client(create_admin_app(MAIL, store, Metrics()), MAIL) as admin:
        await admin.post("/api/v1/rooms", json={"name": "taipei", "language": "zh-Hant"})
        body = {"csv": "Ada,ada@example.org\nBad,x\n", "send": True}
        answer = (await admin.post("/api/v1/rooms/taipei/invites/import", json=body)).json()
        assert answer["created"] == 1 and answer["links"] == []
        assert answer["problems"] == [
            {"line": 2, "code": "bad_address", "reason": "not an e-mail address"}
        ]
        progress = (await admin.get(f"/api/v1/outbox/{answer['batch']}")).json()
        assert progress == {
            "batch": answer["batch"],
            "room": "taipei",
            "total": 1,
            "sent": 0,
            "failed": 0,
            "waiting": 1,
            "retry_at": None,
            "done": False,
        }
    assert len(await store.list_invites("taipei")) == 1
