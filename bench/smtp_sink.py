"""The invitations section's mail server: aiosmtpd on a loopback port, in a process of its own,
accepting every message and writing one line for each recipient to a file (the moment it
accepted the message, on the system's monotonic clock that every process shares, and the
recipient), so the benchmark counts what was delivered without asking the gate.

    python -m bench.smtp_sink PORT FILE
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path
from typing import IO, Any

from aiosmtpd.smtp import SMTP


class Recorder:
    """aiosmtpd's handler: every message accepted, its recipients written down, nothing kept."""

    def __init__(self, out: IO[str]) -> None:
        self._out = out

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        accepted = time.monotonic()
        self._out.write("".join(f"{accepted:.6f} {rcpt}\n" for rcpt in envelope.rcpt_tos))
        self._out.flush()
        return "250 OK"


async def serve(port: int, path: Path) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    with path.open("a", encoding="ascii") as out:
        recorder = Recorder(out)
        server = await loop.create_server(
            lambda: SMTP(recorder, hostname="bench.test"), "127.0.0.1", port
        )
        async with server:
            await stop.wait()


def main() -> None:
    port, path = int(sys.argv[1]), Path(sys.argv[2])
    asyncio.run(serve(port, path))


if __name__ == "__main__":
    main()
