"""`meetgate doctor`'s look from outside: what anyone on the Internet sees at the gate's public
address, checked without a config file. The certificate (trusted, for this host name, not about
to expire), the security headers on the gate's own page, and bypass probes: Jitsi's signalling
under the spellings the gate refuses (gateway/proxy/paths.py), Jitsi's own files and sockets, each
asked for without a ticket or an admission. A probe that gets an answer from behind the gate (a
2xx, or a WebSocket opened) is a FAIL: something in front of the gate routes around it.

Probes are written on a raw connection, byte for byte, so a path reaches the front exactly as
spelled (an HTTP library would normalise `/libs/../http-bind` or `%2D` away). They only read:
each asks once, reads the status line and hangs up.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import secrets
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from gateway.doctor_findings import Finding, Verdict, reason
from gateway.edge.headers import CONTENT_SECURITY_POLICY

HEALTH_PATH = "/_meetgate/health"
MIN_HSTS_SECONDS = 180 * 24 * 3600
# Let's Encrypt renews its 90-day certificates 30 days before expiry, short-lived ones (6 days)
# with a third of their life left: fewer days left than this, or than a quarter of the
# certificate's lifetime, means renewal is failing.
CERTIFICATE_WARN_DAYS = 21
CERTIFICATE_WARN_SHARE = 0.25
LOOPBACK = ("127.0.0.1", "localhost", "::1")
# How many probes are in flight at once: the gate's rate limits count them.
PROBE_CONCURRENCY = 4
MAX_STATUS_LINE = 4096

# Signalling spellings a front must not pass to prosody, ticketless: the canonical ones (the
# gate asks for a ticket), and the respellings issue 12 found forwarded and their kin (the gate
# refuses them outright; tests/spellings.py holds the same and more, for the gate's own tests).
BOSH_SPELLINGS = (
    "/http-bind",
    "/meetgate-doctor/http-bind",
    "/HTTP-BIND",
    "/Rally/http-bind",
    "/foo/http-bindX",
    "/a/b/http-bind",
    "/foo/http-bind/x",
    "/libs/http-bind",
    "/LIBS/http-bind",
    "/tenant1/HTTP-BIND",
    "/colibri-ws/http-bind",
    "/http-bind/",
    "/http-bind;x",
    "//http-bind",
    "/./http-bind",
    "/http%2Dbind",
    "/%68ttp-bind",
    "/libs/../http-bind",
    "/libs/%2e%2e/http-bind",
    "/libs/x/..%2Fhttp-bind",
)
WEBSOCKET_SPELLINGS = (
    "/xmpp-websocket",
    "/meetgate-doctor/xmpp-websocket",
    "/Xmpp-Websocket",
    "/foo/xmpp-websocket/x",
    "/static/x/xmpp-websocket",
    "/xmpp-websocket/",
    "//xmpp-websocket",
    "/xmpp%2Dwebsocket",
    # The bridge's sockets: relayed for an admission only.
    "/colibri-ws/default-id/meetgate-doctor",
)
# Jitsi's pages and files: served to admitted browsers only.
JITSI_PATHS = (
    "/config.js",
    "/interface_config.js",
    "/external_api.js",
    "/libs/app.bundle.min.js",
    "/meetgate-doctor-{nonce}",
    "/conference-request/v1",
    "/room-info",
)
SIGNALLING_QUERY = "?room=meetgate-doctor&token=meetgate-doctor-not-a-ticket"


@dataclass(frozen=True, slots=True)
class Target:
    """Where the public URL's connections go, and with which TLS context (None: plain)."""

    host: str
    port: int
    netloc: str
    tls: ssl.SSLContext | None

    @classmethod
    def of(cls, url: str, tls: ssl.SSLContext | None) -> Target:
        """For a URL url_problem found nothing wrong with. `netloc` is the Host header's value,
        a Unicode name in its IDNA (xn--) form."""
        parts = urlsplit(url)
        secure = parts.scheme == "https"
        port = parts.port or (443 if secure else 80)
        host = parts.hostname or ""
        ascii_host = host if host.isascii() else host.encode("idna").decode("ascii")
        shown = f"[{ascii_host}]" if ":" in ascii_host else ascii_host
        netloc = shown if parts.port is None else f"{shown}:{parts.port}"
        return cls(ascii_host, port, netloc, tls if secure else None)


def url_problem(url: str) -> str | None:
    """Why `url` is not a gate's public address to check (None: it is one). The same rule as
    the public_url setting's (an origin: scheme, host, port), and no user name or password:
    they would be printed and sent in every probe."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"{url!r} is not a valid address ({reason(exc)})"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{url!r} is not an http(s):// address"
    if "@" in parts.netloc:
        return (
            "the address holds a user name or password: give it without them (they would be"
            " printed and sent to the server)"
        )
    if port == 0:
        return f"{url!r} names port 0"
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return f"{url!r} is not an origin: give scheme, host and port only, without a path"
    if not parts.hostname.isascii():
        try:
            parts.hostname.encode("idna")
        except UnicodeError:
            return f"{url!r}: the host name is not a valid international domain name"
    return None


@dataclass(frozen=True, slots=True)
class Probe:
    kind: str  # "bosh", "websocket" or "jitsi"
    path: str

    def request(self, netloc: str) -> bytes:
        method = "POST" if self.kind == "bosh" else "GET"
        head = [
            f"{method} {self.path} HTTP/1.1",
            f"Host: {netloc}",
            "User-Agent: meetgate-doctor",
            "Accept: */*",
        ]
        body = b""
        if self.kind == "bosh":
            body = (
                b"<body xmlns='http://jabber.org/protocol/httpbind' rid='1' to='meet.jitsi'"
                b" wait='2' hold='1' ver='1.6'/>"
            )
            head += [
                "Content-Type: text/xml; charset=utf-8",
                f"Content-Length: {len(body)}",
                "Connection: close",
            ]
        elif self.kind == "websocket":
            key = base64.b64encode(secrets.token_bytes(16)).decode("ascii")
            head += [
                "Connection: Upgrade",
                "Upgrade: websocket",
                "Sec-WebSocket-Version: 13",
                f"Sec-WebSocket-Key: {key}",
                "Sec-WebSocket-Protocol: xmpp",
            ]
        else:
            head.append("Connection: close")
        return ("\r\n".join(head) + "\r\n\r\n").encode("ascii") + body


def bypass_probes() -> list[Probe]:
    """Every probe, signalling with a made-up ticket in the query as Jitsi's client sends one."""
    nonce = secrets.token_hex(4)
    probes = [Probe("bosh", path + SIGNALLING_QUERY) for path in BOSH_SPELLINGS]
    probes += [Probe("websocket", path + SIGNALLING_QUERY) for path in WEBSOCKET_SPELLINGS]
    probes += [Probe("jitsi", path.format(nonce=nonce)) for path in JITSI_PATHS]
    return probes


async def status_of(target: Target, request: bytes, seconds: float) -> int:
    """Send `request` on a new connection and return the status code of the answer.
    Raises OSError, ssl.SSLError, TimeoutError or ValueError (no HTTP status line)."""
    async with asyncio.timeout(seconds):
        reader, writer = await asyncio.open_connection(
            target.host,
            target.port,
            ssl=target.tls,
            server_hostname=target.host if target.tls else None,
            limit=MAX_STATUS_LINE,
        )
        try:
            writer.write(request)
            await writer.drain()
            line = await reader.readline()
        finally:
            writer.close()
            # The server may hang up first; the status line is what counts.
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()
    parts = line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise ValueError("no HTTP status line")
    return int(parts[1])


def tls_context(cafile: str | None) -> ssl.SSLContext:
    """The system's trust store (a browser's view), or the CA file given for a private CA."""
    if cafile is not None:
        return ssl.create_default_context(cafile=cafile)
    return ssl.create_default_context()


# OpenSSL's X509_V_ERR codes a report can explain.
_EXPIRED = 10
_SELF_SIGNED = (18, 19, 20, 21)
_HOSTNAME_MISMATCH = (62, 64)  # a host name's, an IP address's


def _verification_advice(exc: ssl.SSLCertVerificationError, host: str) -> str:
    code = exc.verify_code
    if code in _HOSTNAME_MISMATCH:
        return f"the certificate is for another name than {host}: get one for {host}"
    if code == _EXPIRED:
        return "the certificate has expired: renew it (is the front's ACME renewal running?)"
    if code in _SELF_SIGNED:
        return (
            "the certificate is not from a CA browsers trust (pass --cafile to check a private"
            " CA's certificate)"
        )
    return "browsers refuse this certificate"


def warn_days(not_before: object, expires: float) -> float:
    """How few days left make an expiry worth a warning: three weeks, or a quarter of the
    certificate's lifetime when that is shorter (a certificate that lives days, by design)."""
    if not isinstance(not_before, str):
        return CERTIFICATE_WARN_DAYS
    lifetime = (expires - ssl.cert_time_to_seconds(not_before)) / 86400
    return min(CERTIFICATE_WARN_DAYS, lifetime * CERTIFICATE_WARN_SHARE)


async def check_tls(target: Target, seconds: float) -> Finding:
    """The certificate: trusted, for this host name, and not about to expire."""
    assert target.tls is not None
    try:
        async with asyncio.timeout(seconds):
            _, writer = await asyncio.open_connection(
                target.host, target.port, ssl=target.tls, server_hostname=target.host
            )
            certificate = writer.get_extra_info("peercert") or {}
            writer.close()
            # Closing only: the handshake is what was checked.
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()
    except ssl.SSLCertVerificationError as exc:
        return Finding(
            "https",
            Verdict.FAIL,
            f"{target.netloc}: {exc.verify_message}: {_verification_advice(exc, target.host)}",
        )
    except ssl.SSLError as exc:
        return Finding(
            "https",
            Verdict.FAIL,
            f"{target.netloc}: the TLS handshake failed ({exc.reason or reason(exc)}): is a TLS"
            " front listening there?",
        )
    except TimeoutError:
        return Finding("https", Verdict.FAIL, f"{target.netloc}: no answer within {seconds:g} s")
    except OSError as exc:
        return Finding("https", Verdict.FAIL, f"cannot connect to {target.netloc}: {reason(exc)}")
    not_after = certificate.get("notAfter")
    if not isinstance(not_after, str):
        return Finding("https", Verdict.PASS, f"{target.netloc} serves a valid certificate")
    expires = ssl.cert_time_to_seconds(not_after)
    days = (expires - time.time()) / 86400
    day = datetime.datetime.fromtimestamp(expires, datetime.UTC).date().isoformat()
    if days < warn_days(certificate.get("notBefore"), expires):
        return Finding(
            "https",
            Verdict.WARN,
            f"{target.netloc}'s certificate expires on {day}, in {days:.0f} days: renewal"
            " should have happened by now; check the front's certificate renewal",
        )
    return Finding(
        "https",
        Verdict.PASS,
        f"{target.netloc} serves a valid certificate for {target.host} (until {day})",
    )


def header_findings(headers: httpx.Headers, secure: bool) -> list[Finding]:
    """The security headers the gate sends on its own pages (gateway/edge/headers.py), as they
    arrive through whatever stands in front."""
    findings = []
    if secure:
        hsts = headers.get("strict-transport-security")
        max_age = _max_age(hsts or "")
        if hsts is None or max_age is None:
            findings.append(Finding("hsts", Verdict.FAIL, "no Strict-Transport-Security header"))
        elif max_age == 0:
            findings.append(
                Finding(
                    "hsts",
                    Verdict.FAIL,
                    f"Strict-Transport-Security: {hsts} tells browsers to forget HTTPS for this"
                    " host: something in front overrides Meetgate's header",
                )
            )
        elif max_age < MIN_HSTS_SECONDS:
            findings.append(
                Finding("hsts", Verdict.WARN, f"Strict-Transport-Security is short: {hsts}")
            )
        else:
            findings.append(Finding("hsts", Verdict.PASS, hsts))
    # Several policies in one header are separated by commas (CSP 3, 2.2.1).
    findings.append(csp_finding(headers.get_list("content-security-policy", split_commas=True)))
    wanted = {
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
        "x-frame-options": "deny",
    }
    missing = [
        f"{name}: {value}"
        for name, value in wanted.items()
        if (headers.get(name) or "").strip().lower() != value
    ]
    if missing:
        findings.append(
            Finding(
                "headers",
                Verdict.WARN,
                "the gate's page arrives without " + "; ".join(missing) + ": the front in front"
                " of Meetgate drops or overrides its headers",
            )
        )
    else:
        findings.append(
            Finding("headers", Verdict.PASS, "nosniff, no-referrer and frame denial present")
        )
    return findings


# The directives whose sources decide what a page may run and reach; each may be no looser than
# Meetgate's own (gateway/edge/headers.py).
GUARDED_DIRECTIVES = ("default-src", "script-src", "connect-src", "object-src", "base-uri")


def _directives(policy: str) -> dict[str, set[str]]:
    """A policy's directives and their sources (lower-cased; the first of a repeated directive
    counts, as in browsers)."""
    found: dict[str, set[str]] = {}
    for part in policy.split(";"):
        words = part.strip().lower().split()
        if words and words[0] not in found:
            found[words[0]] = set(words[1:])
    return found


def _sources(directives: dict[str, set[str]], name: str) -> set[str] | None:
    """The sources `name` allows: its own, else default-src's (fetch directives fall back to
    it; base-uri does not). None: no restriction."""
    if name in directives:
        return directives[name]
    if name.endswith("-src") and "default-src" in directives:
        return directives["default-src"]
    return None


def csp_finding(policies: Sequence[str]) -> Finding:
    """The Content-Security-Policies the gate's page arrives with (a front may add its own),
    against Meetgate's own: a source allowed beyond it (`*`, a scheme, another host, inline
    script) is a FAIL. A browser enforces every policy, so one as strict as Meetgate's is
    enough."""
    policies = [policy for policy in policies if policy.strip()]
    if not policies:
        return Finding(
            "csp",
            Verdict.FAIL,
            "no Content-Security-Policy: is something in front rewriting Meetgate's headers?",
        )
    findings = [_policy_finding(policy) for policy in policies]
    return next((f for f in findings if f.verdict is Verdict.PASS), findings[0])


def _policy_finding(policy: str) -> Finding:
    if policy.strip() == CONTENT_SECURITY_POLICY:
        return Finding("csp", Verdict.PASS, "Content-Security-Policy as Meetgate sends it")
    ours = _directives(CONTENT_SECURITY_POLICY)
    theirs = _directives(policy)
    looser = []
    for name in GUARDED_DIRECTIVES:
        allowed = _sources(theirs, name)
        wanted = _sources(ours, name) or set()
        if allowed is None:
            looser.append(f"no {name}")
            continue
        extra = sorted(allowed - wanted - {"'none'"})
        if extra:
            looser.append(f"{name} {' '.join(extra)}")
    if looser:
        return Finding(
            "csp",
            Verdict.FAIL,
            "the Content-Security-Policy is looser than Meetgate's ("
            + "; ".join(looser)
            + "): something in front replaces Meetgate's header; let it through unchanged",
        )
    return Finding(
        "csp",
        Verdict.PASS,
        "Content-Security-Policy differs from Meetgate's but allows nothing more",
    )


def _max_age(hsts: str) -> int | None:
    for part in hsts.split(";"):
        name, _, value = part.strip().partition("=")
        if name.strip().lower() == "max-age" and value.strip().strip('"').isdigit():
            return int(value.strip().strip('"'))
    return None


async def check_gate_page(
    public_url: str, target: Target, seconds: float
) -> tuple[list[Finding], bool]:
    """Meetgate's health page through the front, and its headers. Also whether it answered at
    all (the probes are skipped when nothing does)."""
    url = public_url + HEALTH_PATH
    verify: ssl.SSLContext | bool = target.tls if target.tls is not None else False
    try:
        async with httpx.AsyncClient(
            verify=verify, timeout=seconds, trust_env=False, follow_redirects=False
        ) as client:
            response = await client.get(url, headers={"user-agent": "meetgate-doctor"})
    except httpx.HTTPError as exc:
        return [Finding("gate", Verdict.FAIL, f"cannot fetch {url}: {reason(exc)}")], False
    if response.status_code == 200 and response.text.strip() == "ok":
        findings = [Finding("gate", Verdict.PASS, "Meetgate answers at the public address")]
    else:
        findings = [
            Finding(
                "gate",
                Verdict.FAIL,
                f"{url} answered {response.status_code}, not Meetgate's health page: is the front"
                " proxying to Meetgate, and is its store up?",
            )
        ]
    return findings + header_findings(response.headers, target.tls is not None), True


def _through(status: int) -> bool:
    """Whether an answer came from behind the gate: a refusal is 3xx (to the gate's pages),
    4xx or 5xx; a 101 opens a socket, a 2xx serves Jitsi's content."""
    return status == 101 or 200 <= status < 300


async def run_probes(
    target: Target, probes: Sequence[Probe], seconds: float
) -> list[tuple[Probe, int | str]]:
    """Each probe's status code, or why it got no answer."""
    gate = asyncio.Semaphore(PROBE_CONCURRENCY)

    async def one(probe: Probe) -> tuple[Probe, int | str]:
        async with gate:
            try:
                return probe, await status_of(target, probe.request(target.netloc), seconds)
            except TimeoutError:
                return probe, f"no answer within {seconds:g} s"
            except (OSError, ssl.SSLError, ValueError) as exc:
                return probe, reason(exc)

    return list(await asyncio.gather(*(one(probe) for probe in probes)))


def probe_findings(results: Sequence[tuple[Probe, int | str]]) -> list[Finding]:
    """One line for signalling, one for Jitsi's files: PASS when every probe was refused."""
    groups = {
        "probe signalling": [r for r in results if r[0].kind in ("bosh", "websocket")],
        "probe jitsi": [r for r in results if r[0].kind == "jitsi"],
    }
    findings = []
    for check, group in groups.items():
        through = [
            f"{'WebSocket ' if p.kind == 'websocket' else ''}{p.path.split('?')[0]} -> {status}"
            for p, status in group
            if isinstance(status, int) and _through(status)
        ]
        unanswered = [p.path.split("?")[0] for p, status in group if isinstance(status, str)]
        what = (
            "signalling, ticketless, in every spelling"
            if check == "probe signalling"
            else "Jitsi's pages and files without an admission"
        )
        if through:
            findings.append(
                Finding(
                    check,
                    Verdict.FAIL,
                    "answered from behind the gate: "
                    + ", ".join(through)
                    + ": something in front of Meetgate routes these around it; send every path"
                    " to Meetgate (docs/deploy.md)",
                )
            )
        elif unanswered:
            findings.append(
                Finding(
                    check,
                    Verdict.WARN,
                    f"{len(group) - len(unanswered)} of {len(group)} probes refused; no answer"
                    f" for {', '.join(unanswered[:5])}",
                )
            )
        else:
            statuses = sorted({status for _, status in group if isinstance(status, int)})
            findings.append(
                Finding(
                    check,
                    Verdict.PASS,
                    f"{len(group)} probes of {what} refused"
                    f" ({', '.join(str(s) for s in statuses)})",
                )
            )
    return findings


async def check_from_outside(public_url: str, cafile: str | None, seconds: float) -> list[Finding]:
    """Everything one can check at the public address without the config: TLS, the gate's
    page and headers, then the bypass probes."""
    problem = url_problem(public_url)
    if problem is not None:
        return [Finding("url", Verdict.FAIL, problem)]
    public_url = public_url.rstrip("/")
    target = Target.of(public_url, tls_context(cafile))
    findings = []
    if target.tls is None:
        local = target.host in LOOPBACK
        findings.append(
            Finding(
                "https",
                Verdict.WARN if local else Verdict.FAIL,
                f"{public_url} is not HTTPS: browsers refuse camera and microphone, and cookies"
                " and tickets cross the network in clear"
                + (" (fine on loopback for a first look)" if local else ""),
            )
        )
    else:
        tls = await check_tls(target, seconds)
        findings.append(tls)
        if tls.verdict is Verdict.FAIL:
            return findings
    page, answered = await check_gate_page(public_url, target, seconds)
    findings += page
    if not answered:
        return findings
    return findings + probe_findings(await run_probes(target, bypass_probes(), seconds))
