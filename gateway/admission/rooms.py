"""Room names and titles (the grammar a Jitsi room name must follow), and where a meeting is now."""

from __future__ import annotations

import re
import unicodedata

from gateway.errors import InvalidInput, InvalidRoomName, Phrase
from gateway.i18n import N_
from gateway.store import Store
from gateway.store.records import Room

ROOM_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
MAX_TITLE_CHARS = 120
MAX_MOVES = 16

# Top-level names Jitsi's web servers route to a service (bridge, focus, pads, statistics,
# prosody's HTTP APIs): never a room, and never a tenant (gateway.proxy.paths), so
# `/<name>/<room>` cannot reach one as a room page.
JITSI_SERVICE_NAMES = frozenset(
    {
        "colibri-ws",
        "colibri-relay-ws",
        "conference-request",
        "etherpad",
        "socket.io",
        "rtcstats-ws",
        "rtc-visualizer",
        "_api",
        "_load-test",
        "load-test",
        "room-info",
        "kick-participant",
        "end-meeting",
        "subdomain",
        "transcripts",
        "connection_optimization",
    }
)
# Top-level paths of a Jitsi web deployment and of Meetgate itself: a room of that name would
# shadow them, or they would shadow the room.
RESERVED_NAMES = JITSI_SERVICE_NAMES | frozenset(
    {
        "j",
        "api",
        "libs",
        "css",
        "static",
        "images",
        "fonts",
        "lang",
        "sounds",
        "xmpp-websocket",
        "http-bind",
        "_unlock",
        "_meetgate",
        "external_api",
        "favicon",
        "robots",
    }
)
# A path naming a signalling endpoint anywhere is signalling or refused (gateway.proxy.paths),
# so a room whose name holds one could never be opened.
SIGNALLING_NAMES = ("http-bind", "xmpp-websocket")


def is_room_name(value: str) -> bool:
    return ROOM_NAME.fullmatch(value) is not None


def validate_room_name(value: str) -> str:
    """Return the name if it is a valid, unreserved room name; raise InvalidRoomName otherwise."""
    if not is_room_name(value):
        raise InvalidRoomName()
    if value in RESERVED_NAMES or any(name in value for name in SIGNALLING_NAMES):
        raise InvalidRoomName(
            N_("'{value}' is reserved for Jitsi's or Meetgate's own paths."), value=value
        )
    return value


def clean_text(value: str, *, field: str, max_chars: int, required: bool = True) -> str:
    """Normalise a human-readable label (NFKC) and refuse control and bidi-override characters."""
    text = unicodedata.normalize("NFKC", value).strip()
    if required and not text:
        raise InvalidInput(N_("The {field} must not be empty."), field=Phrase(field))
    if len(text) > max_chars:
        raise InvalidInput(
            N_("The {field} must be at most {max_chars} characters long."),
            field=Phrase(field),
            max_chars=max_chars,
        )
    for char in text:
        # Cc: control characters; Cf: format characters such as RIGHT-TO-LEFT OVERRIDE.
        if unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn"):
            raise InvalidInput(
                N_("The {field} contains a character that is not allowed."), field=Phrase(field)
            )
    return text


def validate_title(value: str) -> str:
    return clean_text(value, field=N_("room title"), max_chars=MAX_TITLE_CHARS)


async def current_room(store: Store, name: str) -> Room | None:
    """The room a meeting is in now, following moves from `name`."""
    room = await store.get_room(name)
    for _ in range(MAX_MOVES):
        if room is None or room.moved_to is None:
            return room
        room = await store.get_room(room.moved_to)
    return room
