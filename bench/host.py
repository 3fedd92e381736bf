"""A host at the dashboard, over the raw keep-alive client: the CSRF token, the roster, and a
revoke, a lockdown or a move sent as the dashboard's script sends them (the same calls as
tests/integration/journeys.py).
"""

from __future__ import annotations

import json
import ssl as tls
import time
from urllib.parse import urlencode

from bench.admin import Admitted, SetupError
from bench.rawhttp import Connection, Response, host_port

CSRF_MARKER = 'name="meetgate-csrf" content="'
# Meetgate's server closes a keep-alive connection idle for 5 s (ServerLimits.keep_alive_seconds,
# gateway/edge/server.py).
IDLE_REOPEN_SECONDS = 4.0


class HostDesk:
    """One host's keep-alive connection to one gateway (a replica of the host's choice)."""

    def __init__(
        self,
        gate_url: str,
        host: Admitted,
        cookie: str,
        connection: Connection,
        csrf: str,
        ssl: tls.SSLContext | None = None,
    ) -> None:
        self._gate_url = gate_url
        self._host = host
        self._cookie = cookie
        self._connection = connection
        self._csrf = csrf
        self._ssl = ssl
        self._used = time.monotonic()

    @classmethod
    async def open(
        cls,
        gate_url: str,
        host: Admitted,
        cookie_name: str = "meetgate",
        ssl: tls.SSLContext | None = None,
    ) -> HostDesk:
        """The host's dashboard on `gate_url` (`ssl` for an https front)."""
        connection = await Connection.open(*host_port(gate_url), ssl=ssl)
        cookie = f"{cookie_name}={host.cookie}"
        try:
            csrf = await _csrf_of(connection, host.room, cookie)
        except BaseException:
            await connection.close()
            raise
        return cls(gate_url, host, cookie, connection, csrf, ssl)

    @property
    def room(self) -> str:
        """The room this desk acts on (a move changes it)."""
        return self._host.room

    async def ready(self) -> None:
        """Reopen the connection if the gateway may have closed it as idle: call before a
        timed request, so that the timing never includes a reconnection."""
        if time.monotonic() - self._used > IDLE_REOPEN_SECONDS:
            await self._connection.close()
            self._connection = await Connection.open(*host_port(self._gate_url), ssl=self._ssl)
        self._used = time.monotonic()

    def _headers(self) -> dict[str, str]:
        return {"cookie": self._cookie, "accept": "application/json"}

    async def participants(self) -> list[dict[str, object]]:
        await self.ready()
        response = await self._connection.request(
            "GET", f"/_meetgate/host/{self._host.room}/roster", self._headers()
        )
        if response.status != 200:
            raise SetupError(f"the roster gave {response.status}: {response.body[:300]!r}")
        roster = json.loads(response.body)
        return list(roster["participants"])

    async def revoke(self, admission_id: str) -> Response:
        """POST the confirmed revoke; the raw answer (timing callers check it afterwards, and
        call `ready()` first)."""
        return await self._post("revoke", admission=admission_id)

    async def lockdown(self) -> int:
        """Lock the room down (locked, every attendee removed, quiet); how many were removed."""
        await self.ready()
        answer = await self._post("lockdown")
        if not revoked(answer):
            raise SetupError(f"the lockdown was not done: {answer.status} {answer.body[:300]!r}")
        return int(json.loads(answer.body).get("removed", 0))

    async def move(self) -> str:
        """Move the meeting to a fresh room (the dashboard names it); the new room's name. The
        desk follows: it acts on the new room from now on."""
        await self.ready()
        answer = await self._post("move")
        if not revoked(answer):
            raise SetupError(f"the move was not done: {answer.status} {answer.body[:300]!r}")
        room = str(json.loads(answer.body)["room"])
        self._host = Admitted(cookie=self._host.cookie, ticket=self._host.ticket, room=room)
        self._csrf = await _csrf_of(self._connection, room, self._cookie)
        self._used = time.monotonic()
        return room

    async def unlock(self) -> None:
        """Open the room again to those with a link (a lockdown's lock lifted)."""
        await self._done("unlock")

    async def unquiet(self) -> None:
        """Let everyone chat again (quiet mode, which a lockdown turns on, off)."""
        await self._done("unquiet")

    async def _done(self, action: str) -> None:
        await self.ready()
        answer = await self._post(action)
        if not revoked(answer):
            raise SetupError(f"{action} was not done: {answer.status} {answer.body[:300]!r}")

    async def _post(self, action: str, **fields: str) -> Response:
        """POST a confirmed dashboard action as its script does; the raw answer."""
        body = urlencode({"csrf": self._csrf, **fields, "confirmed": "1"})
        headers = {
            **self._headers(),
            "origin": self._gate_url,
            "content-type": "application/x-www-form-urlencoded",
        }
        answer = await self._connection.request(
            "POST", f"/_meetgate/host/{self._host.room}/{action}", headers, body.encode()
        )
        self._used = time.monotonic()
        return answer

    async def close(self) -> None:
        await self._connection.close()


async def _csrf_of(connection: Connection, room: str, cookie: str) -> str:
    """The CSRF token of `room`'s dashboard page."""
    page = await connection.request("GET", f"/_meetgate/host/{room}", {"cookie": cookie})
    text = page.body.decode("utf-8", "replace")
    if page.status != 200 or CSRF_MARKER not in text:
        raise SetupError(f"the host dashboard gave {page.status}: {page.body[:300]!r}")
    start = text.index(CSRF_MARKER) + len(CSRF_MARKER)
    return text[start : text.index('"', start)]


def revoked(response: Response) -> bool:
    """Whether a host action's JSON answer (a revoke's, a lockdown's, a move's) says it was
    done."""
    if response.status != 200:
        return False
    return bool(json.loads(response.body).get("done"))
