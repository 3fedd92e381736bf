"""One self-contained evidence file: a slice of a chain, the heads signed over it, the gate's
public key and a summary, every byte covered by a signature; and its offline check, which names
the first broken link.

The file is JSON lines, each in canonical form (entries.py), so that no byte can change without
changing what is signed:

    line 1        the header: format, room, public key and fingerprint, the anchor (the head
                  the slice follows), the range asked for, the export's time and the summary
    next lines    the entries, oldest first, as the log keeps them
    next lines    signed heads of entries in the slice, the last over the slice's last entry
    last line     SHA-256 of every byte before it, and the key's signature over them

Pure: build_export and verify_export take and return values, no I/O.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO, Final

from cryptography.hazmat.primitives.asymmetric import ed25519

from gateway.evidence.entries import (
    CHAIN_NAME,
    HASH,
    MAX_ENTRY_BYTES,
    MAX_SEQ,
    ChainBroken,
    Head,
    Links,
    SealedEntry,
    canonical,
    digest,
    entry_of,
    genesis,
    is_moment,
    is_seq,
    load_object,
)
from gateway.evidence.signing import (
    EXPORT_CONTEXT,
    SIGNATURE,
    SignedHead,
    fingerprint,
    head_signature_valid,
    load_public_key,
    parse_signed_head,
    public_hex,
    sign_head,
    signature_valid,
)

FORMAT: Final = "meetgate evidence export"
VERSION: Final = 1
# An export's lines are an entry (MAX_ENTRY_BYTES at most), a signed head, the header or the
# signature, each far smaller than this: a longer line is not an export's.
MAX_LINE_BYTES: Final = 2 * MAX_ENTRY_BYTES
# An export of a chain at the Redis store's bound (100,000 entries of a few hundred bytes) is
# some 30 MB: a file beyond this is not an export, and is not read.
MAX_EXPORT_BYTES: Final = 256 * 1024 * 1024
HEADER_KEYS: Final = frozenset(
    {"anchor", "exported", "format", "key", "public_key", "range", "room", "summary", "version"}
)


@dataclass(frozen=True, slots=True)
class Slice:
    """A contiguous run of a chain's entries: `anchor` is the head they follow, `signed` the
    signed heads of entries among them; `unchecked` counts heads kept with the chain that
    another key signed (left out)."""

    chain: str
    anchor: Head
    entries: tuple[SealedEntry, ...]
    signed: tuple[SignedHead, ...] = ()
    unchecked: int = 0
    # Whether the slice starts after a break in the chain (entries a store lost) it leaves out.
    after_break: bool = False

    @property
    def head(self) -> Head:
        return self.entries[-1].head if self.entries else self.anchor


def summary(entries: Sequence[SealedEntry]) -> dict[str, object]:
    """What a reader sees first: how many entries of each kind, over which span of time."""
    moments = [entry.at for entry in entries]
    return {
        "entries": len(entries),
        "from": min(moments, default=None),
        "to": max(moments, default=None),
        "kinds": dict(Counter(entry.kind.value for entry in entries)),
    }


def build_export(
    part: Slice,
    key: ed25519.Ed25519PrivateKey,
    now: str,
    since: str | None = None,
    until: str | None = None,
) -> bytes:
    """The export of `part`, signed with `key` at `now` (a moment)."""
    public = public_hex(key)
    header = {
        "anchor": {"hash": part.anchor.hash, "seq": part.anchor.seq},
        "exported": now,
        "format": FORMAT,
        "key": fingerprint(public),
        "public_key": public,
        "range": {"since": since, "until": until},
        "room": part.chain,
        "summary": summary(part.entries),
        "version": VERSION,
    }
    last = sign_head(key, part.chain, part.head, now)
    # One signed head a seq (writers may have signed one head twice), the export's own last.
    by_seq = {s.seq: s for s in reversed(part.signed) if s.head != last.head}
    heads = [by_seq[seq] for seq in sorted(by_seq)] + [last]
    lines = [canonical(header), *(entry.line for entry in part.entries)]
    lines += [canonical(signed.record()) for signed in heads]
    body = b"".join(line + b"\n" for line in lines)
    file_hash = digest(body)
    signature = key.sign(EXPORT_CONTEXT + bytes.fromhex(file_hash)).hex()
    return body + canonical({"sha256": file_hash, "signature": signature}) + b"\n"


@dataclass(frozen=True, slots=True)
class Verdict:
    """What `verify_export` found: `problem` is None for a valid file, else the first thing
    wrong, in one line; `readable` is False for what is no export at all (too large, a line
    longer than any an export holds)."""

    problem: str | None
    room: str = ""
    key: str = ""
    anchor: Head | None = None
    summary: dict[str, object] = field(default_factory=dict)
    signed_heads: int = 0
    exported: str = ""
    readable: bool = True

    @property
    def valid(self) -> bool:
        return self.problem is None


class Invalid(Exception):
    """The first thing wrong with an export, as its check says it."""


class Unreadable(Invalid):
    """What is not an export at all, whatever it holds: too large, or a line too long."""


def verify_export(data: bytes, expected_key: str | None = None) -> Verdict:
    """Check an export offline: its form, every link from the anchor, the summary, each signed
    head and the signature over the whole file; with `expected_key` (a fingerprint), that it was
    signed by that key."""
    if len(data) > MAX_EXPORT_BYTES:
        return Verdict(problem=_too_large(), readable=False)
    return verify_stream(io.BytesIO(data), expected_key)


def verify_stream(handle: BinaryIO, expected_key: str | None = None) -> Verdict:
    """`verify_export` of what `handle` reads, line by line: memory stays bounded by a line and
    the entries' hashes, whatever the file holds."""
    try:
        return _verify(_lines(handle), expected_key)
    except Unreadable as exc:
        return Verdict(problem=str(exc), readable=False)
    except Invalid as exc:
        return Verdict(problem=str(exc))


def _too_large() -> str:
    return f"the file is larger than any export ({MAX_EXPORT_BYTES // (1024 * 1024)} MiB)"


def _lines(handle: BinaryIO) -> Iterator[bytes]:
    """The file's lines without their line breaks; Invalid for a last line without one,
    Unreadable past the bounds of an export."""
    total = 0
    number = 0
    while True:
        line = handle.readline(MAX_LINE_BYTES + 1)
        if not line:
            if number == 0:
                raise Invalid("the file is empty")
            return
        number += 1
        total += len(line)
        if total > MAX_EXPORT_BYTES:
            raise Unreadable(_too_large())
        if not line.endswith(b"\n"):
            if len(line) > MAX_LINE_BYTES:
                raise Unreadable(
                    f"line {number} is longer than any line of an export ({MAX_LINE_BYTES}"
                    " bytes): this is not an export"
                )
            raise Invalid("the file does not end with a line break: it was cut short or altered")
        yield line[:-1]


class _Entries:
    """What the check keeps of the entries it has read: their hashes (32 bytes each, in seq
    order from the anchor), the summary's counts and span."""

    def __init__(self, anchor: Head) -> None:
        self.links = Links(anchor)
        self.hashes = bytearray()
        self.kinds: Counter[str] = Counter()
        self.first: str | None = None
        self.last: str | None = None
        self.count = 0

    def add(self, entry: SealedEntry) -> None:
        self.links.follow(entry)
        self.hashes += bytes.fromhex(entry.hash)
        self.kinds[entry.kind.value] += 1
        self.first = entry.at if self.first is None else min(self.first, entry.at)
        self.last = entry.at if self.last is None else max(self.last, entry.at)
        self.count += 1

    def hash_of(self, seq: int) -> str | None:
        index = seq - self.links.anchor.seq - 1
        if not 0 <= index < self.count:
            return None
        return self.hashes[32 * index : 32 * index + 32].hex()

    def summary(self) -> dict[str, object]:
        return {
            "entries": self.count,
            "from": self.first,
            "to": self.last,
            "kinds": dict(self.kinds),
        }


def _verify(lines: Iterator[bytes], expected_key: str | None) -> Verdict:
    first = next(lines)
    try:
        header = load_object(first)
    except ValueError as exc:
        raise Invalid(f"the header (line 1) is {exc}") from None
    room, anchor, public, key_hash = _header(header)
    try:
        public_key = load_public_key(public)
    except ValueError:
        raise Invalid("the public key in the header (line 1) is not an Ed25519 key") from None
    asked = header["range"]
    since, until = (
        (asked.get("since"), asked.get("until")) if isinstance(asked, dict) else (None, None)
    )
    body = hashlib.sha256(first + b"\n")
    seen = _Entries(anchor)
    heads = 0
    last_head: SignedHead | None = None

    pending = next(lines, None)
    number = 2
    if pending is None:
        raise Invalid("the file is too short to be an export (a header, heads and a signature)")
    for line in lines:
        # `pending` is not the last line: the file's signature is.
        signed = _read_line(number, pending, room, key_hash, public_key, since, until, seen, heads)
        if signed is not None:
            heads += 1
            last_head = signed
        body.update(pending + b"\n")
        pending, number = line, number + 1
    if number == 2:
        raise Invalid("the file is too short to be an export (a header, heads and a signature)")

    if last_head is None:
        raise Invalid("the file holds no signed head: nothing vouches for its entries")
    final = seen.links.last
    if final is not None and isinstance(until, str) and final.at >= until:
        raise Invalid(f"{final.named()} is not before the end of the header's range ({until})")
    last = seen.links.head
    if last_head.head != last:
        end = f"the last entry, {seen.links.last.named()}" if seen.links.last else "the anchor"
        raise Invalid(
            f"the last signed head is not over {end}: entries were added after the signature,"
            " or the last entry was altered"
        )

    stated = header["summary"]
    computed = seen.summary()
    if not isinstance(stated, dict) or canonical(stated) != canonical(computed):
        raise Invalid(
            "the summary in the header (line 1) does not match the entries: it says"
            f" {_shown(json.dumps(stated), 300)}, the entries give"
            f" {_shown(json.dumps(computed), 300)}"
        )

    _check_signature(pending, body.hexdigest(), public_key)
    if expected_key is not None and expected_key.replace(" ", "").lower() != key_hash:
        raise Invalid(
            "the file is intact, but signed by another key than the one expected: its key's"
            f" fingerprint is {key_hash}"
        )
    return Verdict(
        problem=None,
        room=room,
        key=key_hash,
        anchor=anchor,
        summary=computed,
        signed_heads=heads,
        exported=str(header["exported"]),
    )


def _read_line(
    number: int,
    line: bytes,
    room: str,
    key_hash: str,
    public_key: ed25519.Ed25519PublicKey,
    since: object,
    until: object,
    seen: _Entries,
    heads: int,
) -> SignedHead | None:
    """Check line `number` (an entry or a signed head) against what came before it; the signed
    head it holds, if it holds one."""
    anchor = seen.links.anchor
    try:
        data_line = load_object(line)
    except ValueError as exc:
        raise Invalid(f"{_where(number, line, seen.links.head)} is {exc}") from None
    if "head" in data_line:
        try:
            signed = parse_signed_head(data_line)
        except ValueError as exc:
            raise Invalid(f"{_where(number, line, seen.links.head)} {exc}") from None
        if heads >= seen.count + 1:
            raise Invalid(
                f"line {number}: more signed heads than the file has entries to sign (and its"
                " anchor): heads were repeated or added"
            )
        _check_head(signed, room, key_hash, public_key, anchor, seen)
        return signed
    if heads:
        where = _where(number, line, seen.links.head)
        raise Invalid(f"{where} comes after the signed heads, where no entry may be")
    try:
        entry = entry_of(data_line, line)
    except ValueError as exc:
        raise Invalid(f"{_where(number, line, seen.links.head)} {exc}") from None
    try:
        seen.add(entry)
    except ChainBroken as exc:
        raise Invalid(str(exc)) from None
    # The range selects from the first entry at or after `since` to the last before `until`,
    # with every entry between them: entries between may be stamped a little out of order (each
    # keeps the moment its event happened, appended as the recorder reached it).
    if seen.count == 1 and isinstance(since, str) and entry.at < since:
        raise Invalid(f"{entry.named()} is before the range the header says ({since})")
    return None


def _check_head(
    signed: SignedHead,
    room: str,
    key_hash: str,
    public_key: ed25519.Ed25519PublicKey,
    anchor: Head,
    seen: _Entries,
) -> None:
    what = f"the signed head of seq {signed.seq}"
    if signed.chain != room:
        raise Invalid(f"{what} is for room {_shown(signed.chain)!r}, not this file's {room!r}")
    if signed.key != key_hash:
        raise Invalid(f"{what} names another key than the file's")
    stated = seen.hash_of(signed.seq)
    if signed.head == anchor and not seen.count:
        pass
    elif stated is None:
        raise Invalid(
            f"{what} names an entry this file does not hold: entries were removed from"
            " the end, or that head was altered"
        )
    elif stated != signed.hash:
        raise Invalid(f"{what} does not match entry seq {signed.seq}: that entry was altered")
    if not head_signature_valid(public_key, signed):
        raise Invalid(f"{what} ({signed.at}) carries a signature the file's key did not make")


def _header(header: dict[str, object]) -> tuple[str, Head, str, str]:
    """The header's room, anchor, public key and its fingerprint, each checked."""
    if header.get("format") != FORMAT or set(header) != HEADER_KEYS:
        raise Invalid("the header (line 1) is not a Meetgate evidence export's")
    version = header["version"]
    if type(version) is not int or version != VERSION:
        raise Invalid(f"the export is of version {_shown(version)}; this check reads {VERSION}")
    room, anchor, public, key_hash = (header[k] for k in ("room", "anchor", "public_key", "key"))
    if not isinstance(room, str) or CHAIN_NAME.fullmatch(room) is None:
        raise Invalid("the header (line 1) names no room")
    if not (
        isinstance(anchor, dict)
        and set(anchor) == {"hash", "seq"}
        and is_seq(anchor["seq"])
        and isinstance(anchor["hash"], str)
        and HASH.fullmatch(anchor["hash"])
    ):
        raise Invalid(f"the header's anchor (line 1) is not a seq (0 to {MAX_SEQ}) and a SHA-256")
    if anchor["seq"] == 0 and anchor["hash"] != genesis(room).hash:
        raise Invalid(
            f"the header's anchor (line 1) says the start of a chain, but not of room {room}'s"
        )
    if not isinstance(public, str) or not isinstance(key_hash, str):
        raise Invalid("the header (line 1) has no public key")
    try:
        matches = fingerprint(public) == key_hash and public == public.lower()
    except ValueError:
        matches = False
    if not matches:
        raise Invalid("the public key in the header (line 1) does not match its fingerprint")
    exported, asked = header["exported"], header["range"]
    if not isinstance(exported, str) or not is_moment(exported):
        raise Invalid("the header's export time (line 1) is not a moment in UTC")
    if not (
        isinstance(asked, dict)
        and set(asked) == {"since", "until"}
        and all(v is None or (isinstance(v, str) and is_moment(v)) for v in asked.values())
    ):
        raise Invalid("the header's range (line 1) is not two moments or nulls")
    if not isinstance(header["summary"], dict):
        raise Invalid("the header's summary (line 1) is not an object")
    return room, Head(anchor["seq"], anchor["hash"]), public, key_hash


def _where(number: int, line: bytes, head: Head) -> str:
    """Line `number` as a message names it: the entry it holds, if that much can be read, and
    the entry that should be there (after `head`)."""
    expected = head.seq + 1
    try:
        loose = json.loads(line.decode("utf-8", "replace"))
    except (ValueError, RecursionError):
        loose = None
    if isinstance(loose, dict) and {"seq", "kind", "at"} <= set(loose):
        seq, kind, at = (_shown(loose[k]) for k in ("seq", "kind", "at"))
        if seq == str(expected):
            return f"line {number}, entry seq {seq} ({kind}, {at}),"
        return f"line {number}, entry seq {seq} ({kind}, {at}) where seq {expected} should be,"
    if isinstance(loose, dict) and isinstance(loose.get("head"), dict):
        return f"line {number}, a signed head,"
    return f"line {number} (where entry seq {expected} or a signed head should be)"


def _shown(value: object, most: int = 40) -> str:
    """A value read from a file that failed its check, as a message may quote it: short, and
    nothing a terminal would act on."""
    if type(value) is int and not is_seq(value):
        return "a number out of bounds"
    try:
        text = value if isinstance(value, str) else repr(value)
    except (ValueError, RecursionError):
        return "?"
    return "".join(c if c.isprintable() else "?" for c in text[:most])


def _check_signature(
    line: bytes, file_hash_read: str, public_key: ed25519.Ed25519PublicKey
) -> None:
    try:
        last = load_object(line)
    except ValueError as exc:
        raise Invalid(f"the file's signature (last line) is {exc}") from None
    file_hash, signature = last.get("sha256"), last.get("signature")
    if (
        set(last) != {"sha256", "signature"}
        or not isinstance(file_hash, str)
        or HASH.fullmatch(file_hash) is None
        or not isinstance(signature, str)
        or SIGNATURE.fullmatch(signature) is None
    ):
        raise Invalid("the last line is not the file's checksum and signature")
    if file_hash_read != file_hash:
        raise Invalid(
            "the file's checksum (last line) does not match what comes before it: the header,"
            " its summary or a signed head was altered"
        )
    if not signature_valid(public_key, signature, EXPORT_CONTEXT + bytes.fromhex(file_hash)):
        raise Invalid("the file's signature (last line) was not made by the file's key")
