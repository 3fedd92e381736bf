"""The proof-of-work solver (templates/static/pow.js) in a real Chromium: it finds the answer the
Python verifier accepts, shows its progress, and says plainly when JavaScript is off.

The page is the real challenge template, served by a small Starlette app under the strict
Content-Security-Policy Meetgate's pages use plus `script-src 'self'`, so an inline script or an
eval in the solver would fail here too.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import uvicorn
from playwright.sync_api import Browser, ConsoleMessage, Page
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from gateway.admission.challenge import (
    Challenge,
    issue_challenge,
    leading_zero_bits,
    verify_solution,
)
from gateway.edge.templating import render, static_asset
from tests.fixtures.processes import free_port, wait_until

pytestmark = pytest.mark.slow

KEY = secrets.token_bytes(32)
CLIENT = "127.0.0.1"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
# What pow.js tries between two progress reports.
CHUNK = 20_000
PROGRESS_TEXT = re.compile(r"Checking your browser… (\d+)%")


@dataclass
class PowSite:
    """The test site: challenges to show by id, and the forms the browser posted."""

    url: str
    pages: dict[str, tuple[Challenge, str, str]] = field(default_factory=dict)
    posted: list[dict[str, str]] = field(default_factory=list)

    def page_for(self, challenge: Challenge, room: str, *, csp: str = CSP) -> str:
        page_id = secrets.token_hex(8)
        self.pages[page_id] = (challenge, room, csp)
        return f"{self.url}/challenge/{page_id}"


def build_app(site: PowSite) -> Starlette:
    async def challenge_page(request: Request) -> Response:
        challenge, room, csp = site.pages[request.path_params["page_id"]]
        html = render(
            "challenge.html", action="/answer", challenge=challenge, fields={"room": room}
        )
        return HTMLResponse(html, headers={"content-security-policy": csp})

    async def static(request: Request) -> Response:
        asset = static_asset(request.path_params["name"])
        if asset is None:
            return Response(status_code=404)
        body, content_type = asset
        return Response(body, media_type=content_type)

    async def answer(request: Request) -> Response:
        form = await request.form()
        assert request.client is not None
        site.posted.append({**{k: str(v) for k, v in form.items()}, "client": request.client.host})
        return HTMLResponse("<!doctype html><title>Recorded</title><p>recorded</p>")

    async def favicon(request: Request) -> Response:
        return Response(status_code=204)

    return Starlette(
        routes=[
            Route("/challenge/{page_id}", challenge_page),
            Route("/favicon.ico", favicon),
            Route("/_meetgate/static/{name}", static),
            Route("/answer", answer, methods=["POST"]),
        ]
    )


@pytest.fixture(scope="module")
def site() -> Iterator[PowSite]:
    port = free_port()
    pow_site = PowSite(url=f"http://{CLIENT}:{port}")
    config = uvicorn.Config(
        build_app(pow_site), host=CLIENT, port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="pow-site", daemon=True)
    thread.start()
    wait_until(lambda: server.started, what="the test site to listen")
    yield pow_site
    server.should_exit = True
    thread.join(timeout=10)


@dataclass
class Watched:
    """A page with its progress reports (as the user saw them) and its console errors."""

    page: Page
    progress: list[tuple[float, bool, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    workers: list[str] = field(default_factory=list)

    def percents(self) -> list[int]:
        return [int(m[1]) for _, _, text in self.progress if (m := PROGRESS_TEXT.fullmatch(text))]


# Runs before the page's own scripts and reports every change of the progress bar and the status.
WATCH_PROGRESS = """
new MutationObserver(() => {
  const bar = document.querySelector("progress[data-pow-progress]");
  const status = document.querySelector("[data-pow-status]");
  if (bar && status) {
    window.meetgateProgress(bar.value, !bar.hidden && !status.hidden, status.textContent);
  }
}).observe(document, { subtree: true, childList: true, attributes: true, characterData: true });
"""


@pytest.fixture
def watched(chromium: Browser) -> Iterator[Watched]:
    context = chromium.new_context()
    page = context.new_page()
    result = Watched(page)
    page.expose_function(
        "meetgateProgress",
        lambda value, visible, text: result.progress.append((value, visible, text)),
    )
    page.add_init_script(WATCH_PROGRESS)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            result.errors.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: result.errors.append(str(error)))
    page.on("worker", lambda worker: result.workers.append(worker.url))
    yield result
    context.close()


def first_answer(token: str, difficulty: int) -> int:
    """What pow.js must find: it tries 0, 1, 2, … in order."""
    for n in itertools.count():
        digest = hashlib.sha256(f"{token}:{n}".encode()).digest()
        if leading_zero_bits(digest) >= difficulty:
            return n
    raise AssertionError("unreachable")


def slow_challenge(room: str, difficulty: int, at_least: int) -> tuple[Challenge, int]:
    """A challenge whose first answer lies beyond `at_least`, so the solver reports progress
    several times before it finds it."""
    while True:
        challenge = issue_challenge(
            KEY, client_addr=CLIENT, room=room, now=time.time(), difficulty=difficulty
        )
        answer = first_answer(challenge.token, difficulty)
        if answer >= at_least:
            return challenge, answer


def solve_in_browser(site: PowSite, watched: Watched, url: str) -> dict[str, str]:
    before = len(site.posted)
    watched.page.goto(url)
    watched.page.wait_for_url(f"{site.url}/answer", timeout=60_000)
    assert watched.page.text_content("p") == "recorded"
    assert len(site.posted) == before + 1
    return site.posted[-1]


def assert_verifies(posted: dict[str, str], challenge: Challenge, room: str) -> None:
    assert posted["pow_token"] == challenge.token
    assert posted["room"] == room
    solved = verify_solution(
        KEY,
        posted["pow_token"],
        posted["answer"],
        client_addr=posted["client"],
        room=posted["room"],
        now=time.time(),
    )
    assert solved.difficulty == challenge.difficulty


# Room lengths put the end of "token:" at different places in a SHA-256 block, so the answer's
# digits and the padding land in one block or spill into a second one.
@pytest.mark.parametrize("room", ["a", "r" * 28, "room-" * 8, "x" * 64])
def test_solver_answer_verifies(site: PowSite, watched: Watched, room: str) -> None:
    difficulty = 12
    challenge = issue_challenge(
        KEY, client_addr=CLIENT, room=room, now=time.time(), difficulty=difficulty
    )
    posted = solve_in_browser(site, watched, site.page_for(challenge, room))

    assert_verifies(posted, challenge, room)
    assert posted["answer"] == str(first_answer(challenge.token, difficulty))
    visible = [text for _, shown, text in watched.progress if shown]
    assert visible, "the progress bar and status were never shown"
    assert watched.percents()[-1] == 100
    assert watched.errors == []


def test_solver_reports_progress_while_it_works(site: PowSite, watched: Watched) -> None:
    room = "busy-room"
    challenge, answer = slow_challenge(room, difficulty=16, at_least=3 * CHUNK)
    posted = solve_in_browser(site, watched, site.page_for(challenge, room))

    assert_verifies(posted, challenge, room)
    assert posted["answer"] == str(answer)
    percents = watched.percents()
    # Expected work is 2**16 hashes: one report per chunk of 20k, then 100% on success.
    assert any(0 < p < 100 for p in percents), percents
    assert percents == sorted(percents)
    assert percents[-1] == 100
    values = [value for value, shown, _ in watched.progress if shown]
    assert any(0 < v < 100 for v in values) and values[-1] == 100
    assert watched.workers == [f"{site.url}/_meetgate/static/pow.js"]
    assert watched.errors == []


def test_solver_works_where_workers_are_not_allowed(site: PowSite, watched: Watched) -> None:
    """A stricter policy that forbids workers: the search runs on the page, in slices."""
    room = "no-workers"
    challenge, answer = slow_challenge(room, difficulty=16, at_least=2 * CHUNK)
    url = site.page_for(challenge, room, csp=CSP + "; worker-src 'none'")
    posted = solve_in_browser(site, watched, url)

    assert_verifies(posted, challenge, room)
    assert posted["answer"] == str(answer)
    assert any(0 < p < 100 for p in watched.percents())
    assert watched.workers == []
    # The only complaint is the refused worker itself.
    assert watched.errors, "the policy did not refuse the worker: this test tests nothing"
    assert all("worker" in error.lower() for error in watched.errors), watched.errors


def test_page_without_javascript_says_it_needs_it(site: PowSite, chromium: Browser) -> None:
    room = "no-js"
    challenge = issue_challenge(KEY, client_addr=CLIENT, room=room, now=time.time(), difficulty=12)
    context = chromium.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(site.page_for(challenge, room))
        assert page.title() == "One moment · Meetgate"
        # innerText holds only rendered text (Playwright's text locators skip <noscript>).
        shown = page.locator("main").inner_text()
        assert "This step needs JavaScript." in shown
        assert "unusually many join attempts" in shown
        assert page.locator("progress").is_hidden()
        assert page.locator("[data-pow-status]").is_hidden()
    finally:
        context.close()
