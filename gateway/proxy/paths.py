"""Which kind of Jitsi path a request is for, and the signalling query string Meetgate owns.

Pure functions: no I/O, so the rules that decide what reaches prosody are tested without a server.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from urllib.parse import parse_qsl, urlencode

from gateway.admission.rooms import is_room_name
from gateway.errors import BadRequest, DuplicateParameter, TicketInvalid

SIGNALLING_PATH = re.compile(
    r"/(?:(?P<tenant>[a-z0-9][a-z0-9_-]{0,63})/)?(?P<endpoint>xmpp-websocket|http-bind)"
)
# Jitsi's static top-level folders: never a room, whatever their name looks like.
STATIC_DIRS = frozenset(
    {"libs", "css", "static", "images", "fonts", "lang", "sounds", ".well-known", "_unlock"}
)
# prosody takes the last of duplicate keys, so a second copy could smuggle an unverified value.
OWNED_PARAMETERS = ("token", "room", "prefix", "previd")
PREVID_SHAPE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
MAX_QUERY_BYTES = 8192
MAX_TOKEN_CHARS = 4096
_BAD_RAW = re.compile(rb"%(?:2[fF]|5[cC]|00|2[eE])")


class PathKind(Enum):
    SIGNALLING = "signalling"
    ROOM = "room"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class PathTarget:
    kind: PathKind
    room: str | None = None


@dataclass(frozen=True, slots=True)
class SignallingQuery:
    token: str
    room: str | None
    previd: str | None


def classify(path: str, raw_path: bytes | None = None) -> PathTarget:
    """Classify a decoded request path; BadRequest for anything that could mean another path.

    Encoded slashes, backslashes, NULs and dots, dot segments, empty segments and non-ASCII are
    refused, so that Meetgate and the upstream can never disagree about which path this is.
    """
    if raw_path is not None and _BAD_RAW.search(raw_path):
        raise BadRequest("This address contains encoded characters Meetgate does not accept.")
    if not path.startswith("/") or not path.isascii() or "\\" in path or "\x00" in path:
        raise BadRequest("This address is not valid.")
    segments = path[1:].split("/")
    if any(segment in (".", "..") for segment in segments) or "//" in path:
        raise BadRequest("This address is not valid.")
    if any(ord(char) < 0x21 or ord(char) == 0x7F for char in path):
        raise BadRequest("This address is not valid.")
    if SIGNALLING_PATH.fullmatch(path):
        return PathTarget(PathKind.SIGNALLING)
    if segments[0] in STATIC_DIRS:
        return PathTarget(PathKind.OTHER)
    # `/<room>` and `/<tenant>/<room>` are room pages (Jitsi rewrites them to index.html).
    if len(segments) == 1 and is_room_name(segments[0]):
        return PathTarget(PathKind.ROOM, segments[0])
    if len(segments) == 2 and is_room_name(segments[0]) and is_room_name(segments[1]):
        return PathTarget(PathKind.ROOM, segments[1])
    return PathTarget(PathKind.OTHER)


def parse_signalling_query(query_string: bytes) -> SignallingQuery:
    """Read `token`, `room` and `previd`; refuse duplicates and a missing or oversized token."""
    if len(query_string) > MAX_QUERY_BYTES:
        raise BadRequest("The query string is too long.")
    try:
        pairs = parse_qsl(
            query_string.decode("ascii"), keep_blank_values=True, strict_parsing=False
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest("The query string is not valid.") from exc
    seen: dict[str, str] = {}
    for key, value in pairs:
        if key in OWNED_PARAMETERS:
            if key in seen:
                raise DuplicateParameter(f"The parameter '{key}' appears more than once.")
            seen[key] = value
    token = seen.get("token", "")
    if not token or len(token) > MAX_TOKEN_CHARS:
        raise TicketInvalid()
    previd = seen.get("previd") or None
    if previd is not None and PREVID_SHAPE.fullmatch(previd) is None:
        raise BadRequest("The session to resume is not valid.")
    return SignallingQuery(token=token, room=seen.get("room"), previd=previd)


def upstream_signalling_query(room: str, token: str, previd: str | None) -> str:
    """The query the upstream receives: verified values only, each once."""
    pairs = [("room", room), ("token", token)]
    if previd is not None:
        pairs.append(("previd", previd))
    return urlencode(pairs)
