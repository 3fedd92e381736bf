"""The attack replay's timeline plot (docs/attack-replay.png): four stacked panels of one-second
bins from `Events` alone (joins admitted, refusals, removals, chat heard), with the faults and
the hosts' emergency actions as vertical lines.

matplotlib is the `bench` extra's (pyproject.toml), imported inside `plot()` only, so that
nothing else of bench (nor the suite) needs it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

from bench.attack_events import (
    CHAT_HEARD,
    FAULT,
    GUARD_THRESHOLD,
    HOST_REMOVE,
    JOIN_OK,
    JOIN_REFUSED,
    Events,
)


def bins(
    times: Iterable[float], seconds: int, weights: Iterable[float] | None = None
) -> list[float]:
    """How many of `times` (weighted) fall in each one-second bin of [0, seconds)."""
    counts = [0.0] * seconds
    for at, weight in zip(times, weights if weights is not None else _ones(), strict=False):
        if 0 <= at < seconds:
            counts[int(at)] += weight
    return counts


def _ones() -> Iterable[float]:
    while True:
        yield 1.0


def series(
    events: Events, flood_series: Sequence[tuple[float, int]] | None = None
) -> dict[str, list[float]]:
    """The plot's data, one list per line, each bin one second of the events' timeline."""
    last = max((e.at for e in events.items), default=0.0)
    last = max([last, *(at for at, _ in flood_series or ())])
    seconds = math.floor(last) + 1
    heard = events.of(CHAT_HEARD)
    return {
        "joins admitted": bins((e.at for e in events.of(JOIN_OK)), seconds),
        "joins refused": bins((e.at for e in events.of(JOIN_REFUSED)), seconds),
        "flood refused": bins(
            (at for at, _ in flood_series or ()),
            seconds,
            (float(n) for _, n in flood_series or ()),
        ),
        "removed by a host": bins((e.at for e in events.of(HOST_REMOVE)), seconds),
        "removed by the guard": bins((e.at for e in events.of(GUARD_THRESHOLD)), seconds),
        "legitimate chat heard": bins((e.at for e in heard if e.detail.startswith("m:")), seconds),
        "troll chat heard": bins((e.at for e in heard if e.detail.startswith("t:")), seconds),
    }


def plot(
    events: Events, path: Path, flood_series: Sequence[tuple[float, int]] | None = None
) -> None:
    """Write the timeline to `path` (PNG). `flood_series`: (second on the events' timeline,
    refusals the flood counted in it), when the load tool gave them per second."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = series(events, flood_series)
    x = list(range(len(data["joins admitted"])))
    figure, axes = plt.subplots(4, 1, sharex=True, figsize=(11, 9), constrained_layout=True)
    joins, refusals, removals, chat = axes
    joins.bar(
        x, data["joins admitted"], width=1.0, align="edge", color="tab:green", label="admitted"
    )
    joins.set_ylabel("joins / s")
    # Lines, not bars: a bar from 0 has no bottom on a log scale.
    refusals.step(
        x, data["flood refused"], where="post", color="tab:red", label="flood attempts answered"
    )
    refusals.step(
        x, data["joins refused"], where="post", color="tab:orange", label="legitimate refused"
    )
    refusals.set_yscale("log", nonpositive="clip")
    refusals.set_ylim(bottom=0.8)
    refusals.set_ylabel("refusals / s (log)")
    removals.bar(
        x, data["removed by a host"], width=1.0, align="edge", color="tab:blue", label="by a host"
    )
    removals.bar(
        x,
        data["removed by the guard"],
        width=1.0,
        align="edge",
        bottom=data["removed by a host"],
        color="tab:purple",
        label="by the wire guard",
    )
    removals.set_ylabel("removals / s")
    chat.step(x, data["legitimate chat heard"], where="post", color="tab:green", label="legitimate")
    chat.step(x, data["troll chat heard"], where="post", color="tab:red", label="troll")
    chat.set_ylabel("chat heard / s")
    chat.set_xlabel("seconds since the start")
    for fault in events.of(FAULT):
        for ax in axes:
            ax.axvline(fault.at, color="black", linestyle="--", linewidth=0.8)
        joins.annotate(
            fault.detail,
            (fault.at, 1.0),
            xycoords=("data", "axes fraction"),
            rotation=90,
            va="top",
            ha="right",
            fontsize=8,
        )
    for ax in axes:
        ax.legend(loc="upper left", fontsize=8)
    joins.set_title("The attack replayed: joins, refusals, removals and chat over time")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
