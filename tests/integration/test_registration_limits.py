"""Registration's limits as a stranger could abuse them (issue 19's security round), through the
whole gate in-process (tests/integration/test_registration_pages.py's site, a real aiosmtpd):
a flood once denied does not close registration, registration closes at the meeting's end (not
at the end of what is kept after it), and registering cannot lock an address out of signing in
by e-mail code nor tell when it was last used.
"""

from __future__ import annotations

import time

import httpx
import pytest

from gateway.store.records import RoomPolicy
from tests.fixtures.smtp import SmtpServer
from tests.integration.test_registration_pages import (
    Site,
    confirm,
    form,
    fresh_email,
    outcome,
    registered,
    running_site,
    send,
    without_request_ids,
)


def register_and_confirm(site: Site, room: str, email: str, name: str = "Ada") -> httpx.Response:
    with site.browser() as browser:
        code = registered(site, browser, room, email, name=name).code()
        answer = confirm(browser, room, code)
        assert answer.status_code == 303, answer.text
        return browser.get(f"{form(room)}/done")


def test_denied_registrations_do_not_fill_the_room(smtp_server: SmtpServer) -> None:
    with running_site(smtp_server, MEETGATE_REGISTRATION__MAX_PER_ROOM="3") as site:
        room = site.room()
        junk = [fresh_email() for _ in range(3)]
        for email in junk:
            register_and_confirm(site, room, email)
        # Full while all three wait.
        with site.browser() as browser:
            code = registered(site, browser, room, fresh_email()).code()
            full = confirm(browser, room, code)
        assert full.status_code == 409 and "as many registrations as it can take" in full.text
        registrations = site.gate.registrations
        assert registrations is not None
        waiting = site.loop.run(registrations.page(room, now=time.time()))
        ids = [item.id for item in waiting.items]
        assert site.loop.run(registrations.deny(room, ids, "host", time.time())) == 3
        # Denied, they no longer count: a genuine person registers.
        assert outcome(register_and_confirm(site, room, fresh_email())) == "waiting"
        # A denied address registering again stays denied (and reads as waiting).
        assert outcome(register_and_confirm(site, room, junk[0], name="Ada again")) == "updated"
        counts = site.loop.run(registrations.page(room, now=time.time())).states
        assert (counts["waiting"], counts["denied"]) == (1, 3)


@pytest.mark.parametrize("language", ["en", "zh-Hans"])
def test_registration_closes_when_the_meeting_ends(smtp_server: SmtpServer, language: str) -> None:
    with running_site(smtp_server) as site:
        # Ended a minute ago: what was registered is still kept (a day by default), but nobody
        # registers any more.
        room = site.room(starts_at=time.time() - 3600, ends_at=time.time() - 60)
        with site.browser(**{"accept-language": language}) as browser:
            page = browser.get(form(room))
            assert page.status_code == 403
            assert f'lang="{language}"' in page.text
            sent = send(browser, room, name="Ada", email=fresh_email())
            assert sent.status_code == 403
        english = "This meeting has ended, so it takes no more registrations."
        if language == "en":
            assert english in page.text

        # Registered before the end, confirmed after it: refused the same way, nothing counted.
        room = site.room(starts_at=time.time() - 3600, ends_at=time.time() + 3600)
        with site.browser() as browser:
            code = registered(site, browser, room, fresh_email()).code()
            site.set_room(room, ends_at=time.time() - 1)
            late = confirm(browser, room, code)
        assert late.status_code == 403 and english in late.text
        registrations = site.gate.registrations
        assert registrations is not None
        assert site.loop.run(registrations.page(room, now=time.time())).total == 0


def test_registering_locks_nobody_out_of_e_mail_codes_and_tells_nothing(
    smtp_server: SmtpServer,
) -> None:
    with running_site(smtp_server) as site:
        room = site.room()
        site.set_room(room, policy=RoomPolicy(invite=True, email_code=True))
        victim = fresh_email()
        pages = []
        # More registrations than codes one address is sent in an hour (5 by default).
        for n in range(6):
            with site.browser() as browser:
                sent = send(browser, room, name="Ada", email=victim)
                assert sent.status_code == 303, sent.text
                pages.append(without_request_ids(browser.get(f"{form(room)}/code").text))
            site.mailbox.wait_for(victim, min(n + 1, 5))
        # The sixth reads as the first did, and no sixth code went.
        assert pages[5] == pages[0]
        assert len(site.mailbox.to(victim)) == 5
        # The address still signs in by e-mail code.
        with site.browser() as browser:
            asked = browser.post(f"/_meetgate/email/{room}/send", data={"email": victim})
        assert asked.status_code == 200, asked.text
        assert len(site.mailbox.wait_for(victim, 6)) == 6
