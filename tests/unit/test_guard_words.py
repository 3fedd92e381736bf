"""What people read of the wire guard: its refusals in the room's language, and the host
dashboard's log saying why it removed someone (issue 16)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from gateway.host.dashboard import AUDIT_ACTIONS
from gateway.i18n import LANGUAGES, gettext
from gateway.proxy.guarded import GUARD_ACTION, GUARD_REMOVAL
from gateway.proxy.room_rules import chat_rules
from gateway.proxy.wire_guard import (
    QUIET,
    TOO_FAST,
    TOO_LONG,
    Addresses,
    Budget,
    Refuse,
    Speaker,
    WireBudgets,
    WireGuard,
)
from gateway.settings import GuardSettings
from gateway.store.records import Room

DOMAIN = "meet.test"
MUC = f"conference.{DOMAIN}"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
PLENTY = Budget(rate=1000.0, burst=1000)
# Every reason a guard's refusal gives (Refuse.reason): each may be the rule a removal names.
RULES = ("rate", "size", "quiet", "address")


def room(language: str, *, quiet: bool = False, chat_max_bytes: int = 0) -> Room:
    return Room(
        name="room",
        title="Room",
        created_at=0.0,
        language=language,
        quiet=quiet,
        chat_max_bytes=chat_max_bytes,
    )


def refusal_text(rules_room: Room, body: str = "hello") -> str | None:
    rules = chat_rules(rules_room, GuardSettings())
    guard = WireGuard(
        Speaker(admission_id="adm-1", room="room", name="Ada", host=False),
        Addresses(DOMAIN, frozenset({MUC}), frozenset(), frozenset(), frozenset()),
        WireBudgets(presence=PLENTY, iq=PLENTY, signal=PLENTY),
        lambda: rules,
        frozenset,
    )
    verdict = guard.inspect(
        f"<message to='room@{MUC}' type='groupchat' id='m1' xmlns='jabber:client'>"
        f"<body>{body}</body></message>",
        0.0,
    )
    assert isinstance(verdict, Refuse) and verdict.reply is not None
    text = ET.fromstring(verdict.reply).find(f"{{jabber:client}}error/{{{STANZAS}}}text")  # noqa: S314 - the guard's own output
    return None if text is None else text.text


def test_a_quiet_rooms_refusal_is_in_the_rooms_language() -> None:
    assert refusal_text(room("zh-Hans", quiet=True)) == "这个会议现在只有主持人可以聊天。"
    assert refusal_text(room("zh-Hant", quiet=True)) == "這場會議現在只有主持人可以聊天。"


def test_a_room_without_a_language_refuses_in_english() -> None:
    assert refusal_text(room("", quiet=True)) == QUIET
    assert refusal_text(room("", chat_max_bytes=4), body="too long") == TOO_LONG
    # An unknown room has the gate's rules, in English.
    assert chat_rules(None, GuardSettings()).too_fast == TOO_FAST


def test_every_reply_is_translated_for_each_language() -> None:
    for language in LANGUAGES:
        rules = chat_rules(room(language.tag), GuardSettings())
        assert (rules.too_fast, rules.too_long, rules.quiet_text) == tuple(
            gettext(language, text) for text in (TOO_FAST, TOO_LONG, QUIET)
        )
        if language.tag != "en":
            assert rules.too_fast != TOO_FAST and rules.too_long != TOO_LONG
            assert rules.quiet_text != QUIET


@pytest.mark.parametrize("rule", RULES)
def test_the_log_names_each_rule_a_removal_can_be_for(rule: str) -> None:
    action = GUARD_ACTION.format(rule=rule)
    assert AUDIT_ACTIONS[action].startswith("removed automatically for ")


def test_an_entry_written_before_the_log_named_the_rule_stays_readable() -> None:
    assert AUDIT_ACTIONS[GUARD_REMOVAL] == "removed automatically"
