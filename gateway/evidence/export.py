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

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from cryptography.hazmat.primitives.asymmetric import ed25519

from gateway.evidence.entries import (
    CHAIN_NAME,
    HASH,
    ChainBroken,
    Head,
    SealedEntry,
    canonical,
    check_links,
    digest,
    is_moment,
    load_object,
    parse_entry,
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
HEADER_KEYS: Final = frozenset(
    {"anchor", "exported", "format", "key", "public_key", "range", "room", "summary", "version"}
)


@dataclass(frozen=True, slots=True)
class Slice:
    """A contiguous run of a chain's entries: `anchor` is the head they follow, `signed` the
    signed heads of entries among them."""

    chain: str
    anchor: Head
    entries: tuple[SealedEntry, ...]
    signed: tuple[SignedHead, ...] = ()

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
    heads = [s for s in part.signed if s.head != last.head] + [last]
    lines = [canonical(header), *(entry.line for entry in part.entries)]
    lines += [canonical(signed.record()) for signed in heads]
    body = b"".join(line + b"\n" for line in lines)
    file_hash = digest(body)
    signature = key.sign(EXPORT_CONTEXT + bytes.fromhex(file_hash)).hex()
    return body + canonical({"sha256": file_hash, "signature": signature}) + b"\n"


@dataclass(frozen=True, slots=True)
class Verdict:
    """What `verify_export` found: `problem` is None for a valid file, else the first thing
    wrong, in one line."""

    problem: str | None
    room: str = ""
    key: str = ""
    anchor: Head | None = None
    summary: dict[str, object] = field(default_factory=dict)
    signed_heads: int = 0
    exported: str = ""

    @property
    def valid(self) -> bool:
        return self.problem is None


class Invalid(Exception):
    """The first thing wrong with an export, as its check says it."""


def verify_export(data: bytes, expected_key: str | None = None) -> Verdict:
    """Check an export offline: its form, every link from the anchor, the summary, each signed
    head and the signature over the whole file; with `expected_key` (a fingerprint), that it was
    signed by that key."""
    try:
        return _verify(data, expected_key)
    except Invalid as exc:
        return Verdict(problem=str(exc))


def _verify(data: bytes, expected_key: str | None) -> Verdict:
    if not data:
        raise Invalid("the file is empty")
    if not data.endswith(b"\n"):
        raise Invalid("the file does not end with a line break: it was cut short or altered")
    lines = data[:-1].split(b"\n")
    if len(lines) < 3:
        raise Invalid("the file is too short to be an export (a header, heads and a signature)")
    try:
        header = load_object(lines[0])
    except ValueError as exc:
        raise Invalid(f"the header (line 1) is {exc}") from None
    room, anchor, public, key_hash = _header(header)

    entries: list[SealedEntry] = []
    heads: list[SignedHead] = []
    for number, line in enumerate(lines[1:-1], start=2):
        try:
            data_line = load_object(line)
        except ValueError as exc:
            raise Invalid(f"{_where(number, line, entries, anchor)} is {exc}") from None
        if "head" in data_line:
            try:
                heads.append(parse_signed_head(data_line))
            except ValueError as exc:
                raise Invalid(f"{_where(number, line, entries, anchor)} {exc}") from None
            continue
        if heads:
            where = _where(number, line, entries, anchor)
            raise Invalid(f"{where} comes after the signed heads, where no entry may be")
        try:
            entries.append(parse_entry(line))
        except ValueError as exc:
            raise Invalid(f"{_where(number, line, entries, anchor)} {exc}") from None
    try:
        check_links(anchor, entries)
    except ChainBroken as exc:
        raise Invalid(str(exc)) from None

    if not heads:
        raise Invalid("the file holds no signed head: nothing vouches for its entries")
    by_seq = {entry.seq: entry for entry in entries}
    try:
        public_key = load_public_key(public)
    except ValueError:
        raise Invalid("the public key in the header (line 1) is not an Ed25519 key") from None
    for signed in heads:
        what = f"the signed head of seq {signed.seq}"
        if signed.chain != room:
            raise Invalid(f"{what} is for room {signed.chain!r}, not this file's {room!r}")
        if signed.key != key_hash:
            raise Invalid(f"{what} names another key than the file's")
        if signed.head == anchor and not entries:
            pass
        elif signed.seq not in by_seq:
            raise Invalid(
                f"{what} names an entry this file does not hold: entries were removed from"
                " the end, or that head was altered"
            )
        elif by_seq[signed.seq].hash != signed.hash:
            raise Invalid(
                f"{what} does not match {by_seq[signed.seq].named()}: that entry was altered"
            )
        if not head_signature_valid(public_key, signed):
            raise Invalid(f"{what} ({signed.at}) carries a signature the file's key did not make")
    last = entries[-1].head if entries else anchor
    if heads[-1].head != last:
        tail = f"the last entry, {entries[-1].named()}" if entries else "the anchor"
        raise Invalid(
            f"the last signed head is not over {tail}: entries were added after the signature,"
            " or the last entry was altered"
        )

    stated = header["summary"]
    computed = summary(entries)
    if stated != computed:
        raise Invalid(
            "the summary in the header (line 1) does not match the entries: it says"
            f" {json.dumps(stated)[:300]}, the entries give {json.dumps(computed)[:300]}"
        )

    _check_signature(lines, data, public_key)
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
        signed_heads=len(heads),
        exported=str(header["exported"]),
    )


def _header(header: dict[str, object]) -> tuple[str, Head, str, str]:
    """The header's room, anchor, public key and its fingerprint, each checked."""
    if header.get("format") != FORMAT or set(header) != HEADER_KEYS:
        raise Invalid("the header (line 1) is not a Meetgate evidence export's")
    if header["version"] != VERSION:
        raise Invalid(f"the export is of version {header['version']!r}; this check reads 1")
    room, anchor, public, key_hash = (header[k] for k in ("room", "anchor", "public_key", "key"))
    if not isinstance(room, str) or CHAIN_NAME.fullmatch(room) is None:
        raise Invalid("the header (line 1) names no room")
    if not (
        isinstance(anchor, dict)
        and set(anchor) == {"hash", "seq"}
        and type(anchor["seq"]) is int
        and anchor["seq"] >= 0
        and isinstance(anchor["hash"], str)
        and HASH.fullmatch(anchor["hash"])
    ):
        raise Invalid("the header's anchor (line 1) is not a seq and a SHA-256")
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


def _where(number: int, line: bytes, entries: list[SealedEntry], anchor: Head) -> str:
    """Line `number` as a message names it: the entry it holds, if that much can be read, and
    the entry that should be there."""
    expected = (entries[-1].seq if entries else anchor.seq) + 1
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


def _shown(value: object) -> str:
    """A value read from a file that failed its check, as a message may quote it: short, and
    nothing a terminal would act on."""
    return "".join(c if c.isprintable() else "?" for c in str(value)[:40])


def _check_signature(lines: list[bytes], data: bytes, public_key: ed25519.Ed25519PublicKey) -> None:
    try:
        last = load_object(lines[-1])
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
    body = data[: len(data) - len(lines[-1]) - 1]
    if digest(body) != file_hash:
        raise Invalid(
            "the file's checksum (last line) does not match what comes before it: the header,"
            " its summary or a signed head was altered"
        )
    if not signature_valid(public_key, signature, EXPORT_CONTEXT + bytes.fromhex(file_hash)):
        raise Invalid("the file's signature (last line) was not made by the file's key")
