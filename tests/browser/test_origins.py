"""The recorder behind every browser test's origin check (tests/browser/conftest.py) catches a
page that reaches another origin: an image, a dedicated worker's and a service worker's fetch
and a WebSocket to another port of the same host are each named, with no query or token, while
what is the page's own (its own files, data:, blob:, about:blank) is not; no URL shows in a
record's repr (pytest prints it when the check fails). And the admin API's
docs page, when it is open to a browser without the token, loads nothing from elsewhere."""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser

from tests.browser.origins import (
    OriginLog,
    Record,
    assert_stays_on_origin,
    origin,
    shown,
    strays,
)
from tests.fixtures.gateway_server import GatewayServer
from tests.fixtures.processes import wait_until

pytestmark = pytest.mark.slow

SECRET = "hunter2-not-to-be-printed"
PIXEL = "R0lGODlhAQABAAAAACH5BAEKAAEALAAAAAABAAEAAAICTAEAOw=="  # a GIF of one pixel
LEAKY_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>leaky</title></head><body>
<img alt="" src="data:image/gif;base64,PIXEL">
<img alt="" src="/own.gif">
<iframe title="blank" src="about:blank"></iframe>
<script>
const other = new URLSearchParams(location.search).get("other");
window.finished = [];
const done = (what) => window.finished.push(what);
const far = new Image();
far.onload = far.onerror = () => done("image");
far.src = other + "/pixel.gif?ticket=SECRET";
fetch(URL.createObjectURL(new Blob(["own"]))).then(() => done("blob"));
const worker = new Worker("/worker.js?other=" + encodeURIComponent(other));
worker.onmessage = () => done("worker");
const socket = new WebSocket(other.replace("http", "ws") + "/socket?ticket=SECRET");
socket.onclose = () => done("websocket");
navigator.serviceWorker.register("/service-worker.js?other=" + encodeURIComponent(other));
</script></body></html>
""".replace("SECRET", SECRET).replace("PIXEL", PIXEL)
# A worker and a service worker, each fetching from the other port.
WORKER = """const other = new URL(location).searchParams.get("other");
fetch(other + "/from-worker?ticket=SECRET").finally(() => postMessage("fetched"));
""".replace("SECRET", SECRET)
SERVICE_WORKER = """const other = new URL(location).searchParams.get("other");
self.addEventListener("install", (event) => {
  event.waitUntil(fetch(other + "/from-service-worker?ticket=SECRET").catch(() => null));
});
""".replace("SECRET", SECRET)
GIF = base64.b64decode(PIXEL)
FILES = {
    "/leak": ("text/html; charset=utf-8", LEAKY_PAGE.encode()),
    "/worker.js": ("text/javascript", WORKER.encode()),
    "/service-worker.js": ("text/javascript", SERVICE_WORKER.encode()),
}


@dataclass
class Site:
    url: str
    paths: list[str] = field(default_factory=list)


@contextmanager
def serve() -> Iterator[Site]:
    """A small web server on a free port of 127.0.0.1, in a thread: the leaky page and its
    scripts, a GIF for any other path; it notes every path asked for."""
    site = Site("")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # http.server's name for it
            path = urlsplit(self.path).path
            site.paths.append(path)
            content_type, body = FILES.get(path, ("image/gif", GIF))
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Access-Control-Allow-Origin", "*")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    site.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="origins-site", daemon=True)
    thread.start()
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_the_recorder_catches_what_a_page_loads_from_another_port(
    chromium: Browser, origins: OriginLog
) -> None:
    with serve() as home, serve() as other:
        context = chromium.new_context()
        try:
            page = context.new_page()
            page.goto(f"{home.url}/leak?other={other.url}&ticket={SECRET}#{SECRET}")
            page.wait_for_function("window.finished.length === 4")
            wanted = {"/pixel.gif", "/from-worker", "/socket", "/from-service-worker"}
            wait_until(lambda: wanted <= set(other.paths), what="the other port asked")
        finally:
            context.close()
    records, allowed = origins.take()

    with pytest.raises(AssertionError) as caught:
        assert_stays_on_origin("the leaky journey", records, allowed)
    message = str(caught.value)
    assert SECRET not in message and "ticket" not in message, message
    assert not any(SECRET in repr(record) for record in records)
    found = sorted(strays("the leaky journey", records, allowed))
    page = f"{origin(home.url)}/leak"
    there = f"to {origin(other.url)} (the page's origin: {origin(home.url)}), asked by"
    assert found == sorted(
        [
            f"the leaky journey: image {there} {page}",
            f"the leaky journey: fetch {there} {page}",
            f"the leaky journey: websocket {there} {page}",
            f"the leaky journey: fetch {there} service worker {origin(home.url)}/service-worker.js",
        ]
    ), message
    # The page's own things were recorded too, and passed: its files, blob:, about:blank (the
    # browser reports no request for a data: URL; `origin` takes it as the page's own).
    assert {"/leak", "/own.gif", "/worker.js", "/service-worker.js"} <= set(home.paths)
    schemes = {record.url.split(":", 1)[0] for record in records}
    assert {"blob", "about"} <= schemes, schemes


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://meet.example/room?jwt=abc", "https://meet.example:443"),
        ("wss://meet.example/xmpp-websocket", "https://meet.example:443"),
        ("ws://127.0.0.1:8080/x", "http://127.0.0.1:8080"),
        ("HTTP://Meet.Example:80/", "http://meet.example:80"),
        ("http://[::1]:9/", "http://[::1]:9"),
        ("http://meet.example:99999/", "http://meet.example:?"),
        ("data:image/png;base64,AAAA", None),
        ("blob:https://meet.example/6f0c", None),
        ("about:blank", None),
        ("chrome-error://chromewebdata/", "chrome-error:"),
        ("javascript:alert(1)", "javascript:"),
        ("file:///etc/passwd", "file:"),
    ],
)
def test_what_counts_as_an_origin(url: str, expected: str | None) -> None:
    assert origin(url) == expected


def test_what_is_printed_has_no_query_fragment_or_token() -> None:
    token = "Zm9vYmFyYmF6cXV4cXV1eGNvcmdl_-12"
    assert shown(f"https://meet.example/j/{token}?a=b#jwt=c") == "https://meet.example:443/j/…"
    assert shown("http://127.0.0.1:8000/_meetgate/lobby/room-1/wait") == (
        "http://127.0.0.1:8000/_meetgate/lobby/room-1/wait"
    )
    assert shown("data:text/html,<p>secret</p>") == "data:…"


def test_a_page_with_no_origin_of_its_own_strays_anywhere() -> None:
    lone = [Record("image", "https://cdn.example/x.png", "about:…", None, None)]
    assert strays("j", lone) == [
        "j: image to https://cdn.example:443 (the page's origin: no page of its own yet), "
        "asked by about:…"
    ]
    assert strays("j", lone, frozenset({"https://cdn.example:443"})) == []


def test_what_an_allowed_sites_pages_ask_for_is_theirs_and_only_theirs() -> None:
    gate, provider = "http://127.0.0.1:8000", "http://127.0.0.1:9000"
    fonts = "https://fonts.example/css?family=x"
    records = [
        Record("navigation", f"{provider}/login", f"{gate}/enter", gate, gate),
        Record("stylesheet", fonts, f"{provider}/login", provider, gate),
        Record("image", fonts, f"{gate}/enter", gate, gate),
    ]
    allowed = frozenset({provider})
    assert strays("j", records, allowed) == [
        f"j: image to https://fonts.example:443 (the page's origin: {gate}), asked by {gate}/enter"
    ]
    assert len(strays("j", records)) == 3


def test_the_admin_api_docs_load_nothing_from_elsewhere(
    gateway: GatewayServer, chromium: Browser, origins: OriginLog
) -> None:
    with httpx.Client(trust_env=False, timeout=10) as client:
        status = client.get(f"{gateway.admin_url}/docs").status_code
    if status != 200:
        pytest.skip(f"the admin API's docs are not open to a browser without the token ({status})")
    context = chromium.new_context()
    try:
        page = context.new_page()
        page.goto(f"{gateway.admin_url}/docs", wait_until="networkidle")
    finally:
        context.close()
    # Checked here rather than after the test, so a failure is this test's own.
    assert_stays_on_origin("the admin API's docs page", *origins.take())


# How a module would start or reach a browser of its own, which nothing watches.
LAUNCHING = re.compile(
    r"(sync|async)_playwright\(|\.launch(_persistent_context)?\(|\.connect(_over_cdp)?\("
)


def test_no_browser_test_launches_a_browser_of_its_own() -> None:
    """Every browser of these tests comes from the watched `chromium` fixture (conftest.py)."""
    here = Path(__file__)
    launching = [
        path.name
        for path in sorted(here.parent.glob("*.py"))
        if path.name not in {"conftest.py", here.name} and re.search(LAUNCHING, path.read_text())
    ]
    assert launching == []
