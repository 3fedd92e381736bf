"""Forward-auth without a store round trip: a process keeps the admissions it recently found
live (gateway/proxy/live_admissions.py), for at most `[revocation] reconcile_seconds`.

The real `meetgate serve` on a redis-server of the test's own, which the test pauses (SIGSTOP)
and writes to behind the gate's back.
"""

from __future__ import annotations

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
import redis

from tests.fixtures.gateway_server import GatewayServer, start_gateway
from tests.fixtures.http_clients import TLS
from tests.fixtures.processes import stop_process
from tests.fixtures.redis_server import RedisProcess, start_redis
from tests.integration.journeys import Admitted, admission_id, admit, host_action, new_room

pytestmark = pytest.mark.slow

STATIC_ASKED = {"x-forwarded-uri": "/libs/app.js", "x-forwarded-method": "GET"}
# The gate's reconciliation interval, and so the bound on a revocation nobody was told of.
RECONCILE_SECONDS = 2.0


@dataclass
class Deployment:
    gateway: GatewayServer
    redis: RedisProcess


@pytest.fixture
def deployment(tmp_path: Path, jitsi_web: Any) -> Iterator[Deployment]:
    store = start_redis(tmp_path / "redis")
    gateway, proc = start_gateway(
        tmp_path / "gateway",
        upstream=jitsi_web.url,
        store_url=store.url,
        extra=f"[revocation]\nreconcile_seconds = {RECONCILE_SECONDS}\n"
        + "[rates]\naddress = { per_minute = 100000, burst = 10000 }\n"
        + "network = { per_minute = 100000, burst = 10000 }\n"
        + '[challenge]\nmode = "off"\n',
    )
    try:
        yield Deployment(gateway, store)
    finally:
        stop_process(proc)
        with contextlib.suppress(ProcessLookupError):
            os.kill(store.proc.pid, signal.SIGCONT)
        stop_process(store.proc)


def admitted(gateway: GatewayServer) -> tuple[httpx.Client, str, Admitted]:
    """A browser admitted to a new room, its admission's id, and the room's host."""
    room = new_room(gateway)
    host = admit(gateway, room, "Host", role="host")
    ada = admit(gateway, room, "Ada")
    client = httpx.Client(
        base_url=gateway.url, trust_env=False, timeout=30, cookies=ada.cookies, verify=TLS
    )
    return client, admission_id(gateway, host, "Ada"), host


def forward_auth(client: httpx.Client) -> int:
    return client.get("/_meetgate/forward-auth", headers=STATIC_ASKED).status_code


def test_a_recently_checked_cookie_is_answered_without_the_store(deployment: Deployment) -> None:
    """With the store paused, a cookie checked a moment ago is still answered 204 at once: no
    round trip. Catches a cache that is never used (the answer would be 503 after the store's
    deadline). Once the entry is older than the bound, the store is asked again (503 while it
    is paused: forward-auth fails closed)."""
    client, _, _ = admitted(deployment.gateway)
    assert forward_auth(client) == 204
    os.kill(deployment.redis.proc.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        assert forward_auth(client) == 204
        assert time.monotonic() - started < 0.5
        time.sleep(RECONCILE_SECONDS + 0.2)
        assert forward_auth(client) == 503
    finally:
        os.kill(deployment.redis.proc.pid, signal.SIGCONT)


def test_a_revocation_is_refused_at_once_when_its_message_arrives(
    deployment: Deployment,
) -> None:
    """A revocation through the admin API publishes a cut: the cached admission is forgotten
    before the next check. Catches a cache that ignores the cut channel."""
    client, admission, host = admitted(deployment.gateway)
    assert forward_auth(client) == 204
    assert host_action(deployment.gateway, host, "revoke", admission=admission)["done"] is True
    deadline = time.monotonic() + 1.0
    while forward_auth(client) != 401:
        assert time.monotonic() < deadline, "a published revocation did not reach the cache"
        time.sleep(0.02)


def test_a_revocation_nobody_was_told_of_is_refused_within_the_bound(
    deployment: Deployment,
) -> None:
    """The admission is marked revoked in Redis behind the gate's back (as if the cut's message
    were lost in a partition): the cached entry ages out within reconcile_seconds and the store's
    answer refuses it. Catches a cache without an age bound."""
    client, admission, _ = admitted(deployment.gateway)
    assert forward_auth(client) == 204
    store = redis.Redis(port=deployment.redis.port)
    try:
        assert store.hset(f"meetgate:admission:{admission}", "revoked", "1") == 0
    finally:
        store.close()
    started = time.monotonic()
    while forward_auth(client) != 401:
        assert time.monotonic() - started < RECONCILE_SECONDS + 1.0
        time.sleep(0.05)
