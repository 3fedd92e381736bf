"""What a browser asked for, and the check that none of it left the gate's origin (issue 17: no
third-party request, ever). `OriginLog.watch` records, for a browser, every request of each of
its contexts (pages, frames, dedicated and service workers), every WebSocket a page opens and
every frame navigation; `strays` says which of those records went to another origin than the
context's own (its first page's), naming the journey, the origin and the page that asked, with
no query, fragment or token-like path segment (a join link carries its invite in the path).

A journey may declare another site it goes to (the identity provider it signs in with): going
there is allowed, and what that site's own pages ask for is that site's business, not the gate's
(the test provider's login page, for one, loads a stylesheet from fonts.googleapis.com)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from playwright.sync_api import Browser, BrowserContext, Frame, Page, Request, WebSocket

# Whatever these name is the page's own: no network, or nothing outside the page's origin.
LOCAL_SCHEMES = frozenset({"about", "data", "blob"})
# A WebSocket goes to the origin of the same host and port over HTTP.
HTTP_SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}
DEFAULT_PORTS = {"http": 80, "https": 443}
# Invite links, tickets and codes are long runs of these; room names and routes are not.
TOKEN_LIKE = re.compile(r"[A-Za-z0-9_~.-]{20,}")


def origin(url: str) -> str | None:
    """`scheme://host:port` as the same-origin rule compares them (ws as http, wss as https),
    or None for a URL of the page's own (about:, data:, blob:). A URL without a host, or of a
    scheme not named here, is its own "origin", which matches no page."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in LOCAL_SCHEMES:
        return None
    if scheme not in HTTP_SCHEMES or not parts.hostname:
        return f"{scheme}:"
    scheme = HTTP_SCHEMES[scheme]
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:  # a port out of range: no origin a page of the gate's has
        return f"{scheme}://{parts.hostname}:?"
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{scheme}://{host}:{port}"


def shown(url: str) -> str:
    """`url` fit to print: its origin and path, no query or fragment, token-like segments out."""
    parts = urlsplit(url)
    if parts.scheme.lower() in LOCAL_SCHEMES:
        return f"{parts.scheme}:…"
    path = "/".join(TOKEN_LIKE.sub("…", segment) for segment in parts.path.split("/"))
    return f"{origin(url)}{path}"


@dataclass(frozen=True, slots=True)
class Record:
    """One thing a context asked for: `kind` (a resource type, "websocket" or "navigation"),
    the URL, the page or worker that asked (as printed, and its origin: None for a frame's own
    navigation), and the context's own origin when it asked."""

    kind: str
    url: str = field(repr=False)  # a ticket, an invite or a code may be in it
    asked_by: str
    asker: str | None
    home: str | None


@dataclass(eq=False)
class Watched:
    """One context's home: the origin of its first top-level page (None before it has one)."""

    home: str | None = None


@dataclass
class OriginLog:
    """Records of every watched context since the last `take`, and the origins besides each
    context's own that the running test declared (an identity provider the journey signs in
    with)."""

    records: list[Record] = field(default_factory=list)
    allowed: set[str] = field(default_factory=set)

    def watch(self, browser: Browser) -> None:
        """Record every context `browser` opens from now on, with all its pages and workers."""
        browser.on("context", self._watch_context)

    def allow(self, url: str) -> None:
        """The running test may also reach `url`'s origin (it is reset by `take`)."""
        allowed = origin(url)
        assert allowed is not None, "a page's own URL needs no allowing"
        self.allowed.add(allowed)

    def take(self) -> tuple[list[Record], frozenset[str]]:
        """The records since the last take and the origins allowed meanwhile; both start anew."""
        taken, allowed = self.records, frozenset(self.allowed)
        self.records, self.allowed = [], set()
        return taken, allowed

    def _watch_context(self, context: BrowserContext) -> None:
        watched = Watched()
        context.on("request", lambda request: self._request(watched, request))
        context.on("page", lambda page: self._page(watched, page))
        for page in context.pages:
            self._page(watched, page)

    def _page(self, watched: Watched, page: Page) -> None:
        page.on("websocket", lambda socket: self._websocket(watched, page, socket))
        page.on("framenavigated", lambda frame: self._navigated(watched, frame))

    def _request(self, watched: Watched, request: Request) -> None:
        worker = request.service_worker
        if worker is not None:
            asked_by, asker = f"service worker {shown(worker.url)}", origin(worker.url)
        else:
            frame = request.frame
            asked_by, asker = shown(frame.url), origin(frame.url)
            if (
                watched.home is None
                and request.is_navigation_request()
                and frame.parent_frame is None
            ):
                watched.home = origin(request.url)
        kind = "navigation" if request.is_navigation_request() else request.resource_type
        self.records.append(Record(kind, request.url, asked_by, asker, watched.home))

    def _websocket(self, watched: Watched, page: Page, socket: WebSocket) -> None:
        self.records.append(
            Record("websocket", socket.url, shown(page.url), origin(page.url), watched.home)
        )

    def _navigated(self, watched: Watched, frame: Frame) -> None:
        # Also what no request shows: a frame sent to about:, data:, or a browser error page.
        where = "top" if frame.parent_frame is None else f"frame in {shown(frame.page.url)}"
        self.records.append(Record("navigation", frame.url, where, None, watched.home))


def strays(journey: str, records: list[Record], allowed: frozenset[str] = frozenset()) -> list[str]:
    """Each record that went to an origin neither its context's own nor `allowed`, but for what
    pages of an `allowed` origin asked for, as a line that names the journey, the kind, the
    origin and who asked (never a query or a token)."""
    found = []
    for record in records:
        target = origin(record.url)
        if target is None or target in allowed or record.asker in allowed:
            continue
        if record.home is None or target != record.home:
            home = record.home or "no page of its own yet"
            found.append(
                f"{journey}: {record.kind} to {target} (the page's origin: {home}), "
                f"asked by {record.asked_by}"
            )
    return found


def assert_stays_on_origin(
    journey: str, records: list[Record], allowed: frozenset[str] = frozenset()
) -> None:
    found = strays(journey, records, allowed)
    assert not found, "requests outside the gate's origin:\n" + "\n".join(found)
