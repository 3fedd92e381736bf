"""The real `meetgate serve` on a real redis-server (with a password) that stalls, dies and comes
back, and that 500 browsers join at once: joins, ticket refreshes and forward-auth are answered
with a clear 503 within the store's deadlines (never 204, never a hang), the outage and the
recovery are logged with the store's address and no password, `meetgate_store_up` follows, and
500 concurrent joins all succeed at the default pool settings.

The time bounds are bounds on hanging (the configured budget plus a generous allowance for a
loaded machine), not performance figures."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.gateway_server import GatewayServer, start_gateway
from tests.fixtures.http_clients import TLS
from tests.fixtures.processes import stop_process, wait_until
from tests.fixtures.redis_server import RedisProcess, start_redis

PASSWORD = "s3cret-store-password"
# The defaults of [store]: each call 0.5 s, a request's calls together 1 s.
REQUEST_SECONDS = 1.0
ALLOWANCE = 2.0


@dataclass
class Deployment:
    gateway: GatewayServer
    redis: RedisProcess

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.redis.port}/0"


@pytest.fixture
def deployment(tmp_path: Path, jitsi_web: Any) -> Iterator[Deployment]:
    redis = start_redis(tmp_path / "redis", "--requirepass", PASSWORD)
    gateway, proc = start_gateway(
        tmp_path / "gateway",
        upstream=jitsi_web.url,
        store_url=f"redis://:{PASSWORD}@127.0.0.1:{redis.port}/0",
    )
    try:
        yield Deployment(gateway, redis)
    finally:
        stop_process(proc)
        with contextlib.suppress(ProcessLookupError):
            os.kill(redis.proc.pid, signal.SIGCONT)
        stop_process(redis.proc)


def browser(gateway: GatewayServer) -> httpx.Client:
    return httpx.Client(
        base_url=gateway.url, trust_env=False, timeout=30, follow_redirects=False, verify=TLS
    )


def admitted_browser(gateway: GatewayServer, room: str) -> httpx.Client:
    client = browser(gateway)
    token = gateway.invite_token(gateway.create_invite(room, "Ada Lovelace"))
    joined = client.post(f"/j/{token}", headers={"origin": gateway.url})
    assert joined.status_code == 303, joined.text
    return client


def timed(call: Any) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def metric(gateway: GatewayServer, name: str) -> float:
    with gateway.admin() as admin:
        text = admin.get("/metrics").text
    return float(next(line for line in text.splitlines() if line.startswith(name + " ")).split()[1])


def test_a_stalled_store_is_answered_with_503_within_the_budget(
    deployment: Deployment,
) -> None:
    gateway = deployment.gateway
    room = gateway.create_room("stall")["name"]
    client = admitted_browser(gateway, room)
    waiting_token = gateway.invite_token(gateway.create_invite(room, "Grace Hopper"))
    html = {"accept": "text/html", "origin": gateway.url}
    json_accept = {"accept": "application/json"}
    os.kill(deployment.redis.proc.pid, signal.SIGSTOP)
    try:
        answers = {
            "join": timed(lambda: client.post(f"/j/{waiting_token}", headers=html)),
            "landing": timed(lambda: client.get(f"/j/{waiting_token}", headers=html)),
            "refresh": timed(
                lambda: client.get(f"/_meetgate/ticket?room={room}", headers=json_accept)
            ),
            "forward-auth": timed(lambda: client.get("/_meetgate/forward-auth")),
        }
    finally:
        os.kill(deployment.redis.proc.pid, signal.SIGCONT)
    for what, (response, seconds) in answers.items():
        assert response.status_code == 503, (what, response.status_code, response.text)
        assert seconds < REQUEST_SECONDS + ALLOWANCE, (what, seconds)
        if what != "forward-auth":
            assert response.headers["retry-after"] == "5", what
    assert answers["join"][0].headers["content-type"].startswith("text/html")
    assert "cannot check admissions" in answers["join"][0].text
    assert answers["refresh"][0].json()["error"] == "store_unavailable"
    # Once the store answers again (the gate's probe asks every second), so does the gate: the
    # same link admits.
    wait_until(
        lambda: client.post(f"/j/{waiting_token}", headers=html).status_code == 303,
        what="a join once the store is back",
    )


def test_an_outage_is_logged_with_the_address_and_shown_in_the_metrics(
    deployment: Deployment,
) -> None:
    gateway, redis = deployment.gateway, deployment.redis
    room = gateway.create_room("outage")["name"]
    client = admitted_browser(gateway, room)
    assert metric(gateway, "meetgate_store_up") == 1
    stop_process(redis.proc)
    assert client.get(f"/_meetgate/ticket?room={room}").status_code == 503
    assert metric(gateway, "meetgate_store_up") == 0
    redis.restart()
    # Nobody needs to ask: the gate's own probe sees the store back.
    wait_until(
        lambda: metric(gateway, "meetgate_store_up") == 1,
        what="meetgate_store_up back to 1",
    )
    log = gateway.log_text()
    assert f"store {deployment.address} unreachable" in log
    assert f"store {deployment.address} answers again after" in log
    assert PASSWORD not in log


def test_500_concurrent_joins_succeed_at_the_default_settings(deployment: Deployment) -> None:
    gateway = deployment.gateway
    room = gateway.create_room("crowd")["name"]
    with gateway.admin() as admin:
        tokens = []
        for number in range(500):
            made = admin.post(f"/api/v1/rooms/{room}/invites", json={"name": f"Guest {number}"})
            made.raise_for_status()
            tokens.append(gateway.invite_token(made.json()))

    async def crowd() -> list[int]:
        # 500 attendees, from eight loopback addresses (the gate caps connections per address
        # at 256 by default: one address is not a crowd).
        limits = httpx.Limits(max_connections=500, max_keepalive_connections=0)
        clients = [
            httpx.AsyncClient(
                base_url=gateway.url,
                trust_env=False,
                timeout=120,
                limits=limits,
                transport=httpx.AsyncHTTPTransport(
                    local_address=f"127.0.1.{n + 1}", limits=limits, verify=TLS
                ),
            )
            for n in range(8)
        ]
        try:
            answers = await asyncio.gather(
                *(
                    clients[n % 8].post(f"/j/{token}", headers={"origin": gateway.url})
                    for n, token in enumerate(tokens)
                )
            )
        finally:
            for client in clients:
                await client.aclose()
        return [answer.status_code for answer in answers]

    statuses = asyncio.run(crowd())
    assert statuses.count(303) == 500, {status: statuses.count(status) for status in statuses}
