"""Revocations issued while a fault lasts (issue 13): attendees admitted and joined through one
replica before the fault, while the store answers; then a host on the other replica revokes
them one after another, clicking again 0.2 s after each 503 as the dashboard's host would,
while the fault begins and ends around them. Each socket's close is timed from the revoke
request that was accepted and from the host's first click on it.

The client is the revocation section's (bench/revocation.py): invites from the admin API,
redemptions as a browser posts them, XMPP over the gate's `/xmpp-websocket` to a real prosody,
the revoke as the dashboard's script sends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

from bench.admin import AdminApi, Admitted, SetupError, admit
from bench.host import HostDesk, revoked
from bench.rawhttp import Connection, host_port
from bench.revocation import CUT_CLOSE_CODE, SETUP_CONCURRENCY, bounded_gather, signalling_url
from bench.servers import Gateway, Prosody
from bench.xmpp import XmppClient
from gateway.admission.pipeline import admission_id_for

# A host clicks again this long after a 503.
CLICK_AGAIN_SECONDS = 0.2
# Untimed revocations before the timed ones: the first revoke runs cold code paths.
WARM_UP = 2
# After a fault, until both replicas see the store again (their probe asks once a second).
STORE_BACK_SECONDS = 30.0
_STORE_UP = re.compile(r"^meetgate_store_up (\S+)$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Outage:
    """A fault that lasts: `begin` (kill -9, SIGSTOP), `seconds` later `end` (restart,
    SIGCONT; returns once the store listens again). Both block: they run in a thread."""

    begin: Callable[[], None]
    end: Callable[[], None]
    seconds: float
    # Revocations issued before the fault begins, so that some are in flight as it does.
    lead_seconds: float = 0.5


@dataclass(frozen=True, slots=True)
class FaultRevocations:
    setup: str
    # Per revocation accepted (the host's revoke answered 200, done), in milliseconds: to its
    # socket closed from the accepted request's start, and from the host's first click on it.
    accepted_ms: list[float]
    first_click_ms: list[float]
    # Accepted revocations whose socket did not close within the wait.
    not_closed: int
    # Revoke requests answered 503 (the host clicked again), and any other answer by status
    # (-1: the connection failed).
    refused: int
    other_statuses: dict[int, int]
    # Sockets that closed before their revoke was first sent: cut by the fault itself.
    cut_by_fault: int
    # Close codes other than the gate's 4403, by code.
    other_codes: dict[int, int]
    # Seconds the fault lasted (begin to the store listening again), and from its end to the
    # first revoke answered 200 that a 503 had preceded (None: no 503).
    outage_seconds: float | None
    recovered_seconds: float | None

    @property
    def count(self) -> int:
        return len(self.accepted_ms) + self.not_closed


@dataclass(slots=True)
class _Victim:
    admitted: Admitted
    client: XmppClient
    first_click: float | None = None
    accepted: float | None = None


async def store_up(gate: Gateway) -> bool:
    """Whether the replica's `meetgate_store_up` metric says the store answers."""
    connection = await Connection.open(*host_port(gate.admin_url))
    try:
        answer = await connection.request(
            "GET", "/metrics", {"authorization": f"Bearer {gate.admin_token}"}
        )
    finally:
        await connection.close()
    found = _STORE_UP.search(answer.body.decode("utf-8", "replace"))
    return answer.status == 200 and found is not None and float(found.group(1)) == 1.0


async def wait_store_up(*gates: Gateway) -> None:
    """Poll until every replica sees the store again; SetupError after STORE_BACK_SECONDS."""
    deadline = time.monotonic() + STORE_BACK_SECONDS
    while not all([await store_up(gate) for gate in gates]):
        if time.monotonic() > deadline:
            raise SetupError("a replica did not see the store again after the fault")
        await asyncio.sleep(0.2)  # polling, with a deadline


async def _join(gate: Gateway, prosody: Prosody, admitted: Admitted, nick: str) -> XmppClient:
    client = await XmppClient.connect(
        signalling_url(gate, admitted), domain=prosody.domain, stream_management=True
    )
    try:
        await client.join(prosody.room_jid(admitted.room), nick)
    except BaseException:
        await client.abort()
        raise
    return client


async def _revoke_until_done(
    desk: HostDesk, victim: _Victim, statuses: list[tuple[int, float]]
) -> None:
    """Revoke until answered done, clicking again after each 503; every answer's status and
    the moment it came go to `statuses`. Another answer ends the attempt (counted)."""
    admission = admission_id_for(victim.admitted.cookie)
    while True:
        await desk.ready()
        started = time.perf_counter()
        if victim.first_click is None:
            victim.first_click = started
        try:
            answer = await desk.revoke(admission)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            statuses.append((-1, time.perf_counter()))
            return
        statuses.append((answer.status, time.perf_counter()))
        if revoked(answer):
            victim.accepted = started
            return
        if answer.status != 503:
            return
        await asyncio.sleep(CLICK_AGAIN_SECONDS)  # the host clicking again


async def revoke_during_fault(
    setup: str,
    host_gate: Gateway,
    socket_gate: Gateway,
    prosody: Prosody,
    count: int,
    *,
    close_wait: float,
    outage: Outage | None = None,
    before_each: Callable[[], Awaitable[object]] | None = None,
    spacing: float = 0.1,
) -> FaultRevocations:
    """`count` attendees joined through `socket_gate`, revoked by a host on `host_gate` one
    after another, `spacing` seconds apart: with `outage` beginning `lead_seconds` after the
    first, or with `before_each` awaited just before each (then each socket's close is waited
    for before the next). A socket not closed `close_wait` seconds after its accepted revoke
    counts as never closed."""
    api = AdminApi(host_gate.admin_url, host_gate.admin_token)
    room = f"fault-{secrets.token_hex(4)}"
    await api.create_rooms([room])
    [host_token] = await api.create_invites([room], 1, name="Host", role="host")
    tokens = await api.create_invites([room], count + WARM_UP, name="Victim")
    admitted = await bounded_gather(
        [partial(admit, socket_gate.url, token) for token in tokens], SETUP_CONCURRENCY
    )
    host = await admit(host_gate.url, host_token)
    victims: list[_Victim] = []
    desk: HostDesk | None = None
    try:
        # One at a time: each join's presence goes to every occupant already in the room.
        for number, one in enumerate(admitted):
            victims.append(_Victim(one, await _join(socket_gate, prosody, one, f"v{number}")))
        desk = await HostDesk.open(host_gate.url, host)
        ids = {str(p["id"]) for p in await desk.participants()}
        if admission_id_for(victims[0].admitted.cookie) not in ids:
            raise SetupError("a victim's admission is not on the host's roster")
        statuses: list[tuple[int, float]] = []
        for victim in victims[:WARM_UP]:
            await _revoke_until_done(desk, victim, [])
            with contextlib.suppress(TimeoutError):
                await victim.client.wait_closed(close_wait)
        timed = victims[WARM_UP:]
        fault_times: list[float] = []

        async def fault(spec: Outage) -> None:
            await asyncio.sleep(spec.lead_seconds)
            fault_times.append(time.perf_counter())
            await asyncio.to_thread(spec.begin)
            await asyncio.sleep(spec.seconds)
            await asyncio.to_thread(spec.end)
            fault_times.append(time.perf_counter())

        faulting = asyncio.create_task(fault(outage)) if outage is not None else None
        try:
            for victim in timed:
                if before_each is not None:
                    await before_each()
                await _revoke_until_done(desk, victim, statuses)
                if before_each is not None and victim.accepted is not None:
                    with contextlib.suppress(TimeoutError):
                        await victim.client.wait_closed(close_wait)
                await asyncio.sleep(spacing)
        finally:
            if faulting is not None:
                await faulting
        for victim in timed:
            if victim.accepted is not None:
                left = victim.accepted + close_wait - time.perf_counter()
                with contextlib.suppress(TimeoutError):
                    await victim.client.wait_closed(max(0.0, left))
    finally:
        if desk is not None:
            await desk.close()
        for victim in victims:
            await victim.client.abort()
    # The next case starts on a store both replicas see.
    await wait_store_up(host_gate, socket_gate)
    return _results(setup, timed, statuses, fault_times, close_wait)


def _results(
    setup: str,
    timed: list[_Victim],
    statuses: list[tuple[int, float]],
    fault_times: list[float],
    close_wait: float,
) -> FaultRevocations:
    accepted_ms: list[float] = []
    first_click_ms: list[float] = []
    not_closed = cut_by_fault = 0
    other_codes: dict[int, int] = {}
    for victim in timed:
        closed = victim.client.closed_at
        if closed is not None and (victim.first_click is None or closed < victim.first_click):
            cut_by_fault += 1
            continue
        if victim.accepted is None or victim.first_click is None:
            continue
        if closed is None or closed - victim.accepted > close_wait:
            not_closed += 1
            continue
        accepted_ms.append((closed - victim.accepted) * 1000)
        first_click_ms.append((closed - victim.first_click) * 1000)
        if victim.client.close_code != CUT_CLOSE_CODE:
            code = -1 if victim.client.close_code is None else victim.client.close_code
            other_codes[code] = other_codes.get(code, 0) + 1
    other_statuses: dict[int, int] = {}
    for status, _ in statuses:
        if status not in (200, 503):
            other_statuses[status] = other_statuses.get(status, 0) + 1
    outage_seconds = recovered_seconds = None
    if len(fault_times) == 2:
        began, ended = fault_times
        outage_seconds = ended - began
        refused_at = [at for status, at in statuses if status == 503]
        if refused_at:
            after = [at for status, at in statuses if status == 200 and at > refused_at[-1]]
            if after:
                recovered_seconds = after[0] - ended
    return FaultRevocations(
        setup=setup,
        accepted_ms=accepted_ms,
        first_click_ms=first_click_ms,
        not_closed=not_closed,
        refused=sum(1 for status, _ in statuses if status == 503),
        other_statuses=other_statuses,
        cut_by_fault=cut_by_fault,
        other_codes=other_codes,
        outage_seconds=outage_seconds,
        recovered_seconds=recovered_seconds,
    )
