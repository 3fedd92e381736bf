"""The store's memory is checked, with the real `meetgate serve` on a real redis-server.

With the persistence deploy/ configures (AOF, fsync every second), a ban, a revocation and a lock
survive Redis going down by `SHUTDOWN NOSAVE` and by `kill -9`: the troll is still refused and
nothing is taken for a loss. A Redis that comes back without its data (no persistence) is found
out: joins, ticket refreshes and new signalling sessions get a clear 503, the log, the metric and
`meetgate doctor` say so, a running WebSocket keeps flowing, and `meetgate store acknowledge-loss`
(asked, then `--yes`) lets people in again.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import yaml
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.fixtures.gateway_server import GENEROUS_LIMITS, GatewayServer, start_gateway
from tests.fixtures.http_clients import TLS
from tests.fixtures.processes import stop_process, wait_until
from tests.fixtures.redis_server import RedisProcess, start_redis
from tests.fixtures.xmpp_client import XmppClient
from tests.integration.journeys import (
    Admitted,
    admission_id,
    admit,
    fresh_ticket,
    host_action,
    new_room,
    signalling_query,
    ws_url,
)

pytestmark = pytest.mark.slow

RECONCILE_SECONDS = 1.0
SWEEPS = f"""
[revocation]
reconcile_seconds = {RECONCILE_SECONDS}
"""
REPO = Path(__file__).resolve().parents[2]
PERSISTENCE_FLAGS = ("--appendonly", "--appendfsync", "--save")


def persistence_flags(arguments: list[str]) -> tuple[str, ...]:
    """The persistence flags among a redis-server command line's, with their values."""
    found: list[str] = []
    for flag in PERSISTENCE_FLAGS:
        if flag in arguments:
            found += [flag, arguments[arguments.index(flag) + 1]]
    return tuple(found)


def deployed_persistence() -> tuple[str, ...]:
    """The persistence deploy/ runs Redis with, read from its files: Compose's and Kubernetes'
    must agree, and the tests run Redis with exactly that."""
    compose = yaml.safe_load((REPO / "deploy/compose/docker-compose.yml").read_text())
    in_compose = persistence_flags(compose["services"]["redis"]["command"])
    documents = yaml.safe_load_all((REPO / "deploy/kubernetes/base/redis.yaml").read_text())
    (redis_set,) = [d for d in documents if d and d.get("kind") == "StatefulSet"]
    containers = redis_set["spec"]["template"]["spec"]["containers"]
    (server,) = [c for c in containers if c["name"] == "redis"]
    in_kubernetes = persistence_flags(server["args"])
    assert in_compose == in_kubernetes, (in_compose, in_kubernetes)
    assert "--appendonly" in in_compose
    return in_compose


DEPLOYED_PERSISTENCE = deployed_persistence()


@dataclass
class Deployment:
    gateway: GatewayServer
    redis: RedisProcess


def deploy(workdir: Path, jitsi_web: Any, prosody: Any, *redis_args: str) -> Iterator[Deployment]:
    server = start_redis(workdir / "redis", *redis_args)
    gateway, proc = start_gateway(
        workdir / "gateway",
        upstream=jitsi_web.url,
        signalling_upstream=f"http://127.0.0.1:{prosody.http_port}",
        store_url=server.url,
        extra=GENEROUS_LIMITS + SWEEPS,
    )
    try:
        yield Deployment(gateway, server)
    finally:
        stop_process(proc)
        stop_process(server.proc)


@pytest.fixture
def persistent(tmp_path: Path, jitsi_web: Any, prosody: Any) -> Iterator[Deployment]:
    yield from deploy(tmp_path, jitsi_web, prosody, *DEPLOYED_PERSISTENCE)


@pytest.fixture
def forgetful(tmp_path: Path, jitsi_web: Any, prosody: Any) -> Iterator[Deployment]:
    """Redis as the tests' own runs it: no AOF, no snapshots."""
    yield from deploy(tmp_path, jitsi_web, prosody)


def metric(gateway: GatewayServer, name: str) -> float:
    with gateway.admin() as admin:
        text = admin.get("/metrics").text
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else -1.0


def browser(gateway: GatewayServer, admitted: Admitted | None = None) -> httpx.Client:
    cookies = admitted.cookies if admitted else None
    return httpx.Client(
        base_url=gateway.url, trust_env=False, cookies=cookies, timeout=10, verify=TLS
    )


def join(gateway: GatewayServer, token: str, accept: str = "text/html") -> httpx.Response:
    with browser(gateway) as client:
        return client.post(f"/j/{token}", headers={"origin": gateway.url, "accept": accept})


def bring_down(server: RedisProcess, how: str) -> None:
    if how == "SHUTDOWN NOSAVE":
        client = redis.Redis(port=server.port)
        # Redis closes the connection as it shuts down: no reply is the expected answer.
        try:
            client.shutdown(nosave=True)
        except redis.ConnectionError:
            pass
        finally:
            client.close()
    else:
        os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait(timeout=10)


def back_up(deployment: Deployment) -> None:
    deployment.redis.restart()
    wait_until(
        lambda: metric(deployment.gateway, "meetgate_store_up") == 1.0,
        what="the gate seeing the store back",
    )


@pytest.mark.parametrize("how", ["SHUTDOWN NOSAVE", "kill -9"])
def test_bans_revocations_and_locks_survive_a_redis_restart_with_aof(
    persistent: Deployment, how: str
) -> None:
    gateway = persistent.gateway
    room = new_room(gateway)
    host = admit(gateway, room, "Hilde Host", role="host")
    ada = admit(gateway, room, "Ada")
    troll_link = gateway.invite_token(gateway.create_invite(room, "Troll", max_uses=5))
    assert join(gateway, troll_link).status_code == 303
    troll = admission_id(gateway, host, "Troll")
    assert host_action(gateway, host, "ban", admission=troll, duration="forever")["done"]
    assert host_action(gateway, host, "revoke", admission=admission_id(gateway, host, "Ada"))[
        "done"
    ]
    host_action(gateway, host, "lock")
    latecomer = gateway.invite_token(gateway.create_invite(room, "Latecomer"))

    def still_refused() -> None:
        # The banned identity is refused by its own link (a ban keys on the identity the link
        # names), the revoked admission's cookie gets no ticket, the locked room takes nobody.
        again = join(gateway, troll_link)
        assert again.status_code == 403 and "barred" in again.text
        assert fresh_ticket(gateway, ada, room).status_code == 403
        assert join(gateway, latecomer).status_code == 423

    still_refused()
    bring_down(persistent.redis, how)
    back_up(persistent)
    still_refused()
    # And nothing was taken for a loss of memory: the host still gets tickets.
    assert fresh_ticket(gateway, host, room).status_code == 303
    assert metric(gateway, "meetgate_store_memory_lost") == 0.0
    assert "lost its memory" not in gateway.log_text()


def meetgate(
    gateway: GatewayServer, *args: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args, "--config", str(gateway.config_path)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


def doctor_store_memory(gateway: GatewayServer) -> str:
    done = meetgate(gateway, "doctor", "--timeout", "3")
    line = next(x for x in done.stdout.splitlines() if re.match(r"\w+ +store memory ", x))
    return line


async def test_a_store_back_without_its_data_is_found_and_fails_closed_until_acknowledged(
    forgetful: Deployment, prosody: Any
) -> None:
    gateway = forgetful.gateway
    room = new_room(gateway)
    host = admit(gateway, room, "Hilde Host", role="host")
    ada = admit(gateway, room, "Ada")
    assert metric(gateway, "meetgate_store_memory_lost") == 0.0
    assert (await asyncio.to_thread(doctor_store_memory, gateway)).startswith("PASS")
    room_jid = prosody.room_jid(room)
    async with XmppClient.open(ws_url(gateway, signalling_query(ada))) as running:
        await running.join(room_jid, "ada")

        await asyncio.to_thread(bring_down, forgetful.redis, "kill -9")
        await asyncio.to_thread(back_up, forgetful)
        await asyncio.to_thread(
            wait_until,
            lambda: metric(gateway, "meetgate_store_memory_lost") == 1.0,
            10,
            "the loss found",
        )
        log = gateway.log_text()
        assert log.count("lost its memory (its memory marker is gone") == 1

        # The admin makes the room and a link again: still nobody is let in, the page says why.
        gateway.create_room(room)
        token = gateway.invite_token(gateway.create_invite(room, "Newcomer"))
        refused = join(gateway, token)
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "60"
        assert "memory was lost" in refused.text and "admin" in refused.text
        as_json = join(gateway, token, accept="application/json")
        assert as_json.status_code == 503 and as_json.json()["error"] == "store_memory_lost"
        with browser(gateway, host) as client:
            refresh = client.get("/_meetgate/ticket", params={"room": room})
        assert refresh.status_code == 503 and "memory was lost" in refresh.text
        assert (await asyncio.to_thread(doctor_store_memory, gateway)).startswith("FAIL")

        # The running meeting goes on: sweeps every second find Ada's admission gone, and leave
        # her socket up, since the store may only have forgotten it.
        with pytest.raises(TimeoutError):
            await running.wait_closed(timeout=3 * RECONCILE_SECONDS)
        body = "still here"
        await running.send_groupchat(room_jid, body)
        await running.wait_for_message(lambda m: m.body == body, timeout=5)

        asked = await asyncio.to_thread(meetgate, gateway, "store", "acknowledge-loss", stdin="n\n")
        assert asked.returncode == 2 and "lost its memory" in asked.stdout
        assert metric(gateway, "meetgate_store_memory_lost") == 1.0
        done = await asyncio.to_thread(meetgate, gateway, "store", "acknowledge-loss", "--yes")
        assert done.returncode == 0, done.stderr
        assert "acknowledged" in done.stdout
        assert metric(gateway, "meetgate_store_memory_lost") == 0.0
        assert join(gateway, token).status_code == 303
        assert "an admin acknowledged that store" in gateway.log_text()
        # From then on the store is the truth again: Ada's admission is not in it.
        end = await running.wait_closed(timeout=RECONCILE_SECONDS + 2)
        assert end.by_server


BOSH_OPENING = (
    b"<body rid='1' to='meet.test' wait='60' hold='1' ver='1.6' xmpp:version='1.0'"
    b" xmlns:xmpp='urn:xmpp:xbosh' xmlns='http://jabber.org/protocol/httpbind'/>"
)


def open_bosh(gateway: GatewayServer, admitted: Admitted) -> httpx.Response:
    with browser(gateway) as client:
        return client.post(
            f"/http-bind?{signalling_query(admitted)}",
            content=BOSH_OPENING,
            headers={"content-type": "text/xml", "accept": "application/json"},
        )


async def test_new_signalling_sessions_wait_for_the_acknowledgement(
    forgetful: Deployment,
) -> None:
    """A store that lost only part of its memory (here: its marker) still holds the admission a
    valid ticket names; no new WebSocket or BOSH session opens on it until the admin says so."""
    gateway = forgetful.gateway
    room = new_room(gateway)
    host = admit(gateway, room, "Hilde Host", role="host")
    wait_until(lambda: metric(gateway, "meetgate_store_memory_lost") == 0.0, what="metrics")
    with redis.Redis(port=forgetful.redis.port) as client:
        wait_until(lambda: client.exists("meetgate:memory") == 1, what="the marker written")
        client.delete("meetgate:memory")
    wait_until(lambda: metric(gateway, "meetgate_store_memory_lost") == 1.0, what="the loss")

    refused = open_bosh(gateway, host)
    assert refused.status_code == 503 and refused.json()["error"] == "store_memory_lost"
    with pytest.raises(InvalidStatus) as handshake:
        async with connect(ws_url(gateway, signalling_query(host))):
            pass
    assert handshake.value.response.status_code == 503

    with gateway.admin() as admin:
        answer = admin.post("/api/v1/store/memory/acknowledge-loss")
    assert answer.status_code == 200 and answer.json()["acknowledged"] is True
    assert answer.json()["lost"] is False
    opened = open_bosh(gateway, host)
    assert opened.status_code == 200 and b"sid=" in opened.content
