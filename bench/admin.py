"""Set-up traffic before any timing: rooms and single-use invites through the admin API, and one
redemption to get an admission cookie, over the raw keep-alive client."""

from __future__ import annotations

import asyncio
import json
import ssl as tls
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from http.cookies import SimpleCookie
from urllib.parse import urlencode

from bench.rawhttp import Connection, host_port
from tests.fixtures.proof_of_work import challenge
from tests.fixtures.proof_of_work import solve as solve_proof

INVITE_LIFETIME_SECONDS = 3600
# A proof-of-work page's challenge (templates/challenge.html).


class SetupError(RuntimeError):
    """The gateway refused a set-up call: the benchmark cannot measure anything."""


class AdminApi:
    def __init__(self, url: str, token: str) -> None:
        self._host, self._port = host_port(url)
        self._headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}

    async def _call(self, connection: Connection, method: str, path: str, body: object) -> object:
        payload = json.dumps(body).encode() if body is not None else b""
        response = await connection.request(method, path, self._headers, payload)
        if response.status >= 300:
            raise SetupError(f"{method} {path}: {response.status} {response.body[:300]!r}")
        return json.loads(response.body) if response.body else None

    async def create_rooms(self, names: Sequence[str], connections: int = 4) -> None:
        pending = iter(names)

        async def create() -> None:
            connection = await Connection.open(self._host, self._port)
            try:
                for name in pending:
                    body = {"name": name, "title": "Benchmark"}
                    await self._call(connection, "POST", "/api/v1/rooms", body)
            finally:
                await connection.close()

        await asyncio.gather(*(create() for _ in range(connections)))

    async def delete_rooms(self, names: Sequence[str]) -> None:
        connection = await Connection.open(self._host, self._port)
        try:
            for name in names:
                await self._call(connection, "DELETE", f"/api/v1/rooms/{name}", None)
        finally:
            await connection.close()

    async def create_invites(
        self,
        rooms: Sequence[str],
        per_room: int,
        connections: int = 16,
        *,
        name: str = "Bench",
        role: str = "attendee",
        max_uses: int = 1,
    ) -> list[str]:
        """`per_room` invites (single-use unless `max_uses` says otherwise) in each of `rooms`,
        made over `connections` concurrent connections; their tokens (the last segment of each
        join link). Each is for "`name` N", N counting from 0 in the order of `rooms`."""
        tokens: list[str] = []
        pending = iter(enumerate(room for room in rooms for _ in range(per_room)))

        async def create() -> None:
            connection = await Connection.open(self._host, self._port)
            try:
                for number, room in pending:
                    body = {
                        "name": f"{name} {number}",
                        "role": role,
                        "max_uses": max_uses,
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

        await asyncio.gather(*(create() for _ in range(connections)))
        return tokens


class Invites:
    """Invites for a run, spread over rooms of `room_size` each, made as they are needed.

    Meetgate checks a new admission's name against every live one in its room, so the rooms
    are kept meeting-sized: one room of every redemption would time that check, not a join.
    """

    def __init__(self, api: AdminApi, prefix: str, room_size: int) -> None:
        self._api = api
        self._prefix = prefix
        self._room_size = room_size
        self.rooms: list[str] = []

    async def make(self, count: int) -> list[str]:
        """At least `count` fresh invites' tokens (whole rooms' worth), in fresh rooms."""
        needed = -(-count // self._room_size)
        first = len(self.rooms)
        names = [f"{self._prefix}-{first + n}" for n in range(needed)]
        await self._api.create_rooms(names)
        self.rooms += names
        return await self._api.create_invites(names, self._room_size)


class RedeemRefused(SetupError):
    """The gateway answered a redemption with something other than a meeting's address."""

    def __init__(self, status: int, body: bytes, retry_after: float | None = None) -> None:
        super().__init__(f"redeeming an invite gave {status}: {body[:300]!r}")
        self.status = status
        self.retry_after = retry_after  # the answer's Retry-After (seconds), if it had one
        # The proof-of-work found before this refusal, if one was asked (the browser's time).
        self.proof_seconds = 0.0


@dataclass(frozen=True, slots=True)
class Admitted:
    """A browser that redeemed an invite: its admission cookie and its first ticket."""

    cookie: str
    ticket: str
    room: str
    # The proof-of-work the gate asked for first (its difficulty in bits), 0 if none.
    proof_bits: int = 0
    # How long finding the proof took (the browser's own work, not the gate's), 0 if none.
    proof_seconds: float = 0.0


_SOLVERS: list[ProcessPoolExecutor] = []


async def solve_challenge(token: str, difficulty: int) -> str:
    """Solve a proof-of-work challenge in a worker process (as a browser's script does it
    beside the page, the event loop goes on meanwhile)."""
    if not _SOLVERS:
        _SOLVERS.append(ProcessPoolExecutor(max_workers=2))
    return await asyncio.get_running_loop().run_in_executor(
        _SOLVERS[0], solve_proof, token, difficulty
    )


async def admit(
    gate_url: str,
    token: str,
    cookie_name: str = "meetgate",
    headers: dict[str, str] | None = None,
    ssl: tls.SSLContext | None = None,
    *,
    solve: bool = False,
) -> Admitted:
    """Redeem one invite as a browser would (`headers` added, e.g. `x-forwarded-for`; `ssl`
    for an https front); with `solve`, a proof-of-work page is solved and sent back as the
    page's script does. RedeemRefused if it is not let into the meeting."""
    host, port = host_port(gate_url)
    bits, solved = 0, 0.0
    asked = {"origin": gate_url, **(headers or {})}
    connection = await Connection.open(host, port, ssl=ssl)
    try:
        response = await connection.request("POST", f"/j/{token}", asked)
    finally:
        await connection.close()
    asked_for = challenge(response.body) if response.status == 200 else None
    if solve and asked_for is not None:
        pow_token, bits = asked_for
        solving = time.perf_counter()
        answer = await solve_challenge(pow_token, bits)
        solved = time.perf_counter() - solving
        form = urlencode({"pow_token": pow_token, "answer": answer}).encode()
        asked = {**asked, "content-type": "application/x-www-form-urlencoded"}
        # On a new connection: the first may have been closed as idle while the proof was
        # found (a browser reconnects for the form's POST as well).
        connection = await Connection.open(host, port, ssl=ssl)
        try:
            response = await connection.request("POST", f"/j/{token}", asked, form)
        finally:
            await connection.close()
    location = response.headers.get("location", "")
    if response.status != 303 or "#jwt=" not in location:
        wait = response.headers.get("retry-after", "")
        retry_after = float(wait) if wait.isdigit() else None
        refused = RedeemRefused(response.status, response.body, retry_after)
        refused.proof_seconds = solved
        raise refused
    jar: SimpleCookie = SimpleCookie()
    jar.load(response.headers.get("set-cookie", ""))
    if cookie_name not in jar:
        raise SetupError("redeeming an invite set no admission cookie")
    room, _, ticket = location.removeprefix("/").partition("#jwt=")
    return Admitted(
        cookie=jar[cookie_name].value,
        ticket=ticket,
        room=room,
        proof_bits=bits,
        proof_seconds=solved,
    )


async def redeem(gate_url: str, token: str, cookie_name: str = "meetgate") -> str:
    """Redeem one invite as a browser would; the admission cookie's value."""
    return (await admit(gate_url, token, cookie_name)).cookie
