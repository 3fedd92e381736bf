"""`meetgate audit purge`: delete entries of the hosts' audit log from the store sooner than
`[privacy] audit_retention_days` would (docs/privacy.md). It talks to the store the config names,
not to the admin API: the memory store keeps the log inside the running server, where it goes
with the process, so there is nothing to purge from outside.

It deletes only what it is told to (`--room R` or `--all`, never by default) and asks first
unless `--yes`: an entry deleted is gone for good.

Exit codes: 0 done, 1 not confirmed (nothing deleted), 2 bad usage, a memory store, or a store
that does not answer.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from gateway.admission.rooms import is_room_name
from gateway.errors import ConfigError, StoreUnavailable
from gateway.settings import Settings, load_settings
from gateway.store import open_store
from gateway.subcommands import Commands, command

NOT_CONFIRMED: Final = 1
UNUSABLE: Final = 2
DAY_SECONDS: Final = 86_400
MAX_DAYS: Final = 36_500


def add_commands(subparsers: Commands) -> None:
    """Add `audit` and its one action, `purge`, to `meetgate`'s parser."""
    audit = command(
        subparsers,
        "audit",
        "the hosts' audit log: delete entries before their retention ends",
        ["meetgate audit purge --config /etc/meetgate/meetgate.toml --room board"],
    )
    actions = audit.add_subparsers(
        dest="action", required=True, metavar="ACTION", help="what to do"
    )
    purge = command(
        actions,
        "purge",
        "delete audit entries from the store (docs/privacy.md)",
        [
            "meetgate audit purge --config meetgate.toml --room board          # all of one room's",
            "meetgate audit purge --config meetgate.toml --all --older-than 7  # older than a week",
        ],
        description="Delete audit entries from the store: of one room (--room) or of every room"
        " (--all), every entry or only those older than a number of days. Asks first unless"
        " --yes.",
    )
    purge.add_argument("--config", help="TOML config file (found as `serve` finds it)")
    whose = purge.add_mutually_exclusive_group(required=True)
    whose.add_argument("--room", help="this room's entries")
    whose.add_argument("--all", action="store_true", help="every room's entries")
    purge.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    purge.add_argument(
        "--older-than",
        type=float,
        default=0.0,
        metavar="DAYS",
        help="only entries older than this many days (default 0: every entry)",
    )
    audit.set_defaults(func=command_audit)


def command_audit(args: argparse.Namespace) -> int:
    where = f"room {args.room}" if args.room else "every room"
    age = f" older than {args.older_than:g} days" if args.older_than else ""
    try:
        settings = _settings(args.config, args.room, args.older_than)
        if not args.yes and not _confirmed(f"Delete every audit entry of {where}{age}? [y/N] "):
            print(
                "meetgate: nothing deleted (answer y, or pass --yes to delete without asking)",
                file=sys.stderr,
            )
            return NOT_CONFIRMED
        dropped = _purge(settings, args.room, args.older_than)
    except (_Unusable, ConfigError) as exc:
        print(f"meetgate: {exc}", file=sys.stderr)
        return UNUSABLE
    print(f"deleted {dropped} audit entries of {where}{age}")
    return 0


def _confirmed(question: str) -> bool:
    try:
        answer = input(question)
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


class _Unusable(Exception):
    """What stops the command before it can purge: said in one line, exit 2."""


def _settings(config: str | None, room: str | None, older_than_days: float) -> Settings:
    """The settings, once the arguments are checked and the store is one to purge."""
    if room is not None and not is_room_name(room):
        raise _Unusable(f"--room: not a room name: {room!r}")
    # Written so that NaN is refused too.
    if not 0 <= older_than_days <= MAX_DAYS:
        raise _Unusable(f"--older-than: a number of days from 0 to {MAX_DAYS}")
    settings = load_settings(Path(config) if config else None, environ=dict(os.environ))
    if urlsplit(settings.store.url).scheme == "memory":
        raise _Unusable(
            "the memory store keeps the audit log inside the running server, and it goes when"
            " the server stops: there is nothing to purge from here"
        )
    return settings


def _purge(settings: Settings, room: str | None, older_than_days: float) -> int:
    before = time.time() - older_than_days * DAY_SECONDS

    async def purge() -> int:
        store = await open_store(settings.store.url, settings.store_options())
        try:
            return await store.purge_audit(room, before)
        finally:
            await store.close()

    try:
        return asyncio.run(purge())
    except StoreUnavailable as exc:
        raise _Unusable("the store does not answer: nothing was deleted") from exc
