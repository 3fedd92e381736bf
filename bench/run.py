"""Meetgate's benchmark, one command: `python bench/run.py [--quick] [--only SECTION,…]`.

Starts everything it needs on loopback (an upstream, the baselines: a bare ASGI app and Debian's
nginx, installed if missing; `meetgate serve` in the configurations the sections need, a
redis-server, a prosody for the revocation section), measures each of issue 15's goals (and
issue 16's: the wire guard's cost, `--only guard`) against its baseline in the same run, several
times over, prints a markdown table with each goal's median and worst (`--write-docs`: also into
docs/performance.md), and stops every process it started, also on Ctrl-C or an error.
`--faults` runs the revocation fault report instead (bench/revocation_faults.py).
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
from pathlib import Path
from types import FrameType

# `python bench/run.py` puts bench/ first on sys.path, where its modules would shadow any
# top-level module of the same name; they are imported as `bench.*` (with `gateway.*` and
# `tests.fixtures.*`) from the repository root instead.
sys.path.remove(str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.revocation_faults import faults_options, run_faults
from bench.suite import SECTIONS, Options, run


def parse_options(argv: list[str]) -> Options:
    parser = argparse.ArgumentParser(prog="python bench/run.py", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="short runs, one repeat (about two minutes)"
    )
    parser.add_argument(
        "--seconds", type=int, help="timed seconds per side and repeat (5; --quick 2)"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        help="timed runs of each figure and its baseline, for the median and the worst "
        "(3; --quick 1)",
    )
    parser.add_argument(
        "--flood-repeats", type=int, help="repeats of the join flood (5; --quick 2)"
    )
    parser.add_argument(
        "--flood-seconds",
        type=int,
        help="each flood phase's length: 10 joins a second (10; --quick 3)",
    )
    parser.add_argument(
        "--redis",
        metavar="URL",
        help="measure the Redis store's redemptions and forward-auth on this server instead of "
        "on a redis-server of the run's own (never flushed: the run uses rooms of its own and "
        "deletes them)",
    )
    parser.add_argument(
        "--write-docs", action="store_true", help="rewrite docs/performance.md's figures"
    )
    parser.add_argument(
        "--room-size",
        type=int,
        default=100,
        help="redemptions per room (100, a large meeting): each new name is checked against "
        "the room's, so this sets how much of that check a redemption pays",
    )
    parser.add_argument(
        "--only",
        metavar="SECTION[,SECTION…]",
        help=f"run only these parts: {', '.join(SECTIONS)} (default: all)",
    )
    parser.add_argument(
        "--revocations",
        type=int,
        help="timed revocations per set-up in the revocation section (200; --quick 50)",
    )
    parser.add_argument(
        "--idle-sockets",
        type=int,
        help="idle relayed WebSockets held open on a fresh gateway each repeat (10000; "
        "--quick 500)",
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument(
        "--faults",
        action="store_true",
        help="instead, the revocation fault report (bench/revocation_faults.py): revoke → "
        "socket closed across two replicas, pub/sub healthy, subscriptions dropped, Redis "
        "paused, Redis killed and restarted, a Sentinel failover, every message lost",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample the gateway with py-spy during its timed runs and say where the time goes "
        "(the sampling itself lowers the figures a little)",
    )
    args = parser.parse_args(argv)
    seconds = args.seconds or (2 if args.quick else 5)
    repeats = args.repeats or (1 if args.quick else 3)
    flood_repeats = args.flood_repeats or (2 if args.quick else 5)
    flood_seconds = args.flood_seconds or (3 if args.quick else 10)
    if min(seconds, repeats, flood_repeats, flood_seconds) < 1:
        parser.error("--seconds, --repeats, --flood-repeats and --flood-seconds must be >= 1")
    if args.room_size < 1:
        parser.error("--room-size must be at least 1")
    sections = frozenset(SECTIONS)
    if args.only:
        sections = frozenset(part.strip() for part in args.only.split(",") if part.strip())
        unknown = sorted(sections - set(SECTIONS))
        if unknown or not sections:
            parser.error(f"--only takes some of: {', '.join(SECTIONS)} (not {unknown})")
        if args.write_docs:
            parser.error("--write-docs needs every section: the page shows one whole run")
    revocations = args.revocations or (50 if args.quick else 200)
    idle_sockets = args.idle_sockets or (500 if args.quick else 10_000)
    if revocations < 1 or idle_sockets < 100:
        parser.error("--revocations must be at least 1 and --idle-sockets at least 100")
    return Options(
        seconds=seconds,
        warm_up=1 if args.quick else 2,
        round_trips=1000 if args.quick else 2000,
        redis_url=args.redis,
        write_docs=args.write_docs,
        pin=not args.no_pin,
        profile=args.profile,
        room_size=args.room_size,
        command=shlex.join(["python", "bench/run.py", *argv]),
        sections=sections,
        revocations=revocations,
        idle_sockets=idle_sockets,
        repeats=repeats,
        flood_repeats=flood_repeats,
        flood_seconds=flood_seconds,
    )


def _terminate(signum: int, _frame: FrameType | None) -> None:
    # Unwinds like Ctrl-C, so every started process is stopped on the way out.
    raise SystemExit(128 + signum)


def main() -> int:
    options = parse_options(sys.argv[1:])
    # Set even where the shell started this run with SIGINT ignored (a background job), so
    # that Ctrl-C or `kill -INT` always unwinds through the code that stops the servers.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    try:
        if "--faults" in sys.argv[1:]:
            report = run_faults(
                faults_options(options.revocations, command=options.command, pin=options.pin)
            )
        else:
            report = run(options)
    except KeyboardInterrupt:
        print("interrupted: every process this run started has been stopped", file=sys.stderr)
        return 130
    print()
    print(report.text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
