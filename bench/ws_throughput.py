"""WebSocket relay throughput: echoed messages per second through a relay (the gate, nginx) or
straight to the echo, on many connections with a fixed number of messages in flight on each.

The client is raw sockets: it writes ready-made masked frames and checks what comes back against
the expected byte stream (every echo is the same frame), so that it spends a few microseconds
per message and the servers, not the client, set the rate. It reports its own CPU share, so a
run can tell when it was the client that set the pace after all.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import resource
import secrets
import time
from dataclasses import dataclass

from bench.rawhttp import host_port

MESSAGE_BYTES = 200
CONNECTIONS = 32
IN_FLIGHT = 4
READ_BYTES = 1 << 16
HANDSHAKE_TIMEOUT = 10.0
# Text frame, final, 16-bit length (126 ≤ 200 < 65,536).
_HEADER = bytes([0x81, 126]) + MESSAGE_BYTES.to_bytes(2, "big")


class RelayFailed(RuntimeError):
    """A connection was refused, closed, or echoed something other than what was sent."""


@dataclass(frozen=True, slots=True)
class Throughput:
    messages: int
    seconds: float
    # The client's own CPU over the timed window, as a share of one core.
    client_cpu_share: float

    @property
    def per_second(self) -> float:
        return self.messages / self.seconds


def _frames() -> tuple[bytes, bytes]:
    """(one masked client frame, the unmasked frame a server echoes back)."""
    payload = ("0123456789abcdef" * (MESSAGE_BYTES // 16 + 1))[:MESSAGE_BYTES].encode()
    mask = secrets.token_bytes(4)
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    client = bytes([0x81, 0x80 | 126]) + MESSAGE_BYTES.to_bytes(2, "big") + mask + masked
    return client, _HEADER + payload


class _Counter:
    def __init__(self) -> None:
        self.messages = 0
        self.stopping = False


async def _open(
    url: str, path: str, cookie: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = host_port(url)
    reader, writer = await asyncio.open_connection(host, port)
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nhost: {host}:{port}\r\nupgrade: websocket\r\n"
        f"connection: Upgrade\r\nsec-websocket-key: {key}\r\nsec-websocket-version: 13\r\n"
        f"origin: {url}\r\ncookie: {cookie}\r\n\r\n"
    )
    writer.write(request.encode("latin-1"))
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HANDSHAKE_TIMEOUT)
    status = head.split(b" ", 2)[1]
    if status != b"101":
        writer.close()
        raise RelayFailed(f"GET {url}{path} answered {status.decode(errors='replace')}, not 101")
    return reader, writer


async def _drive(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    frame: bytes,
    expected: bytes,
    counter: _Counter,
) -> None:
    """Keep IN_FLIGHT messages outstanding: one more written for every one echoed."""
    size = len(expected)
    pattern = expected * (READ_BYTES // size + 2)
    offset = 0
    writer.write(frame * IN_FLIGHT)
    while not counter.stopping:
        chunk = await reader.read(READ_BYTES)
        if not chunk:
            raise RelayFailed("the relay closed a connection in the middle of the run")
        if chunk != pattern[offset : offset + len(chunk)]:
            raise RelayFailed("an echo came back different from the message sent")
        done, offset = divmod(offset + len(chunk), size)
        counter.messages += done
        if done:
            writer.write(frame * done)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(
    url: str, path: str, cookie: str, *, warm_up: float, seconds: float
) -> Throughput:
    """Messages echoed per second over `seconds`, after `warm_up` seconds of the same load, on
    CONNECTIONS connections to `url` + `path` opened with `cookie`."""
    frame, expected = _frames()
    counter = _Counter()
    streams: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        for _ in range(CONNECTIONS):
            streams.append(await _open(url, path, cookie))
        tasks = [
            asyncio.create_task(_drive(reader, writer, frame, expected, counter))
            for reader, writer in streams
        ]
        await asyncio.sleep(warm_up)
        _raise_if_failed(tasks)
        messages, cpu, started = counter.messages, _cpu_seconds(), time.perf_counter()
        await asyncio.sleep(seconds)
        _raise_if_failed(tasks)
        messages = counter.messages - messages
        wall = time.perf_counter() - started
        cpu = _cpu_seconds() - cpu
    finally:
        counter.stopping = True
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, RelayFailed, OSError):
                await task
        for _, writer in streams:
            writer.close()
        for _, writer in streams:
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    return Throughput(messages=messages, seconds=wall, client_cpu_share=cpu / wall)


def _raise_if_failed(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        if task.done():
            task.result()
            raise RelayFailed("a connection's driver stopped early")
