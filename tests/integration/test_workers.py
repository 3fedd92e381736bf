"""`meetgate serve --workers 2`: several processes on one port, sharing one Redis.

The real command, a real redis-server of its own, real prosody and XMPP clients. Which worker
takes a connection is the kernel's choice (SO_REUSEPORT); `ss` says which process holds each.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.gateway_server import GatewayServer, start_gateway, write_config
from tests.fixtures.http_clients import TLS
from tests.fixtures.processes import free_port, port_open, stop_process, wait_until
from tests.fixtures.redis_server import start_redis
from tests.fixtures.xmpp_client import XmppClient
from tests.integration.journeys import (
    admission_id,
    admit,
    host_action,
    new_room,
    signalling_query,
    ws_url,
)

pytestmark = pytest.mark.slow

SERVE = [sys.executable, "-m", "gateway.cli", "serve"]


@dataclass
class Workers:
    gateway: GatewayServer
    proc: subprocess.Popen[bytes]
    port: int

    def children(self) -> set[int]:
        found = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        return {int(pid) for pid in found.split()}

    def holders(self) -> collections.Counter[int]:
        """The process holding each established connection to the gate's port."""
        listed = subprocess.run(
            ["ss", "-tnpH", "state", "established", f"( sport = :{self.port} )"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return collections.Counter(int(pid) for pid in re.findall(r"pid=(\d+)", listed))


def running(pid: int) -> bool:
    """Whether `pid` still runs: an ended process is a zombie until its (new) parent reaps it,
    and the parent of an orphan may be slow to."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return "zombie" not in status


@contextlib.contextmanager
def running_workers(workdir: Path, *, upstream: str, signalling: str) -> Iterator[Workers]:
    """`meetgate serve --workers 2` on a redis-server of its own, both stopped at the end."""
    redis = start_redis(workdir / "redis")
    try:
        gateway, proc = start_gateway(
            workdir / "gate",
            upstream=upstream,
            signalling_upstream=signalling,
            store_url=redis.url,
            serve_args=("--workers", "2"),
        )
        try:
            started = Workers(gateway, proc, int(gateway.url.rsplit(":", 1)[1]))
            wait_until(
                lambda: gateway.log_text().count("gate on http://") >= 2,
                timeout=30,
                what="two workers",
            )
            yield started
        finally:
            stop_process(proc)
    finally:
        stop_process(redis.proc)


@pytest.fixture(scope="module")
def workers(
    tmp_path_factory: pytest.TempPathFactory, jitsi_web: Any, prosody: Any
) -> Iterator[Workers]:
    with running_workers(
        tmp_path_factory.mktemp("workers"),
        upstream=jitsi_web.url,
        signalling=f"http://127.0.0.1:{prosody.http_port}",
    ) as started:
        yield started


async def test_a_revocation_cuts_the_socket_whichever_worker_holds_it(
    workers: Workers, prosody: Any
) -> None:
    """Each worker has its own sockets and its own subscriber to the store's cuts: a revocation
    through the admin API (worker 0) must close a socket held by either worker. Catches a cut
    applied only in the process that made it."""
    gateway = workers.gateway
    room = new_room(gateway)
    host = admit(gateway, room, "Host", role="host")
    names = [f"Troll{i}" for i in range(8)]
    trolls = [admit(gateway, room, name) for name in names]
    async with AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(XmppClient.open(ws_url(gateway, signalling_query(t))))
            for t in trolls
        ]
        for client, name in zip(clients, names, strict=True):
            await client.join(prosody.room_jid(room), name.lower())
        holders = workers.holders()
        # Both workers hold some of the sockets (eight connections, two listening sockets).
        assert len(holders) == 2 and set(holders) == workers.children(), holders
        for client, name in zip(clients, names, strict=True):
            target = await asyncio.to_thread(admission_id, gateway, host, name)
            answer = await asyncio.to_thread(host_action, gateway, host, "revoke", admission=target)
            assert answer["done"] is True
            end = await client.wait_closed(timeout=5)
            assert end.by_server


def test_a_killed_worker_is_replaced_and_the_gate_keeps_answering(workers: Workers) -> None:
    """A worker that dies (kill -9) takes its listening socket with it and is started again;
    meanwhile the other answers every new connection. Catches a supervisor that keeps a copy of
    a dead worker's socket (connections would wait in a queue nobody reads) or never restarts."""
    before = workers.children()
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    # A connection being set up at the instant the worker dies may be reset by the kernel (unless
    # net.ipv4.tcp_migrate_req is on, docs/operations.md); from its end on, none may be.
    wait_until(lambda: victim not in workers.children(), timeout=10, what="the worker reaped")
    for _ in range(30):
        response = httpx.get(f"{workers.gateway.url}/_meetgate/health", timeout=5, verify=TLS)
        assert response.status_code == 200
    wait_until(
        lambda: len(workers.children()) == 2 and victim not in workers.children(),
        timeout=15,
        what="the worker started again",
    )
    assert "ended by itself" in workers.gateway.log_text()
    with workers.gateway.admin() as admin:
        assert admin.get("/api/v1/rooms").status_code == 200


def test_workers_stop_together_and_the_supervisor_exits_0(
    tmp_path: Path, jitsi_web: Any, prosody: Any
) -> None:
    """SIGTERM to the supervisor drains every worker once and exits 0 (a terminal's Ctrl-C
    reaches only the supervisor, which passes it on: a worker must not see it twice)."""
    with running_workers(
        tmp_path, upstream=jitsi_web.url, signalling=f"http://127.0.0.1:{prosody.http_port}"
    ) as started:
        children = started.children()
        started.proc.send_signal(signal.SIGTERM)
        assert started.proc.wait(timeout=30) == 0
        assert not any(running(pid) for pid in children)
        assert not port_open(started.port)
        assert started.gateway.log_text().count("WebSocket(s) handed over") == 2


def test_a_supervisor_killed_with_9_leaves_no_worker_behind(
    tmp_path: Path, jitsi_web: Any, prosody: Any
) -> None:
    with running_workers(
        tmp_path, upstream=jitsi_web.url, signalling=f"http://127.0.0.1:{prosody.http_port}"
    ) as started:
        children = started.children()
        started.proc.kill()
        started.proc.wait(timeout=10)
        wait_until(
            lambda: not any(running(pid) for pid in children),
            # The stop's deadline (10 s), and its last resort 5 s later.
            timeout=30,
            what="the workers gone",
        )
        assert not port_open(started.port)


def test_workers_need_the_redis_store(tmp_path: Path) -> None:
    """With the memory store each worker would keep its own bans: refused before anything
    listens, naming the setting."""
    port = free_port()
    write_config(
        tmp_path / "meetgate.toml",
        port=port,
        admin_port=free_port(),
        upstream="http://127.0.0.1:9",
        signalling_upstream=None,
        store_url="memory://",
    )
    done = subprocess.run(
        [*SERVE, "--config", "meetgate.toml", "--workers", "2"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "[listen] workers" in done.stderr and "Redis store" in done.stderr
    assert "Traceback" not in done.stderr
    assert not port_open(port)
