"""The registration pages' pure parts (gateway/web/registration.py) and their place at the edge:
which of their requests the gate counts as join attempts and names a room in, where the language
switcher leads after their forms, the meeting's time as a page says it, and the cookie's shape."""

from __future__ import annotations

import time
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.admission.invitations import Invitation
from gateway.admission.registrations import Confirmed, Registration, RegistrationState
from gateway.edge import requests
from gateway.edge.languages import switch_target
from gateway.i18n import ENGLISH, SIMPLIFIED, TRADITIONAL
from gateway.proxy import gate
from gateway.store.records import Role, Room
from gateway.web import registration
from gateway.web.forms import MAX_FORM_BYTES
from gateway.web.registration import Held, meeting_time, outcome_of

# Saturday 12 December 2026, 14:00 UTC.
STARTS = 1797084000.0


def test_the_prefix_has_one_definition() -> None:
    assert registration.REGISTER_PREFIX is requests.REGISTER_PREFIX


@pytest.mark.parametrize(
    ("method", "path", "attempt"),
    [
        # A look at a form, its code page or its thanks is charged like a gate page's (each
        # tells a room that takes registrations from one that does not); sending the form or
        # its code is an attempt.
        ("GET", "/_meetgate/register/agora", True),
        ("POST", "/_meetgate/register/agora/send", True),
        ("POST", "/_meetgate/register/agora/confirm", True),
        ("GET", "/_meetgate/register/agora/code", True),
        ("GET", "/_meetgate/register/agora/done", True),
        ("GET", "/_meetgate/register/agora/code/x", False),
        ("GET", "/_meetgate/register/agora/send", False),
        ("POST", "/_meetgate/register/agora", False),
        ("GET", "/_meetgate/register", False),
    ],
    ids=["form", "send", "confirm", "code", "done", "code-deeper", "get-send", "post-form", "bare"],
)
def test_which_registration_requests_are_join_attempts(
    method: str, path: str, attempt: bool
) -> None:
    assert gate.is_join_attempt(method, path) is attempt


def test_a_registration_path_names_its_room() -> None:
    assert gate.room_named_in("/_meetgate/register/agora/send") == "agora"
    assert gate.room_named_in("/_meetgate/register/agora") == "agora"
    assert gate.room_named_in("/_meetgate/register/") is None


def request(method: str, path: str) -> dict[str, object]:
    return {"type": "http", "method": method, "path": path, "query_string": b"", "headers": []}


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/_meetgate/register/r1", "/_meetgate/register/r1"),
        ("GET", "/_meetgate/register/r1/code", "/_meetgate/register/r1/code"),
        ("POST", "/_meetgate/register/r1/send", "/_meetgate/register/r1"),
        ("POST", "/_meetgate/register/r1/confirm", "/_meetgate/register/r1/code"),
        ("POST", "/_meetgate/register/r1/send/../../x", "/"),
        ("POST", "/_meetgate/register/" + quote("<b>") + "/send", "/"),
    ],
    ids=["form", "code", "after-send", "after-confirm", "dots", "markup"],
)
def test_the_switcher_leads_back_to_the_registration_pages(
    method: str, path: str, expected: str
) -> None:
    assert switch_target(request(method, path)) == (expected, ())


def room(starts_at: float | None, ends_at: float | None) -> Room:
    return Room(name="r1", title="T", created_at=0.0, starts_at=starts_at, ends_at=ends_at)


def test_the_meetings_time_in_each_language_in_utc() -> None:
    shown = meeting_time(room(STARTS, STARTS + 2.5 * 3600), ENGLISH)
    assert shown is not None
    assert shown.text == "Saturday, December 12, 2026, 14:00\u201316:30 UTC"
    assert (shown.starts, shown.ends) == ("2026-12-12T14:00+00:00", "2026-12-12T16:30+00:00")
    simplified = meeting_time(room(STARTS, None), SIMPLIFIED)
    assert simplified is not None and simplified.text.startswith("2026年12月12日星期六")
    # Fullwidth brackets: what the Chinese date format writes around the zone.
    assert simplified.text.endswith("14:00（UTC）") and simplified.ends is None  # noqa: RUF001
    traditional = meeting_time(room(STARTS, STARTS + 86400 + 3600), TRADITIONAL)
    assert traditional is not None
    assert "2026年12月12日" in traditional.text and "2026年12月13日" in traditional.text


@pytest.mark.parametrize(
    ("starts_at", "ends_at"),
    [(None, None), (None, STARTS), (1e300, None), (-1e300, None), (float("nan"), None)],
    ids=["none", "end-only", "far", "far-back", "nan"],
)
def test_no_time_a_calendar_holds_is_no_time_shown(
    starts_at: float | None, ends_at: float | None
) -> None:
    assert meeting_time(room(starts_at, ends_at), ENGLISH) is None


def test_an_end_before_the_start_shows_the_start_alone() -> None:
    shown = meeting_time(room(STARTS, STARTS - 60), ENGLISH)
    assert shown is not None and shown.text == "Saturday, December 12, 2026, 14:00 UTC"


def test_the_form_takes_the_longest_honest_note() -> None:
    # Every character four UTF-8 bytes, each byte three characters percent-encoded.
    assert registration.max_form_bytes(2000) >= 12 * (64 + 254 + 2000)
    assert registration.max_form_bytes(0) >= MAX_FORM_BYTES


def test_the_cookie_reads_back_what_it_held() -> None:
    waiting = Held("r.1~x", registration_id="a" * 32, secret="B-_" * 14 + "c")
    assert Held.load(waiting.dump()) == waiting
    for outcome in sorted(registration.OUTCOMES):
        done = Held("r1", outcome=outcome)
        assert Held.load(done.dump()) == done


@given(st.text(max_size=500))
def test_a_cookie_of_any_other_shape_holds_nothing_it_did_not_say(raw: str) -> None:
    held = Held.load(raw)
    if held is not None:
        assert held.dump() == raw
        assert held.outcome in registration.OUTCOMES or (held.registration_id and held.secret)


def registered(state: RegistrationState, created_at: float) -> Registration:
    return Registration(
        id="0" * 32,
        room="r1",
        name="Ada",
        note="",
        language="en",
        domain="example.org",
        address_key="k",
        state=state,
        created_at=created_at,
        updated_at=created_at,
    )


INVITATION = Invitation("r1", "Ada", "ada@example.org", Role.ATTENDEE, "en", "registration")


@pytest.mark.parametrize(
    ("state", "earlier", "invited", "expected"),
    [
        (RegistrationState.WAITING, False, False, "waiting"),
        (RegistrationState.APPROVED, False, True, "approved"),
        (RegistrationState.WAITING, True, False, "updated"),
        (RegistrationState.APPROVED, True, True, "approved"),
        (RegistrationState.APPROVED, True, False, "updated-approved"),
        # A denial is never told: the person reads what a waiting registration's would.
        (RegistrationState.DENIED, True, False, "updated"),
    ],
    ids=["new", "auto", "updated", "updated-auto", "earlier-approved", "earlier-denied"],
)
def test_what_the_thanks_say(
    state: RegistrationState, earlier: bool, invited: bool, expected: str
) -> None:
    now = time.time()
    confirmed = Confirmed(
        registered(state, now - 60 if earlier else now), INVITATION if invited else None
    )
    assert outcome_of(confirmed, now) == expected
