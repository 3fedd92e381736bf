"""A minimal HTTP/1.1 keep-alive client on asyncio streams, for set-up traffic.

httpx spends more CPU per request than the admin API it would be timing; this client only
writes a request and reads a Content-Length response, which is all the set-up needs.
"""

from __future__ import annotations

import asyncio
import ssl as tls
from dataclasses import dataclass
from urllib.parse import urlsplit


def host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.hostname is None or parts.port is None:
        raise ValueError(f"{url!r} needs an explicit host and port")
    return parts.hostname, parts.port


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


class Connection:
    """One keep-alive connection; requests on it are sequential."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, host: str, port: int, ssl: tls.SSLContext | None = None) -> Connection:
        """A connection to `host`:`port`, over TLS when `ssl` is given (a front's https)."""
        reader, writer = await asyncio.open_connection(host, port, ssl=ssl)
        return cls(reader, writer)

    async def request(
        self, method: str, target: str, headers: dict[str, str], body: bytes = b""
    ) -> Response:
        lines = [f"{method} {target} HTTP/1.1", "host: 127.0.0.1"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines.append(f"content-length: {len(body)}")
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        head = await self._reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        parsed: dict[str, str] = {}
        for line in header_lines:
            if line:
                name, _, value = line.partition(":")
                parsed[name.strip().lower()] = value.strip()
        status = int(status_line.split(" ", 2)[1])
        if status in (204, 304):
            return Response(status=status, headers=parsed, body=b"")
        if "content-length" not in parsed:
            raise ValueError(f"{method} {target}: response without Content-Length")
        payload = await self._reader.readexactly(int(parsed["content-length"]))
        return Response(status=status, headers=parsed, body=payload)

    async def close(self) -> None:
        self._writer.close()
        await self._writer.wait_closed()
