"""Wiring only: build the public gate and the admin API from settings and a store."""

from __future__ import annotations

import httpx

from gateway.admin_api import AdminAuth, create_admin_app
from gateway.admission.flood import FloodGuard
from gateway.admission.limits import RateLimiter
from gateway.admission.pipeline import AdmissionPipeline
from gateway.host.actions import HostDesk
from gateway.host.dashboard import create_dashboard_router
from gateway.metrics import Metrics
from gateway.proxy.gate import Gate
from gateway.proxy.http import HttpRelay
from gateway.proxy.registry import ConnectionRegistry
from gateway.settings import Settings
from gateway.store import Store
from gateway.tickets import TicketAuthority
from gateway.web.entry import Entrance, create_entry_router
from gateway.web.pages import create_pages_app


def create_app(settings: Settings, store: Store, metrics: Metrics | None = None) -> Gate:
    """The public ASGI app: Meetgate's pages plus the gated proxy to Jitsi.

    Call `await gate.aclose()` when done (the lifespan shutdown does it under a server).
    """
    metrics = metrics or Metrics()
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
    client = httpx.AsyncClient(
        # BOSH long-polls are held by prosody for up to `bosh_max_wait` (120 s by default).
        timeout=httpx.Timeout(
            connect=settings.jitsi.connect_timeout_seconds, read=180.0, write=30.0, pool=10.0
        ),
        limits=httpx.Limits(max_connections=1000, max_keepalive_connections=100),
        follow_redirects=False,
        trust_env=False,
    )
    # One registry for the gate (files sockets) and the dashboard (counts them).
    registry = ConnectionRegistry()
    entrance = Entrance(settings, store, pipeline, tickets)
    dashboard = create_dashboard_router(
        settings, pipeline, HostDesk(store), registry.count, flood.status
    )
    return Gate(
        settings=settings,
        store=store,
        pipeline=pipeline,
        tickets=tickets,
        http=HttpRelay(client, max_body_bytes=settings.limits.max_body_bytes),
        http_client=client,
        registry=registry,
        metrics=metrics,
        pages=create_pages_app(
            settings,
            store,
            pipeline,
            tickets,
            entrance,
            routers=[dashboard, create_entry_router(settings, entrance)],
        ),
    )


def create_admin(settings: Settings, store: Store, metrics: Metrics) -> AdminAuth:
    return create_admin_app(settings, store, metrics)
