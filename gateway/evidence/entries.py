"""What an evidence entry is: its kinds and the few values each holds, its one canonical byte
form, and the SHA-256 link that chains it to the entry before it.

Pure values and functions, no I/O: the log (log.py) seals entries, the export (export.py) checks
them, both through what is here.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final, TypeGuard

# The name of the gate's own chain, beside one per room: a room's name never starts with "_"
# (gateway/admission/rooms.py ROOM_NAME, the same pattern as CHAIN_NAME's room branch).
GATE_CHAIN: Final = "_gate"
CHAIN_NAME: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}|_gate")

HASH: Final = re.compile(r"[0-9a-f]{64}")
# A moment, in UTC to the millisecond, as every entry and signature writes it.
MOMENT: Final = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
# A minute, for counts kept per minute.
MINUTE: Final = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}Z")
# A pseudonym (pseudonyms.py): h- a host, a- an admission, n- a network.
PSEUDONYM: Final = re.compile(r"[han]-[a-z2-7]{16}")
# The shown name a host chose to record: a name as the gate accepts one, never longer.
MAX_NAME_CHARS: Final = 200
MAX_COUNT: Final = 10**12
# What a reason or rule is written as: a short lowercase word.
WORD: Final = re.compile(r"[a-z][a-z-]{0,31}")
# An entry's canonical form is never larger: a line a reader can keep whole.
MAX_ENTRY_BYTES: Final = 4096
# No chain gets anywhere near it; a larger seq read from a file is hostile (a number of
# thousands of digits that the next seq, or its text, cannot be made of).
MAX_SEQ: Final = 2**53
# The rules the wire guard removes someone for (gateway/proxy/wire_guard.py, Refuse.reason).
GUARD_RULES: Final = frozenset({"rate", "size", "quiet", "address"})


class Kind(StrEnum):
    """What happened. Each kind holds exactly the values FIELDS names for it."""

    FLOOD_REFUSED = "flood refused"  # joins refused from one network in one minute, counted
    # A minute's refused joins from the networks past the most a minute names (recorder.py).
    FLOOD_OTHERS = "flood refused, other networks"
    NAME_REFUSED = "name refused"  # a look-alike or impersonating name refused
    REMOVAL = "removal"  # a host removed someone
    BAN = "ban"  # a host banned someone (until a moment, or for good)
    UNBAN = "unban"
    LOCK = "lock"
    LOCKDOWN = "lockdown"  # emergency: locked, and every attendee removed
    UNLOCK = "unlock"
    MOVE = "move"  # the meeting moved to a fresh room (which is not named)
    # The first entry of the room a meeting moved to: the seq and hash of the old room's `move`
    # entry (which is not named), so that the two chains are one story.
    MOVE_IN = "move in"
    QUIET_ON = "quiet on"
    QUIET_OFF = "quiet off"
    GUARD_REMOVAL = "guard removal"  # the wire guard removed a sender (gateway/proxy/guarded.py)
    CHAT_LIMITS = "chat limits"  # a host changed the room's chat limits
    # An admin deleted the room: what follows in the chain is a room made later under its name.
    ROOM_DELETED = "room deleted"
    # Records the gate could not keep (its queue was full while the store was away, or the
    # store lost entries it had kept): the export shows the hole and its size where known.
    EVIDENCE_LOST = "evidence lost"


# What attackers can make many of: a chain keeps a bounded number of these (redis_chains.py),
# never at the cost of the hosts', the admins' or the wire guard's entries.
BOUNDED_KINDS: Final = frozenset({Kind.FLOOD_REFUSED, Kind.FLOOD_OTHERS, Kind.NAME_REFUSED})


class EvidenceError(Exception):
    """An entry or a value that cannot be part of the evidence, said in one line."""


class ChainBroken(EvidenceError):
    """Stored entries that do not chain: one was altered, removed, inserted or reordered."""


# Checks of one value: each returns None when the value is good, else what is wrong with it.
Check = Callable[[object], str | None]


def _pseudonym(prefix: str) -> Check:
    def check(value: object) -> str | None:
        if isinstance(value, str) and PSEUDONYM.fullmatch(value) and value[0] == prefix:
            return None
        return f"must be a pseudonym {prefix}-… (16 letters a-z, 2-7)"

    return check


def _count(value: object) -> str | None:
    if type(value) is int and 0 <= value <= MAX_COUNT:
        return None
    return f"must be a whole number from 0 to {MAX_COUNT}"


def _name(value: object) -> str | None:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_NAME_CHARS:
        return f"must be text of 1 to {MAX_NAME_CHARS} characters"
    if any(not char.isprintable() for char in value):
        return "must hold printable characters only"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode text"
    return None


def _word(value: object) -> str | None:
    if isinstance(value, str) and WORD.fullmatch(value):
        return None
    return "must be a short lowercase word (a-z, -)"


def _hash(value: object) -> str | None:
    if isinstance(value, str) and HASH.fullmatch(value):
        return None
    return "must be a SHA-256 in lowercase hex"


def _guard_rule(value: object) -> str | None:
    if isinstance(value, str) and value in GUARD_RULES:
        return None
    return f"must be one of {', '.join(sorted(GUARD_RULES))}"


def is_seq(value: object, least: int = 0) -> TypeGuard[int]:
    """Whether `value` is a seq: a whole number (not a bool) from `least` to MAX_SEQ."""
    return type(value) is int and least <= value <= MAX_SEQ


def _minute(value: object) -> str | None:
    if isinstance(value, str) and MINUTE.fullmatch(value) and _real_moment(value[:-1] + ":00"):
        return None
    return "must be a minute in UTC, as 2026-12-05T14:03Z"


def _moment_or_none(value: object) -> str | None:
    if value is None or (isinstance(value, str) and is_moment(value)):
        return None
    return "must be a moment in UTC (2026-12-05T14:03:07.250Z), or null for good"


def _limits(value: object) -> str | None:
    # A room's chat limits (gateway/store/records.py ChatLimits): each a number, or null for
    # the gate's default.
    names = {"per_10s", "burst", "max_bytes", "strikes"}
    if not isinstance(value, dict) or set(value) != names:
        return f"must hold exactly {sorted(names)}"
    if any(item is not None and _count(item) is not None for item in value.values()):
        return "must hold whole numbers, or null for the gate's default"
    return None


ACTOR = _pseudonym("h")
TARGET = _pseudonym("a")
NETWORK = _pseudonym("n")

# Each kind's values: (check, required). The shown name is optional wherever it appears: it is
# recorded only when the host chose to record it.
FIELDS: Final[Mapping[Kind, Mapping[str, tuple[Check, bool]]]] = {
    Kind.FLOOD_REFUSED: {
        "network": (NETWORK, True),
        "minute": (_minute, True),
        "count": (_count, True),
    },
    Kind.FLOOD_OTHERS: {
        "minute": (_minute, True),
        "networks": (_count, True),
        "count": (_count, True),
    },
    # Counted per network, reason and minute (the minute and count are absent from entries
    # written before they were).
    Kind.NAME_REFUSED: {
        "network": (NETWORK, True),
        "reason": (_word, True),
        "minute": (_minute, False),
        "count": (_count, False),
    },
    Kind.REMOVAL: {"actor": (ACTOR, True), "target": (TARGET, True), "name": (_name, False)},
    Kind.BAN: {
        "actor": (ACTOR, True),
        "target": (TARGET, True),
        "until": (_moment_or_none, True),
        "name": (_name, False),
    },
    Kind.UNBAN: {"actor": (ACTOR, True), "target": (TARGET, True), "name": (_name, False)},
    Kind.LOCK: {"actor": (ACTOR, True)},
    Kind.LOCKDOWN: {"actor": (ACTOR, True), "removed": (_count, True)},
    Kind.UNLOCK: {"actor": (ACTOR, True)},
    Kind.MOVE: {"actor": (ACTOR, True), "moved": (_count, True)},
    Kind.MOVE_IN: {"actor": (ACTOR, True), "from_seq": (_count, True), "from_hash": (_hash, True)},
    Kind.QUIET_ON: {"actor": (ACTOR, True)},
    Kind.QUIET_OFF: {"actor": (ACTOR, True)},
    # No host chose to record a name: the guard's removals never hold one.
    Kind.GUARD_REMOVAL: {"target": (TARGET, True), "rule": (_guard_rule, True)},
    Kind.CHAT_LIMITS: {"actor": (ACTOR, True), "limits": (_limits, True)},
    Kind.ROOM_DELETED: {"actor": (ACTOR, True)},
    Kind.EVIDENCE_LOST: {"count": (_count, True), "reason": (_word, True)},
}


def check_fields(kind: Kind, fields: Mapping[str, object]) -> None:
    """Raise EvidenceError unless `fields` hold exactly what `kind` holds, each value good."""
    spec = FIELDS[kind]
    unknown = sorted(set(fields) - set(spec))
    if unknown:
        raise EvidenceError(f"a {kind} entry holds no {', '.join(unknown)}")
    for name, (check, required) in spec.items():
        if name not in fields:
            if required:
                raise EvidenceError(f"a {kind} entry needs {name}")
            continue
        problem = check(fields[name])
        if problem is not None:
            raise EvidenceError(f"{kind}: {name} {problem}")


@dataclass(frozen=True, slots=True)
class Record:
    """What happened, before it is sealed into the chain: a kind and its values."""

    kind: Kind
    fields: Mapping[str, object]

    def __post_init__(self) -> None:
        check_fields(self.kind, self.fields)


@dataclass(frozen=True, slots=True)
class Head:
    """The end of a chain: the last entry's seq and hash (seq 0 and the genesis hash when the
    chain is empty)."""

    seq: int
    hash: str


@dataclass(frozen=True, slots=True)
class SealedEntry:
    """An entry in its chain: `line` is its canonical bytes, which `hash` is the SHA-256 of."""

    seq: int
    at: str
    kind: Kind
    fields: Mapping[str, object]
    prev: str
    line: bytes
    hash: str

    @property
    def head(self) -> Head:
        return Head(self.seq, self.hash)

    def named(self) -> str:
        """The entry as a message names it: its seq, kind and time."""
        return f"entry seq {self.seq} ({self.kind}, {self.at})"


def canonical(value: Mapping[str, object]) -> bytes:
    """The one byte form of a JSON object: sorted keys, no whitespace, UTF-8 (not escaped)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def genesis(chain: str) -> Head:
    """The head of an empty chain: its hash names the chain, so no other chain's entries link."""
    return Head(0, digest(b"meetgate evidence genesis v1\x00" + chain.encode("utf-8")))


def check_chain_name(chain: str) -> str:
    if not isinstance(chain, str) or CHAIN_NAME.fullmatch(chain) is None:
        raise EvidenceError("not a room's name (nor the gate's chain, _gate)")
    return chain


def moment(timestamp: float) -> str:
    """`timestamp` (seconds since the epoch) as entries write a moment: UTC, milliseconds."""
    when = datetime.fromtimestamp(timestamp, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def minute(timestamp: float) -> str:
    """The minute `timestamp` falls in, as flood counts name it."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%MZ")


def _real_moment(text: str) -> bool:
    try:
        datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return False
    return True


def is_moment(text: str) -> bool:
    return MOMENT.fullmatch(text) is not None and _real_moment(text)


def seal(head: Head, record: Record, at: str) -> SealedEntry:
    """`record` as the entry after `head`, at moment `at`."""
    if not is_moment(at):
        raise EvidenceError("an entry's time must be a moment in UTC")
    if not is_seq(head.seq + 1, 1):
        raise EvidenceError(f"a chain holds {MAX_SEQ} entries at most")
    fields = dict(record.fields)
    data = {
        "at": at,
        "fields": fields,
        "kind": record.kind.value,
        "prev": head.hash,
        "seq": head.seq + 1,
    }
    line = canonical(data)
    if len(line) > MAX_ENTRY_BYTES:
        raise EvidenceError(f"an entry is at most {MAX_ENTRY_BYTES} bytes")
    return SealedEntry(
        seq=head.seq + 1,
        at=at,
        kind=record.kind,
        fields=fields,
        prev=head.hash,
        line=line,
        hash=digest(line),
    )


def _no_float(text: str) -> object:
    raise ValueError("a number with a fraction or exponent")


def _no_constant(text: str) -> object:
    raise ValueError(f"{text} is not JSON")


def load_object(line: bytes) -> dict[str, object]:
    """The JSON object `line` holds, which must be in its canonical form byte for byte (so no
    two byte strings read as one); ValueError says what is wrong."""
    if len(line) > MAX_ENTRY_BYTES * 64:
        raise ValueError("too long")
    try:
        text = line.decode("utf-8")
        value = json.loads(text, parse_float=_no_float, parse_constant=_no_constant)
    except UnicodeDecodeError as exc:
        raise ValueError("not UTF-8 text") from exc
    except RecursionError as exc:
        raise ValueError("nested too deeply") from exc
    except ValueError as exc:
        raise ValueError("not JSON") from exc
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    try:
        again = canonical(value)
    except (UnicodeEncodeError, RecursionError, ValueError) as exc:
        raise ValueError("not in canonical form") from exc
    if again != line:
        raise ValueError("not in canonical form (sorted keys, no spaces, UTF-8, no escapes)")
    return value


def parse_entry(line: bytes) -> SealedEntry:
    """The entry `line` holds, checked value by value; ValueError says what is wrong."""
    return entry_of(load_object(line), line)


def entry_of(data: dict[str, object], line: bytes) -> SealedEntry:
    """The entry in `data`, what `load_object(line)` read; ValueError says what is wrong."""
    if set(data) != {"at", "fields", "kind", "prev", "seq"}:
        raise ValueError("not an entry (it must hold at, fields, kind, prev and seq)")
    seq, at, kind, fields, prev = (data[k] for k in ("seq", "at", "kind", "fields", "prev"))
    if not is_seq(seq, 1):
        raise ValueError(f"its seq is not a whole number from 1 to {MAX_SEQ}")
    if not isinstance(at, str) or not is_moment(at):
        raise ValueError("its time is not a moment in UTC")
    if not isinstance(prev, str) or HASH.fullmatch(prev) is None:
        raise ValueError("its link (prev) is not a SHA-256 in lowercase hex")
    try:
        known = Kind(str(kind))
    except ValueError:
        raise ValueError("its kind is not one the evidence log records") from None
    if not isinstance(fields, dict):
        raise ValueError("its fields are not an object")
    try:
        check_fields(known, fields)
    except EvidenceError as exc:
        raise ValueError(str(exc)) from exc
    return SealedEntry(
        seq=seq, at=at, kind=known, fields=fields, prev=prev, line=line, hash=digest(line)
    )


class Links:
    """Follows a chain entry by entry from `anchor`: `follow` raises ChainBroken, naming the
    first broken link, unless each entry is the next seq and links to the hash of the one
    before (so a long chain is checked as it is read, never held whole)."""

    def __init__(self, anchor: Head) -> None:
        if not is_seq(anchor.seq):
            raise ChainBroken(f"the anchor's seq is not a whole number from 0 to {MAX_SEQ}")
        self.anchor = anchor
        self.head = anchor
        self.last: SealedEntry | None = None

    def follow(self, entry: SealedEntry) -> None:
        before, head = self.last, self.head
        if entry.seq != head.seq + 1:
            after = before.named() if before else f"the anchor (seq {self.anchor.seq})"
            raise ChainBroken(
                f"{entry.named()} follows {after}, which should be seq {head.seq + 1}:"
                " entries were removed, inserted or reordered here"
            )
        if entry.prev != head.hash:
            if before is None:
                raise ChainBroken(
                    f"{entry.named()} does not link to the anchor it follows"
                    f" (seq {self.anchor.seq}): the anchor or this entry was altered"
                )
            raise ChainBroken(
                f"broken link between {before.named()} and {entry.named()}: the first is not"
                " the entry the second was chained to (one of them was altered, or entries"
                " were removed, inserted or reordered here)"
            )
        self.last = entry
        self.head = entry.head


def check_links(anchor: Head, entries: list[SealedEntry]) -> None:
    """Raise ChainBroken, naming the first broken link, unless `entries` follow `anchor` one by
    one, each linking to the hash of the one before."""
    links = Links(anchor)
    for entry in entries:
        links.follow(entry)
