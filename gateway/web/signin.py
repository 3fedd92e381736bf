"""Sign-in with OpenID Connect, the HTTP half: `/_meetgate/oidc/<provider>/login` sends the
browser to the provider, `/_meetgate/oidc/<provider>/callback` takes its answer, checks it and
lets the person in (or into the lobby) through `Entrance.finish`. When the room's flood guard
demands proof-of-work, the login answers with the solver page, which posts the solved proof back
to the same login URL.

authlib's Starlette client runs the protocol (discovery, PKCE, state, nonce, code exchange, its
own ID token check); the stricter checks in `gateway/admission/oidc.py` run on top. authlib's
and httpx's exceptions become Meetgate's errors here, and only here.

A pending sign-in lives in two halves: the browser holds a signed, HttpOnly, SameSite=Lax cookie
scoped to `/_meetgate/oidc` (`with_signin_session`) naming the provider, room and state; the
Store holds the PKCE verifier and nonce (`PendingSignIns`), readable once.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
import warnings
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import httpx
from authlib.common.errors import AuthlibBaseError
from authlib.deprecate import AuthlibDeprecationWarning
from authlib.integrations.base_client import MismatchingStateError
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from joserfc.errors import JoseError
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
    PendingSignIns,
    ProviderMetadata,
    ProviderUnavailable,
    ProviderUntrusted,
    SignInDenied,
    SignInExpired,
    SignInFailed,
    SignInNotOffered,
    SignInRejected,
    UnknownSigningKey,
    check_discovery,
    check_response_issuer,
    discovery_url,
    identity_from_claims,
    offers,
    redirect_uri,
    verify_id_token,
    wants_userinfo,
)
from gateway.edge.languages import use_room_language
from gateway.edge.requests import same_origin
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
    from authlib.integrations.starlette_client import OAuth

SESSION_KEY = "meetgate_signin"
# A provider's discovery document (and with it its key set) is fetched again after this long.
METADATA_MAX_AGE_SECONDS = 3600
PROVIDER_TIMEOUT_SECONDS = 10.0
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


async def _translated(call: Awaitable[T], failure: type[MeetgateError] = SignInRejected) -> T:
    """Await an authlib call; its and httpx's exceptions become `failure` or
    ProviderUnavailable. Meetgate's own errors (StoreUnavailable) pass through."""
    try:
        return await call
    except httpx.HTTPError as exc:
        raise ProviderUnavailable() from exc
    except MismatchingStateError as exc:
        raise SignInExpired() from exc
    except (AuthlibBaseError, JoseError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        # ValueError: a response that is not JSON; KeyError/TypeError: JSON of the wrong shape;
        # RuntimeError: authlib's "Missing jwks_uri" and the like.
        raise failure() from exc


class ProviderClient:
    """One configured provider: authlib's client, with discovery checked and refreshed."""

    def __init__(self, config: OidcProvider, oauth: OAuth, public_url: str) -> None:
        self.config = config
        self.redirect_uri = redirect_uri(public_url, config.name)
        scopes = config.scopes if "openid" in config.scopes else ["openid", *config.scopes]
        oauth.register(
            name=config.name,
            client_id=config.client_id,
            client_secret=config.client_secret.get_secret_value(),
            server_metadata_url=discovery_url(config.issuer),
            client_kwargs={
                "scope": " ".join(scopes),
                "code_challenge_method": "S256",
                "timeout": PROVIDER_TIMEOUT_SECONDS,
                # Settings are passed in; nothing is read from the environment (proxies).
                "trust_env": False,
                # authlib makes an httpx client for every call to the provider (discovery, code
                # exchange, keys, userinfo), and httpx a TLS context for each client it is not
                # handed one: reading the root certificates cost 18 ms of CPU a time on an idle
                # machine (twice that under load).
                # This one is made once, by httpx, as it would make it for each of those clients
                # (its CA bundle, hostname checked, certificate required).
                "verify": httpx.create_ssl_context(trust_env=False),
            },
        )
        # authlib has no types: the client stays Any here and nowhere else.
        self._app: Any = oauth.create_client(config.name)
        self._app.framework.expires_in = SIGNIN_TTL_SECONDS
        self._metadata: ProviderMetadata | None = None
        self._loaded_at = 0.0

    async def metadata(self, now: float) -> ProviderMetadata:
        if self._metadata is None or now - self._loaded_at > METADATA_MAX_AGE_SECONDS:
            self._app.server_metadata.clear()
            raw = await _translated(self._app.load_server_metadata(), ProviderUntrusted)
            try:
                self._metadata = check_discovery(raw, self.config.issuer)
            except ProviderUntrusted:
                self._app.server_metadata.clear()
                raise
            self._loaded_at = now
        return self._metadata

    async def start(self, request: Request, room: str) -> Response:
        """Send the browser to the provider, remembering the room and the sign-in's nonce."""
        await self.metadata(time.time())
        pending = PendingSignIn(
            provider=self.config.name,
            room=room,
            state=secrets.token_urlsafe(32),
            nonce=secrets.token_urlsafe(32),
        )
        response = await _translated(
            self._app.authorize_redirect(
                request, self.redirect_uri, state=pending.state, nonce=pending.nonce
            ),
            SignInFailed,
        )
        if not isinstance(response, Response):
            raise SignInFailed()
        request.session[SESSION_KEY] = pending.to_session()
        return response

    async def finish(
        self, request: Request, pending: PendingSignIn, iss: str | None
    ) -> VerifiedIdentity:
        """Exchange the code and check everything the provider said; the identity it proves."""
        metadata = await self.metadata(time.time())
        check_response_issuer(iss, metadata)
        # Checks `state` against this browser's pending sign-in (taken from the store once),
        # exchanges the code with the PKCE verifier, and validates the ID token its own way.
        token = await _translated(
            self._app.authorize_access_token(request, leeway=CLOCK_LEEWAY_SECONDS)
        )
        if not isinstance(token, dict) or not isinstance(token.get("id_token"), str):
            raise SignInRejected()
        expected = Expected(
            issuer=metadata.issuer,
            client_id=self.config.client_id,
            nonce=pending.nonce,
            algorithms=metadata.signing_algorithms,
        )
        jwks = await _translated(self._app.fetch_jwk_set())
        try:
            claims = verify_id_token(token["id_token"], jwks, expected, time.time())
        except UnknownSigningKey:
            jwks = await _translated(self._app.fetch_jwk_set(force=True))
            claims = verify_id_token(token["id_token"], jwks, expected, time.time())
        userinfo: dict[str, Any] | None = None
        if metadata.userinfo_endpoint and wants_userinfo(self.config, claims):
            answer = await _translated(self._app.userinfo(token=token))
            if not isinstance(answer, dict):
                raise SignInRejected()
            userinfo = dict(answer)
        return identity_from_claims(self.config, claims, userinfo)


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

    async def login(
        self, request: Request, provider: str, room: Annotated[str, Query(max_length=64)] = ""
    ) -> Response:
        return self._respond(request, await self._start(request, provider, room, None))

    async def login_with_proof(self, request: Request, provider: str) -> Response:
        """The challenge page's answer: the same start, with the proof-of-work it solved."""
        if not same_origin(request.scope, self._settings.public_url):
            raise CrossSiteRequest()
        form = await read_form(request)
        started = await self._start(request, provider, form.get("room", ""), proof_in(form))
        return self._respond(request, started)

    async def callback(self, request: Request, provider: str) -> Response:
        verified, room = await self._finish(request, provider)
        return await self._entrance.finish(request, verified, room)

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
            if (
                pending is None
                or pending.provider != provider
                or not hmac.compare_digest(state.encode(), pending.state.encode())
            ):
                # Login CSRF, a replay, a callback from another browser or an expired one.
                await self._limiter.charge(Attempt(address))
                raise SignInExpired()
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
                raise SignInDenied()
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
    # authlib logs the PKCE verifier at debug level; Meetgate never logs a secret.
    logging.getLogger("authlib").setLevel(logging.WARNING)
    routes = SignInRoutes(settings, entrance, store, limiter, flood)
    router = APIRouter()
    router.add_api_route(SIGNIN_PREFIX + "/{provider}/login", routes.login, methods=["GET"])
    router.add_api_route(
        SIGNIN_PREFIX + "/{provider}/login", routes.login_with_proof, methods=["POST"]
    )
    router.add_api_route(SIGNIN_PREFIX + "/{provider}/callback", routes.callback, methods=["GET"])
    return router
