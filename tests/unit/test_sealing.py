"""Sealing (gateway/admission/sealing.py): a sealed part opens only under its purpose's key and
for the record it was sealed to; the outbox's items, sealed through it now, open as before (an
item queued by an earlier gate still goes)."""

from __future__ import annotations

import base64
import json
import secrets

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway.admission import outbox, registrations
from gateway.admission.sealing import Sealer

KEY = b"p" * 32
DETAILS = {"name": "Zoë 李", "note": "", "address": "zoe@example.org"}


def test_a_sealed_part_opens_for_its_record_only() -> None:
    sealer = Sealer(KEY, registrations.SEAL_PURPOSE)
    sealed = sealer.seal("registration:record:a", DETAILS)
    assert "zoe" not in sealed and sealer.seal("registration:record:a", DETAILS) != sealed
    assert sealer.open("registration:record:a", sealed) == DETAILS
    assert sealer.open("registration:record:b", sealed) is None
    assert sealer.open("registration:pending:a", sealed) is None
    other_key = Sealer(b"q" * 32, registrations.SEAL_PURPOSE)
    assert other_key.open("registration:record:a", sealed) is None


def test_registrations_and_outbox_items_are_sealed_under_keys_apart() -> None:
    assert registrations.SEAL_PURPOSE != outbox.SEAL_PURPOSE
    item = outbox.Sealer(KEY).seal("item-1", "zoe@example.org", "token")
    assert Sealer(KEY, registrations.SEAL_PURPOSE).open("item-1", item) is None
    registration = Sealer(KEY, registrations.SEAL_PURPOSE).seal("item-1", ["a@b.example", "t"])
    assert outbox.Sealer(KEY).open("item-1", registration) is None


def test_an_item_sealed_by_an_earlier_gate_still_opens() -> None:
    """Catches a change of the outbox's key, layout or plaintext: an item it queued before,
    sealed as it was then (written out here), must still be sent."""
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"meetgate outbox seal"
    ).derive(KEY)
    nonce = secrets.token_bytes(12)
    plain = json.dumps(["zoe@example.org", "the-token"]).encode()
    old = base64.urlsafe_b64encode(nonce + AESGCM(derived).encrypt(nonce, plain, b"item-7")).decode(
        "ascii"
    )
    assert outbox.Sealer(KEY).open("item-7", old) == ("zoe@example.org", "the-token")
    assert outbox.Sealer(KEY).open("item-8", old) is None


@pytest.mark.parametrize(
    "sealed",
    ["", "AAAA", "not base64!", "é", base64.urlsafe_b64encode(b"\0" * 40).decode()],
    ids=["empty", "too-short", "not-base64", "not-ascii", "forged"],
)
def test_what_is_no_sealed_part_opens_as_nothing(sealed: str) -> None:
    assert Sealer(KEY, registrations.SEAL_PURPOSE).open("registration:record:a", sealed) is None
    assert outbox.Sealer(KEY).open("registration:record:a", sealed) is None


@pytest.mark.parametrize(
    "value", [["only one"], ["a", 2], {"a": "b"}, "text"], ids=["one", "number", "object", "text"]
)
def test_an_item_sealed_with_other_than_an_address_and_a_token_opens_as_nothing(
    value: object,
) -> None:
    sealed = Sealer(KEY, outbox.SEAL_PURPOSE).seal("item-1", value)
    assert outbox.Sealer(KEY).open("item-1", sealed) is None
