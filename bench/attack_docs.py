"""docs/attack-replay.md's generated part and its plot, from one run of bench/attack_replay.py.

The page keeps what people wrote outside the generated part (between `BEGIN` and `END`): the
reading of the figures belongs to a person, the figures to the run.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from bench.attack_plot import plot
from bench.machine import this_machine
from bench.servers import redis_version

if TYPE_CHECKING:
    from bench.attack_replay import Outcome

BEGIN = "<!-- attack-replay:begin (written by `python -m bench.attack_replay --write-docs`) -->"
END = "<!-- attack-replay:end -->"
HEAD = """# The attack replayed

One command replays, on one machine and on loopback only, the day that started Meetgate: a join
flood, leaked links, trolls inside impersonating the organisers and spamming the chat, hosts
removing them, a Redis failover and a dead replica in the middle, a lockdown and a move. What it
measured the last time it ran is below; how to read it follows the figures.

"""


def flood_series(outcome: Outcome) -> list[tuple[float, int]]:
    """The flood's answers per second on the events' timeline (empty if it gave none)."""
    flood = outcome.flood
    if flood is None or flood.series_start is None:
        return []
    start = flood.series_start - outcome.events.origin
    return [(start + n, count) for n, count in enumerate(flood.per_second)]


def generated(outcome: Outcome, took: float, image: str) -> str:
    scale = outcome.scale
    found = this_machine("")
    machine = (
        f"{found.cores} cores ({found.cpu_model}), Python {found.python}, Linux {found.kernel}, "
        f"{redis_version()}"
    )
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        f"Run of {when} on {machine}; it took {took / 60:.1f} minutes. "
        f"{scale.attendees} attendees, 3 hosts, {scale.trolls} trolls, {scale.leaked} leaked "
        "links.",
        "",
        f"![Joins, refusals, removals and chat over the run]({image})",
        "",
        outcome.report.rstrip(),
    ]
    return "\n".join(lines) + "\n"


def write_docs(outcome: Outcome, took: float, docs: Path, image: Path) -> None:
    """Write the plot to `image` and the report between the markers of `docs` (made with a
    heading if it does not exist)."""
    plot(outcome.events, image, flood_series(outcome) or None)
    text = docs.read_text(encoding="utf-8") if docs.exists() else HEAD + f"{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{docs} lacks the markers {BEGIN!r} … {END!r}: not overwritten")
    before, _, rest = text.partition(BEGIN)
    _, _, after = rest.partition(END)
    body = generated(outcome, took, image.name)
    docs.write_text(f"{before}{BEGIN}\n{body}{END}{after}", encoding="utf-8")
