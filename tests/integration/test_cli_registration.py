"""A room's registration settings (`meetgate room set … --registration`, `room show`) and the
review of its registrations (`meetgate registration list|approve|deny`), issue 19: the CLI
against the admin API of a real `meetgate serve`, on a real Redis with a real SMTP server
(aiosmtpd), and on the memory store without one; every refusal, exit code and question.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fixtures.gateway_server import GENEROUS_LIMITS, GatewayServer, start_gateway
from tests.fixtures.processes import stop_process
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


def environment() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if not name.startswith("MEETGATE_")}


def meetgate(gateway: GatewayServer, *args: str) -> subprocess.CompletedProcess[str]:
    """`meetgate …` against `gateway`'s admin API, its stdin no terminal."""
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args, "--config", str(gateway.config_path)],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        env=environment(),
        check=False,
    )


def meetgate_on_terminal(
    gateway: GatewayServer, answer: str, *args: str
) -> subprocess.CompletedProcess[str]:
    """`meetgate …` whose stdin is a terminal (a pseudo-terminal), on which `answer` is typed."""
    typing_end, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", *args, "--config", str(gateway.config_path)],
            stdin=terminal,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment(),
        )
        os.close(terminal)
        os.write(typing_end, answer.encode() + b"\n")
        out, err = process.communicate(timeout=60)
    finally:
        os.close(typing_end)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


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
    actions = [entry["action"] for entry in audit(mailing, room)]
    for action in (
        "registration on",
        "change auto-approval",
        "change series",
        "change meeting time",
    ):
        assert action in actions
    log = json.dumps(audit(mailing, room))
    assert "board.example" not in log.lower() and "2026-12-20 06:00 UTC" in log

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
