"""`meetgate doctor` on the identity paths and the trusted proxies: the real CLI in a subprocess
against real OpenID providers of both implementations the OpenID tests use (panva's oidc-provider
under Node and django-oidc-provider, tests/fixtures/oidc.py: an honest one, one whose discovery
document names another issuer, one that signs ID tokens with the client secret), real SMTP
servers (aiosmtpd, tests/fixtures/smtp.py: STARTTLS with a self-signed certificate and a login,
or plain) and one that never finishes its greeting."""

from __future__ import annotations

import json
import re
import secrets
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.doctor import Verdict, check_trusted_proxies
from gateway.doctor_identity import key_usable, keys_finding
from tests.fixtures.oidc import (
    CLIENT_ID,
    CLIENT_SECRET,
    DJANGO,
    NODE,
    SCOPES,
    OidcProviderServer,
    clients_for,
    start_django_oidc_provider,
    start_oidc_provider,
)
from tests.fixtures.processes import free_port, stop_process
from tests.fixtures.smtp import SelfSignedCertificate, SmtpServer, start_smtp

pytestmark = pytest.mark.slow

PUBLIC_URL = "http://127.0.0.1:9"
SMTP_LOGIN = ("doctor-mailer", "mail-password-" + "m" * 20)
WRONG_SECRET = "not-the-client-secret-" + "w" * 24


def oidc_table(name: str, issuer: str, secret: str = CLIENT_SECRET) -> str:
    return (
        f'[[oidc]]\nname = "{name}"\nlabel = "{name}"\nissuer = "{issuer}"\n'
        f'client_id = "{CLIENT_ID}"\nclient_secret = "{secret}"\nscopes = {json.dumps(SCOPES)}\n'
    )


def smtp_table(server: SmtpServer, password: str, security: str = "starttls") -> str:
    return (
        f'[smtp]\nhost = "127.0.0.1"\nport = {server.port}\nsecurity = "{security}"\n'
        f'username = "{SMTP_LOGIN[0]}"\npassword = "{password}"\n'
        'sender = "meetgate@meet.example.org"\n'
    )


def write_config(path: Path, tables: str, top: str = "") -> Path:
    """Everything but the identity paths points where nothing listens (those lines fail fast)."""
    path.write_text(
        f"""{top}
public_url = "{PUBLIC_URL}"
[admin]
token = "{secrets.token_urlsafe(32)}"
[jitsi]
upstream = "http://127.0.0.1:9"
xmpp_domain = "meet.test"
[tickets]
[[tickets.keys]]
secret = "{secrets.token_urlsafe(48)}"
[admission]
pseudonym_key = "{secrets.token_urlsafe(32)}"
{tables}
""",
        encoding="utf-8",
    )
    path.chmod(0o600)
    return path


def doctor(
    config: Path, trust: Path | None = None, timeout: float = 5, *args: str
) -> tuple[int, str]:
    # The gate's mailer trusts the system's store; SSL_CERT_FILE is how a test's certificate
    # gets into it, for doctor as for `meetgate serve`.
    env = {"PATH": "/usr/bin:/bin"} | ({"SSL_CERT_FILE": str(trust)} if trust else {})
    result = subprocess.run(
        [
            sys.executable,
            *("-m", "gateway.cli", "doctor", "--config", str(config)),
            *("--timeout", str(timeout)),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    return result.returncode, result.stdout + result.stderr


def lines(report: str) -> dict[str, str]:
    """{check: whole line} of the report."""
    found = {}
    for line in report.splitlines():
        match = re.match(r"(PASS|WARN|FAIL)  (\S.*?)\s{2,}", line)
        if match:
            found[match.group(2).strip()] = line
    return found


@dataclass(frozen=True)
class Providers:
    implementation: str
    honest: OidcProviderServer
    liar: OidcProviderServer
    symmetric: OidcProviderServer


@pytest.fixture(scope="module", params=[NODE, DJANGO])
def providers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Providers]:
    """Three real providers of one implementation whose client `meetgate` registered the gate's
    redirect URL for the provider names `idp` and `wrong-secret` (honest), `liar` (its discovery
    document names `localhost` while it is configured, and reached, as 127.0.0.1) and
    `symmetric` (it signs this client's ID tokens with the client secret, HS256)."""
    implementation = request.param
    start = start_django_oidc_provider if implementation == DJANGO else start_oidc_provider
    honest = clients_for(PUBLIC_URL, "idp")
    honest[0]["redirect_uris"].append(f"{PUBLIC_URL}/_meetgate/oidc/wrong-secret/callback")
    started: list[tuple[OidcProviderServer, object]] = []
    try:
        for name, clients, options in (
            ("idp", honest, {}),
            ("liar", clients_for(PUBLIC_URL, "liar"), {"issuer": "localhost"}),
            ("symmetric", clients_for(PUBLIC_URL, "symmetric"), {"id_token_alg": "HS256"}),
        ):
            port = free_port()
            if options.get("issuer") == "localhost":
                options = {"issuer": f"http://localhost:{port}"}
            started.append(
                start(
                    tmp_path_factory.mktemp(f"doctor-{name}"),
                    port,
                    clients=clients,
                    **options,
                )
            )
        yield Providers(implementation, *(server for server, _ in started))
    finally:
        for _, proc in reversed(started):
            stop_process(proc)


@pytest.fixture(scope="module")
def mail_server(smtp_certificate: SelfSignedCertificate) -> Iterator[SmtpServer]:
    """STARTTLS required, then a login."""
    server = start_smtp(starttls=smtp_certificate, login=SMTP_LOGIN)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def plain_mail_server() -> Iterator[SmtpServer]:
    """No STARTTLS offered, no login."""
    server = start_smtp()
    yield server
    server.stop()


def test_honest_provider_and_mail_server_pass(
    tmp_path: Path,
    providers: Providers,
    mail_server: SmtpServer,
    smtp_certificate: SelfSignedCertificate,
) -> None:
    config = write_config(
        tmp_path / "meetgate.toml",
        oidc_table("idp", f"http://127.0.0.1:{providers.honest.port}")
        + smtp_table(mail_server, SMTP_LOGIN[1]),
        top='trusted_proxies = ["127.0.0.1/32", "10.0.0.0/8"]',
    )
    _, report = doctor(config, trust=smtp_certificate.cert_path)
    print(report)
    found = lines(report)
    # django-oidc-provider lists HS256 whatever its clients use: said, as for a provider that
    # signs this client's tokens so (test_a_provider_offering_hs256_warns).
    discovery = found["oidc idp discovery"]
    if providers.implementation == DJANGO:
        assert discovery.startswith("WARN") and "HS256" in discovery, report
    else:
        assert discovery.startswith("PASS"), report
    for check in (
        "oidc idp keys",
        "oidc idp client",
        "oidc idp redirect",
        "smtp",
        "smtp tls",
        "smtp login",
        "smtp sender",
        "trusted proxies",
    ):
        assert found.get(check, "").startswith("PASS"), f"{check}:\n{report}"
    # The redirect URL exactly as the gate builds it, for the admin to compare.
    assert f"{PUBLIC_URL}/_meetgate/oidc/idp/callback" in found["oidc idp redirect"]
    assert "RS256" in found["oidc idp keys"]
    # No mail was sent, and no secret or address is in the report.
    assert mail_server.mailbox.messages == []
    for secret in (CLIENT_SECRET, SMTP_LOGIN[1], SMTP_LOGIN[0], "meetgate@meet.example.org"):
        assert secret not in report
    assert "Traceback" not in report


def test_wrong_client_secret_wrong_issuer_and_unregistered_redirect_fail(
    tmp_path: Path, providers: Providers
) -> None:
    honest = f"http://127.0.0.1:{providers.honest.port}"
    config = write_config(
        tmp_path / "meetgate.toml",
        oidc_table("wrong-secret", honest, WRONG_SECRET)
        + oidc_table("unregistered", honest)
        + oidc_table("liar", f"http://127.0.0.1:{providers.liar.port}")
        + oidc_table("down", f"http://127.0.0.1:{free_port()}"),
    )
    status, report = doctor(config)
    print(report)
    found = lines(report)
    assert status == 1
    # Wrong secret: the token endpoint says invalid_client; discovery and redirect are fine.
    wrong = found["oidc wrong-secret client"]
    assert wrong.startswith("FAIL") and "invalid_client" in wrong
    assert "copy the client's id and secret" in wrong and "not registered" not in wrong
    assert found["oidc wrong-secret discovery"].startswith(("PASS", "WARN"))
    assert found["oidc wrong-secret redirect"].startswith("PASS")
    # A name whose redirect URL the provider does not know: never a PASS. oidc-provider refuses
    # the authorization request (400) and accepts the credentials; django-oidc-provider shows
    # its "Redirect URI Error" page with a 200 (doctor cannot tell) and its token endpoint
    # answers invalid_client, so the client line names both causes.
    redirect = found["oidc unregistered redirect"]
    client = found["oidc unregistered client"]
    assert f"{PUBLIC_URL}/_meetgate/oidc/unregistered/callback" in redirect
    if providers.implementation == DJANGO:
        assert redirect.startswith("WARN") and "cannot tell" in redirect, report
        assert client.startswith("FAIL") and "not registered" in client, report
        assert "/_meetgate/oidc/unregistered/callback" in client
    else:
        assert redirect.startswith("FAIL"), report
        assert client.startswith("PASS"), report
    # The discovery document names another issuer: said, with both names.
    liar = found["oidc liar discovery"]
    assert liar.startswith("FAIL") and f"localhost:{providers.liar.port}" in liar
    assert f"127.0.0.1:{providers.liar.port}" in liar
    # Nothing listens: one clear line.
    assert found["oidc down discovery"].startswith("FAIL") and "cannot fetch" in report
    assert WRONG_SECRET not in report and CLIENT_SECRET not in report
    assert "Traceback" not in report


def test_a_provider_offering_hs256_warns(tmp_path: Path, providers: Providers) -> None:
    """Every sign-in through a provider that signs the client's ID tokens with HS256 fails at the
    gate: doctor cannot see the client's setting, but warns of the advertised algorithm."""
    config = write_config(
        tmp_path / "meetgate.toml",
        oidc_table("symmetric", f"http://127.0.0.1:{providers.symmetric.port}"),
    )
    _, report = doctor(config)
    print(report)
    discovery = lines(report)["oidc symmetric discovery"]
    assert discovery.startswith("WARN") and "HS256" in discovery, report
    assert "asymmetric" in discovery


def test_smtp_without_starttls_fails(tmp_path: Path, plain_mail_server: SmtpServer) -> None:
    config = write_config(tmp_path / "meetgate.toml", smtp_table(plain_mail_server, SMTP_LOGIN[1]))
    status, report = doctor(config)
    print(report)
    found = lines(report)
    assert status == 1
    assert found["smtp"].startswith("PASS")
    assert found["smtp tls"].startswith("FAIL") and "does not offer STARTTLS" in report
    # Credentials are never tried on a connection in clear.
    assert "smtp login" not in found
    assert plain_mail_server.mailbox.messages == []


def test_smtp_wrong_password_fails(
    tmp_path: Path, mail_server: SmtpServer, smtp_certificate: SelfSignedCertificate
) -> None:
    wrong = "wrong-mail-password-" + "z" * 20
    config = write_config(tmp_path / "meetgate.toml", smtp_table(mail_server, wrong))
    status, report = doctor(config, trust=smtp_certificate.cert_path)
    print(report)
    found = lines(report)
    assert status == 1
    assert found["smtp tls"].startswith("PASS")
    assert found["smtp login"].startswith("FAIL") and "refused" in found["smtp login"], report
    assert wrong not in report and SMTP_LOGIN[0] not in report


def test_smtp_sender_refused_fails(
    tmp_path: Path, mail_server: SmtpServer, smtp_certificate: SelfSignedCertificate
) -> None:
    """No [smtp] username for a server that requires a login: it refuses MAIL FROM (530)."""
    config = write_config(
        tmp_path / "meetgate.toml",
        f'[smtp]\nhost = "127.0.0.1"\nport = {mail_server.port}\nsecurity = "starttls"\n'
        'sender = "meetgate@meet.example.org"\n',
    )
    status, report = doctor(config, trust=smtp_certificate.cert_path)
    found = lines(report)
    assert status == 1
    assert found["smtp tls"].startswith("PASS") and "smtp login" not in found, report
    sender = found["smtp sender"]
    assert sender.startswith("FAIL") and "530" in sender and "wants a login" in sender, report
    assert "meetgate@meet.example.org" not in report
    assert mail_server.mailbox.messages == []


def trickle(first: bytes, then: bytes) -> Iterator[int]:
    """A server that sends `first`, then `then` every half second, to whoever connects, until
    they hang up: each read is quick, the whole never ends. Yields its port."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def talk(connection: socket.socket) -> None:
        with connection:
            line = first
            while not stop.is_set():
                try:
                    connection.sendall(line)
                except OSError:
                    return
                line = then
                stop.wait(0.5)

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=talk, args=(connection,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()[1]
    stop.set()
    listener.close()


@pytest.fixture
def endless_greeting() -> Iterator[int]:
    """An SMTP server that never finishes its greeting (`220-` continuation lines)."""
    yield from trickle(b"220-still greeting\r\n", b"220-still greeting\r\n")


@pytest.fixture
def endless_headers() -> Iterator[int]:
    """An HTTP server (an OpenID provider, say) that never finishes its answer's headers."""
    yield from trickle(b"HTTP/1.1 200 OK\r\n", b"X-Still: coming\r\n")


def test_an_smtp_server_that_never_finishes_cannot_hang_doctor(
    tmp_path: Path, endless_greeting: int
) -> None:
    """smtplib's timeout bounds each read; doctor's deadline bounds the dialogue, and the
    process ends with a report (it used to wait for the SMTP thread forever). The SMTP steps
    wait as long as the gate's mailer does ([smtp] timeout_seconds, not --timeout)."""
    config = write_config(
        tmp_path / "meetgate.toml",
        f'[smtp]\nhost = "127.0.0.1"\nport = {endless_greeting}\nsecurity = "none"\n'
        'sender = "meetgate@meet.example.org"\ntimeout_seconds = 1\n',
    )
    status, report = doctor(config, timeout=5)
    print(report)
    assert status == 1
    line = lines(report)["smtp"]
    assert line.startswith("FAIL") and "did not finish within 4 s" in line, report
    assert "Traceback" not in report


def test_a_slow_provider_costs_only_its_own_lines(
    tmp_path: Path, providers: Providers, endless_headers: int
) -> None:
    config = write_config(
        tmp_path / "meetgate.toml",
        oidc_table("idp", f"http://127.0.0.1:{providers.honest.port}")
        + oidc_table("slow", f"http://127.0.0.1:{endless_headers}"),
    )
    status, report = doctor(config, None, 1)
    print(report)
    found = lines(report)
    assert status == 1
    assert found["oidc slow"].startswith("FAIL") and "did not finish" in found["oidc slow"]
    for check in ("keys", "client", "redirect"):
        assert found[f"oidc idp {check}"].startswith("PASS"), report
    # Not one line for every provider.
    assert "oidc" not in found, report


def test_smtp_certificate_not_trusted_fails(tmp_path: Path, mail_server: SmtpServer) -> None:
    """The gate's mailer trusts the system's store only: a self-signed certificate fails there,
    so doctor says so (it is not given the test's certificate here)."""
    config = write_config(tmp_path / "meetgate.toml", smtp_table(mail_server, SMTP_LOGIN[1]))
    status, report = doctor(config)
    found = lines(report)
    assert status == 1
    assert found["smtp tls"].startswith("FAIL") and "certificate" in found["smtp tls"], report


def test_smtp_nothing_listening_fails(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(
        tmp_path / "meetgate.toml",
        f'[smtp]\nhost = "127.0.0.1"\nport = {port}\nsender = "m@meet.example.org"\n',
    )
    status, report = doctor(config)
    found = lines(report)
    assert status == 1 and found["smtp"].startswith("FAIL")
    assert f"cannot reach 127.0.0.1:{port}" in found["smtp"] and "Traceback" not in report


@pytest.mark.parametrize("url", ["https://h:99999", "https://[zz]", "https://u:p@h"])
def test_a_bad_url_with_a_config_is_one_failure_not_a_crash(tmp_path: Path, url: str) -> None:
    config = write_config(tmp_path / "meetgate.toml", "")
    status, report = doctor(config, None, 1, "--url", url)
    assert status == 1 and "Traceback" not in report, report
    assert lines(report)["url"].startswith("FAIL"), report
    # The other checks still ran.
    assert "trusted proxies" in lines(report) and "store" in lines(report), report


def test_wide_trusted_proxies_fail_through_the_cli(tmp_path: Path) -> None:
    config = write_config(tmp_path / "meetgate.toml", "", top='trusted_proxies = ["0.0.0.0/0"]')
    status, report = doctor(config)
    line = lines(report)["trusted proxies"]
    assert status == 1 and line.startswith("FAIL") and "every address" in line, report


@pytest.mark.parametrize(
    ("trusted", "verdict"),
    [
        ([], Verdict.PASS),
        (["127.0.0.1/32", "::1", "172.30.1.10/32", "10.0.0.0/8", "fd00::/8"], Verdict.PASS),
        (["0.0.0.0/0"], Verdict.FAIL),
        (["::/0"], Verdict.FAIL),
        (["10.0.0.0/8", "8.0.0.0/8"], Verdict.FAIL),
        (["2001:4860::/32"], Verdict.FAIL),
        (["93.184.216.34/32"], Verdict.WARN),
        (["2001:4860:4860::8888/128"], Verdict.WARN),
    ],
)
def test_trusted_proxies_verdicts(trusted: list[str], verdict: Verdict) -> None:
    assert check_trusted_proxies(trusted).verdict is verdict


def test_keys_must_verify_the_advertised_algorithms(providers: Providers) -> None:
    jwks = providers.honest.jwks()
    rsa = next(key for key in jwks["keys"] if key["kty"] == "RSA")
    assert key_usable(rsa, "RS256") and not key_usable(rsa, "ES256")
    assert not key_usable({**rsa, "use": "enc"}, "RS256")
    assert not key_usable({**rsa, "alg": "RS512"}, "RS256")
    assert keys_finding("k", jwks, frozenset({"RS256"}), "x").verdict is Verdict.PASS
    assert keys_finding("k", {"keys": []}, frozenset({"RS256"}), "x").verdict is Verdict.FAIL
    assert keys_finding("k", "garbage", frozenset({"RS256"}), "x").verdict is Verdict.FAIL
    rsa_only = {"keys": [rsa]}
    assert keys_finding("k", rsa_only, frozenset({"ES256"}), "x").verdict is Verdict.FAIL
    both = frozenset({"RS256", "ES384"})
    assert keys_finding("k", rsa_only, both, "x").verdict is Verdict.WARN
