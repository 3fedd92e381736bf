"""nginx, Debian's, as the benchmark's reference: a static upstream serving the upstream's files
(as Jitsi's web server does) and a reverse proxy (`proxy_pass`, WebSockets upgraded) doing the
gate's relaying work without its checks.

Each is one nginx process (`master_process off`, one worker's worth of work), logging every
request as Debian's default configuration does, so that it is measured against a gate that logs
each request too.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

from bench.load import TOOL_PATH
from bench.upstream import BODIES, RELAYED_ENDPOINT

# Kept-alive connections to the upstream, as the gate keeps a pool of them.
UPSTREAM_KEEPALIVE = 64


def binary() -> str:
    found = shutil.which("nginx", path=TOOL_PATH)
    if found is None:
        raise RuntimeError("nginx is not installed (apt-get install -y nginx-light)")
    return found


def version() -> str:
    done = subprocess.run([binary(), "-v"], capture_output=True, text=True, check=False)
    return (done.stderr or done.stdout).strip().removeprefix("nginx version: ")


def _common(workdir: Path) -> str:
    # Run as root, nginx switches to `user` (nobody by default), which could not read this
    # run's private directory: it stays the user that started it.
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else ""
    temp = "\n".join(
        f"  {kind}_temp_path {workdir / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"""{user}
daemon off;
master_process off;
worker_processes 1;
pid {workdir / "nginx.pid"};
error_log {workdir / "error.log"} warn;
events {{ worker_connections 32768; }}
"""
        + f"""http {{
  access_log {workdir / "access.log"};
{temp}
"""
    )


def static_config(workdir: Path, port: int) -> Path:
    """An nginx serving the upstream's files (bench/upstream.py's BODIES) on `port`; its config
    file, written into `workdir` with the files under `workdir`/root."""
    root = workdir / "root"
    for path, body in BODIES.items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(body)
    config = (
        _common(workdir)
        + f"""  default_type application/octet-stream;
  sendfile on;
  server {{
    listen 127.0.0.1:{port};
    root {root};
  }}
}}
"""
    )
    return _write(workdir, config)


def proxy_config(workdir: Path, port: int, upstream: str) -> Path:
    """An nginx on `port` passing every request to `upstream` (`http://host:port`), over kept-
    alive connections, and relaying WebSockets on the relayed endpoint the gates relay."""
    address = upstream.removeprefix("http://").rstrip("/")
    config = (
        _common(workdir)
        + f"""  upstream jitsi {{
    server {address};
    keepalive {UPSTREAM_KEEPALIVE};
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://jitsi;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      # Streams a large body instead of buffering it to a temporary file first.
      proxy_max_temp_file_size 0;
    }}
    location {RELAYED_ENDPOINT} {{
      proxy_pass http://jitsi;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection "upgrade";
      proxy_read_timeout 3600s;
    }}
  }}
}}
"""
    )
    return _write(workdir, config)


def _write(workdir: Path, config: str) -> Path:
    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (workdir / kind).mkdir(parents=True, exist_ok=True)
    path = workdir / "nginx.conf"
    path.write_text(config, encoding="utf-8")
    return path


def command(config: Path) -> list[str]:
    return [binary(), "-c", str(config), "-p", str(config.parent)]
