"""Optional sampling profiles of the gateway during its timed runs (`--profile`, needs py-spy),
summed up by where the time goes: the framework, ticket signing, the HTTP client, the store…"""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path

# Each sample is charged to the innermost frame that names one of these parts (first match in
# this order within a frame); samples naming none are the server's own loop and parsing.
PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ticket signing", ("TicketAuthority.issue",)),
    ("random secrets", ("token_urlsafe", "token_hex")),
    ("httpx pool: choosing and expiring connections", ("_assign_requests_to_connections",)),
    ("httpx: streaming the upstream body", ("Response.aiter_raw",)),
    ("httpx: request, response head, release", ("AsyncClient.send", "Response.aclose")),
    ("the gate's upstream client (gateway/proxy/upstream.py)", ("(gateway/proxy/upstream",)),
    ("redis-py client", ("(redis/",)),
    ("logging (the access log line)", ("Logger.info", "Logger._log")),
    ("admission pipeline and store", ("AdmissionPipeline.", "MemoryStore.", "RedisStore.")),
    ("rendering pages and error pages (jinja2)", ("(jinja2/", "(gateway/web/rendering")),
    # Meetgate's own server (gateway/edge/server.py): `Cycle.send` and `WebSocket.send`, with
    # the framing they do (the server's own, websockets') and the socket writes (matched by name
    # and file, whether or not py-spy prefixes the class).
    (
        "writing the response (Meetgate's server: Cycle.send, framing, socket)",
        ("send (gateway/edge/server",),
    ),
    ("FastAPI and Starlette", ("(fastapi/", "(starlette/")),
    (
        "gate, pages, headers, access-log wrapper",
        ("(gateway/proxy/", "(gateway/web/", "(gateway/access_log", "(gateway/tickets"),
    ),
)
SERVER_LOOP = (
    "Meetgate's server reading requests (Connection.data_received, httptools' parser) and the "
    "event loop"
)
RATE_HZ = 100


class ProfilerMissing(RuntimeError):
    """--profile was asked for but py-spy is not installed."""


def py_spy() -> str:
    found = shutil.which("py-spy")
    if found is None:
        raise ProfilerMissing("--profile needs py-spy: pip install py-spy")
    return found


def start(pid: int, seconds: int, out: Path) -> subprocess.Popen[bytes]:
    """Sample `pid` for `seconds` into `out` (py-spy's raw format: one stack and count a line)."""
    command = [py_spy(), "record", "--pid", str(pid), "--duration", str(seconds)]
    command += ["--rate", str(RATE_HZ), "--format", "raw", "--output", str(out)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _part_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        for part, markers in PARTS:
            if any(marker in frame for marker in markers):
                return part
    return SERVER_LOOP


def breakdown(raw: Path) -> list[tuple[str, float]]:
    """(part, share of samples), largest first; empty if py-spy wrote nothing."""
    counts: Counter[str] = Counter()
    if raw.exists():
        for line in raw.read_text(encoding="utf-8", errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if stack and count.isdigit():
                counts[_part_of(stack.split(";"))] += int(count)
    total = sum(counts.values())
    return [(part, n / total) for part, n in counts.most_common()] if total else []
