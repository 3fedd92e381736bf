"""The load generator: wrk, driven with one thread and a Lua script that reports in JSON.

Both sides of every ratio go through `run_wrk` with the same connections, duration and script,
so the client's own cost is the same on both sides.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
GET_SCRIPT = BENCH_DIR / "get.lua"
REDEEM_SCRIPT = BENCH_DIR / "redeem.lua"
FLOOD_SCRIPT = BENCH_DIR / "flood.lua"
RESULT_PREFIX = "BENCH-RESULT "


class LoadError(RuntimeError):
    """wrk is missing and cannot be installed, or a run did not report."""


@dataclass(frozen=True, slots=True)
class LoadResult:
    seconds: float
    requests: int
    bytes_read: int
    refused: int
    socket_errors: int
    p50_ms: float
    p99_ms: float
    # Every answer by HTTP status, where the script counts them (flood.lua).
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def succeeded(self) -> int:
        return self.requests - self.refused

    @property
    def per_second(self) -> float:
        """Successful (status < 400) responses per second."""
        return self.succeeded / self.seconds

    @property
    def mib_per_second(self) -> float:
        """Bytes read per second, headers included (negligible beside a 3 MiB body)."""
        return self.bytes_read / self.seconds / 2**20


# Debian puts daemons (nginx) in the sbin directories, which are not on every user's PATH.
TOOL_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


def ensure_tools(*commands: str) -> None:
    """Install Debian's packages of the same names for any of `commands` not on PATH or in the
    sbin directories (wrk, redis-server, prosody, nginx: each package is named after its
    command)."""
    missing = [command for command in commands if shutil.which(command, path=TOOL_PATH) is None]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise LoadError(
            f"{', '.join(missing)} not installed: run `apt-get install -y {' '.join(missing)}`"
            " as root"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]
    if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, check=True)
        subprocess.run(install, env=env, capture_output=True, check=True)
    still = [command for command in missing if shutil.which(command, path=TOOL_PATH) is None]
    if still:
        raise LoadError(f"apt-get installed {', '.join(still)} but it is not on PATH")


def ensure_wrk() -> str:
    """The path of wrk, installing Debian's package first if it is missing."""
    ensure_tools("wrk")
    found = shutil.which("wrk")
    assert found is not None
    return found


def wrk_version(wrk: str) -> str:
    done = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)
    first = (done.stdout or done.stderr).splitlines()
    return first[0].split(" Copyright")[0] if first else "wrk"


def wrk_command(
    wrk: str,
    url: str,
    *,
    seconds: int,
    connections: int,
    script: Path = GET_SCRIPT,
    script_args: tuple[str, ...] = (),
    headers: tuple[str, ...] = (),
    nice: int = 0,
) -> list[str]:
    command = ["nice", "-n", str(nice)] if nice else []
    command += [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s"]
    command += ["-s", str(script)]
    for header in headers:
        command += ["-H", header]
    command.append(url)
    if script_args:
        command += ["--", *script_args]
    return command


def parse_result(url: str, stdout: str, stderr: str) -> LoadResult:
    for line in stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            raw = json.loads(line.removeprefix(RESULT_PREFIX))
            return LoadResult(
                seconds=raw["duration_us"] / 1e6,
                requests=raw["requests"],
                bytes_read=raw["bytes"],
                refused=raw["status"],
                socket_errors=raw["connect"] + raw["read"] + raw["write"] + raw["timeout"],
                p50_ms=raw["p50_us"] / 1000,
                p99_ms=raw["p99_us"] / 1000,
                statuses={int(k): int(v) for k, v in raw.get("statuses", {}).items()},
            )
    raise LoadError(f"wrk reported nothing for {url}:\n{stdout}\n{stderr}")


def run_wrk(
    wrk: str,
    url: str,
    *,
    seconds: int,
    connections: int,
    script: Path = GET_SCRIPT,
    script_args: tuple[str, ...] = (),
    headers: tuple[str, ...] = (),
) -> LoadResult:
    command = wrk_command(
        wrk,
        url,
        seconds=seconds,
        connections=connections,
        script=script,
        script_args=script_args,
        headers=headers,
    )
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    return parse_result(url, done.stdout, done.stderr)


async def run_wrk_async(command: list[str], url: str, seconds: int) -> LoadResult:
    """`wrk_command`'s run without blocking the event loop (a load beside the loop's own);
    killed if it overruns by a minute."""
    proc = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), seconds + 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return parse_result(url, stdout.decode(errors="replace"), stderr.decode(errors="replace"))
