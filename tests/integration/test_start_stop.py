"""Clean start and stop of the real `meetgate serve` (issue 13, finding 7).

A start that cannot succeed (a taken port, a store required and unreachable, a key file that
cannot be read) ends the process with one message and a non-zero status, nothing listening.
SIGTERM hands every relayed XMPP WebSocket back to its browser with an RFC 7395 `<close/>` and a
WebSocket close 1001 while prosody keeps the session for resumption, closes the listeners, ends
what is in flight by `[listen] shutdown_seconds`, and exits 0.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.fixtures.gateway_server import GatewayServer, write_config
from tests.fixtures.http_clients import TLS
from tests.fixtures.processes import (
    free_port,
    port_open,
    start_process,
    stop_process,
    wait_until,
)
from tests.fixtures.prosody import DOMAIN
from tests.fixtures.xmpp_client import XmppClient
from tests.integration.journeys import admit, new_room, signalling_query, ws_url

XMPP_OPEN = f'<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="{DOMAIN}" version="1.0"/>'
XMPP_CLOSE = '<close xmlns="urn:ietf:params:xml:ns:xmpp-framing"/>'
SHUTDOWN_SECONDS = 3
# How long a test waits for a process to end by itself: far beyond what any of them needs.
EXIT_WAIT = 30


class Replica:
    """One `meetgate serve` process started by a test, with its own environment."""

    def __init__(self, workdir: Path, *, env: dict[str, str] | None = None, **config: Any) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = config.pop("port", None) or free_port()
        self.admin_port = config.pop("admin_port", None) or free_port()
        self.config = workdir / "meetgate.toml"
        config.setdefault("upstream", "http://127.0.0.1:9")
        config.setdefault("signalling_upstream", None)
        config.setdefault("store_url", "memory://")
        self.token = write_config(self.config, port=self.port, admin_port=self.admin_port, **config)
        self.log = workdir / "meetgate.log"
        self.proc = start_process(
            [sys.executable, "-m", "gateway.cli", "serve", "--config", str(self.config)],
            self.log,
            env=env,
            cwd=workdir,
        )

    @property
    def server(self) -> GatewayServer:
        return GatewayServer(
            url=f"http://127.0.0.1:{self.port}",
            admin_url=f"http://127.0.0.1:{self.admin_port}",
            admin_token=self.token,
            config_path=self.config,
            log_path=self.log,
        )

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_serving(self) -> None:
        def serving() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"meetgate exited early:\n{self.output()}")
            return port_open(self.port) and port_open(self.admin_port)

        wait_until(serving, timeout=20, what="meetgate serve")

    def exit_status(self) -> int:
        """The process's status once it has ended by itself (polled, with a generous bound)."""
        try:
            return self.proc.wait(timeout=EXIT_WAIT)
        except subprocess.TimeoutExpired:
            stop_process(self.proc)
            pytest.fail(f"meetgate did not exit by itself:\n{self.output()}")

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)


@pytest.fixture
def replicas() -> Iterator[list[Replica]]:
    started: list[Replica] = []
    yield started
    for replica in started:
        stop_process(replica.proc)


def assert_failed_start(replica: Replica, *expected: str) -> str:
    """The process ended non-zero with one message saying why (containing every `expected`;
    a settings error lists each bad key on a line of its own), and no traceback."""
    status = replica.exit_status()
    output = replica.output()
    assert status != 0, output
    assert "Traceback" not in output, output
    assert output.count("meetgate: ") == 1, output
    said = output[output.index("meetgate: ") :]
    for part in expected:
        assert part in said, output
    return said


@pytest.mark.parametrize("taken", ["gate", "admin"])
def test_a_taken_port_ends_the_start_with_nothing_listening(
    tmp_path: Path, replicas: list[Replica], taken: str
) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    with holder:
        port = holder.getsockname()[1]
        replica = Replica(tmp_path, **{"port" if taken == "gate" else "admin_port": port})
        replicas.append(replica)
        setting = "[listen]" if taken == "gate" else "[admin]"
        assert_failed_start(replica, f"127.0.0.1:{port}", setting, "in use")
        other = replica.admin_port if taken == "gate" else replica.port
        assert not port_open(other)


def test_a_store_required_at_start_that_does_not_answer_ends_the_start(
    tmp_path: Path, replicas: list[Replica]
) -> None:
    nowhere = free_port()
    replica = Replica(
        tmp_path,
        store_url=f"redis://:secret-password@127.0.0.1:{nowhere}/0",
        env={"MEETGATE_STORE__REQUIRE_AT_START": "true"},
    )
    replicas.append(replica)
    said = assert_failed_start(replica, f"127.0.0.1:{nowhere}", "require_at_start")
    assert "secret-password" not in replica.output()
    assert "store" in said
    assert not port_open(replica.port) and not port_open(replica.admin_port)


def test_without_require_at_start_the_gate_starts_and_refuses_joins(
    tmp_path: Path, replicas: list[Replica]
) -> None:
    replica = Replica(tmp_path, store_url=f"redis://127.0.0.1:{free_port()}/0")
    replicas.append(replica)
    replica.wait_serving()
    with httpx.Client(base_url=replica.server.url, trust_env=False, verify=TLS) as client:
        assert client.get("/j/some-invite").status_code == 503


@pytest.mark.parametrize("kind", ["missing", "a directory"])
def test_a_key_file_that_cannot_be_read_ends_the_start(
    tmp_path: Path, replicas: list[Replica], kind: str
) -> None:
    # The tests run as root, who reads any mode: a directory stands for an unreadable file.
    key = tmp_path / "keys" / "ticket.pem"
    if kind == "a directory":
        key.mkdir(parents=True)
    tickets = f'[tickets]\nalgorithm = "RS256"\n[[tickets.keys]]\nprivate_key_file = "{key}"\n'
    replica = Replica(tmp_path / "gate", tickets=tickets)
    replicas.append(replica)
    assert_failed_start(replica, "private_key_file", str(key))
    assert not port_open(replica.port) and not port_open(replica.admin_port)


@pytest.fixture
def stoppable(tmp_path: Path, replicas: list[Replica], jitsi_web: Any, prosody: Any) -> Replica:
    """A replica in front of the test prosody and web server (relaying the long poll
    /conference-request/v1), to be stopped by the test within SHUTDOWN_SECONDS."""
    replica = Replica(
        tmp_path,
        upstream=jitsi_web.url,
        signalling_upstream=f"http://127.0.0.1:{prosody.http_port}",
        jitsi='relayed_endpoints = ["/conference-request/v1"]',
        env={"MEETGATE_LISTEN__SHUTDOWN_SECONDS": str(SHUTDOWN_SECONDS)},
    )
    replicas.append(replica)
    replica.wait_serving()
    return replica


@pytest.mark.slow
async def test_sigterm_ends_each_xmpp_stream_for_the_browser_to_resume_elsewhere(
    stoppable: Replica, prosody: Any
) -> None:
    gateway = stoppable.server
    room = new_room(gateway)
    raw, strophe = admit(gateway, room, "Raw"), admit(gateway, room, "Ada")
    async with (
        connect(ws_url(gateway, signalling_query(raw)), subprotocols=["xmpp"]) as browser,
        XmppClient.open(ws_url(gateway, signalling_query(strophe))) as client,
    ):
        await client.join(prosody.room_jid(room), "ada")
        await browser.send(XMPP_OPEN)
        opened = await asyncio.wait_for(browser.recv(), 10)
        assert isinstance(opened, str) and opened.startswith("<open")

        stoppable.terminate()
        frames: list[str | bytes] = []
        with pytest.raises(ConnectionClosed):
            while True:
                frames.append(await asyncio.wait_for(browser.recv(), EXIT_WAIT))
        assert frames and frames[-1] == XMPP_CLOSE, frames
        assert browser.close_code == 1001

        end = await client.wait_closed()
        assert end.by_server and end.ws_code == 1001, client.diagnostics()
        # Prosody was not told the stream ended: it keeps the session for the browser to
        # resume through another replica.
        assert client.jid is not None
        jid = client.jid
        await asyncio.to_thread(
            wait_until, lambda: prosody.session_hibernated(jid), 10, "hibernation"
        )
    assert stoppable.exit_status() == 0, stoppable.output()
    assert "Traceback" not in stoppable.output()


@pytest.mark.slow
async def test_sigterm_stops_accepting_and_ends_what_is_in_flight_by_the_deadline(
    stoppable: Replica, jitsi_web: Any
) -> None:
    gateway = stoppable.server
    room = new_room(gateway)
    ada = admit(gateway, room, "Ada")
    marker = secrets.token_hex(8)
    async with httpx.AsyncClient(
        base_url=gateway.url, trust_env=False, timeout=EXIT_WAIT, cookies=ada.cookies, verify=TLS
    ) as client:
        held = asyncio.create_task(client.get(f"/conference-request/v1?hold=1&probe={marker}"))
        await asyncio.to_thread(
            wait_until, lambda: jitsi_web.saw(marker), timeout=10, what="the long poll"
        )
        stoppable.terminate()
        # The listeners close while the held request still keeps the process running.
        await asyncio.to_thread(
            wait_until,
            lambda: not port_open(stoppable.port) and not port_open(stoppable.admin_port),
            10,
            "the listeners to close",
        )
        assert stoppable.proc.poll() is None and not held.done()
        with pytest.raises(httpx.ConnectError):
            await client.get("/_meetgate/health")
        # Ended at the deadline as the gate's 503, not the server's 500.
        response = await held
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "1"
    assert stoppable.exit_status() == 0, stoppable.output()
    output = stoppable.output()
    assert "Traceback" not in output and "Exception in ASGI application" not in output, output


def test_sigterm_with_nothing_open_exits_at_once(tmp_path: Path, replicas: list[Replica]) -> None:
    replica = Replica(tmp_path, env={"MEETGATE_LISTEN__SHUTDOWN_SECONDS": "600"})
    replicas.append(replica)
    replica.wait_serving()
    replica.terminate()
    # Bounded by the 30 s wait, far below the 600 s the stop would allow: nothing to wait for.
    assert replica.exit_status() == 0, replica.output()
