"""Two processes against one: `python -m bench.workers [--seconds 10] [--runs 5]`, and the
workers section of `python bench/run.py`.

Starts a redis-server, an upstream (nginx serving the upstream's files, as Jitsi's web server
does; bench/nginx.py) and `meetgate serve` twice on that Redis, once with one worker and once
with two (`[listen] workers`), admits one browser, then drives each gate in turn with wrk (one
thread, 64 connections) on two routes:

- **forward-auth**: `/_meetgate/forward-auth` with the admission cookie, as a TLS front asks
  before serving a static file (the per-process admission cache answers; no store round trip);
- **page**: a proxied 2 KiB file of the upstream (a static path) on the same cookie.

Runs alternate (one, two, one, two, …) so that drift on a shared machine falls on both sides.
Prints successful requests per second, median and worst of the runs, and the median and worst
of the runs' ratios (each run of two workers over the run of one just before it). Nothing
is pinned: the gate's workers, wrk and the upstream share the machine's cores, as they would on
a small server; on two cores wrk itself takes a good part of one.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.load import LoadResult, run_wrk
from bench.servers import GATEWAY_ENV, Gateway, Servers
from bench.upstream import SMALL_PATH

CONNECTIONS = 64
STATIC_ASKED = ("X-Forwarded-Uri: /libs/app.js", "X-Forwarded-Method: GET")
ROUTES = {
    "forward-auth": ("/_meetgate/forward-auth", STATIC_ASKED),
    "page": (SMALL_PATH, ()),
}


@dataclass(frozen=True, slots=True)
class Scaling:
    """One route's requests/s with one worker and with two, run by run (runs alternated)."""

    route: str
    one: list[float]
    two: list[float]
    # Timed runs with refusals or socket errors, described.
    errors: list[str]

    @property
    def ratios(self) -> list[float]:
        """Two over one, run by run (each pair measured back to back)."""
        return [two / one for one, two in zip(self.one, self.two, strict=True)]


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


def start_gates(servers: Servers, upstream: str, redis: str) -> tuple[Gateway, Gateway]:
    """`meetgate serve` with one worker and with two on `redis`, on every CPU (not pinned);
    started, not yet waited for."""
    one = servers.gateway("workers-one", upstream=upstream, store_url=redis, pinned=False)
    two = servers.gateway(
        "workers-two",
        upstream=upstream,
        store_url=redis,
        env={**GATEWAY_ENV, "MEETGATE_LISTEN__WORKERS": "2"},
        pinned=False,
    )
    return one, two


def measure_scaling(
    wrk: str, one: Gateway, two: Gateway, *, seconds: int, runs: int, warm_up: int = 2
) -> list[Scaling]:
    """Each route on each gate, `runs` times, alternating one, two, one, two…"""
    gates = {"one": one, "two": two}
    cookies = {kind: admitted_cookie(gate) for kind, gate in gates.items()}

    def load(kind: str, route: str, duration: int) -> LoadResult:
        path, extra = ROUTES[route]
        return run_wrk(
            wrk,
            gates[kind].url + path,
            seconds=duration,
            connections=CONNECTIONS,
            headers=(f"Cookie: meetgate={cookies[kind]}", *extra),
        )

    # Warm: connections, the admission cache, each worker's first requests.
    for kind in gates:
        for route in ROUTES:
            load(kind, route, warm_up)
    rates: dict[tuple[str, str], list[float]] = {
        (kind, route): [] for kind in gates for route in ROUTES
    }
    errors: dict[str, list[str]] = {route: [] for route in ROUTES}
    for _ in range(runs):
        for kind in gates:
            for route in ROUTES:
                found = load(kind, route, seconds)
                if found.refused or found.socket_errors:
                    errors[route].append(
                        f"{kind} worker(s): {found.refused} refused, "
                        f"{found.socket_errors} socket errors"
                    )
                rates[(kind, route)].append(found.per_second)
    return [
        Scaling(route, rates[("one", route)], rates[("two", route)], errors[route])
        for route in ROUTES
    ]


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
        upstream = servers.nginx_static()
        servers.wait_ready()
        one, two = start_gates(servers, upstream, redis)
        servers.wait_ready()
        found = measure_scaling(wrk, one, two, seconds=args.seconds, runs=args.runs)
    print("| route | one worker (median / worst) | two workers (median / worst) | ratio |")
    print("| --- | --- | --- | --- |")
    for scaling in found:
        one_rates, two_rates = scaling.one, scaling.two
        for error in scaling.errors:
            print(f"  {scaling.route}, {error}")
        print(
            f"| {scaling.route} | {statistics.median(one_rates):,.0f} / {min(one_rates):,.0f} "
            f"req/s | {statistics.median(two_rates):,.0f} / {min(two_rates):,.0f} req/s | "
            f"{statistics.median(scaling.ratios):.2f}x (worst {min(scaling.ratios):.2f}x) |"
        )


if __name__ == "__main__":
    main()
