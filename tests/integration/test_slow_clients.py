"""Slow and greedy clients cannot hold the gate (issue 13, gateway/edge/guard.py).

Real `meetgate serve` processes and raw sockets, each bound to a loopback address of its own
(127.0.0.0/8 is all loopback), so that one test's "attacker" and "attendee" are different
client addresses to the gate."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import websockets

from tests.fixtures.gateway_server import GENEROUS_LIMITS, GatewayServer, start_gateway
from tests.fixtures.http_clients import TLS
from tests.fixtures.processes import stop_process, wait_until
from tests.integration.journeys import admit, new_room, signalling_query, ws_url

QUICK = (
    GENEROUS_LIMITS
    + """
[limits]
header_read_seconds = 1
body_read_seconds = 1
"""
)
CAPPED = (
    GENEROUS_LIMITS
    + """
[limits]
max_connections = 32
max_connections_per_address = 8
"""
)
# What a 1 s deadline may take to fire: the guard sweeps every 0.5 s; the rest is slack for a
# loaded machine.
CLOSED_WITHIN = 6.0


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory, jitsi_web: Any) -> Iterator[GatewayServer]:
    server, proc = start_gateway(
        tmp_path_factory.mktemp("quick"), upstream=jitsi_web.url, extra=QUICK
    )
    yield server
    stop_process(proc)


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory, jitsi_web: Any) -> Iterator[GatewayServer]:
    server, proc = start_gateway(
        tmp_path_factory.mktemp("capped"),
        upstream=jitsi_web.url,
        extra=CAPPED,
        top='trusted_proxies = ["127.0.0.9/32"]',
    )
    yield server
    stop_process(proc)


def metric(gateway: GatewayServer, name: str, **labels: str) -> float:
    with gateway.admin() as admin:
        text = admin.get("/metrics").text
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    series = f"{name}{{{inner}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def ended(gateway: GatewayServer, reason: str) -> float:
    return metric(gateway, "meetgate_client_connections_ended_total", reason=reason)


def settle(gateway: GatewayServer) -> None:
    """Wait until the gate holds no client connection (the last test's are gone)."""
    wait_until(
        lambda: metric(gateway, "meetgate_client_connections") == 0,
        timeout=15,
        what="no client connection open",
    )


def connect(gateway: GatewayServer, source: str = "127.0.0.1") -> socket.socket:
    host, port = gateway.url.removeprefix("http://").rsplit(":", 1)
    sock = socket.socket()
    sock.bind((source, 0))
    sock.connect((host, int(port)))
    return sock


def closed_by_gate(sock: socket.socket, within: float) -> bool:
    """Whether the gate closes (or resets) `sock` within `within` seconds; what it sends before
    is read and dropped."""
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


def served(gateway: GatewayServer, source: str) -> bool:
    """Whether a plain GET from `source` gets an HTTP answer."""
    with connect(gateway, source) as sock:
        sock.settimeout(5)
        sock.sendall(b"GET /favicon.ico HTTP/1.1\r\nhost: meet.test\r\nconnection: close\r\n\r\n")
        try:
            return sock.recv(12).startswith(b"HTTP/1.1 ")
        except (ConnectionResetError, TimeoutError):
            return False


def refused_at_accept(sock: socket.socket) -> bool:
    """Whether the gate reset a connection it accepted without reading a byte of it."""
    sock.settimeout(5)
    try:
        sock.sendall(b"GET / HTTP/1.1\r\nhost: meet.test\r\n\r\n")
        return sock.recv(100) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


# ---------------------------------------------------------------- deadlines


def test_a_silent_socket_is_closed_at_the_head_deadline(quick: GatewayServer) -> None:
    before = ended(quick, "header_timeout")
    with connect(quick) as sock:
        assert closed_by_gate(sock, CLOSED_WITHIN)
    assert ended(quick, "header_timeout") == before + 1


def test_a_half_sent_head_is_closed_at_the_head_deadline(quick: GatewayServer) -> None:
    with connect(quick) as sock:
        sock.sendall(b"GET /favicon.ico HTTP/1.1\r\nhost: meet.test\r\n")
        assert closed_by_gate(sock, CLOSED_WITHIN)


def trickle(sock: socket.socket, data: bytes, every: float) -> threading.Thread:
    """Send `data` a byte every `every` seconds, in the background, until the gate closes."""

    def run() -> None:
        for byte in data:
            try:
                sock.send(bytes([byte]))
            except OSError:
                return
            time.sleep(every)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_head_trickled_byte_by_byte_is_closed_however_long_it_goes_on(
    quick: GatewayServer,
) -> None:
    # 2,000 bytes at 20 a second: 100 s if the gate waited for them all.
    head = b"GET /favicon.ico HTTP/1.1\r\nhost: meet.test\r\nx-trickle: " + b"a" * 2000
    with connect(quick) as sock:
        sender = trickle(sock, head, 0.05)
        assert closed_by_gate(sock, CLOSED_WITHIN)
        sender.join(timeout=5)
        assert not sender.is_alive()


def test_after_a_request_the_next_head_has_a_deadline_too(quick: GatewayServer) -> None:
    """Keep-alive is no way around the deadline: after an answer, bytes of a next head (or
    blank lines, which a parser skips) trickled slowly end the connection all the same."""
    for slow in (b"GET /favicon.ico HTTP/1.1\r\nx-slow: " + b"a" * 200, b"\r\n" * 200):
        with connect(quick) as sock:
            sock.sendall(b"GET /favicon.ico HTTP/1.1\r\nhost: meet.test\r\n\r\n")
            sock.settimeout(5)
            assert sock.recv(12).startswith(b"HTTP/1.1 ")
            sender = trickle(sock, slow, 0.05)
            assert closed_by_gate(sock, CLOSED_WITHIN)
            sender.join(timeout=5)


def test_a_body_trickled_byte_by_byte_is_closed_at_the_body_deadline(
    quick: GatewayServer,
) -> None:
    # A join link's form: the page reads the body before it answers, so only the guard's
    # deadline can end a body that never arrives.
    room = new_room(quick)
    token = quick.invite_token(quick.create_invite(room, "Ada"))
    before = ended(quick, "body_timeout")
    with connect(quick) as sock:
        head = (
            f"POST /j/{token} HTTP/1.1\r\nhost: meet.test\r\norigin: {quick.url}\r\n"
            "content-type: application/x-www-form-urlencoded\r\ncontent-length: 1000\r\n\r\n"
        )
        sock.sendall(head.encode())
        sender = trickle(sock, b"a" * 1000, 0.05)
        assert closed_by_gate(sock, CLOSED_WITHIN)
        sender.join(timeout=5)
    assert ended(quick, "body_timeout") == before + 1


def test_an_oversized_head_is_answered_431_without_reading_on(quick: GatewayServer) -> None:
    size = 20 * 1024 * 1024
    head = b"GET /favicon.ico HTTP/1.1\r\nhost: meet.test\r\nx-big: " + b"a" * size
    with connect(quick) as sock:
        sock.setblocking(False)
        sent, answer = 0, b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except BlockingIOError:
                chunk = None
            except ConnectionResetError:
                break
            if chunk is not None:
                answer += chunk
                if not chunk:
                    break
            if sent < len(head):
                try:
                    sent += sock.send(head[sent : sent + 65536])
                except BlockingIOError:
                    time.sleep(0.005)
                except (BrokenPipeError, ConnectionResetError):
                    break
            else:
                time.sleep(0.005)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]
    # What the socket took includes the kernel's buffers on both sides (a few MiB on loopback).
    assert sent < size // 2, f"{sent} bytes taken before the answer"


# ---------------------------------------------------------------- connection caps


def test_connections_from_one_address_are_capped(capped: GatewayServer) -> None:
    settle(capped)
    before = ended(capped, "address_full")
    held = [connect(capped, "127.0.0.3") for _ in range(8)]
    try:
        wait_until(lambda: metric(capped, "meetgate_client_connections") == 8, what="8 held")
        with connect(capped, "127.0.0.3") as ninth:
            assert refused_at_accept(ninth)
        assert ended(capped, "address_full") == before + 1
        # Another address is served meanwhile.
        assert served(capped, "127.0.0.4")
        # A connection that ends makes room again.
        held.pop().close()
        wait_until(lambda: metric(capped, "meetgate_client_connections") == 7, what="7 held")
        assert served(capped, "127.0.0.3")
    finally:
        for sock in held:
            sock.close()


def test_connections_to_one_replica_are_capped(capped: GatewayServer) -> None:
    settle(capped)
    before = ended(capped, "replica_full")
    held = [connect(capped, f"127.0.3.{n // 8 + 1}") for n in range(32)]
    try:
        wait_until(lambda: metric(capped, "meetgate_client_connections") == 32, what="32 held")
        with connect(capped, "127.0.0.5") as one_more:
            assert refused_at_accept(one_more)
        assert ended(capped, "replica_full") == before + 1
    finally:
        for sock in held:
            sock.close()
    settle(capped)
    assert served(capped, "127.0.0.5")


def test_a_trusted_proxy_is_not_capped_per_address(capped: GatewayServer) -> None:
    # Behind a front proxy every client arrives from the proxy's address: the front caps
    # connections per client itself (docs/operations.md), the gate only per replica.
    settle(capped)
    held = [connect(capped, "127.0.0.9") for _ in range(12)]
    try:
        assert served(capped, "127.0.0.9")
    finally:
        for sock in held:
            sock.close()


# ---------------------------------------------------------------- the attack


async def hold_open(
    host: str, port: int, source: str, stop: asyncio.Event, counts: dict[str, int]
) -> None:
    """One attacker connection: half a head, then a byte every half second, until the gate ends
    it or the test stops."""
    try:
        reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
    except OSError:
        counts["not connected"] += 1
        return
    try:
        writer.write(b"GET /favicon.ico HTTP/1.1\r\nhost: meet.test\r\nx-trickle: ")
        while not stop.is_set():
            if reader.at_eof() or writer.is_closing():
                break
            writer.write(b"a")
            await writer.drain()
            with_data = asyncio.ensure_future(reader.read(1))
            done, _ = await asyncio.wait({with_data}, timeout=0.5)
            if done:
                counts["ended by the gate"] += 1
                return
            with_data.cancel()
        counts["held to the end"] += 1
    except OSError:
        counts["ended by the gate"] += 1
    finally:
        writer.close()


def join_from(gateway: GatewayServer, path: str, source: str) -> tuple[int, float]:
    """A browser's join from `source`: the invite page, then the POST. Its status and seconds."""
    transport = httpx.HTTPTransport(local_address=source, verify=TLS)
    started = time.monotonic()
    with httpx.Client(
        base_url=gateway.url, transport=transport, trust_env=False, timeout=5
    ) as client:
        assert client.get(path).status_code == 200
        answer = client.post(path, headers={"origin": gateway.url})
    return answer.status_code, time.monotonic() - started


def test_a_legitimate_join_goes_through_2000_slow_connections(
    tmp_path_factory: pytest.TempPathFactory, jitsi_web: Any
) -> None:
    """2,000 half-open connections trickling a byte every half second: 1,000 from 127.0.0.1
    (over its cap of 256: the rest are reset at accept) and 1,000 from eight other loopback
    addresses (125 each, all held until the head deadline). An attendee on 127.0.0.2 joins
    within 1 s meanwhile. Default limits, but a 3 s head deadline to see them all end."""
    server, proc = start_gateway(
        tmp_path_factory.mktemp("slowloris"),
        upstream=jitsi_web.url,
        extra=GENEROUS_LIMITS + "[limits]\nheader_read_seconds = 3\n",
    )
    try:
        name = f"slow-{time.monotonic_ns()}"
        server.create_room(name)
        path = f"/j/{server.invite_token(server.create_invite(name, 'Ada'))}"
        host, port = server.url.removeprefix("http://").rsplit(":", 1)
        sources = ["127.0.0.1"] * 1000 + [f"127.0.1.{n % 8 + 1}" for n in range(1000)]

        async def attack() -> tuple[dict[str, int], int, float, float]:
            stop = asyncio.Event()
            counts = {"not connected": 0, "ended by the gate": 0, "held to the end": 0}
            attackers = [
                asyncio.create_task(hold_open(host, int(port), s, stop, counts)) for s in sources
            ]
            # Let them all connect and start trickling.
            await asyncio.sleep(1.0)
            held = metric(server, "meetgate_client_connections")
            status, seconds = await asyncio.to_thread(join_from, server, path, "127.0.0.2")
            # Each attacker returns once the gate ends it (the head deadline, 3 s after it
            # connected); any still trickling well past that deadline is held to the end.
            await asyncio.wait(attackers, timeout=5.0)
            stop.set()
            await asyncio.gather(*attackers)
            return counts, status, seconds, held

        counts, status, seconds, held = asyncio.run(attack())
        print(f"join {status} in {seconds * 1000:.0f} ms; {held:.0f} held at once; {counts}")
        assert status == 303
        assert seconds < 1.0, f"the join took {seconds:.3f} s"
        # The 1,000 from the other addresses and 256 from 127.0.0.1 were held at once.
        assert 1000 <= held <= 1000 + 256 + 5, held
        assert counts["held to the end"] == 0, counts
        assert ended(server, "address_full") >= 1000 - 256
        assert ended(server, "header_timeout") >= 1000
    finally:
        stop_process(proc)


# ---------------------------------------------------------------- WebSockets


@pytest.fixture(scope="module")
def signalling(
    tmp_path_factory: pytest.TempPathFactory, jitsi_web: Any, prosody: Any
) -> Iterator[GatewayServer]:
    server, proc = start_gateway(
        tmp_path_factory.mktemp("signalling"),
        upstream=jitsi_web.url,
        signalling_upstream=f"http://127.0.0.1:{prosody.http_port}",
        extra=CAPPED,
    )
    yield server
    stop_process(proc)


async def test_open_websockets_count_toward_the_replica_not_the_address(
    signalling: GatewayServer,
) -> None:
    """Ten attendees behind one address (a NAT) hold ten signalling WebSockets, over that
    address's cap of 8: an admitted WebSocket is not counted per address. Each is counted toward
    the replica while open, and no longer once closed."""
    settle(signalling)
    room = new_room(signalling)
    sockets = []
    try:
        for n in range(10):
            attendee = admit(signalling, room, name=f"Attendee {n}")
            sockets.append(
                await websockets.connect(
                    ws_url(signalling, signalling_query(attendee)), subprotocols=["xmpp"]
                )
            )
        assert metric(signalling, "meetgate_client_connections") == 10
        # Still room for the address's HTTP requests.
        assert served(signalling, "127.0.0.1")
    finally:
        for ws in sockets:
            await ws.close()
    settle(signalling)
