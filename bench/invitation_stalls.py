"""Where a gate's event loop stalls while it sends invitations (issue 19): the whole gate and its
admin API in this process on the memory store (its own outbox, as `meetgate serve` builds it),
aiosmtpd in a thread, 500 invitees imported with `send`; a ticker that asks to wake every 5 ms
records how late the loop lets it (the wait a join's request would have on top of its own work),
and cProfile, on the loop's thread only, says which of the gate's calls took that time.

    python -m bench.invitation_stalls [--per-minute N] [--seconds S]

`--per-minute` is `[outbox] per_minute` (default 100000: as fast as the gate and the mail server
go; 60 is the setting's default); the ticker runs from the import's request until every e-mail
is delivered or `--seconds` have passed. The profile slows what it watches (by about a third):
read its shares, not its times.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import time
from dataclasses import dataclass

import httpx

from gateway.app import create_admin, create_app
from gateway.metrics import Metrics
from gateway.settings import load_settings
from gateway.store import open_store
from tests.fixtures.smtp import start_smtp

INVITATIONS = 500
TICK_SECONDS = 0.005
TOKEN = "t" * 40


@dataclass(frozen=True, slots=True)
class Stalls:
    import_seconds: float
    delivered: int
    seconds: float
    lags_ms: list[float]
    profile: str

    def quantile(self, fraction: float) -> float:
        ordered = sorted(self.lags_ms)
        return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] if ordered else 0.0


async def measure(per_minute: int, seconds: float, profiled: bool) -> Stalls:
    smtp = start_smtp()
    environ = {
        "MEETGATE_PUBLIC_URL": "http://127.0.0.1:8000",
        "MEETGATE_ADMISSION__PSEUDONYM_KEY": "k" * 40,
        "MEETGATE_ADMIN__TOKEN": TOKEN,
        "MEETGATE_CHALLENGE__MODE": "off",
        "MEETGATE_SMTP__HOST": smtp.host,
        "MEETGATE_SMTP__PORT": str(smtp.port),
        "MEETGATE_SMTP__SECURITY": "none",
        "MEETGATE_OUTBOX__PER_MINUTE": str(per_minute),
        "MEETGATE_OUTBOX__BURST": str(min(10_000, max(10, per_minute // 10))),
    }
    settings = load_settings(None, environ=environ)
    store = await open_store("memory://")
    metrics = Metrics()
    gate = create_app(settings, store, metrics)
    admin = create_admin(settings, store, metrics, gate.evidence, gate=gate)
    await gate.start()
    loop = asyncio.get_running_loop()
    lags: list[float] = []

    async def ticker() -> None:
        while True:
            asked = loop.time()
            await asyncio.sleep(TICK_SECONDS)
            lags.append((loop.time() - asked - TICK_SECONDS) * 1000)

    profile = cProfile.Profile()
    transport = httpx.ASGITransport(admin)
    headers = {"authorization": f"Bearer {TOKEN}"}
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://admin", headers=headers
        ) as client:
            made = await client.post("/api/v1/rooms", json={"name": "stalls"})
            made.raise_for_status()
            rows = "".join(f"Invitee {n},invitee-{n}@bench.example\n" for n in range(INVITATIONS))
            body = {"csv": "name,email\n" + rows, "send": True}
            ticking = asyncio.create_task(ticker())
            if profiled:
                profile.enable()
            started = time.perf_counter()
            answer = await client.post("/api/v1/rooms/stalls/invites/import", json=body)
            imported = time.perf_counter() - started
            answer.raise_for_status()
            deadline = time.monotonic() + seconds
            while len(smtp.mailbox.messages) < INVITATIONS and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            took = time.perf_counter() - started
            profile.disable()
            ticking.cancel()
    finally:
        await gate.aclose()
        await store.close()
        smtp.stop()
    out = io.StringIO()
    if profiled:
        stats = pstats.Stats(profile, stream=out).sort_stats("cumulative")
        stats.print_stats(r"gateway/|email/(message|headerregistry)|concurrent/futures", 25)
    return Stalls(imported, len(smtp.mailbox.messages), took, lags, out.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.invitation_stalls")
    parser.add_argument("--per-minute", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--profile", action="store_true", help="and where the loop's time goes")
    args = parser.parse_args()
    found = asyncio.run(measure(args.per_minute, args.seconds, args.profile))
    late = found.lags_ms
    print(
        f"per_minute {args.per_minute}: import answered in {found.import_seconds:.2f} s, "
        f"{found.delivered} of {INVITATIONS} delivered in {found.seconds:.1f} s; the loop's lag "
        f"over {len(late)} ticks: p50 {found.quantile(0.5):.1f} ms, p99 {found.quantile(0.99):.1f}"
        f" ms, max {max(late, default=0):.1f} ms, {sum(1 for ms in late if ms > 20)} over 20 ms, "
        f"{sum(1 for ms in late if ms > 100)} over 100 ms"
    )
    if found.profile:
        print(found.profile)


if __name__ == "__main__":
    main()
