"""Two processes against one: `python -m bench.workers [--seconds 10] [--runs 5]`.

Starts a redis-server, an upstream (bench.upstream) and `meetgate serve` twice on that Redis, once
with one worker and once with two (`[listen] workers`), admits one browser, then drives each
gate in turn with wrk (one thread, 64 connections) on two routes:

- **forward-auth**: `/_meetgate/forward-auth` with the admission cookie, as a TLS front asks
  before serving a static file (the per-process admission cache answers; no store round trip);
- **page**: a proxied 2 KiB file of the upstream (a static path) on the same cookie.

Runs alternate (one, two, one, two, …) so that drift on a shared machine falls on both sides.
Prints requests per second, median and worst of the runs, and the ratio of the medians. Nothing
is pinned: the gate's workers, wrk and the upstream share the machine's cores, as they would on
a small server; on two cores wrk itself takes a good part of one.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import httpx

from bench.load import run_wrk
from bench.servers import GATEWAY_ENV, Gateway, Servers
from bench.upstream import SMALL_PATH

CONNECTIONS = 64
STATIC_ASKED = ("X-Forwarded-Uri: /libs/app.js", "X-Forwarded-Method: GET")


def admitted_cookie(gateway: Gateway) -> str:
    headers = {"authorization": f"Bearer {gateway.admin_token}"}
    with httpx.Client(base_url=gateway.admin_url, headers=headers, trust_env=False) as admin:
        if admin.get("/api/v1/rooms/bench-workers").status_code == 404:
            admin.post("/api/v1/rooms", json={"name": "bench-workers"}).raise_for_status()
        made = admin.post(
            "/api/v1/rooms/bench-workers/invites", json={"name": "Ada", "max_uses": 1}
        )
        made.raise_for_status()
        link = made.json()["link"]
    token = link.rsplit("/j/", 1)[1]
    with httpx.Client(base_url=gateway.url, trust_env=False) as browser:
        joined = browser.post(f"/j/{token}", headers={"origin": gateway.url})
        if joined.status_code != 303:
            raise RuntimeError(f"join refused: {joined.status_code} {joined.text[:200]}")
        return str(browser.cookies["meetgate"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    wrk = shutil.which("wrk")
    if wrk is None:
        sys.exit("wrk is not installed (apt-get install -y wrk)")
    with tempfile.TemporaryDirectory() as workdir, Servers(Path(workdir), None) as servers:
        redis = servers.redis()
        upstream = servers.bench_app("upstream")
        servers.wait_ready()
        gates = {
            "one": servers.gateway("one", upstream=upstream, store_url=redis),
            "two": servers.gateway(
                "two",
                upstream=upstream,
                store_url=redis,
                env={**GATEWAY_ENV, "MEETGATE_LISTEN__WORKERS": "2"},
            ),
        }
        servers.wait_ready()
        routes = {
            "forward-auth": ("/_meetgate/forward-auth", STATIC_ASKED),
            "page": (SMALL_PATH, ()),
        }
        rates: dict[tuple[str, str], list[float]] = {}
        cookies: dict[str, str] = {}
        for kind, gate in gates.items():
            cookies[kind] = admitted_cookie(gate)
            for route, (path, extra) in routes.items():
                # Warm: connections, the admission cache, each worker's first requests.
                run_wrk(wrk, gate.url + path, seconds=2, connections=CONNECTIONS,
                        headers=(f"Cookie: meetgate={cookies[kind]}", *extra))  # fmt: skip
                rates[(kind, route)] = []
        for _ in range(args.runs):
            for kind, gate in gates.items():
                cookie = cookies[kind]
                for route, (path, extra) in routes.items():
                    found = run_wrk(
                        wrk,
                        gate.url + path,
                        seconds=args.seconds,
                        connections=CONNECTIONS,
                        headers=(f"Cookie: meetgate={cookie}", *extra),
                    )
                    if found.refused or found.socket_errors:
                        print(f"  {kind} {route}: {found.refused} refused, "
                              f"{found.socket_errors} socket errors")  # fmt: skip
                    rates[(kind, route)].append(found.requests / found.seconds)
        print("| route | one worker (median / worst) | two workers (median / worst) | ratio |")
        print("| --- | --- | --- | --- |")
        for route in routes:
            one, two = rates[("one", route)], rates[("two", route)]
            ratio = statistics.median(two) / statistics.median(one)
            print(
                f"| {route} | {statistics.median(one):,.0f} / {min(one):,.0f} req/s"
                f" | {statistics.median(two):,.0f} / {min(two):,.0f} req/s | {ratio:.2f}x |"
            )


if __name__ == "__main__":
    main()
