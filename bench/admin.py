"""Set-up traffic before any timing: a room and single-use invites through the admin API, and
one redemption to get an admission cookie, over the raw keep-alive client."""

from __future__ import annotations

import asyncio
import json
from http.cookies import SimpleCookie
from urllib.parse import urlsplit

from bench.rawhttp import Connection

INVITE_LIFETIME_SECONDS = 3600


class SetupError(RuntimeError):
    """The gateway refused a set-up call: the benchmark cannot measure anything."""


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.hostname is None or parts.port is None:
        raise ValueError(f"{url!r} needs an explicit host and port")
    return parts.hostname, parts.port


class AdminApi:
    def __init__(self, url: str, token: str) -> None:
        self._host, self._port = _host_port(url)
        self._headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}

    async def _call(self, connection: Connection, method: str, path: str, body: object) -> object:
        payload = json.dumps(body).encode() if body is not None else b""
        response = await connection.request(method, path, self._headers, payload)
        if response.status >= 300:
            raise SetupError(f"{method} {path}: {response.status} {response.body[:300]!r}")
        return json.loads(response.body) if response.body else None

    async def create_room(self, name: str) -> None:
        connection = await Connection.open(self._host, self._port)
        try:
            await self._call(
                connection, "POST", "/api/v1/rooms", {"name": name, "title": "Benchmark"}
            )
        finally:
            await connection.close()

    async def delete_room(self, name: str) -> None:
        connection = await Connection.open(self._host, self._port)
        try:
            await self._call(connection, "DELETE", f"/api/v1/rooms/{name}", None)
        finally:
            await connection.close()

    async def create_invites(self, room: str, count: int, connections: int = 16) -> list[str]:
        """`count` single-use invites, made over `connections` concurrent connections; their
        tokens (the last segment of each join link)."""
        tokens: list[str] = []
        shares = [count // connections + (i < count % connections) for i in range(connections)]

        async def create(share: int, worker: int) -> None:
            connection = await Connection.open(self._host, self._port)
            try:
                for n in range(share):
                    body = {
                        "name": f"Bench {worker}-{n}",
                        "role": "attendee",
                        "max_uses": 1,
                        "expires_in_seconds": INVITE_LIFETIME_SECONDS,
                    }
                    invite = await self._call(
                        connection, "POST", f"/api/v1/rooms/{room}/invites", body
                    )
                    if not isinstance(invite, dict) or "/j/" not in str(invite.get("link")):
                        raise SetupError(f"no join link in the admin API's answer: {invite!r}")
                    tokens.append(str(invite["link"]).rsplit("/j/", 1)[1])
            finally:
                await connection.close()

        await asyncio.gather(*(create(share, i) for i, share in enumerate(shares) if share))
        return tokens


async def redeem(gate_url: str, token: str, cookie_name: str = "meetgate") -> str:
    """Redeem one invite as a browser would; the admission cookie's value."""
    host, port = _host_port(gate_url)
    connection = await Connection.open(host, port)
    try:
        response = await connection.request("POST", f"/j/{token}", {"origin": gate_url})
    finally:
        await connection.close()
    if response.status != 303 or "#jwt=" not in response.headers.get("location", ""):
        raise SetupError(f"redeeming an invite gave {response.status}: {response.body[:300]!r}")
    jar: SimpleCookie = SimpleCookie()
    jar.load(response.headers.get("set-cookie", ""))
    if cookie_name not in jar:
        raise SetupError("redeeming an invite set no admission cookie")
    return jar[cookie_name].value
