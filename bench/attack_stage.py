"""The attack replay's stage (issue 20; docs/design/attack-replay.md): every process of the
meeting on free loopback ports, started and stopped as one, and the faults done to it.

A Sentinel-managed Redis, prosody, Jitsi's web server (Debian's nginx with the Debian jitsi-meet
site's routes), two `meetgate serve` replicas on the Sentinel, and the TLS front attendees
reach: Debian's nginx with deploy/systemd/meetgate.nginx.conf as shipped but for its addresses,
its certificate and an `upstream` of both replicas.
"""

from __future__ import annotations

import contextlib
import os
import re
import ssl
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.attack_events import Replica, Stage
from bench.redis_sentinel import FAILOVER_SECONDS, SentinelRedis
from bench.servers import ROOT, Servers
from tests.fixtures.gateway_server import GENEROUS_LIMITS
from tests.fixtures.jitsi_nginx import NGINX, start_jitsi_nginx
from tests.fixtures.processes import free_port, start_listening, stop_process, wait_until
from tests.fixtures.prosody import DOMAIN, MUC_DOMAIN
from tests.fixtures.tls_front import make_certificate

FRONT_SITE = ROOT / "deploy" / "systemd" / "meetgate.nginx.conf"
REPLICAS = ("a", "b")
# Jitsi's web server as the replicas' [jitsi] upstream: the Debian package's site, as a
# bare-metal host behind deploy/systemd's front runs it.
JITSI_LAYOUT = "debian"
# The tables of the replicas' config the stage writes itself (a caller's copy would clash).
STAGE_TABLES = {"listen", "admin", "store", "jitsi", "tickets"}
_HEADER = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.-]+)\s*\]\]?\s*(#.*)?$")

NOTES = {
    "signalling": (
        "prosody here logs in anonymously (the tests' configuration): the ticket is enforced by "
        "the gate only, where Jitsi's prosody (mod_auth_token) would check it again."
    ),
    "upstreams": (
        "The replicas' [jitsi] upstream is Jitsi's web server (Debian's nginx with the Debian "
        "jitsi-meet site's routes); their signalling_upstream is prosody itself, as "
        "docs/deploy.md advises."
    ),
    "realip": (
        "The front is deploy/systemd/meetgate.nginx.conf plus `set_real_ip_from 127.0.0.1; "
        "real_ip_header X-Forwarded-For;` in nginx's http{}: the load tool plays a CDN in front "
        "of it, and the site's own `X-Forwarded-For $remote_addr` passes the spoofed client "
        "address on to the gate."
    ),
    "plain": (
        "The front is deploy/systemd/meetgate.nginx.conf as shipped (no real-IP rule): every "
        "client reaches the gate as 127.0.0.1."
    ),
}


@dataclass(slots=True)
class _Running:
    """What the stage's faults need and the `Stage` does not carry."""

    sentinel: SentinelRedis
    servers: Servers


# Keyed by id(stage): a Stage is a plain dataclass of addresses, unhashable.
_RUNNING: dict[int, _Running] = {}


def _running(stage: Stage) -> _Running:
    try:
        return _RUNNING[id(stage)]
    except KeyError:
        raise RuntimeError("this stage is not running (start_stage has ended)") from None


@contextlib.contextmanager
def start_stage(
    workdir: Path, *, gate_toml: str = "", realip: bool = True, env: dict[str, str] | None = None
) -> Iterator[Stage]:
    """Start the meeting's processes into `workdir` and stop every one on leaving, even on an
    error. `gate_toml` is TOML appended to both replicas' config (e.g. `[rates]`, `[guard]`,
    `[admission]`); a `[rates]` or `[challenge]` table there replaces the generous defaults
    the stage would write. `env` (MEETGATE_…) overrides the replicas' config files. `realip`
    makes the front believe X-Forwarded-For from 127.0.0.1 (a spoofed flood's networks)."""
    workdir.mkdir(parents=True, exist_ok=True)
    top, tables = _gate_tables(gate_toml)
    with contextlib.ExitStack() as stack:
        sentinel = SentinelRedis(workdir / "redis", None)
        stack.callback(sentinel.close)
        servers = stack.enter_context(Servers(workdir, None))
        prosody = servers.prosody()
        jitsi, jitsi_proc = start_jitsi_nginx(
            workdir / "jitsi-nginx", _port(prosody.http_url), DOMAIN
        )
        stack.callback(stop_process, jitsi_proc)
        front_port = free_port()
        front_url = f"https://127.0.0.1:{front_port}"
        gates = {
            name: servers.gateway(
                f"gate-{name}",
                upstream=jitsi.url(JITSI_LAYOUT),
                store_url=sentinel.url(0),
                signalling=prosody.http_url,
                # Not bench's GATEWAY_ENV: the caller's tables decide the limits.
                env=env or {},
                public_url=front_url,
                top=top,
                rates=tables,
            )
            for name in REPLICAS
        }
        certificate = make_certificate(workdir / "front" / "tls", days=2)
        front_conf = _front_config(
            workdir / "front",
            port=front_port,
            cert=certificate.cert_path,
            key=certificate.key_path,
            replicas=[_port(gate.url) for gate in gates.values()],
            realip=realip,
        )
        # The Sentinel learns of the replica within 10 s; the servers boot meanwhile.
        sentinel.wait_discovered()
        servers.wait_ready()
        args = [NGINX, "-c", str(front_conf), "-p", f"{front_conf.parent}/"]
        args += ["-e", str(front_conf.parent / "error.log"), "-g", "daemon off;"]
        front = start_listening(args, front_port, front_conf.parent / "nginx.log")
        stack.callback(stop_process, front)
        stage = Stage(
            front_url=front_url,
            cafile=certificate.cert_path,
            replicas={
                name: Replica(
                    name=name,
                    url=gate.url,
                    admin_url=gate.admin_url,
                    admin_token=gate.admin_token,
                    pid=gate.pid,
                    log=workdir / f"gate-{name}.log",
                    config=workdir / f"gate-{name}.toml",
                )
                for name, gate in gates.items()
            },
            prosody_domain=DOMAIN,
            muc_domain=MUC_DOMAIN,
            redis_url=sentinel.url(0),
            workdir=workdir,
            realip=realip,
            # With an https public_url the gate's admission cookie is `__Host-` prefixed.
            cookie_name="__Host-meetgate",
            notes=[
                NOTES["signalling"],
                NOTES["upstreams"],
                NOTES["realip" if realip else "plain"],
            ],
        )
        _RUNNING[id(stage)] = _Running(sentinel=sentinel, servers=servers)
        try:
            yield stage
        finally:
            del _RUNNING[id(stage)]


def client_tls(stage: Stage) -> ssl.SSLContext:
    """A TLS context that trusts the front's certificate (and nothing else)."""
    return ssl.create_default_context(cafile=str(stage.cafile))


def fail_over(stage: Stage) -> None:
    """A Sentinel failover of the stage's Redis; blocks until the Sentinel names the replica as
    master, which is when clients move (the old master's turning into its replica goes on in
    the background). Run it in a thread beside the event loop."""
    sentinel = _running(stage).sentinel
    old_master = sentinel.master_port_now()
    sentinel.fail_over()
    wait_until(
        lambda: sentinel.master_port_now() != old_master,
        timeout=FAILOVER_SECONDS,
        what="the Sentinel to name a new master",
    )


def kill_replica(stage: Stage, name: str) -> None:
    """SIGKILL replica `name` ("a" or "b"); returns once its process is gone. The front keeps
    sending to the other one (nginx marks the dead one failed on its first refused connect)."""
    _running(stage).servers.kill(stage.replicas[name].pid)


def stop_replica(stage: Stage, name: str) -> None:
    """Stop replica `name` as its service manager would (SIGTERM): it finishes what it holds
    (the evidence log's tallies of the current minute among them) and exits."""
    _running(stage).servers.stop(stage.replicas[name].pid)


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])


def _gate_tables(gate_toml: str) -> tuple[str, str]:
    """The caller's TOML cut for Servers.gateway: `top`, its keys before any table (and
    trusted_proxies, unless it sets that), and the tables: its `[admission]` keys first (the
    written config ends inside the stage's own `[admission]`), then its other tables, then the
    generous defaults' (tests/fixtures/gateway_server.py) that it does not replace.
    ValueError for TOML that does not parse or that names a table the stage writes itself."""
    caller = tomllib.loads(gate_toml)
    clash = STAGE_TABLES & caller.keys()
    if clash:
        raise ValueError(f"the stage writes these tables itself: {sorted(clash)}")
    preamble: list[str] = []
    admission: list[str] = []
    tables: list[str] = []
    for name, lines in _sections(gate_toml):
        if name == "":
            preamble += lines
        elif name == "admission":
            admission += lines[1:]
        else:
            tables += lines
    for name, lines in _sections(GENEROUS_LIMITS):
        if name.split(".", 1)[0] not in caller:
            tables += lines
    if "trusted_proxies" not in caller:
        preamble.insert(0, 'trusted_proxies = ["127.0.0.1/32"]')
    return "\n".join(preamble), "\n".join([*admission, *tables]) + "\n"


def _sections(toml: str) -> list[tuple[str, list[str]]]:
    """TOML text cut before each table header: (the header's name, "" before any; its lines)."""
    sections: list[tuple[str, list[str]]] = [("", [])]
    for line in toml.splitlines():
        header = _HEADER.match(line)
        if header is not None:
            sections.append((header.group(1), []))
        sections[-1][1].append(line)
    return sections


def _front_config(
    work: Path, *, port: int, cert: Path, key: Path, replicas: list[int], realip: bool
) -> Path:
    """deploy/systemd/meetgate.nginx.conf on loopback ports, as tests/deploy/
    test_front_offload.py rewrites its sibling (HTTP/2 left out, as there), in an nginx.conf of
    its own; that file's path."""
    text = FRONT_SITE.read_text(encoding="utf-8")
    text = _replace_once(text, "    listen 80;\n", f"    listen 127.0.0.1:{free_port()};\n")
    text = _replace_once(text, "    listen [::]:80;\n", "")
    text = _replace_once(text, "    listen 443 ssl http2;\n", f"    listen 127.0.0.1:{port} ssl;\n")
    text = _replace_once(text, "    listen [::]:443 ssl http2;\n", "")
    servers = "".join(f"    server 127.0.0.1:{replica};\n" for replica in replicas)
    text = _replace_once(text, "    server 127.0.0.1:8000;\n", servers)
    text = _replace_once(text, "/etc/ssl/meet/fullchain.pem", str(cert))
    text = _replace_once(text, "/etc/ssl/meet/privkey.pem", str(key))
    text = text.replace("/var/log/nginx/error.log", str(work / "error.log"))
    for sub in ("logs", "temp"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    (work / "site.conf").write_text(text, encoding="utf-8")
    # Run as root (a CI container), the workers would be `nobody`, who cannot read the workdir.
    user = "user root;\n" if os.geteuid() == 0 else ""
    believe = "    set_real_ip_from 127.0.0.1;\n    real_ip_header X-Forwarded-For;\n"
    conf = work / "nginx.conf"
    conf.write_text(
        f"{user}worker_processes auto;\npid {work}/nginx.pid;\nerror_log {work}/error.log;\n"
        "events { worker_connections 8192; }\n"
        f"http {{\n    client_body_temp_path {work}/temp/body;\n"
        f"    proxy_temp_path {work}/temp/proxy;\n"
        f"{believe if realip else ''}"
        f"    include {work}/site.conf;\n}}\n",
        encoding="utf-8",
    )
    return conf


def _replace_once(text: str, old: str, new: str) -> str:
    if text.count(old) != 1:
        raise RuntimeError(f"{old!r} is no longer once in {FRONT_SITE.name} as the stage expects")
    return text.replace(old, new)
