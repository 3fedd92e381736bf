"""`meetgate doctor` on the identity paths: each configured OpenID provider (discovery document,
its keys, the client's credentials, the redirect URL as the gate builds it) and the SMTP server
e-mail codes go through (reachable, STARTTLS, the login).

Nothing here signs anyone in or sends mail. The token endpoint is asked to redeem a made-up code,
so its error tells a refused client (`invalid_client`) from an accepted one whose code is bad
(`invalid_grant`); the authorization endpoint is asked, as the gate asks it, whether it takes the
gate's redirect URL; the SMTP server gets EHLO, STARTTLS, AUTH, MAIL FROM, RSET and QUIT. No
secret, and no e-mail address, is ever part of a finding.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import secrets
import smtplib
import socket
import ssl
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, quote, urljoin, urlsplit

import httpx
import jwt

from gateway.admission.oidc import (
    SIGNING_ALGORITHMS,
    ProviderUntrusted,
    check_discovery,
    discovery_url,
    redirect_uri,
    requested_scopes,
)
from gateway.doctor_findings import Finding, Verdict, reason
from gateway.mail import MailFailed, connection_plan
from gateway.settings import OidcProvider, SmtpSettings

# ---------------------------------------------------------------- OpenID providers

# Signed with the client secret: the gate refuses these ID tokens (tickets are not the only
# thing a leaked secret would then forge).
SYMMETRIC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
# JWK members only a private or secret key has (RFC 7518 6.2.2, 6.3.2, 6.4; RFC 8037).
PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")

# The key type (and curve) each signing algorithm needs.
_KEY_TYPES: dict[str, tuple[str, str | None]] = {
    **{f"{family}{bits}": ("RSA", None) for family in ("RS", "PS") for bits in (256, 384, 512)},
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
    "EdDSA": ("OKP", None),
}


def key_usable(key: Mapping[str, Any], algorithm: str) -> bool:
    """Whether a JWK can verify ID tokens signed with `algorithm`: its type (and curve), not an
    encryption key, not pinned to another algorithm, and a key PyJWT can load."""
    kty, crv = _KEY_TYPES.get(algorithm, ("", None))
    if key.get("kty") != kty or (crv is not None and key.get("crv") != crv):
        return False
    if key.get("use", "sig") != "sig" or key.get("alg", algorithm) != algorithm:
        return False
    try:
        jwt.PyJWK(dict(key), algorithm=algorithm)
    except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
        return False
    return True


def keys_finding(check: str, jwks: Any, algorithms: frozenset[str], where: str) -> Finding:
    """The verdict on a provider's key set against the algorithms it advertises for ID tokens."""
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    if not isinstance(keys, list) or not keys:
        return Finding(
            check, Verdict.FAIL, f"{where} holds no keys: every ID token would be refused"
        )
    keys = [key for key in keys if isinstance(key, dict)]
    private = [key for key in keys if any(member in key for member in PRIVATE_MEMBERS)]
    if private:
        return Finding(
            check,
            Verdict.FAIL,
            f"{where} publishes {len(private)} private or secret key(s) (members d, k…): anyone"
            " can sign ID tokens the gate accepts; replace the provider's keys and publish only"
            " their public parts",
        )
    covered = sorted(a for a in algorithms if any(key_usable(key, a) for key in keys))
    missing = sorted(algorithms - set(covered))
    if not covered:
        return Finding(
            check,
            Verdict.FAIL,
            f"none of the {len(keys)} keys at {where} verifies {', '.join(missing)} (the"
            " algorithms the discovery document advertises): every ID token would be refused",
        )
    if missing:
        return Finding(
            check,
            Verdict.WARN,
            f"{len(keys)} keys verify {', '.join(covered)}, none {', '.join(missing)}: ID tokens"
            " signed so would be refused; make the provider sign with one of the first",
        )
    plural = "" if len(keys) == 1 else "s"
    return Finding(check, Verdict.PASS, f"{len(keys)} key{plural}, verifying {', '.join(covered)}")


async def _json(client: httpx.AsyncClient, url: str) -> tuple[Any, str | None]:
    """The JSON document at `url`, or why there is none."""
    try:
        response = await client.get(url, headers={"accept": "application/json"})
    except httpx.HTTPError as exc:
        return None, f"cannot fetch {url}: {reason(exc)}"
    if response.status_code != 200:
        return None, f"{url} answered {response.status_code}"
    try:
        return response.json(), None
    except ValueError:
        return None, f"{url} is not JSON"


def _client_basic(client_id: str, secret: str) -> str:
    """HTTP Basic credentials as OAuth 2.0 clients send them (RFC 6749 2.3.1: each part
    form-encoded first), which is how the gate's authlib client authenticates."""
    raw = f"{quote(client_id, safe='')}:{quote(secret, safe='')}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


async def check_client(
    client: httpx.AsyncClient,
    provider: OidcProvider,
    token_endpoint: str,
    redirect: str,
    redirect_taken: bool = True,
) -> Finding:
    """Redeem a made-up code at the token endpoint with the configured client credentials.
    `redirect_taken`: whether the redirect check passed; some providers (django-oidc-provider)
    answer `invalid_client` to a redirect URL they do not know, with the right secret."""
    check = f"oidc {provider.name} client"
    verifier = secrets.token_urlsafe(48)
    try:
        response = await client.post(
            token_endpoint,
            data={
                "grant_type": "authorization_code",
                "code": "meetgate-doctor-" + secrets.token_urlsafe(16),
                "redirect_uri": redirect,
                "code_verifier": verifier,
            },
            headers={
                "authorization": _client_basic(
                    provider.client_id, provider.client_secret.get_secret_value()
                ),
                "accept": "application/json",
            },
        )
    except httpx.HTTPError as exc:
        return Finding(check, Verdict.FAIL, f"cannot reach {token_endpoint}: {reason(exc)}")
    try:
        body = response.json()
    except ValueError:
        body = {}
    error = body.get("error") if isinstance(body, dict) else None
    if error == "invalid_grant":
        return Finding(
            check,
            Verdict.PASS,
            f"client_id {provider.client_id!r} and its secret accepted (the token endpoint"
            " refused only the made-up code)",
        )
    if error == "invalid_client" or response.status_code == 401:
        advice = (
            "copy the client's id and secret from the provider again"
            if redirect_taken
            else f"either the client's id or secret is wrong (copy them from the provider again)"
            f" or {redirect} is not registered as its redirect URL (some providers refuse the"
            " client for that): see the redirect line"
        )
        return Finding(
            check,
            Verdict.FAIL,
            f"the token endpoint refused client_id {provider.client_id!r} with the configured"
            f" client_secret (invalid_client): nobody can sign in; {advice}",
        )
    if error == "unauthorized_client":
        return Finding(
            check,
            Verdict.FAIL,
            f"client_id {provider.client_id!r} may not use the authorization code flow"
            " (unauthorized_client): allow it at the provider",
        )
    if response.status_code >= 500:
        return Finding(
            check,
            Verdict.FAIL,
            f"the token endpoint answered {response.status_code}: sign-ins fail until it works",
        )
    said = f" ({error})" if isinstance(error, str) else ""
    return Finding(
        check,
        Verdict.WARN,
        f"cannot tell whether the credentials are accepted: the token endpoint answered"
        f" {response.status_code}{said} to a made-up code",
    )


async def check_redirect(
    client: httpx.AsyncClient, provider: OidcProvider, authorization_endpoint: str, redirect: str
) -> Finding:
    """Start an authorization as the gate does (PKCE, state, nonce, the gate's redirect URL)
    and see whether the provider takes it; the URL is printed for the admin to compare."""
    check = f"oidc {provider.name} redirect"
    scopes = requested_scopes(provider)
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    params = {
        "response_type": "code",
        "client_id": provider.client_id,
        "redirect_uri": redirect,
        "scope": " ".join(scopes),
        "state": secrets.token_urlsafe(16),
        "nonce": secrets.token_urlsafe(16),
        "code_challenge": challenge.decode("ascii"),
        "code_challenge_method": "S256",
    }
    try:
        response = await client.get(authorization_endpoint, params=params)
    except httpx.HTTPError as exc:
        return Finding(check, Verdict.FAIL, f"cannot reach {authorization_endpoint}: {reason(exc)}")
    return redirect_finding(check, response.status_code, response.headers.get("location"), redirect)


def redirect_finding(check: str, status: int, location: str | None, redirect: str) -> Finding:
    """The verdict on the provider's answer to the gate's authorization request. Only a redirect
    shows the request taken (to the provider's login, or back to the gate with a code); a
    redirect back carrying `error=` is a refusal, and a page (some providers show their "redirect
    URI error" with a 200) cannot be told from a login form."""
    refused = (
        f"register exactly {redirect} as the client's redirect URL (public_url decides it), and"
        " check client_id and scopes"
    )
    if 300 <= status < 400 and location:
        back = urlsplit(urljoin(redirect, location))
        if back._replace(query="", fragment="").geturl() == redirect:
            said = parse_qs(back.query).get("error") or parse_qs(back.fragment).get("error")
            if said:
                return Finding(
                    check,
                    Verdict.FAIL,
                    f"the provider sent the gate's sign-in request back with error={said[0]!r}:"
                    f" {refused}",
                )
        return Finding(
            check,
            Verdict.PASS,
            f"{redirect} (the provider accepts it; it must be registered exactly so)",
        )
    if status < 400:
        return Finding(
            check,
            Verdict.WARN,
            f"cannot tell whether the provider takes {redirect}: it answered {status} with a page,"
            " not a redirect to its login (some providers show a redirect URI error so); make"
            " sure it is registered exactly so",
        )
    return Finding(
        check,
        Verdict.FAIL,
        f"the provider refused the gate's sign-in request ({status}): {refused}",
    )


async def check_provider(
    client: httpx.AsyncClient, provider: OidcProvider, public_url: str
) -> list[Finding]:
    """One provider: discovery, keys, client credentials, redirect URL."""
    prefix = f"oidc {provider.name}"
    url = discovery_url(provider.issuer)
    document, problem = await _json(client, url)
    if problem is not None:
        return [
            Finding(
                f"{prefix} discovery",
                Verdict.FAIL,
                f"{problem}: is [[oidc]] issuer right, and does this host reach the provider?",
            )
        ]
    if not isinstance(document, dict):
        return [Finding(f"{prefix} discovery", Verdict.FAIL, f"{url} is not a JSON object")]
    named = document.get("issuer")
    if named not in (provider.issuer, provider.issuer + "/"):
        return [
            Finding(
                f"{prefix} discovery",
                Verdict.FAIL,
                f"the discovery document names the issuer {named!r}, [[oidc]] {provider.name}"
                f" says {provider.issuer!r}: the gate refuses this provider; set issuer to"
                " exactly what the provider calls itself",
            )
        ]
    advertised = document.get("id_token_signing_alg_values_supported") or ["RS256"]
    if not isinstance(advertised, list):
        advertised = []
    algorithms = frozenset(a for a in advertised if isinstance(a, str)) & SIGNING_ALGORITHMS
    if not algorithms:
        return [
            Finding(
                f"{prefix} discovery",
                Verdict.FAIL,
                f"ID tokens are signed only with {', '.join(map(str, advertised)) or 'nothing'}:"
                " Meetgate accepts signatures by the provider's own keys only (RS256, ES256,"
                " EdDSA…); change the client's ID token signature algorithm",
            )
        ]
    try:
        # The gate's own judgement of the document (endpoints, userinfo), after the causes
        # above that doctor can explain better.
        metadata = check_discovery(document, provider.issuer)
    except ProviderUntrusted as exc:
        return [Finding(f"{prefix} discovery", Verdict.FAIL, f"{url}: {exc.reason}")]
    symmetric = sorted(a for a in advertised if isinstance(a, str) and a in SYMMETRIC_ALGORITHMS)
    signed = f"issuer {named} as configured; ID tokens signed with {', '.join(sorted(algorithms))}"
    if symmetric:
        discovery = Finding(
            f"{prefix} discovery",
            Verdict.WARN,
            f"{signed}, but also {', '.join(symmetric)} (the client secret), which Meetgate"
            " refuses: make sure this client's ID-token algorithm is asymmetric (RS256, ES256…),"
            " or every sign-in fails",
        )
    else:
        discovery = Finding(f"{prefix} discovery", Verdict.PASS, signed)
    findings = [discovery]
    jwks, problem = await _json(client, metadata.jwks_uri)
    if problem is not None:
        findings.append(Finding(f"{prefix} keys", Verdict.FAIL, problem))
    else:
        findings.append(keys_finding(f"{prefix} keys", jwks, algorithms, metadata.jwks_uri))
    redirect = redirect_uri(public_url, provider.name)
    taken = await check_redirect(client, provider, metadata.authorization_endpoint, redirect)
    findings.append(
        await check_client(
            client,
            provider,
            metadata.token_endpoint,
            redirect,
            redirect_taken=taken.verdict is Verdict.PASS,
        )
    )
    findings.append(taken)
    return findings


async def check_providers(
    providers: list[OidcProvider], public_url: str, seconds: float, deadline: float
) -> list[Finding]:
    """Every configured provider, concurrently, each request bounded by `seconds` and each
    provider by `deadline`: one slow provider costs its own lines only."""
    async with httpx.AsyncClient(
        timeout=seconds, trust_env=False, follow_redirects=False
    ) as client:

        async def bounded(provider: OidcProvider) -> list[Finding]:
            try:
                async with asyncio.timeout(deadline):
                    return await check_provider(client, provider, public_url)
            except TimeoutError:
                return [
                    Finding(
                        f"oidc {provider.name}",
                        Verdict.FAIL,
                        f"did not finish within {deadline:g} s: the provider answers too slowly"
                        " for a sign-in",
                    )
                ]

        found = await asyncio.gather(*(bounded(provider) for provider in providers))
    return [finding for group in found for finding in group]


# ---------------------------------------------------------------- SMTP


def _smtp_status(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{exc.smtp_code}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return exc.verify_message or "certificate not trusted"
    if isinstance(exc, ssl.SSLError):
        return exc.reason or type(exc).__name__
    return reason(exc)


class SmtpDialogue:
    """The connection doctor's SMTP thread holds, reachable from the event loop so that a
    deadline can hang it up: smtplib's timeout bounds each read, not a server that keeps
    sending continuation lines (`220-…`) forever."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._client: smtplib.SMTP | None = None
        self.hung_up = False

    def hold(self, client: smtplib.SMTP) -> None:
        with self._lock:
            self._client = client

    def hang_up(self) -> None:
        """Shut the socket down (from any thread): the thread's blocking read returns."""
        with self._lock:
            self.hung_up = True
            client = self._client
        connection = getattr(client, "sock", None)
        if isinstance(connection, socket.socket):
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


def smtp_findings(
    settings: SmtpSettings, seconds: float, dialogue: SmtpDialogue | None = None
) -> list[Finding]:
    """Talk to the SMTP server as the gate's mailer does (gateway/mail.py), up to the point a
    message would be sent, then reset and quit. Blocking: run it in a thread (check_smtp)."""
    where = f"{settings.host}:{settings.port}"
    try:
        plan = connection_plan(settings)
    except MailFailed as exc:
        return [Finding("smtp", Verdict.FAIL, f"{exc.reason}: set [smtp] security = starttls")]
    tls = ssl.create_default_context()
    findings: list[Finding] = []
    client: smtplib.SMTP
    try:
        if plan.implicit_tls:
            client = smtplib.SMTP_SSL(settings.host, settings.port, timeout=seconds, context=tls)
        else:
            client = smtplib.SMTP(settings.host, settings.port, timeout=seconds)
        # Held from here on (smtplib connects while it is made, and reads the greeting there:
        # a server that never ends its greeting is left to the daemon thread, see check_smtp).
        if dialogue is not None:
            dialogue.hold(client)
            if dialogue.hung_up:
                client.close()
                raise TimeoutError("doctor's deadline passed")
    except ssl.SSLError as exc:
        return [
            Finding(
                "smtp tls",
                Verdict.FAIL,
                f"{where}: TLS failed ({_smtp_status(exc)}): codes cannot be sent",
            )
        ]
    except (smtplib.SMTPException, OSError) as exc:
        return [
            Finding(
                "smtp",
                Verdict.FAIL,
                f"cannot reach {where} ({_smtp_status(exc)}): e-mail codes cannot be sent",
            )
        ]
    findings.append(Finding("smtp", Verdict.PASS, f"{where} answers"))
    step = "smtp"
    try:
        with client:
            client.ehlo()
            if plan.starttls:
                step = "smtp tls"
                if not client.has_extn("starttls"):
                    findings.append(
                        Finding(
                            step,
                            Verdict.FAIL,
                            f"{where} does not offer STARTTLS: Meetgate never sends in clear, so"
                            " every code fails; turn STARTTLS on there (or use security = tls"
                            " on its TLS port)",
                        )
                    )
                    return findings
                client.starttls(context=tls)
                client.ehlo()
                findings.append(Finding(step, Verdict.PASS, "STARTTLS works, certificate trusted"))
            elif plan.implicit_tls:
                findings.append(Finding("smtp tls", Verdict.PASS, "TLS from the first byte"))
            else:
                local = settings.host in ("127.0.0.1", "localhost", "::1")
                findings.append(
                    Finding(
                        "smtp tls",
                        Verdict.PASS if local else Verdict.WARN,
                        "security = none to a server on this machine"
                        if local
                        else "security = none: codes cross the network in clear; use starttls",
                    )
                )
            if plan.login:
                step = "smtp login"
                password = settings.password.get_secret_value() if settings.password else ""
                client.login(settings.username or "", password)
                findings.append(
                    Finding(step, Verdict.PASS, "[smtp] username and password accepted")
                )
            step = "smtp sender"
            code, _ = client.mail(settings.sender)
            client.rset()
            if code != 250:
                findings.append(
                    Finding(
                        step,
                        Verdict.FAIL,
                        f"the server refused [smtp] sender as the envelope sender ({code})"
                        + (": it wants a login ([smtp] username)" if code == 530 else ""),
                    )
                )
            else:
                findings.append(Finding(step, Verdict.PASS, "accepted (no mail sent)"))
    except smtplib.SMTPAuthenticationError as exc:
        findings.append(
            Finding(
                step,
                Verdict.FAIL,
                f"the server refused [smtp] username and password ({exc.smtp_code}): set the"
                " credentials again",
            )
        )
    except smtplib.SMTPNotSupportedError:
        findings.append(
            Finding(
                step,
                Verdict.FAIL,
                f"{where} offers no login (AUTH): remove [smtp] username, or use its"
                " submission port",
            )
        )
    except (smtplib.SMTPException, OSError) as exc:
        findings.append(
            Finding(step, Verdict.FAIL, f"{where}: {type(exc).__name__} ({_smtp_status(exc)})")
        )
    return findings


async def check_smtp(settings: SmtpSettings, seconds: float) -> list[Finding]:
    """smtp_findings in a thread of its own. When the caller's deadline cancels this, the
    connection is shut down once the thread holds it; and the thread is a daemon, so neither
    `asyncio.run` (which waits for its executor's threads without a limit) nor the
    interpreter's exit waits for a server that never stops talking."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[list[Finding]] = loop.create_future()
    dialogue = SmtpDialogue()

    def settle(findings: list[Finding] | None, failure: BaseException | None) -> None:
        if done.done():
            return
        if failure is not None:
            done.set_exception(failure)
        else:
            done.set_result(findings or [])

    def talk() -> None:
        findings: list[Finding] | None = None
        failure: BaseException | None = None
        try:
            findings = smtp_findings(settings, seconds, dialogue)
        except Exception as exc:  # handed to the loop, raised there
            failure = exc
        # The loop is closed when doctor gave up on this thread and finished.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, findings, failure)

    threading.Thread(target=talk, name="meetgate-doctor-smtp", daemon=True).start()
    try:
        return await done
    finally:
        if not done.done() or done.cancelled():
            dialogue.hang_up()
