"""`meetgate doctor` against real local stand-ins: the real CLI in a subprocess, a real Redis, a
real prosody that allows anonymous logins, static config.js files, a token-checking signalling
stand-in and a TLS front."""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway.doctor import (
    THIRD_PARTY_HOSTS,
    clock_finding,
    estimated_bits,
    scan_jitsi_config,
    strip_js_comments,
    third_party_hosts,
)
from gateway.ticket_keys import (
    generate_private_pem,
    key_file_name,
    load_rsa_private_key,
    prosody_key_url,
    rsa_key_id,
)
from tests.deploy.conftest import (
    APP_ID,
    AUDIENCE,
    STANDIN_APP,
    Signalling,
    StaticSite,
)
from tests.fixtures.gateway_server import GatewayServer, start_gateway
from tests.fixtures.processes import free_port, start_listening, stop_process
from tests.fixtures.prosody import ProsodyServer
from tests.fixtures.tls_front import FrontedGate, start_fronted_gate

pytestmark = pytest.mark.slow

LEAKY_CONFIG_JS = """// A stock-looking config.js with the third parties left in.
var config = {
    hosts: { domain: 'meet.test', anonymousdomain: 'guest.meet.test', muc: 'muc.meet.test' },
    p2p: { enabled: true, stunServers: [ { urls: 'stun:meet-jit-si-turnrelay.jitsi.net:443' } ] },
    gravatar: { baseUrl: 'https://www.gravatar.com/avatar/' },
    analytics: { amplitudeAPPKey: 'abc123' },
};
"""


def clean_config_js(public_url: str) -> str:
    return f"""// Comments may name anything: // meet-jit-si-turnrelay.jitsi.net, gravatar.com
var config = {{ hosts: {{ domain: 'meet.test', muc: 'muc.meet.test' }} }};
/* The hardening deploy/compose/jitsi/custom-config.js appends: www.gravatar.com */
config.disableThirdPartyRequests = true;
config.p2p = {{ stunServers: [ {{ urls: 'stun:' + location.hostname + ':3478' }} ] }};
config.tokenAuthUrl = '{public_url}/_meetgate/ticket?room={{room}}';
"""


def write_config(
    path: Path,
    *,
    public_url: str,
    upstream: str,
    signalling: str,
    store: str,
    ticket_secret: str,
    tickets: str | None = None,
) -> Path:
    tickets = (
        tickets
        or f"""[tickets]
[[tickets.keys]]
secret = "{ticket_secret}"
"""
    )
    path.write_text(
        f"""public_url = "{public_url}"
[admin]
token = "{secrets.token_urlsafe(32)}"
[store]
url = "{store}"
[jitsi]
upstream = "{upstream}"
signalling_upstream = "{signalling}"
xmpp_domain = "meet.test"
app_id = "{APP_ID}"
audience = "{AUDIENCE}"
{tickets}
[admission]
pseudonym_key = "{secrets.token_urlsafe(32)}"
""",
        encoding="utf-8",
    )
    path.chmod(0o600)
    return path


def doctor(config: Path, *extra: str) -> tuple[int, str]:
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "doctor", "--config", str(config), *extra],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin"},
    )
    return result.returncode, result.stdout + result.stderr


def verdicts(report: str) -> dict[str, str]:
    """{check: verdict} from the report's lines."""
    found = {}
    for line in report.splitlines():
        match = re.match(r"(PASS|WARN|FAIL)  (\S.*?)\s{2,}", line)
        if match:
            found[match.group(2).strip()] = match.group(1)
    return found


@pytest.fixture(scope="module")
def tls_front(tmp_path_factory: pytest.TempPathFactory, jitsi_web: Any) -> Iterator[FrontedGate]:
    """A real gate behind nginx terminating TLS: what doctor sees at the public address."""
    site, processes = start_fronted_gate(tmp_path_factory.mktemp("front"), upstream=jitsi_web.url)
    yield site
    for proc in processes:
        stop_process(proc)


def test_correct_setup_passes(
    tmp_path: Path,
    aof_redis: str,
    static_site: StaticSite,
    token_signalling: Signalling,
    tls_front: FrontedGate,
) -> None:
    (static_site.root / "config.js").write_text(clean_config_js(tls_front.url))
    config = write_config(
        tmp_path / "meetgate.toml",
        public_url=tls_front.url,
        upstream=static_site.url,
        signalling=token_signalling.url,
        store=aof_redis,
        ticket_secret=token_signalling.ticket_secret,
    )
    status, report = doctor(config, "--cafile", str(tls_front.cafile))
    print(report)
    found = verdicts(report)
    assert status == 0, report
    assert set(found.values()) == {"PASS"}, report
    for check in (
        "config",
        "secrets",
        "store",
        "persistence",
        "store memory",
        "jitsi web",
        "third parties",
        "guest domain",
        "tokenAuthUrl",
        "websocket, no ticket",
        "websocket, forged",
        "bosh, no ticket",
        "bosh, forged",
        "genuine ticket",
        "clock",
        "https",
        "gate",
        "hsts",
        "csp",
        "headers",
        "probe signalling",
        "probe jitsi",
        "trusted proxies",
        "stanza reader",  # the checkout's compiled reader, built by `pip install -e .`
    ):
        assert found.get(check) == "PASS", f"{check} missing or not PASS:\n{report}"


def test_anonymous_prosody_and_leaky_config_are_flagged(
    tmp_path: Path, redis_server: str, static_site: StaticSite, prosody: ProsodyServer
) -> None:
    (static_site.root / "config.js").write_text(LEAKY_CONFIG_JS)
    config = write_config(
        tmp_path / "meetgate.toml",
        public_url="http://127.0.0.1:9",
        upstream=static_site.url,
        signalling=prosody.http_url,
        store=redis_server,
        ticket_secret="test-ticket-secret-" + "x" * 40,
    )
    config.chmod(0o644)
    status, report = doctor(config, "--timeout", "3")
    print(report)
    found = verdicts(report)
    assert status == 1, report
    # The tests' prosody lets anyone log in anonymously: every bypass check must catch it.
    for check in ("websocket, no ticket", "websocket, forged", "bosh, no ticket", "bosh, forged"):
        assert found.get(check) == "FAIL", f"{check}:\n{report}"
        assert "ACCEPTED" in next(line for line in report.splitlines() if check in line)
    assert found["third parties"] == "FAIL"
    for named in ("meet-jit-si-turnrelay.jitsi.net", "www.gravatar.com", "amplitudeAPPKey"):
        assert named in report
    assert found["guest domain"] == "FAIL" and "guest.meet.test" in report
    assert found["third-party switch"] == "WARN"
    assert found["tokenAuthUrl"] == "WARN"
    assert found["persistence"] == "FAIL"  # the tests' redis-server runs without AOF
    assert found["secrets"] == "FAIL" and "example value" in report
    assert found["config mode"] == "WARN"
    assert found["https"] == "WARN" and found["gate"] == "FAIL"  # http:// on loopback, closed
    # Never a secret in the report.
    assert "x" * 40 not in report


def test_unreachable_everything_fails_within_the_time_limit(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "meetgate.toml",
        public_url="https://127.0.0.1:9",
        upstream="http://127.0.0.1:9",
        signalling="http://127.0.0.1:9",
        store="redis://127.0.0.1:9/0",
        ticket_secret=secrets.token_urlsafe(48),
    )
    status, report = doctor(config, "--timeout", "2")
    found = verdicts(report)
    assert status == 1
    for check in ("store", "jitsi web", "websocket, no ticket", "bosh, no ticket", "https"):
        assert found.get(check) == "FAIL", f"{check}:\n{report}"
    # Unreachable is not "refused": no advice about keys for a server that never answered.
    genuine = next(line for line in report.splitlines() if "genuine ticket" in line)
    assert "could not check" in genuine and "JWT_ASAP_KEYSERVER" not in genuine


def test_invalid_or_missing_config_fails(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[listen]\nport = 70000\n")
    status, report = doctor(bad)
    assert status == 1
    assert report.startswith("FAIL  config")
    assert "[listen] port (MEETGATE_LISTEN__PORT)" in report
    status, report = doctor(tmp_path / "missing.toml")
    assert status == 1 and "does not exist" in report


# ---------------------------------------------------------------- RS256 through the key endpoint

RS256_TICKETS = """[tickets]
algorithm = "RS256"
[[tickets.keys]]
private_key_file = "{path}"
"""


@dataclass(frozen=True)
class Rs256Deployment:
    gateway: GatewayServer
    key_server: str
    signalling: str
    key_file: Path


@pytest.fixture(scope="module")
def rs256_deployment(
    tmp_path_factory: pytest.TempPathFactory, jitsi_web: Any
) -> Iterator[Rs256Deployment]:
    """A real RS256 Meetgate serving its key, and a signalling stand-in that fetches it from there
    (as prosody with JWT_ASAP_KEYSERVER does) and holds no secret."""
    workdir = tmp_path_factory.mktemp("rs256")
    key_file = workdir / "r1.pem"
    key_file.write_bytes(generate_private_pem())
    key_file.chmod(0o600)
    gateway, gateway_proc = start_gateway(
        workdir / "gateway",
        upstream=jitsi_web.url,
        tickets=RS256_TICKETS.format(path=key_file),
    )
    key_server = f"{gateway.url}/_meetgate/keys"
    port = free_port()
    env = {"STANDIN_KEY_SERVER": key_server, "STANDIN_APP_ID": APP_ID}
    env["STANDIN_AUDIENCE"] = AUDIENCE
    args = [sys.executable, str(STANDIN_APP), "--role", "signalling", "--port", str(port)]
    try:
        signalling_proc = start_listening(args, port, workdir / "signalling.log", env=env)
    except BaseException:
        stop_process(gateway_proc)
        raise
    yield Rs256Deployment(gateway, key_server, f"http://127.0.0.1:{port}", key_file)
    stop_process(signalling_proc)
    stop_process(gateway_proc)


def test_rs256_key_endpoint_and_genuine_ticket_pass(
    tmp_path: Path,
    aof_redis: str,
    static_site: StaticSite,
    tls_front: FrontedGate,
    rs256_deployment: Rs256Deployment,
) -> None:
    (static_site.root / "config.js").write_text(clean_config_js(tls_front.url))
    config = write_config(
        tmp_path / "meetgate.toml",
        public_url=tls_front.url,
        upstream=static_site.url,
        signalling=rs256_deployment.signalling,
        store=aof_redis,
        ticket_secret="",
        tickets=RS256_TICKETS.format(path=rs256_deployment.key_file),
    )
    key_server = rs256_deployment.key_server
    status, report = doctor(
        config, "--key-server", key_server, "--cafile", str(tls_front.cafile), "--timeout", "3"
    )
    print(report)
    found = verdicts(report)
    assert status == 0, report
    assert set(found.values()) == {"PASS"}, report
    kid = rsa_key_id(load_rsa_private_key(rs256_deployment.key_file.read_bytes()).public_key())
    assert repr(kid) in next(line for line in report.splitlines() if "key endpoint" in line)
    for check in (
        "key endpoint",
        "websocket, no ticket",
        "websocket, forged",
        "bosh, no ticket",
        "bosh, forged",
        "genuine ticket",
        "secrets",
    ):
        assert found.get(check) == "PASS", f"{check}:\n{report}"
    assert "PRIVATE KEY" not in report and "MII" not in report


def test_rs256_wrong_or_unreachable_key_endpoint_fails(
    tmp_path: Path,
    aof_redis: str,
    static_site: StaticSite,
    rs256_deployment: Rs256Deployment,
) -> None:
    """Doctor holds another key than the running gateway serves (so another kid): prosody
    would refuse its tickets, and both the key check and the genuine ticket say so."""
    (static_site.root / "config.js").write_text(clean_config_js("http://127.0.0.1:9"))
    other = tmp_path / "other.pem"
    other.write_bytes(generate_private_pem())
    other.chmod(0o644)
    config = write_config(
        tmp_path / "meetgate.toml",
        public_url="http://127.0.0.1:9",
        upstream=static_site.url,
        signalling=rs256_deployment.signalling,
        store=aof_redis,
        ticket_secret="",
        tickets=RS256_TICKETS.format(path=other),
    )
    key_server = rs256_deployment.key_server
    status, report = doctor(config, "--key-server", key_server, "--timeout", "3")
    print(report)
    found = verdicts(report)
    assert status == 1
    assert found["key endpoint"] == "FAIL" and "answered 404" in report
    assert found["genuine ticket"] == "FAIL" and "JWT_ASAP_KEYSERVER" in report
    assert found["key file mode"] == "WARN"
    # Nothing listens there: the default key server (the listen address) does not answer.
    status, report = doctor(config, "--timeout", "2")
    found = verdicts(report)
    assert found["key endpoint"] == "FAIL" and "does not answer" in report


def test_rs256_key_server_is_fetched_as_prosody_writes_it(
    tmp_path: Path,
    aof_redis: str,
    static_site: StaticSite,
    rs256_deployment: Rs256Deployment,
) -> None:
    """Prosody appends "/<name>" to asap_key_server as written: with a trailing slash it asks for
    ".../keys//<name>", which the key endpoint does not serve. Doctor asks for that same URL (it
    used to strip the slash and pass) and says what to change."""
    (static_site.root / "config.js").write_text(clean_config_js("http://127.0.0.1:9"))
    config = write_config(
        tmp_path / "meetgate.toml",
        public_url="http://127.0.0.1:9",
        upstream=static_site.url,
        signalling=rs256_deployment.signalling,
        store=aof_redis,
        ticket_secret="",
        tickets=RS256_TICKETS.format(path=rs256_deployment.key_file),
    )
    key_server = rs256_deployment.key_server
    kid = rsa_key_id(load_rsa_private_key(rs256_deployment.key_file.read_bytes()).public_key())
    status, report = doctor(config, "--key-server", key_server + "/", "--timeout", "3")
    line = next(line for line in report.splitlines() if "key endpoint" in line)
    assert status == 1 and verdicts(report)["key endpoint"] == "FAIL", report
    assert f"{key_server}//{key_file_name(kid)} answered 404" in line
    assert "ends with '/'" in line and "remove the trailing slash" in line
    # Without the key endpoint's path, the hint names it.
    _, report = doctor(config, "--key-server", rs256_deployment.gateway.url, "--timeout", "3")
    line = next(line for line in report.splitlines() if "key endpoint" in line)
    assert verdicts(report)["key endpoint"] == "FAIL" and "/_meetgate/keys" in line
    _, report = doctor(config, "--key-server", key_server, "--timeout", "3")
    assert verdicts(report)["key endpoint"] == "PASS", report


# ---------------------------------------------------------------- the pure parts


def test_comments_are_ignored_but_strings_are_not() -> None:
    source = "a = 'http://x//y'; // gravatar.com\n/* giphy.com */ b = \"8x8.vc\";"
    code = strip_js_comments(source)
    assert "http://x//y" in code
    assert third_party_hosts(code) == ["8x8.vc"]


def test_subdomains_count_but_lookalikes_do_not() -> None:
    assert third_party_hosts("'api.jitsi.net' 'notjitsi.net' 'jitsi.net.example.org'") == [
        "api.jitsi.net"
    ]
    assert "jitsi.net" in THIRD_PARTY_HOSTS


def test_scan_flags_a_guest_domain_in_either_syntax() -> None:
    for source in (
        "config.hosts.anonymousdomain = 'guest.meet.jitsi';",
        "var config = { hosts: { 'anonymousdomain': \"guest.meet.jitsi\" } };",
    ):
        findings = {f.check: f.verdict for f in scan_jitsi_config(source, "https://m.example")}
        assert findings["guest domain"] == "FAIL", source


def test_secret_strength_estimate() -> None:
    assert estimated_bits(secrets.token_urlsafe(32)) > 160
    assert estimated_bits("x" * 64) == 0
    assert estimated_bits("correct-horse-battery-staple-00") < 128


def test_clock_thresholds() -> None:
    assert clock_finding(0.4, "x").verdict == "PASS"
    assert clock_finding(-5.9, "x").verdict == "PASS"
    assert clock_finding(7, "x").verdict == "WARN"
    assert clock_finding(-20, "x").verdict == "WARN"
    assert clock_finding(32, "x").verdict == "FAIL"
    assert "-45 s" in clock_finding(-45, "prosody").detail


def test_clock_allowance_decides_when_prosody_is_behind() -> None:
    # Behind by more than the allowance: prosody refuses fresh tickets (nbf is in its future).
    assert clock_finding(-12, "prosody", allowance=10).verdict == "FAIL"
    assert "clock_skew_seconds = 10" in clock_finding(-12, "prosody", allowance=10).detail
    assert clock_finding(-10.5, "prosody", allowance=10).verdict == "WARN"
    assert clock_finding(-3, "prosody", allowance=0).verdict == "FAIL"
    # Ahead: tickets only expire early; the allowance does not help or hurt.
    assert clock_finding(12, "prosody", allowance=0).verdict == "WARN"


LUA = shutil.which("lua5.4") or shutil.which("lua")
PROSODY_LIB = Path("/usr/lib/prosody")


@pytest.mark.parametrize(
    "key_server",
    [
        "http://meetgate:8000/_meetgate/keys",
        "http://meetgate:8000/_meetgate/keys/",
        "https://meet.example.org/_meetgate/keys//",
        "http://[::1]:8000",
    ],
)
def test_key_url_is_the_one_prosody_builds(key_server: str) -> None:
    """mod_auth_token builds the key URL with prosody's own util.paths.join: run that code (from
    Debian's prosody) on the same inputs."""
    if LUA is None or not (PROSODY_LIB / "util" / "paths.lua").is_file():
        pytest.skip("needs Debian's prosody and its Lua")
    kid = rsa_key_id(load_rsa_private_key(generate_private_pem()).public_key())
    script = (
        f"package.path = '{PROSODY_LIB}/?.lua;' .. package.path; io.write(require('util.paths')"
        ".join(os.getenv('KEY_SERVER'), os.getenv('KEY_NAME')))"
    )
    joined = subprocess.run(
        [LUA, "-e", script],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        env={"KEY_SERVER": key_server, "KEY_NAME": key_file_name(kid)},
    ).stdout
    assert prosody_key_url(key_server, kid) == joined
