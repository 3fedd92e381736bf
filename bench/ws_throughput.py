"""WebSocket relay throughput: echoed messages per second through a relay (the gate, nginx) or
straight to the echo, on many connections with a fixed number of messages in flight on each.

The client is raw sockets: it writes ready-made masked frames and checks what comes back against
the expected byte stream (every echo is the same frame), so that it spends a few microseconds
per message and the servers, not the client, set the rate. It reports its own CPU share, so a
run can tell when it was the client that set the pace after all.

`measure` sends one 200-byte message over and over on every connection; `measure_conversations`
gives each connection a path and a cycle of messages of its own, each with the echo it must
bring back (the wire guard's bench: Jitsi stanzas on signalling, bench/guard.py).
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import contextlib
import os
import resource
import secrets
import time
from collections.abc import Callable, Coroutine, Sequence
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
    # A server's CPU seconds over the timed window, where the caller asked for one's.
    server_cpu_seconds: float | None = None

    @property
    def per_second(self) -> float:
        return self.messages / self.seconds

    @property
    def server_cpu_per_message_us(self) -> float | None:
        if self.server_cpu_seconds is None or not self.messages:
            return None
        return self.server_cpu_seconds / self.messages * 1e6


@dataclass(frozen=True, slots=True)
class Conversation:
    """One connection's part: its path (with its query), the masked frames it sends in turn,
    and for each the frame that must come back."""

    path: str
    frames: tuple[bytes, ...]
    echoes: tuple[bytes, ...]


def text_frame(text: str, *, masked: bool) -> bytes:
    """One final text frame carrying `text`: masked (a client's) or not (a server's)."""
    payload = text.encode()
    size = len(payload)
    if size < 126:
        length = bytes([size])
    elif size < 1 << 16:
        length = bytes([126]) + size.to_bytes(2, "big")
    else:
        length = bytes([127]) + size.to_bytes(8, "big")
    if not masked:
        return bytes([0x81]) + length + payload
    mask = secrets.token_bytes(4)
    body = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return bytes([0x81, 0x80 | length[0]]) + length[1:] + mask + body


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
        f"origin: {url}\r\n" + (f"cookie: {cookie}\r\n" if cookie else "") + "\r\n"
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


async def _converse(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    conversation: Conversation,
    counter: _Counter,
) -> None:
    """As `_drive`, for a cycle of messages: IN_FLIGHT outstanding, the next ones in the cycle
    written as echoes complete, every byte back checked against the cycle's echoes."""
    frames = conversation.frames
    period = b"".join(conversation.echoes)
    size = len(period)
    # Where each echo ends within one period: how many were completed up to an offset.
    ends: list[int] = []
    for echo in conversation.echoes:
        ends.append((ends[-1] if ends else 0) + len(echo))
    pattern = period * (READ_BYTES // size + 2)
    count = len(frames)
    offset = 0
    sent = IN_FLIGHT
    writer.write(b"".join(frames[i % count] for i in range(IN_FLIGHT)))
    while not counter.stopping:
        chunk = await reader.read(READ_BYTES)
        if not chunk:
            raise RelayFailed("the relay closed a connection in the middle of the run")
        if chunk != pattern[offset : offset + len(chunk)]:
            raise RelayFailed("an echo came back different from what was expected")
        periods, end = divmod(offset + len(chunk), size)
        done = periods * count + bisect.bisect_right(ends, end) - bisect.bisect_right(ends, offset)
        offset = end
        counter.messages += done
        if done:
            writer.write(b"".join(frames[i % count] for i in range(sent, sent + done)))
            sent += done


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(
    url: str,
    path: str,
    cookie: str,
    *,
    warm_up: float,
    seconds: float,
    server_cpu: Callable[[], float] | None = None,
) -> Throughput:
    """Messages echoed per second over `seconds`, after `warm_up` seconds of the same load, on
    CONNECTIONS connections to `url` + `path` opened with `cookie`. `server_cpu`: a server's CPU
    seconds so far, read around the timed window."""
    frame, expected = _frames()
    counter = _Counter()
    streams: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        for _ in range(CONNECTIONS):
            streams.append(await _open(url, path, cookie))
        return await _timed(
            streams,
            lambda reader, writer: _drive(reader, writer, frame, expected, counter),
            counter,
            warm_up=warm_up,
            seconds=seconds,
            server_cpu=server_cpu,
        )
    finally:
        await _close(streams)


async def measure_conversations(
    url: str,
    conversations: Sequence[Conversation],
    opened: Sequence[tuple[asyncio.StreamReader, asyncio.StreamWriter]],
    *,
    warm_up: float,
    seconds: float,
    server_cpu: Callable[[], float] | None = None,
) -> Throughput:
    """As `measure`, one connection per conversation: `opened` (by `open_socket`, in the same
    order, already past whatever the caller exchanged first). Closes them."""
    counter = _Counter()
    streams = list(opened)
    parts = iter(conversations)
    try:
        return await _timed(
            streams,
            lambda reader, writer: _converse(reader, writer, next(parts), counter),
            counter,
            warm_up=warm_up,
            seconds=seconds,
            server_cpu=server_cpu,
        )
    finally:
        await _close(streams)


async def open_socket(
    url: str, path: str, cookie: str = ""
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket to `url` + `path`, past its handshake (RelayFailed unless 101)."""
    return await _open(url, path, cookie)


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    """One whole unmasked frame a server sent, header included."""
    head = await reader.readexactly(2)
    size = head[1] & 0x7F
    extended = b""
    if size == 126:
        extended = await reader.readexactly(2)
        size = int.from_bytes(extended, "big")
    elif size == 127:
        extended = await reader.readexactly(8)
        size = int.from_bytes(extended, "big")
    return head + extended + await reader.readexactly(size)


async def _timed(
    streams: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]],
    driver: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Coroutine[object, object, None]],
    counter: _Counter,
    *,
    warm_up: float,
    seconds: float,
    server_cpu: Callable[[], float] | None,
) -> Throughput:
    tasks = [asyncio.create_task(driver(reader, writer)) for reader, writer in streams]
    try:
        await asyncio.sleep(warm_up)
        _raise_if_failed(tasks)
        server = server_cpu() if server_cpu is not None else 0.0
        messages, cpu, started = counter.messages, _cpu_seconds(), time.perf_counter()
        await asyncio.sleep(seconds)
        _raise_if_failed(tasks)
        messages = counter.messages - messages
        wall = time.perf_counter() - started
        cpu = _cpu_seconds() - cpu
        used = server_cpu() - server if server_cpu is not None else None
    finally:
        counter.stopping = True
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, RelayFailed, OSError):
                await task
    return Throughput(
        messages=messages, seconds=wall, client_cpu_share=cpu / wall, server_cpu_seconds=used
    )


async def _close(streams: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]) -> None:
    for _, writer in streams:
        writer.close()
    for _, writer in streams:
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def _raise_if_failed(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        if task.done():
            task.result()
            raise RelayFailed("a connection's driver stopped early")
