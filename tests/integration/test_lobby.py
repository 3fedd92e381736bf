"""The lobby over HTTP: a guest knocks, a host answers on the dashboard, the waiting browser's
next check lands it in the meeting (or on a clear page); the event stream; bounds on a flood;
forged lobby cookies; names that cannot be shown. Pages only: the gateway runs in the test
process (tests/fixtures/in_process.py), but for the one on Redis whose records a test corrupts.

The gateway here believes X-Forwarded-For from the tests (a trusted proxy), so every test's
browsers come from addresses of their own and the per-address bound stays each test's own.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from tests.fixtures.gateway_server import GENEROUS_LIMITS, GatewayServer, start_gateway
from tests.fixtures.http_clients import TLS
from tests.fixtures.in_process import in_process_gateway
from tests.fixtures.processes import stop_process
from tests.integration.journeys import Admitted, admit, csrf_token, host_action

pytestmark = pytest.mark.slow

MAX_PER_ADDRESS = 2
MAX_PER_ROOM = 5
WAITING_KEYS = {"id", "name", "message", "via", "since", "guest"}
_addresses = itertools.count(1)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, jitsi_web: Any) -> Iterator[GatewayServer]:
    with in_process_gateway(
        tmp_path_factory.mktemp("lobby-gateway"),
        upstream=jitsi_web.url,
        top='trusted_proxies = ["127.0.0.1/32"]',
        extra=GENEROUS_LIMITS
        + f"""
[lobby]
max_waiting_per_address = {MAX_PER_ADDRESS}
max_waiting_per_room = {MAX_PER_ROOM}
max_message_chars = 120

# Named so that a room may offer e-mail codes; no test here sends one.
[smtp]
host = "127.0.0.1"
""",
    ) as server:
        yield server


@pytest.fixture(scope="module")
def redis_lobby_gateway(
    tmp_path_factory: pytest.TempPathFactory, jitsi_web: Any, redis_server: str
) -> Iterator[tuple[GatewayServer, str]]:
    """The same gateway on the tests' own redis-server, whose URL comes with it."""
    server, proc = start_gateway(
        tmp_path_factory.mktemp("lobby-redis-gateway"),
        upstream=jitsi_web.url,
        store_url=redis_server,
        top='trusted_proxies = ["127.0.0.1/32"]',
        extra=GENEROUS_LIMITS,
    )
    yield server, redis_server
    stop_process(proc)


def new_address() -> str:
    n = next(_addresses)
    return f"10.{secrets.randbelow(200) + 20}.{n // 250}.{n % 250 + 1}"


def browser(gateway: GatewayServer, address: str | None = None) -> httpx.Client:
    """A browser of its own, from an address of its own."""
    return gateway.client(timeout=30, headers={"x-forwarded-for": address or new_address()})


def lobby_room(gateway: GatewayServer, **policy: Any) -> str:
    name = f"lobby-{secrets.token_hex(4)}"
    gateway.create_room(name, title="Open assembly")
    gateway.set_policy(name, **{"lobby": True, **policy})
    return name


def knock(
    client: httpx.Client, gateway: GatewayServer, room: str, name: str, message: str = ""
) -> httpx.Response:
    return client.post(
        f"/_meetgate/lobby/{room}",
        data={"name": name, "message": message},
        headers={"origin": gateway.url},
    )


def lobby_cookie(client: httpx.Client) -> str:
    return str(client.cookies["meetgate-lobby"])


def status(client: httpx.Client, room: str) -> httpx.Response:
    return client.get(f"/_meetgate/lobby/{room}/status", headers={"accept": "application/json"})


def roster(gateway: GatewayServer, host: Admitted) -> dict[str, Any]:
    with gateway.client(cookies=host.cookies) as client:
        response = client.get(f"/_meetgate/host/{host.room}/roster")
    assert response.status_code == 200, response.text
    return dict(response.json())


def waiting(gateway: GatewayServer, host: Admitted) -> list[dict[str, Any]]:
    return list(roster(gateway, host)["lobby"])


def request_of(gateway: GatewayServer, host: Admitted, name: str) -> str:
    return next(str(w["id"]) for w in waiting(gateway, host) if w["name"] == name)


def ticket_claims(location: str) -> dict[str, Any]:
    token = location.split("#jwt=", 1)[1]
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def post_lobby_action(
    gateway: GatewayServer, who: Admitted | None, room: str, action: str, **fields: str
) -> httpx.Response:
    cookies = who.cookies if who is not None else None
    with gateway.client(cookies=cookies) as client:
        return client.post(
            f"/_meetgate/host/{room}/{action}",
            data=fields,
            headers={"origin": gateway.url, "accept": "application/json"},
        )


@pytest.fixture
def assembly(gateway: GatewayServer) -> tuple[str, Admitted]:
    """A lobby-only room with a host on its dashboard."""
    room = lobby_room(gateway)
    return room, admit(gateway, room, "Hilde Host", role="host")


def test_a_lobby_only_rooms_host_enters_with_their_invite(gateway: GatewayServer) -> None:
    # `meetgate room create … --no-invite`: the lobby is the attendees' only way in, yet the
    # host's own link admits the host (the policy governs attendees, not hosts).
    room = lobby_room(gateway, invite=False)
    host_link = f"/j/{gateway.invite_token(gateway.create_invite(room, 'Hilde', role='host'))}"
    with browser(gateway) as client:
        assert client.get(host_link).status_code == 200
        entered = client.post(host_link, headers={"origin": gateway.url})
        assert entered.status_code == 303, entered.text
        assert ticket_claims(entered.headers["location"])["context"]["user"]["moderator"] is True
        assert client.get(f"/_meetgate/host/{room}").status_code == 200
    # An attendee's invite still does not pass a room whose policy turned invites off.
    guest_link = f"/j/{gateway.invite_token(gateway.create_invite(room, 'Ada'))}"
    with browser(gateway) as client:
        refused = client.post(guest_link, headers={"origin": gateway.url})
    assert refused.status_code == 403 and "<code>not_allowed</code>" in refused.text


# The journey


def test_a_guest_knocks_a_host_lets_them_in_and_they_land_in_the_meeting(
    gateway: GatewayServer, assembly: tuple[str, Admitted]
) -> None:
    room, host = assembly
    with browser(gateway) as guest:
        gate = guest.get(f"/_meetgate/enter/{room}")
        assert gate.status_code == 200 and f'action="/_meetgate/lobby/{room}"' in gate.text

        knocked = knock(guest, gateway, room, "  Gina Guest ", "From the tenants' union")
        assert knocked.status_code == 303
        assert knocked.headers["location"] == f"/_meetgate/lobby/{room}/wait"
        set_cookie = knocked.headers["set-cookie"]
        assert set_cookie.startswith("meetgate-lobby=")
        for attribute in ("HttpOnly", "Path=/", "SameSite=lax"):
            assert attribute.lower() in set_cookie.lower()
        assert "meetgate" not in {c for c in guest.cookies if c != "meetgate-lobby"}

        page = guest.get(knocked.headers["location"])
        assert page.status_code == 200
        assert "Waiting for a host" in page.text and "Gina Guest (guest)" in page.text
        assert "tenants&#39; union" in page.text
        assert "Check again" in page.text and 'method="get"' in page.text
        assert "/_meetgate/static/lobby.js" in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert status(guest, room).json() == {
            "state": "waiting",
            "next": f"/_meetgate/lobby/{room}/wait",
        }

        [request] = waiting(gateway, host)
        assert set(request) == WAITING_KEYS
        assert request["name"] == "Gina Guest (guest)" and request["guest"] is True
        assert request["message"] == "From the tenants' union"
        assert request["via"] == "lobby"
        assert time.time() - 60 < request["since"] <= time.time() + 1
        assert lobby_cookie(guest).split(".")[1] not in json.dumps(roster(gateway, host))

        answer = host_action(gateway, host, "approve", request=request["id"])
        assert answer == {"ok": True, "done": True, "message": "Gina Guest (guest) was let in."}
        assert waiting(gateway, host) == []
        assert status(guest, room).json()["state"] == "approved"

        # The waiting page's next check collects the admission and goes into the meeting.
        landed = guest.get(f"/_meetgate/lobby/{room}/wait")
        assert landed.status_code == 303, landed.text
        location = landed.headers["location"]
        assert location.startswith(f"/{room}#jwt=")
        claims = ticket_claims(location)
        assert claims["room"] == room
        assert claims["context"]["user"]["name"] == "Gina Guest (guest)"
        assert claims["context"]["user"].get("moderator") in (None, False, "false")
        assert "meetgate" in guest.cookies and "meetgate-lobby" not in guest.cookies
        meeting = guest.get(f"/{room}")
        assert meeting.status_code == 200 and "Jitsi Meet test page" in meeting.text

        # The approval is spent: the same check again finds no request.
        assert guest.get(f"/_meetgate/lobby/{room}/wait").status_code == 404

    people = roster(gateway, host)
    guest_entry = next(p for p in people["participants"] if p["name"] == "Gina Guest (guest)")
    assert guest_entry["role"] == "attendee" and guest_entry["via"].split(":")[0] == "lobby"
    # The log says that a guest was let in, not who: kept for a month, names of approvals would
    # make it a list of who attended.
    assert [(e["action"], e["detail"], e["target"]) for e in people["audit"]] == [
        ("approve", "", "")
    ]
    assert "Gina" not in json.dumps(people["audit"])


def test_the_event_stream_says_when_a_host_answered(
    gateway: GatewayServer, assembly: tuple[str, Admitted]
) -> None:
    room, host = assembly
    with browser(gateway) as guest:
        assert knock(guest, gateway, room, "Sam Stream").status_code == 303
        url = f"/_meetgate/lobby/{room}/events"
        seen: list[dict[str, Any]] = []
        started = time.monotonic()
        with guest.stream("GET", url, timeout=httpx.Timeout(10)) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            assert stream.headers["cache-control"] == "no-store"
            lines = stream.iter_lines()
            for line in lines:
                if line.startswith("data: "):
                    seen.append(json.loads(line[len("data: ") :]))
                    if seen[-1]["state"] == "waiting":
                        host_action(
                            gateway,
                            host,
                            "approve",
                            request=request_of(gateway, host, "Sam Stream (guest)"),
                        )
                    else:
                        break
            # The stream ends by itself once the request is answered.
            assert [line for line in lines if line.startswith("data: ")] == []
        assert time.monotonic() - started < 8
        assert [s["state"] for s in seen] == ["waiting", "approved"]
        assert seen[-1]["next"] == f"/_meetgate/lobby/{room}/wait"
        assert guest.get(seen[-1]["next"]).headers["location"].startswith(f"/{room}#jwt=")


def test_streams_and_status_need_the_waiting_browsers_cookie(
    gateway: GatewayServer, assembly: tuple[str, Admitted]
) -> None:
    room, _ = assembly
    with browser(gateway) as stranger:
        for path in ("wait", "status", "events"):
            response = stranger.get(
                f"/_meetgate/lobby/{room}/{path}", headers={"accept": "application/json"}
            )
            assert response.status_code == 404, path
            assert response.json()["error"] == "lobby_request_unknown"
        page = stranger.get(f"/_meetgate/lobby/{room}/wait")
        assert page.status_code == 404 and "No request waiting" in page.text


# The other answers


def test_a_denied_guest_sees_a_clear_page_and_may_ask_again(
    gateway: GatewayServer, assembly: tuple[str, Admitted]
) -> None:
    room, host = assembly
    with browser(gateway) as guest:
        knock(guest, gateway, room, "Dora Denied")
        answer = host_action(
            gateway, host, "deny", request=request_of(gateway, host, "Dora Denied (guest)")
        )
        assert (
            answer["done"] is True and answer["message"] == "Dora Denied (guest) was turned away."
        )
        assert status(guest, room).json()["state"] == "denied"
        page = guest.get(f"/_meetgate/lobby/{room}/wait")
        assert page.status_code == 403 and "did not let you in" in page.text
        assert "meetgate" not in guest.cookies
        # Not in: the room's page sends it back to the gate.
        assert guest.get(f"/{room}").status_code != 200
        again = knock(guest, gateway, room, "Dora Denied")
        assert again.status_code == 303
    assert [w["name"] for w in waiting(gateway, host)] == ["Dora Denied (guest)"]
    assert roster(gateway, host)["audit"][0]["action"] == "deny"


def test_deny_and_ban_keeps_the_guest_from_knocking_again(
    gateway: GatewayServer, assembly: tuple[str, Admitted]
) -> None:
    room, host = assembly
    address = new_address()
    with browser(gateway, address) as troll:
        knock(troll, gateway, room, "Wang Dan", "let me in")
        request = request_of(gateway, host, "Wang Dan (guest)")
        # Without confirmed=1 the script-less dashboard asks first, naming the person.
        with gateway.client(cookies=host.cookies) as client:
            ask = client.post(
                f"/_meetgate/host/{room}/deny-ban",
                data={"csrf": csrf_token(gateway, host), "request": request},
                headers={"origin": gateway.url},
            )
        assert ask.status_code == 200
        assert "Turn Wang Dan (guest) away and ban them?" in ask.text
        assert f'name="request" value="{request}"' in ask.text
        assert len(waiting(gateway, host)) == 1

        answer = host_action(gateway, host, "deny-ban", request=request)
        assert answer["message"] == "Wang Dan (guest) was turned away and banned."
        page = troll.get(f"/_meetgate/lobby/{room}/wait")
        assert page.status_code == 403 and "barred you" in page.text
        again = knock(troll, gateway, room, "Wang Dan")
        assert again.status_code == 403 and "barred" in again.text
    with browser(gateway, address) as same_address_new_browser:
        refused = knock(same_address_new_browser, gateway, room, "Someone Else")
        assert refused.status_code == 403
    assert waiting(gateway, host) == []
    audit = roster(gateway, host)["audit"][0]
    assert (audit["action"], audit["detail"]) == ("deny and ban", "Wang Dan (guest)")
    # Whom, as this room's evidence names them: a pseudonym of this room only.
    assert re.fullmatch(r"a-[a-z2-7]{16}", audit["target"]), audit["target"]


def test_answering_twice_or_an_unknown_request_changes_nothing(
    gateway: GatewayServer, assembly: tuple[str, Admitted]
) -> None:
    room, host = assembly
    with browser(gateway) as guest:
        knock(guest, gateway, room, "Ada Twice")
        request = request_of(gateway, host, "Ada Twice (guest)")
        assert host_action(gateway, host, "approve", request=request)["done"] is True
        for action in ("approve", "deny", "deny-ban"):
            again = host_action(gateway, host, action, request=request)
            assert again["done"] is False and "already answered" in again["message"]
        for bogus in ("0" * 32, "not-an-id", request.upper()):
            assert host_action(gateway, host, "deny", request=bogus)["done"] is False
        assert status(guest, room).json()["state"] == "approved"
    assert [e["action"] for e in roster(gateway, host)["audit"]] == ["approve"]


def test_lobby_answers_need_a_host_of_that_room_and_the_csrf_token(
    gateway: GatewayServer, assembly: tuple[str, Admitted]
) -> None:
    room, host = assembly
    other_room = lobby_room(gateway)
    other_host = admit(gateway, other_room, "Other Host", role="host")
    with browser(gateway) as guest:
        knock(guest, gateway, room, "Carla Careful")
        request = request_of(gateway, host, "Carla Careful (guest)")
        token = csrf_token(gateway, host)
        for action in ("approve", "deny", "deny-ban"):
            fields = {"request": request, "confirmed": "1"}
            nobody = post_lobby_action(gateway, None, room, action, csrf=token, **fields)
            assert nobody.status_code == 403 and nobody.json()["error"] == "not_admitted"
            stranger = post_lobby_action(
                gateway, other_host, room, action, csrf=csrf_token(gateway, other_host), **fields
            )
            assert stranger.status_code == 403 and stranger.json()["error"] == "not_host"
            # Another room's host cannot answer it from their own dashboard either.
            own = post_lobby_action(
                gateway,
                other_host,
                other_room,
                action,
                csrf=csrf_token(gateway, other_host),
                **fields,
            )
            assert own.status_code == 200 and own.json()["done"] is False
            for csrf in ("", "0" * 64, token[:-1] + ("0" if token[-1] != "0" else "1")):
                forged = post_lobby_action(gateway, host, room, action, csrf=csrf, **fields)
                assert forged.status_code == 403 and forged.json()["error"] == "csrf_failed"
            with gateway.client(cookies=host.cookies) as c:
                cross = c.post(
                    f"/_meetgate/host/{room}/{action}",
                    data={"csrf": token, **fields},
                    headers={"origin": "https://evil.example", "accept": "application/json"},
                )
            assert cross.status_code == 403 and cross.json()["error"] == "cross_site_request"
        missing = post_lobby_action(gateway, host, room, "approve", csrf=token, confirmed="1")
        assert missing.status_code == 400 and missing.json()["error"] == "invalid_input"
        assert status(guest, room).json()["state"] == "waiting"
    assert [w["name"] for w in waiting(gateway, host)] == ["Carla Careful (guest)"]
    with gateway.client(cookies=other_host.cookies) as c:
        assert c.get(f"/_meetgate/host/{other_room}/roster").json()["lobby"] == []


# Forged and foreign cookies


def test_no_other_browser_can_collect_someone_elses_approval(
    gateway: GatewayServer, assembly: tuple[str, Admitted]
) -> None:
    room, host = assembly
    with browser(gateway) as alice, browser(gateway) as mallory:
        knock(alice, gateway, room, "Alice Approved")
        knock(mallory, gateway, room, "Mallory")
        alice_id, alice_secret = lobby_cookie(alice).split(".")
        mallory_id, mallory_secret = lobby_cookie(mallory).split(".")
        assert alice_id == request_of(gateway, host, "Alice Approved (guest)")
        assert host_action(gateway, host, "approve", request=alice_id)["done"] is True

        forged = [
            alice_id,  # the id a host sees is not a key
            f"{alice_id}.{mallory_secret}",
            f"{alice_id}.{secrets.token_urlsafe(32)}",
            f"{alice_id}.{alice_secret[:-1]}",
            f"{mallory_id}.{alice_secret}",
        ]
        for value in forged:
            with browser(gateway) as thief:
                thief.cookies.set("meetgate-lobby", value)
                response = thief.get(f"/_meetgate/lobby/{room}/wait")
                assert response.status_code == 404, value
                assert "meetgate" not in thief.cookies
        # Mallory's own cookie shows Mallory's own (still waiting) request.
        page = mallory.get(f"/_meetgate/lobby/{room}/wait")
        assert page.status_code == 200 and "Mallory (guest)" in page.text
        assert "meetgate" not in mallory.cookies
        # Alice's good cookie for another room's lobby finds nothing.
        elsewhere = alice.get(f"/_meetgate/lobby/{lobby_room(gateway)}/wait")
        assert elsewhere.status_code == 404
        landed = alice.get(f"/_meetgate/lobby/{room}/wait")
        assert landed.status_code == 303 and landed.headers["location"].startswith(f"/{room}#")


# Bounds and bad input


def test_a_flood_of_requests_is_bounded_per_address(
    gateway: GatewayServer, assembly: tuple[str, Admitted]
) -> None:
    room, host = assembly
    address = new_address()
    for i in range(MAX_PER_ADDRESS):
        with browser(gateway, address) as client:
            assert knock(client, gateway, room, f"Flood {i}").status_code == 303
    with browser(gateway, address) as client:
        refused = knock(client, gateway, room, "Flood over")
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) > 0
        assert "Too many requests to join are waiting from your address" in refused.text
        as_json = client.post(
            f"/_meetgate/lobby/{room}",
            data={"name": "Flood JSON"},
            headers={"origin": gateway.url, "accept": "application/json"},
        )
        assert as_json.status_code == 429 and as_json.json()["error"] == "lobby_full"
    assert len(waiting(gateway, host)) == MAX_PER_ADDRESS
    # One browser asking again replaces its own request rather than adding one.
    with browser(gateway) as eager:
        for _ in range(MAX_PER_ADDRESS + 2):
            assert knock(eager, gateway, room, "Eager Eddie").status_code == 303
        assert status(eager, room).json()["state"] == "waiting"
    assert [w["name"] for w in waiting(gateway, host)].count("Eager Eddie (guest)") == 1


def test_a_flood_of_requests_is_bounded_per_room(
    gateway: GatewayServer, assembly: tuple[str, Admitted]
) -> None:
    room, host = assembly
    for i in range(MAX_PER_ROOM):
        with browser(gateway) as client:
            assert knock(client, gateway, room, f"Crowd {i}").status_code == 303
    with browser(gateway) as client:
        refused = knock(client, gateway, room, "One too many")
    assert refused.status_code == 429
    assert "Too many people are waiting for this meeting" in refused.text
    assert len(waiting(gateway, host)) == MAX_PER_ROOM
    # Another room's lobby is not affected.
    with browser(gateway) as client:
        assert knock(client, gateway, lobby_room(gateway), "Next door").status_code == 303


@pytest.mark.parametrize(
    ("name", "status_code"),
    [
        ("", 400),
        ("   ", 400),
        ("x" * 65, 400),
        ("x" * 10_000, 413),
        ("Ada\x00", 400),
        ("Ad\x1ba", 400),
        ("Ada\u202eevil", 400),
        ("\u2067Hilde Host", 400),
        ("Hilde\u200bHost", 400),
        # The display-name rules an invite's name passes: stacked marks draw over the names
        # around them; blank letters show as nobody.
        ("Z" + "\u0336" * 5 + "algo", 400),
        ("\u3164\u3164", 400),
    ],
)
def test_names_that_cannot_be_shown_are_refused(
    gateway: GatewayServer, assembly: tuple[str, Admitted], name: str, status_code: int
) -> None:
    room, host = assembly
    with browser(gateway) as client:
        refused = knock(client, gateway, room, name)
        assert refused.status_code == status_code, refused.text
        assert "meetgate-lobby" not in client.cookies
    assert waiting(gateway, host) == []


def test_a_guest_cannot_pass_for_a_host(
    gateway: GatewayServer, assembly: tuple[str, Admitted]
) -> None:
    room, host = assembly
    look_alikes = [
        "Hilde Host",
        "H\N{CYRILLIC SMALL LETTER BYELORUSSIAN-UKRAINIAN I}lde Host",
        "HILDE HOST (2)",
    ]
    shown = []
    for typed in look_alikes:
        with browser(gateway) as guest:
            assert knock(guest, gateway, room, typed).status_code == 303
            [request] = waiting(gateway, host)
            # What the host is asked about already says that nobody vouched for the name.
            assert request["name"].endswith(" (guest)") and request["guest"] is True
            host_action(gateway, host, "approve", request=request["id"])
            landed = guest.get(f"/_meetgate/lobby/{room}/wait")
            assert landed.status_code == 303, landed.text
            shown.append(ticket_claims(landed.headers["location"])["context"]["user"]["name"])
    assert shown == [
        "Hilde Host (guest) (2)",
        "H\N{CYRILLIC SMALL LETTER BYELORUSSIAN-UKRAINIAN I}lde Host (guest) (3)",
        "HILDE HOST (guest) (4)",
    ]


def test_messages_are_short_and_clean(
    gateway: GatewayServer, assembly: tuple[str, Admitted]
) -> None:
    room, host = assembly
    with browser(gateway) as client:
        assert knock(client, gateway, room, "Max", "m" * 121).status_code == 400
        assert knock(client, gateway, room, "Max", "hello\u202e").status_code == 400
        assert knock(client, gateway, room, "Max", "<script>x</script>").status_code == 303
        page = client.get(f"/_meetgate/lobby/{room}/wait")
        assert "<script>x" not in page.text and "&lt;script&gt;x" in page.text
    [request] = waiting(gateway, host)
    assert request["message"] == "<script>x</script>"
    with gateway.client(cookies=host.cookies) as client:
        dashboard = client.get(f"/_meetgate/host/{room}")
    assert "&lt;script&gt;x&lt;/script&gt;" in dashboard.text


def test_a_typed_name_is_only_enough_where_the_lobby_is_the_only_way_in(
    gateway: GatewayServer,
) -> None:
    plain = lobby_room(gateway, lobby=False)
    code_and_lobby = lobby_room(gateway, email_code=True)
    for room in (plain, code_and_lobby):
        with browser(gateway) as client:
            refused = knock(client, gateway, room, "Gate Crasher")
            assert refused.status_code == 403, room
            assert "meetgate-lobby" not in client.cookies
    with browser(gateway) as client:
        assert knock(client, gateway, "no-such-room", "Nobody").status_code == 404
        cross = client.post(
            f"/_meetgate/lobby/{plain}",
            data={"name": "Gate Crasher"},
            headers={"origin": "https://evil.example"},
        )
        assert cross.status_code == 403


def test_stop_waiting_takes_the_request_off_the_hosts_list(
    gateway: GatewayServer, assembly: tuple[str, Admitted]
) -> None:
    room, host = assembly
    with browser(gateway) as guest:
        knock(guest, gateway, room, "Lena Leaving")
        assert len(waiting(gateway, host)) == 1
        left = guest.post(
            f"/_meetgate/lobby/{room}/leave", data={"leave": "1"}, headers={"origin": gateway.url}
        )
        assert left.status_code == 303 and left.headers["location"] == f"/_meetgate/enter/{room}"
        assert "meetgate-lobby" not in guest.cookies
    assert waiting(gateway, host) == []


# Lock and lockdown


def test_during_a_lockdown_newcomers_wait_in_the_lobby(gateway: GatewayServer) -> None:
    room = f"locked-{secrets.token_hex(4)}"
    gateway.create_room(room)
    host = admit(gateway, room, "Hilde Host", role="host")
    assert host_action(gateway, host, "lockdown")["done"] is True
    late = gateway.invite_token(gateway.create_invite(room, "Lara Latecomer"))
    with browser(gateway) as latecomer:
        queued = latecomer.post(f"/j/{late}", headers={"origin": gateway.url})
        assert queued.status_code == 303
        assert queued.headers["location"] == f"/_meetgate/lobby/{room}/wait"
        [request] = waiting(gateway, host)
        # Invited, so verified: no guest marker.
        assert request["name"] == "Lara Latecomer" and request["guest"] is False
        assert request["via"] == "invite"
        # A host still walks straight in.
        co_host = gateway.invite_token(gateway.create_invite(room, "Co Host", role="host"))
        with browser(gateway) as client:
            walked_in = client.post(f"/j/{co_host}", headers={"origin": gateway.url})
            assert walked_in.headers["location"].startswith(f"/{room}#jwt=")
        host_action(gateway, host, "approve", request=request["id"])
        landed = latecomer.get(f"/_meetgate/lobby/{room}/wait")
        assert landed.status_code == 303
        assert ticket_claims(landed.headers["location"])["context"]["user"]["name"] == (
            "Lara Latecomer"
        )
        assert latecomer.get(f"/{room}").status_code == 200


def test_a_locked_lobby_room_still_queues(
    gateway: GatewayServer, assembly: tuple[str, Admitted]
) -> None:
    room, host = assembly
    assert host_action(gateway, host, "lock")["done"] is True
    with browser(gateway) as guest:
        assert knock(guest, gateway, room, "Patient Pat").status_code == 303
        host_action(
            gateway, host, "approve", request=request_of(gateway, host, "Patient Pat (guest)")
        )
        assert guest.get(f"/_meetgate/lobby/{room}/wait").status_code == 303


def test_a_corrupt_lobby_request_lets_nobody_in_and_the_others_are_still_listed(
    redis_lobby_gateway: tuple[GatewayServer, str],
) -> None:
    gateway, redis_url = redis_lobby_gateway
    room = lobby_room(gateway)
    host = admit(gateway, room, "Hilde Host", role="host")
    store = redis.Redis.from_url(redis_url, decode_responses=True)
    with browser(gateway) as good, browser(gateway) as approved, browser(gateway) as pending:
        for guest, name in (
            (good, "Gina Good"),
            (approved, "Mallory One"),
            (pending, "Mallory Two"),
        ):
            assert knock(guest, gateway, room, name).status_code == 303
        request = request_of(gateway, host, "Mallory One (guest)")
        assert host_action(gateway, host, "approve", request=request)["done"] is True
        # Both Mallorys' records are replaced by what does not parse (in the Redis key layout:
        # gateway/store/redis.py's values, the lobby's own keys).
        for guest, bad in ((approved, "{}"), (pending, "not json")):
            request_id = lobby_cookie(guest).split(".")[0]
            assert store.set(f"meetgate:value:lobby:request:{request_id}", bad, keepttl=True)

        # No way in: the approved one's check finds no request (404, not a 500), no ticket.
        for guest in (approved, pending):
            page = guest.get(f"/_meetgate/lobby/{room}/wait")
            assert page.status_code == 404, page.text
            assert "location" not in page.headers and "meetgate" not in guest.cookies
            assert status(guest, room).status_code == 404
        # The hosts' list renders, with the request that parses.
        assert [w["name"] for w in waiting(gateway, host)] == ["Gina Good (guest)"]
        dashboard = httpx.get(
            f"{gateway.url}/_meetgate/host/{room}",
            cookies=host.cookies,
            trust_env=False,
            verify=TLS,
        )
        assert dashboard.status_code == 200 and "Gina Good (guest)" in dashboard.text
    store.close()
    with gateway.admin() as admin:
        text = admin.get("/metrics").text
    assert re.search(r'meetgate_store_corrupt_records_total\{kind="lobby"\} [1-9]', text)
    log = gateway.log_path.read_text()
    assert "record of kind lobby that does not parse" in log
    assert "Mallory" not in log
