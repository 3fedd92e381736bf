"""Sign-in with OpenID Connect, the HTTP half: `/_meetgate/oidc/<provider>/login` sends the
browser to the provider, `/_meetgate/oidc/<provider>/callback` takes its answer, checks it and
lets the person in (or into the lobby) through `Entrance.finish`. When the room's flood guard
demands proof-of-work, the login answers with the solver page, which posts the solved proof back
to the same login URL.

authlib's Starlette client runs the protocol (PKCE, state, nonce, code exchange, its own ID
token check); the stricter checks in `gateway/admission/oidc.py` run on top. Meetgate fetches
the discovery document itself (`ProviderClient.metadata`: when first needed, hourly, after a
call that may mean the provider moved; one fetch at a time, shared by every request waiting),
and the key set again for an ID token whose signature fails (`OpenIDApp`, at most once in the
retry interval). authlib's and httpx's exceptions, whatever their kind, become Meetgate's
errors here, and only here (`ProviderCall`), each with a reason that a log line gives under the
request id its page shows.

A pending sign-in lives in two halves: the browser holds a signed (readable, not encrypted),
HttpOnly, SameSite=Lax cookie scoped to `/_meetgate/oidc` (`with_signin_session`) naming the
provider, room, state and nonce; the Store holds the PKCE verifier and a copy of the nonce
(`PendingSignIns`), readable once.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
import time
import traceback
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import httpx
from authlib.common.errors import AuthlibBaseError
from authlib.deprecate import AuthlibDeprecationWarning
from authlib.integrations.base_client import MismatchingStateError, OAuthError
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from joserfc.errors import BadSignatureError, ClaimError, JoseError
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp

from gateway.admission.flood import FloodGuard, Proof
from gateway.admission.identity import VerifiedIdentity
from gateway.admission.limits import Attempt, RateLimiter
from gateway.admission.oidc import (
    CLOCK_LEEWAY_SECONDS,
    SIGNIN_PREFIX,
    SIGNIN_TTL_SECONDS,
    Expected,
    KeySetRefetches,
    MetadataSchedule,
    PendingSignIns,
    ProviderFailed,
    ProviderMetadata,
    ProviderUnavailable,
    SignInExpired,
    SignInFailed,
    SignInNotOffered,
    SignInRejected,
    UnknownSigningKey,
    callback_error,
    check_discovery,
    check_response_issuer,
    discovery_url,
    error_code,
    identity_from_claims,
    offers,
    redirect_uri,
    requested_scopes,
    verify_id_token,
    wants_userinfo,
)
from gateway.edge.languages import use_room_language
from gateway.edge.requests import request_id, same_origin
from gateway.errors import (
    CrossSiteRequest,
    DuplicateParameter,
    MeetgateError,
    NotFound,
    RoomNotFound,
)
from gateway.i18n import N_
from gateway.settings import OidcProvider, Settings
from gateway.store import Store
from gateway.store.records import Room
from gateway.web.challenge import Challenge, EntryChecks, challenge_page, proof_in
from gateway.web.entry import Entrance, client_addr
from gateway.web.forms import read_form

with warnings.catch_warnings():
    # Authlib 1.9 warns at import, on every start, that it falls back to httpx because httpx2
    # is not installed; requirements.lock has httpx (our client's too) and no httpx2, so there
    # is nothing to do until the lock moves. Only that warning, only during this import.
    warnings.filterwarnings(
        "ignore", message="The httpx module is deprecated", category=AuthlibDeprecationWarning
    )
    from authlib.integrations.starlette_client import OAuth, StarletteOAuth2App

log = logging.getLogger("meetgate.signin")

SESSION_KEY = "meetgate_signin"
PROVIDER_TIMEOUT_SECONDS = 10.0
# A discovery document is a few KiB; one far larger is not read to its end.
MAX_DISCOVERY_BYTES = 256 * 1024
CALLBACK_PARAMETERS = ("code", "state", "iss", "error", "error_description")

T = TypeVar("T")


def signin_cookie_name(settings: Settings) -> str:
    # Scoped to /_meetgate/oidc, so `__Host-` (which demands Path=/) cannot be used.
    return "__Secure-meetgate_signin" if settings.secure else "meetgate_signin"


def with_signin_session(app: ASGIApp, settings: Settings) -> ASGIApp:
    """`request.session` for the sign-in routes (authlib's Starlette client needs it): a signed
    cookie, HttpOnly, SameSite=Lax (the provider's redirect back is a top-level navigation),
    Secure over TLS, sent only to `/_meetgate/oidc`, valid for one sign-in's time."""
    key = hmac.new(
        settings.admission.pseudonym_key.get_secret_value().encode(),
        b"meetgate oidc sign-in session",
        hashlib.sha256,
    ).hexdigest()
    return SessionMiddleware(
        app,
        secret_key=key,
        session_cookie=signin_cookie_name(settings),
        max_age=SIGNIN_TTL_SECONDS,
        path=SIGNIN_PREFIX,
        same_site="lax",
        https_only=settings.secure,
    )


@dataclass(frozen=True, slots=True)
class PendingSignIn:
    """The browser's half of a sign-in between the two redirects."""

    provider: str
    room: str
    state: str
    nonce: str

    @classmethod
    def from_session(cls, session: dict[str, Any]) -> PendingSignIn | None:
        entry = session.get(SESSION_KEY)
        if not isinstance(entry, dict):
            return None
        values = [entry.get(field) for field in ("provider", "room", "state", "nonce")]
        strings = [value for value in values if isinstance(value, str) and value]
        if len(strings) != len(values):
            return None
        provider, room, state, nonce = strings
        return cls(provider=provider, room=room, state=state, nonce=nonce)

    def to_session(self) -> dict[str, str]:
        return {
            "provider": self.provider,
            "room": self.room,
            "state": self.state,
            "nonce": self.nonce,
        }


def _answered_status(exc: BaseException) -> int | None:
    """The HTTP status of the provider's answer an exception is about, if it is about one (an
    httpx HTTPStatusError, and the same of another httpx that authlib may use instead)."""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return status if isinstance(status, int) and not isinstance(status, bool) else None


def _transport_failure(exc: BaseException) -> bool:
    """Nothing answered: httpx's TransportError (connect, read, TLS, timeouts), the same class
    of another httpx (authlib uses `httpx2` when it is installed), or an OSError."""
    if isinstance(exc, httpx.TransportError | OSError | TimeoutError):
        return True
    return any(kind.__name__ == "TransportError" for kind in type(exc).__mro__)


def _requested_url(exc: BaseException) -> str | None:
    try:
        request = getattr(exc, "request", None)
    except RuntimeError:
        # httpx: an exception made without its request.
        return None
    url = getattr(request, "url", None)
    return None if url is None else str(url).split("?", 1)[0]


def _url_key(url: str) -> tuple[str, str, int | None, str] | None:
    """A URL as a provider's endpoint is told apart: scheme, host (lower case, IDNA), port
    (none when the scheme's default) and path; not the query, which some providers' key set
    URLs carry (`?p=policy`). None if it does not parse."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return None
    return parsed.scheme, parsed.raw_host.decode("ascii").lower(), parsed.port, parsed.path


def _endpoint_named(url: str | None, endpoints: dict[str, str]) -> str | None:
    """The name of the endpoint in `endpoints` (URL to name) that `url` reached, if any."""
    key = None if url is None else _url_key(url)
    if key is None:
        return None
    for known, name in endpoints.items():
        if _url_key(known) == key:
            return name
    return None


# Answers that may mean an endpoint moved: a redirect (httpx and authlib follow none), gone.
_MOVED_STATUSES = frozenset({301, 302, 303, 307, 308, 404, 405, 410})


def _unreadable(exc: BaseException) -> bool:
    """authlib and httpx read an answer as JSON: an HTML page, a JSON that is not an object, or
    one of the wrong shape."""
    return isinstance(exc, ValueError | KeyError | TypeError | AttributeError)


def provider_failure(exc: Exception, step: str, endpoints: dict[str, str]) -> MeetgateError:
    """What a failed call to a provider (through authlib or httpx, whatever they raise) means
    for the attendee, with the reason for the log. `step` names the call; an HTTP failure is
    named by the endpoint it reached (`endpoints`: URL to name), since authlib's code exchange
    fetches the key set too."""
    where = _endpoint_named(_requested_url(exc), endpoints) or step
    status = _answered_status(exc)
    if status is not None:
        return ProviderFailed(f"{where} answered HTTP {status}")
    if _transport_failure(exc):
        return ProviderUnavailable(f"{where} unreachable ({type(exc).__name__})")
    if isinstance(exc, MismatchingStateError):
        return SignInExpired("state mismatch")
    if isinstance(exc, OAuthError) and type(exc) is OAuthError and "error" in vars(exc):
        # An error code the provider answered with: authlib raises exactly this class for it,
        # given the code (without one, the class's own default stands: authlib's refusal).
        code = error_code(exc.error)
        if code == "invalid_grant":
            # The provider will not exchange the code: used already, expired, forged, issued to
            # another client or for another browser's PKCE. The answer is refused, not failed.
            return SignInRejected(f"{where} error {code}")
        return ProviderFailed(f"{where} error {code}")
    if isinstance(exc, AuthlibBaseError):
        # What authlib refuses by itself (a callback without a code, a token answer without a
        # token): the answer does not hold up; nothing failed at the provider.
        return SignInRejected(f"{where} refused by authlib ({type(exc).__name__})")
    if isinstance(exc, ClaimError):
        return SignInRejected(f"ID token {error_code(exc.error)} {error_code(exc.claim)}")
    if isinstance(exc, JoseError):
        return SignInRejected(f"ID token {error_code(exc.error)}")
    if _unreadable(exc):
        return ProviderFailed(f"{where} answer unreadable ({type(exc).__name__})")
    return ProviderFailed(f"{where} failed ({type(exc).__name__})")


def casts_doubt(exc: Exception, step: str, endpoints: dict[str, str]) -> bool:
    """Whether a failed call may mean the provider moved, so that its discovery document is
    fetched again: an endpoint the document names (`endpoints`: URL to name, compared as
    `_url_key` does) did not answer, or answered with a 5xx, a redirect, a "not found" or "gone",
    or something unreadable. Not an error code it answered with, nor what
    authlib refused by itself: a fresh document mends neither, and anyone can cause them."""
    url = _requested_url(exc)
    at_endpoint = (
        _endpoint_named(url, endpoints) is not None
        if url is not None
        else step in endpoints.values()
    )
    if not at_endpoint:
        return False
    if _transport_failure(exc):
        return True
    status = _answered_status(exc)
    if status is not None:
        return status >= 500 or status in _MOVED_STATUSES
    return _unreadable(exc)


class ProviderCall:
    """One provider's calls through authlib, each translated here and only here: whatever
    authlib or httpx raise becomes a Meetgate error with its reason, never a bare 500; a failure
    that may mean the provider moved (`casts_doubt`) makes its discovery document suspect."""

    def __init__(self, schedule: MetadataSchedule) -> None:
        self.endpoints: dict[str, str] = {}
        self._schedule = schedule

    async def __call__(self, call: Awaitable[T], step: str) -> T:
        try:
            return await call
        except MeetgateError:
            raise
        except Exception as exc:
            if casts_doubt(exc, step, self.endpoints):
                self._schedule.suspect = True
            raise provider_failure(exc, step, self.endpoints) from exc


class OpenIDApp(StarletteOAuth2App):  # type: ignore[misc]  # authlib has no types
    """authlib's Starlette client, which fetches the key set again when an ID token names a key
    it lacks (a new `kid`), and here also when the signature fails with the key its `kid` names
    (a key replaced under the same kid, or keys without one): else every sign-in would fail until
    the hourly refresh. Bounded by `key_set_refetches` (one fetch in the retry interval, per
    provider); the token is checked once more with the set fetched, and a second bad signature
    is a refusal."""

    key_set_refetches: KeySetRefetches

    async def parse_id_token(
        self,
        token: Any,
        nonce: Any,
        claims_options: Any = None,
        claims_cls: Any = None,
        leeway: Any = 120,
    ) -> Any:
        try:
            return await super().parse_id_token(token, nonce, claims_options, claims_cls, leeway)
        except BadSignatureError:
            if not self.key_set_refetches.take(time.monotonic()):
                raise
        await self.fetch_jwk_set(force=True)
        return await super().parse_id_token(token, nonce, claims_options, claims_cls, leeway)


class ProviderClient:
    """One configured provider: authlib's client, with the discovery document fetched, checked
    and refreshed (`MetadataSchedule`) by Meetgate, one fetch at a time."""

    def __init__(self, config: OidcProvider, oauth: OAuth, public_url: str) -> None:
        self.config = config
        self.redirect_uri = redirect_uri(public_url, config.name)
        scopes = requested_scopes(config)
        # authlib makes an httpx client for every call to the provider (code exchange, keys,
        # userinfo), and httpx a TLS context for each client it is not handed one: reading the
        # root certificates cost 18 ms of CPU a time on an idle machine (twice that under load).
        # This one is made once, by httpx, as it would make it for each of those clients (its
        # CA bundle, hostname checked, certificate required).
        self._tls = httpx.create_ssl_context(trust_env=False)
        oauth.register(
            name=config.name,
            client_id=config.client_id,
            client_secret=config.client_secret.get_secret_value(),
            client_cls=OpenIDApp,
            # No `server_metadata_url`: Meetgate fetches the document itself (`metadata`), so
            # that a refresh is one fetch at a time and authlib never starts one of its own.
            client_kwargs={
                "scope": " ".join(scopes),
                "code_challenge_method": "S256",
                "timeout": PROVIDER_TIMEOUT_SECONDS,
                # Settings are passed in; nothing is read from the environment (proxies).
                "trust_env": False,
                "verify": self._tls,
            },
        )
        # authlib has no types: the client stays Any here and nowhere else.
        self._app: Any = oauth.create_client(config.name)
        self._app.framework.expires_in = SIGNIN_TTL_SECONDS
        self._app.key_set_refetches = KeySetRefetches()
        self._metadata: ProviderMetadata | None = None
        self._schedule = MetadataSchedule()
        # The fetch in flight, if one is: every request that needs the document shares it.
        self._refresh: asyncio.Task[None] | None = None
        # Why the last fetch failed: raised again, without a fetch, until the next try is due.
        self._failure: MeetgateError | None = None
        self.call = ProviderCall(self._schedule)

    async def metadata(self) -> ProviderMetadata:
        """The provider's checked discovery document, fetched when `MetadataSchedule` says so,
        one fetch at a time. While a document is kept, it is served at once and the fetch runs
        in the background (a failed one keeps it). Without one, every request waits for the
        fetch in flight and takes its outcome, never starting another; a failure is raised, and
        raised again without a fetch until the next try is due."""
        if self._refresh is None and self._schedule.due(time.monotonic()):
            self._refresh = asyncio.create_task(self._refreshed())
        refresh = self._refresh
        if refresh is not None and self._metadata is None:
            # Shielded: a request that gives up does not end the fetch the others wait for.
            await asyncio.shield(refresh)
        return self._current()

    async def _refreshed(self) -> None:
        """One fetch of the discovery document, its outcome kept for every request. The try is
        stamped when it ends, so a fetch that took the whole retry interval is not due again
        for the requests that waited on it."""
        try:
            metadata, raw = await self._fetch()
        except MeetgateError as failure:
            self._schedule.tried(time.monotonic(), fetched=False)
            self._failure = failure
            if self._metadata is not None:
                log.warning(
                    "sign-in with %s: its discovery document could not be fetched again (%s);"
                    " the one fetched before is used meanwhile",
                    self.config.name,
                    _reason(failure),
                )
            return
        finally:
            self._refresh = None
        self._schedule.tried(time.monotonic(), fetched=True)
        self._failure = None
        if self._metadata is not None and self._metadata != metadata:
            log.info("sign-in with %s: its discovery document changed", self.config.name)
        self._metadata = metadata
        # authlib reads the endpoints from here (registered without `server_metadata_url`, it
        # never fetches a document itself); the key set it keeps here is fetched again, from
        # the new document's `jwks_uri`.
        self._app.server_metadata = dict(raw)
        named = {
            "token endpoint": metadata.token_endpoint,
            "keys": metadata.jwks_uri,
            "userinfo": metadata.userinfo_endpoint,
        }
        self.call.endpoints = {url: name for name, url in named.items() if url is not None}

    async def aclose(self) -> None:
        """End the discovery fetch in flight, if one is (a background refresh), and wait for
        it: nothing of this provider's outlives the gate's stop."""
        refresh = self._refresh
        if refresh is None:
            return
        refresh.cancel()
        # asyncio.wait, unlike awaiting the task, leaves a cancellation of aclose() itself
        # intact; the fetch is bounded by PROVIDER_TIMEOUT_SECONDS whatever it does.
        await asyncio.wait({refresh})

    def _current(self) -> ProviderMetadata:
        if self._metadata is not None:
            return self._metadata
        failure = self._failure
        if not isinstance(failure, SignInFailed | ProviderUnavailable):
            raise ProviderUnavailable("discovery not fetched")
        # A new error of the same kind and reason: the one kept is not raised again (each
        # raise would add its frames to the one traceback it carries).
        raise type(failure)(failure.reason)

    async def _fetch(self) -> tuple[ProviderMetadata, dict[str, Any]]:
        url = discovery_url(self.config.issuer)
        try:
            # httpx's timeout bounds each phase (connect, each read), not the whole: a provider
            # trickling its answer would hold the fetch, and every request waiting on it.
            async with asyncio.timeout(PROVIDER_TIMEOUT_SECONDS):
                async with (
                    httpx.AsyncClient(
                        timeout=PROVIDER_TIMEOUT_SECONDS, trust_env=False, verify=self._tls
                    ) as client,
                    client.stream("GET", url) as response,
                ):
                    response.raise_for_status()
                    body = bytearray()
                    # Read up to the cap, never the whole of whatever is sent.
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > MAX_DISCOVERY_BYTES:
                            raise ProviderFailed("discovery answer too large")
            raw = json.loads(body)
        except MeetgateError:
            raise
        except Exception as exc:
            raise provider_failure(exc, "discovery", {}) from exc
        if not isinstance(raw, dict):
            raise ProviderFailed("discovery answer is not a JSON object")
        return check_discovery(raw, self.config.issuer), raw

    async def start(self, request: Request, room: str) -> Response:
        """Send the browser to the provider, remembering the room and the sign-in's nonce."""
        await self.metadata()
        pending = PendingSignIn(
            provider=self.config.name,
            room=room,
            state=secrets.token_urlsafe(32),
            nonce=secrets.token_urlsafe(32),
        )
        response = await self.call(
            self._app.authorize_redirect(
                request, self.redirect_uri, state=pending.state, nonce=pending.nonce
            ),
            "authorization request",
        )
        if not isinstance(response, Response):
            raise SignInFailed("authorization request not made")
        request.session[SESSION_KEY] = pending.to_session()
        return response

    async def finish(
        self, request: Request, pending: PendingSignIn, iss: str | None
    ) -> VerifiedIdentity:
        """Exchange the code and check everything the provider said; the identity it proves."""
        metadata = await self.metadata()
        check_response_issuer(iss, metadata)
        # The key set first (kept once fetched): authlib's code exchange below checks the ID
        # token with it too, and a failure to get it is named for what it is.
        jwks = await self.call(self._app.fetch_jwk_set(), "keys")
        # Checks `state` against this browser's pending sign-in (taken from the store once),
        # exchanges the code with the PKCE verifier, and validates the ID token its own way:
        # told the audience too (by itself authlib reads another client's token as one that
        # lacks `azp`), so that the reason logged is the one that holds.
        claims_options = {
            "iss": {"essential": True, "values": [metadata.issuer]},
            "aud": {"essential": True, "values": [self.config.client_id]},
        }
        token = await self.call(
            self._app.authorize_access_token(
                request, leeway=CLOCK_LEEWAY_SECONDS, claims_options=claims_options
            ),
            "token endpoint",
        )
        if not isinstance(token, dict) or not isinstance(token.get("id_token"), str):
            raise SignInRejected("token endpoint answer without an ID token")
        expected = Expected(
            issuer=metadata.issuer,
            client_id=self.config.client_id,
            nonce=pending.nonce,
            algorithms=metadata.signing_algorithms,
        )
        # authlib's exchange checked the ID token with the key set it keeps, and fetched that
        # again when the token's key was not in it (a rotated key): the set it keeps now.
        kept = self._app.server_metadata.get("jwks")
        if isinstance(kept, dict):
            jwks = kept
        try:
            claims = verify_id_token(token["id_token"], jwks, expected, time.time())
        except UnknownSigningKey:
            jwks = await self.call(self._app.fetch_jwk_set(force=True), "keys")
            claims = verify_id_token(token["id_token"], jwks, expected, time.time())
        userinfo: dict[str, Any] | None = None
        if metadata.userinfo_endpoint and wants_userinfo(self.config, claims):
            answer = await self.call(self._app.userinfo(token=token), "userinfo")
            if not isinstance(answer, dict):
                raise ProviderFailed("userinfo answer is not a JSON object")
            userinfo = dict(answer)
        return identity_from_claims(self.config, claims, userinfo)


def _reason(error: MeetgateError) -> str:
    reason = getattr(error, "reason", None)
    return reason if isinstance(reason, str) else error.code


def _state_mismatch(pending: PendingSignIn | None, provider: str, state: str) -> str | None:
    """Why a callback does not answer this browser's pending sign-in; None when it does."""
    if pending is None:
        return "state mismatch: no sign-in pending in this browser"
    if pending.provider != provider:
        return "state mismatch: the pending sign-in is with another provider"
    if not hmac.compare_digest(state.encode(), pending.state.encode()):
        return "state mismatch"
    return None


def _callback_parameters(request: Request) -> dict[str, str]:
    params: dict[str, str] = {}
    for key, value in request.query_params.multi_items():
        if key in CALLBACK_PARAMETERS:
            if key in params:
                raise DuplicateParameter(
                    N_("The parameter '{key}' appears more than once."), key=key
                )
            params[key] = value
    return params


@dataclass(frozen=True, slots=True)
class ToProvider:
    """authlib's redirect to the provider's authorisation page."""

    response: Response


LoginAnswer = Challenge | ToProvider


class SignInRoutes:
    """The sign-in routes for every configured provider, one method each, and what they share."""

    def __init__(
        self,
        settings: Settings,
        entrance: Entrance,
        store: Store,
        limiter: RateLimiter,
        flood: FloodGuard,
    ) -> None:
        self._settings = settings
        self._entrance = entrance
        self._limiter = limiter
        self._checks = EntryChecks(flood, limiter)
        oauth = OAuth(cache=PendingSignIns(store))
        self._clients = {
            provider.name: ProviderClient(provider, oauth, settings.public_url)
            for provider in settings.oidc
        }

    async def aclose(self) -> None:
        """End every provider's discovery fetch in flight; call once the server has stopped."""
        for client in self._clients.values():
            await client.aclose()

    async def login(
        self, request: Request, provider: str, room: Annotated[str, Query(max_length=64)] = ""
    ) -> Response:
        started = await self._logged(
            request, provider, "login", lambda: self._start(request, provider, room, None)
        )
        return self._respond(request, started)

    async def login_with_proof(self, request: Request, provider: str) -> Response:
        """The challenge page's answer: the same start, with the proof-of-work it solved."""
        if not same_origin(request.scope, self._settings.public_url):
            raise CrossSiteRequest()
        form = await read_form(request)

        def start() -> Awaitable[LoginAnswer]:
            return self._start(request, provider, form.get("room", ""), proof_in(form))

        return self._respond(request, await self._logged(request, provider, "login", start))

    async def callback(self, request: Request, provider: str) -> Response:
        verified, room = await self._logged(
            request, provider, "callback", lambda: self._finish(request, provider)
        )
        return await self._entrance.finish(request, verified, room)

    async def _logged(
        self, request: Request, provider: str, stage: str, step: Callable[[], Awaitable[T]]
    ) -> T:
        """`step`'s outcome; a sign-in that fails is logged with its reason and the request id
        its page shows, so that an attendee can quote it. A failure of a kind nobody foresaw (a
        newer authlib or httpx raising something new) is a page too, never a bare 500."""
        try:
            return await step()
        except (SignInFailed, ProviderUnavailable) as failed:
            self._log_failure(request, provider, stage, failed)
            raise
        except MeetgateError:
            raise
        except Exception as exc:
            # Its kind and place, not its text: that may quote what the provider sent.
            frames = traceback.extract_tb(exc.__traceback__)
            where = f" at {frames[-1].name}:{frames[-1].lineno}" if frames else ""
            failure = ProviderFailed(f"unexpected {type(exc).__name__}{where}")
            self._log_failure(request, provider, stage, failure)
            raise failure from exc

    def _log_failure(
        self, request: Request, provider: str, stage: str, failure: MeetgateError
    ) -> None:
        # A provider's name as configured only: the path's is whatever a request wrote.
        named = provider if provider in self._clients else "an unknown provider"
        log.log(
            logging.WARNING if isinstance(failure, ProviderUnavailable) else logging.INFO,
            "sign-in with %s failed at %s: %s (%s) [%s]",
            named,
            stage,
            failure.code,
            _reason(failure),
            request_id(request.scope),
        )

    def _client_for(self, provider: str) -> ProviderClient:
        client = self._clients.get(provider)
        if client is None:
            raise NotFound()
        return client

    async def _start(
        self, request: Request, provider: str, room: str, proof: Proof | None
    ) -> LoginAnswer:
        """Proof-of-work when the room's flood guard demands it (answered with the solver page,
        which posts back here), then the rate limits, then off to the provider."""
        client = self._client_for(provider)
        address = client_addr(request)
        try:
            current = await self._entrance.room_for_entry(room)
        except RoomNotFound:
            await self._limiter.charge(Attempt(address))
            raise
        use_room_language(request.scope, current.language)
        demand = await self._checks.demand(
            proof, client_addr=address, room=current, now=time.time()
        )
        if demand is not None:
            # Solved, the page posts the room to this provider's login again.
            return Challenge(f"{SIGNIN_PREFIX}/{provider}/login", demand, {"room": current.name})
        if not offers(current.policy, provider):
            raise SignInNotOffered()
        return ToProvider(await client.start(request, current.name))

    async def _finish(self, request: Request, provider: str) -> tuple[VerifiedIdentity, Room]:
        """The identity the provider's answer proves, and the room it was asked for. Whatever
        the answer says, it ends the sign-in it answers."""
        client = self._client_for(provider)
        address = client_addr(request)
        try:
            params = _callback_parameters(request)
            pending = PendingSignIn.from_session(request.session)
            state = params.get("state", "")
            mismatch = _state_mismatch(pending, provider, state)
            if mismatch is not None or pending is None:
                # Login CSRF, a replay, a callback from another browser or an expired one.
                await self._limiter.charge(Attempt(address))
                raise SignInExpired(mismatch or "state mismatch")
            await self._limiter.charge(Attempt(address, room=pending.room))
            room = await self._entrance.room_for_entry(pending.room)
            use_room_language(request.scope, room.language)
            return await self._verify(request, client, pending, params, room), room
        finally:
            request.session.clear()

    async def _verify(
        self,
        request: Request,
        client: ProviderClient,
        pending: PendingSignIn,
        params: dict[str, str],
        room: Room,
    ) -> VerifiedIdentity:
        """The provider's answer checked; a failure counts against the room's rejections."""
        try:
            if "error" in params:
                raise callback_error(params["error"])
            if not params.get("code"):
                # Refused here, before authlib (which would raise as if the provider failed).
                raise SignInRejected("callback without a code")
            return await client.finish(request, pending, params.get("iss"))
        except SignInFailed as failed:
            await self._limiter.note_rejection(room.name, failed.code)
            raise

    def _respond(self, request: Request, answer: LoginAnswer) -> Response:
        """The one place a login's answer becomes HTTP."""
        if isinstance(answer, ToProvider):
            return answer.response
        return challenge_page(request.scope, answer)


def create_signin_router(
    settings: Settings, entrance: Entrance, store: Store, limiter: RateLimiter, flood: FloodGuard
) -> APIRouter:
    """The sign-in routes for every configured provider; see `SignInRoutes`. Needs
    `with_signin_session` around the app they are part of."""
    return signin_router(SignInRoutes(settings, entrance, store, limiter, flood))


def signin_router(routes: SignInRoutes) -> APIRouter:
    """The router for `routes`, made by whoever closes them (`SignInRoutes.aclose`) at the
    stop. Needs `with_signin_session` around the app they are part of."""
    # authlib logs the PKCE verifier at debug level; Meetgate never logs a secret.
    logging.getLogger("authlib").setLevel(logging.WARNING)
    router = APIRouter()
    router.add_api_route(SIGNIN_PREFIX + "/{provider}/login", routes.login, methods=["GET"])
    router.add_api_route(
        SIGNIN_PREFIX + "/{provider}/login", routes.login_with_proof, methods=["POST"]
    )
    router.add_api_route(SIGNIN_PREFIX + "/{provider}/callback", routes.callback, methods=["GET"])
    return router
