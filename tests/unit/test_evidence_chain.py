"""The evidence chain and its export (issue 17): any single edit, deletion, insertion or
reordering of entries is detected; a valid export, whole or sliced, always verifies; flipping
any one byte of an export fails its check with a message naming the entry it fell in."""

from __future__ import annotations

import json
import re

from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.evidence.entries import (
    ChainBroken,
    Head,
    Kind,
    Record,
    SealedEntry,
    canonical,
    check_links,
    digest,
    genesis,
    moment,
    seal,
)
from gateway.evidence.export import Slice, build_export, verify_export
from gateway.evidence.pseudonyms import Pseudonyms
from gateway.evidence.signing import EXPORT_CONTEXT, fingerprint, public_hex, sign_head

KEY = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER_KEY = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
PSEUDONYMS = Pseudonyms(b"evidence tests' pseudonym key, 32+ bytes")
ROOM = "board"
START = 1_796_000_000.0
NOW = moment(START + 86_400)

names = st.text(
    st.characters(categories=("L", "N", "P", "Zs", "S")), min_size=1, max_size=30
).filter(str.isprintable)
people = st.integers(0, 6).map(lambda n: PSEUDONYMS.admission(ROOM, f"admission {n}"))
hosts = st.integers(0, 2).map(lambda n: PSEUDONYMS.host(ROOM, f"host {n}"))
networks = st.integers(0, 4).map(lambda n: PSEUDONYMS.network(ROOM, f"network {n}"))


def _with_name(fields: dict[str, object], name: str | None) -> dict[str, object]:
    return fields if name is None else {**fields, "name": name}


records = st.one_of(
    st.builds(
        lambda actor, target, name: Record(
            Kind.REMOVAL, _with_name({"actor": actor, "target": target}, name)
        ),
        hosts,
        people,
        st.none() | names,
    ),
    st.builds(
        lambda network, minute, count: Record(
            Kind.FLOOD_REFUSED,
            {"network": network, "minute": moment(START + 60 * minute)[:16] + "Z", "count": count},
        ),
        networks,
        st.integers(0, 100),
        st.integers(1, 10**6),
    ),
    st.builds(
        lambda actor, target, until: Record(
            Kind.BAN, {"actor": actor, "target": target, "until": until}
        ),
        hosts,
        people,
        st.none() | st.integers(0, 10**6).map(lambda s: moment(START + s)),
    ),
    st.builds(
        lambda actor, n: Record(Kind.LOCKDOWN, {"actor": actor, "removed": n}),
        hosts,
        st.integers(0, 500),
    ),
    st.builds(lambda actor: Record(Kind.QUIET_ON, {"actor": actor}), hosts),
    st.builds(
        lambda target, rule: Record(Kind.GUARD_REMOVAL, {"target": target, "rule": rule}),
        people,
        st.sampled_from(["rate", "size", "quiet", "address"]),
    ),
    st.builds(
        lambda actor, per: Record(
            Kind.CHAT_LIMITS,
            {
                "actor": actor,
                "limits": {"per_10s": per, "burst": None, "max_bytes": 512, "strikes": 3},
            },
        ),
        hosts,
        st.none() | st.integers(1, 100),
    ),
)


def chained(items: list[Record], room: str = ROOM) -> list[SealedEntry]:
    """The records sealed one after the other from the chain's start, a second apart."""
    entries: list[SealedEntry] = []
    head = genesis(room)
    for index, record in enumerate(items):
        entry = seal(head, record, moment(START + index))
        entries.append(entry)
        head = entry.head
    return entries


def export_of(entries: list[SealedEntry], first: int = 0, every: int = 0) -> bytes:
    """The export of entries[first:], with a head signed every `every` entries among them."""
    part = entries[first:]
    anchor = entries[first - 1].head if first else genesis(ROOM)
    signed = tuple(
        sign_head(KEY, ROOM, e.head, moment(START + e.seq))
        for e in part
        if every and e.seq % every == 0
    )
    return build_export(Slice(ROOM, anchor, tuple(part), signed), KEY, NOW)


def detected(anchor: Head, signed: Head, entries: list[SealedEntry]) -> bool:
    """Whether a chain check finds `entries` not to be the chain signed at `signed`."""
    try:
        check_links(anchor, entries)
    except ChainBroken:
        return True
    return (entries[-1].head if entries else anchor) != signed


def replace_entries(data: bytes, entries: list[SealedEntry]) -> bytes:
    """`data`, an export, with its entry lines replaced by `entries`' (all else kept)."""
    lines = data.split(b"\n")
    count = sum(1 for line in lines if line.startswith(b'{"at":'))
    return b"\n".join([lines[0], *(e.line for e in entries), *lines[1 + count :]])


@given(st.lists(records, max_size=12), st.integers(0, 4))
@settings(max_examples=60, deadline=None)
def test_a_valid_export_always_verifies(items: list[Record], every: int) -> None:
    entries = chained(items)
    verdict = verify_export(export_of(entries, every=every))
    assert verdict.valid, verdict.problem
    assert verdict.summary["entries"] == len(entries)
    assert verdict.key == fingerprint(public_hex(KEY))
    assert verdict.room == ROOM


@given(st.lists(records, min_size=1, max_size=12), st.data())
@settings(max_examples=60, deadline=None)
def test_a_slice_verifies_from_its_anchor(items: list[Record], data: st.DataObject) -> None:
    entries = chained(items)
    first = data.draw(st.integers(0, len(entries)))
    last = data.draw(st.integers(first, len(entries)))
    part = entries[first:last]
    anchor = entries[first - 1].head if first else genesis(ROOM)
    exported = build_export(Slice(ROOM, anchor, tuple(part)), KEY, NOW)
    verdict = verify_export(exported)
    assert verdict.valid, verdict.problem
    assert verdict.anchor == anchor
    assert verdict.summary["entries"] == len(part)


@given(st.lists(records, min_size=1, max_size=10), st.data())
@settings(max_examples=200, deadline=None)
def test_any_single_edit_deletion_insertion_or_reordering_is_detected(
    items: list[Record], data: st.DataObject
) -> None:
    entries = chained(items)
    anchor, signed = genesis(ROOM), entries[-1].head
    change = data.draw(st.sampled_from(["edit", "retime", "delete", "insert", "reorder"]))
    at = data.draw(st.integers(0, len(entries) - 1))
    changed = list(entries)
    if change == "edit":
        other = data.draw(records.filter(lambda r: r != items[at]))
        before = entries[at - 1].head if at else anchor
        changed[at] = seal(before, other, entries[at].at)
    elif change == "retime":
        before = entries[at - 1].head if at else anchor
        changed[at] = seal(before, items[at], moment(START - 1 - at))
    elif change == "delete":
        del changed[at]
    elif change == "insert":
        where = data.draw(st.integers(0, len(entries)))
        before = entries[where - 1].head if where else anchor
        changed.insert(where, seal(before, data.draw(records), moment(START + where)))
    else:
        other = data.draw(st.integers(0, len(entries) - 1).filter(lambda i: i != at))
        if entries[at].line == entries[other].line:
            return
        changed[at], changed[other] = changed[other], changed[at]

    assert detected(anchor, signed, changed)
    exported = export_of(entries)
    verdict = verify_export(replace_entries(exported, changed))
    assert not verdict.valid
    assert verdict.problem is not None and "seq" in verdict.problem


def test_an_untouched_chain_is_not_reported() -> None:
    # The detection above means something only if the untouched chain passes the same check.
    entries = chained([Record(Kind.QUIET_ON, {"actor": PSEUDONYMS.host(ROOM, "h")})] * 3)
    assert not detected(genesis(ROOM), entries[-1].head, entries)
    exported = export_of(entries)
    assert replace_entries(exported, entries) == exported


def small_export() -> tuple[bytes, list[SealedEntry]]:
    host, person = PSEUDONYMS.host(ROOM, "h"), PSEUDONYMS.admission(ROOM, "a")
    network = PSEUDONYMS.network(ROOM, "n")
    entries = chained(
        [
            Record(
                Kind.FLOOD_REFUSED,
                {"network": network, "minute": "2026-12-05T14:03Z", "count": 412},
            ),
            Record(Kind.REMOVAL, {"actor": host, "target": person, "name": "Grâce Hopper"}),
            Record(Kind.BAN, {"actor": host, "target": person, "until": None}),
            Record(Kind.LOCKDOWN, {"actor": host, "removed": 7}),
        ]
    )
    return export_of(entries, every=2), entries


def test_flipping_any_one_byte_fails_with_a_message_naming_the_entry() -> None:
    data, entries = small_export()
    assert verify_export(data).valid
    # Where each entry's line lies in the file.
    spans = {}
    offset = data.index(b"\n") + 1
    for entry in entries:
        spans[entry.seq] = range(offset, offset + len(entry.line) + 1)
        offset += len(entry.line) + 1
    for position in range(len(data)):
        for bit in (0x01, 0x20, 0x80):
            flipped = bytearray(data)
            flipped[position] ^= bit
            verdict = verify_export(bytes(flipped))
            assert not verdict.valid, (position, bit)
            problem = verdict.problem or ""
            assert problem and "\n" not in problem
            for seq, span in spans.items():
                if position in span:
                    assert re.search(rf"seq {seq}\b", problem), (position, bit, problem)


def test_a_whitespace_or_format_change_anywhere_fails() -> None:
    data, _ = small_export()
    lines = data.split(b"\n")
    for number in range(len(lines) - 1):
        for change in (b" ", b"\r"):
            spaced = b"\n".join([*lines[:number], lines[number] + change, *lines[number + 1 :]])
            assert not verify_export(spaced).valid, number
        # Keys in another order: the same JSON, not the same bytes.
        if lines[number].startswith(b'{"at":'):
            reordered = lines[number].replace(b'{"at":', b'{"at" :', 1)
            assert not verify_export(data.replace(lines[number], reordered)).valid
    assert not verify_export(data + b"\n").valid
    assert not verify_export(data[:-1]).valid
    assert not verify_export(data.replace("Grâce".encode(), b"Gr\\u00e2ce")).valid


def test_a_file_signed_by_another_key_is_told_apart_by_its_fingerprint() -> None:
    entries = chained([Record(Kind.QUIET_ON, {"actor": PSEUDONYMS.host(ROOM, "h")})])
    forged = build_export(Slice(ROOM, genesis(ROOM), tuple(entries)), OTHER_KEY, NOW)
    # Internally consistent: only the expected key tells it apart.
    assert verify_export(forged).valid
    verdict = verify_export(forged, expected_key=fingerprint(public_hex(KEY)))
    assert not verdict.valid and "another key" in (verdict.problem or "")
    assert verify_export(export_of(entries), expected_key=fingerprint(public_hex(KEY))).valid


def test_a_head_signed_by_another_key_fails() -> None:
    data, entries = small_export()
    lines = data.split(b"\n")
    stranger = sign_head(OTHER_KEY, ROOM, entries[1].head, NOW)
    # A head that claims the file's key but whose signature another key made.
    from gateway.evidence.signing import SignedHead

    claimed = SignedHead(
        ROOM,
        stranger.seq,
        stranger.hash,
        stranger.at,
        fingerprint(public_hex(KEY)),
        stranger.signature,
    )
    index = next(i for i, line in enumerate(lines) if line.startswith(b'{"head":'))
    lines[index] = canonical(claimed.record())
    verdict = verify_export(b"\n".join(lines))
    assert not verdict.valid and "signature" in (verdict.problem or "")


# Hostile numbers too: a seq of thousands of digits (the limit of int's text), or past 2**53.
damage = st.binary(max_size=64) | st.sampled_from(
    [b"9" * 4300, b'"seq":' + b"9" * 4300 + b"}", b'"seq":9007199254740993}', b"\n" * 5000]
)


@given(damage, st.integers(0, 2000), st.integers(0, 60))
@settings(max_examples=300, deadline=None)
def test_any_damage_is_a_verdict_never_an_exception(junk: bytes, at: int, cut: int) -> None:
    data, _ = small_export()
    at %= len(data)
    for damaged in (data[:at] + junk + data[at:], data[:at] + junk + data[at + cut :], junk):
        verdict = verify_export(damaged)
        if damaged != data:
            assert not verdict.valid
            assert verdict.problem and "\n" not in verdict.problem


def resigned(data: bytes, header: dict[str, object]) -> bytes:
    """`data` with its header replaced by `header`, the file's checksum and signature made
    again with the file's own key: what only the key's holder (or a bug) could write."""
    lines = data.split(b"\n")
    body = b"\n".join([canonical(header), *lines[1:-2]]) + b"\n"
    file_hash = digest(body)
    signature = KEY.sign(EXPORT_CONTEXT + bytes.fromhex(file_hash)).hex()
    return body + canonical({"sha256": file_hash, "signature": signature}) + b"\n"


def test_loose_values_in_a_header_signed_by_the_key_are_refused() -> None:
    """An anchor at seq 0 is the room's own start; the version and the summary are compared as
    written (true is not 1), seqs are bounded (issue 17 review)."""
    data, _ = small_export()
    header = json.loads(data.split(b"\n")[0])
    assert verify_export(resigned(data, header)).valid
    summary = dict(header["summary"])
    loose = {
        "the start of another room": {"anchor": {"seq": 0, "hash": genesis("other").hash}},
        "version true": {"version": True},
        "a count of true": {"summary": {**summary, "kinds": {**summary["kinds"], "ban": True}}},
        "a seq of 4,300 digits": {"anchor": {"seq": int("9" * 4300), "hash": "0" * 64}},
        "a seq past 2**53": {"anchor": {"seq": 2**53 + 1, "hash": "0" * 64}},
    }
    for case, change in loose.items():
        verdict = verify_export(resigned(data, {**header, **change}))
        assert not verdict.valid, case


@given(st.sampled_from([2**53 + 1, 10**20, int("9" * 4300), -1]), st.sampled_from(range(4)))
@settings(max_examples=30, deadline=None)
def test_a_seq_out_of_bounds_anywhere_is_a_verdict(seq: int, where: int) -> None:
    data, _ = small_export()
    lines = data.split(b"\n")
    header = json.loads(lines[0])
    if where == 0:
        damaged = resigned(data, {**header, "anchor": {"seq": seq, "hash": "0" * 64}})
    elif where == 1:
        damaged = data.replace(b'"seq":1}', b'"seq":%d}' % seq, 1)
    elif where == 2:
        damaged = data.replace(b'"seq":2},', b'"seq":%d},' % seq, 1)
    else:
        damaged = resigned(data, {**header, "version": seq})
    assert damaged != data
    verdict = verify_export(damaged)
    assert not verdict.valid and verdict.problem and "\n" not in verdict.problem
    assert len(verdict.problem) < 1000


def test_an_anchor_at_seq_0_is_the_rooms_own_start() -> None:
    """A chain's entries exported under another room's name, or after a made-up start, do not
    pass for that room's whole chain (issue 17 review)."""
    entries = chained([Record(Kind.LOCK, {"actor": PSEUDONYMS.host(ROOM, "h")})])
    relabelled = build_export(Slice("quiz", genesis(ROOM), tuple(entries)), KEY, NOW)
    assert not verify_export(relabelled).valid
    made_up = Head(0, "ab" * 32)
    other = seal(made_up, Record(Kind.LOCK, {"actor": PSEUDONYMS.host(ROOM, "h")}), NOW)
    assert not verify_export(build_export(Slice(ROOM, made_up, (other,)), KEY, NOW)).valid
    assert verify_export(build_export(Slice(ROOM, genesis(ROOM), tuple(entries)), KEY, NOW)).valid
