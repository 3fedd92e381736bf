"""What `meetgate doctor` reports: one finding per line, each a verdict (PASS, WARN or FAIL) on
one check with its reason and what to do. Shared by the modules that make findings
(gateway/doctor.py, doctor_outside.py, doctor_identity.py)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Verdict(StrEnum):
    PASS = "PASS"  # noqa: S105 (a verdict, not a password)
    WARN = "WARN"
    FAIL = "FAIL"


@dataclass(frozen=True, slots=True)
class Finding:
    """One line of the report: what was checked, the verdict, and why."""

    check: str
    verdict: Verdict
    detail: str


def reason(exc: BaseException) -> str:
    """An exception as a short phrase for a report line (its text, else its type's name)."""
    text = str(exc).strip()
    return text or type(exc).__name__
