"""The gate over HTTP, end to end: join link → admission → ticket → proxied Jitsi paths.

Runs against the real `meetgate serve` (memory and Redis stores) in front of a real web server
playing Jitsi's web files.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
from typing import Any

import httpx
import pytest

from tests.fixtures.gateway_server import GatewayServer
from tests.fixtures.http_clients import TLS
from tests.fixtures.in_process import in_process_gateway
from tests.fixtures.processes import free_port
from tests.integration.journeys import admission_id, admit, host_action

pytestmark = pytest.mark.slow


def new_room(gateway: GatewayServer) -> str:
    name = f"room-{secrets.token_hex(4)}"
    gateway.create_room(name, title="Weekly sync")
    return name


def browser(gateway: GatewayServer) -> httpx.Client:
    return gateway.client(timeout=30)


def join(
    client: httpx.Client, gateway: GatewayServer, room: str, name: str = "Ada", **body: Any
) -> httpx.Response:
    invite = gateway.create_invite(room, name, **body)
    return client.post(f"/j/{gateway.invite_token(invite)}", headers={"origin": gateway.url})


def jwt_claims(location: str) -> dict[str, Any]:
    token = location.split("#jwt=", 1)[1]
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def test_join_link_admits_and_proxies_the_meeting(
    any_gateway: GatewayServer, jitsi_web: Any
) -> None:
    room = new_room(any_gateway)
    invite = any_gateway.create_invite(room, "Ada Lovelace", role="host")
    token = any_gateway.invite_token(invite)
    with browser(any_gateway) as client:
        landing = client.get(f"/j/{token}")
        assert landing.status_code == 200
        assert "Ada Lovelace" in landing.text and "Weekly sync" in landing.text
        assert "default-src 'none'" in landing.headers["content-security-policy"]

        joined = client.post(f"/j/{token}", headers={"origin": any_gateway.url})
        assert joined.status_code == 303
        location = joined.headers["location"]
        assert location.startswith(f"/{room}#jwt=")
        claims = jwt_claims(location)
        assert claims["room"] == room
        assert claims["context"]["user"]["name"] == "Ada Lovelace"
        assert claims["context"]["user"]["moderator"] is True
        cookie = joined.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie and "path=/" in cookie

        page = client.get(f"/{room}")
        assert page.status_code == 200
        assert "Jitsi Meet test page" in page.text

        bundle = client.get("/libs/app.bundle.min.js")
        assert bundle.status_code == 200
        assert len(bundle.content) == 3 * 1024 * 1024
        assert hashlib.sha256(bundle.content).hexdigest() == jitsi_web.bundle_sha256
        assert len(client.get("/libs/small.js").content) == 2048


def test_large_file_is_streamed_intact(gateway: GatewayServer, jitsi_web: Any) -> None:
    room = new_room(gateway)
    with browser(gateway) as client:
        assert join(client, gateway, room).status_code == 303
        digest = hashlib.sha256()
        with client.stream("GET", "/libs/app.bundle.min.js") as response:
            assert response.status_code == 200
            chunks = 0
            for chunk in response.iter_raw():
                digest.update(chunk)
                chunks += 1
        assert digest.hexdigest() == jitsi_web.bundle_sha256
        assert chunks > 1


@pytest.mark.parametrize(
    "path", ["/", "/some-room", "/config.js", "/libs/app.bundle.min.js", "/static/_test/headers"]
)
def test_nothing_is_proxied_without_admission(gateway: GatewayServer, path: str) -> None:
    with browser(gateway) as client:
        response = client.get(path)
    assert "Jitsi Meet test page" not in response.text
    assert "x-test-upstream" not in response.headers
    if path != "/":
        assert response.status_code == 403
        assert "not admitted" in response.text


def test_admission_is_for_its_own_room_only(gateway: GatewayServer) -> None:
    room, other = new_room(gateway), new_room(gateway)
    with browser(gateway) as client:
        join(client, gateway, room)
        assert client.get(f"/{room}").status_code == 200
        assert client.get(f"/{other}").status_code == 403


@pytest.mark.parametrize(
    "cookie",
    [
        "A" * 43,
        "not-a-cookie",
        "",
        "x" * 5000,
        "'; DROP TABLE admissions; --",
    ],
)
def test_forged_cookie_is_refused(gateway: GatewayServer, cookie: str) -> None:
    room = new_room(gateway)
    with browser(gateway) as client:
        response = client.get(f"/{room}", headers={"cookie": f"meetgate={cookie}"})
    assert response.status_code in (403, 431)


def test_deleted_room_kills_its_admissions(gateway: GatewayServer) -> None:
    room = new_room(gateway)
    with browser(gateway) as client:
        join(client, gateway, room)
        assert client.get(f"/{room}").status_code == 200
        with gateway.admin() as admin:
            assert admin.delete(f"/api/v1/rooms/{room}").status_code == 204
        response = client.get(f"/{room}")
        assert response.status_code == 403
        assert client.get("/config.js").status_code == 403


def invite_uses(gateway: GatewayServer, room: str) -> list[int]:
    with gateway.admin() as admin:
        return [i["uses"] for i in admin.get(f"/api/v1/rooms/{room}/invites").json()]


def test_used_up_invite_says_so_and_changes_nothing(any_gateway: GatewayServer) -> None:
    room = new_room(any_gateway)
    invite = any_gateway.create_invite(room, "Ada")
    token = any_gateway.invite_token(invite)
    with browser(any_gateway) as client:
        assert client.post(f"/j/{token}", headers={"origin": any_gateway.url}).status_code == 303
    with browser(any_gateway) as another:
        again = another.post(f"/j/{token}", headers={"origin": any_gateway.url})
        assert again.status_code == 410
        assert "already been used" in again.text
        assert another.get(f"/j/{token}").status_code == 410
    assert invite_uses(any_gateway, room) == [1]


def test_reopening_ones_own_used_link_goes_back_into_the_meeting(
    any_gateway: GatewayServer,
) -> None:
    # The browser still admitted through the link is sent back in with a fresh ticket, as the
    # ticket refresh would; any other browser gets the 410, and this one once removed the page
    # saying a host removed it.
    room = new_room(any_gateway)
    host = admit(any_gateway, room, "Hilde", role="host")
    token = any_gateway.invite_token(any_gateway.create_invite(room, "Ada"))
    with browser(any_gateway) as ada:
        first = ada.post(f"/j/{token}", headers={"origin": any_gateway.url})
        assert first.status_code == 303
        admitted_as = jwt_claims(first.headers["location"])["adm"]
        for again in (ada.get(f"/j/{token}"), ada.post(f"/j/{token}", headers=origin(any_gateway))):
            assert again.status_code == 303, again.text
            assert again.headers["location"].startswith(f"/{room}#jwt=")
            assert jwt_claims(again.headers["location"])["adm"] == admitted_as
            assert "set-cookie" not in again.headers
        with browser(any_gateway) as another:
            assert another.get(f"/j/{token}").status_code == 410
            assert another.post(f"/j/{token}", headers=origin(any_gateway)).status_code == 410
        host_action(any_gateway, host, "revoke", admission=admission_id(any_gateway, host, "Ada"))
        for removed in (
            ada.get(f"/j/{token}"),
            ada.post(f"/j/{token}", headers=origin(any_gateway)),
        ):
            assert removed.status_code == 403 and "removed you" in removed.text
    assert sorted(invite_uses(any_gateway, room)) == [1, 1]


def test_sending_a_shared_links_form_again_goes_back_in_as_oneself(
    any_gateway: GatewayServer,
) -> None:
    # A link for several people (max_uses 3) sent again by a browser admitted through it: the
    # same participant, not "Linus (2)" by a second use. Another holder is another participant;
    # a browser whose admission was removed is refused, counting no use (test_removed_relink).
    room = new_room(any_gateway)
    host = admit(any_gateway, room, "Hilde", role="host")
    token = any_gateway.invite_token(any_gateway.create_invite(room, "Linus", max_uses=3))
    with browser(any_gateway) as linus:
        first = linus.post(f"/j/{token}", headers=origin(any_gateway))
        assert first.status_code == 303
        admitted_as = jwt_claims(first.headers["location"])["adm"]
        again = linus.post(f"/j/{token}", headers=origin(any_gateway))
        assert again.status_code == 303, again.text
        assert jwt_claims(again.headers["location"])["adm"] == admitted_as
        assert "set-cookie" not in again.headers
        assert sorted(invite_uses(any_gateway, room)) == [1, 1]  # the host's and Linus's
        with browser(any_gateway) as another:
            other = another.post(f"/j/{token}", headers=origin(any_gateway))
            assert other.status_code == 303
            assert jwt_claims(other.headers["location"])["adm"] != admitted_as
        assert sorted(invite_uses(any_gateway, room)) == [1, 2]
        cookie_name = next(iter(linus.cookies.keys()))
        host_action(any_gateway, host, "revoke", admission=admitted_as)
        removed = linus.post(f"/j/{token}", headers=origin(any_gateway))
        assert removed.status_code == 403 and "removed you" in removed.text
        assert sorted(invite_uses(any_gateway, room)) == [1, 2]
    with browser(any_gateway) as third:
        assert third.post(f"/j/{token}", headers=origin(any_gateway)).status_code == 303
    assert sorted(invite_uses(any_gateway, room)) == [1, 3]
    # A cookie of the right shape that names no admission opens nothing: the link is used up.
    with browser(any_gateway) as forger:
        forged = {**origin(any_gateway), "cookie": f"{cookie_name}={'A' * 43}"}
        assert forger.post(f"/j/{token}", headers=forged).status_code == 410


def origin(gateway: GatewayServer) -> dict[str, str]:
    return {"origin": gateway.url}


@pytest.mark.parametrize(
    "token",
    [
        "A" * 32,  # well-formed but unknown
        "short",
        "A" * 200,
        "%2e%2e%2f%2e%2e",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA%00",
    ],
)
def test_unknown_and_malformed_invites(any_gateway: GatewayServer, token: str) -> None:
    with browser(any_gateway) as client:
        for response in (
            client.get(f"/j/{token}"),
            client.post(f"/j/{token}", headers={"origin": any_gateway.url}),
        ):
            assert response.status_code in (400, 404)
            assert "set-cookie" not in response.headers
            assert "Traceback" not in response.text
            # Refused by the gate itself, with a page that names this request, not another.
            assert f"request {response.headers['x-request-id']}" in response.text


def test_revoked_invite(gateway: GatewayServer) -> None:
    room = new_room(gateway)
    invite = gateway.create_invite(room, "Ada")
    with gateway.admin() as admin:
        assert admin.delete(f"/api/v1/invites/{invite['id']}").status_code == 204
    with browser(gateway) as client:
        response = client.post(
            f"/j/{gateway.invite_token(invite)}", headers={"origin": gateway.url}
        )
    assert response.status_code == 410
    assert "withdrawn" in response.text


def test_cross_site_post_is_refused_and_the_invite_kept(gateway: GatewayServer) -> None:
    room = new_room(gateway)
    invite = gateway.create_invite(room, "Ada")
    token = gateway.invite_token(invite)
    with browser(gateway) as client:
        response = client.post(f"/j/{token}", headers={"origin": "https://evil.example"})
        assert response.status_code == 403
        response = client.post(f"/j/{token}", headers={"sec-fetch-site": "cross-site"})
        assert response.status_code == 403
    assert invite_uses(gateway, room) == [0]


async def test_racing_browsers_on_a_single_use_link(any_gateway: GatewayServer) -> None:
    room = new_room(any_gateway)
    token = any_gateway.invite_token(any_gateway.create_invite(room, "Ada"))
    async with httpx.AsyncClient(base_url=any_gateway.url, trust_env=False, verify=TLS) as client:
        responses = await asyncio.gather(
            *(client.post(f"/j/{token}", headers={"origin": any_gateway.url}) for _ in range(12))
        )
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(303) == 1
    assert statuses.count(410) == 11


def test_forwarded_headers_are_set_by_the_gate(gateway: GatewayServer) -> None:
    room = new_room(gateway)
    with browser(gateway) as client:
        join(client, gateway, room)
        admission_cookie = client.cookies["meetgate"]
        response = client.get(
            "/static/_test/headers",
            headers={
                "x-forwarded-for": "6.6.6.6",
                "forwarded": "for=6.6.6.6",
                "x-real-ip": "6.6.6.6",
                "authorization": "Bearer stolen",
                "connection": "x-secret-hop",
                "x-secret-hop": "1",
                "cookie": f"other=1; meetgate={admission_cookie}",
            },
        )
    seen = {k.lower(): v for k, v in response.json()["headers"]}
    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert seen["host"] == gateway.url.removeprefix("http://")
    assert seen["x-forwarded-proto"] == "http"
    assert "forwarded" not in seen and "x-real-ip" not in seen
    assert "authorization" not in seen and "x-secret-hop" not in seen
    assert "meetgate=" not in seen.get("cookie", "")
    assert "other=1" in seen.get("cookie", "")


@pytest.mark.parametrize(
    "path",
    ["/..%2f..%2fetc/passwd", "/libs/%2e%2e/config.js", "/room%2fx", "/libs/..%5cx"],
)
def test_path_tricks_are_refused(gateway: GatewayServer, path: str) -> None:
    room = new_room(gateway)
    with browser(gateway) as client:
        join(client, gateway, room)
        response = client.get(path)
    assert response.status_code in (400, 404)
    assert "Jitsi Meet test page" not in response.text


def test_oversized_headers_and_body(gateway: GatewayServer) -> None:
    room = new_room(gateway)
    with browser(gateway) as client:
        join(client, gateway, room)
        huge_header = client.get(f"/{room}", headers={"x-filler": "a" * 40_000})
        assert huge_header.status_code in (400, 431)
        huge_body = client.post("/static/_test/headers", content=b"x" * (2 * 1024 * 1024))
        assert huge_body.status_code == 413


def test_upstream_down_shows_a_clear_page(tmp_path: Any) -> None:
    # A page of the gate's own: in the test process (tests/fixtures/in_process.py).
    with in_process_gateway(tmp_path, upstream=f"http://127.0.0.1:{free_port()}") as server:
        room = new_room(server)
        with browser(server) as client:
            join(client, server, room)
            response = client.get(f"/{room}")
        assert response.status_code == 502
        assert "meeting server is unreachable" in response.text


@pytest.mark.parametrize("auth", [None, "Bearer wrong-token", "Basic YWRtaW46YWRtaW4=", "Bearer"])
def test_admin_api_needs_the_token(gateway: GatewayServer, auth: str | None) -> None:
    headers = {"authorization": auth} if auth else {}
    with httpx.Client(base_url=gateway.admin_url, trust_env=False, verify=TLS) as client:
        created = client.post("/api/v1/rooms", json={"name": "intruder"}, headers=headers)
        listed = client.get("/api/v1/rooms", headers=headers)
    assert created.status_code == 401 and listed.status_code == 401
    assert created.json()["error"] == "admin_auth_failed"
    with gateway.admin() as admin:
        assert "intruder" not in [r["name"] for r in admin.get("/api/v1/rooms").json()]


def test_admin_api_refuses_bad_room_names(gateway: GatewayServer) -> None:
    with gateway.admin() as admin:
        for name in ["../x", "Weekly", "a/b", "r\u00e4um", "", "libs", "x" * 65]:
            response = admin.post("/api/v1/rooms", json={"name": name})
            assert response.status_code in (400, 422), name
        assert admin.post("/api/v1/rooms", json={"name": "ok", "extra": 1}).status_code == 422


def test_secrets_never_reach_the_log(gateway: GatewayServer) -> None:
    room = new_room(gateway)
    invite = gateway.create_invite(room, "Ada")
    token = gateway.invite_token(invite)
    with browser(gateway) as client:
        joined = client.post(f"/j/{token}", headers={"origin": gateway.url})
        ticket = joined.headers["location"].split("#jwt=")[1]
        client.get(f"/http-bind?room={room}&token={ticket}")
    log = gateway.log_text()
    assert token not in log
    assert ticket not in log
    assert gateway.admin_token not in log
    assert gateway.ticket_secret not in log


STATIC_ASKED = {"x-forwarded-uri": "/libs/app.js", "x-forwarded-method": "GET"}


def test_forward_auth_for_static_offload(gateway: GatewayServer) -> None:
    room = new_room(gateway)
    with browser(gateway) as client:
        assert client.get("/_meetgate/forward-auth", headers=STATIC_ASKED).status_code == 401
        join(client, gateway, room)
        assert client.get("/_meetgate/forward-auth", headers=STATIC_ASKED).status_code == 204
        # A front that does not say what it serves, or serves anything but a GET or HEAD of a
        # static file, is told no even on a live cookie.
        assert client.get("/_meetgate/forward-auth").status_code == 404
        no_method = {"x-forwarded-uri": "/libs/app.js"}
        assert client.get("/_meetgate/forward-auth", headers=no_method).status_code == 404
        post = {**STATIC_ASKED, "x-forwarded-method": "POST"}
        assert client.get("/_meetgate/forward-auth", headers=post).status_code == 404
        head = {**STATIC_ASKED, "x-forwarded-method": "HEAD"}
        assert client.get("/_meetgate/forward-auth", headers=head).status_code == 204
        with gateway.admin() as admin:
            admin.delete(f"/api/v1/rooms/{room}")
        assert client.get("/_meetgate/forward-auth", headers=STATIC_ASKED).status_code == 401
    with browser(gateway) as stranger:
        forged = stranger.get(
            "/_meetgate/forward-auth",
            headers={**STATIC_ASKED, "cookie": "meetgate=" + "A" * 43},
        )
        assert forged.status_code == 401
