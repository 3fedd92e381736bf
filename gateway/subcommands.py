"""How every `meetgate` subcommand is declared, wherever its code lives (the CLI, the evidence
log, the audit log): its one-line summary in the command list and atop its `--help`, its
examples at the end."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any, Protocol


class Commands(Protocol):
    """What `add_subparsers` returns, as far as `command` uses it."""

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser: ...


def command(
    commands: Commands,
    name: str,
    summary: str,
    examples: Sequence[str],
    parents: Sequence[argparse.ArgumentParser] = (),
    *,
    description: str | None = None,
) -> argparse.ArgumentParser:
    """A subcommand whose `--help` gives its summary (or the longer `description`) and, at the
    end, its examples."""
    return commands.add_parser(
        name,
        parents=list(parents),
        help=summary,
        description=description or summary,
        epilog="Example:\n" + "\n".join(f"  {line}" for line in examples),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
