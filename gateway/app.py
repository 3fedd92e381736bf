"""Wiring only: build the public gate and the admin API from settings and a store."""

from __future__ import annotations

import logging

from gateway.admin_api import AdminAuth, create_admin_app
from gateway.admission.email_codes import EmailCodes
from gateway.admission.flood import FloodGuard
from gateway.admission.limits import RateLimiter
from gateway.admission.lobby import Lobby
from gateway.admission.names import skeleton
from gateway.admission.outbox import Outbox
from gateway.admission.pipeline import AdmissionPipeline
from gateway.admission.registrations import Registrations
from gateway.edge.languages import LanguageChoice
from gateway.evidence.backend import open_evidence
from gateway.evidence.pseudonyms import Pseudonyms
from gateway.evidence.recorder import EvidenceRecorder
from gateway.host.actions import HostDesk
from gateway.host.dashboard import create_dashboard_router
from gateway.host.invitation_pages import create_invitations_router
from gateway.host.invitations import InvitationDesk
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
from gateway.web.registration import create_registration_router
from gateway.web.signin import SignInRoutes, signin_router, with_signin_session

log = logging.getLogger("meetgate")


def create_evidence(settings: Settings, metrics: Metrics) -> EvidenceRecorder:
    """The evidence log the settings name and its recorder (started and stopped with the gate);
    what will not outlive the process is said in the log, once."""
    backend = open_evidence(settings.evidence, settings.store.url)
    for caveat in backend.caveats:
        log.warning("%s", caveat)
    secret = settings.admission.pseudonym_key.get_secret_value().encode()
    return EvidenceRecorder(backend.log, Pseudonyms(secret), metrics, close_backend=backend.aclose)


def create_app(
    settings: Settings,
    store: Store,
    metrics: Metrics | None = None,
    evidence: EvidenceRecorder | None = None,
) -> Gate:
    """The public ASGI app: Meetgate's pages plus the gated proxy to Jitsi. `evidence`: the
    recorder (made from the settings when None; the gate's `evidence` either way).

    Call `await gate.aclose()` when done (the lifespan shutdown does it under a server).
    """
    # Unicode's confusables table is read now: a missing data file stops the start, and the first
    # join does not pay for the read.
    skeleton("")
    metrics = metrics or Metrics()
    metrics.watch_store(store.health)
    metrics.watch_memory(store.continuity)
    evidence = evidence or create_evidence(settings, metrics)
    secret = settings.admission.pseudonym_key.get_secret_value().encode()
    limiter = RateLimiter(store, settings.rates, metrics, evidence=evidence)
    flood = FloodGuard(store, limiter, settings.challenge, secret, metrics)
    # Registrations and invitations are mail (codes, links): none without a mail server. One of
    # each per process, shared by the pipeline (what it admits is "seen before"), the pages, the
    # dashboard and the admin API (create_admin gets the gate's), so that what the admin queues
    # is sent by this process's loop at once, not at its next look.
    registrations = outbox = None
    if settings.mail_configured:
        registrations = Registrations(
            store,
            settings.registration,
            key=secret,
            limiter=limiter,
            mailer=SmtpMailer(settings.smtp),
            flood=flood,
            codes=settings.email_codes,
        )
        outbox = Outbox.from_settings(store, settings, metrics=metrics, seen=registrations.remember)
    pipeline = AdmissionPipeline(
        store,
        pseudonym_key=secret,
        admission_ttl_seconds=settings.admission.ttl_seconds,
        limiter=limiter,
        flood=flood,
        metrics=metrics,
        registrations=registrations,
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
    host_desk = HostDesk(store, lobby, evidence)
    dashboard = create_dashboard_router(
        settings, pipeline, host_desk, registry.count, flood.status, evidence=evidence.log
    )
    invitations = create_invitations_router(
        settings,
        pipeline,
        InvitationDesk(
            store,
            host_desk,
            public_url=settings.public_url,
            registrations=registrations,
            queue=outbox,
            batch_kept_seconds=settings.outbox.batch_kept_seconds,
        ),
    )
    signin = SignInRoutes(settings, entrance, store, limiter, flood)
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
        evidence=evidence,
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
                        invitations,
                        create_entry_router(settings, entrance),
                        lobby_router,
                        create_email_router(settings, entrance, email_codes),
                        create_registration_router(
                            settings, entrance, registrations, limiter=limiter, invitations=outbox
                        ),
                        signin_router(signin),
                    ],
                ),
                settings,
            ),
            secure=settings.secure,
        ),
        close_pages=signin.aclose,
        # The outbox's sending loop runs beside the gate, started and stopped with it.
        background=() if outbox is None else (outbox,),
        registrations=registrations,
        invitations=outbox,
    )


def create_admin(
    settings: Settings,
    store: Store,
    metrics: Metrics,
    evidence: EvidenceRecorder | None = None,
    *,
    gate: Gate | None = None,
) -> AdminAuth:
    """The admin API; `evidence`: the gate's recorder (`Gate.evidence`), so that its actions
    are recorded with the gate's; `gate`: the gate of this process, whose registrations and
    invitation outbox the admin API uses (its approvals and imports then go out with the gate's
    sending loop at once)."""
    if gate is None:
        return create_admin_app(settings, store, metrics, evidence)
    return create_admin_app(
        settings,
        store,
        metrics,
        evidence,
        invitations=gate.invitations,
        registrations=gate.registrations,
    )
