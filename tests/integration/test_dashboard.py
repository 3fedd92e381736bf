"""The host dashboard over HTTP against the real `meetgate serve`: the roster, each host action
with and without script (confirmation page, JSON), and every way a request must be refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import redis

from tests.fixtures.gateway_server import GatewayServer
from tests.fixtures.http_clients import TLS
from tests.fixtures.processes import wait_until
from tests.fixtures.xmpp_client import XmppClient
from tests.integration.journeys import (
    Admitted,
    admission_id,
    admit,
    csrf_token,
    fresh_ticket,
    host_action,
    latecomer_lands_in_meeting,
    new_room,
    signalling_query,
    ws_url,
)

pytestmark = pytest.mark.slow

ACTIONS = ["revoke", "ban", "lock", "unlock", "lockdown", "move", "quiet", "unquiet"]


def as_browser(gateway: GatewayServer, who: Admitted | None = None) -> httpx.Client:
    cookies = who.cookies if who is not None else None
    return httpx.Client(
        base_url=gateway.url, trust_env=False, timeout=30, cookies=cookies, verify=TLS
    )


def dashboard(gateway: GatewayServer, room: str) -> str:
    return f"/_meetgate/host/{room}"


def post_action(
    gateway: GatewayServer,
    who: Admitted | None,
    room: str,
    action: str,
    *,
    json: bool = True,
    origin: str | None = None,
    **fields: str,
) -> httpx.Response:
    headers = {"origin": origin or gateway.url}
    if json:
        headers["accept"] = "application/json"
    with as_browser(gateway, who) as client:
        return client.post(f"{dashboard(gateway, room)}/{action}", data=fields, headers=headers)


def roster(gateway: GatewayServer, host: Admitted, room: str | None = None) -> dict[str, Any]:
    with as_browser(gateway, host) as client:
        response = client.get(f"{dashboard(gateway, room or host.room)}/roster")
    assert response.status_code == 200, response.text
    return dict(response.json())


def names(gateway: GatewayServer, host: Admitted) -> list[str]:
    return [p["name"] for p in roster(gateway, host)["participants"]]


def error_code(response: httpx.Response) -> str:
    return str(response.json()["error"])


def invite_uses(gateway: GatewayServer, room: str) -> dict[str, int]:
    with gateway.admin() as admin:
        return {i["id"]: i["uses"] for i in admin.get(f"/api/v1/rooms/{room}/invites").json()}


@pytest.fixture
def meeting(gateway: GatewayServer) -> Iterator[tuple[str, Admitted, Admitted]]:
    """A fresh room with a host and one attendee in it."""
    room = new_room(gateway)
    yield room, admit(gateway, room, "Hilde Host", role="host"), admit(gateway, room, "Ada")


# The roster and the page


def test_roster_shows_who_is_in_and_nothing_of_where_they_come_from(
    gateway: GatewayServer, meeting: tuple[str, Admitted, Admitted]
) -> None:
    room, host, ada = meeting
    started = time.time()
    data = roster(gateway, host)
    assert set(data) == {"room", "participants", "audit", "attack", "lobby"}
    assert data["lobby"] == []
    assert data["room"] == {
        "name": room,
        "title": room,  # a room without a title is called by its name
        "locked": False,
        "approval_required": False,
        "moved_to": None,
        "quiet": False,
    }
    people = data["participants"]
    assert [p["name"] for p in people] == ["Hilde Host", "Ada"]  # hosts first
    for person in people:
        assert set(person) == {"id", "name", "role", "via", "since", "connections"}
        assert "127.0.0" not in str(person)
        assert person["via"].startswith("invite:")
        assert person["connections"] == 0
        assert started - 120 < person["since"] <= started + 1
    assert [p["role"] for p in people] == ["host", "attendee"]
    # The id is the hash of the cookie's secret, never the secret itself.
    assert people[1]["id"] == hashlib.sha256(ada.cookie.encode()).hexdigest()
    assert ada.cookie not in str(data)
    assert data["audit"] == []


async def test_roster_counts_open_connections(
    gateway: GatewayServer, meeting: tuple[str, Admitted, Admitted], prosody: Any
) -> None:
    room, host, ada = meeting

    def ada_connections() -> int:
        people = roster(gateway, host)["participants"]
        return int(next(p["connections"] for p in people if p["name"] == "Ada"))

    assert await asyncio.to_thread(ada_connections) == 0
    async with XmppClient.open(ws_url(gateway, signalling_query(ada))) as client:
        await client.join(prosody.room_jid(room), "ada")
        await asyncio.to_thread(wait_until, lambda: ada_connections() == 1, 10, "1 connection")
        await client.close()
    await asyncio.to_thread(wait_until, lambda: ada_connections() == 0, 10, "no connection")


def test_dashboard_page_carries_the_csrf_token_and_only_own_script(
    gateway: GatewayServer, meeting: tuple[str, Admitted, Admitted]
) -> None:
    room, host, _ = meeting
    with as_browser(gateway, host) as client:
        page = client.get(dashboard(gateway, room))
        script = client.get("/_meetgate/static/host.js")
        style = client.get("/_meetgate/static/host.css")
    assert page.status_code == 200
    assert "Hilde Host" in page.text and "Ada" in page.text and "127.0.0" not in page.text
    token = csrf_token(gateway, host)
    forms = page.text.count("<form ")
    assert forms >= 4 + 2 * 2  # room actions, and remove/ban for each participant (and template)
    assert page.text.count(f'name="csrf" value="{token}"') == forms
    scripts = re.findall(r"<script[^>]*>", page.text)
    assert scripts == [
        '<script src="/_meetgate/static/messages.js" defer>',
        '<script src="/_meetgate/static/host.js" defer>',
    ]
    assert "http://" not in page.text and "https://" not in page.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy
    assert "unsafe-inline" not in policy and "default-src 'none'" in policy
    assert script.status_code == 200 and script.headers["content-type"].startswith(
        "text/javascript"
    )
    assert "setTimeout" in script.text
    assert style.status_code == 200 and style.headers["content-type"].startswith("text/css")


def test_join_page_offers_hosts_the_dashboard(gateway: GatewayServer) -> None:
    room = new_room(gateway)
    host_invite = gateway.invite_token(gateway.create_invite(room, "Hilde", role="host"))
    guest_invite = gateway.invite_token(gateway.create_invite(room, "Ada"))
    with as_browser(gateway) as client:
        assert 'value="dashboard"' in client.get(f"/j/{host_invite}").text
        assert 'value="dashboard"' not in client.get(f"/j/{guest_invite}").text
        joined = client.post(
            f"/j/{host_invite}", data={"next": "dashboard"}, headers={"origin": gateway.url}
        )
        assert joined.status_code == 303
        assert joined.headers["location"] == dashboard(gateway, room)
        assert client.get(joined.headers["location"]).status_code == 200
    with as_browser(gateway) as client:
        # An attendee asking for the dashboard just goes to the meeting.
        joined = client.post(
            f"/j/{guest_invite}", data={"next": "dashboard"}, headers={"origin": gateway.url}
        )
        assert joined.status_code == 303
        assert joined.headers["location"].startswith(f"/{room}#jwt=")


# Refusals


@pytest.mark.parametrize("action", ACTIONS)
def test_host_actions_need_a_host_admission_for_that_room(
    gateway: GatewayServer, meeting: tuple[str, Admitted, Admitted], action: str
) -> None:
    room, host, ada = meeting
    other_room = new_room(gateway)
    other_host = admit(gateway, other_room, "Other Host", role="host")
    target = admission_id(gateway, host, "Ada")
    fields = {"admission": target, "duration": "forever", "confirmed": "1"}
    token = csrf_token(gateway, host)

    nobody = post_action(gateway, None, room, action, csrf=token, **fields)
    assert nobody.status_code == 403 and error_code(nobody) == "not_admitted"
    attendee = post_action(gateway, ada, room, action, csrf=token, **fields)
    assert attendee.status_code == 403 and error_code(attendee) == "not_host"
    stranger = post_action(
        gateway, other_host, room, action, csrf=csrf_token(gateway, other_host), **fields
    )
    assert stranger.status_code == 403 and error_code(stranger) == "not_host"
    # As an HTML page too, for the browser without script.
    page = post_action(gateway, ada, room, action, json=False, csrf=token, **fields)
    assert page.status_code == 403 and "Hosts only" in page.text

    data = roster(gateway, host)
    assert names(gateway, host) == ["Hilde Host", "Ada"]
    assert data["room"]["locked"] is False and data["room"]["moved_to"] is None


def test_dashboard_and_roster_are_for_hosts_of_that_room_only(
    gateway: GatewayServer, meeting: tuple[str, Admitted, Admitted]
) -> None:
    room, _, ada = meeting
    other_host = admit(gateway, new_room(gateway), "Other Host", role="host")
    for path in (dashboard(gateway, room), f"{dashboard(gateway, room)}/roster"):
        for who, status, text in (
            (None, 403, "not admitted"),
            (ada, 403, "Hosts only"),
            (other_host, 403, "Hosts only"),
        ):
            with as_browser(gateway, who) as client:
                response = client.get(path)
            assert response.status_code == status, (path, who)
            assert text in response.text
            assert "Ada" not in response.text


@pytest.mark.parametrize("action", ACTIONS)
def test_host_actions_need_the_csrf_token_of_this_session(
    gateway: GatewayServer, meeting: tuple[str, Admitted, Admitted], action: str
) -> None:
    room, host, _ = meeting
    co_host = admit(gateway, room, "Co Host", role="host")
    fields = {"admission": admission_id(gateway, host, "Ada"), "duration": "1h", "confirmed": "1"}
    own = csrf_token(gateway, host)
    for csrf in (None, "", "0" * 64, own[:-1] + ("0" if own[-1] != "0" else "1"), own.upper()):
        sent = fields if csrf is None else {**fields, "csrf": csrf}
        response = post_action(gateway, host, room, action, **sent)
        assert response.status_code == 403, csrf
        assert error_code(response) == "csrf_failed"
    # A co-host's token is good for the co-host only.
    borrowed = post_action(gateway, host, room, action, csrf=csrf_token(gateway, co_host), **fields)
    assert borrowed.status_code == 403 and error_code(borrowed) == "csrf_failed"
    page = post_action(gateway, host, room, action, json=False, csrf="forged", **fields)
    assert page.status_code == 403 and "Reload the page" in page.text
    assert names(gateway, host) == ["Hilde Host", "Co Host", "Ada"]
    assert roster(gateway, host)["room"]["locked"] is False


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "https://evil.example"},
        {"origin": "null"},
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site"},
    ],
)
def test_cross_site_posts_are_refused(
    gateway: GatewayServer, meeting: tuple[str, Admitted, Admitted], headers: dict[str, str]
) -> None:
    room, host, _ = meeting
    target = admission_id(gateway, host, "Ada")
    with as_browser(gateway, host) as client:
        response = client.post(
            f"{dashboard(gateway, room)}/revoke",
            data={"csrf": csrf_token(gateway, host), "admission": target, "confirmed": "1"},
            headers={"accept": "application/json", **headers},
        )
    assert response.status_code == 403
    assert error_code(response) == "cross_site_request"
    assert "Ada" in names(gateway, host)


def test_our_own_pages_posts_pass_with_origin_null(
    gateway: GatewayServer, meeting: tuple[str, Admitted, Admitted]
) -> None:
    """`Referrer-Policy: no-referrer` makes browsers send `Origin: null` on a page's own posts;
    Sec-Fetch-Site, which a page cannot forge, vouches for them."""
    room, host, _ = meeting
    same_origin = {"origin": "null", "sec-fetch-site": "same-origin"}
    response = post_action(
        gateway, host, room, "lock", origin="null", csrf=csrf_token(gateway, host), confirmed="1"
    )
    assert response.status_code == 403  # no Sec-Fetch-Site: nothing vouches for it
    with as_browser(gateway, host) as client:
        response = client.post(
            f"{dashboard(gateway, room)}/lock",
            data={"csrf": csrf_token(gateway, host), "confirmed": "1"},
            headers={"accept": "application/json", **same_origin},
        )
    assert response.status_code == 200 and response.json()["done"] is True
    link = gateway.invite_token(gateway.create_invite(room, "Second Host", role="host"))
    with as_browser(gateway) as client:
        assert client.post(f"/j/{link}", headers=same_origin).status_code == 303


def test_malformed_action_requests(
    gateway: GatewayServer, meeting: tuple[str, Admitted, Admitted]
) -> None:
    room, host, _ = meeting
    token = csrf_token(gateway, host)
    target = admission_id(gateway, host, "Ada")
    with as_browser(gateway, host) as client:
        url = f"{dashboard(gateway, room)}/revoke"
        headers = {"origin": gateway.url, "accept": "application/json"}
        twice = client.post(
            url,
            content=f"csrf={token}&csrf={token}&admission={target}&confirmed=1",
            headers={**headers, "content-type": "application/x-www-form-urlencoded"},
        )
        assert twice.status_code == 400 and error_code(twice) == "duplicate_parameter"
        huge = client.post(url, data={"csrf": token, "filler": "x" * 20_000}, headers=headers)
        assert huge.status_code == 413
        as_json = client.post(url, json={"csrf": token, "admission": target}, headers=headers)
        assert as_json.status_code == 400
        unknown = client.post(f"{dashboard(gateway, room)}/nuke", data={"csrf": token})
        assert unknown.status_code == 404
        missing = client.post(url, data={"csrf": token, "confirmed": "1"}, headers=headers)
        assert missing.status_code == 400 and error_code(missing) == "invalid_input"
        bad_ban = client.post(
            f"{dashboard(gateway, room)}/ban",
            data={"csrf": token, "admission": target, "duration": "2y", "confirmed": "1"},
            headers=headers,
        )
        assert bad_ban.status_code == 400 and "how long" in bad_ban.json()["message"]
        own = admission_id(gateway, host, "Hilde Host")
        yourself = client.post(
            url, data={"csrf": token, "admission": own, "confirmed": "1"}, headers=headers
        )
        assert yourself.status_code == 400 and "yourself" in yourself.json()["message"]
    assert names(gateway, host) == ["Hilde Host", "Ada"]


# Actions


def test_revoking_twice_or_an_unknown_admission_is_harmless(
    gateway: GatewayServer, meeting: tuple[str, Admitted, Admitted]
) -> None:
    room, host, ada = meeting
    token = csrf_token(gateway, host)
    target = admission_id(gateway, host, "Ada")
    first = post_action(gateway, host, room, "revoke", csrf=token, admission=target, confirmed="1")
    assert first.status_code == 200
    assert first.json()["ok"] is True and first.json()["done"] is True
    assert "Ada" in first.json()["message"]
    for admission in (target, "f" * 64, "not-an-admission-id"):
        again = post_action(
            gateway, host, room, "revoke", csrf=token, admission=admission, confirmed="1"
        )
        assert again.status_code == 200
        assert again.json()["done"] is False
        assert "no longer in the meeting" in again.json()["message"]
        page = post_action(
            gateway,
            host,
            room,
            "revoke",
            json=False,
            csrf=token,
            admission=admission,
            confirmed="1",
        )
        assert page.status_code == 200 and "no longer in the meeting" in page.text
    unknown_ban = post_action(
        gateway, host, room, "ban", csrf=token, admission="e" * 64, duration="1d", confirmed="1"
    )
    assert unknown_ban.status_code == 200 and unknown_ban.json()["done"] is False
    assert names(gateway, host) == ["Hilde Host"]
    audit = roster(gateway, host)["audit"]
    assert [(e["action"], e["actor_name"], e["detail"]) for e in audit] == [
        ("revoke", "Hilde Host", "Ada")
    ]
    assert set(audit[0]) == {"at", "actor_name", "action", "target", "detail"}
    # Whom, as this room's evidence names them: not the identity's pseudonym, which is the same
    # in every room and would let the hosts of two rooms find one person in both.
    assert re.fullmatch(r"a-[a-z2-7]{16}", audit[0]["target"]), audit[0]["target"]
    # The removed browser is told so, everywhere it turns.
    with as_browser(gateway, ada) as client:
        page = client.get(f"/{room}")
    assert page.status_code == 403 and "A host removed you" in page.text
    refresh = fresh_ticket(gateway, ada, room)
    assert refresh.status_code == 403 and "removed" in refresh.text


def test_without_confirmation_nothing_happens_but_a_question(
    gateway: GatewayServer, meeting: tuple[str, Admitted, Admitted]
) -> None:
    room, host, _ = meeting
    token = csrf_token(gateway, host)
    target = admission_id(gateway, host, "Ada")
    page = post_action(gateway, host, room, "ban", json=False, csrf=token, admission=target)
    assert page.status_code == 400  # a ban needs its duration, even to ask
    page = post_action(
        gateway, host, room, "ban", json=False, csrf=token, admission=target, duration="7d"
    )
    assert page.status_code == 200
    assert "Remove and ban Ada for 7 days?" in page.text
    for hidden in (
        f'name="csrf" value="{token}"',
        f'name="admission" value="{target}"',
        'name="duration" value="7d"',
        'name="confirmed" value="1"',
    ):
        assert hidden in page.text
    assert f'action="{dashboard(gateway, room)}/ban"' in page.text
    for action in ACTIONS:
        asked = post_action(
            gateway, host, room, action, csrf=token, admission=target, duration="1h"
        )
        assert asked.status_code == 200
        assert asked.json()["done"] is False and asked.json()["confirm"].endswith("?")
        page = post_action(
            gateway, host, room, action, json=False, csrf=token, admission=target, duration="1h"
        )
        assert page.status_code == 200 and 'name="confirmed" value="1"' in page.text
    data = roster(gateway, host)
    assert [p["name"] for p in data["participants"]] == ["Hilde Host", "Ada"]
    assert data["room"]["locked"] is False and data["audit"] == []


def test_the_confirmed_form_does_it_and_returns_to_the_dashboard(
    gateway: GatewayServer, meeting: tuple[str, Admitted, Admitted]
) -> None:
    room, host, _ = meeting
    response = post_action(
        gateway,
        host,
        room,
        "revoke",
        json=False,
        csrf=csrf_token(gateway, host),
        admission=admission_id(gateway, host, "Ada"),
        confirmed="1",
    )
    assert response.status_code == 303
    assert response.headers["location"] == dashboard(gateway, room)
    assert names(gateway, host) == ["Hilde Host"]


def test_lock_keeps_newcomers_out_without_burning_their_invite(
    gateway: GatewayServer, meeting: tuple[str, Admitted, Admitted]
) -> None:
    room, host, ada = meeting
    token = csrf_token(gateway, host)
    locked = post_action(gateway, host, room, "lock", json=False, csrf=token, confirmed="1")
    assert locked.status_code == 303 and locked.headers["location"] == dashboard(gateway, room)
    assert roster(gateway, host)["room"]["locked"] is True
    with as_browser(gateway, host) as client:
        assert "Locked" in client.get(dashboard(gateway, room)).text

    late_invite = gateway.create_invite(room, "Latecomer")
    late = gateway.invite_token(late_invite)
    with as_browser(gateway) as client:
        refused = client.post(f"/j/{late}", headers={"origin": gateway.url})
    assert refused.status_code == 423 and "locked" in refused.text
    assert invite_uses(gateway, room)[late_invite["id"]] == 0
    with as_browser(gateway, ada) as client:
        assert client.get(f"/{room}").status_code == 200  # who is in stays in

    unlocked = post_action(gateway, host, room, "unlock", csrf=token, confirmed="1")
    assert unlocked.json() == {
        "ok": True,
        "done": True,
        "message": "The room is open again.",
        "locked": False,
    }
    with as_browser(gateway) as client:
        assert client.post(f"/j/{late}", headers={"origin": gateway.url}).status_code == 303
    assert [e["action"] for e in roster(gateway, host)["audit"]] == ["unlock", "lock"]


def test_deleting_a_room_deletes_its_hosts_actions_log(gateway: GatewayServer) -> None:
    room = new_room(gateway)
    host = admit(gateway, room, "Hilde Host", role="host")
    for action in ("lock", "unlock"):
        assert host_action(gateway, host, action)["ok"] is True
    assert len(roster(gateway, host)["audit"]) == 2
    with gateway.admin() as admin:
        assert admin.delete(f"/api/v1/rooms/{room}").status_code == 204
    # A room made again under the name starts with an empty log: the old one is gone, not
    # merely out of reach.
    gateway.create_room(room)
    again = admit(gateway, room, "Other Host", role="host")
    assert roster(gateway, again)["audit"] == []


def test_lockdown_removes_every_attendee_and_keeps_the_hosts(
    gateway: GatewayServer, meeting: tuple[str, Admitted, Admitted]
) -> None:
    room, host, ada = meeting
    bob = admit(gateway, room, "Bob")
    co_host = admit(gateway, room, "Co Host", role="host")
    answer = host_action(gateway, host, "lockdown")
    assert answer["done"] is True and answer["removed"] == 2
    data = roster(gateway, host)
    assert [p["name"] for p in data["participants"]] == ["Hilde Host", "Co Host"]
    assert data["room"]["locked"] is True and data["room"]["approval_required"] is True
    assert data["room"]["quiet"] is True  # and only the hosts who stay may chat
    for removed in (ada, bob):
        with as_browser(gateway, removed) as client:
            page = client.get(f"/{room}")
        assert page.status_code == 403 and "A host removed you" in page.text
    for kept in (host, co_host):
        with as_browser(gateway, kept) as client:
            assert client.get(f"/{room}").status_code == 200
    assert not latecomer_lands_in_meeting(gateway, room)
    # The latecomer waits in the lobby for a host instead.
    assert [w["name"] for w in roster(gateway, host)["lobby"]] == ["Latecomer"]
    with as_browser(gateway, host) as client:
        assert "Lockdown" in client.get(dashboard(gateway, room)).text

    host_action(gateway, host, "unlock")
    assert roster(gateway, host)["room"]["approval_required"] is False
    assert latecomer_lands_in_meeting(gateway, room)


def test_ban_bars_the_identity_from_coming_back(gateway: GatewayServer) -> None:
    room = new_room(gateway)
    host = admit(gateway, room, "Hilde Host", role="host")
    troll_invite = gateway.create_invite(room, "Troll", max_uses=2)
    link = gateway.invite_token(troll_invite)

    def redeem() -> httpx.Response:
        with as_browser(gateway) as client:
            return client.post(f"/j/{link}", headers={"origin": gateway.url})

    first = redeem()
    assert first.status_code == 303
    troll = Admitted(room=room, ticket="", cookie=first.cookies["meetgate"])
    answer = host_action(
        gateway, host, "ban", admission=admission_id(gateway, host, "Troll"), duration="forever"
    )
    assert answer["done"] is True and answer["until"] is None
    assert "for good" in answer["message"]
    assert names(gateway, host) == ["Hilde Host"]
    with as_browser(gateway, troll) as client:
        assert client.get(f"/{room}").status_code == 403
    again = redeem()
    assert again.status_code == 403 and "barred" in again.text
    assert invite_uses(gateway, room)[troll_invite["id"]] == 1  # refused before the use was counted
    audit = roster(gateway, host)["audit"]
    assert audit[0]["action"] == "ban" and audit[0]["detail"] == "Troll"


def test_ban_for_a_while_says_until_when(
    gateway: GatewayServer, meeting: tuple[str, Admitted, Admitted]
) -> None:
    _, host, _ = meeting
    before = time.time()
    answer = host_action(
        gateway, host, "ban", admission=admission_id(gateway, host, "Ada"), duration="1h"
    )
    assert answer["done"] is True and "for 1 hour" in answer["message"]
    assert before + 3600 - 1 < answer["until"] < time.time() + 3600 + 1


def test_move_continues_on_the_new_dashboard(
    gateway: GatewayServer, meeting: tuple[str, Admitted, Admitted]
) -> None:
    room, host, ada = meeting
    old_token = csrf_token(gateway, host)
    moved = post_action(gateway, host, room, "move", json=False, csrf=old_token, confirmed="1")
    assert moved.status_code == 303
    location = moved.headers["location"]
    assert location.startswith(dashboard(gateway, f"{room}--"))
    new = location.rsplit("/", 1)[1]

    data = roster(gateway, host, new)
    assert data["room"]["name"] == new and data["room"]["moved_to"] is None
    assert [p["name"] for p in data["participants"]] == ["Hilde Host", "Ada"]
    with as_browser(gateway, host) as client:
        assert client.get(location).status_code == 200
        # The old dashboard is not this host's any more; the bare path finds the new one.
        assert client.get(dashboard(gateway, room)).status_code == 403
        found = client.get("/_meetgate/host")
        assert found.status_code == 303 and found.headers["location"] == location
    # A token is bound to its room: the old one does not work for the new room.
    stale = post_action(gateway, host, new, "lock", csrf=old_token, confirmed="1")
    assert stale.status_code == 403 and error_code(stale) == "csrf_failed"

    with as_browser(gateway, ada) as client:
        old_page = client.get(f"/{room}")
        assert old_page.status_code == 303
        assert old_page.headers["location"] == f"/_meetgate/ticket?room={new}"
        ticket = client.get(old_page.headers["location"])
        assert ticket.status_code == 303
        assert ticket.headers["location"].startswith(f"/{new}#jwt=")
        assert client.get(f"/{new}").status_code == 200

    again = post_action(gateway, host, new, "move", csrf=csrf_token_for(gateway, host, new))
    assert again.status_code == 200 and again.json()["done"] is False  # asked, not done
    answer = post_action(
        gateway, host, new, "move", csrf=csrf_token_for(gateway, host, new), confirmed="1"
    )
    assert answer.json()["done"] is True and answer.json()["room"].startswith(f"{room}--")
    assert answer.json()["room"] != new


def csrf_token_for(gateway: GatewayServer, host: Admitted, room: str) -> str:
    return csrf_token(gateway, Admitted(room=room, ticket=host.ticket, cookie=host.cookie))


def test_the_ticket_endpoint_refuses_a_revoked_admission(
    gateway: GatewayServer, meeting: tuple[str, Admitted, Admitted]
) -> None:
    room, host, ada = meeting
    before = fresh_ticket(gateway, ada, room)
    assert before.status_code == 303 and before.headers["location"].startswith(f"/{room}#jwt=")
    host_action(gateway, host, "revoke", admission=admission_id(gateway, host, "Ada"))
    after = fresh_ticket(gateway, ada, room)
    assert after.status_code == 403
    assert "removed" in after.text and "#jwt=" not in after.headers.get("location", "")


def test_the_host_sets_the_rooms_language_with_a_plain_form(
    gateway: GatewayServer, meeting: tuple[str, Admitted, Admitted]
) -> None:
    room, host, ada = meeting
    with as_browser(gateway, host) as client:
        page = client.get(dashboard(gateway, room)).text
    start = page.index('id="language-form"')
    form = page[start : page.index("</form>", start)]
    assert f'action="{dashboard(gateway, room)}/language"' in page
    assert f'name="csrf" value="{csrf_token(gateway, host)}"' in form
    # The three languages, each named in itself; no default yet reads as English.
    assert '<option value="en" lang="en" selected>English</option>' in form
    assert '<option value="zh-Hans" lang="zh-Hans">简体中文</option>' in form
    assert '<option value="zh-Hant" lang="zh-Hant">繁體中文</option>' in form

    token = csrf_token(gateway, host)
    refused = [
        post_action(gateway, host, room, "language", json=False, language="zh-Hant"),
        post_action(gateway, host, room, "language", csrf=token, language="fr"),
        post_action(gateway, ada, room, "language", csrf=token, language="zh-Hant"),
        post_action(gateway, host, room, "language", origin="https://evil.example", csrf=token),
    ]
    assert [r.status_code for r in refused] == [403, 400, 403, 403]
    with gateway.admin() as admin:
        assert admin.get(f"/api/v1/rooms/{room}").json()["language"] is None

    # No confirmation asked: the form's post does it and comes back to the dashboard.
    done = post_action(gateway, host, room, "language", json=False, csrf=token, language="zh-Hant")
    assert done.status_code == 303
    assert done.headers["location"] == f"{dashboard(gateway, room)}?done=language"
    with as_browser(gateway, host) as client:
        page = client.get(done.headers["location"]).text
    assert "The room&#39;s language is saved" in page
    assert '<option value="zh-Hant" lang="zh-Hant" selected>繁體中文</option>' in page
    with gateway.admin() as admin:
        assert admin.get(f"/api/v1/rooms/{room}").json()["language"] == "zh-Hant"
    audit = roster(gateway, host)["audit"]
    # The language as it names itself, as the switcher does, in every page language.
    assert [(e["action"], e["detail"]) for e in audit] == [("change language", "繁體中文")]
    # Saved again: nothing to do, nothing logged.
    again = post_action(gateway, host, room, "language", csrf=token, language="zh-Hant")
    assert again.json()["done"] is False and len(roster(gateway, host)["audit"]) == 1
    # A visitor without a language of their own now gets the room's pages in it.
    made = gateway.create_invite(room, "Grace")
    with httpx.Client(base_url=gateway.url, trust_env=False, verify=TLS) as browser:
        landing = browser.get(f"/j/{made['link'].rsplit('/j/', 1)[1]}")
    assert '<html lang="zh-Hant">' in landing.text
    # A move carries the language over to the new room.
    moved = host_action(gateway, host, "move")
    with gateway.admin() as admin:
        assert admin.get(f"/api/v1/rooms/{moved['room']}").json()["language"] == "zh-Hant"


# The host actions' log (RUF001: the Chinese catalogs' full-width punctuation is meant)


def test_the_log_is_put_into_words_in_the_pages_language(
    gateway: GatewayServer, meeting: tuple[str, Admitted, Admitted]
) -> None:
    """The log keeps values, said in the language of whoever reads it: a ban's end as a date
    and time as that language writes them (in UTC, which it says), a count with its plural."""
    room, host, _ = meeting
    admit(gateway, room, "Bo")
    admit(gateway, room, "Cy")
    ban = host_action(
        gateway, host, "ban", admission=admission_id(gateway, host, "Ada"), duration="1d"
    )
    assert host_action(gateway, host, "lockdown")["removed"] == 2
    end = datetime.fromtimestamp(ban["until"], UTC)
    hant = {"accept-language": "zh-TW,zh;q=0.9,en;q=0.5"}
    with as_browser(gateway, host) as client:
        page = client.get(dashboard(gateway, room), headers=hant).text
        entries = client.get(f"{dashboard(gateway, room)}/roster", headers=hant).json()["audit"]
        english = client.get(f"{dashboard(gateway, room)}/roster").json()["audit"]
    # Taiwan's medium date and short time, "Bh:mm": 2026年1月2日 下午3:04. B is CLDR's flexible
    # day period for zh-Hant, not AM/PM: the evening (19:00 on) is 晚上, the early hours 凌晨.
    periods = ((5, "凌晨"), (8, "清晨"), (12, "上午"), (13, "中午"), (19, "下午"), (24, "晚上"))
    period = next(name for upto, name in periods if end.hour < upto)
    period = "午夜" if (end.hour, end.minute) == (0, 0) else period  # midnight itself
    ends = f"{end.year}年{end.month}月{end.day}日 {period}{end.hour % 12 or 12}:{end.minute:02d}"
    assert [(e["action"], e["detail"]) for e in entries] == [
        ("lockdown", "已移出 2 人"),
        ("ban", f"Ada，到 {ends}（UTC）為止"),  # noqa: RUF001
    ]
    # The page joins action and detail as the language does (a full-width colon).
    assert "<strong>Hilde Host</strong> 緊急封鎖：已移出 2 人</li>" in page  # noqa: RUF001
    assert f"<strong>Hilde Host</strong> 移出並禁止加入：Ada，到 {ends}（UTC）為止</li>" in page  # noqa: RUF001
    assert ": " not in page[page.index('id="audit"') : page.index('id="audit-empty"')]
    # In English, as the log said it before, with a date in place of a raw timestamp.
    assert english[0]["detail"] == "2 removed"
    month = end.strftime("%b")
    said = re.fullmatch(
        rf"Ada until {month} {end.day}, {end.year}, (\d+):(\d\d)\s([AP]M) UTC", english[1]["detail"]
    )
    assert said is not None, english[1]
    assert said.groups() == (str(end.hour % 12 or 12), f"{end.minute:02d}", end.strftime("%p"))


def test_log_entries_written_before_it_kept_values_show_as_written(
    redis_gateway: GatewayServer, redis_server: str
) -> None:
    """An entry an earlier release wrote (English text, a ban's end as a raw timestamp) is shown
    as it is, in every language; one that does not parse is left out, not a broken page."""
    gateway = redis_gateway
    room = new_room(gateway)
    host = admit(gateway, room, "Hilde Host", role="host")
    host_action(gateway, host, "lock")
    old = {"room": room, "actor": "h", "actor_name": "Old Host", "target": ""}
    store = redis.Redis.from_url(redis_server, decode_responses=True)
    try:
        # In the Redis key layout (gateway/store/redis.py): the room's trail, newest first.
        for stored in (
            {**old, "at": time.time(), "action": "ban", "detail": "Troll until 1767366245"},
            {**old, "at": time.time(), "action": "lockdown", "detail": "3 removed"},
            {**old, "at": time.time(), "action": "lockdown", "facts": {"kind": "removed"}},
        ):
            store.lpush(f"meetgate:audit:{room}", json.dumps(stored))
    finally:
        store.close()
    hant = {"accept-language": "zh-Hant"}
    with as_browser(gateway, host) as client:
        entries = client.get(f"{dashboard(gateway, room)}/roster", headers=hant).json()["audit"]
        page = client.get(dashboard(gateway, room), headers=hant)
        english = client.get(dashboard(gateway, room)).text
    assert [(e["actor_name"], e["action"], e["detail"]) for e in entries] == [
        ("Old Host", "lockdown", "3 removed"),
        ("Old Host", "ban", "Troll until 1767366245"),
        ("Hilde Host", "lock", ""),
    ]
    assert page.status_code == 200
    assert "<strong>Old Host</strong> 緊急封鎖：3 removed</li>" in page.text  # noqa: RUF001
    assert "<strong>Old Host</strong> 移出並禁止加入：Troll until 1767366245</li>" in page.text  # noqa: RUF001
    assert "<strong>Hilde Host</strong> 鎖定</li>" in page.text
    assert "<strong>Old Host</strong> lockdown: 3 removed</li>" in english


# Chat rules: quiet mode and chat limits (issue 16)


def admin_room(gateway: GatewayServer, room: str) -> dict[str, Any]:
    with gateway.admin() as admin:
        return dict(admin.get(f"/api/v1/rooms/{room}").json())


def test_the_quiet_switch_shows_its_state_and_is_for_hosts(
    gateway: GatewayServer, meeting: tuple[str, Admitted, Admitted]
) -> None:
    room, host, ada = meeting
    token = csrf_token(gateway, host)
    with as_browser(gateway, host) as client:
        page = client.get(dashboard(gateway, room)).text
    assert "Quiet mode: only hosts can chat</button>" in page
    assert 'id="quiet-state" data-quiet="off"' in page
    assert f'action="{dashboard(gateway, room)}/quiet" data-action="quiet"' in page
    refused = [
        post_action(gateway, host, room, "quiet", json=False, confirmed="1"),
        post_action(gateway, ada, room, "quiet", csrf=token, confirmed="1"),
        post_action(gateway, host, room, "quiet", origin="https://evil.example", csrf=token),
    ]
    assert [r.status_code for r in refused] == [403, 403, 403]
    asked = post_action(gateway, host, room, "quiet", csrf=token)
    assert asked.json()["confirm"] == "Switch on quiet mode?"
    assert admin_room(gateway, room)["quiet"] is False

    # Without script: the confirmed form does it and comes back to the dashboard.
    done = post_action(gateway, host, room, "quiet", json=False, csrf=token, confirmed="1")
    assert done.status_code == 303 and done.headers["location"] == dashboard(gateway, room)
    assert admin_room(gateway, room)["quiet"] is True
    assert roster(gateway, host)["room"]["quiet"] is True
    with as_browser(gateway, host) as client:
        page = client.get(dashboard(gateway, room)).text
        hant = client.get(dashboard(gateway, room), headers={"accept-language": "zh-TW"}).text
    assert 'id="quiet-state" data-quiet="on"' in page
    assert "<strong>Quiet mode</strong>: only hosts can chat." in page
    assert "<strong>安靜模式</strong>：只有主持人可以聊天。" in hant  # noqa: RUF001
    assert "<strong>Hilde Host</strong> 開啟安靜模式</li>" in hant

    off = post_action(gateway, host, room, "unquiet", csrf=token, confirmed="1")
    assert off.json() == {
        "ok": True,
        "done": True,
        "message": "Quiet mode is off: everyone can chat.",
        "quiet": False,
    }
    assert admin_room(gateway, room)["quiet"] is False
    assert [e["action"] for e in roster(gateway, host)["audit"]] == ["quiet off", "quiet on"]


def test_the_host_sets_the_chat_limits_with_a_plain_form(
    gateway: GatewayServer, meeting: tuple[str, Admitted, Admitted]
) -> None:
    room, host, ada = meeting
    token = csrf_token(gateway, host)
    with as_browser(gateway, host) as client:
        page = client.get(dashboard(gateway, room)).text
    start = page.index('id="chat-form"')
    form = page[start : page.index("</form>", start)]
    assert 'name="chat_per_10s"' in form and 'name="guard_strikes" ' in form
    assert 'name="quiet_private_to_hosts" value="1" checked' in form
    assert admin_room(gateway, room)["chat"] == {
        "quiet_private_to_hosts": True,
        "chat_per_10s": 0,
        "chat_burst": 0,
        "chat_max_bytes": 0,
        "guard_strikes": "default",
    }
    bad = [
        {"chat_per_10s": "five"},
        {"chat_per_10s": "-1"},
        {"chat_burst": "10001"},
        {"chat_max_bytes": "10"},
        {"guard_strikes": "100001"},
    ]
    for fields in bad:
        refused = post_action(gateway, host, room, "chat-limits", csrf=token, **fields)
        assert refused.status_code == 400, fields
    refused = post_action(gateway, ada, room, "chat-limits", csrf=token, chat_per_10s="1")
    assert refused.status_code == 403
    assert admin_room(gateway, room)["chat"]["chat_per_10s"] == 0

    done = post_action(
        gateway,
        host,
        room,
        "chat-limits",
        json=False,
        csrf=token,
        chat_per_10s="3",
        chat_burst="",
        chat_max_bytes="512",
        guard_strikes="0",
    )
    assert done.status_code == 303
    assert done.headers["location"] == f"{dashboard(gateway, room)}?done=chat-limits"
    with as_browser(gateway, host) as client:
        page = client.get(done.headers["location"]).text
    assert "The chat limits are saved" in page
    assert 'name="chat_per_10s" inputmode="numeric" pattern="[0-9]*" value="3"' in page
    assert 'name="quiet_private_to_hosts" value="1">' in page  # unticked: not sent
    assert admin_room(gateway, room)["chat"] == {
        "quiet_private_to_hosts": False,
        "chat_per_10s": 3,
        "chat_burst": 0,
        "chat_max_bytes": 512,
        "guard_strikes": 0,
    }
    again = post_action(
        gateway,
        host,
        room,
        "chat-limits",
        csrf=token,
        chat_per_10s="3",
        chat_max_bytes="512",
        guard_strikes="0",
    )
    assert again.json()["done"] is False
    with as_browser(gateway, host) as client:
        english = client.get(f"{dashboard(gateway, room)}/roster").json()["audit"]
        hans = client.get(
            f"{dashboard(gateway, room)}/roster", headers={"accept-language": "zh-CN"}
        ).json()["audit"]
    assert [(e["action"], e["detail"]) for e in english] == [
        (
            "change chat limits",
            "messages per 10 seconds: 3; at once: the gate's default; longest message: 512"
            " bytes; never removed automatically; in quiet mode, no private messages",
        )
    ]
    assert hans[0]["detail"] == (
        "每 10 秒消息数：3；一次连续：Meetgate 的默认值；单条消息最大长度：512 字节；"  # noqa: RUF001
        "从不自动移出；安静模式下不能发私信"  # noqa: RUF001
    )
    # A move carries the rules over to the new room.
    moved = host_action(gateway, host, "move")
    assert admin_room(gateway, moved["room"])["chat"] == {
        "quiet_private_to_hosts": False,
        "chat_per_10s": 3,
        "chat_burst": 0,
        "chat_max_bytes": 512,
        "guard_strikes": 0,
    }
