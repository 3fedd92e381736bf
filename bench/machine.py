"""What the figures were measured on: cores, CPU model, Python and the server stack's versions."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Machine:
    cores: int
    cpu_model: str
    python: str
    kernel: str
    stack: str

    def describe(self) -> str:
        return (
            f"{self.cores} cores ({self.cpu_model}), Python {self.python}, "
            f"Linux {self.kernel}; {self.stack}"
        )


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor() or "unknown CPU"
    for line in text.splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


def this_machine(wrk: str) -> Machine:
    packages = ("uvicorn", "uvloop", "httptools", "starlette", "fastapi", "httpx", "websockets")
    stack = ", ".join(f"{name} {_version(name)}" for name in packages)
    return Machine(
        cores=len(os.sched_getaffinity(0)),
        cpu_model=_cpu_model(),
        python=platform.python_version(),
        kernel=platform.release(),
        stack=f"{stack}; {wrk}",
    )
