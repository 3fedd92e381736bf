"""Issue 19's second review, the registration pages in-process (tests/integration/
test_registration_pages.py's gate, aiosmtpd): posting the form or a code to a room that takes
no registrations costs the address what a post to one that does costs."""

from __future__ import annotations

import secrets

import pytest

from tests.integration.test_registration_pages import Site, form, fresh_email, send, site

__all__ = ["site"]


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
