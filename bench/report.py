"""The results table, in markdown, and the generated part of docs/performance.md."""

from __future__ import annotations

import re
from dataclasses import dataclass
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
            "",
            self.table(),
            "",
            *(f"- {line}" for line in self.method),
        ]
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
same machine in the same run. Reproduce with `python bench/run.py` (about two minutes;
`--quick` takes about forty seconds; `--redis-server` adds the Redis store).

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
