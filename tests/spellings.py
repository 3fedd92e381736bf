"""Spellings of Jitsi's signalling endpoints, for every test that shows only the canonical ones
pass (the gate's classifier, the gate itself, the TLS fronts of deploy/, Jitsi's own routing).

`signalling_spellings()` is a hypothesis strategy: a path as sent that names `http-bind` or
`xmpp-websocket` with any case, percent-encoding, suffix, depth, doubled slash, dot segment,
`;` parameter, trailing slash, tenant or static-folder prefix. `is_canonical_signalling` says,
independently of the code under test, which of them are the four canonical forms.
"""

from __future__ import annotations

from urllib.parse import unquote

from hypothesis import strategies as st

ENDPOINTS = ("http-bind", "xmpp-websocket")
# Jitsi's static folders and the names its web servers route to a service: never a tenant.
NOT_TENANTS = frozenset(
    {"libs", "css", "static", "images", "fonts", "lang", "sounds", ".well-known"}
    | {"colibri-ws", "colibri-relay-ws", "conference-request", "etherpad", "socket.io"}
    | {"rtcstats-ws", "rtc-visualizer", "_api", "_load-test", "load-test", "room-info"}
    | {"kick-participant", "end-meeting", "subdomain", "transcripts", "connection_optimization"}
)
# The six spellings issue 12 found forwarded on any admission's cookie.
ISSUE_SPELLINGS = (
    "/Rally/http-bind",
    "/HTTP-BIND",
    "/foo/http-bindX",
    "/a/b/http-bind",
    "/foo/http-bind/x",
    "/foo/xmpp-websocket/x",
)
# Their kin: static prefixes, other cases, a tenant that is one of Jitsi's own folders.
WELL_FORMED_SPELLINGS = (
    *ISSUE_SPELLINGS,
    "/libs/http-bind",
    "/LIBS/http-bind",
    "/static/x/xmpp-websocket",
    "/Xmpp-Websocket",
    "/tenant1/HTTP-BIND",
    "/colibri-ws/http-bind",
)
# Spellings that could mean another path once decoded or normalised.
MALFORMED_SPELLINGS = (
    "/libs/../http-bind",
    "/http%2Dbind",
    "/%68ttp-bind",
    "//http-bind",
    "/./http-bind",
    "/http-bind;x",
    "/http-bind/",
    "/xmpp-websocket/",
    "/libs/%2e%2e/http-bind",
    "/libs/x/..%2Fhttp-bind",
)


def is_room_shaped(name: str) -> bool:
    return (
        0 < len(name) <= 64
        and name[0] in "abcdefghijklmnopqrstuvwxyz0123456789"
        and all(c in "abcdefghijklmnopqrstuvwxyz0123456789_-" for c in name)
    )


def is_canonical_signalling(raw: str) -> bool:
    """`/<endpoint>` or `/<tenant>/<endpoint>`, exactly as sent, lowercase, the tenant a
    room-shaped name that is not one of Jitsi's own folders or services."""
    segments = raw.split("/")[1:]
    if len(segments) == 1:
        return segments[0] in ENDPOINTS
    return (
        len(segments) == 2
        and segments[1] in ENDPOINTS
        and is_room_shaped(segments[0])
        and segments[0] not in NOT_TENANTS
    )


def mentions_signalling(raw: str) -> bool:
    decoded = raw
    for _ in range(3):  # doubly encoded too
        decoded = unquote(decoded)
    return any(name in decoded.lower() for name in ENDPOINTS)


@st.composite
def endpoint_spellings(draw: st.DrawFn) -> str:
    """One signalling endpoint's name, respelled: case, percent-encoding, suffix."""
    name = draw(st.sampled_from(ENDPOINTS))
    chars = []
    for char in name:
        how = draw(st.sampled_from(["keep", "keep", "keep", "upper", "encode", "encode-lower"]))
        if how == "upper":
            chars.append(char.upper())
        elif how == "encode":
            chars.append(f"%{ord(char):02X}")
        elif how == "encode-lower":
            chars.append(f"%{ord(char):02x}")
        else:
            chars.append(char)
    suffix = draw(
        st.sampled_from(["", "", "", "X", "x", "-", ".js", "/", "/y", "/y/z", ";x", "%20"])
    )
    return "".join(chars) + suffix


PREFIX_SEGMENTS = st.sampled_from(
    [
        "tenant1",
        "rally",
        "Rally",
        "a",
        "libs",
        "LIBS",
        "Libs",
        "static",
        "css",
        ".well-known",
        "etherpad",
        "colibri-ws",
        "_api",
        ".",
        "..",
        "",
        "x;y",
        "%2e%2e",
        "%2E",
        "a%2fb",
        "foo",
        "http-bind",
        "j",
        "config.js",
    ]
)


@st.composite
def signalling_spellings(draw: st.DrawFn) -> str:
    prefix = draw(st.lists(PREFIX_SEGMENTS, max_size=3))
    separator = draw(st.sampled_from(["/", "/", "/", "//", "/./", "/%2F"]))
    path = "".join("/" + segment for segment in prefix)
    path += separator + draw(endpoint_spellings())
    if draw(st.booleans()):
        path += draw(st.sampled_from(["/", ";jsessionid=1", "/.", "/..", "%2F"]))
    return path
