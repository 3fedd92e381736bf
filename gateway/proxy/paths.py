"""Which Jitsi path a request is for, decided by an allowlist, and the signalling query string
Meetgate owns.

Pure functions: no I/O, so the rules that decide what reaches Jitsi are tested without a server.
A path passes only because a rule below names it; everything else is refused, never forwarded.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from enum import Enum
from urllib.parse import parse_qsl, urlencode

from gateway.admission.rooms import JITSI_SERVICE_NAMES, SIGNALLING_NAMES, is_room_name
from gateway.errors import BadRequest, DuplicateParameter, PathRefused, TicketInvalid
from gateway.i18n import N_

# The only spellings of signalling: lowercase, exact, at the root or under one tenant segment.
SIGNALLING_PATH = re.compile(
    r"/(?:(?P<tenant>[a-z0-9][a-z0-9_-]{0,63})/)?(?P<endpoint>xmpp-websocket|http-bind)"
)
# Jitsi's web server reaches prosody by more spellings than these two: docker-jitsi-meet's
# meet.conf sends `^/([^/?&:'"]+)/http-bind` (unanchored at the end) there, and its catch-all
# rewrite `/<a>/<rest>` -> `/<rest>` brings any depth to it; Debian's site does the same. So a
# path naming either endpoint (SIGNALLING_NAMES, which room names may not hold either) in any
# case, anywhere, is canonical signalling or refused.

# Jitsi's public static folders (the jitsi-meet-web package's tree, served by its web server's
# `^/(libs|css|static|…)/` location). Left out: `connection_optimization` (a legacy pre-connect
# script no current index.html loads) and `transcripts` (Jigasi output, off in deploy/).
STATIC_DIRS = frozenset(
    {"libs", "css", "static", "images", "fonts", "lang", "sounds", ".well-known"}
)
# Files at the root the web app fetches itself, also under a tenant segment (`/<tenant>/config.js`).
# The SSI fragments index.html includes (base.html, head.html, body.html, title.html,
# plugin.head.html, fonts.html) are read by Jitsi's web server, never by the browser, and
# browsers do not ask for /favicon.ico (index.html names images/favicon.svg): not listed.
STATIC_FILES = frozenset(
    {"config.js", "interface_config.js", "external_api.js", "pwa-worker.js", "manifest.json"}
)
# `/_unlock`: the plain GET many deployments set as `websocketKeepAliveUrl`.
ROOT_ONLY_FILES = frozenset({"_unlock"})
# A path as sent may hold RFC 3986 unreserved characters between single slashes, nothing else:
# no percent-encoding, `;` parameters, empty segments or trailing slash, so the path Meetgate
# decides on is byte for byte the path the upstream decodes.
SAFE_PATH = re.compile(r"(?:/[A-Za-z0-9._~-]+)+")
# prosody takes the last of duplicate keys, so a second copy could smuggle an unverified value.
OWNED_PARAMETERS = ("token", "room", "prefix", "previd")
PREVID_SHAPE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
# Either signalling name anywhere in a lowered path (one search, not one per name).
_SIGNALLING_NAME = re.compile("|".join(re.escape(name) for name in SIGNALLING_NAMES))
MAX_QUERY_BYTES = 8192
MAX_TOKEN_CHARS = 4096
INVALID_PATH = N_("This address is not valid.")


class PathKind(Enum):
    SIGNALLING = "signalling"
    RELAYED = "relayed"
    ROOM = "room"
    STATIC = "static"


@dataclass(frozen=True, slots=True)
class PathTarget:
    kind: PathKind
    room: str | None = None


@dataclass(frozen=True, slots=True)
class SignallingQuery:
    token: str
    room: str | None
    previd: str | None


def mentions_signalling(text: str) -> bool:
    return _SIGNALLING_NAME.search(text.lower()) is not None


def is_relayed(path: str, endpoints: Iterable[str]) -> bool:
    """An endpoint ending in `/` names the paths below it; any other names itself alone."""
    for endpoint in endpoints:
        if path == endpoint or (endpoint.endswith("/") and path.startswith(endpoint)):
            return True
    return False


def classify(path: str, raw_path: bytes | None = None, relayed: Collection[str] = ()) -> PathTarget:
    """What a Jitsi path is for; BadRequest for a path that could mean another, PathRefused for
    one no rule names.

    `path` is the server's decoded path and `raw_path` the path as sent; they must be the same
    safe text (see SAFE_PATH). `relayed` are the Jitsi endpoints the config relays.
    """
    raw = path.encode("utf-8", "surrogateescape") if raw_path is None else raw_path
    try:
        sent = raw.decode("ascii")
    except UnicodeDecodeError as exc:
        raise BadRequest(INVALID_PATH) from exc
    if sent != path:
        raise BadRequest(INVALID_PATH)
    if SAFE_PATH.fullmatch(sent) is None:
        # Jitsi serves some endpoints at a folder's own path (`location = /socket.io/`): a
        # trailing slash passes only where the config names that exact path.
        folder = sent[:-1]
        if (
            sent.endswith("/")
            and SAFE_PATH.fullmatch(folder)
            and not mentions_signalling(folder)
            and sent in relayed
        ):
            return PathTarget(PathKind.RELAYED)
        raise BadRequest(INVALID_PATH)
    segments = path[1:].split("/")
    # A segment of dots alone (`.`, `..`, `...`) begins right after a slash.
    if "/." in path and any(set(segment) == {"."} for segment in segments):
        raise BadRequest(INVALID_PATH)
    if mentions_signalling(path):
        canonical = SIGNALLING_PATH.fullmatch(path)
        tenant = canonical.group("tenant") if canonical else None
        if canonical and tenant not in STATIC_DIRS and tenant not in JITSI_SERVICE_NAMES:
            return PathTarget(PathKind.SIGNALLING)
        raise PathRefused()
    if is_relayed(path, relayed):
        return PathTarget(PathKind.RELAYED)
    first, last = segments[0], segments[-1]
    if first in STATIC_DIRS:
        if len(segments) > 1:
            return PathTarget(PathKind.STATIC)
        raise PathRefused()
    if len(segments) == 1 and (first in STATIC_FILES or first in ROOT_ONLY_FILES):
        return PathTarget(PathKind.STATIC)
    if len(segments) == 2 and (first in JITSI_SERVICE_NAMES or not is_room_name(first)):
        raise PathRefused()
    if len(segments) == 2 and last in STATIC_FILES:
        return PathTarget(PathKind.STATIC)
    # `/<room>` and `/<tenant>/<room>` are room pages (Jitsi rewrites them to index.html).
    if len(segments) <= 2 and is_room_name(last) and last not in JITSI_SERVICE_NAMES:
        return PathTarget(PathKind.ROOM, last)
    raise PathRefused()


def query_rooms(query_string: bytes) -> list[str]:
    """Every `room` value of a query string (a relayed endpoint's room must be the admission's)."""
    return [value for key, value in _query_pairs(query_string) if key == "room"]


def _query_pairs(query_string: bytes) -> list[tuple[str, str]]:
    if len(query_string) > MAX_QUERY_BYTES:
        raise BadRequest(N_("The query string is too long."))
    try:
        return parse_qsl(query_string.decode("ascii"), keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(N_("The query string is not valid.")) from exc


def parse_signalling_query(query_string: bytes) -> SignallingQuery:
    """Read `token`, `room` and `previd`; refuse duplicates and a missing or oversized token."""
    seen: dict[str, str] = {}
    for key, value in _query_pairs(query_string):
        if key in OWNED_PARAMETERS:
            if key in seen:
                raise DuplicateParameter(
                    N_("The parameter '{key}' appears more than once."), key=key
                )
            seen[key] = value
    token = seen.get("token", "")
    if not token or len(token) > MAX_TOKEN_CHARS:
        raise TicketInvalid()
    previd = seen.get("previd") or None
    if previd is not None and PREVID_SHAPE.fullmatch(previd) is None:
        raise BadRequest(N_("The session to resume is not valid."))
    return SignallingQuery(token=token, room=seen.get("room"), previd=previd)


def upstream_signalling_query(room: str, token: str, previd: str | None) -> str:
    """The query the upstream receives: verified values only, each once."""
    pairs = [("room", room), ("token", token)]
    if previd is not None:
        pairs.append(("previd", previd))
    return urlencode(pairs)
