"""The meeting settings' one set of rules (gateway/admission/meeting.py), as the admin API and the
hosts' dashboard form both apply them, and the room's log entries a change of them leaves: each
refusal named by its setting with a phrase marked for translation, and the log's values (counts,
domains, a series, times) read back by both stores' parser and put into words on the dashboard.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from gateway.admission.meeting import (
    MeetingChange,
    MeetingRefused,
    meeting_audit,
    meeting_changed,
    parse_moment,
)
from gateway.errors import InvalidValues
from gateway.host.dashboard import AUDIT_ACTIONS, audit_detail
from gateway.host.meeting_form import meeting_from_form
from gateway.i18n import DEFAULT
from gateway.store.records import (
    AuditEntry,
    AuditFacts,
    AuditKind,
    CorruptRecord,
    Room,
    RoomPolicy,
    encode_audit,
    parse_audit,
)

NOW = datetime(2026, 12, 1, tzinfo=UTC).timestamp()
STARTS = datetime(2026, 12, 20, 6, 0, tzinfo=UTC).timestamp()
ROOM = Room(name="rally", title="Rally", created_at=NOW)


def refused(change: MeetingChange, room: Room = ROOM, *, mail: bool = True) -> list[str]:
    with pytest.raises(MeetingRefused) as caught:
        meeting_changed(change, room, now=NOW, mail_configured=mail)
    return [f"{p.setting}: {p.problem.shown()}" for p in caught.value.problems]


REFUSALS = {
    "domain-with-space": (MeetingChange(auto_approve_domains=["ok.example", "a b"]), "entry 2"),
    "domain-without-dot": (MeetingChange(auto_approve_domains=["localhost"]), "entry 1"),
    "domain-with-at": (MeetingChange(auto_approve_domains=["a@b.example"]), "auto_approve_domains"),
    "domain-control": (MeetingChange(auto_approve_domains=["u\x07.example"]), "entry 1"),
    "domain-too-long": (MeetingChange(auto_approve_domains=["a" * 250 + ".org"]), "entry 1"),
    "address-not-plain": (
        MeetingChange(auto_approve_emails=["Ada <ada@uni.example>"]),
        "auto_approve_emails: entry 1 is not a plain e-mail address",
    ),
    "series-shape": (MeetingChange(series="Conf 2026"), "series: is named as a room is"),
    "no-offset": (MeetingChange(starts_at="2026-12-20T14:00"), "starts_at: has no offset"),
    "not-a-time": (MeetingChange(starts_at="next tuesday"), "starts_at: is not a time"),
    "year-2999": (MeetingChange(starts_at="2999-01-01T00:00Z"), "between the years 2000 and 2100"),
    "year-1999-number": (MeetingChange(starts_at=900_000_000.0), "between the years"),
    "nan": (MeetingChange(starts_at=float("nan")), "between the years"),
    "end-before-start": (
        MeetingChange(starts_at=STARTS, ends_at=STARTS - 60),
        "ends_at: is not after the meeting's start",
    ),
    "end-as-start": (MeetingChange(starts_at=STARTS, ends_at=STARTS), "is not after"),
    "over-a-week": (
        MeetingChange(starts_at=STARTS, ends_at=STARTS + 7 * 86_400 + 60),
        "ends_at: is more than 7 days after",
    ),
    "end-past": (MeetingChange(ends_at=NOW - 60), "ends_at: is past"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_each_rule_refuses_its_setting(case: str) -> None:
    change, said = REFUSALS[case]
    [problem] = refused(change)
    assert said in problem


def test_registration_needs_a_mail_server_and_invites() -> None:
    assert refused(MeetingChange(registration=True), mail=False) == [
        "registration: needs an SMTP server, and this Meetgate has none configured (codes and"
        " invitations are sent by e-mail): an admin must set [smtp] host (MEETGATE_SMTP__HOST)"
        " first"
    ]
    no_invites = Room(name="r", title="R", created_at=NOW, policy=RoomPolicy(invite=False))
    [problem] = refused(MeetingChange(registration=True), no_invites)
    assert problem.startswith("registration: needs personal invites")
    # Turning it off needs neither.
    off = meeting_changed(
        MeetingChange(registration=False), no_invites, now=NOW, mail_configured=False
    )
    assert off.registration is False


def test_every_problem_at_once_and_nothing_echoed() -> None:
    problems = refused(
        MeetingChange(
            auto_approve_domains=["secret phrase"], series="Bad!", starts_at="soon", ends_at="x"
        )
    )
    assert [p.split(":")[0] for p in problems] == [
        "auto_approve_domains",
        "series",
        "starts_at",
        "ends_at",
    ]
    assert "secret phrase" not in json.dumps(problems)


def test_the_end_is_checked_against_the_start_already_set() -> None:
    room = meeting_changed(MeetingChange(starts_at=STARTS), ROOM, now=NOW, mail_configured=True)
    assert refused(MeetingChange(ends_at=STARTS - 1), room) == [
        "ends_at: is not after the meeting's start"
    ]
    # The same past end given again is no new end: kept, not refused.
    past = Room(name="r", title="R", created_at=NOW, ends_at=NOW - 60)
    again = meeting_changed(MeetingChange(ends_at=NOW - 60), past, now=NOW, mail_configured=True)
    assert again.ends_at == NOW - 60


def test_values_kept_as_normalised_and_cleared() -> None:
    room = meeting_changed(
        MeetingChange(
            registration=True,
            auto_approve_domains=[" @Uni.Example ", "", "uni.example", "lab.example"],
            auto_approve_emails=["Ada@Uni.Example", "ada@uni.example"],
            series=" conf-2026 ",
            starts_at="2026-12-20T14:00+08:00",
            ends_at=str(int(STARTS + 3600)),
        ),
        ROOM,
        now=NOW,
        mail_configured=True,
    )
    assert room.auto_approve_domains == ("uni.example", "lab.example")
    assert room.auto_approve_emails == ("ada@uni.example",)
    assert room.series == "conf-2026"
    assert (room.starts_at, room.ends_at) == (STARTS, STARTS + 3600)
    cleared = meeting_changed(
        MeetingChange(series="", starts_at="", ends_at=""), room, now=NOW, mail_configured=True
    )
    assert (cleared.series, cleared.starts_at, cleared.ends_at) == ("", None, None)
    assert parse_moment("") is None and parse_moment(STARTS) == STARTS


def test_the_dashboard_form_applies_the_same_rules_in_the_hosts_language() -> None:
    with pytest.raises(InvalidValues) as caught:
        meeting_from_form(
            {"starts_at": "2026-12-20T14:00", "ends_at": "2026-12-20T13:00"},
            ROOM,
            registration_available=True,
            now=NOW,
        )
    assert caught.value.shown() == "Ends (UTC): is not after the meeting's start."
    with pytest.raises(InvalidValues) as caught:
        meeting_from_form(
            {"registration": "1", "starts_at": "tomorrow", "auto_approve_domains": "a@b"},
            ROOM,
            registration_available=False,
            now=NOW,
        )
    shown = caught.value.shown()
    assert shown.startswith("Registration: needs an SMTP server")
    assert "E-mail domains approved at once: entry 1 is not a domain" in shown
    assert "Starts (UTC): write it as 2026-12-20T14:00 (UTC), or leave it empty." in shown
    # Each part is looked up in the host's language on its own: the label, the problem, and
    # the sentence that joins them.
    looked_up = caught.value.shown(lambda text: f"<{text}>")
    assert looked_up.startswith("<<Registration>: <needs an SMTP server")


# The room's log


def test_a_change_is_logged_with_values_never_an_address() -> None:
    was = ROOM
    now = meeting_changed(
        MeetingChange(
            registration=True,
            auto_approve_domains=["uni.example"],
            auto_approve_emails=["chair@board.example", "vice@board.example"],
            series="conf-2026",
            starts_at=STARTS,
        ),
        was,
        now=NOW,
        mail_configured=True,
    )
    entries = meeting_audit(was, now)
    assert entries == [
        ("registration on", None),
        (
            "change auto-approval",
            AuditFacts(AuditKind.AUTO_APPROVAL, domains=("uni.example",), count=2),
        ),
        ("change series", AuditFacts(AuditKind.SERIES, series="conf-2026")),
        ("change meeting time", AuditFacts(AuditKind.MEETING_TIME, starts=STARTS, ends=None)),
    ]
    assert meeting_audit(now, now) == []
    for action, facts in entries:
        entry = AuditEntry(NOW, "rally", "", "admin", action, facts=facts)
        stored = encode_audit(entry)
        assert "board.example" not in stored
        assert parse_audit(stored) == entry
        assert action in AUDIT_ACTIONS


NEW_FACTS = {
    "registrations": AuditFacts(AuditKind.REGISTRATIONS, count=3, refused=1),
    "invitations": AuditFacts(AuditKind.INVITATIONS, count=120, refused=0),
    "auto-approval": AuditFacts(AuditKind.AUTO_APPROVAL, domains=(), count=1),
    "series-none": AuditFacts(AuditKind.SERIES, series=""),
    "time-both": AuditFacts(AuditKind.MEETING_TIME, starts=STARTS, ends=STARTS + 3600),
    "time-none": AuditFacts(AuditKind.MEETING_TIME, starts=None, ends=None),
}
SAID = {
    "registrations": "3 registrations, 1 not answered",
    "invitations": "120 invitations",
    "auto-approval": "no domain; 1 address",
    "series-none": "no series",
    "time-both": "from Dec 20, 2026, 6:00\u202fAM to Dec 20, 2026, 7:00\u202fAM UTC",
    "time-none": "from not set to not set UTC",
}


@pytest.mark.parametrize("case", sorted(NEW_FACTS))
def test_each_new_kind_is_stored_read_back_and_put_into_words(case: str) -> None:
    entry = AuditEntry(NOW, "rally", "", "admin", "x", facts=NEW_FACTS[case])
    assert parse_audit(encode_audit(entry)) == entry
    assert audit_detail(entry, DEFAULT) == SAID[case]


def test_invitations_refused_lines_and_old_entries() -> None:
    facts = AuditFacts(AuditKind.INVITATIONS, count=1, refused=2)
    entry = AuditEntry(NOW, "rally", "", "admin", "send invites", facts=facts)
    assert audit_detail(entry, DEFAULT) == "1 invitation, 2 lines refused"
    # Written before these kinds: the English text as it was, the action still translated.
    old = AuditEntry(
        NOW, "rally", "", "admin", "change auto-approval", detail="uni.example; 0 addresses"
    )
    assert audit_detail(old, DEFAULT) == "uni.example; 0 addresses"
    assert "change meeting" in AUDIT_ACTIONS


@pytest.mark.parametrize(
    "facts",
    [
        {"kind": "registrations", "count": 3},
        {"kind": "invitations", "count": 3, "refused": -1},
        {"kind": "auto-approval", "domains": "uni.example", "count": 0},
        {"kind": "series", "series": 7},
        {"kind": "meeting time", "starts": "soon", "ends": None},
        {"kind": "meeting time", "starts": None},
        {"kind": "invitations", "count": 3, "refused": 0, "name": "Ada"},
    ],
    ids=[
        "missing-refused",
        "negative",
        "domains-not-list",
        "series-number",
        "time-text",
        "no-end",
        "a-name",
    ],
)
def test_stored_facts_of_the_new_kinds_that_do_not_parse(facts: dict[str, object]) -> None:
    stored = json.dumps(
        {"at": NOW, "room": "r", "actor": "", "actor_name": "admin", "action": "x", "facts": facts}
    )
    with pytest.raises(CorruptRecord):
        parse_audit(stored)


def test_facts_hold_exactly_their_kinds_values() -> None:
    for wrong in (
        lambda: AuditFacts(AuditKind.INVITATIONS, count=1, name="Ada"),
        lambda: AuditFacts(AuditKind.SERIES, series="x", count=1),
        lambda: AuditFacts(AuditKind.REMOVED, count=1, refused=1),
        lambda: AuditFacts(AuditKind.NAME, name="Ada", domains=("x.example",)),
    ):
        with pytest.raises(ValueError):
            wrong()
