"""Room names, display names, invite tokens and log redaction: pure rules, no server."""

from __future__ import annotations

import pytest

from gateway.access_log import redact
from gateway.admission.invites import hash_token, make_invite, parse_token
from gateway.admission.rooms import is_room_name, validate_room_name, validate_title
from gateway.errors import InvalidInput, InvalidRoomName, InviteMalformed
from gateway.proxy.paths import JITSI_SERVICE_NAMES, PathKind, classify
from gateway.store.records import Role


@pytest.mark.parametrize("name", ["weekly", "a", "team-2026_q4", "x" * 64])
def test_good_room_names(name: str) -> None:
    assert validate_room_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "Weekly",
        "-lead",
        "_lead",
        "a" * 65,
        "a/b",
        "..",
        "a.b",
        "r\u00e4um",
        "r\u0430om",
        "a b",
        "libs",
        "xmpp-websocket",
        "http-bind",
        "j",
        "*",
    ],
)
def test_bad_room_names(name: str) -> None:
    with pytest.raises(InvalidRoomName):
        validate_room_name(name)


def test_no_valid_room_name_is_a_page_the_gate_refuses() -> None:
    """A room the gate would refuse to open (a Jitsi service's name, a name holding a signalling
    endpoint's) cannot be created."""
    shaped = [name for name in JITSI_SERVICE_NAMES if is_room_name(name)]
    assert shaped
    for name in [*shaped, "my-http-binder", "xmpp-websocket2"]:
        with pytest.raises(InvalidRoomName):
            validate_room_name(name)
    for name in ("weekly", "team-2026_q4", "binder"):
        assert classify(f"/{name}").kind is PathKind.ROOM


@pytest.mark.parametrize(
    "title", ["", "   ", "x" * 121, "evil\u202eabc", "bell\x07", "zero\u200bwidth"]
)
def test_bad_titles(title: str) -> None:
    with pytest.raises(InvalidInput):
        validate_title(title)


def test_invite_token_is_long_random_and_stored_hashed() -> None:
    made = make_invite(
        room="r", name="Ada", role=Role.HOST, max_uses=1, lifetime_seconds=3600, now=1000.0
    )
    assert len(made.token) == 32  # 192 bits
    assert made.invite.token_hash == hash_token(made.token)
    assert made.token not in repr(made.invite)
    assert made.invite.expires_at == 4600.0
    other = make_invite(
        room="r", name="Ada", role=Role.HOST, max_uses=1, lifetime_seconds=3600, now=1000.0
    )
    assert other.token != made.token


@pytest.mark.parametrize(
    ("uses", "lifetime", "name"),
    [
        (0, 3600, "Ada"),
        (10_001, 3600, "Ada"),
        (1, 10, "Ada"),
        (1, 3600, ""),
        (1, 3600, "x" * 65),
        (1, 3600, "Ada\u202e"),
    ],
)
def test_bad_invites_refused(uses: int, lifetime: int, name: str) -> None:
    with pytest.raises(InvalidInput):
        make_invite(
            room="r",
            name=name,
            role=Role.ATTENDEE,
            max_uses=uses,
            lifetime_seconds=lifetime,
            now=0.0,
        )


@pytest.mark.parametrize("raw", ["", "short", "a" * 31, "a" * 33, "a" * 31 + "!", "../" * 11])
def test_malformed_tokens(raw: str) -> None:
    with pytest.raises(InviteMalformed):
        parse_token(raw)


def test_redaction_hides_every_secret() -> None:
    line = redact("/j/SECRETSECRETSECRETSECRETSECRET1", "")
    assert "SECRET" not in line
    line = redact("/xmpp-websocket", "room=r&token=eyJ.x.y&previd=abc&jwt=e.f.g")
    assert "eyJ" not in line and "abc" not in line and "e.f.g" not in line
    assert "room=r" in line
