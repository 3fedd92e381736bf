"""Issue 19's second review, the registration pages in-process (tests/integration/
test_registration_pages.py's gate, aiosmtpd): posting the form or a code to a room that takes
no registrations costs the address what a post to one that does costs; a registration flood asks
proof-of-work of registrations, never of the invited at the door."""

from __future__ import annotations

import secrets
import time

import pytest

from gateway.admission.invites import make_invite
from gateway.store.records import Role
from tests.integration.test_registration_pages import (
    Site,
    challenge_of,
    flooded_site,
    form,
    fresh_email,
    send,
    site,
)

__all__ = ["flooded_site", "site"]


@pytest.mark.parametrize("page", ["send", "confirm"])
def test_posting_is_charged_whether_or_not_the_room_takes_registrations(
    site: Site, page: str
) -> None:
    # Each post to a room without registration answers 404: were it free, posting would tell
    # the rooms that take registrations from the others without limit.
    room, unknown = site.room(), f"reg-{secrets.token_hex(4)}"
    closed = site.room(registration=False)
    statuses = []
    with site.browser() as browser:
        for n in range(14):
            target = (unknown, closed, room)[n % 3]
            if page == "send":
                answer = send(browser, target, name="Ada", email=fresh_email())
            else:
                answer = browser.post(f"{form(target)}/confirm", data={"code": "123456"})
            statuses.append(answer.status_code)
    first = 303 if page == "send" else 409
    assert statuses[:3] == [404, 404, first]
    assert statuses[-2:] == [429, 429]


def test_a_registration_flood_asks_no_proof_of_the_invited(flooded_site: Site) -> None:
    site = flooded_site
    room = site.room()
    made = make_invite(
        room=room,
        name="Grace",
        role=Role.ATTENDEE,
        max_uses=5,
        lifetime_seconds=3600,
        now=time.time(),
    )
    site.loop.run(site.store.add_invite(made.invite))
    # Bad forms from many addresses until the registration form asks for proof-of-work.
    deadline = time.monotonic() + 15
    while True:
        assert time.monotonic() < deadline, "no proof-of-work demanded under the flood"
        with site.browser() as flooder:
            if challenge_of(send(flooder, room, name="x", email="nope")) is not None:
                break
    with site.browser() as person:
        assert challenge_of(send(person, room, name="Ada", email=fresh_email())) is not None
    # The invited walk in without a calculation: the flood was of registrations.
    with site.browser() as invited:
        joined = invited.post(f"/j/{made.token}")
    assert joined.status_code == 303, joined.text
    assert "data-pow-token" not in joined.text
