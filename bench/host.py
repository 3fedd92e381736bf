"""A host at the dashboard, over the raw keep-alive client: the CSRF token, the roster, and a
revoke sent as the dashboard's script sends it (the same calls as tests/integration/journeys.py).
"""

from __future__ import annotations

import json
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
        self, gate_url: str, host: Admitted, cookie: str, connection: Connection, csrf: str
    ) -> None:
        self._gate_url = gate_url
        self._host = host
        self._cookie = cookie
        self._connection = connection
        self._csrf = csrf
        self._used = time.monotonic()

    @classmethod
    async def open(cls, gate_url: str, host: Admitted, cookie_name: str = "meetgate") -> HostDesk:
        connection = await Connection.open(*host_port(gate_url))
        cookie = f"{cookie_name}={host.cookie}"
        page = await connection.request("GET", f"/_meetgate/host/{host.room}", {"cookie": cookie})
        text = page.body.decode("utf-8", "replace")
        if page.status != 200 or CSRF_MARKER not in text:
            await connection.close()
            raise SetupError(f"the host dashboard gave {page.status}: {page.body[:300]!r}")
        start = text.index(CSRF_MARKER) + len(CSRF_MARKER)
        return cls(gate_url, host, cookie, connection, text[start : text.index('"', start)])

    async def ready(self) -> None:
        """Reopen the connection if the gateway may have closed it as idle: call before a
        timed request, so that the timing never includes a reconnection."""
        if time.monotonic() - self._used > IDLE_REOPEN_SECONDS:
            await self._connection.close()
            self._connection = await Connection.open(*host_port(self._gate_url))
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
        body = urlencode({"csrf": self._csrf, "admission": admission_id, "confirmed": "1"})
        headers = {
            **self._headers(),
            "origin": self._gate_url,
            "content-type": "application/x-www-form-urlencoded",
        }
        answer = await self._connection.request(
            "POST", f"/_meetgate/host/{self._host.room}/revoke", headers, body.encode()
        )
        self._used = time.monotonic()
        return answer

    async def close(self) -> None:
        await self._connection.close()


def revoked(response: Response) -> bool:
    """Whether a revoke's JSON answer says it was done."""
    if response.status != 200:
        return False
    return bool(json.loads(response.body).get("done"))
