"""The path allowlist and the signalling-query rules, tested without a server.

The spelling corpus is generated (hypothesis): every way a path can name a signalling endpoint
that Jitsi's web server might route to prosody (case, depth, suffix, percent-encoding, doubled
slash, dot segment, `;` parameter, trailing slash, tenant and static prefixes). Only the four
canonical spellings are signalling; every other one is refused.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.edge import requests
from gateway.errors import BadRequest, DuplicateParameter, MeetgateError, PathRefused, TicketInvalid
from gateway.proxy import gate
from gateway.proxy.paths import (
    JITSI_SERVICE_NAMES,
    STATIC_DIRS,
    PathKind,
    PathTarget,
    classify,
    parse_signalling_query,
    query_rooms,
    upstream_signalling_query,
)
from gateway.web import email_signin, lobby
from tests.spellings import (
    ISSUE_SPELLINGS,
    MALFORMED_SPELLINGS,
    NOT_TENANTS,
    WELL_FORMED_SPELLINGS,
    is_canonical_signalling,
    mentions_signalling,
    signalling_spellings,
)

RELAYED = ("/colibri-ws/", "/conference-request/v1")


def classify_as_sent(raw: str, relayed: tuple[str, ...] = ()) -> PathTarget:
    """classify() as the gate calls it: uvicorn's decoded path and the path as sent."""
    return classify(unquote(raw), raw.encode("latin-1"), relayed)


@settings(max_examples=3000, deadline=None)
@given(signalling_spellings())
@example("/http-bind")
@example("/xmpp-websocket")
@example("/tenant1/http-bind")
@example("/tenant1/xmpp-websocket")
@example("/libs/http-bind")
@example("/LIBS/http-bind")
@example("/libs/../http-bind")
@example("/static/x/xmpp-websocket")
@example("/http%2Dbind")
@example("/%68ttp-bind")
@example("//http-bind")
@example("/./http-bind")
@example("/http-bind;x")
@example("/http-bind/")
def test_signalling_is_canonical_or_refused(raw: str) -> None:
    assert mentions_signalling(raw)
    if is_canonical_signalling(raw):
        assert classify_as_sent(raw, RELAYED).kind is PathKind.SIGNALLING
        return
    with pytest.raises((BadRequest, PathRefused)):
        target = classify_as_sent(raw, RELAYED)
        pytest.fail(f"{raw!r} classified as {target}")


@pytest.mark.parametrize("raw", WELL_FORMED_SPELLINGS)
def test_the_spellings_issue_12_found_are_refused_as_not_found(raw: str) -> None:
    with pytest.raises(PathRefused) as caught:
        classify_as_sent(raw, RELAYED)
    assert caught.value.status == 404


def test_the_six_spellings_of_the_issue_are_in_the_table() -> None:
    assert set(ISSUE_SPELLINGS) <= set(WELL_FORMED_SPELLINGS)
    assert len(ISSUE_SPELLINGS) == 6


@pytest.mark.parametrize("raw", MALFORMED_SPELLINGS)
def test_malformed_spellings_are_refused_as_not_valid(raw: str) -> None:
    with pytest.raises(BadRequest):
        classify_as_sent(raw, RELAYED)


def test_the_oracle_knows_the_same_folders_and_services() -> None:
    assert NOT_TENANTS == STATIC_DIRS | JITSI_SERVICE_NAMES


@pytest.mark.parametrize(
    ("raw", "kind", "room"),
    [
        ("/xmpp-websocket", PathKind.SIGNALLING, None),
        ("/http-bind", PathKind.SIGNALLING, None),
        ("/tenant1/xmpp-websocket", PathKind.SIGNALLING, None),
        ("/tenant1/http-bind", PathKind.SIGNALLING, None),
        ("/weekly-sync", PathKind.ROOM, "weekly-sync"),
        ("/tenant1/weekly-sync", PathKind.ROOM, "weekly-sync"),
        ("/libs/app.bundle.min.js", PathKind.STATIC, None),
        ("/css/all.css", PathKind.STATIC, None),
        ("/static/close.html", PathKind.STATIC, None),
        ("/images/favicon.svg", PathKind.STATIC, None),
        ("/fonts/a.woff2", PathKind.STATIC, None),
        ("/lang/main-de.json", PathKind.STATIC, None),
        ("/sounds/joined.mp3", PathKind.STATIC, None),
        ("/.well-known/assetlinks.json", PathKind.STATIC, None),
        ("/libs/dir/deeper/file.wasm", PathKind.STATIC, None),
        ("/config.js", PathKind.STATIC, None),
        ("/interface_config.js", PathKind.STATIC, None),
        ("/external_api.js", PathKind.STATIC, None),
        ("/pwa-worker.js", PathKind.STATIC, None),
        ("/manifest.json", PathKind.STATIC, None),
        ("/tenant1/config.js", PathKind.STATIC, None),
        ("/tenant1/interface_config.js", PathKind.STATIC, None),
        ("/tenant1/external_api.js", PathKind.STATIC, None),
        ("/tenant1/pwa-worker.js", PathKind.STATIC, None),
        ("/tenant1/manifest.json", PathKind.STATIC, None),
        ("/_unlock", PathKind.STATIC, None),
        ("/colibri-ws/jvb1/abc", PathKind.RELAYED, None),
        ("/conference-request/v1", PathKind.RELAYED, None),
    ],
)
def test_the_allowlist(raw: str, kind: PathKind, room: str | None) -> None:
    target = classify_as_sent(raw, RELAYED)
    assert target.kind is kind
    assert target.room == room


@pytest.mark.parametrize(
    "raw",
    [
        # Jitsi endpoints the gate does not relay unless the config names them.
        "/etherpad/p/x",
        "/socket.io/x",
        "/rtcstats-ws/x",
        "/_api/room-info",
        "/_load-test/x",
        "/colibri-ws/jvb1/abc",
        "/colibri-relay-ws/jvb1/abc",
        "/conference-request/v1",
        "/conference-request/v1/x",
        "/room-info",
        "/kick-participant",
        "/end-meeting",
        "/subdomain/x",
        "/tenant1/conference-request/v1",
        "/transcripts/x",
        "/connection_optimization/x",
        # Not static, not a room page.
        "/libs",
        "/Weekly",
        "/CONFIG.JS",
        "/Libs/app.js",
        "/favicon.ico",
        "/robots.txt",
        "/base.html",
        "/a/b/c",
        "/tenant1/libs/app.js",
        "/_meetgate",
        "/libs/x/../../etherpad",
    ],
)
def test_everything_else_is_refused(raw: str) -> None:
    with pytest.raises((PathRefused, BadRequest)):
        classify_as_sent(raw)


def test_a_relayed_endpoint_is_exact_unless_it_ends_in_a_slash() -> None:
    assert classify_as_sent("/conference-request/v1", RELAYED).kind is PathKind.RELAYED
    assert classify_as_sent("/colibri-ws/jvb1/x", RELAYED).kind is PathKind.RELAYED
    for raw in ("/conference-request/v1/x", "/colibri-ws", "/COLIBRI-WS/jvb1/x"):
        with pytest.raises(PathRefused):
            classify_as_sent(raw, RELAYED)


def test_a_folders_own_path_passes_only_where_the_config_names_it() -> None:
    """Jitsi serves `location = /socket.io/` and `= /rtcstats-ws/` at the folder's own path."""
    named = ("/socket.io/", "/rtcstats-ws/")
    assert classify_as_sent("/socket.io/", named).kind is PathKind.RELAYED
    assert classify_as_sent("/socket.io/x", named).kind is PathKind.RELAYED
    for raw in ("/socket.io/", "/rtcstats-ws/"):
        with pytest.raises(BadRequest):
            classify_as_sent(raw)
    # Only the exact path as configured: no other trailing slash, spelling or encoding.
    for raw in ("/socket.io//", "/Socket.io/", "/socket%2eio/", "/socket.io/x/", "/libs/"):
        with pytest.raises((BadRequest, PathRefused)):
            classify_as_sent(raw, named)


@st.composite
def allowed_paths(draw: st.DrawFn) -> str:
    names = st.from_regex(re.compile(r"[a-z0-9][a-z0-9._-]{0,20}"), fullmatch=True)
    kind = draw(st.sampled_from(["static", "file", "room"]))
    if kind == "static":
        folder = draw(st.sampled_from(sorted(STATIC_DIRS)))
        return f"/{folder}/" + "/".join(draw(st.lists(names, min_size=1, max_size=3)))
    if kind == "file":
        return "/" + draw(st.sampled_from(["config.js", "manifest.json", "external_api.js"]))
    return "/" + draw(st.from_regex(re.compile(r"[a-z0-9][a-z0-9_-]{0,20}"), fullmatch=True))


@settings(max_examples=500, deadline=None)
@given(allowed_paths())
def test_what_the_allowlist_names_passes_unless_it_mentions_signalling(raw: str) -> None:
    if mentions_signalling(raw) or raw.split("/")[1] in JITSI_SERVICE_NAMES:
        with pytest.raises(MeetgateError):
            classify_as_sent(raw)
        return
    if any(set(segment) == {"."} for segment in raw.split("/")[1:]):
        with pytest.raises(BadRequest):
            classify_as_sent(raw)
        return
    assert classify_as_sent(raw).kind in (PathKind.STATIC, PathKind.ROOM)


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
        ("/libs/a.js", b"/libs/a%2ejs"),
        ("/weekly", b"/week%6cy"),
        ("/libs/a.js", b"/libs/b.js"),
        ("/weekly;x", b"/weekly;x"),
        ("/weekly/", b"/weekly/"),
        ("/libs/x/", b"/libs/x/"),
    ],
)
def test_path_tricks_refused(path: str, raw: bytes) -> None:
    with pytest.raises(BadRequest):
        classify(path, raw)


def test_query_rooms_are_every_room_value() -> None:
    assert query_rooms(b"room=a&x=1&room=b") == ["a", "b"]
    assert query_rooms(b"pwd=x") == []


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
    # One definition (gateway/edge/requests.py), which the pages route on.
    assert lobby.LOBBY_PREFIX is requests.LOBBY_PREFIX
    assert email_signin.EMAIL_PREFIX is requests.EMAIL_PREFIX
    attempts = [
        ("GET", "/j/abc"),
        ("POST", "/j/abc"),
        ("GET", "/_meetgate/oidc/keycloak/login"),
        ("GET", "/_meetgate/oidc/keycloak/callback"),
        ("POST", "/_meetgate/lobby/agora"),
        ("POST", "/_meetgate/email/agora/send"),
        ("POST", "/_meetgate/email/agora/verify"),
        # A room's gate page: charged, so that it is no free oracle for room names.
        ("GET", "/_meetgate/enter/agora"),
    ]
    others = [
        ("GET", "/"),
        ("GET", "/agora"),
        ("GET", "/_meetgate/lobby/agora/status"),
        ("GET", "/_meetgate/lobby/agora/events"),
        ("POST", "/_meetgate/lobby/agora/leave"),
        ("GET", "/_meetgate/email/agora/send"),
        ("GET", "/_meetgate/ticket"),
        ("POST", "/_meetgate/host/agora/revoke"),
    ]
    assert all(gate.is_join_attempt(method, path) for method, path in attempts)
    assert not any(gate.is_join_attempt(method, path) for method, path in others)
