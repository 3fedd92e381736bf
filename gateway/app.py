"""Wiring only: build the public gate and the admin API from settings and a store."""

from __future__ import annotations

from gateway.admin_api import AdminAuth, create_admin_app
from gateway.admission.email_codes import EmailCodes
from gateway.admission.flood import FloodGuard
from gateway.admission.limits import RateLimiter
from gateway.admission.lobby import Lobby
from gateway.admission.names import skeleton
from gateway.admission.pipeline import AdmissionPipeline
from gateway.edge.languages import LanguageChoice
from gateway.host.actions import HostDesk
from gateway.host.dashboard import create_dashboard_router
from gateway.mail import SmtpMailer
from gateway.metrics import Metrics
from gateway.proxy.gate import Gate
from gateway.proxy.http import HttpRelay
from gateway.proxy.registry import ConnectionRegistry
from gateway.proxy.upstream import UpstreamClient, UpstreamLimits
from gateway.settings import Settings
from gateway.store import Store
from gateway.tickets import TicketAuthority
from gateway.web.email_signin import create_email_router
from gateway.web.entry import Entrance, create_entry_router
from gateway.web.lobby import LobbyPages, create_lobby_router
from gateway.web.pages import create_pages_app
from gateway.web.signin import create_signin_router, with_signin_session


def create_app(settings: Settings, store: Store, metrics: Metrics | None = None) -> Gate:
    """The public ASGI app: Meetgate's pages plus the gated proxy to Jitsi.

    Call `await gate.aclose()` when done (the lifespan shutdown does it under a server).
    """
    # Unicode's confusables table is read now: a missing data file stops the start, and the first
    # join does not pay for the read.
    skeleton("")
    metrics = metrics or Metrics()
    metrics.watch_store(store.health)
    metrics.watch_memory(store.continuity)
    secret = settings.admission.pseudonym_key.get_secret_value().encode()
    limiter = RateLimiter(store, settings.rates, metrics)
    flood = FloodGuard(store, limiter, settings.challenge, secret, metrics)
    pipeline = AdmissionPipeline(
        store,
        pseudonym_key=secret,
        admission_ttl_seconds=settings.admission.ttl_seconds,
        limiter=limiter,
        flood=flood,
        metrics=metrics,
    )
    tickets = TicketAuthority.from_settings(settings)
    # The other limits (a 180 s wait for BOSH long-polls among them) are UpstreamLimits' defaults.
    client = UpstreamClient(UpstreamLimits(connect_timeout=settings.jitsi.connect_timeout_seconds))
    # One registry for the gate (files sockets) and the dashboard (counts them).
    registry = ConnectionRegistry()
    entrance = Entrance(settings, store, pipeline, tickets)
    lobby = Lobby(store, settings.lobby)
    lobby_door = LobbyPages(settings, store, pipeline, lobby)
    entrance.lobby = lobby_door
    email_codes = EmailCodes(
        store,
        settings.email_codes,
        key=secret,
        limiter=limiter,
        mailer=SmtpMailer(settings.smtp),
        flood=flood,
    )
    dashboard = create_dashboard_router(
        settings, pipeline, HostDesk(store, lobby), registry.count, flood.status
    )
    lobby_router = create_lobby_router(
        settings, entrance, lobby, door=lobby_door, store=store, limiter=limiter, flood=flood
    )
    return Gate(
        settings=settings,
        store=store,
        pipeline=pipeline,
        limiter=limiter,
        tickets=tickets,
        http=HttpRelay(
            client, max_body_bytes=settings.limits.max_body_bytes, secure=settings.secure
        ),
        http_client=client,
        registry=registry,
        metrics=metrics,
        pages=LanguageChoice(
            with_signin_session(
                create_pages_app(
                    settings,
                    store,
                    pipeline,
                    tickets,
                    entrance,
                    routers=[
                        dashboard,
                        create_entry_router(settings, entrance),
                        lobby_router,
                        create_email_router(settings, entrance, email_codes),
                        create_signin_router(settings, entrance, store, limiter, flood),
                    ],
                ),
                settings,
            ),
            secure=settings.secure,
        ),
    )


def create_admin(settings: Settings, store: Store, metrics: Metrics) -> AdminAuth:
    return create_admin_app(settings, store, metrics)
