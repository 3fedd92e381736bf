"""`meetgate doctor`'s look from outside, its pure parts: which public addresses it checks at all,
the verdicts on the security headers and on the bypass probes' answers, and the certificate's
host name against a real TLS server on loopback (tests/deploy/test_doctor_url.py runs the
whole command against nginx)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gateway.doctor_findings import Finding, Verdict
from gateway.doctor_outside import (
    Probe,
    Target,
    check_from_outside,
    check_tls,
    csp_finding,
    header_findings,
    probe_findings,
    tls_context,
    url_problem,
)
from gateway.edge.headers import CONTENT_SECURITY_POLICY
from tests.fixtures.tls_front import make_certificate

GOOD_HEADERS = {
    "strict-transport-security": "max-age=31536000; includeSubDomains",
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


def verdicts(findings: list[Finding]) -> dict[str, Verdict]:
    return {finding.check: finding.verdict for finding in findings}


@pytest.mark.parametrize(
    "url",
    [
        "https://h:99999",
        "https://h:-1",
        "https://h:abc",
        "https://[zz]",
        "https://h:0",
        "https://admin:hunter2@h",
        "https://admin@h",
        "https://h/meet",
        "https://h/?x=1",
        "https://h/#x",
        "ftp://h",
        "https://",
        "h",
    ],
)
async def test_an_address_that_is_not_a_gates_origin_is_one_failure(url: str) -> None:
    assert url_problem(url) is not None
    findings = await check_from_outside(url, None, 1)
    assert [(f.check, f.verdict) for f in findings] == [("url", Verdict.FAIL)]
    # Neither the password nor the user name is repeated.
    assert "hunter2" not in findings[0].detail and "admin" not in findings[0].detail


@pytest.mark.parametrize(
    "url",
    ["https://meet.example.org", "https://meet.example.org/", "http://127.0.0.1:8080",
     "https://[::1]:8443", "https://bücher.example"],
)  # fmt: skip
def test_an_origin_is_checked(url: str) -> None:
    assert url_problem(url) is None


def test_a_unicode_host_is_probed_under_its_idna_name() -> None:
    target = Target.of("https://bücher.example:8443", None)
    assert target.host == "xn--bcher-kva.example"
    assert target.netloc == "xn--bcher-kva.example:8443"
    request = Probe("bosh", "/http-bind").request(target.netloc)
    assert b"\r\nHost: xn--bcher-kva.example:8443\r\n" in request
    assert Target.of("https://[::1]", None).netloc == "[::1]"


def test_the_gates_own_headers_pass() -> None:
    found = verdicts(header_findings(httpx.Headers(GOOD_HEADERS), secure=True))
    assert found == {"hsts": Verdict.PASS, "csp": Verdict.PASS, "headers": Verdict.PASS}
    assert "hsts" not in verdicts(header_findings(httpx.Headers(GOOD_HEADERS), secure=False))


@pytest.mark.parametrize(
    ("hsts", "verdict"),
    [
        (None, Verdict.FAIL),
        ("includeSubDomains", Verdict.FAIL),
        ("max-age=0", Verdict.FAIL),
        ("max-age=86400", Verdict.WARN),
        ('max-age="31536000"', Verdict.PASS),
    ],
)
def test_hsts_verdicts(hsts: str | None, verdict: Verdict) -> None:
    headers = {k: v for k, v in GOOD_HEADERS.items() if k != "strict-transport-security"}
    if hsts is not None:
        headers["strict-transport-security"] = hsts
    assert verdicts(header_findings(httpx.Headers(headers), secure=True))["hsts"] is verdict


@pytest.mark.parametrize(
    "dropped", ["x-content-type-options", "referrer-policy", "x-frame-options"]
)
def test_a_dropped_header_warns(dropped: str) -> None:
    headers = {k: v for k, v in GOOD_HEADERS.items() if k != dropped}
    findings = header_findings(httpx.Headers(headers), secure=True)
    assert verdicts(findings)["headers"] is Verdict.WARN
    assert dropped in next(f.detail for f in findings if f.check == "headers")


@pytest.mark.parametrize(
    "policy",
    [
        None,
        "",
        "default-src *",
        "default-src 'none'",  # no script-src of its own: falls back, fine, but base-uri missing
        "default-src 'none'; script-src 'self' https:; connect-src 'self'; base-uri 'none'",
        "default-src 'none'; script-src 'self' data:; connect-src 'self'; base-uri 'none'",
        "default-src 'none'; script-src 'self' 'unsafe-inline'; connect-src 'self';"
        " base-uri 'none'",
        "default-src 'none'; script-src 'self'; connect-src 'self' wss://other.example;"
        " base-uri 'none'",
        "default-src http:; script-src 'self'; connect-src 'self'; base-uri 'none'",
        "script-src 'self'; connect-src 'self'; base-uri 'none'",
    ],
)
def test_a_looser_content_security_policy_fails(policy: str | None) -> None:
    policies = [] if policy is None else [policy]
    assert csp_finding(policies).verdict is Verdict.FAIL
    headers = httpx.Headers({**GOOD_HEADERS, "content-security-policy": policy or ""})
    assert verdicts(header_findings(headers, secure=True))["csp"] is Verdict.FAIL


@pytest.mark.parametrize(
    "policy",
    [
        CONTENT_SECURITY_POLICY,
        "default-src 'none'; script-src 'self'; connect-src 'self'; base-uri 'none'",
        "DEFAULT-SRC 'none'; script-src 'self'; connect-src 'self'; base-uri 'none';"
        " upgrade-insecure-requests",
    ],
)
def test_a_policy_no_looser_than_meetgates_passes(policy: str) -> None:
    assert csp_finding([policy]).verdict is Verdict.PASS


def test_a_front_adding_a_policy_of_its_own_still_passes() -> None:
    """Browsers enforce every policy: Meetgate's, beside a looser one a front adds (as a second
    header, or joined by a comma), still holds."""
    loose = "default-src *"
    joined = httpx.Headers(
        {**GOOD_HEADERS, "content-security-policy": f"{loose}, {CONTENT_SECURITY_POLICY}"}
    )
    assert verdicts(header_findings(joined, secure=True))["csp"] is Verdict.PASS
    two = httpx.Headers(
        [*((k, v) for k, v in GOOD_HEADERS.items()), ("content-security-policy", loose)]
    )
    assert verdicts(header_findings(two, secure=True))["csp"] is Verdict.PASS
    assert csp_finding([loose, loose]).verdict is Verdict.FAIL


SIGNALLING = [Probe("bosh", "/http-bind?room=x"), Probe("websocket", "/xmpp-websocket?room=x")]
JITSI = [Probe("jitsi", "/config.js"), Probe("jitsi", "/libs/app.bundle.min.js")]


def test_probes_all_refused_pass() -> None:
    results: list[tuple[Probe, int | str]] = [
        (SIGNALLING[0], 403),
        (SIGNALLING[1], 403),
        (JITSI[0], 302),
        (JITSI[1], 404),
    ]
    assert verdicts(probe_findings(results)) == {
        "probe signalling": Verdict.PASS,
        "probe jitsi": Verdict.PASS,
    }


@pytest.mark.parametrize("status", [200, 204, 101])
def test_a_jitsi_file_served_fails_alone(status: int) -> None:
    results: list[tuple[Probe, int | str]] = [
        (SIGNALLING[0], 403),
        (SIGNALLING[1], 403),
        (JITSI[0], status),
        (JITSI[1], 403),
    ]
    findings = probe_findings(results)
    assert verdicts(findings) == {"probe signalling": Verdict.PASS, "probe jitsi": Verdict.FAIL}
    assert f"/config.js -> {status}" in findings[1].detail


def test_an_opened_socket_fails_signalling() -> None:
    results: list[tuple[Probe, int | str]] = [
        (SIGNALLING[0], 403),
        (SIGNALLING[1], 101),
        (JITSI[0], 403),
        (JITSI[1], 403),
    ]
    findings = probe_findings(results)
    assert verdicts(findings)["probe signalling"] is Verdict.FAIL
    assert "WebSocket /xmpp-websocket -> 101" in findings[0].detail


def test_unanswered_probes_are_not_counted_as_refused() -> None:
    results: list[tuple[Probe, int | str]] = [
        (SIGNALLING[0], "no answer within 5 s"),
        (SIGNALLING[1], 403),
        (JITSI[0], "Connection reset by peer"),
        (JITSI[1], "no HTTP status line"),
    ]
    findings = probe_findings(results)
    assert verdicts(findings) == {"probe signalling": Verdict.WARN, "probe jitsi": Verdict.WARN}
    assert "1 of 2 probes refused" in findings[0].detail and "/http-bind" in findings[0].detail
    assert "0 of 2" in findings[1].detail


@pytest.fixture
async def other_name_server(tmp_path: Path) -> AsyncIterator[tuple[int, Path]]:
    """A TLS server on loopback whose certificate (trusted through the CA file) is for another
    name only."""
    certificate = make_certificate(tmp_path, days=90, names=("other.example",))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate.cert_path, certificate.key_path)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield port, certificate.cert_path


async def test_a_certificate_for_another_name_fails(other_name_server: tuple[int, Path]) -> None:
    port, cafile = other_name_server
    target = Target.of(f"https://127.0.0.1:{port}", tls_context(str(cafile)))
    finding = await check_tls(target, 5)
    assert finding.verdict is Verdict.FAIL, finding
    assert "for another name than 127.0.0.1" in finding.detail
