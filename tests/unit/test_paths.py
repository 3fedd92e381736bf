"""The path and signalling-query rules, tested without a server."""

from __future__ import annotations

import pytest

from gateway.errors import BadRequest, DuplicateParameter, TicketInvalid
from gateway.proxy import gate
from gateway.proxy.paths import (
    PathKind,
    classify,
    parse_signalling_query,
    upstream_signalling_query,
)
from gateway.web import email_signin, lobby


@pytest.mark.parametrize(
    ("path", "kind", "room"),
    [
        ("/xmpp-websocket", PathKind.SIGNALLING, None),
        ("/http-bind", PathKind.SIGNALLING, None),
        ("/tenant1/xmpp-websocket", PathKind.SIGNALLING, None),
        ("/weekly-sync", PathKind.ROOM, "weekly-sync"),
        ("/tenant1/weekly-sync", PathKind.ROOM, "weekly-sync"),
        ("/libs/app.bundle.min.js", PathKind.OTHER, None),
        ("/config.js", PathKind.OTHER, None),
        ("/libs", PathKind.OTHER, None),
        ("/Weekly", PathKind.OTHER, None),
    ],
)
def test_classify(path: str, kind: PathKind, room: str | None) -> None:
    target = classify(path, path.encode())
    assert target.kind is kind
    assert target.room == room


@pytest.mark.parametrize(
    ("path", "raw"),
    [
        ("/../etc/passwd", b"/../etc/passwd"),
        ("/libs/../xmpp-websocket", b"/libs/../xmpp-websocket"),
        ("/a/./b", b"/a/./b"),
        ("/libs//x", b"/libs//x"),
        ("/room/x", b"/room%2fx"),
        ("/room/x", b"/room%2Fx"),
        ("/room\\x", b"/room%5cx"),
        ("/room\x00", b"/room%00"),
        ("/r\u00e4um", "/r\u00e4um".encode()),
        ("/r\u0430om", b"/r%D0%B0om"),
        ("/..", b"/%2e%2e"),
        ("/a b", b"/a%20b"),
    ],
)
def test_path_tricks_refused(path: str, raw: bytes) -> None:
    with pytest.raises(BadRequest):
        classify(path, raw)


def test_signalling_query_reads_owned_parameters() -> None:
    query = parse_signalling_query(b"room=weekly&token=abc.def.ghi&previd=s1-2&other=x")
    assert (query.room, query.token, query.previd) == ("weekly", "abc.def.ghi", "s1-2")


@pytest.mark.parametrize("key", ["token", "room", "prefix", "previd"])
def test_duplicate_owned_parameter_refused(key: str) -> None:
    with pytest.raises(DuplicateParameter):
        parse_signalling_query(f"token=a.b.c&{key}=one&{key}=two".encode())


@pytest.mark.parametrize("query", [b"", b"room=x", b"token=", b"token=" + b"a" * 5000])
def test_missing_or_oversized_token_refused(query: bytes) -> None:
    with pytest.raises((TicketInvalid, BadRequest)):
        parse_signalling_query(query)


def test_bad_previd_refused() -> None:
    with pytest.raises(BadRequest):
        parse_signalling_query(b"token=a.b.c&previd=%3Cx%3E")


def test_non_ascii_query_refused() -> None:
    with pytest.raises(BadRequest):
        parse_signalling_query("token=a.b.c&room=\u00e4".encode())


def test_upstream_query_has_only_verified_values() -> None:
    assert upstream_signalling_query("weekly", "t.o.k", None) == "room=weekly&token=t.o.k"
    assert upstream_signalling_query("w", "t", "p1") == "room=w&token=t&previd=p1"


def test_the_gate_knows_which_requests_are_join_attempts() -> None:
    # Spelled out in the gate (the pages import it); they must stay the pages' own prefixes.
    assert gate.LOBBY_PREFIX == lobby.LOBBY_PREFIX
    assert gate.EMAIL_PREFIX == email_signin.EMAIL_PREFIX
    attempts = [
        ("GET", "/j/abc"),
        ("POST", "/j/abc"),
        ("GET", "/_meetgate/oidc/keycloak/login"),
        ("GET", "/_meetgate/oidc/keycloak/callback"),
        ("POST", "/_meetgate/lobby/agora"),
        ("POST", "/_meetgate/email/agora/send"),
        ("POST", "/_meetgate/email/agora/verify"),
    ]
    others = [
        ("GET", "/"),
        ("GET", "/agora"),
        ("GET", "/_meetgate/lobby/agora/status"),
        ("GET", "/_meetgate/lobby/agora/events"),
        ("POST", "/_meetgate/lobby/agora/leave"),
        ("GET", "/_meetgate/email/agora/send"),
        ("GET", "/_meetgate/enter/agora"),
        ("GET", "/_meetgate/ticket"),
        ("POST", "/_meetgate/host/agora/revoke"),
    ]
    assert all(gate.is_join_attempt(method, path) for method, path in attempts)
    assert not any(gate.is_join_attempt(method, path) for method, path in others)
