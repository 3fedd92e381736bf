"""The admin HTTP API (the CLI's server side), on its own listener, behind the admin token."""

from __future__ import annotations

import hmac
import time
from dataclasses import asdict, replace

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.admission.invites import make_invite
from gateway.admission.policy import (
    MAX_DOMAINS,
    MAX_EMAILS,
    MAX_GROUPS,
    MAX_HOST_EMAILS,
    MAX_PROVIDERS,
    make_policy,
)
from gateway.admission.rooms import validate_room_name, validate_title
from gateway.cuts import CUTS, Cut
from gateway.errors import AdminAuthFailed, MeetgateError, NotFound, RoomNotFound
from gateway.metrics import Metrics
from gateway.proxy.gate import request_id
from gateway.settings import Settings
from gateway.store import Store
from gateway.store.records import Invite, Role, Room


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RoomIn(_Body):
    name: str = Field(max_length=64, description="Jitsi room name: a-z, 0-9, '-', '_'")
    title: str = Field(default="", max_length=200, description="Shown on the join page")


class RoomOut(BaseModel):
    name: str
    title: str
    created_at: float
    policy: list[str] = Field(description="The ways in: invite, oidc, email_code, lobby")
    locked: bool
    approval_required: bool
    pow_required: bool
    moved_to: str | None
    rules: PolicyIn


class PolicyIn(_Body):
    """A room's policy (docs/identity-providers.md, "Room policies"). Addresses and domains are
    stored lower-cased, group names as given (compared exactly); empty lists do not restrict."""

    invite: bool = True
    oidc: bool = False
    oidc_providers: list[str] = Field(default_factory=list, max_length=MAX_PROVIDERS)
    email_code: bool = False
    allowed_emails: list[str] = Field(default_factory=list, max_length=MAX_EMAILS)
    allowed_domains: list[str] = Field(default_factory=list, max_length=MAX_DOMAINS)
    allowed_groups: list[str] = Field(default_factory=list, max_length=MAX_GROUPS)
    lobby: bool = False
    host_emails: list[str] = Field(default_factory=list, max_length=MAX_HOST_EMAILS)


class RoomChange(_Body):
    locked: bool | None = Field(default=None, description="No new admissions (hosts excepted)")
    pow_required: bool | None = Field(
        default=None, description="Every join attempt must carry a proof-of-work"
    )


class InviteIn(_Body):
    name: str = Field(max_length=200, description="The verified display name of the invitee")
    role: Role = Role.ATTENDEE
    max_uses: int = Field(default=1, ge=1, le=10_000)
    expires_in_seconds: int = Field(default=7 * 24 * 3600, ge=60, le=366 * 24 * 3600)


class InviteOut(BaseModel):
    id: str
    room: str
    name: str
    role: Role
    max_uses: int
    uses: int
    expires_at: float
    created_at: float
    revoked: bool


class NewInviteOut(InviteOut):
    link: str = Field(description="The personal join link; shown only once")


class Problem(BaseModel):
    error: str
    message: str
    request_id: str


# The ways into a room, in the order `RoomOut.policy` lists those its policy allows.
WAYS_IN = ("invite", "oidc", "email_code", "lobby")


def _room_out(room: Room) -> RoomOut:
    return RoomOut(
        name=room.name,
        title=room.title,
        created_at=room.created_at,
        policy=[way for way in WAYS_IN if getattr(room.policy, way)],
        locked=room.locked,
        approval_required=room.approval_required,
        pow_required=room.pow_required,
        moved_to=room.moved_to,
        rules=PolicyIn.model_validate(asdict(room.policy)),
    )


def _invite_out(invite: Invite) -> InviteOut:
    return InviteOut(
        id=invite.id,
        room=invite.room,
        name=invite.name,
        role=invite.role,
        max_uses=invite.max_uses,
        uses=invite.uses,
        expires_at=invite.expires_at,
        created_at=invite.created_at,
        revoked=invite.revoked,
    )


class AdminAuth:
    """Pure ASGI guard: every API call needs the admin token, checked before the body is read."""

    OPEN_PATHS = frozenset({"/docs", "/openapi.json"})

    def __init__(self, app: ASGIApp, token: bytes) -> None:
        self._app = app
        self._expected = b"Bearer " + token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in self.OPEN_PATHS:
            given = b""
            for name, value in scope["headers"]:
                if name == b"authorization":
                    given = value
            if not hmac.compare_digest(given, self._expected):
                rid = request_id(scope)
                error = AdminAuthFailed()
                body = Problem(error=error.code, message=error.message, request_id=rid)
                await JSONResponse(
                    body.model_dump(), status_code=401, headers={"www-authenticate": "Bearer"}
                )(scope, receive, send)
                return
        await self._app(scope, receive, send)


def create_admin_app(settings: Settings, store: Store, metrics: Metrics) -> AdminAuth:
    app = FastAPI(
        title="Meetgate admin API",
        version="1",
        description="Manage rooms and invites. Every call needs `Authorization: Bearer <token>`.",
        responses={401: {"model": Problem}, 400: {"model": Problem}},
    )
    # Declared for the OpenAPI document; the check itself is AdminAuth, before any parsing.
    guarded = [Depends(HTTPBearer(auto_error=False))]

    @app.exception_handler(MeetgateError)
    async def _error(request: Request, error: MeetgateError) -> Response:
        body = Problem(
            error=error.code, message=error.message, request_id=request_id(request.scope)
        )
        return Response(body.model_dump_json(), error.status, media_type="application/json")

    @app.get("/api/v1/health", dependencies=guarded)
    async def health() -> dict[str, str]:
        await store.ping()
        return {"status": "ok"}

    @app.post("/api/v1/rooms", status_code=201, dependencies=guarded)
    async def create_room(body: RoomIn) -> RoomOut:
        name = validate_room_name(body.name)
        room = Room(name=name, title=validate_title(body.title or name), created_at=time.time())
        await store.create_room(room)
        return _room_out(room)

    @app.get("/api/v1/rooms", dependencies=guarded)
    async def list_rooms() -> list[RoomOut]:
        return [_room_out(room) for room in await store.list_rooms()]

    @app.get("/api/v1/rooms/{name}", dependencies=guarded)
    async def get_room(name: str) -> RoomOut:
        room = await store.get_room(name)
        if room is None:
            raise RoomNotFound()
        return _room_out(room)

    @app.patch("/api/v1/rooms/{name}", dependencies=guarded)
    async def change_room(name: str, body: RoomChange) -> RoomOut:
        changed = await store.change_room(
            name,
            lambda room: replace(
                room,
                locked=room.locked if body.locked is None else body.locked,
                # Unlocking also lifts a lockdown's approval requirement, as on the dashboard.
                approval_required=room.approval_required and body.locked is not False,
                pow_required=room.pow_required if body.pow_required is None else body.pow_required,
            ),
        )
        return _room_out(changed)

    @app.put("/api/v1/rooms/{name}/policy", dependencies=guarded)
    async def set_policy(name: str, body: PolicyIn) -> RoomOut:
        """Takes effect for the next join attempt, on every replica, without a restart."""
        policy = make_policy(
            **body.model_dump(), known_providers={provider.name for provider in settings.oidc}
        )
        changed = await store.change_room(name, lambda room: replace(room, policy=policy))
        return _room_out(changed)

    @app.get("/metrics", response_class=PlainTextResponse, dependencies=guarded)
    async def prometheus() -> PlainTextResponse:
        """Prometheus text format. Scrape with `authorization: {credentials: <admin token>}`."""
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.delete("/api/v1/rooms/{name}", status_code=204, dependencies=guarded)
    async def delete_room(name: str) -> Response:
        admissions = await store.list_admissions(name)
        if not await store.delete_room(name, time.time()):
            raise RoomNotFound()
        for admission in admissions:
            # Every replica cuts the deleted room's open connections at once.
            await store.publish(CUTS, Cut(admission.id, "room deleted").encode())
        return Response(status_code=204)

    @app.post("/api/v1/rooms/{name}/invites", status_code=201, dependencies=guarded)
    async def create_invite(name: str, body: InviteIn) -> NewInviteOut:
        if await store.get_room(name) is None:
            raise RoomNotFound()
        made = make_invite(
            room=name,
            name=body.name,
            role=body.role,
            max_uses=body.max_uses,
            lifetime_seconds=body.expires_in_seconds,
            now=time.time(),
        )
        await store.add_invite(made.invite)
        link = f"{settings.public_url}/j/{made.token}"
        return NewInviteOut(**_invite_out(made.invite).model_dump(), link=link)

    @app.get("/api/v1/rooms/{name}/invites", dependencies=guarded)
    async def list_invites(name: str) -> list[InviteOut]:
        if await store.get_room(name) is None:
            raise RoomNotFound()
        return [_invite_out(invite) for invite in await store.list_invites(name)]

    @app.delete("/api/v1/invites/{invite_id}", status_code=204, dependencies=guarded)
    async def revoke_invite(invite_id: str) -> Response:
        if not await store.revoke_invite(invite_id):
            raise NotFound("No invite has this id.")
        return Response(status_code=204)

    return AdminAuth(app, settings.admin.token.get_secret_value().encode())
