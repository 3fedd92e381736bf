"""`meetgate evidence …`: `key` shows (or makes) the gate's evidence key, `export` writes a
room's evidence to one file (from Redis with the Redis store, else from [evidence] directory),
`verify` checks such a file offline, with no config and no store.

Exit codes scripts rely on: 0 done (valid), 1 invalid, 2 bad usage or a file that cannot be
read.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import stat
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

from gateway.errors import ConfigError, StoreUnavailable
from gateway.evidence.backend import is_redis_url, open_evidence
from gateway.evidence.entries import EvidenceError, check_chain_name, moment
from gateway.evidence.export import MAX_EXPORT_BYTES, Verdict, verify_export, verify_stream
from gateway.evidence.signing import (
    fingerprint,
    generate_private_pem,
    load_private_key,
    public_hex,
    shown_fingerprint,
)
from gateway.subcommands import Commands, command

if TYPE_CHECKING:
    from gateway.settings import Settings

VALID: Final = 0
INVALID: Final = 1
UNUSABLE: Final = 2
FINGERPRINT: Final = re.compile(r"[0-9a-fA-F]{64}")


class Unusable(Exception):
    """What stops a command before it can answer: said in one line, exit 2."""


def add_commands(subparsers: Commands) -> None:
    """Add `evidence` and its actions to `meetgate`'s parser."""
    evidence = command(
        subparsers,
        "evidence",
        "the signed evidence log of attacks: export a room's, verify an export, show the key",
        [
            "meetgate evidence export --room board --output board-evidence.jsonl",
            "meetgate evidence verify board-evidence.jsonl",
        ],
    )
    actions = evidence.add_subparsers(
        dest="action", required=True, metavar="ACTION", help="what to do"
    )
    key = command(
        actions,
        "key",
        "show the evidence key's public half and fingerprint, or make a key file",
        [
            "meetgate evidence key --config /etc/meetgate/meetgate.toml",
            "meetgate evidence key --generate /etc/meetgate/evidence-key.pem",
        ],
    )
    key.add_argument("--config", help="TOML config file (found as `serve` finds it)")
    key.add_argument(
        "--generate",
        metavar="PATH",
        help="write a new key to PATH (mode 0600; never over an existing file), then name it in"
        " [evidence] key_file",
    )
    key.set_defaults(func=command_key)

    export = command(
        actions,
        "export",
        "write a room's evidence to one signed file",
        [
            "meetgate evidence export --room board --output board.jsonl",
            "meetgate evidence export --room board --output board.jsonl \\",
            "    --since 2026-12-05T14:00Z --until 2026-12-05T16:00Z",
        ],
    )
    export.add_argument("--config", help="TOML config file (found as `serve` finds it)")
    export.add_argument("--room", required=True, help="the room (_gate: the gate's own chain)")
    export.add_argument("--output", required=True, help="the file to write (never overwritten)")
    export.add_argument("--since", help="from this moment (ISO 8601, UTC unless it says)")
    export.add_argument("--until", help="up to this moment (ISO 8601, UTC unless it says)")
    export.set_defaults(func=command_export)

    verify = command(
        actions,
        "verify",
        "check an export offline: exit 0 valid, 1 invalid, 2 unreadable",
        [
            "meetgate evidence verify board.jsonl",
            "meetgate evidence verify board.jsonl --key '837a fd61 …'   # the fingerprint",
        ],
    )
    verify.add_argument("file", help="the export to check")
    verify.add_argument(
        "--key",
        help="the fingerprint the file must be signed with (as `meetgate evidence key` shows it)",
    )
    verify.set_defaults(func=command_verify)


def _unusable_exits(
    command: Callable[[argparse.Namespace], int],
) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return int(command(args))
        except Unusable as exc:
            print(f"meetgate: {exc}", file=sys.stderr)
            return UNUSABLE

    return run


# ---------------------------------------------------------------- verify


@_unusable_exits
def command_verify(args: argparse.Namespace) -> int:
    expected = args.key
    if expected is not None and FINGERPRINT.fullmatch(expected.replace(" ", "")) is None:
        raise Unusable("--key must be a fingerprint: 64 hex digits (spaces allowed)")
    path = Path(args.file)
    verdict = _verify_file(path, expected)
    if not verdict.readable:
        raise Unusable(f"{path} is not an export: {verdict.problem}")
    if verdict.problem is not None:
        print(f"INVALID: {_shown_path(path)}: {verdict.problem}")
        return INVALID
    facts = verdict.summary
    kinds = facts.get("kinds")
    counted = ", ".join(
        f"{kind} {n}" for kind, n in sorted(kinds.items() if isinstance(kinds, dict) else ())
    )
    anchor = verdict.anchor
    start = "the chain's start" if anchor is None or anchor.seq == 0 else f"seq {anchor.seq}"
    print(f"valid: room {verdict.room}, exported {verdict.exported}")
    print(f"  {facts['entries']} entries ({counted or 'none'}), after {start}")
    print(f"  from {facts['from'] or '-'} to {facts['to'] or '-'}")
    print(f"  {verdict.signed_heads} signed heads; signed by the key with fingerprint")
    print(f"  {shown_fingerprint(verdict.key)}")
    if expected is None:
        print(
            "  Compare that fingerprint with the one the gate's admins publish (`meetgate"
            " evidence key`), or pass it as --key: anyone can sign a file with a key of their own."
        )
    return VALID


def _shown_path(path: Path) -> str:
    return "".join(c if c.isprintable() else "?" for c in str(path))


def _verify_file(path: Path, expected: str | None) -> Verdict:
    """The verdict on the file at `path`, read line by line (never whole); Unusable when it
    cannot be read, or when checking it fails in a way no file should make it fail."""
    shown = _shown_path(path)
    try:
        # Not blocking on a FIFO or a device: only a regular file is read.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as handle:
            facts = os.fstat(fd)
            if stat.S_ISDIR(facts.st_mode):
                raise Unusable(f"{shown} is a directory, not an export")
            if not stat.S_ISREG(facts.st_mode):
                raise Unusable(f"{shown} is not a regular file")
            if facts.st_size > MAX_EXPORT_BYTES:
                raise Unusable(
                    f"{shown} is larger than any export ({MAX_EXPORT_BYTES // (1024 * 1024)} MiB)"
                )
            return verify_stream(handle, expected)
    except FileNotFoundError:
        raise Unusable(f"{shown} does not exist") from None
    except IsADirectoryError:
        raise Unusable(f"{shown} is a directory, not an export") from None
    except PermissionError:
        raise Unusable(f"{shown} cannot be read by this user") from None
    except OSError as exc:
        raise Unusable(f"{shown} cannot be read: {exc.strerror or exc}") from None
    except Unusable:
        raise
    except Exception as exc:
        # A check that fails on some input is a bug; the file still gets an answer, not a trace.
        raise Unusable(f"{shown} cannot be read as an export ({type(exc).__name__})") from None


# ---------------------------------------------------------------- key


@_unusable_exits
def command_key(args: argparse.Namespace) -> int:
    if args.generate:
        path = Path(args.generate)
        pem = generate_private_pem()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise Unusable(f"{path} exists: a key in use is never overwritten") from None
        except OSError as exc:
            raise Unusable(f"{path} cannot be written: {exc.strerror or exc}") from None
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        _sync_directory(path.parent)
        print(f"wrote {path} (mode 0600); name it in the config: [evidence] key_file = {path}")
        _show_key(pem)
        return VALID
    settings = _settings(args)
    if settings.evidence.private_pem is None:
        raise Unusable(
            "no evidence key: make one with `meetgate evidence key --generate PATH` and name it"
            " in [evidence] key_file"
        )
    _show_key(settings.evidence.private_pem)
    return VALID


def _sync_directory(directory: Path) -> None:
    """Make a file just created in `directory` outlive a power cut (its name is the
    directory's)."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _show_key(pem: bytes) -> None:
    public = public_hex(load_private_key(pem))
    print(f"public key (Ed25519, hex): {public}")
    print(f"fingerprint (SHA-256):     {shown_fingerprint(fingerprint(public))}")


def _settings(args: argparse.Namespace) -> Settings:
    # Read only by the commands that need the gate's config: verify never does.
    from gateway.settings import load_settings

    try:
        return load_settings(Path(args.config) if args.config else None, allow_ephemeral=False)
    except ConfigError as exc:
        raise Unusable(str(exc)) from None


# ---------------------------------------------------------------- export


@_unusable_exits
def command_export(args: argparse.Namespace) -> int:
    try:
        room = check_chain_name(args.room)
    except EvidenceError:
        raise Unusable(f"--room {args.room!r} is not a room's name (nor _gate)") from None
    since, until = _moment(args.since, "--since"), _moment(args.until, "--until")
    if since is not None and until is not None and since >= until:
        raise Unusable("--since must come before --until")
    output = Path(args.output)
    if output.exists():
        raise Unusable(f"{output} exists: choose another --output")
    settings = _settings(args)
    evidence = settings.evidence
    if evidence.private_pem is None:
        raise Unusable("no evidence key: set [evidence] key_file (`meetgate evidence key`)")
    if not is_redis_url(settings.store.url) and evidence.directory is None:
        raise Unusable(
            "[evidence] directory is not set and the store is memory://: this gate keeps no"
            " evidence outside its own process to export"
        )
    try:
        backend = open_evidence(evidence, settings.store.url, create=False)
    except ConfigError as exc:
        raise Unusable(str(exc)) from None
    log = backend.log

    async def export() -> tuple[bytes, int]:
        try:
            if room not in await log.chain_names():
                raise Unusable(f"no evidence for room {room}: this gate keeps no chain of it")
            part = await log.read(room, since, until)
            return log.export_part(part, since, until), part.unchecked
        finally:
            await backend.aclose()

    try:
        data, unchecked = asyncio.run(export())
    except EvidenceError as exc:
        raise Unusable(f"the stored evidence of {room} cannot be exported: {exc}") from None
    except StoreUnavailable:
        raise Unusable(f"the store at [store] url cannot be reached: {room} not exported") from None
    # What this gate signs must verify as any reader will check it; if it does not, nothing
    # is written that would pass for the evidence.
    verdict = verify_export(data)
    if not verdict.valid:
        print(
            f"meetgate: the export of {room} made from the stored evidence does not verify"
            f" ({verdict.problem}); nothing written",
            file=sys.stderr,
        )
        return INVALID
    try:
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise Unusable(f"{output} cannot be written: {exc.strerror or exc}") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    print(f"wrote {output}: {verdict.summary.get('entries', 0)} entries of room {room}")
    print(f"verify it with: meetgate evidence verify {output}")
    if unchecked:
        print(
            f"note: {unchecked} signed heads kept with the chain were made by another key (one"
            " used before this one?): they cannot be checked here and were left out"
        )
    return VALID


def _moment(text: str | None, option: str) -> str | None:
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text.strip())
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return moment(when.timestamp())
    except (ValueError, OverflowError, OSError):
        raise Unusable(f"{option} {text!r} is not a moment: use e.g. 2026-12-05T14:00Z") from None
