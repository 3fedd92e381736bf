"""Security headers on the Jitsi responses the gate relays (issue 17), through the real
`meetgate serve` in front of Jitsi's own web server (Debian's nginx with docker-jitsi-meet's and
Debian's routes, tests/fixtures/jitsi_nginx.py) and in front of the test web server (uvicorn):
each header on a page, a script, config.js and an upstream 404; the upstream's Server gone; one
Date on the wire; HSTS only when the gate is served over TLS (an https public_url).
"""

from __future__ import annotations

import email.utils
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.fixtures.gateway_server import GatewayServer, start_gateway
from tests.fixtures.jitsi_nginx import INDEX_MARKER, LAYOUTS, JitsiNginx
from tests.fixtures.processes import stop_process
from tests.integration.journeys import admit, new_room

pytestmark = pytest.mark.slow

# The Permissions-Policy's grants: these four, to the page's own origin, and nothing else.
GRANTED = {"camera", "microphone", "display-capture", "fullscreen"}
TLS_ORIGIN = "https://meet.example.org"
# What a browser asks of Jitsi's web server on the way into a meeting, and one that is not there.
JITSI_PATHS = ("/libs/app.bundle.min.js", "/config.js", "/css/all.css", "/lang/main.json")
MISSING = "/static/no-such-file.js"


@dataclass(frozen=True)
class Browser:
    """An admitted browser of one gate: its room and its admission cookie as a header."""

    gateway: GatewayServer
    room: str
    cookie: str

    def get(self, path: str, method: str = "GET") -> httpx.Response:
        with self.gateway.client(timeout=15) as client:
            return client.request(method, path, headers={"cookie": self.cookie})


@pytest.fixture(scope="module")
def nginx_gates(
    tmp_path_factory: pytest.TempPathFactory, jitsi_nginx: JitsiNginx
) -> Iterator[dict[str, Browser]]:
    """One `meetgate serve` per nginx site (plain HTTP public_url), and one over TLS (its
    public_url https) in front of docker-jitsi-meet's site; an admitted browser of each."""
    browsers: dict[str, Browser] = {}
    processes = []
    try:
        for layout in LAYOUTS:
            server, proc = start_gateway(
                tmp_path_factory.mktemp(f"headers-{layout}"), upstream=jitsi_nginx.url(layout)
            )
            processes.append(proc)
            room = new_room(server)
            browsers[layout] = Browser(server, room, f"meetgate={admit(server, room).cookie}")
        with pytest.MonkeyPatch.context() as env:
            # The gate behind a TLS front: it knows from its public_url alone.
            env.setenv("MEETGATE_PUBLIC_URL", TLS_ORIGIN)
            server, proc = start_gateway(
                tmp_path_factory.mktemp("headers-tls"), upstream=jitsi_nginx.url("docker")
            )
        processes.append(proc)
        room = new_room(server)
        browsers["tls"] = Browser(server, room, admit_over_tls(server, room))
        yield browsers
    finally:
        for proc in processes:
            stop_process(proc)


def admit_over_tls(gateway: GatewayServer, room: str) -> str:
    """Join through an invite as a browser on TLS_ORIGIN; the `__Host-` cookie, as a header (it is
    Secure, so a client on plain HTTP would keep it to itself)."""
    invite = gateway.create_invite(room, "Ada")
    with gateway.client() as client:
        joined = client.post(f"/j/{gateway.invite_token(invite)}", headers={"origin": TLS_ORIGIN})
    assert joined.status_code == 303, joined.text
    set_cookie = joined.headers["set-cookie"]
    assert set_cookie.startswith("__Host-meetgate=") and "Secure" in set_cookie
    return set_cookie.split(";", 1)[0]


def permissions(response: httpx.Response) -> dict[str, str]:
    policy = response.headers["permissions-policy"]
    return dict(item.strip().split("=", 1) for item in policy.split(","))


def assert_jitsi_headers(response: httpx.Response, *, tls: bool) -> None:
    headers = response.headers
    assert headers.get_list("x-content-type-options") == ["nosniff"]
    assert headers.get_list("referrer-policy") == ["no-referrer"]
    assert headers.get_list("x-frame-options") == ["SAMEORIGIN"]
    assert "frame-ancestors 'self'" in headers.get_list("content-security-policy")
    granted = {feature for feature, allow in permissions(response).items() if allow != "()"}
    assert granted == GRANTED
    assert all(permissions(response)[feature] == "(self)" for feature in GRANTED)
    assert "server" not in headers
    dates = headers.get_list("date")
    assert len(dates) == 1, dates
    assert email.utils.parsedate_to_datetime(dates[0]) is not None
    if tls:
        assert headers.get_list("strict-transport-security") == [
            "max-age=31536000; includeSubDomains"
        ]
    else:
        assert "strict-transport-security" not in headers


@pytest.mark.parametrize("gate", [*LAYOUTS, "tls"])
def test_the_room_page_carries_the_headers(nginx_gates: dict[str, Browser], gate: str) -> None:
    browser = nginx_gates[gate]
    page = browser.get(f"/{browser.room}")
    assert page.status_code == 200
    assert INDEX_MARKER in page.text
    assert page.headers["content-type"].startswith("text/html")
    assert_jitsi_headers(page, tls=gate == "tls")


@pytest.mark.parametrize("path", JITSI_PATHS)
@pytest.mark.parametrize("gate", [*LAYOUTS, "tls"])
def test_jitsi_files_carry_the_headers(
    nginx_gates: dict[str, Browser], gate: str, path: str
) -> None:
    answer = nginx_gates[gate].get(path)
    assert answer.status_code == 200, path
    assert_jitsi_headers(answer, tls=gate == "tls")


@pytest.mark.parametrize("gate", [*LAYOUTS, "tls"])
def test_an_upstream_404_and_a_head_carry_the_headers(
    nginx_gates: dict[str, Browser], gate: str
) -> None:
    browser = nginx_gates[gate]
    missing = browser.get(MISSING)
    assert missing.status_code == 404
    assert_jitsi_headers(missing, tls=gate == "tls")
    head = browser.get("/config.js", method="HEAD")
    assert head.status_code == 200 and head.content == b""
    assert_jitsi_headers(head, tls=gate == "tls")


def test_nginx_does_send_what_the_gate_drops(jitsi_nginx: JitsiNginx) -> None:
    """The check above can fail: Jitsi's web server, asked directly, names itself."""
    with httpx.Client(trust_env=False) as client:
        direct = client.get(jitsi_nginx.url("debian") + "/config.js")
    assert direct.headers["server"].startswith("nginx")
    assert direct.headers.get_list("date")
    assert "permissions-policy" not in direct.headers


def test_behind_uvicorn_too(gateway: GatewayServer) -> None:
    """The test web server (uvicorn) writes `server: uvicorn` and its own date: neither comes
    through as a second one."""
    room = new_room(gateway)
    browser = Browser(gateway, room, f"meetgate={admit(gateway, room).cookie}")
    for path in (f"/{room}", "/config.js", "/libs/small.js"):
        answer = browser.get(path)
        assert answer.status_code == 200, path
        assert_jitsi_headers(answer, tls=False)


def test_the_gates_own_pages_keep_their_stricter_headers(nginx_gates: dict[str, Browser]) -> None:
    """Meetgate's pages are framed by nobody and granted no camera; the relayed ones' rules are
    Jitsi's alone."""
    browser = nginx_gates["tls"]
    with browser.gateway.client() as client:
        page = client.get(f"/_meetgate/enter/{browser.room}")
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert "camera=()" in page.headers["permissions-policy"]
    assert page.headers.get_list("x-content-type-options") == ["nosniff"]
    assert page.headers.get_list("strict-transport-security") == [
        "max-age=31536000; includeSubDomains"
    ]
    assert len(page.headers.get_list("date")) == 1


def test_without_an_admission_nothing_is_relayed(nginx_gates: dict[str, Browser]) -> None:
    """The refusal is the gate's own page, with the gate's headers, not Jitsi's."""
    browser = nginx_gates["debian"]
    with browser.gateway.client() as client:
        refused = client.get("/config.js", headers={"cookie": "meetgate=forged"})
    assert refused.status_code in (401, 403)
    assert refused.headers["x-frame-options"] == "DENY"
    assert "server" not in refused.headers
