"""The results table, in markdown, and the generated part of docs/performance.md."""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from bench.machine import Machine

DOCS_BEGIN = "<!-- bench:begin (written by `python bench/run.py --write-docs`) -->"
DOCS_END = "<!-- bench:end -->"


@dataclass(frozen=True, slots=True)
class Figure:
    """One row: Meetgate's figure, the baseline's from the same run, and how they compare."""

    what: str
    meetgate: str
    baseline: str
    comparison: str
    target: str = "—"
    met: bool | None = None

    @property
    def verdict(self) -> str:
        return {True: "met", False: "**missed**", None: "—"}[self.met]


@dataclass(frozen=True, slots=True)
class Goal:
    """One goal's row: a figure measured in several repeats, each against a baseline measured in
    the same repeat, and the score (ratio, added latency, size) its target is set on.

    The verdict is on the median score, or on the worst where the goal asks for every repeat.
    """

    what: str
    # Meetgate's figure and the baseline's, per repeat, in `unit` (a format: "{:,.0f}/s").
    meetgate: list[float]
    baseline: list[float]
    unit: str
    baseline_name: str
    # What the target is set on, per repeat, in `score_unit` (a format: "{:.0%}").
    scores: list[float]
    score_unit: str
    target: float
    higher_is_better: bool
    target_text: str
    every_repeat: bool = False

    @property
    def median(self) -> float:
        return statistics.median(self.scores)

    @property
    def worst(self) -> float:
        return min(self.scores) if self.higher_is_better else max(self.scores)

    def meets(self, score: float) -> bool:
        return score >= self.target if self.higher_is_better else score <= self.target

    @property
    def met(self) -> bool:
        return self.meets(self.worst if self.every_repeat else self.median)

    @property
    def verdict(self) -> str:
        if not self.met:
            return "**missed**"
        if not self.meets(self.worst):
            return "met by the median, not by the worst repeat"
        return "met"

    def row(self) -> str:
        baseline = (
            f"{self.unit.format(statistics.median(self.baseline))} {self.baseline_name}"
            if self.baseline
            else self.baseline_name
        )
        return (
            f"| {self.what} | {self.unit.format(statistics.median(self.meetgate))} | {baseline} "
            f"| {self.score_unit.format(self.median)} | {self.score_unit.format(self.worst)} "
            f"| {len(self.scores)} | {self.target_text} | {self.verdict} |"
        )


@dataclass(frozen=True, slots=True)
class Report:
    command: str
    date: str
    machine: Machine
    method: list[str]
    figures: list[Figure]
    runs: list[str]
    details: list[str]
    profiles: list[str]
    warnings: list[str]
    # Issue 15's rows; other reports (the fault report) have none.
    goals: list[Goal] = field(default_factory=list)

    def goals_table(self) -> str:
        lines = [
            "| goal | Meetgate (median) | baseline, same run (median) | Meetgate vs baseline: "
            "median | worst | repeats | target | |",
            "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |",
        ]
        lines += [goal.row() for goal in self.goals]
        return "\n".join(lines)

    def table(self) -> str:
        lines = [
            "| measurement | Meetgate | baseline | Meetgate vs baseline | target | |",
            "| --- | ---: | ---: | ---: | --- | --- |",
        ]
        for f in self.figures:
            lines.append(
                f"| {f.what} | {f.meetgate} | {f.baseline} | {f.comparison} | {f.target} "
                f"| {f.verdict} |"
            )
        return "\n".join(lines)

    def text(self) -> str:
        parts = [
            f"- Command: `{self.command}`",
            f"- Date: {self.date}",
            f"- Machine: {self.machine.describe()}",
        ]
        if self.goals:
            parts += [
                "",
                "Issue 15's goals (each figure's median and worst over the repeats, each repeat "
                "against its baseline measured next to it in the same run):",
                "",
                self.goals_table(),
            ]
        if self.figures:
            parts += ["", "Other figures (one run each unless they say otherwise):", ""]
            parts.append(self.table())
        parts += ["", *(f"- {line}" for line in self.method)]
        if self.runs:
            parts += ["", "Timed runs (wrk's own latency figures are under load, not round trips):"]
            parts += ["", *(f"- {line}" for line in self.runs)]
        if self.details:
            parts += ["", "Details:", "", *(f"- {line}" for line in self.details)]
        if self.profiles:
            parts += ["", "Where the gateway's time went (py-spy samples):", ""]
            parts += [f"- {line}" for line in self.profiles]
        if self.warnings:
            parts += ["", *(f"- WARNING: {line}" for line in self.warnings)]
        return "\n".join(parts)


def ratio(part: float, whole: float) -> str:
    return f"{part / whole:.0%}" if whole else "n/a"


DOCS_TEMPLATE = """# Performance

How fast Meetgate admits people and relays Jitsi's traffic, measured against baselines on the
same machine in the same run. Reproduce with `python bench/run.py` (about ten minutes;
`--quick` takes about two).

{begin}
{end}
"""


def write_docs(path: Path, report: Report) -> None:
    """Replace the generated section of `path` (creating the file if needed), keeping the
    hand-written text around it."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if DOCS_BEGIN not in text or DOCS_END not in text:
        text = DOCS_TEMPLATE.format(begin=DOCS_BEGIN, end=DOCS_END) + text
    generated = f"{DOCS_BEGIN}\n\n{report.text()}\n\n{DOCS_END}"
    pattern = re.compile(re.escape(DOCS_BEGIN) + ".*?" + re.escape(DOCS_END), re.DOTALL)
    path.write_text(pattern.sub(lambda _: generated, text, count=1), encoding="utf-8")
